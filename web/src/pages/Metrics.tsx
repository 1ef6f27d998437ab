// Metrics explorer: pick a stored metric (statsd or Influx), an aggregation, a range and a
// step, optionally tags, and see one line per tag set (GET /api/v1/metrics).

import { type FormEvent, useEffect, useState } from "react";
import { getJson } from "../api";
import { ErrorBox, Field, Page, useLoad } from "../components/common";
import { LineChart } from "../components/LineChart";
import { formatNumber } from "../format";
import { navigate, useLocation } from "../router";
import type { MetricsAnswer } from "../types";

const AGGREGATIONS = ["sum", "avg", "min", "max", "count", "rate", "last", "p50", "p90", "p99"];

interface Form {
  name: string;
  agg: string;
  start: string;
  end: string;
  step: string;
  tags: string;
}

function formFrom(search: URLSearchParams): Form {
  return {
    name: search.get("name") ?? "",
    agg: search.get("agg") ?? "sum",
    start: search.get("start") ?? "-1h",
    end: search.get("end") ?? "",
    step: search.get("step") ?? "1m",
    tags: search.get("tags") ?? "",
  };
}

/** `host=web-01, env=prod` into `tag.host=web-01&tag.env=prod`. */
function tagParams(tags: string): Record<string, string> | Error {
  const params: Record<string, string> = {};
  for (const part of tags.split(",").map((p) => p.trim()).filter(Boolean)) {
    const equals = part.indexOf("=");
    if (equals <= 0) return new Error(`tags: \`${part}\` is not key=value`);
    params[`tag.${part.slice(0, equals).trim()}`] = part.slice(equals + 1).trim();
  }
  return params;
}

function seriesLabel(tags: Record<string, string>): string {
  const entries = Object.entries(tags);
  return entries.length === 0 ? "(no tags)" : entries.map(([k, v]) => `${k}=${v}`).join(", ");
}

export function MetricsPage() {
  const { search } = useLocation();
  const key = search.toString();
  const [form, setForm] = useState<Form>(() => formFrom(search));
  useEffect(() => setForm(formFrom(new URLSearchParams(key))), [key]);

  const names = useLoad((signal) => getJson<{ names: string[] }>("/api/v1/metrics/names", {}, signal), []);
  const query = formFrom(search);
  const series = useLoad(
    async (signal) => {
      if (!query.name) return null;
      const tags = tagParams(query.tags);
      if (tags instanceof Error) throw tags;
      return getJson<MetricsAnswer>(
        "/api/v1/metrics",
        { name: query.name, agg: query.agg, start: query.start, end: query.end, step: query.step, ...tags },
        signal,
      );
    },
    [key],
  );

  const set = (name: keyof Form) => (event: { target: { value: string } }) =>
    setForm((f) => ({ ...f, [name]: event.target.value }));
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(form)) if (value.trim()) params.set(name, value.trim());
    navigate(`/charts?${params}`);
  };

  const answer = series.data;
  const unit = query.agg === "rate" ? "/s" : undefined;

  return (
    <Page title="Metrics">
      <form className="filters" onSubmit={submit} aria-label="Metric query">
        <Field label="Metric" wide>
          <select name="name" value={form.name} onChange={set("name")} required>
            <option value="">{names.data ? `choose one of ${names.data.names.length}` : "loading…"}</option>
            {names.data?.names.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Aggregation">
          <select name="agg" value={form.agg} onChange={set("agg")}>
            {AGGREGATIONS.map((agg) => (
              <option key={agg}>{agg}</option>
            ))}
          </select>
        </Field>
        <Field label="From">
          <input name="start" list="metric-ranges" value={form.start} onChange={set("start")} />
        </Field>
        <Field label="Until">
          <input name="end" list="metric-ranges" value={form.end} onChange={set("end")} placeholder="now" />
        </Field>
        <Field label="Step" hint="10s, 1m, 5m, 1h">
          <input name="step" value={form.step} onChange={set("step")} />
        </Field>
        <Field label="Tags" hint="host=web-01, env=prod" wide>
          <input name="tags" value={form.tags} onChange={set("tags")} />
        </Field>
        <datalist id="metric-ranges">
          {["-15m", "-1h", "-6h", "-24h", "-7d", "now"].map((v) => (
            <option key={v} value={v} />
          ))}
        </datalist>
        <div className="filter-buttons">
          <button type="submit" className="primary">
            Show
          </button>
        </div>
      </form>
      <ErrorBox error={names.error || series.error} />
      {names.data?.names.length === 0 && (
        <p className="muted">No metrics stored yet: send statsd or Influx line protocol to the metric listeners.</p>
      )}
      {answer && (
        <section className="card">
          <h2>
            {answer.name} <span className="muted">({answer.agg} per {answer.step_s} s)</span>
          </h2>
          <LineChart
            title={`${answer.name} ${answer.agg}`}
            unit={unit}
            height={280}
            range={[Date.parse(answer.start), Date.parse(answer.end)]}
            series={answer.series.map((s) => ({
              label: seriesLabel(s.tags),
              points: s.points.map((p) => ({ t: Date.parse(p.time), v: p.value })),
            }))}
          />
          <table className="compact" data-testid="metric-series">
            <thead>
              <tr>
                <th>Tags</th>
                <th>Kind</th>
                <th className="num">Points</th>
                <th className="num">Last</th>
              </tr>
            </thead>
            <tbody>
              {answer.series.map((s) => (
                <tr key={seriesLabel(s.tags)}>
                  <td>{seriesLabel(s.tags)}</td>
                  <td>{s.kind}</td>
                  <td className="num">{s.points.length}</td>
                  <td className="num">{formatNumber(s.points[s.points.length - 1]?.value)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
    </Page>
  );
}
