//! What runs a graph: ONNX Runtime (the default) or tract (the pure-Rust fallback), behind one
//! [`Graph`] seam that the pipeline calls with core tensors.
//!
//! [`Runtimes`] is what a process offers its ONNX models: the ONNX Runtime library it loaded
//! once at start (or why it could not), and whether the operator forced tract for every model
//! (`ONNX_RUNTIME=tract`). A model's manifest picks its runtime; [`Runtimes::effective`] says
//! which one it gets.

/// Matches a core `TensorData`, giving `$plain` for every variant that holds plain elements
/// (numbers and booleans, which a runtime's tensor takes as they are) with `$values` bound to
/// the vector, and the remaining variants (`Fp16`, `Bf16`, `Bytes`) to the arms after it.
macro_rules! match_plain_elements {
    ($data:expr, $values:ident => $plain:expr, $($rest:tt)*) => {
        match $data {
            TensorData::Fp32($values) => $plain,
            TensorData::Fp64($values) => $plain,
            TensorData::Int64($values) => $plain,
            TensorData::Int32($values) => $plain,
            TensorData::Int16($values) => $plain,
            TensorData::Int8($values) => $plain,
            TensorData::Uint64($values) => $plain,
            TensorData::Uint32($values) => $plain,
            TensorData::Uint16($values) => $plain,
            TensorData::Uint8($values) => $plain,
            TensorData::Bool($values) => $plain,
            $($rest)*
        }
    };
}

pub(crate) mod onnxruntime;
pub(crate) mod tract;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use inference_engine_core::pipeline::PipelineError;
use inference_engine_core::source::LoadContext;
use inference_engine_core::tensor::Tensor;

use crate::error::OnnxError;
use crate::manifest::{Manifest, Runtime};
use crate::outputs::Output;

pub use self::onnxruntime::OnnxRuntime;

/// A loaded graph. Runs on executor threads (it may block) and may be called from several
/// of them at once.
pub(crate) trait Graph: Send + Sync {
    /// Runs one batch: `inputs` in the manifest's order, each with the examples as its first
    /// dimension; returns the manifest's outputs in its order.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Output>, PipelineError>;
}

/// The runtimes this process offers ONNX models.
#[derive(Clone)]
pub struct Runtimes {
    /// The library, or the sentence saying why it is not available.
    onnxruntime: Result<Arc<OnnxRuntime>, String>,
    /// `ONNX_RUNTIME=tract`: every model runs on tract, whatever its manifest says.
    tract_only: bool,
    /// Cores of the machine, for the default intra-op threads.
    cores: usize,
}

impl fmt::Debug for Runtimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtimes")
            .field(
                "onnxruntime",
                &self.onnxruntime.as_ref().map(|runtime| runtime.version()),
            )
            .field("tract_only", &self.tract_only)
            .finish()
    }
}

impl Runtimes {
    /// `onnxruntime`: what [`OnnxRuntime::load`] gave (its error as the sentence models that
    /// need it will report); `tract_only` when the operator runs every model on tract.
    pub fn new(onnxruntime: Result<Arc<OnnxRuntime>, String>, tract_only: bool) -> Self {
        Self {
            onnxruntime,
            tract_only,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }

    /// tract for every model, no ONNX Runtime: for tools and tests that need no library.
    pub fn tract_only() -> Self {
        Self::new(
            Err("ONNX Runtime is not used: ONNX_RUNTIME=tract runs every model on tract".into()),
            true,
        )
    }

    /// The ONNX Runtime library, if it loaded.
    pub fn onnxruntime(&self) -> Result<&Arc<OnnxRuntime>, &str> {
        self.onnxruntime.as_ref().map_err(String::as_str)
    }

    pub fn is_tract_only(&self) -> bool {
        self.tract_only
    }

    /// The runtime a manifest's model gets.
    pub fn effective(&self, requested: Runtime) -> Runtime {
        if self.tract_only {
            Runtime::Tract
        } else {
            requested
        }
    }

    /// Loads the graph at `path` on the runtime `manifest` gets. Blocking.
    pub(crate) fn load_graph(
        &self,
        path: &Path,
        manifest: &Manifest,
        context: &LoadContext,
    ) -> Result<Box<dyn Graph>, OnnxError> {
        match self.effective(manifest.runtime) {
            Runtime::Tract => Ok(Box::new(tract::TractGraph::load(path, manifest)?)),
            Runtime::Onnxruntime => {
                let runtime = self
                    .onnxruntime
                    .as_ref()
                    .map_err(|reason| OnnxError::RuntimeUnavailable(reason.clone()))?;
                let graph =
                    onnxruntime::OrtGraph::load(runtime, path, manifest, context, self.cores)?;
                Ok(Box::new(graph))
            }
        }
    }
}
