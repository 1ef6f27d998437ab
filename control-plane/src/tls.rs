//! The API over HTTPS (docs/adr/0022): the certificate files are read and checked by the
//! data plane's TLS loader (the one syslog over TLS uses); handshakes run in their own
//! tasks so that a slow client cannot hold up the accept loop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::{Error, Result};

/// A client must finish its TLS handshake within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handshaken and waiting for the HTTP server.
const READY_QUEUE: usize = 128;

/// A checked server configuration for the API.
#[derive(Clone)]
pub struct ApiTlsConfig {
    acceptor: TlsAcceptor,
}

/// Reads `api.tls_cert` and `api.tls_key`; errors name the setting and the file.
pub fn load_api_tls(cert: &Path, key: &Path) -> Result<ApiTlsConfig> {
    use killkrill_dataplane::tls::{TlsFile, TlsFiles, TlsServerConfig};
    let files =
        TlsFiles { certificate_chain: cert.to_path_buf(), private_key: key.to_path_buf(), client_ca: None };
    let server = TlsServerConfig::load(&files).map_err(|error| match error {
        killkrill_dataplane::Error::Tls { file, path, message } => {
            let setting = match file {
                TlsFile::PrivateKey => "api.tls_key",
                TlsFile::CertificateChain | TlsFile::ClientCa => "api.tls_cert",
            };
            Error::Config(format!("{setting} = {}: {message}", path.display()))
        }
        other => Error::Config(format!("api.tls_cert: {other}")),
    })?;
    let mut config = rustls::ServerConfig::clone(server.rustls());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // HTTP clients read what they are sent, so resumption tickets are fine here.
    config.send_tls13_tickets = 2;
    Ok(ApiTlsConfig { acceptor: TlsAcceptor::from(Arc::new(config)) })
}

/// TLS connections, handshaken, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: ApiTlsConfig, stop: watch::Receiver<bool>) -> Self {
        let local = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(listener, tls.acceptor, sender, stop));
        Self { ready, local }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let acceptor = acceptor.clone();
                let ready = ready.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = ready.send((stream, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(peer = %peer, error = %error, "API TLS handshake failed.")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "API TLS handshake timed out."),
                    }
                });
            }
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %error, "API accept failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop stopped (shutdown): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
