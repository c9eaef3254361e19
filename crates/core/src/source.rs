//! Where a model comes from before it is loaded: its static description and how to load it.
//!
//! A [`ModelSource`] is what a repository scan (or the built-in set) produces for each
//! `(name, version)`. It is cheap to hold; the expensive part, [`ModelSource::load`], runs on a
//! dedicated loader thread when the registry decides the model is needed. The description is
//! known without loading, so `GET /models/{name}/{version}` answers for unloaded models too.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::Model;
use crate::steps::PipelineDescription;

/// Where a model's implementation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A pipeline compiled into the binary.
    Builtin,
    /// An ONNX graph from the model repository, run in-process.
    Onnx,
    /// Run by a remote Open Inference Protocol server; pre- and postprocessing stay local.
    RemoteV2,
    /// A pipeline of other models (`[[steps]]` in its `model.toml`), run step by step by the
    /// inference service, never by an executor thread of its own.
    Pipeline,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Onnx => "onnx",
            Self::RemoteV2 => "remote_v2",
            Self::Pipeline => "pipeline",
        }
    }
}

/// One named tensor of a model's signature. `datatype` uses the Open Inference Protocol names
/// (`FP32`, `INT64`, `BYTES`, ...), or [`MAP_DATATYPE`] for an output that is a sequence of maps
/// (one per example, as scikit-learn's `ZipMap` produces); `-1` in `shape` is a dimension of
/// any size (the batch first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// The datatype of an output that holds one map per example.
pub const MAP_DATATYPE: &str = "MAP";

impl TensorSpec {
    /// The datatype as the Open Inference Protocol carries it: a map output travels as `BYTES`,
    /// one JSON object per example.
    pub fn protocol_datatype(&self) -> &str {
        if self.datatype == MAP_DATATYPE {
            "BYTES"
        } else {
            &self.datatype
        }
    }
}

/// Dynamic batching as a model's manifest declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchingConfig {
    /// Most requests stacked into one model run.
    pub max_batch_size: usize,
    /// Longest the first request of a batch waits for company.
    pub max_delay: Duration,
}

/// What is known about a model without loading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDescription {
    pub backend: Backend,
    /// What runs an in-process graph (`onnxruntime`, `tract`); `None` for built-ins and
    /// remote models.
    pub runtime: Option<&'static str>,
    /// Free text from the manifest.
    pub description: Option<String>,
    /// Empty for models that take any JSON (the built-ins).
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub batching: Option<BatchingConfig>,
    /// The model's own request body limit (bytes), instead of the server's.
    pub max_body_bytes: Option<usize>,
    /// `POST /predict` may carry the one input's raw little-endian elements
    /// (`application/octet-stream`) instead of JSON.
    pub raw_input: bool,
    /// A lower bound of the loaded model's resident size known before loading (the graph
    /// file's size); the registry uses max(hint, measured RSS growth).
    pub size_hint_bytes: Option<u64>,
    /// The steps of a `backend = "pipeline"` model; `None` for every other backend.
    pub pipeline: Option<PipelineDescription>,
    /// What the model takes besides its tensors: text for a tokenizer, images to decode.
    pub preprocess: Option<Preprocessing>,
    /// How outputs become the JSON answer (`raw`, `classification`, `embedding`, ...);
    /// `None` for built-ins.
    pub postprocess: Option<&'static str>,
}

/// The JSON form of an image for a model with image preprocessing:
/// `{"image_base64": "<base64 of a PNG, JPEG or WebP file>"}`.
pub const IMAGE_FIELD: &str = "image_base64";

/// Raw inputs a model turns into its tensors itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preprocessing {
    /// Strings (or pairs of strings) through a tokenizer, truncated to `max_length` tokens.
    Text { max_length: usize },
    /// Encoded images (PNG, JPEG, WebP), resized to `width` × `height`; `channels` is `rgb`
    /// or `grayscale`.
    Image {
        width: u32,
        height: u32,
        channels: &'static str,
    },
}

impl ModelDescription {
    /// A built-in pipeline: JSON in, JSON out, no tensor signature.
    pub fn builtin() -> Self {
        Self {
            backend: Backend::Builtin,
            runtime: None,
            description: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            batching: None,
            max_body_bytes: None,
            raw_input: false,
            size_hint_bytes: None,
            preprocess: None,
            postprocess: None,
            pipeline: None,
        }
    }
}

/// Why a model could not be loaded; shown in `GET /models` and the logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

/// What the registry knows at load time about how the model will be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadContext {
    /// Threads of the executor pool the model runs on: at most this many runs of it at once
    /// (a runtime that keeps one session per concurrent run sizes itself by it).
    pub executor_threads: usize,
}

impl Default for LoadContext {
    fn default() -> Self {
        Self {
            executor_threads: 1,
        }
    }
}

/// A model that can be loaded on demand.
pub trait ModelSource: Send + Sync + fmt::Debug {
    fn description(&self) -> &ModelDescription;

    /// Builds the runnable model. Blocking (reads files, optimises graphs): the registry calls it
    /// on a loader thread, never on the async runtime, and at most once at a time per model.
    fn load(&self, context: &LoadContext) -> Result<Arc<dyn Model>, LoadError>;
}

/// A source whose model already exists (built-in pipelines): loading hands out the same model.
#[derive(Debug)]
pub struct ReadySource {
    description: ModelDescription,
    model: Arc<dyn Model>,
}

impl ReadySource {
    pub fn new(description: ModelDescription, model: Arc<dyn Model>) -> Self {
        Self { description, model }
    }
}

impl ModelSource for ReadySource {
    fn description(&self) -> &ModelDescription {
        &self.description
    }

    fn load(&self, _context: &LoadContext) -> Result<Arc<dyn Model>, LoadError> {
        Ok(Arc::clone(&self.model))
    }
}
