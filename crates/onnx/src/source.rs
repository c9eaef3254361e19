//! [`OnnxSource`]: one model version folder, described without loading, loaded on demand:
//! its graph file, or for `backend = "remote_v2"` a connection to the remote server.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use inference_engine_core::pipeline::{Model, PipelineModel};
use inference_engine_core::source::{
    LoadContext, LoadError, ModelDescription, ModelSource, TensorSpec,
};

use crate::error::OnnxError;
use crate::inspect::UNKNOWN_TYPE;
use crate::manifest::{MANIFEST_FILE, Manifest, ManifestBackend};
use crate::pipeline::OnnxPipeline;
use crate::remote::RemoteConnector;
use crate::runtime::Runtimes;

/// A model version folder with a valid `model.toml` whose graph file exists.
#[derive(Debug)]
pub struct OnnxSource {
    manifest: Manifest,
    /// The version folder: files the manifest names are relative to it.
    dir: PathBuf,
    origin: Origin,
    description: ModelDescription,
}

/// Where the model runs.
#[derive(Debug)]
enum Origin {
    /// `<version folder>/<manifest.file>`, on one of the process's runtimes.
    Graph(PathBuf, Runtimes),
    Remote(Arc<dyn RemoteConnector>),
}

impl OnnxSource {
    /// Reads and validates `<dir>/model.toml` and checks that the graph file it names exists.
    /// The error names the file at fault (`<path>: <reason>`), ready for `GET /models`.
    pub fn open(dir: &Path, runtimes: &Runtimes) -> Result<Self, LoadError> {
        Self::open_with(dir, runtimes, None)
    }

    /// Like [`OnnxSource::open`]; `remote` connects `backend = "remote_v2"` models (without
    /// it they are listed, not ready).
    pub fn open_with(
        dir: &Path,
        runtimes: &Runtimes,
        remote: Option<&Arc<dyn RemoteConnector>>,
    ) -> Result<Self, LoadError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest =
            Manifest::from_path(&manifest_path).map_err(|err| located(&manifest_path, &err))?;
        if manifest.backend == ManifestBackend::RemoteV2 {
            let connector = remote.ok_or_else(|| {
                LoadError(format!(
                    "{}: backend = \"remote_v2\" is not available in this process",
                    manifest_path.display()
                ))
            })?;
            check_named_files(dir, &manifest)?;
            let description = manifest.to_description();
            return Ok(Self {
                manifest,
                dir: dir.to_owned(),
                origin: Origin::Remote(Arc::clone(connector)),
                description,
            });
        }
        Self::new(dir, manifest, runtimes)
    }

    /// A source for a version folder and its (already validated) manifest; fails if the graph
    /// file does not exist.
    pub fn new(dir: &Path, manifest: Manifest, runtimes: &Runtimes) -> Result<Self, LoadError> {
        let model_path = dir.join(&manifest.file);
        if !model_path.is_file() {
            return Err(LoadError(format!(
                "{}: no such file (named by file = {:?} in {MANIFEST_FILE})",
                model_path.display(),
                manifest.file
            )));
        }
        check_named_files(dir, &manifest)?;
        check_graph(&model_path, &manifest)?;
        let mut description = manifest.to_description();
        description.runtime = Some(runtimes.effective(manifest.runtime).as_str());
        // The graph's weights are in memory at least once when it is loaded.
        description.size_hint_bytes = std::fs::metadata(&model_path).ok().map(|file| file.len());
        Ok(Self {
            manifest,
            dir: dir.to_owned(),
            origin: Origin::Graph(model_path, runtimes.clone()),
            description,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Loads the graph into a typed pipeline (what [`ModelSource::load`] erases). Blocking.
    pub fn load_pipeline(&self, context: &LoadContext) -> Result<OnnxPipeline, LoadError> {
        let (model_path, runtimes) = match &self.origin {
            Origin::Graph(model_path, runtimes) => (model_path, runtimes),
            Origin::Remote(connector) => {
                let remote = self.manifest.remote.as_ref().ok_or_else(|| {
                    LoadError("backend = \"remote_v2\" without a [remote] table".to_owned())
                })?;
                return OnnxPipeline::remote(&self.dir, &self.manifest, connector.connect(remote)?)
                    .map_err(|err| located(&self.dir, &err));
            }
        };
        let loaded = panic::catch_unwind(AssertUnwindSafe(|| {
            OnnxPipeline::load(&self.dir, model_path, &self.manifest, runtimes, context)
        }));
        match loaded {
            Ok(Ok(pipeline)) => Ok(pipeline),
            Ok(Err(err)) => Err(located(model_path, &err)),
            Err(payload) => {
                let reason = payload
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown cause".to_owned());
                Err(LoadError(format!(
                    "{}: the runtime panicked while loading the graph: {reason}",
                    model_path.display()
                )))
            }
        }
    }
}

impl ModelSource for OnnxSource {
    fn description(&self) -> &ModelDescription {
        &self.description
    }

    fn load(&self, context: &LoadContext) -> Result<Arc<dyn Model>, LoadError> {
        let pipeline = self.load_pipeline(context)?;
        Ok(Arc::new(PipelineModel::new(pipeline)))
    }
}

/// Files the manifest names besides the graph (a tokenizer) must exist when it is scanned, so
/// the model is listed as not ready instead of failing at its first request.
fn check_named_files(dir: &Path, manifest: &Manifest) -> Result<(), LoadError> {
    if let Some(tokenizer) = manifest.tokenizer() {
        let path = dir.join(tokenizer);
        if !path.is_file() {
            return Err(LoadError(format!(
                "{}: no such file (named by [preprocess] tokenizer = {tokenizer:?} in \
                 {MANIFEST_FILE})",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The graph file against the manifest, from the signature the file declares (no runtime and
/// no session, so a scan stays cheap in memory): a file that is not an ONNX model, an input or
/// output the manifest names that the graph lacks, a graph input the manifest leaves out, or a
/// declared datatype that differs makes the model not ready when the repository is scanned,
/// not at its first request. The runtime checks the rest (ranks, sizes) when it loads.
fn check_graph(model_path: &Path, manifest: &Manifest) -> Result<(), LoadError> {
    let failed = |reason: String| LoadError(format!("{}: {reason}", model_path.display()));
    let signature = crate::inspect::declared_signature(model_path)
        .map_err(|err| failed(format!("not a readable ONNX model: {err}")))?;
    let input_names = names(&signature.inputs);
    crate::pipeline::check_declared("input", &manifest.inputs, &input_names)
        .map_err(|err| failed(err.to_string()))?;
    let output_names = names(&signature.outputs);
    for declared in &manifest.outputs {
        if !output_names.contains(&declared.name) {
            return Err(failed(format!(
                "output `{}` is not an output of the graph (graph outputs: {})",
                declared.name,
                crate::pipeline::quoted(&output_names)
            )));
        }
    }
    let graph_tensors = signature.inputs.iter().chain(&signature.outputs);
    for (what, declared) in manifest
        .inputs
        .iter()
        .map(|tensor| ("input", tensor))
        .chain(manifest.outputs.iter().map(|tensor| ("output", tensor)))
    {
        let in_graph = graph_tensors
            .clone()
            .find(|tensor| tensor.name == declared.name);
        // A type the file does not declare (or one the engine has no name for) is the
        // runtime's to check at load.
        if let Some(in_graph) = in_graph.filter(|tensor| tensor.datatype != UNKNOWN_TYPE)
            && in_graph.datatype != declared.datatype.as_str()
        {
            return Err(failed(format!(
                "{what} `{}` is {} {:?} in the graph but {MANIFEST_FILE} says {} {:?}",
                declared.name, in_graph.datatype, in_graph.shape, declared.datatype, declared.shape
            )));
        }
    }
    Ok(())
}

fn names(tensors: &[TensorSpec]) -> Vec<String> {
    tensors.iter().map(|tensor| tensor.name.clone()).collect()
}

/// `<path>: <reason>`, without repeating the path an I/O error already carries.
fn located(path: &Path, err: &OnnxError) -> LoadError {
    match err {
        OnnxError::Io { source, .. } => LoadError(format!("{}: {source}", path.display())),
        other => LoadError(format!("{}: {other}", path.display())),
    }
}
