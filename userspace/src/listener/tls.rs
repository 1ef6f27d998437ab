//! One TLS connection of the syslog-over-TLS listener (RFC 5425): a rustls server session
//! driven by hand over a non-blocking socket, so that it fits the shared mio loop in
//! [`super::stream`]. Handshake failures are counted and logged here; they end only their
//! own connection.

use std::io::Read;
use std::net::SocketAddr;

use mio::net::TcpStream;
use rustls::ServerConnection;

use super::ListenerKind;
use super::stream::Received;
use crate::counters::ListenerCounters;
use crate::tls::{TlsServerConfig, certificate_subject};

/// What one pass of reading TLS records gave.
enum Pull {
    Progress,
    WouldBlock,
    Closed,
}

pub(super) struct TlsSession {
    connection: ServerConnection,
    handshaking: bool,
}

impl TlsSession {
    pub(super) fn new(config: &TlsServerConfig) -> Result<Self, rustls::Error> {
        Ok(Self { connection: ServerConnection::new(config.rustls().clone())?, handshaking: true })
    }

    pub(super) fn is_handshaking(&self) -> bool {
        self.handshaking
    }

    pub(super) fn wants_write(&self) -> bool {
        self.connection.wants_write()
    }

    /// Reads plaintext into `buffer`, pulling and decrypting records from the socket as
    /// needed and sending what the handshake asks for.
    pub(super) fn receive(
        &mut self,
        stream: &mut TcpStream,
        buffer: &mut [u8],
        kind: ListenerKind,
        peer: SocketAddr,
        counters: &ListenerCounters,
    ) -> Received {
        if self.send_pending(stream).is_err() {
            return self.fail_io(kind, peer, counters);
        }
        loop {
            // Plaintext already decrypted goes first: rustls refuses to read more records
            // while its plaintext buffer is full.
            match self.connection.reader().read(buffer) {
                Ok(0) => return Received::Closed,
                Ok(read) => return Received::Bytes(read),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                // The peer closed the TCP connection without close_notify: RFC 5425
                // senders often do; what it sent is kept by the framer.
                Err(_) => return Received::Closed,
            }
            match self.pull_records(stream, kind, peer, counters) {
                Pull::Progress => {}
                Pull::WouldBlock => return Received::WouldBlock,
                Pull::Closed => return Received::Closed,
            }
        }
    }

    /// Moves the handshake on without taking plaintext, for when the hand-off ring is
    /// full: back pressure must not stall handshakes into their timeout (TLS 1.3 clients
    /// send data before the server has read their Finished). False when the connection
    /// must end (already counted).
    pub(super) fn advance_handshake(
        &mut self,
        stream: &mut TcpStream,
        kind: ListenerKind,
        peer: SocketAddr,
        counters: &ListenerCounters,
    ) -> bool {
        if self.send_pending(stream).is_err() {
            self.fail_io(kind, peer, counters);
            return false;
        }
        while self.handshaking {
            match self.pull_records(stream, kind, peer, counters) {
                Pull::Progress => {}
                Pull::WouldBlock => return true,
                Pull::Closed => return false,
            }
        }
        true
    }

    /// Reads TLS records from the socket once, processes them and sends the replies.
    fn pull_records(
        &mut self,
        stream: &mut TcpStream,
        kind: ListenerKind,
        peer: SocketAddr,
        counters: &ListenerCounters,
    ) -> Pull {
        match self.connection.read_tls(stream) {
            Ok(0) => {
                if self.handshaking {
                    ListenerCounters::add(&counters.tls_handshake_failures, 1);
                    tracing::debug!(listener = kind.label(), peer = %peer, "Client closed before the TLS handshake ended.");
                }
                return Pull::Closed;
            }
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Pull::WouldBlock,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => return Pull::Progress,
            Err(_) => {
                self.fail_io(kind, peer, counters);
                return Pull::Closed;
            }
        }
        if let Err(error) = self.connection.process_new_packets() {
            // Tell the peer why (rustls queued an alert), best effort, then hang up.
            let _ = self.send_pending(stream);
            self.record_failure(&error, kind, peer, counters);
            return Pull::Closed;
        }
        if self.send_pending(stream).is_err() {
            self.fail_io(kind, peer, counters);
            return Pull::Closed;
        }
        if self.handshaking && !self.connection.is_handshaking() {
            self.handshaking = false;
            self.record_handshake(kind, peer, counters);
        }
        Pull::Progress
    }

    /// Sends close_notify, best effort, when we end a connection that finished its
    /// handshake (RFC 5425 section 4.4).
    pub(super) fn close(&mut self, stream: &mut TcpStream) {
        if !self.handshaking {
            self.connection.send_close_notify();
            let _ = self.send_pending(stream);
        }
    }

    /// Writes queued TLS records until the socket would block (the caller then asks for
    /// WRITABLE events).
    fn send_pending(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        while self.connection.wants_write() {
            match self.connection.write_tls(stream) {
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn fail_io(&self, kind: ListenerKind, peer: SocketAddr, counters: &ListenerCounters) -> Received {
        if self.handshaking {
            ListenerCounters::add(&counters.tls_handshake_failures, 1);
            tracing::debug!(listener = kind.label(), peer = %peer, "Connection failed during the TLS handshake.");
        } else {
            ListenerCounters::add(&counters.receive_errors, 1);
        }
        Received::Closed
    }

    fn record_failure(
        &self,
        error: &rustls::Error,
        kind: ListenerKind,
        peer: SocketAddr,
        counters: &ListenerCounters,
    ) {
        if !self.handshaking {
            ListenerCounters::add(&counters.receive_errors, 1);
            tracing::warn!(listener = kind.label(), peer = %peer, error = %error, "TLS error; connection closed.");
            return;
        }
        let client_certificate = matches!(
            error,
            rustls::Error::NoCertificatesPresented
                | rustls::Error::InvalidCertificate(_)
                | rustls::Error::InvalidCertRevocationList(_)
        );
        if client_certificate {
            ListenerCounters::add(&counters.tls_client_certificates_rejected, 1);
            tracing::warn!(listener = kind.label(), peer = %peer, error = %error, "TLS client certificate refused.");
        } else {
            ListenerCounters::add(&counters.tls_handshake_failures, 1);
            tracing::warn!(listener = kind.label(), peer = %peer, error = %error, "TLS handshake failed.");
        }
    }

    fn record_handshake(&self, kind: ListenerKind, peer: SocketAddr, counters: &ListenerCounters) {
        ListenerCounters::add(&counters.tls_handshakes_completed, 1);
        let version =
            self.connection.protocol_version().map_or("unknown", |v| v.as_str().unwrap_or("unknown"));
        match self.connection.peer_certificates().and_then(|chain| chain.first()) {
            Some(certificate) => {
                let subject = certificate_subject(certificate).unwrap_or_else(|| "unreadable".to_owned());
                tracing::info!(
                    listener = kind.label(),
                    peer = %peer,
                    tls_version = version,
                    client_subject = %subject,
                    "TLS client accepted."
                );
            }
            None => {
                tracing::debug!(listener = kind.label(), peer = %peer, tls_version = version, "TLS client accepted.");
            }
        }
    }
}
