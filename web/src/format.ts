// How numbers, times and syslog codes are written on screen.

export const SEVERITIES = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

export const FACILITIES = [
  "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
  "ftp", "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3",
  "local4", "local5", "local6", "local7",
];

export function severityName(severity: number | null): string {
  return severity === null ? "-" : (SEVERITIES[severity] ?? String(severity));
}

export function facilityName(facility: number | null): string {
  return facility === null ? "-" : (FACILITIES[facility] ?? String(facility));
}

const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

export function formatNumber(value: number | null | undefined): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "-";
  return numberFormat.format(value);
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** Local date and time to the second, e.g. 2026-11-23 14:20:01. */
export function formatTime(rfc3339: string | null | undefined): string {
  if (!rfc3339) return "-";
  const date = new Date(rfc3339);
  if (Number.isNaN(date.getTime())) return rfc3339;
  const pad = (n: number) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

export function formatClock(ms: number): string {
  const date = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
