//! The seam for `backend = "remote_v2"` models: the manifest's pre- and postprocessing run
//! here as for a local graph, and only the graph's run is handed to a [`RemoteModel`]. The
//! protocol client that implements it lives in the `inference-engine-v2` crate, which the
//! composition root passes to the repository scan as a [`RemoteConnector`]; this crate stays
//! free of transports.

use std::fmt;
use std::sync::Arc;

use inference_engine_core::pipeline::PipelineError;
use inference_engine_core::source::LoadError;
use inference_engine_core::tensor::Tensor;

use crate::manifest::RemoteManifest;

/// A model that runs elsewhere. Called on an executor thread: it may block until the remote
/// answers (bounded by `inference_engine_core::deadline::remaining`).
pub trait RemoteModel: Send + Sync + fmt::Debug {
    /// Runs the model on `inputs` and returns the outputs named `outputs` (any order).
    fn infer(&self, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, PipelineError>;
}

/// Builds the [`RemoteModel`] for a manifest's `[remote]` table.
pub trait RemoteConnector: Send + Sync + fmt::Debug {
    /// Called when the registry loads the model, on a loader thread.
    fn connect(&self, remote: &RemoteManifest) -> Result<Arc<dyn RemoteModel>, LoadError>;
}
