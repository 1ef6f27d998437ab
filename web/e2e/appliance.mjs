// Starts the real `killkrill serve` (the debug build the cargo tests use) on ports the
// kernel picks, with a temporary data directory, and reads its addresses from its JSON log,
// as control-plane/tests/harness.rs does. Also: the API as a client, and syslog/statsd
// senders over real UDP to loopback.

import { spawn } from "node:child_process";
import dgram from "node:dgram";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const START_TIMEOUT_MS = 60_000;

export const ADMIN_USER = "admin";
export const ADMIN_PASSWORD = "e2e-admin-Secret-1";

/** The binary: E2E_KILLKRILL_BIN, else the workspace's debug build. */
export function binaryPath() {
  if (process.env.E2E_KILLKRILL_BIN) return process.env.E2E_KILLKRILL_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(here, "..", "..", "target");
  return resolve(target, "debug", "killkrill");
}

/**
 * `adminPassword: null` starts without a first admin (no KILLKRILL_ADMIN_PASSWORD); `env`
 * adds settings (`KILLKRILL_SECTION__KEY`).
 */
export async function startAppliance({ extraArgs = [], adminPassword = ADMIN_PASSWORD, env: extraEnv = {} } = {}) {
  const dir = await mkdtemp(join(tmpdir(), "killkrill-e2e-"));
  const args = [
    "serve",
    "--data-dir", join(dir, "data"),
    "--api-listen", "127.0.0.1:0",
    "--metrics-listen", "127.0.0.1:0",
    "--syslog-udp", "127.0.0.1:0",
    "--syslog-tcp", "127.0.0.1:0",
    "--statsd-udp", "127.0.0.1:0",
    "--influx-udp", "127.0.0.1:0",
    "--metrics-flush-interval-ms", "500",
    ...extraArgs,
  ];
  // The wrong-password test and many sign-ins come from 127.0.0.1: lift the login limit.
  // The appliance reads every KILLKRILL_* variable as a setting: none leaks in from the
  // caller's environment.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("KILLKRILL_")));
  const env = { ...inherited, LOG_LEVEL: "info", KILLKRILL_AUTH__LOGIN_FAILURES_PER_MINUTE: "1000", ...extraEnv };
  if (adminPassword !== null) env.KILLKRILL_ADMIN_PASSWORD = adminPassword;
  const child = spawn(binaryPath(), args, {
    env,
    stdio: ["ignore", "pipe", "inherit"],
  });
  // Never leave the appliance behind, even when the test process dies.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const lines = [];
  const exited = new Promise((resolveExit) => child.once("exit", (code, signal) => resolveExit({ code, signal })));
  const ready = new Promise((resolveReady, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`killkrill did not start in ${START_TIMEOUT_MS} ms; log: ${JSON.stringify(lines)}`)),
      START_TIMEOUT_MS,
    );
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${binaryPath()}: ${error.message} (build it: cargo build -p killkrill)`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`killkrill exited (${code ?? signal}) before it was ready; log: ${JSON.stringify(lines)}`));
    });
    readline.createInterface({ input: child.stdout }).on("line", (text) => {
      let line;
      try {
        line = JSON.parse(text);
      } catch {
        line = { message: text };
      }
      lines.push(line);
      if (line.message === "Killkrill is ready.") {
        clearTimeout(timer);
        resolveReady();
      }
    });
  });
  try {
    await ready;
  } catch (error) {
    child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const api = lines.find((l) => l.message === "API listening.")?.address;
  const listeners = {};
  for (const line of lines) {
    if (line.message === "Listener started.") listeners[line.listener] = line.address;
  }
  const url = `http://${api}`;
  return {
    url,
    listeners,
    lines,
    dataDir: join(dir, "data"),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
        await exited;
        clearTimeout(timer);
      }
      process.removeListener("exit", killOnExit);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A small API client for setting up and checking what the browser did. */
export class ApiClient {
  constructor(baseUrl, token = null) {
    this.baseUrl = baseUrl;
    this.token = token;
  }

  static async login(baseUrl, username, password) {
    const response = await fetch(`${baseUrl}/api/v1/auth/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    const body = await response.json().catch(() => null);
    if (response.status !== 200) {
      throw new Error(`POST /api/v1/auth/login as ${username}: ${response.status} ${JSON.stringify(body)}`);
    }
    return new ApiClient(baseUrl, body.access_token);
  }

  async request(method, path, body) {
    const headers = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: response.status, body: json, headers: response.headers };
  }

  /** Like request(), but fails unless the status is `expected`. */
  async expect(expected, method, path, body) {
    const answer = await this.request(method, path, body);
    if (answer.status !== expected) {
      throw new Error(`${method} ${path}: expected ${expected}, got ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    return answer.body;
  }
}

function udpSend(address, payloads) {
  const [host, port] = splitAddress(address);
  const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  return new Promise((resolveSend, reject) => {
    let left = payloads.length;
    socket.once("error", reject);
    for (const payload of payloads) {
      socket.send(Buffer.from(payload), port, host, (error) => {
        if (error) reject(error);
        else if (--left === 0) {
          socket.close();
          resolveSend();
        }
      });
    }
  });
}

function splitAddress(address) {
  const colon = address.lastIndexOf(":");
  return [address.slice(0, colon).replace(/^\[|\]$/g, ""), Number(address.slice(colon + 1))];
}

/** RFC 5424 frames over UDP to the syslog listener. */
export function sendSyslog(appliance, frames) {
  return udpSend(appliance.listeners["syslog-udp"], Array.isArray(frames) ? frames : [frames]);
}

/** statsd lines over UDP to the statsd listener. */
export function sendStatsd(appliance, lines) {
  return udpSend(appliance.listeners["statsd-udp"], Array.isArray(lines) ? lines : [lines]);
}

/** `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG` with facility and severity numbers. */
export function rfc5424({ facility = 1, severity = 6, host = "e2e-host", app = "e2e-app", procid = "-", msgid = "-", sd = "-", message }) {
  return `<${facility * 8 + severity}>1 ${new Date().toISOString()} ${host} ${app} ${procid} ${msgid} ${sd} ${message}`;
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
export async function waitFor(what, check, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${last}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
