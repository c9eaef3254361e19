//! The model repository folder (`MODELS_DIR`) as the registry's [`ModelRepository`].

use std::path::{Path, PathBuf};

use inference_engine_core::registry::{ModelRepository, ScannedModel};
use inference_engine_core::source::LoadError;

/// `<dir>/<name>/<version>/model.toml`, read by the ONNX backend.
#[derive(Debug, Clone)]
pub struct FolderRepository {
    dir: PathBuf,
}

impl FolderRepository {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

impl ModelRepository for FolderRepository {
    fn scan(&self) -> Result<Vec<ScannedModel>, LoadError> {
        inference_engine_onnx::scan_repository(&self.dir).map_err(|err| LoadError(err.to_string()))
    }
}

/// What `inference-engine models inspect PATH.onnx` prints: the graph's inputs, outputs and
/// opsets, and a suggested `model.toml`.
pub fn inspect_model(path: &Path) -> Result<String, inference_engine_onnx::OnnxError> {
    inference_engine_onnx::inspect(path).map(|inspection| inspection.report())
}
