//! Errors of a reconcile. Each variant maps to a closed [`ErrorKind`], the `kind` label of
//! `mcp_operator_reconcile_errors_total`, so a new failure mode cannot explode metric cardinality.

use prometheus_client::encoding::EncodeLabelValue;

/// Why a reconcile failed. The controller requeues with backoff; nothing here crashes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{verb} {kind} {name}: {source}")]
    Kube {
        /// `apply`, `get`, `delete`, `patch-status`, ...
        verb: &'static str,
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The node config could not be rendered as YAML.
    #[error("rendering the node config: {0}")]
    Render(#[from] serde_yaml_ng::Error),
    /// The cluster CA or node certificate could not be generated.
    #[error("generating the cluster certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The object lacks a field the API server always sets (namespace, uid).
    #[error("the McpCluster has no {0}")]
    MissingField(&'static str),
}

/// The metric label of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ErrorKind {
    /// [`Error::Kube`] with a conflict (409).
    conflict,
    /// [`Error::Kube`] otherwise.
    kube_api,
    /// [`Error::Render`].
    render,
    /// [`Error::Certificate`].
    certificate,
    /// [`Error::MissingField`].
    missing_field,
}

impl Error {
    /// Shorthand for [`Error::Kube`].
    pub fn kube(verb: &'static str, kind: &'static str, name: &str, source: kube::Error) -> Self {
        Error::Kube {
            verb,
            kind,
            name: name.to_owned(),
            source,
        }
    }

    /// The metric label.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Kube {
                source: kube::Error::Api(e),
                ..
            } if e.code == 409 => ErrorKind::conflict,
            Error::Kube { .. } => ErrorKind::kube_api,
            Error::Render(_) => ErrorKind::render,
            Error::Certificate(_) => ErrorKind::certificate,
            Error::MissingField(_) => ErrorKind::missing_field,
        }
    }
}
