//! THE table of who may call what (docs/security.md): every route the API serves, by
//! method and matched route, with the least role it needs. The guard consults only this;
//! the RBAC matrix test walks it; a route under /api/ that is missing here is refused.

use axum::http::Method;

use crate::store::Role;

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credentials.
    Public,
    /// Public unless `auth.metrics_public = false`, then viewer.
    Metrics,
    /// At least this role.
    Role(Role),
}

/// One row of the table: `path` is the route as written in the router (`{param}` for a
/// parameter); a path ending in `/*` covers every route below it.
#[derive(Clone, Copy, Debug)]
pub struct RoutePolicy {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const fn row(method: &'static str, path: &'static str, access: Access) -> RoutePolicy {
    RoutePolicy { method, path, access }
}

use Access::{Metrics, Public};
const VIEWER: Access = Access::Role(Role::Viewer);
const MAINTAINER: Access = Access::Role(Role::Maintainer);
const ADMIN: Access = Access::Role(Role::Admin);

pub const ROUTES: &[RoutePolicy] = &[
    row("GET", "/health", Public),
    row("GET", "/ready", Public),
    row("GET", "/metrics", Metrics),
    // Reading.
    row("GET", "/api/v1/logs", VIEWER),
    row("GET", "/api/v1/logs/tail", VIEWER),
    row("GET", "/api/v1/metrics", VIEWER),
    row("GET", "/api/v1/metrics/names", VIEWER),
    row("GET", "/api/v1/stats", VIEWER),
    row("GET", "/api/v1/sources", VIEWER),
    row("GET", "/api/v1/nodes", VIEWER),
    row("GET", "/api/v1/openapi.json", VIEWER),
    row("GET", "/api/v1/config", VIEWER),
    row("GET", "/api/v1/config/*", VIEWER),
    // Ingest and node agents.
    row("POST", "/api/v1/logs", MAINTAINER),
    row("POST", "/api/v1/metrics", MAINTAINER),
    row("POST", "/api/v1/prom/write", MAINTAINER),
    row("POST", "/api/v1/nodes/heartbeat", MAINTAINER),
    // Live configuration.
    row("PUT", "/api/v1/config/*", MAINTAINER),
    // Sessions.
    row("POST", "/api/v1/auth/login", Public),
    row("POST", "/api/v1/auth/refresh", Public),
    row("POST", "/api/v1/auth/setup", Public),
    row("POST", "/api/v1/auth/logout", VIEWER),
    row("GET", "/api/v1/auth/me", VIEWER),
    // Administration.
    row("GET", "/api/v1/users", ADMIN),
    row("POST", "/api/v1/users", ADMIN),
    row("PUT", "/api/v1/users/{username}", ADMIN),
    row("DELETE", "/api/v1/users/{username}", ADMIN),
    row("GET", "/api/v1/api-keys", ADMIN),
    row("POST", "/api/v1/api-keys", ADMIN),
    row("DELETE", "/api/v1/api-keys/{id}", ADMIN),
    row("GET", "/api/v1/audit", ADMIN),
];

/// What `method` on the matched `route` needs; None when the table has no row for it.
pub fn access(method: &Method, route: &str) -> Option<Access> {
    // HEAD is a GET without the body.
    let method = if method == Method::HEAD { "GET" } else { method.as_str() };
    let rows = ROUTES.iter().filter(|policy| policy.method == method);
    rows.clone()
        .find(|policy| policy.path == route)
        .or_else(|| {
            rows.filter_map(|policy| Some((policy, policy.path.strip_suffix("/*")?)))
                .find(|(_, prefix)| route.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/')))
                .map(|(policy, _)| policy)
        })
        .map(|policy| policy.access)
}

/// Whether the table has a row for `route` with any method.
pub fn route_known(route: &str) -> bool {
    ROUTES.iter().any(|policy| policy.path == route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rows_win_and_wildcards_cover_what_is_below_them() {
        assert_eq!(access(&Method::GET, "/api/v1/logs"), Some(VIEWER));
        assert_eq!(access(&Method::POST, "/api/v1/logs"), Some(MAINTAINER));
        assert_eq!(access(&Method::HEAD, "/health"), Some(Public));
        assert_eq!(access(&Method::PUT, "/api/v1/config/rate-limits"), Some(MAINTAINER));
        assert_eq!(access(&Method::GET, "/api/v1/config/rate-limits"), Some(VIEWER));
        assert_eq!(access(&Method::GET, "/api/v1/config"), Some(VIEWER));
        assert_eq!(access(&Method::PUT, "/api/v1/config"), None);
        assert_eq!(access(&Method::PUT, "/api/v1/configx/a"), None);
        assert_eq!(access(&Method::DELETE, "/api/v1/logs"), None);
        assert_eq!(access(&Method::DELETE, "/api/v1/users/{username}"), Some(ADMIN));
    }

    const PENDING: [(&str, &str); 3] =
        [("GET", "/api/v1/config"), ("POST", "/api/v1/metrics"), ("POST", "/api/v1/prom/write")];

    /// The roles the contract (docs/security.md) gives; a change here is a change of the
    /// security model, not a detail.
    #[test]
    fn the_table_gives_the_roles_of_the_contract() {
        let role = |method: &str, path: &str| access(&Method::from_bytes(method.as_bytes()).unwrap(), path);
        for path in
            ["/api/v1/logs", "/api/v1/logs/tail", "/api/v1/metrics", "/api/v1/stats", "/api/v1/auth/me"]
        {
            assert_eq!(role("GET", path), Some(VIEWER), "{path}");
        }
        for (method, path) in [
            ("POST", "/api/v1/logs"),
            ("POST", "/api/v1/nodes/heartbeat"),
            ("PUT", "/api/v1/config/listeners"),
        ] {
            assert_eq!(role(method, path), Some(MAINTAINER), "{method} {path}");
        }
        for (method, path) in [
            ("GET", "/api/v1/users"),
            ("DELETE", "/api/v1/users/{username}"),
            ("POST", "/api/v1/api-keys"),
            ("GET", "/api/v1/audit"),
        ] {
            assert_eq!(role(method, path), Some(ADMIN), "{method} {path}");
        }
        for path in ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/setup"] {
            assert_eq!(role("POST", path), Some(Public), "{path}");
        }
        assert_eq!(role("GET", "/metrics"), Some(Metrics));
    }

    #[test]
    fn every_documented_operation_has_a_row_and_every_row_is_documented() {
        use utoipa::OpenApi as _;
        let document = serde_json::to_value(super::super::openapi::ApiDoc::openapi()).unwrap();
        let mut documented = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let method = method.to_uppercase();
                let parsed = Method::from_bytes(method.as_bytes()).unwrap();
                assert!(access(&parsed, path).is_some(), "{method} {path} has no row in policy::ROUTES");
                documented.push(format!("{method} {path}"));
            }
        }
        for policy in ROUTES.iter().filter(|policy| !policy.path.ends_with("/*")) {
            let name = format!("{} {}", policy.method, policy.path);
            // Rows for routes that other work adds (the config overview, metrics ingest,
            // remote write) are ahead of the router.
            if PENDING.contains(&(policy.method, policy.path)) {
                continue;
            }
            assert!(documented.contains(&name), "{name} is in policy::ROUTES but not served/documented");
        }
    }
}
