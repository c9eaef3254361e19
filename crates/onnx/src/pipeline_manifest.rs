//! The `model.toml` of a pipeline of models (`backend = "pipeline"`, docs/model-repository.md
//! "Pipelines of models"): the models it runs, in order, and how each step's `data` is taken
//! from the previous step's answer.
//!
//! It is parsed apart from the ONNX [`Manifest`](crate::Manifest): a pipeline has steps, not
//! tensors or a graph, and each format rejects the other's keys. Parsing is as strict
//! (`deny_unknown_fields`, errors naming the line and key) and validation as complete: a
//! [`PipelineManifest`] from [`PipelineManifest::parse`] has at least one step, every step names
//! a valid `name` or `name:version`, and only later steps map inputs. Whether the named models
//! exist is known only to the registry (built-ins are not in the repository), which shows a
//! pipeline with an unknown step not ready.

use std::collections::BTreeMap;
use std::path::Path;

use inference_engine_core::steps::PipelineStep;
use serde::Deserialize;

use crate::error::OnnxError;
use crate::manifest::syntax_error;

/// What `backend` says in a pipeline's manifest.
pub const PIPELINE_BACKEND: &str = "pipeline";

/// A parsed and validated pipeline `model.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineManifest {
    pub description: Option<String>,
    /// The request body limit of the pipeline, in bytes, instead of `MAX_BODY_BYTES` (its
    /// steps' own limits do not apply to requests for the pipeline).
    pub max_body_bytes: Option<usize>,
    /// At least one, in order.
    pub steps: Vec<PipelineStep>,
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    /// `"pipeline"`, which detection checked; a field so that the key is known.
    #[serde(rename = "backend")]
    _backend: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    steps: Vec<StepFile>,
}

/// One `[[steps]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    /// `name:version`, or `name` to let routing choose the version per request.
    model: String,
    /// `{<input of this step> = "<field of the previous step's answer>"}`.
    #[serde(default)]
    inputs: Option<BTreeMap<String, String>>,
}

impl PipelineManifest {
    /// Reads `path` when it is a pipeline's manifest: `None` for any other manifest, and for a
    /// file that cannot be read or is not TOML (the ONNX manifest's parser then says why).
    pub fn read_if_pipeline(path: &Path) -> Option<Result<Self, OnnxError>> {
        let text = std::fs::read_to_string(path).ok()?;
        let table: toml::Table = toml::from_str(&text).ok()?;
        let backend = table.get("backend").and_then(toml::Value::as_str);
        (backend == Some(PIPELINE_BACKEND)).then(|| Self::parse(&text))
    }

    /// Parses and validates the text of a pipeline's `model.toml`.
    pub fn parse(text: &str) -> Result<Self, OnnxError> {
        let file: ManifestFile = toml::from_str(text).map_err(|err| syntax_error(text, &err))?;
        if file.max_body_bytes == Some(0) {
            return Err(invalid("max_body_bytes must be at least 1".into()));
        }
        if file.steps.is_empty() {
            return Err(invalid(
                "a pipeline needs at least one [[steps]] table (model = \"name:version\")".into(),
            ));
        }
        let steps = file
            .steps
            .into_iter()
            .enumerate()
            .map(|(index, step)| step.validate(index))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            description: file.description,
            max_body_bytes: file.max_body_bytes,
            steps,
        })
    }
}

impl StepFile {
    fn validate(self, index: usize) -> Result<PipelineStep, OnnxError> {
        let (model, version) = PipelineStep::parse_reference(&self.model)
            .map_err(|reason| invalid(format!("steps[{index}]: {reason}")))?;
        let inputs: Vec<(String, String)> = self.inputs.unwrap_or_default().into_iter().collect();
        if index == 0 && !inputs.is_empty() {
            return Err(invalid(
                "steps[0]: `inputs` maps fields of the previous step's answer, and the first \
                 step has none: it gets the request's `data`"
                    .into(),
            ));
        }
        if let Some((input, field)) = inputs
            .iter()
            .find(|(input, field)| input.is_empty() || field.is_empty())
        {
            return Err(invalid(format!(
                "steps[{index}]: inputs = {{ {input:?} = {field:?} }}: names must not be empty"
            )));
        }
        Ok(PipelineStep {
            model,
            version,
            inputs,
        })
    }
}

fn invalid(message: String) -> OnnxError {
    OnnxError::InvalidManifest(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        PipelineManifest::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn steps_name_models_with_or_without_a_version_and_later_steps_map_inputs() {
        let manifest = PipelineManifest::parse(
            r#"
backend = "pipeline"
description = "embed, then classify"
max_body_bytes = 4000000

[[steps]]
model = "embedder:v1"

[[steps]]
model = "classifier"
inputs = { features = "embedding" }
"#,
        )
        .unwrap();
        assert_eq!(
            manifest.description.as_deref(),
            Some("embed, then classify")
        );
        assert_eq!(manifest.max_body_bytes, Some(4_000_000));
        let references: Vec<String> = manifest.steps.iter().map(ToString::to_string).collect();
        assert_eq!(references, ["embedder:v1", "classifier"]);
        assert_eq!(
            manifest.steps[1].inputs,
            [("features".to_owned(), "embedding".to_owned())]
        );
    }

    #[test]
    fn broken_manifests_are_refused_with_a_sentence_naming_the_problem() {
        let no_steps = error_of("backend = \"pipeline\"\n");
        assert!(no_steps.contains("at least one [[steps]]"), "{no_steps}");
        let malformed = error_of("backend = \"pipeline\"\n[[steps]]\nmodel = \"echo:\"\n");
        assert!(
            malformed.contains("steps[0]") && malformed.contains("version"),
            "{malformed}"
        );
        let first_inputs = error_of(
            "backend = \"pipeline\"\n[[steps]]\nmodel = \"echo\"\ninputs = { a = \"b\" }\n",
        );
        assert!(first_inputs.contains("first step"), "{first_inputs}");
        let unknown_key = error_of(
            "backend = \"pipeline\"\nfile = \"model.onnx\"\n[[steps]]\nmodel = \"echo\"\n",
        );
        assert!(unknown_key.contains("file"), "{unknown_key}");
    }
}
