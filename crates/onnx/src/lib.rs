//! The ONNX backend of the inference engine: ONNX Runtime (through `ort`, the library loaded
//! at run time) by default, tract (pure Rust) as the fallback.
//!
//! It owns everything between a model repository folder and a runnable core `Model`: the
//! `model.toml` manifest format, the repository scan, loading a graph on its runtime, the
//! JSON ⇄ tensor conversion of requests and results, the batched run that dynamic batching
//! relies on, and `models inspect`. The formats it implements are specified in
//! `docs/model-repository.md`.
//!
//! It depends on `inference-engine-core` (whose `ModelSource` and `Pipeline` it implements)
//! and must never depend on a transport, a database or a runtime (axum, sqlx, redis, tokio).
//!
//! Layout:
//! - [`manifest`]: `Manifest`, the parsed and validated `model.toml`, and its conversion to a
//!   core `ModelDescription`.
//! - [`repository`]: `scan_repository`, `<dir>/<name>/<version>/model.toml` → `ScannedModel`s.
//! - [`pipeline_manifest`]: `PipelineManifest`, the `model.toml` of a `backend = "pipeline"`
//!   model (its steps), which the scan turns into a core `PipelineSource`.
//! - [`remote`]: `RemoteModel` and `RemoteConnector`, the seam for `remote_v2` models (the
//!   protocol client lives in `inference-engine-v2`).
//! - [`source`]: `OnnxSource`, a core `ModelSource` that loads one version folder on demand.
//! - [`runtime`]: `Runtimes` (what the process offers: the `OnnxRuntime` library, tract),
//!   the `Graph` seam, and the two runtimes behind it.
//! - [`pipeline`]: `OnnxPipeline`, the core `Pipeline` on a graph, with batched runs.
//! - [`examples`]: request `data` → one core tensor per graph input (`Examples`), and the
//!   `[validation]` checks.
//! - [`text`]: `[preprocess] tokenizer` (strings → token tensors, padded per run) and the
//!   text heads' answers (classification, token classification, embeddings).
//! - [`image`]: `[preprocess.image]` (PNG / JPEG / WebP → the graph's pixel tensor), with
//!   the pixel limit checked before decoding.
//! - `outputs`: a run's outputs (tensors, or one map per example) and their rows as JSON.
//! - [`inspect`]: `inspect`, a graph's signature and a suggested `model.toml`.
//! - [`error`]: `OnnxError`, the crate's one error type.

pub mod error;
pub mod examples;
pub mod image;
pub mod inspect;
pub mod manifest;
mod outputs;
pub mod pipeline;
pub mod pipeline_manifest;
mod proto;
pub mod remote;
pub mod repository;
pub mod runtime;
pub mod source;
pub mod text;

pub use error::OnnxError;
pub use examples::Examples;
pub use inspect::{Inspection, OpsetImport, inspect};
pub use manifest::Manifest;
pub use pipeline::{OnnxPipeline, Predictions, Prepared};
pub use pipeline_manifest::PipelineManifest;
pub use remote::{RemoteConnector, RemoteModel};
pub use repository::{ScannedModel, scan_repository, scan_repository_with};
pub use runtime::{OnnxRuntime, Runtimes};
pub use source::OnnxSource;
