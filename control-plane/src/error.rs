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
    /// The request conflicts with the current state or with what is stored (409): a port
    /// already in use, the last admin.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    Block(#[from] crate::store::block::BlockError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("damaged hand-off entry: {0}")]
    HandoffEntry(String),
    /// No, bad or expired credentials (401).
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// Authenticated, but the role is too low (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Too many attempts (429, with Retry-After); `locked` when the account is locked.
    #[error("{message}")]
    TooManyAttempts { locked: bool, retry_after_s: u64, message: String },
    /// The named thing does not exist (404).
    #[error("not found: {0}")]
    NotFound(String),
    #[error("internal: {0}")]
    Internal(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
