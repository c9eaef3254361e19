//! The ONNX backend of the inference engine, on tract (pure Rust).
//!
//! It owns everything between a model repository folder and a runnable core `Model`: the
//! `model.toml` manifest format, the repository scan, loading a graph into an optimised tract
//! plan, the JSON ⇄ tensor conversion of requests and results, the batched run that dynamic
//! batching relies on, and `models inspect`. The formats it implements are specified in
//! `docs/model-repository.md`.
//!
//! It depends on `inference-engine-core` (whose `ModelSource` and `Pipeline` it implements)
//! and must never depend on a transport, a database or a runtime (axum, sqlx, redis, tokio).
//!
//! Layout:
//! - [`manifest`]: `Manifest`, the parsed and validated `model.toml`, and its conversion to a
//!   core `ModelDescription`.
//! - [`repository`]: `scan_repository`, `<dir>/<name>/<version>/model.toml` → `ScannedModel`s.
//! - [`remote`]: `RemoteModel` and `RemoteConnector`, the seam for `remote_v2` models (the
//!   protocol client lives in `inference-engine-v2`).
//! - [`source`]: `OnnxSource`, a core `ModelSource` that loads one version folder on demand.
//! - [`pipeline`]: `OnnxPipeline`, the core `Pipeline` on a tract plan, with batched runs.
//! - [`examples`]: request `data` → one tensor per graph input (`Examples`), and the
//!   `[validation]` checks.
//! - `tensors`: core tensors ⇄ tract tensors for the tensor path (`Pipeline::infer_tensors`).
//! - [`inspect`]: `inspect`, a graph's signature and a suggested `model.toml`.
//! - [`error`]: `OnnxError`, the crate's one error type.

pub mod error;
pub mod examples;
pub mod inspect;
pub mod manifest;
pub mod pipeline;
pub mod remote;
pub mod repository;
pub mod source;
mod tensors;

pub use error::OnnxError;
pub use examples::Examples;
pub use inspect::{Inspection, OpsetImport, inspect};
pub use manifest::Manifest;
pub use pipeline::{OnnxPipeline, Predictions};
pub use remote::{RemoteConnector, RemoteModel};
pub use repository::{ScannedModel, scan_repository, scan_repository_with};
pub use source::OnnxSource;
