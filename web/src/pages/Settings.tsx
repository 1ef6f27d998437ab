// Live settings (maintainer and admin): listeners, capture, source allow/deny lists, the
// per-source rate limit and retention. Each section reads GET /api/v1/config/<name> and
// saves with PUT; the appliance validates everything first and applies it at once.

import { type FormEvent, type ReactNode, useEffect, useState } from "react";
import { getJson, sendJson } from "../api";
import { ErrorBox, Field, Page } from "../components/common";
import type { CaptureConfig, ListenerConfig, RateLimitsConfig, RetentionConfig, SourcesConfig } from "../types";

const PROTOCOLS = ["syslog-udp", "syslog-tcp", "syslog-tls", "statsd-udp", "influx-udp"];

interface Section<T> {
  value: T | undefined;
  loadError: unknown;
  saveError: unknown;
  saving: boolean;
  savedAt: number | null;
  save(next: T): Promise<void>;
}

function useConfigSection<T>(name: string): Section<T> {
  const [value, setValue] = useState<T>();
  const [loadError, setLoadError] = useState<unknown>(null);
  const [saveError, setSaveError] = useState<unknown>(null);
  const [saving, setSaving] = useState(false);
  const [savedAt, setSavedAt] = useState<number | null>(null);
  useEffect(() => {
    const controller = new AbortController();
    getJson<T>(`/api/v1/config/${name}`, {}, controller.signal)
      .then(setValue)
      .catch((error: unknown) => {
        if (!controller.signal.aborted) setLoadError(error);
      });
    return () => controller.abort();
  }, [name]);
  const save = async (next: T) => {
    setSaving(true);
    setSaveError(null);
    setSavedAt(null);
    try {
      setValue(await sendJson<T>("PUT", `/api/v1/config/${name}`, next));
      setSavedAt(Date.now());
    } catch (error) {
      setSaveError(error);
    } finally {
      setSaving(false);
    }
  };
  return { value, loadError, saveError, saving, savedAt, save };
}

function SectionCard<T>(props: {
  id: string;
  title: string;
  section: Section<T>;
  description: ReactNode;
  onSubmit: () => void;
  children: ReactNode;
}) {
  const { section } = props;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    props.onSubmit();
  };
  return (
    <section className="card settings-section" data-testid={`settings-${props.id}`}>
      <h2>{props.title}</h2>
      <p className="muted">{props.description}</p>
      <ErrorBox error={section.loadError} />
      {section.value === undefined && !section.loadError && <p>Loading…</p>}
      {section.value !== undefined && (
        <form onSubmit={submit} aria-label={props.title}>
          {props.children}
          <ErrorBox error={section.saveError} />
          <div className="form-buttons">
            <button type="submit" className="primary" disabled={section.saving}>
              {section.saving ? "Saving…" : "Save"}
            </button>
            {section.savedAt && (
              <span className="saved" role="status">
                Saved and applied.
              </span>
            )}
          </div>
        </form>
      )}
    </section>
  );
}

function linesOf(text: string): string[] {
  return text
    .split(/[\n,]/)
    .map((line) => line.trim())
    .filter(Boolean);
}

function ListenersSection() {
  const section = useConfigSection<{ listeners: ListenerConfig[] }>("listeners");
  const [rows, setRows] = useState<ListenerConfig[]>([]);
  useEffect(() => {
    if (section.value) setRows(section.value.listeners);
  }, [section.value]);
  const update = (index: number, change: Partial<ListenerConfig>) =>
    setRows((current) => current.map((row, i) => (i === index ? { ...row, ...change } : row)));
  return (
    <SectionCard
      id="listeners"
      title="Listeners"
      section={section}
      description="Where syslog and metrics are received. Saving binds new addresses and closes removed ones."
      onSubmit={() => void section.save({ listeners: rows })}
    >
      <div className="table-scroll">
      <table className="compact editable">
        <thead>
          <tr>
            <th>Protocol</th>
            <th>Address</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {rows.map((row, index) => (
            <tr key={index}>
              <td>
                <select
                  aria-label={`listener ${index + 1} protocol`}
                  value={row.protocol}
                  onChange={(e) => update(index, { protocol: e.target.value })}
                >
                  {PROTOCOLS.map((p) => (
                    <option key={p}>{p}</option>
                  ))}
                </select>
              </td>
              <td>
                <input
                  aria-label={`listener ${index + 1} address`}
                  value={row.listen}
                  onChange={(e) => update(index, { listen: e.target.value })}
                  placeholder="0.0.0.0:514"
                />
              </td>
              <td>
                <button type="button" onClick={() => setRows((current) => current.filter((_, i) => i !== index))}>
                  Remove
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      </div>
      <button type="button" onClick={() => setRows((current) => [...current, { protocol: "syslog-udp", listen: "" }])}>
        Add listener
      </button>
    </SectionCard>
  );
}

function CaptureSection() {
  const section = useConfigSection<CaptureConfig>("capture");
  const [mode, setMode] = useState<CaptureConfig["mode"]>("auto");
  const [iface, setIface] = useState("");
  useEffect(() => {
    if (section.value) {
      setMode(section.value.mode);
      setIface(section.value.interface ?? "");
    }
  }, [section.value]);
  return (
    <SectionCard
      id="capture"
      title="Capture"
      section={section}
      description={
        <>
          How syslog over UDP is captured: XDP steering to AF_XDP sockets, or plain sockets. In use now:{" "}
          <strong data-testid="capture-active">{section.value?.active ?? "-"}</strong>.
        </>
      }
      onSubmit={() => void section.save({ mode, interface: iface.trim() || null })}
    >
      <div className="form-row">
        <Field label="Mode">
          <select name="capture-mode" value={mode} onChange={(e) => setMode(e.target.value as CaptureConfig["mode"])}>
            <option value="auto">auto (XDP where possible)</option>
            <option value="xdp">xdp</option>
            <option value="socket">socket</option>
          </select>
        </Field>
        <Field label="Interface" hint="empty: none">
          <input name="capture-interface" value={iface} onChange={(e) => setIface(e.target.value)} placeholder="eth0" />
        </Field>
      </div>
    </SectionCard>
  );
}

function SourcesSection() {
  const section = useConfigSection<SourcesConfig>("sources");
  const [allow, setAllow] = useState("");
  const [deny, setDeny] = useState("");
  useEffect(() => {
    if (section.value) {
      setAllow(section.value.allow.join("\n"));
      setDeny(section.value.deny.join("\n"));
    }
  }, [section.value]);
  return (
    <SectionCard
      id="sources"
      title="Source filter"
      section={section}
      description="Addresses or networks, one per line. An empty allow list lets in everyone not denied."
      onSubmit={() => void section.save({ allow: linesOf(allow), deny: linesOf(deny) })}
    >
      <div className="form-row">
        <Field label="Allow" wide>
          <textarea name="allow" rows={4} value={allow} onChange={(e) => setAllow(e.target.value)} placeholder="10.0.0.0/8" />
        </Field>
        <Field label="Deny" wide>
          <textarea name="deny" rows={4} value={deny} onChange={(e) => setDeny(e.target.value)} placeholder="10.1.2.3/32" />
        </Field>
      </div>
    </SectionCard>
  );
}

function RateLimitSection() {
  const section = useConfigSection<RateLimitsConfig>("rate-limits");
  const [enabled, setEnabled] = useState(false);
  const [rate, setRate] = useState("1000");
  const [burst, setBurst] = useState("2000");
  useEffect(() => {
    if (section.value) {
      setEnabled(section.value.per_source !== null);
      if (section.value.per_source) {
        setRate(String(section.value.per_source.messages_per_second));
        setBurst(String(section.value.per_source.burst));
      }
    }
  }, [section.value]);
  return (
    <SectionCard
      id="rate-limits"
      title="Rate limit"
      section={section}
      description="Messages per second each source address may send; beyond it messages are dropped and counted."
      onSubmit={() =>
        void section.save({
          per_source: enabled ? { messages_per_second: Number(rate), burst: Number(burst) } : null,
        })
      }
    >
      <label className="check">
        <input type="checkbox" name="rate-limit-enabled" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} />
        Limit each source
      </label>
      <div className="form-row">
        <Field label="Messages per second">
          <input
            name="messages_per_second"
            type="number"
            value={rate}
            disabled={!enabled}
            onChange={(e) => setRate(e.target.value)}
          />
        </Field>
        <Field label="Burst" hint="messages above the rate at once">
          <input name="burst" type="number" value={burst} disabled={!enabled} onChange={(e) => setBurst(e.target.value)} />
        </Field>
      </div>
    </SectionCard>
  );
}

function RetentionSection() {
  const section = useConfigSection<RetentionConfig>("retention");
  const [maxAge, setMaxAge] = useState("");
  const [maxBytes, setMaxBytes] = useState("");
  useEffect(() => {
    if (section.value) {
      setMaxAge(section.value.max_age ?? "");
      setMaxBytes(section.value.max_bytes === null ? "" : String(section.value.max_bytes));
    }
  }, [section.value]);
  return (
    <SectionCard
      id="retention"
      title="Retention"
      section={section}
      description="Log blocks older or beyond this size are removed. Empty: no limit."
      onSubmit={() =>
        void section.save({ max_age: maxAge.trim() || null, max_bytes: maxBytes.trim() ? Number(maxBytes) : null })
      }
    >
      <div className="form-row">
        <Field label="Maximum age" hint="30d, 12h">
          <input name="max_age" value={maxAge} onChange={(e) => setMaxAge(e.target.value)} placeholder="30d" />
        </Field>
        <Field label="Maximum size (bytes)">
          <input name="max_bytes" type="number" value={maxBytes} onChange={(e) => setMaxBytes(e.target.value)} />
        </Field>
      </div>
    </SectionCard>
  );
}

export function SettingsPage() {
  return (
    <Page title="Settings">
      <p className="muted">Changes apply at once, are kept across restarts and are recorded in the audit log.</p>
      <div className="grid">
        <RateLimitSection />
        <SourcesSection />
        <RetentionSection />
        <CaptureSection />
        <ListenersSection />
      </div>
    </Page>
  );
}
