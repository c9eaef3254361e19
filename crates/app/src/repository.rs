//! The model repository folder (`MODELS_DIR`) as the registry's [`ModelRepository`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use inference_engine_core::registry::{ModelRepository, ScannedModel};
use inference_engine_core::source::LoadError;
use inference_engine_onnx::RemoteConnector;
use inference_engine_v2::RemoteV2Connector;

/// `<dir>/<name>/<version>/model.toml`, read by the ONNX backend; `remote_v2` models are
/// connected through the Open Inference Protocol client.
#[derive(Debug, Clone)]
pub struct FolderRepository {
    dir: PathBuf,
    remote: Arc<dyn RemoteConnector>,
}

impl FolderRepository {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            remote: Arc::new(RemoteV2Connector::new()),
        }
    }
}

impl ModelRepository for FolderRepository {
    fn scan(&self) -> Result<Vec<ScannedModel>, LoadError> {
        inference_engine_onnx::scan_repository_with(&self.dir, Some(&self.remote))
            .map_err(|err| LoadError(err.to_string()))
    }
}

/// What `inference-engine models inspect PATH.onnx` prints: the graph's inputs, outputs and
/// opsets, and a suggested `model.toml`.
pub fn inspect_model(path: &Path) -> Result<String, inference_engine_onnx::OnnxError> {
    inference_engine_onnx::inspect(path).map(|inspection| inspection.report())
}
