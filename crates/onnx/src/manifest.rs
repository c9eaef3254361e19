//! `model.toml`: what an ONNX model version declares about itself (docs/model-repository.md).
//!
//! Parsing is strict (`deny_unknown_fields` everywhere, so a typo is an error naming the key,
//! not a silently ignored setting) and followed by [`Manifest::validate`], which rejects
//! manifests that parse but cannot work. A [`Manifest`] obtained from [`Manifest::parse`] is
//! always valid.

use std::fmt;
use std::path::{Component, Path};
use std::time::Duration;

use inference_engine_core::source::{
    Backend, BatchingConfig, MAP_DATATYPE, ModelDescription, Preprocessing, TensorSpec,
};
pub use inference_engine_core::tensor::DataType as TensorType;
use serde::{Deserialize, Serialize};

use crate::error::OnnxError;

/// The file name the repository scan looks for in every version folder.
pub const MANIFEST_FILE: &str = "model.toml";

const MAX_BATCH_SIZE: usize = 1024;
/// Bound of `[onnxruntime] intra_op_threads` and `sessions`: a typo, not a machine, beyond it.
const MAX_THREADS: usize = 1024;
const MAX_DELAY_MS: u64 = 1000;
/// Bound of `[preprocess] max_length`.
const MAX_SEQUENCE: usize = 65_536;
/// Bound of `[preprocess.image] width` and `height`.
const MAX_IMAGE_SIDE: u32 = 16_384;

/// A parsed and validated `model.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub backend: ManifestBackend,
    /// What runs the graph of a `backend = "onnx"` model.
    #[serde(default)]
    pub runtime: Runtime,
    /// The graph, relative to the version folder.
    #[serde(default = "default_file")]
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// One entry per graph input, in the graph's order.
    pub inputs: Vec<TensorManifest>,
    /// The graph outputs the engine reads.
    pub outputs: Vec<TensorManifest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationManifest>,
    /// What turns a client's text or image into the graph's inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<PreprocessManifest>,
    #[serde(default)]
    pub postprocess: PostprocessManifest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<BatchingManifest>,
    /// Where a `backend = "remote_v2"` model runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteManifest>,
    /// Session options when ONNX Runtime runs the graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnxruntime: Option<OrtOptions>,
    /// The request body limit for this model, in bytes, instead of the server's
    /// `MAX_BODY_BYTES` (larger tensors, raw images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// `POST /predict?model=..` may carry the one input's raw little-endian elements as an
    /// `application/octet-stream` body instead of JSON.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_input: bool,
}

/// `runtime`: the engine that runs an in-process graph.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// ONNX Runtime (the whole ONNX and `ai.onnx.ml` operator sets).
    #[default]
    Onnxruntime,
    /// tract, the pure-Rust fallback (a subset of the operators).
    Tract,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Onnxruntime => "onnxruntime",
            Self::Tract => "tract",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[onnxruntime]`: how ONNX Runtime sessions of this model are built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrtOptions {
    /// Threads one run may use inside an operator. Default: the machine's cores divided by
    /// the threads of the model's executor pool (at least 1), so concurrent runs never ask for
    /// more threads than there are cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intra_op_threads: Option<usize>,
    /// Sessions kept for concurrent runs (a session runs one request at a time). Default: one
    /// per thread of the model's executor pool. Fewer saves memory on large models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
    #[serde(default)]
    pub graph_optimization_level: OptimizationLevel,
    #[serde(default)]
    pub execution_provider: ExecutionProvider,
}

/// `graph_optimization_level`: ONNX Runtime's graph rewrites before the first run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizationLevel {
    Disabled,
    Basic,
    Extended,
    #[default]
    All,
}

/// `execution_provider`: the device the graph runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    /// NVIDIA GPUs; needs an ONNX Runtime library built with CUDA (the GPU wheel).
    Cuda,
}

impl ExecutionProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
}

/// `[remote]`: an Open Inference Protocol server (Triton, KServe, MLServer) that runs the
/// model; the engine keeps the manifest's pre- and postprocessing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteManifest {
    /// `http://host:port` of the server's gRPC or HTTP endpoint.
    pub url: String,
    #[serde(default)]
    pub protocol: RemoteProtocol,
    /// The model's name on the remote server.
    pub model: String,
    /// The remote version; empty or absent: the server's choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Connections kept to the server (gRPC channels or HTTP keep-alive connections).
    #[serde(default = "default_remote_connections")]
    pub connections: usize,
    /// Consecutive failures (connection refused, unavailable, deadline) that open the circuit.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// How long an open circuit answers 503 at once before one request probes the server.
    #[serde(default = "default_open_ms")]
    pub open_ms: u64,
    /// Deadline of a call when the model has no SLA timeout.
    #[serde(default = "default_remote_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_remote_connections() -> usize {
    4
}

fn default_failure_threshold() -> u32 {
    3
}

fn default_open_ms() -> u64 {
    1_000
}

fn default_remote_timeout_ms() -> u64 {
    30_000
}

/// How the engine talks to a remote server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteProtocol {
    #[default]
    Grpc,
    Http,
}

fn default_file() -> String {
    "model.onnx".to_owned()
}

/// `backend`: `"onnx"` runs the graph in-process; `"remote_v2"` sends the tensors to the
/// Open Inference Protocol server of `[remote]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestBackend {
    #[default]
    Onnx,
    RemoteV2,
}

/// What a manifest's `datatype` may say: a tensor of one of the Open Inference Protocol
/// element types (`FP32`, `INT64`, `BOOL`, `BYTES` for strings, ...), or `MAP`, an output that
/// is a sequence of maps, one per example (scikit-learn's `ZipMap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Tensor(TensorType),
    Map,
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tensor(element) => element.as_str(),
            Self::Map => MAP_DATATYPE,
        }
    }

    /// The datatype of a name (`FP32`, ..., `MAP`).
    pub fn from_name(name: &str) -> Option<Self> {
        if name == MAP_DATATYPE {
            return Some(Self::Map);
        }
        TensorType::parse(name).map(Self::Tensor)
    }

    /// The tensor element type, `None` for a map.
    pub fn tensor(self) -> Option<TensorType> {
        match self {
            Self::Tensor(element) => Some(element),
            Self::Map => None,
        }
    }

    fn choices() -> String {
        TensorType::ALL
            .iter()
            .map(|element| element.as_str())
            .chain([MAP_DATATYPE])
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DataType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DataType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown datatype `{name}`, expected one of {}",
                Self::choices()
            ))
        })
    }
}

/// One `[[inputs]]` or `[[outputs]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorManifest {
    /// The name in the ONNX graph.
    pub name: String,
    pub datatype: DataType,
    /// `-1` (the batch) first, then one example's dimensions: a size, or `-1` for a dimension
    /// the request decides (a sequence length).
    pub shape: Vec<i64>,
}

impl TensorManifest {
    /// One example's dimensions (`shape[1..]`); `None` for a dynamic one.
    pub fn example_dims(&self) -> Vec<Option<usize>> {
        self.shape
            .iter()
            .skip(1)
            .map(|&dim| usize::try_from(dim).ok())
            .collect()
    }

    /// Values per example: the product of `shape[1..]` (1 for a scalar per example); `None`
    /// when a dimension is dynamic.
    pub fn values_per_example(&self) -> Option<usize> {
        self.example_dims().into_iter().product()
    }

    fn to_spec(&self) -> TensorSpec {
        TensorSpec {
            name: self.name.clone(),
            datatype: self.datatype.as_str().to_owned(),
            shape: self.shape.clone(),
        }
    }
}

/// `[validation]`: checks on every example before the model runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationManifest {
    /// Values per example (default: the product of `shape[1..]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// `[postprocess] kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostprocessKind {
    #[default]
    Raw,
    Argmax,
    Probabilities,
    /// `{"label", "score", "scores": {label: p}}`, softmax first unless `softmax = false`.
    Classification,
    /// Per-token labels with character offsets, grouped into entities (text models).
    TokenClassification,
    /// One vector per example, pooled over its tokens and optionally L2-normalised.
    Embedding,
}

impl PostprocessKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Argmax => "argmax",
            Self::Probabilities => "probabilities",
            Self::Classification => "classification",
            Self::TokenClassification => "token_classification",
            Self::Embedding => "embedding",
        }
    }

    /// Whether the kind maps each example's values to `labels`.
    fn needs_labels(self) -> bool {
        !matches!(self, Self::Raw | Self::Embedding)
    }
}

/// `[postprocess] pooling`: how an embedding model's per-token vectors become one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The mean over the example's tokens (its attention mask; padding never counts).
    #[default]
    Mean,
    /// The first token's vector (`[CLS]`).
    Cls,
}

/// `[postprocess]`: how the outputs become the JSON result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostprocessManifest {
    #[serde(default)]
    pub kind: PostprocessKind,
    /// The output the kind reads (default: the last output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// `classification`: apply softmax to the scores first (default true; false when the graph
    /// already outputs probabilities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softmax: Option<bool>,
    /// `embedding`: how token vectors are pooled (a graph that outputs one vector per example
    /// needs none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
    /// `embedding`: scale each vector to unit L2 length.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub normalize: bool,
}

/// `[preprocess]`: a tokenizer for text models, or `[preprocess.image]` for image models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessManifest {
    /// A Hugging Face `tokenizer.json`, relative to the version folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Longest token sequence the graph gets (truncated past it); default 512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageManifest>,
}

/// `[preprocess.image]`: decoded images become the graph's one FP32 input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub resize: Resize,
    #[serde(default)]
    pub crop: Crop,
    /// Per channel, subtracted from pixel / 255 (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f32>>,
    /// Per channel, divides after the mean (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f32>>,
    #[serde(default)]
    pub layout: ImageLayout,
    #[serde(default)]
    pub channels: Channels,
    /// Largest decoded image accepted (width × height), checked from its header before it
    /// is decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pixels: Option<u64>,
}

/// `resize`: how a decoded image reaches `width` × `height`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Scale so the shorter side fits, keeping the aspect ratio, then crop.
    #[default]
    ShorterSide,
    /// Scale to exactly `width` × `height` (the aspect ratio may change).
    Exact,
}

/// `crop`: which part of a `shorter_side` resize is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crop {
    #[default]
    Center,
}

/// `layout` of the image input: channels first or last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageLayout {
    #[default]
    #[serde(rename = "NCHW")]
    Nchw,
    #[serde(rename = "NHWC")]
    Nhwc,
}

/// `channels` the graph takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channels {
    #[default]
    Rgb,
    Grayscale,
}

impl Channels {
    pub fn count(self) -> usize {
        match self {
            Self::Rgb => 3,
            Self::Grayscale => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rgb => "rgb",
            Self::Grayscale => "grayscale",
        }
    }
}

/// Default of `[preprocess] max_length`: BERT's positions.
pub const DEFAULT_MAX_LENGTH: usize = 512;
/// Default of `[preprocess.image] max_pixels`: 40 megapixels (a 8000 × 5000 photo), about
/// 160 MB decoded as RGBA.
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;
/// The graph input names a tokenizer fills, as Hugging Face exports name them.
pub const TEXT_INPUTS: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];

/// `[batching]`: dynamic batching of concurrent requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingManifest {
    pub max_batch_size: usize,
    pub max_delay_ms: u64,
}

impl Manifest {
    /// Parses and validates the text of a `model.toml`.
    pub fn parse(text: &str) -> Result<Self, OnnxError> {
        let manifest: Self = toml::from_str(text).map_err(|err| syntax_error(text, &err))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Reads, parses and validates a `model.toml`.
    pub fn from_path(path: &Path) -> Result<Self, OnnxError> {
        let text = std::fs::read_to_string(path).map_err(|source| OnnxError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Checks what the schema cannot: shapes, names, labels and ranges.
    pub fn validate(&self) -> Result<(), OnnxError> {
        self.validate_file()?;
        self.validate_remote()?;
        self.validate_runtime()?;
        validate_tensors("inputs", &self.inputs)?;
        validate_tensors("outputs", &self.outputs)?;
        if let Some((index, input)) = self
            .inputs
            .iter()
            .enumerate()
            .find(|(_, input)| input.datatype == DataType::Map)
        {
            return Err(invalid(format!(
                "inputs[{index}] (`{}`): MAP is an output datatype; inputs are tensors",
                input.name
            )));
        }
        self.validate_validation()?;
        self.validate_preprocess()?;
        self.validate_postprocess()?;
        self.validate_batching()?;
        self.validate_request()
    }

    fn validate_runtime(&self) -> Result<(), OnnxError> {
        if self.backend == ManifestBackend::RemoteV2 && self.runtime != Runtime::default() {
            return Err(invalid(
                "runtime is for backend = \"onnx\"; a remote_v2 model runs on its server".into(),
            ));
        }
        let Some(options) = &self.onnxruntime else {
            return Ok(());
        };
        if self.backend == ManifestBackend::RemoteV2 || self.runtime == Runtime::Tract {
            return Err(invalid(format!(
                "[onnxruntime] applies to runtime = \"onnxruntime\" only (this model's runtime \
                 is {})",
                if self.backend == ManifestBackend::RemoteV2 {
                    "its remote server"
                } else {
                    "tract"
                }
            )));
        }
        for (key, value) in [
            ("intra_op_threads", options.intra_op_threads),
            ("sessions", options.sessions),
        ] {
            if let Some(value) = value
                && !(1..=MAX_THREADS).contains(&value)
            {
                return Err(invalid(format!(
                    "onnxruntime.{key} = {value} must be between 1 and {MAX_THREADS}"
                )));
            }
        }
        Ok(())
    }

    fn validate_request(&self) -> Result<(), OnnxError> {
        if self.max_body_bytes == Some(0) {
            return Err(invalid("max_body_bytes must be at least 1".into()));
        }
        if !self.raw_input {
            return Ok(());
        }
        match self.inputs.as_slice() {
            [input]
                if input
                    .datatype
                    .tensor()
                    .and_then(TensorType::element_size)
                    .is_some() =>
            {
                Ok(())
            }
            [input] => Err(invalid(format!(
                "raw_input needs a fixed-size element type; input `{}` is {}",
                input.name, input.datatype
            ))),
            _ => Err(invalid(format!(
                "raw_input is for models with one input; this one has {}",
                self.inputs.len()
            ))),
        }
    }

    fn validate_file(&self) -> Result<(), OnnxError> {
        check_inside("file", &self.file)
    }

    fn validate_remote(&self) -> Result<(), OnnxError> {
        match (self.backend, &self.remote) {
            (ManifestBackend::Onnx, None) => Ok(()),
            (ManifestBackend::Onnx, Some(_)) => Err(invalid(
                "[remote] is only for backend = \"remote_v2\"".to_owned(),
            )),
            (ManifestBackend::RemoteV2, None) => Err(invalid(
                "backend = \"remote_v2\" needs a [remote] table with url and model".to_owned(),
            )),
            (ManifestBackend::RemoteV2, Some(remote)) => {
                let scheme = remote.url.split_once("://").map(|(scheme, _)| scheme);
                if !matches!(scheme, Some("http")) {
                    return Err(invalid(format!(
                        "remote.url = {:?} must be http://host:port",
                        remote.url
                    )));
                }
                if remote.model.is_empty() {
                    return Err(invalid(
                        "remote.model must name the remote model".to_owned(),
                    ));
                }
                if remote.connections == 0
                    || remote.failure_threshold == 0
                    || remote.timeout_ms == 0
                {
                    return Err(invalid(
                        "remote.connections, remote.failure_threshold and remote.timeout_ms must \
                         be at least 1"
                            .to_owned(),
                    ));
                }
                Ok(())
            }
        }
    }

    fn validate_validation(&self) -> Result<(), OnnxError> {
        let Some(validation) = &self.validation else {
            return Ok(());
        };
        if let Some(features) = validation.features {
            for input in &self.inputs {
                let Some(expected) = input.values_per_example() else {
                    return Err(invalid(format!(
                        "validation.features = {features} cannot apply to input `{}`, whose shape \
                         {:?} has a dynamic dimension",
                        input.name, input.shape
                    )));
                };
                if features != expected {
                    return Err(invalid(format!(
                        "validation.features = {features} does not match input `{}`, which has \
                         {expected} values per example (shape {:?})",
                        input.name, input.shape
                    )));
                }
            }
        }
        for (key, bound) in [("min", validation.min), ("max", validation.max)] {
            if bound.is_some_and(|value| !value.is_finite()) {
                return Err(invalid(format!("validation.{key} must be a finite number")));
            }
        }
        if let (Some(min), Some(max)) = (validation.min, validation.max)
            && min > max
        {
            return Err(invalid(format!(
                "validation.min ({min:?}) is greater than validation.max ({max:?})"
            )));
        }
        Ok(())
    }

    fn validate_postprocess(&self) -> Result<(), OnnxError> {
        let postprocess = &self.postprocess;
        if let Some(tensor) = &postprocess.tensor
            && !self.outputs.iter().any(|output| &output.name == tensor)
        {
            return Err(invalid(format!(
                "postprocess.tensor = {tensor:?} is not one of the declared outputs ({})",
                names(&self.outputs)
            )));
        }
        let kind = postprocess.kind;
        let only_for = |key: &str, owner: PostprocessKind| {
            invalid(format!(
                "postprocess.{key} applies to kind = \"{}\" only (this one is \"{}\")",
                owner.as_str(),
                kind.as_str()
            ))
        };
        if postprocess.softmax.is_some() && kind != PostprocessKind::Classification {
            return Err(only_for("softmax", PostprocessKind::Classification));
        }
        if (postprocess.pooling.is_some() || postprocess.normalize)
            && kind != PostprocessKind::Embedding
        {
            return Err(only_for("pooling / normalize", PostprocessKind::Embedding));
        }
        let tensor = self
            .postprocess_output_index()
            .map(|index| &self.outputs[index]);
        let labels = match &postprocess.labels {
            Some(labels) if !labels.is_empty() => labels.as_slice(),
            Some(_) | None if kind.needs_labels() => {
                return Err(invalid(format!(
                    "postprocess.labels is required when postprocess.kind = \"{}\"",
                    kind.as_str()
                )));
            }
            _ => &[],
        };
        let Some(tensor) = tensor else {
            return Ok(());
        };
        let kind_name = kind.as_str();
        match kind {
            PostprocessKind::Raw => Ok(()),
            PostprocessKind::Argmax
            | PostprocessKind::Probabilities
            | PostprocessKind::Classification => {
                let Some(per_example) = tensor.datatype.tensor().and(tensor.values_per_example())
                else {
                    return Err(invalid(format!(
                        "postprocess.kind = \"{kind_name}\" reads output `{}`, which must be a \
                         tensor of a fixed size per example (it is {} with shape {:?})",
                        tensor.name, tensor.datatype, tensor.shape
                    )));
                };
                check_label_count(labels, tensor, per_example)
            }
            PostprocessKind::TokenClassification => {
                if self.tokenizer().is_none() {
                    return Err(invalid(
                        "postprocess.kind = \"token_classification\" needs [preprocess] \
                         tokenizer: its answer points into the request's text"
                            .into(),
                    ));
                }
                match tensor.shape.as_slice() {
                    [_, _, classes] if *classes > 0 => {
                        check_label_count(labels, tensor, usize::try_from(*classes).unwrap_or(0))
                    }
                    _ => Err(invalid(format!(
                        "postprocess.kind = \"token_classification\" reads output `{}`, which \
                         must have shape [-1, -1, {}] (examples, tokens, labels); it has {:?}",
                        tensor.name,
                        labels.len(),
                        tensor.shape
                    ))),
                }
            }
            PostprocessKind::Embedding => {
                let floating = matches!(
                    tensor.datatype.tensor(),
                    Some(TensorType::Fp32 | TensorType::Fp64 | TensorType::Fp16 | TensorType::Bf16)
                );
                match tensor.shape.len() {
                    2 | 3 if floating => Ok(()),
                    _ => Err(invalid(format!(
                        "postprocess.kind = \"embedding\" reads output `{}`, which must be a \
                         floating-point tensor of shape [-1, dim] or [-1, tokens, dim]; it is \
                         {} with shape {:?}",
                        tensor.name, tensor.datatype, tensor.shape
                    ))),
                }
            }
        }
    }

    fn validate_preprocess(&self) -> Result<(), OnnxError> {
        let Some(preprocess) = &self.preprocess else {
            return Ok(());
        };
        match (&preprocess.tokenizer, &preprocess.image) {
            (Some(tokenizer), None) => {
                check_inside("preprocess.tokenizer", tokenizer)?;
                self.validate_text_inputs(preprocess.max_length)
            }
            (None, Some(image)) => {
                if preprocess.max_length.is_some() {
                    return Err(invalid(
                        "preprocess.max_length applies to a tokenizer, not an image".into(),
                    ));
                }
                self.validate_image_input(image)
            }
            (Some(_), Some(_)) => Err(invalid(
                "[preprocess] takes a tokenizer or an image table, not both".into(),
            )),
            (None, None) => Err(invalid(
                "[preprocess] needs tokenizer = \"tokenizer.json\" or an [preprocess.image] table"
                    .into(),
            )),
        }
    }

    fn validate_text_inputs(&self, max_length: Option<usize>) -> Result<(), OnnxError> {
        if let Some(max_length) = max_length
            && !(2..=MAX_SEQUENCE).contains(&max_length)
        {
            return Err(invalid(format!(
                "preprocess.max_length = {max_length} must be between 2 and {MAX_SEQUENCE}"
            )));
        }
        if !self.inputs.iter().any(|input| input.name == TEXT_INPUTS[0]) {
            return Err(invalid(format!(
                "a tokenizer fills the graph inputs {}; this graph has no `input_ids` (inputs: \
                 {})",
                TEXT_INPUTS.map(|name| format!("`{name}`")).join(", "),
                names(&self.inputs)
            )));
        }
        for input in &self.inputs {
            if !TEXT_INPUTS.contains(&input.name.as_str()) {
                return Err(invalid(format!(
                    "input `{}` is not one a tokenizer fills ({})",
                    input.name,
                    TEXT_INPUTS.map(|name| format!("`{name}`")).join(", ")
                )));
            }
            let integer = matches!(
                input.datatype.tensor(),
                Some(TensorType::Int64 | TensorType::Int32)
            );
            if !integer || input.shape.len() != 2 || input.shape[1] != -1 {
                return Err(invalid(format!(
                    "input `{}` must be INT64 or INT32 with shape [-1, -1] for a tokenizer (it is \
                     {} with shape {:?})",
                    input.name, input.datatype, input.shape
                )));
            }
        }
        Ok(())
    }

    fn validate_image_input(&self, image: &ImageManifest) -> Result<(), OnnxError> {
        for (key, size) in [("width", image.width), ("height", image.height)] {
            if !(1..=MAX_IMAGE_SIDE).contains(&size) {
                return Err(invalid(format!(
                    "preprocess.image.{key} = {size} must be between 1 and {MAX_IMAGE_SIDE}"
                )));
            }
        }
        if image.max_pixels == Some(0) {
            return Err(invalid(
                "preprocess.image.max_pixels must be at least 1".into(),
            ));
        }
        let channels = image.channels.count();
        for (key, values) in [("mean", &image.mean), ("std", &image.std)] {
            if let Some(values) = values
                && values.len() != channels
                && values.len() != 1
            {
                return Err(invalid(format!(
                    "preprocess.image.{key} has {} values; give one per channel ({channels} for \
                     channels = \"{}\") or one for all",
                    values.len(),
                    image.channels.as_str()
                )));
            }
        }
        if let Some(std) = &image.std
            && std.iter().any(|value| !value.is_finite() || *value == 0.0)
        {
            return Err(invalid(
                "preprocess.image.std values must be finite and not zero".into(),
            ));
        }
        let [input] = self.inputs.as_slice() else {
            return Err(invalid(format!(
                "[preprocess.image] fills one graph input; this graph has {}",
                self.inputs.len()
            )));
        };
        let side = |size: u32| i64::from(size);
        let expected = match image.layout {
            ImageLayout::Nchw => [
                i64::try_from(channels).unwrap_or(3),
                side(image.height),
                side(image.width),
            ],
            ImageLayout::Nhwc => [
                side(image.height),
                side(image.width),
                i64::try_from(channels).unwrap_or(3),
            ],
        };
        let fits = input.datatype == DataType::Tensor(TensorType::Fp32)
            && input.shape.len() == 4
            && input.shape[1..]
                .iter()
                .zip(expected)
                .all(|(&dim, wanted)| dim == -1 || dim == wanted);
        if !fits {
            return Err(invalid(format!(
                "input `{}` must be FP32 with shape {:?} for [preprocess.image] ({} layout, \
                 {} channels); it is {} with shape {:?}",
                input.name,
                [-1, expected[0], expected[1], expected[2]],
                match image.layout {
                    ImageLayout::Nchw => "NCHW",
                    ImageLayout::Nhwc => "NHWC",
                },
                image.channels.as_str(),
                input.datatype,
                input.shape
            )));
        }
        Ok(())
    }

    fn preprocess_description(&self) -> Option<Preprocessing> {
        let preprocess = self.preprocess.as_ref()?;
        if let Some(image) = &preprocess.image {
            return Some(Preprocessing::Image {
                width: image.width,
                height: image.height,
                channels: image.channels.as_str(),
            });
        }
        preprocess.tokenizer.as_ref()?;
        Some(Preprocessing::Text {
            max_length: preprocess.max_length.unwrap_or(DEFAULT_MAX_LENGTH),
        })
    }

    /// `[preprocess] tokenizer`, when the model takes text.
    pub fn tokenizer(&self) -> Option<&str> {
        self.preprocess.as_ref()?.tokenizer.as_deref()
    }

    /// `[preprocess.image]`, when the model takes images.
    pub fn image(&self) -> Option<&ImageManifest> {
        self.preprocess.as_ref()?.image.as_ref()
    }

    fn validate_batching(&self) -> Result<(), OnnxError> {
        let Some(batching) = &self.batching else {
            return Ok(());
        };
        if !(1..=MAX_BATCH_SIZE).contains(&batching.max_batch_size) {
            return Err(invalid(format!(
                "batching.max_batch_size = {} must be between 1 and {MAX_BATCH_SIZE}",
                batching.max_batch_size
            )));
        }
        if batching.max_delay_ms > MAX_DELAY_MS {
            return Err(invalid(format!(
                "batching.max_delay_ms = {} must be between 0 and {MAX_DELAY_MS}",
                batching.max_delay_ms
            )));
        }
        Ok(())
    }

    /// The index in `outputs` of the tensor argmax / probabilities read: `postprocess.tensor`,
    /// or the last output.
    pub fn postprocess_output_index(&self) -> Option<usize> {
        match &self.postprocess.tensor {
            Some(tensor) => self
                .outputs
                .iter()
                .position(|output| &output.name == tensor),
            None => self.outputs.len().checked_sub(1),
        }
    }

    /// What the registry and `GET /models` know about this model before it is loaded.
    pub fn to_description(&self) -> ModelDescription {
        ModelDescription {
            backend: match self.backend {
                ManifestBackend::Onnx => Backend::Onnx,
                ManifestBackend::RemoteV2 => Backend::RemoteV2,
            },
            runtime: match self.backend {
                ManifestBackend::Onnx => Some(self.runtime.as_str()),
                ManifestBackend::RemoteV2 => None,
            },
            description: self.description.clone(),
            inputs: self.inputs.iter().map(TensorManifest::to_spec).collect(),
            outputs: self.outputs.iter().map(TensorManifest::to_spec).collect(),
            batching: self.batching.map(|batching| BatchingConfig {
                max_batch_size: batching.max_batch_size,
                max_delay: Duration::from_millis(batching.max_delay_ms),
            }),
            max_body_bytes: self.max_body_bytes,
            raw_input: self.raw_input,
            size_hint_bytes: None,
            preprocess: self.preprocess_description(),
            postprocess: Some(self.postprocess.kind.as_str()),
            pipeline: None,
        }
    }
}

/// toml's message on one line, after the line it concerns (which names the key):
/// ``line 7 (`datatype = "FP17"`): unknown datatype `FP17`, expected one of ...``.
pub(crate) fn syntax_error(text: &str, err: &toml::de::Error) -> OnnxError {
    let message = err.message().trim_end();
    let Some(span) = err.span() else {
        return OnnxError::ManifestSyntax(message.to_owned());
    };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |index| index + 1);
    let line_end = text[start..]
        .find('\n')
        .map_or(text.len(), |index| start + index);
    let line_number = text[..start].matches('\n').count() + 1;
    let line = text[line_start..line_end].trim();
    OnnxError::ManifestSyntax(format!("line {line_number} (`{line}`): {message}"))
}

fn validate_tensors(key: &str, tensors: &[TensorManifest]) -> Result<(), OnnxError> {
    if tensors.is_empty() {
        return Err(invalid(format!("{key} must declare at least one tensor")));
    }
    for (index, tensor) in tensors.iter().enumerate() {
        if tensor.name.is_empty() {
            return Err(invalid(format!("{key}[{index}].name must not be empty")));
        }
        if tensors[..index]
            .iter()
            .any(|other| other.name == tensor.name)
        {
            return Err(invalid(format!(
                "{key}[{index}].name = {:?} is declared twice",
                tensor.name
            )));
        }
        if tensor.shape.first() != Some(&-1) {
            return Err(invalid(format!(
                "{key}[{index}].shape = {:?} must start with -1 (the batch dimension)",
                tensor.shape
            )));
        }
        if tensor.shape[1..].iter().any(|&dim| dim == 0 || dim < -1) {
            return Err(invalid(format!(
                "{key}[{index}].shape = {:?}: a dimension after the batch is a size (1 or more) \
                 or -1 (any size)",
                tensor.shape
            )));
        }
        if tensor.datatype == DataType::Map && tensor.shape != [-1] {
            return Err(invalid(format!(
                "{key}[{index}].shape = {:?}: a MAP output is one map per example, shape [-1]",
                tensor.shape
            )));
        }
    }
    Ok(())
}

fn names(tensors: &[TensorManifest]) -> String {
    tensors
        .iter()
        .map(|tensor| format!("`{}`", tensor.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Labels must name each of a tensor's `per_example` values.
fn check_label_count(
    labels: &[String],
    tensor: &TensorManifest,
    per_example: usize,
) -> Result<(), OnnxError> {
    if per_example == labels.len() {
        return Ok(());
    }
    Err(invalid(format!(
        "postprocess.labels has {} labels but output `{}` has {per_example} values per example \
         (shape {:?})",
        labels.len(),
        tensor.name,
        tensor.shape
    )))
}

/// A file a manifest names must be a relative path inside the version folder.
fn check_inside(key: &str, file: &str) -> Result<(), OnnxError> {
    let inside = !file.is_empty()
        && Path::new(file)
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    if inside {
        return Ok(());
    }
    Err(invalid(format!(
        "{key} = {file:?} must be a relative path inside the version folder"
    )))
}

fn invalid(message: String) -> OnnxError {
    OnnxError::InvalidManifest(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IRIS: &str = r#"
backend = "onnx"
file = "model.onnx"
description = "Iris species, logistic regression"

[[inputs]]
name = "input"
datatype = "FP32"
shape = [-1, 4]

[[outputs]]
name = "label"
datatype = "INT64"
shape = [-1]

[[outputs]]
name = "probabilities"
datatype = "FP32"
shape = [-1, 3]

[validation]
features = 4
min = 0.0
max = 100.0

[postprocess]
kind = "probabilities"
tensor = "probabilities"
labels = ["setosa", "versicolor", "virginica"]

[batching]
max_batch_size = 32
max_delay_ms = 2
"#;

    fn error_of(text: &str) -> String {
        match Manifest::parse(text) {
            Ok(manifest) => panic!("expected an error, parsed {manifest:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn the_documented_example_parses_and_describes_the_model() {
        let manifest = Manifest::parse(IRIS).unwrap();
        let description = manifest.to_description();
        assert_eq!(description.backend, Backend::Onnx);
        assert_eq!(
            description.description.as_deref(),
            Some("Iris species, logistic regression")
        );
        assert_eq!(
            description.inputs,
            vec![TensorSpec {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![-1, 4],
            }]
        );
        assert_eq!(description.outputs[0].datatype, "INT64");
        assert_eq!(description.outputs[1].shape, vec![-1, 3]);
        assert_eq!(
            description.batching,
            Some(BatchingConfig {
                max_batch_size: 32,
                max_delay: Duration::from_millis(2),
            })
        );
        assert_eq!(manifest.postprocess_output_index(), Some(1));
    }

    #[test]
    fn defaults_fill_backend_file_and_postprocess() {
        let manifest = Manifest::parse(
            "[[inputs]]\nname = \"x\"\ndatatype = \"FP64\"\nshape = [-1, 2, 3]\n\
             [[outputs]]\nname = \"y\"\ndatatype = \"FP32\"\nshape = [-1]\n",
        )
        .unwrap();
        assert_eq!(manifest.backend, ManifestBackend::Onnx);
        assert_eq!(manifest.file, "model.onnx");
        assert_eq!(manifest.postprocess.kind, PostprocessKind::Raw);
        assert_eq!(manifest.inputs[0].values_per_example(), Some(6));
        assert_eq!(manifest.outputs[0].values_per_example(), Some(1));
        assert_eq!(manifest.batching, None);
    }

    #[test]
    fn an_unknown_top_level_key_is_rejected_by_name() {
        let message = error_of(&format!("warmup = true\n{IRIS}"));
        assert!(
            message
                .starts_with("line 1 (`warmup = true`): unknown field `warmup`, expected one of"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn an_unknown_key_inside_a_table_is_rejected_by_name() {
        let text = IRIS.replace("max_delay_ms = 2", "max_delay_ms = 2\nmax_dalay = 3");
        let message = error_of(&text);
        assert!(message.contains("unknown field `max_dalay`"), "{message}");
        let text = IRIS.replace("shape = [-1, 4]", "shape = [-1, 4]\ndims = [4]");
        let message = error_of(&text);
        assert!(message.contains("unknown field `dims`"), "{message}");
    }

    #[test]
    fn an_unsupported_datatype_is_rejected_naming_the_key_and_the_choices() {
        let message = error_of(&IRIS.replacen("\"FP32\"", "\"FP17\"", 1));
        assert_eq!(
            message,
            "line 8 (`datatype = \"FP17\"`): unknown datatype `FP17`, expected one of BOOL, \
             UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, \
             BYTES, MAP"
        );
    }

    #[test]
    fn every_onnx_element_type_and_dynamic_dimensions_parse() {
        let manifest = Manifest::parse(
            "[[inputs]]\nname = \"input_ids\"\ndatatype = \"INT64\"\nshape = [-1, -1]\n\
             [[inputs]]\nname = \"city\"\ndatatype = \"BYTES\"\nshape = [-1, 1]\n\
             [[inputs]]\nname = \"mask\"\ndatatype = \"BOOL\"\nshape = [-1, -1]\n\
             [[inputs]]\nname = \"half\"\ndatatype = \"FP16\"\nshape = [-1, 3, -1]\n\
             [[outputs]]\nname = \"output_probability\"\ndatatype = \"MAP\"\nshape = [-1]\n",
        )
        .unwrap();
        assert_eq!(manifest.runtime, Runtime::Onnxruntime);
        assert_eq!(manifest.inputs[0].example_dims(), vec![None]);
        assert_eq!(manifest.inputs[0].values_per_example(), None);
        assert_eq!(manifest.inputs[3].example_dims(), vec![Some(3), None]);
        assert_eq!(
            manifest.inputs[1].datatype,
            DataType::Tensor(TensorType::Bytes)
        );
        assert_eq!(manifest.outputs[0].datatype, DataType::Map);
        assert_eq!(manifest.to_description().outputs[0].datatype, "MAP");
        assert_eq!(manifest.to_description().runtime, Some("onnxruntime"));
    }

    #[test]
    fn maps_are_outputs_of_one_map_per_example() {
        let message = error_of(&IRIS.replacen("datatype = \"FP32\"", "datatype = \"MAP\"", 1));
        assert_eq!(
            message,
            "inputs[0].shape = [-1, 4]: a MAP output is one map per example, shape [-1]"
        );
        let message = error_of(
            &IRIS
                .replacen("datatype = \"FP32\"", "datatype = \"MAP\"", 1)
                .replacen("shape = [-1, 4]", "shape = [-1]", 1)
                .replace("features = 4\n", ""),
        );
        assert_eq!(
            message,
            "inputs[0] (`input`): MAP is an output datatype; inputs are tensors"
        );
        let message = error_of(&IRIS.replace(
            "datatype = \"FP32\"\nshape = [-1, 3]",
            "datatype = \"MAP\"\nshape = [-1]",
        ));
        assert!(
            message.starts_with(
                "postprocess.kind = \"probabilities\" reads output `probabilities`, which must be \
                 a tensor"
            ),
            "{message}"
        );
    }

    #[test]
    fn onnxruntime_options_and_request_settings_are_checked() {
        let with = |extra: &str| format!("{extra}\n{IRIS}");
        let manifest = Manifest::parse(&format!(
            "{IRIS}\n[onnxruntime]\nintra_op_threads = 2\nsessions = 1\n\
             graph_optimization_level = \"basic\"\nexecution_provider = \"cuda\"\n"
        ))
        .unwrap();
        let options = manifest.onnxruntime.unwrap();
        assert_eq!(options.intra_op_threads, Some(2));
        assert_eq!(options.graph_optimization_level, OptimizationLevel::Basic);
        assert_eq!(options.execution_provider, ExecutionProvider::Cuda);
        assert_eq!(
            error_of(&format!("{IRIS}\n[onnxruntime]\nsessions = 0\n")),
            "onnxruntime.sessions = 0 must be between 1 and 1024"
        );
        assert_eq!(
            error_of(&format!(
                "runtime = \"tract\"\n{IRIS}\n[onnxruntime]\nsessions = 2\n"
            )),
            "[onnxruntime] applies to runtime = \"onnxruntime\" only (this model's runtime is \
             tract)"
        );
        assert!(error_of(&with("runtime = \"tensorrt\"")).contains("unknown variant `tensorrt`"));
        let manifest =
            Manifest::parse(&with("max_body_bytes = 4000000\nraw_input = true")).unwrap();
        assert_eq!(
            (manifest.max_body_bytes, manifest.raw_input),
            (Some(4_000_000), true)
        );
        assert_eq!(
            error_of(&with("max_body_bytes = 0")),
            "max_body_bytes must be at least 1"
        );
        let two_inputs = IRIS.replacen(
            "[[outputs]]",
            "[[inputs]]\nname = \"other\"\ndatatype = \"FP32\"\nshape = [-1, 4]\n\n[[outputs]]",
            1,
        );
        assert_eq!(
            error_of(&format!("raw_input = true\n{two_inputs}")),
            "raw_input is for models with one input; this one has 2"
        );
    }

    #[test]
    fn an_unknown_backend_or_postprocess_kind_is_rejected() {
        let message = error_of(&IRIS.replace("backend = \"onnx\"", "backend = \"triton\""));
        assert!(message.contains("unknown variant `triton`"), "{message}");
        let message = error_of(&IRIS.replace("kind = \"probabilities\"", "kind = \"softmax\""));
        assert!(message.contains("unknown variant `softmax`"), "{message}");
    }

    #[test]
    fn argmax_and_probabilities_require_labels() {
        let without_labels =
            IRIS.replace("labels = [\"setosa\", \"versicolor\", \"virginica\"]", "");
        assert_eq!(
            error_of(&without_labels),
            "postprocess.labels is required when postprocess.kind = \"probabilities\""
        );
        let argmax = without_labels.replace("kind = \"probabilities\"", "kind = \"argmax\"");
        assert_eq!(
            error_of(&argmax),
            "postprocess.labels is required when postprocess.kind = \"argmax\""
        );
        let raw = without_labels.replace("kind = \"probabilities\"", "kind = \"raw\"");
        assert!(Manifest::parse(&raw).is_ok());
    }

    #[test]
    fn labels_must_match_the_values_per_example_of_the_tensor() {
        let message = error_of(&IRIS.replace("\"virginica\"", "\"virginica\", \"other\""));
        assert_eq!(
            message,
            "postprocess.labels has 4 labels but output `probabilities` has 3 values per \
             example (shape [-1, 3])"
        );
    }

    #[test]
    fn postprocess_tensor_must_name_a_declared_output() {
        let message = error_of(&IRIS.replace(
            "tensor = \"probabilities\"",
            "tensor = \"output_probability\"",
        ));
        assert_eq!(
            message,
            "postprocess.tensor = \"output_probability\" is not one of the declared outputs \
             (`label`, `probabilities`)"
        );
    }

    #[test]
    fn shapes_must_start_with_the_batch_and_have_positive_dimensions() {
        let message = error_of(&IRIS.replace("shape = [-1, 4]", "shape = [1, 4]"));
        assert_eq!(
            message,
            "inputs[0].shape = [1, 4] must start with -1 (the batch dimension)"
        );
        let message = error_of(&IRIS.replace("shape = [-1, 3]", "shape = [-1, 0]"));
        assert_eq!(
            message,
            "outputs[1].shape = [-1, 0]: a dimension after the batch is a size (1 or more) or \
             -1 (any size)"
        );
        let message = error_of(&IRIS.replace("shape = [-1]\n", "shape = []\n"));
        assert!(message.starts_with("outputs[0].shape = []"), "{message}");
    }

    #[test]
    fn batching_limits_are_enforced() {
        let message = error_of(&IRIS.replace("max_batch_size = 32", "max_batch_size = 0"));
        assert_eq!(
            message,
            "batching.max_batch_size = 0 must be between 1 and 1024"
        );
        assert!(
            error_of(&IRIS.replace("max_batch_size = 32", "max_batch_size = 1025"))
                .contains("max_batch_size")
        );
        let message = error_of(&IRIS.replace("max_delay_ms = 2", "max_delay_ms = 1001"));
        assert_eq!(
            message,
            "batching.max_delay_ms = 1001 must be between 0 and 1000"
        );
        assert!(Manifest::parse(&IRIS.replace("max_delay_ms = 2", "max_delay_ms = 0")).is_ok());
    }

    #[test]
    fn validation_bounds_and_features_are_checked() {
        let message = error_of(&IRIS.replace("min = 0.0", "min = 200.0"));
        assert_eq!(
            message,
            "validation.min (200.0) is greater than validation.max (100.0)"
        );
        let message = error_of(&IRIS.replace("features = 4", "features = 5"));
        assert!(
            message.starts_with("validation.features = 5 does not match input `input`"),
            "{message}"
        );
    }

    #[test]
    fn file_must_stay_inside_the_version_folder() {
        let message = error_of(&IRIS.replace("file = \"model.onnx\"", "file = \"../x.onnx\""));
        assert!(message.starts_with("file = \"../x.onnx\""), "{message}");
        assert!(
            Manifest::parse(&IRIS.replace("file = \"model.onnx\"", "file = \"/etc/x\"")).is_err()
        );
        assert!(
            Manifest::parse(&IRIS.replace("file = \"model.onnx\"", "file = \"graphs/x.onnx\""))
                .is_ok()
        );
    }

    #[test]
    fn duplicate_and_missing_tensors_are_rejected() {
        let message = error_of(
            &IRIS
                .replace("name = \"probabilities\"", "name = \"label\"")
                .replace("tensor = \"probabilities\"", "tensor = \"label\""),
        );
        assert_eq!(message, "outputs[1].name = \"label\" is declared twice");
        let message = error_of("inputs = []\noutputs = []\n");
        assert_eq!(message, "inputs must declare at least one tensor");
        let message = error_of("[[outputs]]\nname = \"y\"\ndatatype = \"FP32\"\nshape = [-1]\n");
        assert!(message.contains("missing field `inputs`"), "{message}");
    }
}
