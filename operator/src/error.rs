//! The operator's one error type.

/// What can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API request failed ({action}): {source}")]
    Kube {
        /// What the operator was doing, e.g. "apply DaemonSet ns/name".
        action: String,
        #[source]
        source: kube::Error,
    },
    /// An object could not be turned into JSON or YAML.
    #[error("could not serialize {what}: {message}")]
    Serialize { what: String, message: String },
    /// An `Ingestor` without the metadata every namespaced object has.
    #[error("Ingestor has no {0}")]
    MissingMetadata(&'static str),
    /// Start-up configuration (flags, log level, listen address) is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// An I/O failure of the process itself (binding the HTTP port, writing stdout).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Kube { action, source }
    }

    /// A short, bounded label for the metrics (`reason` of `reconcile_errors_total`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "kubernetes_api",
            Self::Serialize { .. } => "serialize",
            Self::MissingMetadata(_) => "missing_metadata",
            Self::Config(_) => "config",
            Self::Io { .. } => "io",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
