// The frame around every page: navigation by role, the sign-in guard and the routes.

import { type ReactNode, useEffect, useState } from "react";
import { type Role, roleAtLeast } from "./api";
import { useAuth } from "./auth";
import { Link, navigate, useLocation } from "./router";
import { AuditPage } from "./pages/Audit";
import { DashboardPage } from "./pages/Dashboard";
import { LoginPage } from "./pages/Login";
import { LogDetailPage } from "./pages/LogDetail";
import { MetricsPage } from "./pages/Metrics";
import { SearchPage } from "./pages/Search";
import { SettingsPage } from "./pages/Settings";
import { SourcesPage } from "./pages/Sources";
import { TailPage } from "./pages/Tail";
import { UsersPage } from "./pages/Users";

interface Route {
  path: string;
  title: string;
  role: Role;
  render: (id?: string) => ReactNode;
  /** Listed in the navigation. */
  nav: boolean;
}

// /health, /ready and /metrics belong to the server (probes, Prometheus), so the metrics
// explorer lives at /charts.
const ROUTES: Route[] = [
  { path: "/", title: "Dashboard", role: "viewer", nav: true, render: () => <DashboardPage /> },
  { path: "/logs", title: "Search", role: "viewer", nav: true, render: () => <SearchPage /> },
  { path: "/logs/:id", title: "Message", role: "viewer", nav: false, render: (id) => <LogDetailPage id={id!} /> },
  { path: "/tail", title: "Live tail", role: "viewer", nav: true, render: () => <TailPage /> },
  { path: "/charts", title: "Metrics", role: "viewer", nav: true, render: () => <MetricsPage /> },
  { path: "/sources", title: "Sources", role: "viewer", nav: true, render: () => <SourcesPage /> },
  { path: "/settings", title: "Settings", role: "maintainer", nav: true, render: () => <SettingsPage /> },
  { path: "/users", title: "Users & keys", role: "admin", nav: true, render: () => <UsersPage /> },
  { path: "/audit", title: "Audit log", role: "admin", nav: true, render: () => <AuditPage /> },
];

function match(path: string): { route: Route; id?: string } | null {
  const trimmed = path.length > 1 ? path.replace(/\/+$/, "") : path;
  for (const route of ROUTES) {
    if (route.path.endsWith("/:id")) {
      const prefix = route.path.slice(0, -3);
      if (trimmed.startsWith(prefix) && trimmed.length > prefix.length && !trimmed.slice(prefix.length).includes("/")) {
        return { route, id: decodeURIComponent(trimmed.slice(prefix.length)) };
      }
    } else if (route.path === trimmed) {
      return { route };
    }
  }
  return null;
}

export function App() {
  const { state } = useAuth();
  const location = useLocation();

  if (location.path === "/login") {
    return state.status === "signed-in" ? <Redirect to={location.search.get("next") ?? "/"} /> : <LoginPage />;
  }
  if (state.status === "loading") {
    return <div className="splash">Loading…</div>;
  }
  if (state.status === "anonymous") {
    const next = location.path + (location.search.toString() ? `?${location.search}` : "");
    return <Redirect to={next === "/" ? "/login" : `/login?next=${encodeURIComponent(next)}`} />;
  }
  const me = state.me;
  const found = match(location.path);
  let content: ReactNode;
  if (!found) {
    content = <NotFound />;
  } else if (!roleAtLeast(me.role, found.route.role)) {
    content = <NotAllowed needed={found.route.role} role={me.role} title={found.route.title} />;
  } else {
    content = found.route.render(found.id);
  }
  return (
    <Shell currentPath={found?.route.path ?? ""} role={me.role} username={me.username}>
      {content}
    </Shell>
  );
}

function Redirect({ to }: { to: string }) {
  useEffect(() => navigate(to, { replace: true }), [to]);
  return null;
}

function Shell(props: { currentPath: string; role: Role; username: string; children: ReactNode }) {
  const { logout } = useAuth();
  const [menuOpen, setMenuOpen] = useState(false);
  const current = props.currentPath === "/logs/:id" ? "/logs" : props.currentPath;
  useEffect(() => setMenuOpen(false), [props.currentPath]);
  return (
    <div className="shell">
      <header className="topbar">
        <Link to="/" className="brand">
          <img src="/favicon.svg" alt="" width={24} height={24} />
          Killkrill
        </Link>
        <button
          className="menu-toggle"
          aria-expanded={menuOpen}
          aria-controls="main-nav"
          onClick={() => setMenuOpen((open) => !open)}
        >
          Menu
        </button>
        <nav id="main-nav" className={menuOpen ? "nav open" : "nav"} aria-label="Main">
          {ROUTES.filter((route) => route.nav && roleAtLeast(props.role, route.role)).map((route) => (
            <Link key={route.path} to={route.path} className={route.path === current ? "active" : undefined}>
              {route.title}
            </Link>
          ))}
        </nav>
        <div className="whoami">
          <span title={`signed in as ${props.username} (${props.role})`}>
            {props.username} <span className={`role role-${props.role}`}>{props.role}</span>
          </span>
          <button className="link-button" onClick={() => void logout().then(() => navigate("/login"))}>
            Sign out
          </button>
        </div>
      </header>
      <main>{props.children}</main>
    </div>
  );
}

function NotAllowed(props: { needed: Role; role: Role; title: string }) {
  return (
    <section className="page not-allowed" data-testid="not-allowed">
      <h1>Not allowed</h1>
      <p>
        {props.title} needs the <strong>{props.needed}</strong> role; you are signed in as{" "}
        <strong>{props.role}</strong>. Ask an administrator if you need it.
      </p>
      <p>
        <Link to="/">Back to the dashboard</Link>
      </p>
    </section>
  );
}

function NotFound() {
  return (
    <section className="page">
      <h1>Page not found</h1>
      <p>
        <Link to="/">Back to the dashboard</Link>
      </p>
    </section>
  );
}
