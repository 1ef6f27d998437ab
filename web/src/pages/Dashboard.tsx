// What comes in, what is dropped and why, how it is captured, who sends most, and what the
// store holds: /api/v1/stats polled (rates are differences between two polls) and
// /api/v1/sources.

import { useRef, useState } from "react";
import { getJson } from "../api";
import { ErrorBox, Page, usePoll } from "../components/common";
import { type ChartSeries, LineChart } from "../components/LineChart";
import { formatBytes, formatNumber, formatTime } from "../format";
import { Link } from "../router";
import type { SourcesAnswer, Stats } from "../types";

const POLL_MS = 2000;
/** Five minutes of samples. */
const HISTORY = 150;

interface Sample {
  t: number;
  received: Record<string, number>;
  stored: number;
}

interface DropRow {
  where: string;
  stage: string;
  reason: string;
  count: number;
}

/** The stats answer's drop keys as the stage and reason labels /metrics uses. */
const DROP_LABELS: Record<string, [string, string]> = {
  capture_ring_full: ["capture", "ring_full"],
  handoff_ring_full: ["handoff", "ring_full"],
  shutdown_store_gone: ["shutdown", "store_gone"],
  denied: ["source", "denied"],
  rate_limited: ["source", "rate_limited"],
};

function dropLabels(key: string): [string, string] {
  return DROP_LABELS[key] ?? ["-", key];
}

/** Every drop counter in the answer, by listener, stage and reason. */
function dropRows(stats: Stats): DropRow[] {
  const rows: DropRow[] = [];
  for (const listener of stats.listeners) {
    for (const [key, count] of Object.entries(listener.dropped)) {
      const [stage, reason] = dropLabels(key);
      rows.push({ where: listener.listener, stage, reason, count });
    }
    if (listener.parse_errors) {
      rows.push({ where: listener.listener, stage: "parse", reason: "stored raw, flagged", count: listener.parse_errors });
    }
    if (listener.receive_errors) {
      rows.push({ where: listener.listener, stage: "receive", reason: "socket error", count: listener.receive_errors });
    }
  }
  rows.push({ where: "writer", stage: "store", reason: "write_errors", count: stats.writer.write_errors ?? 0 });
  for (const key of ["full", "damaged"]) {
    if (stats.spool[key] !== undefined) rows.push({ where: "spool", stage: "spool", reason: key, count: stats.spool[key]! });
  }
  return rows;
}

/** Sections of the answer this page does not know (added by newer versions), if numeric. */
function otherCounters(stats: Stats): [string, [string, number][]][] {
  const known = new Set(["capture", "listeners", "xdp", "writer", "spool", "store"]);
  const sections: [string, [string, number][]][] = [];
  const flatten = (prefix: string, value: unknown, out: [string, number][]) => {
    if (typeof value === "number") out.push([prefix, value]);
    else if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) flatten(prefix ? `${prefix}.${key}` : key, inner, out);
    }
  };
  for (const [section, value] of Object.entries(stats)) {
    if (known.has(section)) continue;
    const counters: [string, number][] = [];
    flatten("", value, counters);
    if (counters.length > 0) sections.push([section, counters]);
  }
  return sections;
}

export function DashboardPage() {
  const [allDrops, setAllDrops] = useState(false);
  const [stats, setStats] = useState<Stats>();
  const [error, setError] = useState<unknown>(null);
  const [sources, setSources] = useState<SourcesAnswer>();
  const samples = useRef<Sample[]>([]);
  const [, setVersion] = useState(0);

  usePoll(() => {
    getJson<Stats>("/api/v1/stats")
      .then((next) => {
        const sample: Sample = {
          t: Date.now(),
          received: Object.fromEntries(next.listeners.map((l) => [l.listener, l.received_messages])),
          stored: next.writer.stored_messages ?? 0,
        };
        samples.current = [...samples.current, sample].slice(-HISTORY);
        setStats(next);
        setError(null);
        setVersion((v) => v + 1);
      })
      .catch(setError);
  }, POLL_MS);

  usePoll(() => {
    getJson<SourcesAnswer>("/api/v1/sources", { start: "-1h" })
      .then(setSources)
      .catch(() => undefined);
  }, 15000);

  const rateSeries: ChartSeries[] = [];
  if (stats) {
    const history = samples.current;
    const rate = (pick: (s: Sample) => number | undefined) =>
      history.slice(1).map((sample, i) => {
        const previous = history[i]!;
        const now = pick(sample);
        const before = pick(previous);
        const seconds = (sample.t - previous.t) / 1000;
        // A counter that went down means a restart: no rate for that interval.
        const v = now === undefined || before === undefined || now < before || seconds <= 0 ? null : (now - before) / seconds;
        return { t: sample.t, v };
      });
    for (const listener of stats.listeners) {
      rateSeries.push({ label: listener.listener, points: rate((s) => s.received[listener.listener]) });
    }
    rateSeries.push({ label: "stored", points: rate((s) => s.stored) });
  }

  return (
    <Page title="Dashboard">
      <ErrorBox error={error} />
      {!stats && !error && <p>Loading…</p>}
      {stats && (
        <div className="grid">
          <section className="card span-2">
            <h2>Ingest rate (messages/s)</h2>
            <LineChart
              series={rateSeries}
              unit="msg/s"
              title="Ingest rate per listener"
              emptyText="Collecting samples (every 2 s)…"
            />
          </section>
          <section className="card">
            <h2>Capture</h2>
            <dl className="facts">
              <dt>Path</dt>
              <dd data-testid="capture-path">{stats.capture.path}</dd>
              {stats.capture.fallback_reason && (
                <>
                  <dt>Why not XDP</dt>
                  <dd>{stats.capture.fallback_reason}</dd>
                </>
              )}
              {stats.capture.interface && (
                <>
                  <dt>Interface</dt>
                  <dd>
                    {stats.capture.interface} ({stats.capture.attach})
                  </dd>
                  <dt>Queues</dt>
                  <dd>{stats.capture.queues?.map((q) => `${q.queue}: ${q.bind}`).join(", ")}</dd>
                </>
              )}
            </dl>
            <table className="compact">
              <thead>
                <tr>
                  <th>Listener</th>
                  <th>Capture</th>
                  <th className="num">Messages</th>
                  <th className="num">Bytes</th>
                </tr>
              </thead>
              <tbody>
                {stats.listeners.map((listener) => (
                  <tr key={listener.listener}>
                    <td>{listener.listener}</td>
                    <td>{listener.capture}</td>
                    <td className="num">{formatNumber(listener.received_messages)}</td>
                    <td className="num">{formatBytes(listener.received_bytes)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
          <section className="card">
            <h2>Store</h2>
            <dl className="facts">
              <dt>Backend</dt>
              <dd>{stats.store.backend}</dd>
              <dt>Messages</dt>
              <dd data-testid="store-messages">{formatNumber(stats.store.messages)}</dd>
              <dt>Blocks</dt>
              <dd>{formatNumber(stats.store.blocks)}</dd>
              <dt>Size</dt>
              <dd>
                {formatBytes(stats.store.stored_bytes)} stored, {formatBytes(stats.store.raw_bytes)} received
                {stats.store.compression_ratio > 0 && ` (×${stats.store.compression_ratio.toFixed(2)})`}
              </dd>
              <dt>Oldest</dt>
              <dd>{formatTime(stats.store.oldest_received_at)}</dd>
              <dt>Newest</dt>
              <dd>{formatTime(stats.store.newest_received_at)}</dd>
              <dt>Spool</dt>
              <dd>
                {formatNumber(stats.spool.blocks)} blocks, {formatBytes(stats.spool.bytes)}
              </dd>
            </dl>
          </section>
          <section className="card">
            <h2>Drops and flags</h2>
            <table className="compact" data-testid="drops" hidden={!allDrops && dropRows(stats).every((row) => row.count === 0)}>
              <thead>
                <tr>
                  <th>Where</th>
                  <th>Stage</th>
                  <th>Reason</th>
                  <th className="num">Count</th>
                </tr>
              </thead>
              <tbody>
                {dropRows(stats)
                  .filter((row) => allDrops || row.count > 0)
                  .map((row) => (
                  <tr key={`${row.where}/${row.stage}/${row.reason}`} className={row.count > 0 ? "warn" : undefined}>
                    <td>{row.where}</td>
                    <td>{row.stage}</td>
                    <td>{row.reason}</td>
                    <td className="num">{formatNumber(row.count)}</td>
                  </tr>
                  ))}
              </tbody>
            </table>
            <p className="muted">
              {dropRows(stats).every((row) => row.count === 0) && "Nothing dropped or flagged. "}
              <button type="button" className="link-button" onClick={() => setAllDrops((all) => !all)}>
                {allDrops ? "Hide the counters at 0" : "Show every counter"}
              </button>
            </p>
            {stats.xdp && (
              <>
                <h3>XDP program</h3>
                <table className="compact">
                  <thead>
                    <tr>
                      <th>Listener</th>
                      <th>Reason</th>
                      <th className="num">Packets</th>
                    </tr>
                  </thead>
                  <tbody>
                    {Object.entries(stats.xdp).flatMap(([listener, reasons]) =>
                      Object.entries(reasons).map(([reason, count]) => (
                        <tr key={`${listener}/${reason}`}>
                          <td>{listener}</td>
                          <td>{reason}</td>
                          <td className="num">{formatNumber(count)}</td>
                        </tr>
                      )),
                    )}
                  </tbody>
                </table>
              </>
            )}
            {otherCounters(stats).map(([section, counters]) => (
              <div key={section}>
                <h3>{section.replace(/_/g, " ")}</h3>
                <table className="compact" data-testid={`counters-${section}`}>
                  <tbody>
                    {counters.map(([name, value]) => (
                      <tr key={name} className={value > 0 && /drop|limit|reject|denied/.test(name) ? "warn" : undefined}>
                        <td>{name}</td>
                        <td className="num">{formatNumber(value)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            ))}
          </section>
          <section className="card">
            <h2>Top sources (last hour)</h2>
            {!sources && <p>Loading…</p>}
            {sources && sources.sources.length === 0 && <p className="muted">Nothing received in the last hour.</p>}
            {sources && sources.sources.length > 0 && (
              <table className="compact">
                <thead>
                  <tr>
                    <th>Host</th>
                    <th>Address</th>
                    <th className="num">Messages</th>
                  </tr>
                </thead>
                <tbody>
                  {sources.sources.slice(0, 10).map((source) => (
                    <tr key={`${source.hostname}/${source.address}`}>
                      <td>
                        {source.hostname ? (
                          <Link to={`/logs?host=${encodeURIComponent(source.hostname)}&start=-1h`}>{source.hostname}</Link>
                        ) : (
                          "-"
                        )}
                      </td>
                      <td>{source.address}</td>
                      <td className="num">{formatNumber(source.messages)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
            <p>
              <Link to="/sources">All sources</Link>
            </p>
          </section>
        </div>
      )}
    </Page>
  );
}
