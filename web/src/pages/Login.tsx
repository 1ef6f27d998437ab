import { type FormEvent, useState } from "react";
import { ApiError, sendPublic } from "../api";
import { useAuth } from "../auth";
import { errorText } from "../format";

export function LoginPage() {
  const { state, login } = useAuth();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(state.status === "anonymous" ? (state.reason ?? null) : null);
  const [busy, setBusy] = useState(false);
  // First start without KILLKRILL_ADMIN_PASSWORD: the first admin is made with the
  // one-time setup token from the log or data_dir/setup-token.
  const [setupMode, setSetupMode] = useState(false);
  const [setupToken, setSetupToken] = useState("");

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (setupMode) {
        try {
          await sendPublic("/api/v1/auth/setup", { setup_token: setupToken.trim(), username, password });
        } catch (failure) {
          if (failure instanceof ApiError && failure.status === 409) {
            setSetupMode(false);
            throw new Error("An admin exists already: sign in.");
          }
          throw failure;
        }
      }
      await login(username, password);
    } catch (failure) {
      setError(errorText(failure));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="login">
      <form className="login-card" onSubmit={submit} aria-label="Sign in">
        <h1>
          <img src="/favicon.svg" alt="" width={32} height={32} /> Killkrill
        </h1>
        {setupMode && (
          <>
            <p className="muted">
              Create the first admin with the one-time setup token from the appliance's log (or{" "}
              <code>setup-token</code> in its data directory).
            </p>
            <label className="field">
              <span className="field-label">Setup token</span>
              <input
                name="setup_token"
                autoComplete="off"
                value={setupToken}
                onChange={(e) => setSetupToken(e.target.value)}
                required
              />
            </label>
          </>
        )}
        <label className="field">
          <span className="field-label">User name</span>
          <input
            name="username"
            autoComplete="username"
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            required
            autoFocus
          />
        </label>
        <label className="field">
          <span className="field-label">Password</span>
          <input
            name="password"
            type="password"
            autoComplete={setupMode ? "new-password" : "current-password"}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </label>
        {error && (
          <div className="error" role="alert">
            {error}
          </div>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Signing in…" : setupMode ? "Create admin and sign in" : "Sign in"}
        </button>
        <button type="button" className="link-button" onClick={() => setSetupMode((on) => !on)}>
          {setupMode ? "Sign in with an existing account" : "First start: create the admin with a setup token"}
        </button>
      </form>
    </div>
  );
}
