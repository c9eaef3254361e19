//! [`OnnxSource`]: one model version folder, described without loading, loaded on demand.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use inference_engine_core::pipeline::{Model, PipelineModel};
use inference_engine_core::source::{LoadError, ModelDescription, ModelSource};

use crate::error::OnnxError;
use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::pipeline::OnnxPipeline;

/// A model version folder with a valid `model.toml` whose graph file exists.
#[derive(Debug)]
pub struct OnnxSource {
    manifest: Manifest,
    /// `<version folder>/<manifest.file>`.
    model_path: PathBuf,
    description: ModelDescription,
}

impl OnnxSource {
    /// Reads and validates `<dir>/model.toml` and checks that the graph file it names exists.
    /// The error names the file at fault (`<path>: <reason>`), ready for `GET /models`.
    pub fn open(dir: &Path) -> Result<Self, LoadError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest =
            Manifest::from_path(&manifest_path).map_err(|err| located(&manifest_path, &err))?;
        Self::new(dir, manifest)
    }

    /// A source for a version folder and its (already validated) manifest; fails if the graph
    /// file does not exist.
    pub fn new(dir: &Path, manifest: Manifest) -> Result<Self, LoadError> {
        let model_path = dir.join(&manifest.file);
        if !model_path.is_file() {
            return Err(LoadError(format!(
                "{}: no such file (named by file = {:?} in {MANIFEST_FILE})",
                model_path.display(),
                manifest.file
            )));
        }
        let description = manifest.to_description();
        Ok(Self {
            manifest,
            model_path,
            description,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    /// Loads the graph into a typed pipeline (what [`ModelSource::load`] erases). Blocking.
    pub fn load_pipeline(&self) -> Result<OnnxPipeline, LoadError> {
        // tract reports malformed graphs as errors, but a panic deep in an op's shape
        // inference must not take the loader thread down with it: a bad file is a model that
        // is not ready, never a crash.
        let loaded = panic::catch_unwind(AssertUnwindSafe(|| {
            OnnxPipeline::load(&self.model_path, &self.manifest)
        }));
        match loaded {
            Ok(Ok(pipeline)) => Ok(pipeline),
            Ok(Err(err)) => Err(located(&self.model_path, &err)),
            Err(payload) => {
                let reason = payload
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown cause".to_owned());
                Err(LoadError(format!(
                    "{}: tract panicked while loading the graph: {reason}",
                    self.model_path.display()
                )))
            }
        }
    }
}

impl ModelSource for OnnxSource {
    fn description(&self) -> &ModelDescription {
        &self.description
    }

    fn load(&self) -> Result<Arc<dyn Model>, LoadError> {
        let pipeline = self.load_pipeline()?;
        Ok(Arc::new(PipelineModel::new(pipeline)))
    }
}

/// `<path>: <reason>`, without repeating the path an I/O error already carries.
fn located(path: &Path, err: &OnnxError) -> LoadError {
    match err {
        OnnxError::Io { source, .. } => LoadError(format!("{}: {source}", path.display())),
        other => LoadError(format!("{}: {other}", path.display())),
    }
}
