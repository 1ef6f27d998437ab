// One message with every field, its structured data as tables and, when it did not parse
// cleanly, the frame as received. The row comes from the search or tail that listed it;
// a deep link finds it again by searching the second it was received in.

import { getJson } from "../api";
import { ErrorBox, Page, useLoad } from "../components/common";
import { rememberedRow, SeverityBadge } from "../components/LogTable";
import { facilityName, formatTime } from "../format";
import { Link, useLocation } from "../router";
import { parseStructuredData } from "../structured-data";
import type { LogPage, LogRow } from "../types";

const MAX_PAGES = 20;

async function findRow(id: number, at: string | null, signal: AbortSignal): Promise<LogRow | null> {
  const remembered = rememberedRow(id);
  if (remembered) return remembered;
  if (!at) return null;
  const second = Date.parse(at.replace(/\.\d+/, ""));
  if (Number.isNaN(second)) return null;
  const start = new Date(second).toISOString();
  const end = new Date(second + 1000).toISOString();
  let cursor: string | null = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const answer: LogPage = await getJson<LogPage>(
      "/api/v1/logs",
      { start, end, order: "asc", limit: 1000, cursor },
      signal,
    );
    const row = answer.logs.find((log) => log.id === id);
    if (row) return row;
    cursor = answer.next_cursor;
    if (!cursor) break;
  }
  return null;
}

function decodeBase64(text: string): string {
  try {
    const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    // Show control and non-UTF-8 bytes rather than hiding them.
    return new TextDecoder("utf-8", { fatal: false })
      .decode(bytes)
      .replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
  } catch {
    return "(not valid base64)";
  }
}

function around(row: LogRow): string {
  const at = Date.parse(row.received_at.replace(/(\.\d{3})\d+/, "$1"));
  const params = new URLSearchParams({
    start: new Date(at - 60_000).toISOString(),
    end: new Date(at + 60_000).toISOString(),
    order: "asc",
  });
  if (row.hostname) params.set("host", row.hostname);
  return `/logs?${params}`;
}

export function LogDetailPage({ id }: { id: string }) {
  const { search } = useLocation();
  const at = search.get("at");
  const numericId = Number(id);
  const result = useLoad((signal) => findRow(numericId, at, signal), [numericId, at]);
  const row = result.data;

  return (
    <Page
      title={`Message ${id}`}
      actions={
        <button type="button" onClick={() => window.history.back()}>
          Back
        </button>
      }
    >
      <ErrorBox error={result.error} />
      {result.loading && !row && <p>Looking for the message…</p>}
      {!result.loading && !row && !result.error && (
        <p className="muted">
          Message {id} was not found{at ? " in the second it was received" : ""}; it may have been removed by retention.{" "}
          <Link to="/logs">Search</Link>
        </p>
      )}
      {row && <Detail row={row} />}
    </Page>
  );
}

function Detail({ row }: { row: LogRow }) {
  const elements = row.structured_data ? parseStructuredData(row.structured_data) : null;
  const fields: [string, React.ReactNode][] = [
    ["Received", <span title={row.received_at}>{formatTime(row.received_at)}</span>],
    ["Sender's time", row.timestamp ?? "-"],
    ["Severity", <SeverityBadge severity={row.severity} />],
    ["Facility", facilityName(row.facility)],
    ["Host", row.hostname ?? "-"],
    ["App", row.app_name ?? "-"],
    ["Process id", row.procid ?? "-"],
    ["Message id", row.msgid ?? "-"],
    ["Source", row.source],
    ["Listener", row.listener],
    ["Format", `${row.format}${row.version !== null ? ` (version ${row.version})` : ""}`],
    ["Stored id", String(row.id)],
  ];
  return (
    <div className="detail" data-testid="log-detail">
      <pre className="message-text" data-testid="detail-message">
        {row.message}
      </pre>
      {(row.parse_error || row.frame_flag) && (
        <div className="notice warn-notice">
          {row.parse_error && <div>Parse error: {row.parse_error} (stored as received)</div>}
          {row.frame_flag && <div>Framing: {row.frame_flag}</div>}
        </div>
      )}
      <div className="grid">
        <section className="card">
          <h2>Fields</h2>
          <dl className="facts">
            {fields.map(([name, value]) => (
              <div key={name} className="fact">
                <dt>{name}</dt>
                <dd>{value}</dd>
              </div>
            ))}
          </dl>
        </section>
        <section className="card" data-testid="structured-data">
          <h2>Structured data</h2>
          {!row.structured_data && <p className="muted">None.</p>}
          {row.structured_data && !elements && <pre>{row.structured_data}</pre>}
          {elements?.map((element, index) => (
            <table key={`${element.id}-${index}`} className="compact sd">
              <caption>{element.id}</caption>
              <tbody>
                {element.params.length === 0 && (
                  <tr>
                    <td className="muted">no parameters</td>
                  </tr>
                )}
                {element.params.map(([name, value], i) => (
                  <tr key={`${name}-${i}`}>
                    <th>{name}</th>
                    <td>{value}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ))}
        </section>
      </div>
      {row.raw_b64 && (
        <section className="card">
          <h2>Frame as received</h2>
          <pre className="raw">{decodeBase64(row.raw_b64)}</pre>
        </section>
      )}
      <p className="actions">
        <Link to={around(row)}>Messages from {row.hostname ?? "all hosts"} one minute around this one</Link>
        {" · "}
        <button type="button" className="link-button" onClick={() => void navigator.clipboard?.writeText(JSON.stringify(row, null, 2))}>
          Copy as JSON
        </button>
      </p>
    </div>
  );
}
