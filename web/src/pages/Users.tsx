// Users and API keys (admin only). A new API key's secret is shown once, right after it is
// created; the appliance keeps only its hash.

import { type FormEvent, useState } from "react";
import { getJson, type Role, ROLES, sendJson } from "../api";
import { useMe } from "../auth";
import { ErrorBox, Field, Page, useLoad } from "../components/common";
import { formatTime } from "../format";
import type { ApiKey, CreatedApiKey, User } from "../types";

function RoleSelect(props: { value: Role; onChange: (role: Role) => void; name: string; label?: string }) {
  return (
    <select
      name={props.name}
      aria-label={props.label}
      value={props.value}
      onChange={(e) => props.onChange(e.target.value as Role)}
    >
      {ROLES.map((role) => (
        <option key={role}>{role}</option>
      ))}
    </select>
  );
}

function UsersSection() {
  const me = useMe();
  const users = useLoad((signal) => getJson<{ users: User[] }>("/api/v1/users", {}, signal), []);
  const [form, setForm] = useState({ username: "", password: "", role: "viewer" as Role });
  const [error, setError] = useState<unknown>(null);
  const [message, setMessage] = useState<string | null>(null);

  const act = async (what: () => Promise<unknown>, done: string) => {
    setError(null);
    setMessage(null);
    try {
      await what();
      setMessage(done);
      users.reload();
    } catch (failure) {
      setError(failure);
    }
  };
  const create = (event: FormEvent) => {
    event.preventDefault();
    void act(async () => {
      await sendJson("POST", "/api/v1/users", form);
      setForm({ username: "", password: "", role: "viewer" });
    }, `User ${form.username} created.`);
  };
  const setRole = (user: User, role: Role) =>
    void act(() => sendJson("PUT", `/api/v1/users/${encodeURIComponent(user.username)}`, { role }), `${user.username} is now ${role}.`);
  const resetPassword = (user: User) => {
    const password = window.prompt(`New password for ${user.username}`);
    if (password) {
      void act(
        () => sendJson("PUT", `/api/v1/users/${encodeURIComponent(user.username)}`, { password }),
        `Password of ${user.username} changed.`,
      );
    }
  };
  const remove = (user: User) => {
    if (window.confirm(`Delete user ${user.username}?`)) {
      void act(() => sendJson("DELETE", `/api/v1/users/${encodeURIComponent(user.username)}`), `User ${user.username} deleted.`);
    }
  };

  return (
    <section className="card" data-testid="users">
      <h2>Users</h2>
      <ErrorBox error={users.error || error} />
      {message && (
        <div className="notice" role="status">
          {message}
        </div>
      )}
      {users.data && (
        <div className="table-scroll">
          <table className="compact">
            <thead>
              <tr>
                <th>User</th>
                <th>Role</th>
                <th className="hide-narrow">Created</th>
                <th>Last sign-in</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {users.data.users.map((user) => (
                <tr key={user.username} data-username={user.username}>
                  <td>
                    {user.username}
                    {user.username === me.username && <span className="muted"> (you)</span>}
                    {user.locked_until && <span className="badge warn-badge">locked until {formatTime(user.locked_until)}</span>}
                  </td>
                  <td>
                    <RoleSelect
                      name="role"
                      label={`role of ${user.username}`}
                      value={user.role}
                      onChange={(role) => setRole(user, role)}
                    />
                  </td>
                  <td className="hide-narrow">{formatTime(user.created_at)}</td>
                  <td>{formatTime(user.last_login_at)}</td>
                  <td className="row-actions">
                    <button type="button" onClick={() => resetPassword(user)}>
                      Password
                    </button>
                    <button type="button" className="danger" onClick={() => remove(user)}>
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <form className="form-row" onSubmit={create} aria-label="New user">
        <Field label="User name">
          <input
            name="new-username"
            value={form.username}
            onChange={(e) => setForm({ ...form, username: e.target.value })}
            required
            autoComplete="off"
          />
        </Field>
        <Field label="Password">
          <input
            name="new-password"
            type="password"
            value={form.password}
            onChange={(e) => setForm({ ...form, password: e.target.value })}
            required
            autoComplete="new-password"
          />
        </Field>
        <Field label="Role">
          <RoleSelect name="new-role" value={form.role} onChange={(role) => setForm({ ...form, role })} />
        </Field>
        <div className="filter-buttons">
          <button type="submit" className="primary">
            Add user
          </button>
        </div>
      </form>
    </section>
  );
}

function ApiKeysSection() {
  const keys = useLoad((signal) => getJson<{ api_keys: ApiKey[] }>("/api/v1/api-keys", {}, signal), []);
  const [form, setForm] = useState({ name: "", role: "maintainer" as Role });
  const [created, setCreated] = useState<CreatedApiKey | null>(null);
  const [error, setError] = useState<unknown>(null);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    try {
      setCreated(await sendJson<CreatedApiKey>("POST", "/api/v1/api-keys", form));
      setForm({ name: "", role: "maintainer" });
      keys.reload();
    } catch (failure) {
      setError(failure);
    }
  };
  const revoke = async (key: ApiKey) => {
    if (!window.confirm(`Revoke API key ${key.name}? Whatever uses it stops working.`)) return;
    setError(null);
    try {
      await sendJson("DELETE", `/api/v1/api-keys/${encodeURIComponent(key.id)}`);
      keys.reload();
    } catch (failure) {
      setError(failure);
    }
  };

  return (
    <section className="card" data-testid="api-keys">
      <h2>API keys</h2>
      <p className="muted">
        For machines: node agents and scripts send it as <code>Authorization: Bearer kk_…</code>.
      </p>
      <ErrorBox error={keys.error || error} />
      {created && (
        <div className="new-key" role="status">
          <p>
            API key <strong>{created.name}</strong> ({created.role}) created. Copy it now: it is shown only this once.
          </p>
          <code data-testid="new-api-key">{created.key}</code>
          <div className="form-buttons">
            <button type="button" onClick={() => void navigator.clipboard?.writeText(created.key)}>
              Copy
            </button>
            <button type="button" onClick={() => setCreated(null)}>
              Done
            </button>
          </div>
        </div>
      )}
      {keys.data && keys.data.api_keys.length === 0 && <p className="muted">No API key yet.</p>}
      {keys.data && keys.data.api_keys.length > 0 && (
        <div className="table-scroll">
          <table className="compact">
            <thead>
              <tr>
                <th>Name</th>
                <th>Role</th>
                <th>Prefix</th>
                <th className="hide-narrow">Created</th>
                <th>Last used</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {keys.data.api_keys.map((key) => (
                <tr key={key.id} data-key-name={key.name}>
                  <td>{key.name}</td>
                  <td>{key.role}</td>
                  <td>
                    <code>{key.prefix}…</code>
                  </td>
                  <td className="hide-narrow">{formatTime(key.created_at)}</td>
                  <td>{formatTime(key.last_used_at)}</td>
                  <td>
                    <button type="button" className="danger" onClick={() => void revoke(key)}>
                      Revoke
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <form className="form-row" onSubmit={create} aria-label="New API key">
        <Field label="Name">
          <input
            name="key-name"
            value={form.name}
            onChange={(e) => setForm({ ...form, name: e.target.value })}
            required
            placeholder="node-agent-rack-1"
          />
        </Field>
        <Field label="Role">
          <RoleSelect name="key-role" value={form.role} onChange={(role) => setForm({ ...form, role })} />
        </Field>
        <div className="filter-buttons">
          <button type="submit" className="primary">
            Create key
          </button>
        </div>
      </form>
    </section>
  );
}

export function UsersPage() {
  return (
    <Page title="Users & API keys">
      <div className="stack">
        <UsersSection />
        <ApiKeysSection />
      </div>
    </Page>
  );
}
