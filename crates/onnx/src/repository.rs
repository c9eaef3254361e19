//! The model repository scan: `<dir>/<name>/<version>/model.toml` → one [`ScannedModel`] each.
//!
//! The scan reads manifests only, never graphs (those load lazily through
//! [`ModelSource::load`]), so it is fast and a broken model cannot stop the others: a manifest
//! that does not parse, or names a missing file, becomes a [`ScannedModel`] whose `source` is
//! the error, listed as not ready. A `backend = "pipeline"` manifest becomes a core
//! [`PipelineSource`] (refused, and so not ready, when its manifest is invalid or a step names
//! another pipeline of the repository).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::BTreeSet;

use inference_engine_core::model::{ModelKey, ModelName, ModelVersion};
/// One model version found in the repository: its loadable model, or why its manifest is
/// unusable (`<path>: <reason>`).
pub use inference_engine_core::registry::ScannedModel;
use inference_engine_core::source::ModelSource;
use inference_engine_core::steps::{PipelineSource, PipelineStep};

use crate::error::OnnxError;
use crate::manifest::MANIFEST_FILE;
use crate::pipeline_manifest::PipelineManifest;
use crate::remote::RemoteConnector;
use crate::runtime::Runtimes;
use crate::source::OnnxSource;

/// Lists every model version under `dir`, sorted by key.
///
/// - A `dir` that does not exist is an empty repository: the result is empty and a warning is
///   logged (a server without ONNX models still serves its built-ins). Any other failure to
///   read `dir` is an error.
/// - Folders whose names are not a valid model name or version are skipped with a warning;
///   hidden entries (starting with `.`) and plain files are skipped silently.
/// - A version folder without `model.toml` is skipped with a warning.
/// - A `model.toml` that fails to parse or validate, or names a missing file, is listed with
///   `source: Err(..)` (and logged).
/// - A `backend = "pipeline"` manifest is listed as a [`PipelineSource`]; one that fails to
///   validate, or has a step naming another pipeline of this repository (pipelines do not
///   nest), is refused: listed, and not ready with the reason.
pub fn scan_repository(dir: &Path, runtimes: &Runtimes) -> Result<Vec<ScannedModel>, OnnxError> {
    scan_repository_with(dir, runtimes, None)
}

/// Like [`scan_repository`]; `remote` connects `backend = "remote_v2"` models.
pub fn scan_repository_with(
    dir: &Path,
    runtimes: &Runtimes,
    remote: Option<&Arc<dyn RemoteConnector>>,
) -> Result<Vec<ScannedModel>, OnnxError> {
    let names = match subfolders(dir) {
        Ok(names) => names,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            tracing::warn!(
                dir = %dir.display(),
                "the model repository does not exist; no ONNX models are served"
            );
            return Ok(Vec::new());
        }
        Err(source) => {
            return Err(OnnxError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };

    let mut models = Vec::new();
    // Built once every manifest is read: whether a step names another pipeline depends on
    // the whole repository.
    let mut pipelines: Vec<(ModelKey, PathBuf, Result<PipelineManifest, OnnxError>)> = Vec::new();
    for (name_text, name_dir) in names {
        let name = match ModelName::parse(name_text.as_str()) {
            Ok(name) => name,
            Err(err) => {
                tracing::warn!(folder = %name_dir.display(), "skipping a folder that is not a model name: {err}");
                continue;
            }
        };
        let versions = match subfolders(&name_dir) {
            Ok(versions) => versions,
            Err(err) => {
                tracing::warn!(folder = %name_dir.display(), "skipping a model folder that cannot be read: {err}");
                continue;
            }
        };
        for (version_text, version_dir) in versions {
            let version = match ModelVersion::parse(version_text.as_str()) {
                Ok(version) => version,
                Err(err) => {
                    tracing::warn!(folder = %version_dir.display(), "skipping a folder that is not a model version: {err}");
                    continue;
                }
            };
            if !version_dir.join(MANIFEST_FILE).exists() {
                tracing::warn!(folder = %version_dir.display(), "skipping a version folder without {MANIFEST_FILE}");
                continue;
            }
            let key = ModelKey::new(name.clone(), version);
            let manifest_path = version_dir.join(MANIFEST_FILE);
            if let Some(pipeline) = PipelineManifest::read_if_pipeline(&manifest_path) {
                pipelines.push((key, manifest_path, pipeline));
                continue;
            }
            let source = OnnxSource::open_with(&version_dir, runtimes, remote)
                .map(|source| Arc::new(source) as Arc<dyn ModelSource>);
            if let Err(err) = &source {
                tracing::warn!(model = %key, "model is not ready: {err}");
            }
            models.push(ScannedModel { key, source });
        }
    }
    let pipeline_keys: BTreeSet<ModelKey> = pipelines.iter().map(|(key, ..)| key.clone()).collect();
    for (key, manifest_path, manifest) in pipelines {
        let source = pipeline_source(&manifest_path, manifest, &pipeline_keys);
        if let Some(reason) = source
            .description()
            .pipeline
            .as_ref()
            .and_then(|pipeline| pipeline.refused.as_ref())
        {
            tracing::warn!(model = %key, "model is not ready: {reason}");
        }
        models.push(ScannedModel {
            key,
            source: Ok(Arc::new(source)),
        });
    }
    models.sort_by(|left, right| left.key.cmp(&right.key));
    Ok(models)
}

/// The source of a pipeline whose manifest at `path` reads as `manifest`; `pipelines` are the
/// repository's pipelines, which its steps must not name.
fn pipeline_source(
    path: &Path,
    manifest: Result<PipelineManifest, OnnxError>,
    pipelines: &BTreeSet<ModelKey>,
) -> PipelineSource {
    let located = |reason: &dyn std::fmt::Display| format!("{}: {reason}", path.display());
    let manifest = match manifest {
        Ok(manifest) => manifest,
        Err(err) => return PipelineSource::new(None, Vec::new(), Some(located(&err))),
    };
    let nested = manifest.steps.iter().enumerate().find_map(|(index, step)| {
        nested_pipeline(step, pipelines).map(|key| {
            located(&format_args!(
                "steps[{index}]: model = \"{step}\" names {key}, a pipeline: a pipeline's steps \
                 must be models (pipelines do not nest)"
            ))
        })
    });
    PipelineSource::new(manifest.description, manifest.steps, nested)
        .with_max_body_bytes(manifest.max_body_bytes)
}

/// The pipeline `step` would run, if it names one: its exact version, or for a step routed per
/// request any version of its model.
fn nested_pipeline<'a>(
    step: &PipelineStep,
    pipelines: &'a BTreeSet<ModelKey>,
) -> Option<&'a ModelKey> {
    pipelines.iter().find(|key| {
        key.name == step.model
            && step
                .version
                .as_ref()
                .is_none_or(|version| *version == key.version)
    })
}

/// The visible subfolders of `dir` (following symlinks) with their names, sorted by name.
fn subfolders(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut folders = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(folder = %path.display(), "skipping an entry whose name is not UTF-8");
            continue;
        };
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        folders.push((name, path));
    }
    folders.sort();
    Ok(folders)
}
