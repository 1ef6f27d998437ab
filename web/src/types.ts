// Shapes of the API's answers (docs/api.md), as far as the UI reads them.

import type { Role } from "./api";

export interface LogRow {
  id: number;
  received_at: string;
  source: string;
  listener: string;
  format: string;
  facility: number | null;
  severity: number | null;
  version: number | null;
  timestamp: string | null;
  hostname: string | null;
  app_name: string | null;
  procid: string | null;
  msgid: string | null;
  structured_data: string | null;
  message: string;
  raw_b64?: string | null;
  parse_error: string | null;
  frame_flag: string | null;
}

export interface LogPage {
  count: number;
  logs: LogRow[];
  next_cursor: string | null;
}

export interface ListenerStats {
  listener: string;
  capture: string;
  received_messages: number;
  received_bytes: number;
  parse_errors: number;
  handed_off_batches: number;
  receive_errors: number;
  dropped: Record<string, number>;
  frames_flagged: Record<string, number>;
  connections: Record<string, number>;
  tls_handshakes?: Record<string, number>;
}

export interface Stats {
  capture: {
    path: string;
    fallback_reason?: string | null;
    interface?: string;
    attach?: string;
    queues?: { queue: number; bind: string }[];
  };
  listeners: ListenerStats[];
  xdp: Record<string, Record<string, number>> | null;
  writer: Record<string, number>;
  spool: Record<string, number>;
  store: {
    backend: string;
    blocks: number;
    messages: number;
    raw_bytes: number;
    stored_bytes: number;
    compression_ratio: number;
    oldest_received_at: string | null;
    newest_received_at: string | null;
  };
  // Counters other parts of the appliance add (rate limits, ...) are shown generically.
  [section: string]: unknown;
}

export interface SourceSeen {
  hostname: string | null;
  address: string;
  messages: number;
  first_seen: string;
  last_seen: string;
}

export interface SourcesAnswer {
  sources: SourceSeen[];
  blocks_read: number;
  truncated: boolean;
}

export interface NodeSeen {
  node_name: string;
  version?: string;
  interface?: string | null;
  capture_mode?: string;
  attach_mode?: string | null;
  pinned?: boolean;
  last_seen: string;
  seconds_since_last_seen: number;
  status: "up" | "stale";
}

export interface MetricPoint {
  time: string;
  value: number | null;
}

export interface MetricSeries {
  tags: Record<string, string>;
  kind: string;
  points: MetricPoint[];
}

export interface MetricsAnswer {
  name: string;
  agg: string;
  start: string;
  end: string;
  step_s: number;
  series: MetricSeries[];
}

export interface User {
  username: string;
  role: Role;
  created_at: string;
  last_login_at: string | null;
  locked_until: string | null;
}

export interface ApiKey {
  id: string;
  name: string;
  role: Role;
  prefix: string;
  created_at: string;
  last_used_at: string | null;
}

export interface CreatedApiKey extends Omit<ApiKey, "last_used_at"> {
  key: string;
}

export interface AuditEntry {
  id: string | number;
  at: string;
  actor: string;
  role: Role | null;
  action: string;
  source: string;
  status: number;
  detail: string | null;
}

export interface ListenerConfig {
  protocol: string;
  listen: string;
}

export interface CaptureConfig {
  mode: "auto" | "xdp" | "socket";
  interface: string | null;
  active?: string;
}

export interface SourcesConfig {
  allow: string[];
  deny: string[];
}

export interface RateLimitsConfig {
  per_source: { messages_per_second: number; burst: number } | null;
}

export interface RetentionConfig {
  max_age: string | null;
  max_bytes: number | null;
}
