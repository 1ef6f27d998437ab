// The one way the UI talks to the appliance: every call carries the access token in the
// Authorization header (never in a URL), a 401 triggers one refresh with the refresh token
// (tokens rotate) and one retry, and a failed refresh ends the session.

export type Role = "viewer" | "maintainer" | "admin";

export const ROLES: Role[] = ["viewer", "maintainer", "admin"];

export function roleAtLeast(role: Role | undefined, needed: Role): boolean {
  if (!role) return false;
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

export interface Me {
  username: string;
  role: Role;
  kind: "user" | "api_key";
}

interface TokenAnswer {
  access_token: string;
  refresh_token: string;
  token_type: string;
  expires_in: number;
  user: { username: string; role: Role };
}

interface Session {
  accessToken: string;
  refreshToken: string;
}

/** An error answer of the API (`{"error": {"code", "message"}}`) or a network failure. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// localStorage so that a reload or a second tab keeps the session; the refresh token
// rotates, so every tab re-reads it before refreshing (docs/adr/0027).
const STORAGE_KEY = "killkrill.session";

function loadSession(): Session | null {
  try {
    const text = localStorage.getItem(STORAGE_KEY);
    if (!text) return null;
    const value = JSON.parse(text) as Partial<Session>;
    if (typeof value.accessToken === "string" && typeof value.refreshToken === "string") {
      return { accessToken: value.accessToken, refreshToken: value.refreshToken };
    }
  } catch {
    // A damaged entry is the same as none.
  }
  return null;
}

function saveSession(session: Session | null) {
  if (session) localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  else localStorage.removeItem(STORAGE_KEY);
}

const sessionEndedListeners = new Set<() => void>();

/** Called when the session ends without the user logging out (refresh refused). */
export function onSessionEnded(listener: () => void): () => void {
  sessionEndedListeners.add(listener);
  return () => sessionEndedListeners.delete(listener);
}

export function hasSession(): boolean {
  return loadSession() !== null;
}

async function errorFrom(response: Response): Promise<ApiError> {
  let code = "http_" + response.status;
  let message = response.statusText || "request failed";
  try {
    const body = (await response.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message;
  } catch {
    // Not JSON: keep the status text.
  }
  if (response.status === 429) {
    const retry = response.headers.get("Retry-After");
    if (retry) message += ` (try again in ${retry} s)`;
  }
  return new ApiError(response.status, code, message);
}

async function send(path: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, "network", `cannot reach the appliance (${String(error)})`);
  }
}

async function postTokens(path: string, body: unknown): Promise<TokenAnswer> {
  const response = await send(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await errorFrom(response);
  return (await response.json()) as TokenAnswer;
}

/** A call that needs no credentials (first-admin setup). */
export async function sendPublic(path: string, body: unknown): Promise<void> {
  const response = await send(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await errorFrom(response);
}

export async function login(username: string, password: string): Promise<void> {
  const answer = await postTokens("/api/v1/auth/login", { username, password });
  saveSession({ accessToken: answer.access_token, refreshToken: answer.refresh_token });
}

export async function logout(): Promise<void> {
  const session = loadSession();
  saveSession(null);
  if (!session) return;
  try {
    await send("/api/v1/auth/logout", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${session.accessToken}` },
      body: JSON.stringify({ refresh_token: session.refreshToken }),
    });
  } catch {
    // Logged out locally either way; the refresh token expires on its own.
  }
}

let refreshing: Promise<boolean> | null = null;

/** Trades the refresh token for new tokens; one refresh at a time per tab. */
function refresh(staleAccessToken: string): Promise<boolean> {
  if (!refreshing) {
    refreshing = (async () => {
      const session = loadSession();
      if (!session) return false;
      // Another tab may have refreshed already: its new token is in storage.
      if (session.accessToken !== staleAccessToken) return true;
      try {
        const answer = await postTokens("/api/v1/auth/refresh", { refresh_token: session.refreshToken });
        saveSession({ accessToken: answer.access_token, refreshToken: answer.refresh_token });
        return true;
      } catch (error) {
        const current = loadSession();
        if (current && current.accessToken !== staleAccessToken) return true;
        if (error instanceof ApiError && error.status !== 0) {
          saveSession(null);
          sessionEndedListeners.forEach((listener) => listener());
        }
        return false;
      }
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** fetch() with the session's token; refreshes once on 401. Throws ApiError when not ok. */
export async function apiFetch(path: string, init: RequestInit = {}): Promise<Response> {
  for (let attempt = 0; ; attempt++) {
    const session = loadSession();
    if (!session) throw new ApiError(401, "unauthorized", "not signed in");
    const headers = new Headers(init.headers);
    headers.set("Authorization", `Bearer ${session.accessToken}`);
    if (!headers.has("Accept")) headers.set("Accept", "application/json");
    const response = await send(path, { ...init, headers });
    if (response.status === 401 && attempt === 0 && (await refresh(session.accessToken))) continue;
    if (!response.ok) {
      const error = await errorFrom(response);
      if (response.status === 401) {
        saveSession(null);
        sessionEndedListeners.forEach((listener) => listener());
      }
      throw error;
    }
    return response;
  }
}

export type Params = Record<string, string | number | undefined | null>;

/** `?a=1&b=2` from the non-empty values, or "". */
export function queryString(params: Params): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    const text = String(value).trim();
    if (text !== "") search.set(key, text);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function getJson<T>(path: string, params: Params = {}, signal?: AbortSignal): Promise<T> {
  const response = await apiFetch(path + queryString(params), { signal });
  return (await response.json()) as T;
}

export async function sendJson<T>(method: "POST" | "PUT" | "DELETE", path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const response = await apiFetch(path, init);
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}
