//! End-to-end tests of the real `killkrill` binary: started on free ports with a
//! temporary data directory, driven by real clients (logger(1), raw sockets, HTTP); and
//! the store against real SQLite and PostgreSQL.
mod harness;
mod servers;

mod auth;
mod auth_store;
mod capture;
mod cli;
mod compaction;
mod handoff;
mod http_ingest;
mod http_metrics;
mod ingest;
mod journal;
mod live_config;
mod metrics;
mod metrics_store;
mod observability;
mod outage;
mod parse_command;
mod query;
mod rbac;
mod shutdown;
mod store;
mod tls;
mod web_ui;
