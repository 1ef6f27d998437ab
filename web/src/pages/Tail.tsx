// Live tail: GET /api/v1/logs/tail read with fetch() and a stream reader (so that the
// Authorization header goes with it), newest message on top, reconnecting on its own.

import { type FormEvent, useEffect, useRef, useState } from "react";
import { ApiError, apiFetch, queryString } from "../api";
import { ErrorBox, Field, Page } from "../components/common";
import { LogTable } from "../components/LogTable";
import { readServerEvents } from "../sse";
import type { LogRow } from "../types";
import { FilterDatalists } from "./Search";

const TAIL_FILTERS = ["host", "app", "severity", "facility", "source", "q"] as const;
type TailFilters = Record<(typeof TAIL_FILTERS)[number], string>;
/** Rows kept on screen. */
const KEEP = 1000;
const EMPTY: TailFilters = { host: "", app: "", severity: "", facility: "", source: "", q: "" };

type Status = "connecting" | "live" | "reconnecting" | "stopped";

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = window.setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      window.clearTimeout(timer);
      resolve();
    });
  });
}

export function TailPage() {
  const [form, setForm] = useState<TailFilters>(EMPTY);
  const [filters, setFilters] = useState<TailFilters>(EMPTY);
  const [running, setRunning] = useState(true);
  const [status, setStatus] = useState<Status>("connecting");
  const [error, setError] = useState<unknown>(null);
  const [rows, setRows] = useState<LogRow[]>([]);
  const [received, setReceived] = useState(0);
  const pending = useRef<LogRow[]>([]);
  const filterKey = queryString(filters);

  // Render at most five times a second, however fast messages come.
  useEffect(() => {
    const timer = window.setInterval(() => {
      if (pending.current.length === 0) return;
      const batch = pending.current.reverse();
      pending.current = [];
      setReceived((n) => n + batch.length);
      setRows((current) => [...batch, ...current].slice(0, KEEP));
    }, 200);
    return () => window.clearInterval(timer);
  }, []);

  useEffect(() => {
    if (!running) {
      setStatus("stopped");
      return;
    }
    const controller = new AbortController();
    const { signal } = controller;
    void (async () => {
      let delay = 1000;
      while (!signal.aborted) {
        try {
          setStatus("connecting");
          const response = await apiFetch(`/api/v1/logs/tail${filterKey}`, {
            signal,
            headers: { Accept: "text/event-stream" },
          });
          setStatus("live");
          setError(null);
          delay = 1000;
          for await (const event of readServerEvents(response.body!)) {
            if (event.event === "log") pending.current.push(JSON.parse(event.data) as LogRow);
          }
        } catch (failure) {
          if (signal.aborted) return;
          setError(failure);
          // A refused filter or a missing role will not get better by retrying.
          if (failure instanceof ApiError && failure.status >= 400 && failure.status < 500 && failure.status !== 429) {
            setRunning(false);
            return;
          }
        }
        if (signal.aborted) return;
        setStatus("reconnecting");
        await sleep(delay, signal);
        delay = Math.min(delay * 2, 15000);
      }
    })();
    return () => controller.abort();
  }, [running, filterKey]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    setFilters(form);
    setRows([]);
    setReceived(0);
    setRunning(true);
  };
  const set = (name: keyof TailFilters) => (event: { target: { value: string } }) =>
    setForm((f) => ({ ...f, [name]: event.target.value }));

  return (
    <Page
      title="Live tail"
      actions={
        <>
          <span className={`status status-${status}`} data-testid="tail-status">
            {status}
          </span>
          <button type="button" onClick={() => setRunning((r) => !r)}>
            {running ? "Stop" : "Start"}
          </button>
          <button type="button" onClick={() => setRows([])}>
            Clear
          </button>
        </>
      }
    >
      <FilterDatalists />
      <form className="filters" onSubmit={submit} aria-label="Tail filters">
        <Field label="Host">
          <input name="host" value={form.host} onChange={set("host")} />
        </Field>
        <Field label="App">
          <input name="app" value={form.app} onChange={set("app")} />
        </Field>
        <Field label="Severity">
          <input name="severity" list="severity-presets" value={form.severity} onChange={set("severity")} />
        </Field>
        <Field label="Facility">
          <input name="facility" list="facility-presets" value={form.facility} onChange={set("facility")} />
        </Field>
        <Field label="Source">
          <input name="source" value={form.source} onChange={set("source")} />
        </Field>
        <Field label="Text" wide>
          <input name="q" type="search" value={form.q} onChange={set("q")} />
        </Field>
        <div className="filter-buttons">
          <button type="submit" className="primary">
            Apply
          </button>
        </div>
      </form>
      <ErrorBox error={error} />
      <p className="result-summary">
        {received} received since the tail started{rows.length < received ? `, the newest ${rows.length} shown` : ""}
      </p>
      <LogTable logs={rows} emptyText="Waiting for new messages…" />
    </Page>
  );
}
