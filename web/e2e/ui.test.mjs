// The web UI end to end: the real binary, real UDP syslog and statsd, the real API and
// headless Chromium. One appliance and one browser serve every test (they run in order);
// each role signs in in its own browser context.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import {
  ADMIN_PASSWORD,
  ADMIN_USER,
  ApiClient,
  rfc5424,
  sendStatsd,
  sendSyslog,
  startAppliance,
  waitFor,
} from "./appliance.mjs";
import { launchBrowser, navEntries, newPage, screenshot, signIn, TABLET } from "./browser.mjs";

const MAINTAINER = { username: "mia-maintainer", password: "maintainer-Secret-2", role: "maintainer" };
const VIEWER = { username: "victor-viewer", password: "viewer-Secret-3", role: "viewer" };
const RUN = Date.now().toString(36);

let appliance;
let browser;
let admin;
/** Pages opened by the running test; closed (and checked for script errors) after it. */
let pages = [];

async function page(viewport) {
  const opened = await newPage(browser, viewport);
  pages.push(opened);
  return opened;
}

/** Clicks a page in the navigation bar. */
async function openFromNav(p, name) {
  await p.locator("#main-nav").getByRole("link", { name, exact: true }).click();
}

async function storedCount(query) {
  const answer = await admin.expect(200, "GET", `/api/v1/logs?${query}`);
  return answer.count;
}

describe("web UI", () => {
  before(async () => {
    appliance = await startAppliance();
    browser = await launchBrowser();
    admin = await ApiClient.login(appliance.url, ADMIN_USER, ADMIN_PASSWORD);
    for (const user of [MAINTAINER, VIEWER]) await admin.expect(201, "POST", "/api/v1/users", user);
  });

  afterEach(async () => {
    const opened = pages;
    pages = [];
    for (const p of opened) await p.context().close();
    for (const p of opened) assert.deepEqual(p.pageErrors.map(String), [], "the page threw no uncaught error");
  });

  after(async () => {
    await browser?.close();
    await appliance?.stop();
  });

  it("serves the UI without credentials and answers page routes with the application", async () => {
    const root = await fetch(`${appliance.url}/`);
    assert.equal(root.status, 200);
    assert.match(root.headers.get("content-type"), /^text\/html/);
    const html = await root.text();
    const script = html.match(/src="(\/assets\/[^"]+\.js)"/)?.[1];
    assert.ok(script, `index.html names its script: ${html}`);
    const asset = await fetch(`${appliance.url}${script}`);
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get("content-type"), /^text\/javascript/);
    assert.match(asset.headers.get("cache-control"), /immutable/);
    const deep = await fetch(`${appliance.url}/settings`, { headers: { Accept: "text/html" } });
    assert.equal(deep.status, 200);
    assert.equal(await deep.text(), html, "a page route gets index.html");
    const api = await fetch(`${appliance.url}/api/v1/no-such-thing`, { headers: { Accept: "text/html" } });
    assert.equal(api.status === 404 || api.status === 401, true, `unknown API path: ${api.status}`);
    assert.match(api.headers.get("content-type"), /json/);
    const guarded = await fetch(`${appliance.url}/api/v1/logs`);
    assert.equal(guarded.status, 401, "the API itself needs credentials");
  });

  it("refuses a wrong password with the API's message", async () => {
    const p = await page();
    await p.goto(`${appliance.url}/logs`);
    await p.waitForURL(/\/login\?next=%2Flogs/);
    await screenshot(p, "login");
    await p.getByLabel("User name").fill(ADMIN_USER);
    await p.getByLabel("Password").fill("not-the-password");
    await p.getByRole("button", { name: "Sign in" }).click();
    await p.getByRole("alert").waitFor();
    assert.match(await p.getByRole("alert").textContent(), /\S/);
    assert.match(p.url(), /\/login/);
  });

  it("admin sees every page; the dashboard shows rates, capture path, drops, sources and the store", async () => {
    const p = await page();
    // Traffic from a few hosts while the dashboard samples, so that its chart has a line.
    const sending = (async () => {
      for (let round = 0; round < 40; round++) {
        // A rate that changes, so that the chart shows it.
        const frames = ["edge-router-1", "core-switch-2", "db-primary"].flatMap((host, i) =>
          Array.from({ length: 3 + i * 3 + (round % 10) }, (_, n) =>
            rfc5424({ host, app: "e2e-load", severity: (n + i) % 8, message: `dashboard traffic ${round}.${n} ${RUN}` }),
          ),
        );
        await sendSyslog(appliance, frames);
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    await signIn(p, appliance.url, ADMIN_USER, ADMIN_PASSWORD);
    assert.deepEqual(await navEntries(p), [
      "Dashboard",
      "Search",
      "Live tail",
      "Metrics",
      "Sources",
      "Settings",
      "Users & keys",
      "Audit log",
    ]);
    assert.equal(await p.getByTestId("capture-path").textContent(), "socket");
    await sending;
    await waitFor("the dashboard to count stored messages", async () => {
      const text = await p.getByTestId("store-messages").textContent();
      return Number(text.replace(/\D/g, "")) >= 100;
    });
    await p.locator("polyline.line").first().waitFor();
    await p.getByRole("cell", { name: "edge-router-1" }).waitFor();
    await p.getByRole("button", { name: "Show every counter" }).click();
    const drops = await p.getByTestId("drops").locator("tbody tr").allTextContents();
    assert.ok(drops.some((row) => /syslog-udp.*handoff.*ring_full/.test(row)), `drops by stage and reason: ${drops}`);
    await p.getByRole("button", { name: "Hide the counters at 0" }).click();
    await screenshot(p, "dashboard");
    await p.setViewportSize(TABLET);
    await screenshot(p, "dashboard-tablet");
  });

  it("finds a message sent over UDP in the search, and opens its detail with structured data", async () => {
    const token = `needle${RUN}`;
    await sendSyslog(
      appliance,
      rfc5424({
        facility: 4,
        severity: 3,
        host: "auth-gw-7",
        app: "sshd",
        procid: "4242",
        msgid: "LOGIN",
        sd: '[origin ip="192.0.2.7" software="e2e"][meta sequenceId="17" note="a \\"quoted\\" value"]',
        message: `Failed password for root from 192.0.2.99 ${token}`,
      }),
    );
    await waitFor("the message to be stored", async () => (await storedCount(`q=${token}`)) === 1);
    const p = await page();
    await signIn(p, appliance.url, VIEWER.username, VIEWER.password);
    await openFromNav(p, "Search");
    await p.getByLabel("Text").fill(token);
    await p.getByLabel("Severity").fill("<=err");
    await p.getByLabel("Host").fill("auth-gw-7");
    await p.getByRole("button", { name: "Search" }).click();
    await p.waitForURL(new RegExp(`q=${token}`));
    await waitFor("one row", async () => (await p.getByTestId("result-count").textContent()).startsWith("1 message"));
    const row = p.locator("tr.log-row");
    assert.equal(await row.count(), 1);
    assert.match(await row.textContent(), /auth-gw-7.*sshd.*Failed password/);
    await screenshot(p, "search");

    await row.click();
    await p.getByTestId("log-detail").waitFor();
    assert.match(await p.getByTestId("detail-message").textContent(), new RegExp(token));
    const sd = p.getByTestId("structured-data");
    assert.equal(await sd.locator("caption").allTextContents().then((c) => c.join(",")), "origin,meta");
    assert.match(await sd.textContent(), /ip192\.0\.2\.7/);
    assert.match(await sd.textContent(), /a "quoted" value/);
    assert.match(await p.getByTestId("log-detail").textContent(), /Facility\s*auth/);
    await screenshot(p, "detail");
    // A reload (or a shared link) finds the message again through the API.
    await p.reload();
    await p.getByTestId("log-detail").waitFor();
    assert.match(await p.getByTestId("detail-message").textContent(), new RegExp(token));
  });

  it("pages through results with the cursor and applies every filter from the URL", async () => {
    const token = `pager${RUN}`;
    const frames = Array.from({ length: 5 }, (_, n) =>
      rfc5424({ host: `pager-host-${n % 2}`, facility: 16 + n, severity: 6, message: `row ${n} ${token}` }),
    );
    await sendSyslog(appliance, frames);
    await waitFor("five stored", async () => (await storedCount(`q=${token}`)) === 5);
    const p = await page();
    await signIn(p, appliance.url, VIEWER.username, VIEWER.password);
    await p.goto(`${appliance.url}/logs?q=${token}&limit=2&order=asc`);
    const messages = async () => (await p.locator("td.message").allTextContents()).map((m) => m.split(" ")[1]);
    await waitFor("page 1", async () => (await messages()).join() === "0,1");
    await p.getByRole("button", { name: "Next page" }).click();
    await waitFor("page 2", async () => (await messages()).join() === "2,3");
    await p.getByRole("button", { name: "Next page" }).click();
    await waitFor("page 3", async () => (await messages()).join() === "4");
    assert.equal(await p.getByRole("button", { name: "Next page" }).count(), 0, "the last page has no next");
    // Host, facility and source filters, and a refused filter's message.
    await p.goto(`${appliance.url}/logs?q=${token}&host=pager-host-1&facility=local1,local3&source=127.0.0.0/8`);
    await waitFor("filtered", async () => (await messages()).sort().join() === "1,3");
    await p.goto(`${appliance.url}/logs?severity=loud`);
    await p.getByRole("alert").waitFor();
    assert.match(await p.getByRole("alert").textContent(), /^severity:/);
  });

  it("live tail shows a message sent after it connected", async () => {
    const p = await page();
    await signIn(p, appliance.url, VIEWER.username, VIEWER.password);
    await openFromNav(p, "Live tail");
    await p.getByLabel("App").fill("tailapp");
    await p.getByRole("button", { name: "Apply" }).click();
    await waitFor("the tail to connect", async () => (await p.getByTestId("tail-status").textContent()) === "live");
    const token = `tailed${RUN}`;
    await sendSyslog(appliance, [
      rfc5424({ app: "otherapp", message: `not this one ${token}` }),
      rfc5424({ app: "tailapp", host: "tail-host", severity: 4, message: `tail me ${token}` }),
    ]);
    await p.locator("tr.log-row", { hasText: `tail me ${token}` }).waitFor();
    assert.equal(await p.locator("tr.log-row", { hasText: "not this one" }).count(), 0, "the app filter applies");
    await screenshot(p, "tail");
    await p.getByRole("button", { name: "Stop" }).click();
    await waitFor("the tail to stop", async () => (await p.getByTestId("tail-status").textContent()) === "stopped");
  });

  it("metrics explorer charts a statsd counter", async () => {
    await sendStatsd(appliance, ["e2e.requests:5|c|#host:web-01", "e2e.requests:7|c|#host:web-02"]);
    await waitFor("the metric to be stored", async () => {
      const names = await admin.expect(200, "GET", "/api/v1/metrics/names");
      return names.names.includes("e2e.requests");
    });
    const p = await page();
    await signIn(p, appliance.url, VIEWER.username, VIEWER.password);
    await openFromNav(p, "Metrics");
    await p.locator('select[name="name"]').selectOption("e2e.requests");
    await p.getByRole("button", { name: "Show" }).click();
    const table = p.getByTestId("metric-series");
    await table.waitFor();
    await waitFor("two series", async () => (await table.locator("tbody tr").count()) === 2);
    assert.match(await table.textContent(), /host=web-01.*counter.*5/);
    assert.match(await table.textContent(), /host=web-02.*counter.*7/);
    await screenshot(p, "metrics");
  });

  it("a viewer sees no settings, users or audit, and their URLs say not allowed", async () => {
    const p = await page();
    await signIn(p, appliance.url, VIEWER.username, VIEWER.password);
    assert.deepEqual(await navEntries(p), ["Dashboard", "Search", "Live tail", "Metrics", "Sources"]);
    for (const path of ["/settings", "/users", "/audit"]) {
      await p.goto(`${appliance.url}${path}`);
      await p.getByTestId("not-allowed").waitFor();
      assert.match(await p.getByTestId("not-allowed").textContent(), /Not allowed.*viewer/);
    }
    // On a phone the navigation folds behind the Menu button.
    await p.setViewportSize({ width: 390, height: 844 });
    await p.locator("#main-nav").waitFor({ state: "hidden" });
    await p.getByRole("button", { name: "Menu" }).click();
    await openFromNav(p, "Search");
    await p.getByRole("heading", { name: "Search" }).waitFor();
    await p.locator("#main-nav").waitFor({ state: "hidden" });
  });

  it("a maintainer changes the rate limit in settings and it takes effect", async () => {
    const p = await page();
    await signIn(p, appliance.url, MAINTAINER.username, MAINTAINER.password);
    assert.deepEqual(await navEntries(p), ["Dashboard", "Search", "Live tail", "Metrics", "Sources", "Settings"]);
    await openFromNav(p, "Settings");
    const section = p.getByTestId("settings-rate-limits");
    await section.getByRole("button", { name: "Save" }).waitFor();
    await section.getByLabel("Limit each source").check();
    await section.getByLabel("Messages per second").fill("5");
    await section.getByLabel("Burst").fill("10");
    await section.getByRole("button", { name: "Save" }).click();
    await section.getByText("Saved and applied.").waitFor();
    const limits = await admin.expect(200, "GET", "/api/v1/config/rate-limits");
    assert.deepEqual(limits, { per_source: { messages_per_second: 5, burst: 10 } });
    await screenshot(p, "settings");

    // A bad value is refused with the field named, and nothing changes.
    await section.getByLabel("Messages per second").fill("0");
    await section.getByRole("button", { name: "Save" }).click();
    await section.getByRole("alert").waitFor();
    assert.match(await section.getByRole("alert").textContent(), /^per_source\.messages_per_second: /);
    assert.deepEqual(await admin.expect(200, "GET", "/api/v1/config/rate-limits"), limits);

    // 200 messages at once from one source: at most the burst plus a few seconds' rate
    // get through, and the rest are counted as dropped.
    const token = `limited${RUN}`;
    await sendSyslog(appliance, Array.from({ length: 200 }, (_, n) => rfc5424({ message: `flood ${n} ${token}` })));
    await waitFor("some flood messages stored", async () => (await storedCount(`q=${token}`)) > 0);
    // Let whatever got through reach the store before counting.
    await new Promise((r) => setTimeout(r, 1500));
    const stored = await storedCount(`q=${token}&limit=1000`);
    assert.ok(stored <= 40, `the rate limit let ${stored} of 200 through`);
    const stats = await admin.expect(200, "GET", "/api/v1/stats");
    const udp = stats.listeners.find((listener) => listener.listener === "syslog-udp");
    assert.ok(
      udp.dropped.rate_limited >= 200 - stored,
      `stats count the rate-limited messages: ${JSON.stringify(udp.dropped)}, ${stored} stored`,
    );
    // And the dashboard shows them as drops of stage source, reason rate_limited.
    await openFromNav(p, "Dashboard");
    await p.getByTestId("drops").locator("tr", { hasText: "rate_limited" }).waitFor();
    assert.match(await p.getByTestId("drops").textContent(), /syslog-udp\s*source\s*rate_limited/);
  });

  it("an admin creates an API key, sees it once, and the key works", async () => {
    const p = await page();
    await signIn(p, appliance.url, ADMIN_USER, ADMIN_PASSWORD);
    await openFromNav(p, "Users & keys");
    const keys = p.getByTestId("api-keys");
    await keys.getByLabel("Name").fill("rack-1-agent");
    await keys.getByLabel("Role").selectOption("maintainer");
    await keys.getByRole("button", { name: "Create key" }).click();
    const secret = (await p.getByTestId("new-api-key").textContent()).trim();
    assert.match(secret, /^kk_[A-Za-z0-9_-]+$/);
    await keys.locator('tr[data-key-name="rack-1-agent"]').waitFor();
    const me = await new ApiClient(appliance.url, secret).expect(200, "GET", "/api/v1/auth/me");
    assert.equal(me.role, "maintainer");
    assert.equal(me.kind, "api_key");
    await keys.getByRole("button", { name: "Done" }).click();
    await p.getByTestId("users").locator(`tr[data-username="${VIEWER.username}"]`).waitFor();
    await screenshot(p, "users");
    await p.reload();
    await keys.locator('tr[data-key-name="rack-1-agent"]').waitFor();
    assert.equal(await p.getByTestId("new-api-key").count(), 0, "the key is shown only once");
    assert.equal((await p.content()).includes(secret), false, "the secret is nowhere on the page");
  });

  it("the audit log shows the maintainer's settings change", async () => {
    const p = await page();
    await signIn(p, appliance.url, ADMIN_USER, ADMIN_PASSWORD);
    await openFromNav(p, "Audit log");
    const row = p.getByTestId("audit-table").locator("tr", { hasText: "PUT /api/v1/config/rate-limits" }).first();
    await row.waitFor();
    assert.match(await row.textContent(), new RegExp(MAINTAINER.username));
    await screenshot(p, "audit");
  });

  it("an expired access token is refreshed without signing in again", async () => {
    // A second appliance whose access tokens live 2 s.
    const shortLived = await startAppliance({ env: { KILLKRILL_AUTH__ACCESS_TOKEN_TTL_S: "2" } });
    try {
      const p = await page();
      await signIn(p, shortLived.url, ADMIN_USER, ADMIN_PASSWORD);
      const session = () => p.evaluate(() => JSON.parse(localStorage.getItem("killkrill.session")));
      const first = await session();
      // The dashboard polls every 2 s: once the token has expired a poll gets 401, the UI
      // trades the (rotating) refresh token for new tokens and carries on.
      await waitFor("a refreshed session", async () => (await session()).accessToken !== first.accessToken, 15_000);
      assert.notEqual((await session()).refreshToken, first.refreshToken, "refresh tokens rotate");
      await openFromNav(p, "Search");
      await p.getByTestId("result-count").waitFor();
      assert.equal(await p.getByRole("alert").count(), 0);
      assert.match(p.url(), /\/logs$/);
      // The old refresh token no longer works.
      const reuse = await fetch(`${shortLived.url}/api/v1/auth/refresh`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: first.refreshToken }),
      });
      assert.equal(reuse.status, 401);
    } finally {
      await shortLived.stop();
    }
  });

  it("on a first start without an admin password, the setup token creates the first admin", async () => {
    const fresh = await startAppliance({ adminPassword: null });
    try {
      const token = (await readFile(join(fresh.dataDir, "setup-token"), "utf8")).trim();
      const p = await page();
      await p.goto(`${fresh.url}/`);
      await p.waitForURL(/\/login/);
      await p.getByRole("button", { name: /First start/ }).click();
      await p.getByLabel("Setup token").fill(token);
      await p.getByLabel("User name").fill("first-admin");
      await p.getByLabel("Password").fill("first-admin-Secret-4");
      await p.getByRole("button", { name: "Create admin and sign in" }).click();
      await p.getByRole("heading", { name: "Dashboard" }).waitFor();
      assert.ok((await navEntries(p)).includes("Users & keys"), "the new user is an admin");
      const again = await fetch(`${fresh.url}/api/v1/auth/setup`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ setup_token: token, username: "second", password: "second-admin-Secret-5" }),
      });
      assert.equal(again.status, 409, "the token makes one admin only");
    } finally {
      await fresh.stop();
    }
  });

  it("sources lists the senders, and signing out ends the session", async () => {
    const p = await page();
    await signIn(p, appliance.url, VIEWER.username, VIEWER.password);
    await openFromNav(p, "Sources");
    await p.getByTestId("sources-table").getByRole("link", { name: "auth-gw-7" }).waitFor();
    await screenshot(p, "sources");
    await p.getByRole("button", { name: "Sign out" }).click();
    await p.waitForURL(/\/login/);
    await p.goto(`${appliance.url}/logs`);
    await p.waitForURL(/\/login/);
  });
});
