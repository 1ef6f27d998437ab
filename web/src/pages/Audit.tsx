// The audit log (admin only): every change made through the API, newest first, paged by
// cursor.

import { useState } from "react";
import { getJson } from "../api";
import { ErrorBox, Page, useLoad } from "../components/common";
import { formatTime } from "../format";
import type { AuditEntry } from "../types";

const PAGE = 100;

export function AuditPage() {
  // Cursors of the pages seen, so that "Newer" can go back.
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1] ?? null;
  const page = useLoad(
    (signal) =>
      getJson<{ entries: AuditEntry[]; next_cursor: string | null }>("/api/v1/audit", { limit: PAGE, cursor }, signal),
    [cursor],
  );

  return (
    <Page
      title="Audit log"
      actions={
        <button type="button" onClick={() => (cursors.length > 1 ? setCursors([null]) : page.reload())}>
          Refresh
        </button>
      }
    >
      <ErrorBox error={page.error} />
      {page.data && page.data.entries.length === 0 && <p className="muted">Nothing recorded yet.</p>}
      {page.data && page.data.entries.length > 0 && (
        <div className="table-scroll">
          <table className="compact" data-testid="audit-table">
            <thead>
              <tr>
                <th>When</th>
                <th>Who</th>
                <th>Role</th>
                <th>Action</th>
                <th>Status</th>
                <th className="hide-narrow">From</th>
                <th className="hide-narrow">Detail</th>
              </tr>
            </thead>
            <tbody>
              {page.data.entries.map((entry) => (
                <tr key={entry.id} className={entry.status >= 400 ? "warn" : undefined}>
                  <td className="nowrap" title={entry.at}>
                    {formatTime(entry.at)}
                  </td>
                  <td>{entry.actor}</td>
                  <td>{entry.role ?? "-"}</td>
                  <td>
                    <code>{entry.action}</code>
                  </td>
                  <td>{entry.status}</td>
                  <td className="hide-narrow">{entry.source}</td>
                  <td className="hide-narrow">{entry.detail ?? ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <div className="pager">
        {cursors.length > 1 && (
          <button type="button" onClick={() => setCursors((c) => c.slice(0, -1))}>
            Newer
          </button>
        )}
        {page.data?.next_cursor && (
          <button type="button" onClick={() => setCursors((c) => [...c, page.data!.next_cursor])}>
            Older
          </button>
        )}
      </div>
    </Page>
  );
}
