//! TLS server settings for syslog over TLS (RFC 5425): certificate chain, private key and
//! optional client-certificate authority, loaded from PEM files and checked at start-up.
//!
//! rustls with the `ring` provider: it builds from crates.io with a C compiler only (no
//! cmake, no Go, no system OpenSSL), see docs/adr/0019-syslog-over-tls.md.

mod subject;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

pub use subject::certificate_subject;

use crate::{Error, Result};

/// Which of the configured files a TLS error concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    CertificateChain,
    PrivateKey,
    ClientCa,
}

impl TlsFile {
    pub const fn label(self) -> &'static str {
        match self {
            TlsFile::CertificateChain => "certificate chain",
            TlsFile::PrivateKey => "private key",
            TlsFile::ClientCa => "client CA",
        }
    }
}

impl std::fmt::Display for TlsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Where the TLS listener's PEM files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate first, then its intermediates.
    pub certificate_chain: PathBuf,
    /// The server certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// When set, clients must present a certificate this authority (or these
    /// authorities) signed.
    pub client_ca: Option<PathBuf>,
}

/// A checked rustls server configuration, shared by every TLS connection.
#[derive(Clone, Debug)]
pub struct TlsServerConfig {
    config: Arc<ServerConfig>,
    client_auth: bool,
}

impl TlsServerConfig {
    /// Reads and checks the files: a missing or unreadable file, a file without the
    /// expected PEM block, or a key that does not match the certificate is an error that
    /// names the file.
    pub fn load(files: &TlsFiles) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = read_certificates(TlsFile::CertificateChain, &files.certificate_chain)?;
        let key = read_private_key(&files.private_key)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| tls_error(TlsFile::CertificateChain, &files.certificate_chain, error))?;
        let builder = match &files.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => builder.with_client_cert_verifier(client_verifier(path, &provider)?),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|error| match error {
            rustls::Error::InconsistentKeys(_) => tls_error(
                TlsFile::PrivateKey,
                &files.private_key,
                format!("does not match the certificate in {}", files.certificate_chain.display()),
            ),
            other => tls_error(TlsFile::PrivateKey, &files.private_key, other),
        })?;
        // No TLS 1.3 session tickets: syslog connections are long-lived, so resumption
        // saves little, and a sender that never reads (most of them) would close its
        // socket with the tickets unread, which makes its kernel send RST instead of FIN
        // and throws away whatever it sent that we had not read yet.
        config.send_tls13_tickets = 0;
        Ok(Self { config: Arc::new(config), client_auth: files.client_ca.is_some() })
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificate(&self) -> bool {
        self.client_auth
    }

    /// The rustls configuration (the control plane serves its API over HTTPS with it).
    pub fn rustls(&self) -> &Arc<ServerConfig> {
        &self.config
    }
}

fn tls_error(file: TlsFile, path: &Path, message: impl ToString) -> Error {
    Error::Tls { file, path: path.to_path_buf(), message: message.to_string() }
}

fn read_file(file: TlsFile, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| tls_error(file, path, format!("cannot read it: {error}")))
}

fn read_certificates(file: TlsFile, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(file, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| tls_error(file, path, format!("is not valid PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(tls_error(file, path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certificates)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read_file(TlsFile::PrivateKey, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        let message = match error {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no PEM private key (PKCS#8, PKCS#1 or SEC1; an encrypted key must be decrypted first)"
                    .to_owned()
            }
            other => format!("is not a valid PEM private key: {other}"),
        };
        tls_error(TlsFile::PrivateKey, path, message)
    })
}

fn client_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(TlsFile::ClientCa, path)? {
        roots.add(certificate).map_err(|error| {
            tls_error(TlsFile::ClientCa, path, format!("holds a bad certificate: {error}"))
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| tls_error(TlsFile::ClientCa, path, error))
}
