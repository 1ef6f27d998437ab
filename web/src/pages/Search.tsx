// Log search: every filter of GET /api/v1/logs, kept in the page's URL so that a search
// can be bookmarked or shared, with cursor paging.

import { type FormEvent, useEffect, useState } from "react";
import { getJson } from "../api";
import { ErrorBox, Field, Page, useLoad } from "../components/common";
import { LogTable } from "../components/LogTable";
import { FACILITIES, SEVERITIES } from "../format";
import { navigate, useLocation } from "../router";
import type { LogPage } from "../types";

export const FILTERS = ["start", "end", "host", "app", "severity", "facility", "source", "q"] as const;
type Filter = (typeof FILTERS)[number];
type Form = Record<Filter | "order" | "limit", string>;

function formFrom(search: URLSearchParams): Form {
  const form = Object.fromEntries(FILTERS.map((f) => [f, search.get(f) ?? ""])) as Form;
  form.order = search.get("order") ?? "desc";
  form.limit = search.get("limit") ?? "100";
  return form;
}

export function FilterDatalists() {
  return (
    <>
      <datalist id="time-presets">
        {["-15m", "-1h", "-6h", "-24h", "-7d", "now"].map((v) => (
          <option key={v} value={v} />
        ))}
      </datalist>
      <datalist id="severity-presets">
        {["<=err", "<=warning", "<=notice", ...SEVERITIES].map((v) => (
          <option key={v} value={v} />
        ))}
      </datalist>
      <datalist id="facility-presets">
        {FACILITIES.map((v) => (
          <option key={v} value={v} />
        ))}
      </datalist>
    </>
  );
}

export function SearchPage() {
  const location = useLocation();
  const search = location.search;
  const [form, setForm] = useState<Form>(() => formFrom(search));
  const key = search.toString();
  // A link to a new search (from the dashboard, or back/forward) refills the form.
  useEffect(() => setForm(formFrom(new URLSearchParams(key))), [key]);

  const result = useLoad(
    (signal) => {
      const params: Record<string, string> = {};
      for (const [name, value] of search.entries()) params[name] = value;
      return getJson<LogPage>("/api/v1/logs", params, signal);
    },
    [key],
  );

  const set = (name: keyof Form) => (event: { target: { value: string } }) =>
    setForm((f) => ({ ...f, [name]: event.target.value }));

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(form)) {
      if (value.trim() !== "" && !(name === "order" && value === "desc") && !(name === "limit" && value === "100")) {
        params.set(name, value.trim());
      }
    }
    const next = `/logs${params.toString() ? `?${params}` : ""}`;
    if (next === location.path + (key ? `?${key}` : "")) result.reload();
    else navigate(next);
  };

  const clear = () => {
    setForm(formFrom(new URLSearchParams()));
    navigate("/logs");
  };

  const pageWith = (cursor: string | null) => {
    const params = new URLSearchParams(search);
    if (cursor) params.set("cursor", cursor);
    else params.delete("cursor");
    navigate(`/logs?${params}`);
  };

  return (
    <Page title="Search">
      <FilterDatalists />
      <form className="filters" onSubmit={submit} aria-label="Search filters">
        <Field label="From" hint="-1h, -7d or RFC 3339">
          <input name="start" list="time-presets" value={form.start} onChange={set("start")} placeholder="any time" />
        </Field>
        <Field label="Until" hint="now, -5m or RFC 3339">
          <input name="end" list="time-presets" value={form.end} onChange={set("end")} placeholder="now" />
        </Field>
        <Field label="Host" hint="comma-separated">
          <input name="host" value={form.host} onChange={set("host")} />
        </Field>
        <Field label="App" hint="comma-separated">
          <input name="app" value={form.app} onChange={set("app")} />
        </Field>
        <Field label="Severity" hint="err, <=warning, err,crit">
          <input name="severity" list="severity-presets" value={form.severity} onChange={set("severity")} />
        </Field>
        <Field label="Facility" hint="names or 0–23">
          <input name="facility" list="facility-presets" value={form.facility} onChange={set("facility")} />
        </Field>
        <Field label="Source" hint="address or network">
          <input name="source" value={form.source} onChange={set("source")} placeholder="192.0.2.0/24" />
        </Field>
        <Field label="Text" hint={'words, "phrases", -excluded'} wide>
          <input name="q" type="search" value={form.q} onChange={set("q")} />
        </Field>
        <Field label="Order">
          <select name="order" value={form.order} onChange={set("order")}>
            <option value="desc">newest first</option>
            <option value="asc">oldest first</option>
          </select>
        </Field>
        <Field label="Rows">
          <select name="limit" value={form.limit} onChange={set("limit")}>
            {["50", "100", "500", "1000"].map((v) => (
              <option key={v} value={v}>
                {v}
              </option>
            ))}
          </select>
        </Field>
        <div className="filter-buttons">
          <button type="submit" className="primary">
            Search
          </button>
          <button type="button" onClick={clear}>
            Clear
          </button>
        </div>
      </form>
      <ErrorBox error={result.error} />
      {result.data && (
        <>
          <p className="result-summary" data-testid="result-count">
            {result.data.count} {result.data.count === 1 ? "message" : "messages"}
            {search.get("cursor") ? " on this page" : ""}
            {result.loading && " (updating…)"}
          </p>
          <LogTable logs={result.data.logs} />
          <div className="pager">
            {search.get("cursor") && (
              <button type="button" onClick={() => pageWith(null)}>
                First page
              </button>
            )}
            {result.data.next_cursor && (
              <button type="button" onClick={() => pageWith(result.data!.next_cursor)}>
                Next page
              </button>
            )}
          </div>
        </>
      )}
      {!result.data && result.loading && <p>Searching…</p>}
    </Page>
  );
}
