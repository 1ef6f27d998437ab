// Messages as a table; a row opens the message's detail page.

import { formatTime, severityName, facilityName } from "../format";
import { navigate } from "../router";
import type { LogRow } from "../types";

// Rows seen in this tab, so that opening one shows it at once (a deep link or a reload
// finds it through the search instead).
const seen = new Map<number, LogRow>();
const SEEN_MAX = 5000;

export function rememberRows(rows: LogRow[]) {
  for (const row of rows) {
    seen.delete(row.id);
    seen.set(row.id, row);
  }
  while (seen.size > SEEN_MAX) seen.delete(seen.keys().next().value!);
}

export function rememberedRow(id: number): LogRow | undefined {
  return seen.get(id);
}

export function detailPath(row: LogRow): string {
  return `/logs/${row.id}?at=${encodeURIComponent(row.received_at)}`;
}

export function SeverityBadge({ severity }: { severity: number | null }) {
  return <span className={`sev sev-${severity ?? "none"}`}>{severityName(severity)}</span>;
}

export function LogTable({ logs, emptyText }: { logs: LogRow[]; emptyText?: string }) {
  rememberRows(logs);
  if (logs.length === 0) return <p className="muted">{emptyText ?? "No message matches."}</p>;
  return (
    <div className="table-scroll">
      <table className="logs" data-testid="log-table">
        <thead>
          <tr>
            <th>Received</th>
            <th>Severity</th>
            <th className="hide-narrow">Facility</th>
            <th>Host</th>
            <th>App</th>
            <th className="hide-narrow">Source</th>
            <th>Message</th>
          </tr>
        </thead>
        <tbody>
          {logs.map((row) => (
            <tr
              key={row.id}
              className={row.parse_error ? "log-row flagged" : "log-row"}
              data-id={row.id}
              tabIndex={0}
              onClick={() => navigate(detailPath(row))}
              onKeyDown={(event) => {
                if (event.key === "Enter") navigate(detailPath(row));
              }}
            >
              <td className="nowrap" title={row.received_at}>
                {formatTime(row.received_at)}
              </td>
              <td>
                <SeverityBadge severity={row.severity} />
              </td>
              <td className="hide-narrow">{facilityName(row.facility)}</td>
              <td>{row.hostname ?? "-"}</td>
              <td>{row.app_name ?? "-"}</td>
              <td className="hide-narrow nowrap">{row.source}</td>
              <td className="message">{row.message}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
