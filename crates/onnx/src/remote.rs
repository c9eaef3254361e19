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

use crate::manifest::{DataType, Manifest, RemoteManifest};
use crate::outputs::Output;
use crate::runtime::Graph;

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

/// A remote model as the pipeline's graph: the answer's outputs in the manifest's order, each
/// checked against its declared datatype.
pub(crate) struct RemoteGraph {
    remote: Arc<dyn RemoteModel>,
    outputs: Vec<(String, DataType)>,
    names: Vec<String>,
}

impl RemoteGraph {
    pub(crate) fn new(remote: Arc<dyn RemoteModel>, manifest: &Manifest) -> Self {
        Self {
            remote,
            outputs: manifest
                .outputs
                .iter()
                .map(|output| (output.name.clone(), output.datatype))
                .collect(),
            names: manifest
                .outputs
                .iter()
                .map(|output| output.name.clone())
                .collect(),
        }
    }
}

impl Graph for RemoteGraph {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Output>, PipelineError> {
        let mut answered = self.remote.infer(inputs, &self.names)?;
        self.outputs
            .iter()
            .map(|(name, declared)| {
                let position = answered
                    .iter()
                    .position(|tensor| &tensor.name == name)
                    .ok_or_else(|| {
                        PipelineError::Inference(format!(
                            "the remote server did not return output `{name}`"
                        ))
                    })?;
                let tensor = answered.swap_remove(position);
                if declared.tensor() != Some(tensor.datatype()) {
                    return Err(PipelineError::Inference(format!(
                        "the remote server returned output `{name}` as {}; model.toml declares \
                         {declared}",
                        tensor.datatype()
                    )));
                }
                Ok(Output::Tensor(tensor))
            })
            .collect()
    }
}
