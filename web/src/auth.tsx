// Who is signed in, from GET /api/v1/auth/me; the role decides which pages show.

import { createContext, type ReactNode, useCallback, useContext, useEffect, useState } from "react";
import * as api from "./api";
import type { Me } from "./api";

type AuthState = { status: "loading" } | { status: "anonymous"; reason?: string } | { status: "signed-in"; me: Me };

interface Auth {
  state: AuthState;
  login(username: string, password: string): Promise<void>;
  logout(): Promise<void>;
}

const AuthContext = createContext<Auth | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [state, setState] = useState<AuthState>(() =>
    api.hasSession() ? { status: "loading" } : { status: "anonymous" },
  );

  const loadMe = useCallback(async () => {
    try {
      const me = await api.getJson<Me>("/api/v1/auth/me");
      setState({ status: "signed-in", me });
    } catch (error) {
      setState({ status: "anonymous", reason: error instanceof Error ? error.message : String(error) });
      throw error;
    }
  }, []);

  useEffect(() => {
    if (api.hasSession()) loadMe().catch(() => undefined);
    return api.onSessionEnded(() => setState({ status: "anonymous", reason: "Your session ended; sign in again." }));
  }, [loadMe]);

  const login = useCallback(
    async (username: string, password: string) => {
      await api.login(username, password);
      await loadMe();
    },
    [loadMe],
  );

  const logout = useCallback(async () => {
    await api.logout();
    setState({ status: "anonymous" });
  }, []);

  return <AuthContext.Provider value={{ state, login, logout }}>{children}</AuthContext.Provider>;
}

export function useAuth(): Auth {
  const auth = useContext(AuthContext);
  if (!auth) throw new Error("useAuth outside AuthProvider");
  return auth;
}

/** The signed-in user; only for pages behind the sign-in guard. */
export function useMe(): Me {
  const { state } = useAuth();
  if (state.status !== "signed-in") throw new Error("useMe without a signed-in user");
  return state.me;
}
