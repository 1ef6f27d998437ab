// Who sends: the senders of stored messages (GET /api/v1/sources) over a chosen window,
// and the node agents that report to this control plane (GET /api/v1/nodes).

import { type FormEvent, useState } from "react";
import { getJson } from "../api";
import { ErrorBox, Field, Page, useLoad } from "../components/common";
import { formatNumber, formatTime } from "../format";
import { Link } from "../router";
import type { NodeSeen, SourcesAnswer } from "../types";
import { FilterDatalists } from "./Search";

export function SourcesPage() {
  const [form, setForm] = useState({ start: "-1h", severity: "" });
  const [query, setQuery] = useState(form);
  const sources = useLoad(
    (signal) => getJson<SourcesAnswer>("/api/v1/sources", { start: query.start, severity: query.severity }, signal),
    [query.start, query.severity],
  );
  const nodes = useLoad((signal) => getJson<{ count: number; nodes: NodeSeen[] }>("/api/v1/nodes", {}, signal), []);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    setQuery(form);
  };
  const searchLink = (hostname: string | null, address: string) => {
    const params = new URLSearchParams({ start: query.start, source: address });
    if (hostname) params.set("host", hostname);
    if (query.severity) params.set("severity", query.severity);
    return `/logs?${params}`;
  };

  return (
    <Page title="Sources">
      <FilterDatalists />
      <form className="filters" onSubmit={submit} aria-label="Sources window">
        <Field label="Since">
          <input list="time-presets" value={form.start} onChange={(e) => setForm({ ...form, start: e.target.value })} />
        </Field>
        <Field label="Severity" hint="<=err: who sent errors">
          <input
            list="severity-presets"
            value={form.severity}
            onChange={(e) => setForm({ ...form, severity: e.target.value })}
          />
        </Field>
        <div className="filter-buttons">
          <button type="submit" className="primary">
            Show
          </button>
        </div>
      </form>
      <ErrorBox error={sources.error} />
      {sources.data?.truncated && (
        <div className="notice">The window holds more than one answer reads; the counts cover its newest part.</div>
      )}
      {sources.data && (
        <div className="table-scroll">
          <table data-testid="sources-table">
            <thead>
              <tr>
                <th>Host</th>
                <th>Address</th>
                <th className="num">Messages</th>
                <th>First seen</th>
                <th>Last seen</th>
              </tr>
            </thead>
            <tbody>
              {sources.data.sources.length === 0 && (
                <tr>
                  <td colSpan={5} className="muted">
                    No sender in this window.
                  </td>
                </tr>
              )}
              {sources.data.sources.map((source) => (
                <tr key={`${source.hostname}/${source.address}`}>
                  <td>
                    <Link to={searchLink(source.hostname, source.address)}>{source.hostname ?? "(no host name)"}</Link>
                  </td>
                  <td>{source.address}</td>
                  <td className="num">{formatNumber(source.messages)}</td>
                  <td>{formatTime(source.first_seen)}</td>
                  <td>{formatTime(source.last_seen)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <h2>Node agents</h2>
      <ErrorBox error={nodes.error} />
      {nodes.data && nodes.data.nodes.length === 0 && <p className="muted">No node agent has reported.</p>}
      {nodes.data && nodes.data.nodes.length > 0 && (
        <div className="table-scroll">
          <table>
            <thead>
              <tr>
                <th>Node</th>
                <th>Status</th>
                <th>Capture</th>
                <th>Interface</th>
                <th>Version</th>
                <th>Last seen</th>
              </tr>
            </thead>
            <tbody>
              {nodes.data.nodes.map((node) => (
                <tr key={node.node_name} className={node.status === "stale" ? "warn" : undefined}>
                  <td>{node.node_name}</td>
                  <td>{node.status}</td>
                  <td>
                    {node.capture_mode}
                    {node.attach_mode ? ` (${node.attach_mode})` : ""}
                  </td>
                  <td>{node.interface ?? "-"}</td>
                  <td>{node.version ?? "-"}</td>
                  <td>
                    {formatTime(node.last_seen)} ({Math.round(node.seconds_since_last_seen)} s ago)
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Page>
  );
}
