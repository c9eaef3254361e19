//! The crate's one error type.

use std::path::PathBuf;

use inference_engine_core::error::{Classified, ErrorKind};

/// Why reading a manifest, scanning a repository, loading or inspecting a graph failed.
///
/// Messages are sentences meant for an operator: they name the file, the key or the graph
/// element at fault. Request-time errors are not here: they are core `PipelineError`s.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `model.toml` is not valid TOML or does not match the manifest's schema (unknown key,
    /// wrong type, unknown datatype). The message is toml's own and names the key.
    #[error("{0}")]
    ManifestSyntax(String),
    /// `model.toml` parses but says something impossible (a shape without a batch dimension,
    /// argmax without labels, ...).
    #[error("{0}")]
    InvalidManifest(String),
    /// The ONNX file is unreadable, does not match its manifest, or its runtime cannot
    /// prepare it.
    #[error("{0}")]
    Model(String),
    /// The model needs ONNX Runtime and the process has no library (the sentence says why and
    /// how to fix it).
    #[error("{0}")]
    RuntimeUnavailable(String),
}

impl Classified for OnnxError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io_error",
            Self::ManifestSyntax(_) | Self::InvalidManifest(_) => "invalid_manifest",
            Self::Model(_) => "invalid_model",
            Self::RuntimeUnavailable(_) => "runtime_unavailable",
        }
    }
}
