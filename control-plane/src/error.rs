/// Errors of the control plane. HTTP mapping lives in one place: `api::error`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("data directory {path}: {message}")]
    DataDir { path: std::path::PathBuf, message: String },
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("store migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    DataPlane(#[from] killkrill_dataplane::Error),
    #[error("{what}: cannot bind {address}: {source}")]
    Bind { what: &'static str, address: std::net::SocketAddr, source: std::io::Error },
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("bad request: {parameter}: {message}")]
    BadRequest { parameter: &'static str, message: String },
    /// A request body field that failed validation; `field` is its path
    /// (`listeners[1].listen`).
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    /// The request cannot be done in the current state (a port already in use).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Block(#[from] crate::store::block::BlockError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("damaged hand-off entry: {0}")]
    HandoffEntry(String),
    #[error("internal: {0}")]
    Internal(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
