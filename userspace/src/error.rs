use std::net::SocketAddr;

use crate::listener::ListenerKind;

/// Errors of the data plane; each names the listener and address it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{listener}: cannot bind {address}: {source}{hint}", hint = bind_hint(source))]
    Bind { listener: ListenerKind, address: SocketAddr, source: std::io::Error },
    #[error("{listener}: cannot configure the socket: {source}")]
    SocketOption { listener: ListenerKind, source: std::io::Error },
    #[error("{listener}: journal {path}: {source}", path = path.display())]
    Journal { listener: ListenerKind, path: std::path::PathBuf, source: std::io::Error },
    #[error("{listener}: cannot start its thread: {source}")]
    Spawn { listener: ListenerKind, source: std::io::Error },
    #[error("syslog-tls: {file} {path}: {message}", path = path.display())]
    Tls { file: crate::tls::TlsFile, path: std::path::PathBuf, message: String },
    #[error("syslog-tls: no certificate is configured (set syslog.tls_cert and syslog.tls_key)")]
    NoTlsCertificate,
    #[error("{listener} is not a data-plane listener")]
    NotADataPlaneListener { listener: ListenerKind },
    /// `dataplane.cores` or `dataplane.runtime` cannot be honoured.
    #[error("{setting}: {message}")]
    Cores { setting: &'static str, message: String },
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn bind_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; pick a higher port)"
        }
        std::io::ErrorKind::AddrInUse => " (another process listens there; pick another port)",
        _ => "",
    }
}
