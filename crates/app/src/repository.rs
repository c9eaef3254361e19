//! The model repository folder (`MODELS_DIR`) as the registry's [`ModelRepository`], and the
//! ONNX runtimes its models run on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use inference_engine_core::registry::{ModelRepository, ScannedModel};
use inference_engine_core::source::LoadError;
use inference_engine_onnx::{OnnxRuntime, RemoteConnector, Runtimes};
use inference_engine_v2::RemoteV2Connector;

use crate::settings::{OnnxRuntimeChoice, Settings};

/// `<dir>/<name>/<version>/model.toml`, read by the ONNX backend and run on `runtimes`;
/// `remote_v2` models are connected through the Open Inference Protocol client.
#[derive(Debug, Clone)]
pub struct FolderRepository {
    dir: PathBuf,
    runtimes: Runtimes,
    remote: Arc<dyn RemoteConnector>,
}

impl FolderRepository {
    pub fn new(dir: PathBuf, runtimes: Runtimes) -> Self {
        Self {
            dir,
            runtimes,
            remote: Arc::new(RemoteV2Connector::new()),
        }
    }
}

impl ModelRepository for FolderRepository {
    fn scan(&self) -> Result<Vec<ScannedModel>, LoadError> {
        inference_engine_onnx::scan_repository_with(&self.dir, &self.runtimes, Some(&self.remote))
            .map_err(|err| LoadError(err.to_string()))
    }
}

/// Why the ONNX runtimes cannot be set up: `ORT_DYLIB_PATH` names a library that does not
/// load (a library that is merely absent from the default places is not an error: the models
/// that need it are not ready, with this sentence).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeError(pub String);

/// The runtimes the settings ask for: ONNX Runtime loaded once (from `ORT_DYLIB_PATH`, else
/// the default places), unless `ONNX_RUNTIME=tract`.
pub fn onnx_runtimes(settings: &Settings) -> Result<Runtimes, RuntimeError> {
    if settings.onnx_runtime == OnnxRuntimeChoice::Tract {
        return Ok(Runtimes::tract_only());
    }
    let library = settings.ort_dylib_path.as_deref();
    match OnnxRuntime::load(library) {
        Ok(runtime) => Ok(Runtimes::new(Ok(runtime), false)),
        Err(reason) if library.is_some() => Err(RuntimeError(reason)),
        Err(reason) => Ok(Runtimes::new(Err(reason), false)),
    }
}

/// One line about the runtimes, for the start log and `check`: the library and its version,
/// or why ONNX models will not be ready.
pub fn describe_runtimes(runtimes: &Runtimes) -> Result<String, String> {
    if runtimes.is_tract_only() {
        return Ok("tract for every ONNX model (ONNX_RUNTIME=tract)".to_owned());
    }
    runtimes
        .onnxruntime()
        .map(|runtime| {
            format!(
                "ONNX Runtime {} ({})",
                runtime.version(),
                runtime.library().display()
            )
        })
        .map_err(str::to_owned)
}

/// What `inference-engine models inspect PATH.onnx` prints: the graph's inputs, outputs and
/// opsets, what to change for what it recognises, and a suggested `model.toml`. `settings`
/// say which runtimes this machine offers: with tract only, the report says so for a graph
/// tract cannot run.
pub fn inspect_model(
    path: &Path,
    settings: &Settings,
) -> Result<String, inference_engine_onnx::OnnxError> {
    let inspection = inference_engine_onnx::inspect(path)?;
    let only_tract = match onnx_runtimes(settings) {
        Ok(runtimes) if runtimes.is_tract_only() => Some("ONNX_RUNTIME=tract".to_owned()),
        Ok(runtimes) => runtimes.onnxruntime().err().map(str::to_owned),
        Err(RuntimeError(reason)) => Some(reason),
    };
    Ok(inspection.report_for(only_tract.as_deref()))
}
