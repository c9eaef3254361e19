//! Pipelines of models (Triton's ensembles): a model whose `model.toml` lists other models as
//! `[[steps]]`, each step's JSON answer becoming the next step's `data`.
//!
//! A pipeline never runs on an executor thread of its own: a thread blocked on the executors of
//! its steps could deadlock a saturated pool. The inference service runs the steps one after
//! the other instead, each through its own model's usual path (see `service::pipelines`). This
//! module holds what is known before a run: the steps ([`PipelineStep`], in a model's
//! [`PipelineDescription`]), the source the registry catalogues ([`PipelineSource`]), how one
//! step's answer becomes the next step's `data` ([`next_data`]), and what a run reports per
//! step ([`StepTiming`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::model::{ModelKey, ModelName, ModelVersion};
use crate::pipeline::{BatchAnswer, BatchItem, Model, PipelineError};
use crate::source::{Backend, LoadContext, LoadError, ModelDescription, ModelSource, TensorSpec};
use crate::tensor::Tensor;

/// One step of a pipeline: the model it runs and how its `data` is taken from the previous
/// step's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStep {
    pub model: ModelName,
    /// `None`: the registry routes the step per request, as it routes a request that names no
    /// version (canary, A/B, static, or the model's only version).
    pub version: Option<ModelVersion>,
    /// `(input of this step, field of the previous step's answer)`, in the manifest's order.
    /// Empty: the answer is passed on whole (see [`next_data`]). Ignored on the first step,
    /// which gets the request's `data`.
    pub inputs: Vec<(String, String)>,
}

impl PipelineStep {
    /// Reads a step's `model` reference: `name:version`, or `name` alone (routed per request).
    pub fn parse_reference(text: &str) -> Result<(ModelName, Option<ModelVersion>), String> {
        let (name, version) = match text.split_once(':') {
            Some((name, version)) => (name, Some(version)),
            None => (text, None),
        };
        let name = ModelName::parse(name)
            .map_err(|err| format!("model = {text:?}: the model name is invalid: {err}"))?;
        let version = version
            .map(ModelVersion::parse)
            .transpose()
            .map_err(|err| format!("model = {text:?}: the version is invalid: {err}"))?;
        Ok((name, version))
    }
}

/// `name:version`, or `name` for a routed step: how the manifest names the step's model.
impl fmt::Display for PipelineStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}:{version}", self.model),
            None => write!(f, "{}", self.model),
        }
    }
}

/// What a `backend = "pipeline"` model's manifest declares, known without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineDescription {
    /// At least one, in order.
    pub steps: Vec<PipelineStep>,
    /// Why the pipeline cannot run at all, found when the repository was scanned (a step that
    /// names another pipeline, no steps, a malformed reference): its load fails with this, so
    /// it is listed not ready and its requests get 503 `not_ready`, like a broken ONNX model.
    pub refused: Option<String>,
}

/// What one step of a pipeline run took, in the job record and the response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTiming {
    /// The model version that ran the step (chosen by routing for a step without version).
    pub model: ModelKey,
    /// Waiting for an executor thread or a batch.
    pub queue_time: Duration,
    /// The step's model run (its SLA or the pipeline's deadline, when it timed out).
    pub inference_time: Duration,
}

/// A pipeline in the registry's catalogue. It has nothing to load: "loading" it hands out a
/// model that refuses to run (the service runs pipelines step by step, never as one model),
/// or fails with the reason the scan refused the pipeline.
#[derive(Debug)]
pub struct PipelineSource {
    description: ModelDescription,
}

impl PipelineSource {
    /// A pipeline of `steps` (`refused`: why it cannot run, see
    /// [`PipelineDescription::refused`]).
    pub fn new(
        description: Option<String>,
        steps: Vec<PipelineStep>,
        refused: Option<String>,
    ) -> Self {
        Self {
            description: ModelDescription {
                backend: Backend::Pipeline,
                description,
                pipeline: Some(PipelineDescription { steps, refused }),
                ..ModelDescription::builtin()
            },
        }
    }

    /// The pipeline's own request body limit (`max_body_bytes`), instead of the server's.
    pub fn with_max_body_bytes(mut self, limit: Option<usize>) -> Self {
        self.description.max_body_bytes = limit;
        self
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[PipelineStep] {
        self.description
            .pipeline
            .as_ref()
            .map_or(&[], |pipeline| pipeline.steps.as_slice())
    }
}

impl ModelSource for PipelineSource {
    fn description(&self) -> &ModelDescription {
        &self.description
    }

    fn load(&self, _context: &LoadContext) -> Result<Arc<dyn Model>, LoadError> {
        match self
            .description
            .pipeline
            .as_ref()
            .and_then(|pipeline| pipeline.refused.as_ref())
        {
            Some(reason) => Err(LoadError(reason.clone())),
            None => Ok(Arc::new(StepsRunSeparately)),
        }
    }
}

/// The "loaded" form of a pipeline: what its lease holds. Nothing calls it: the service runs
/// a pipeline's steps on their own models. Should anything try (a bug), it fails cleanly.
#[derive(Debug, Clone, Copy)]
struct StepsRunSeparately;

impl StepsRunSeparately {
    fn refusal() -> PipelineError {
        PipelineError::Inference(
            "a pipeline runs step by step through the inference service, not as one model".into(),
        )
    }
}

impl Model for StepsRunSeparately {
    fn predict(&self, _data: Value) -> Result<Value, PipelineError> {
        Err(Self::refusal())
    }

    fn predict_batch(&self, _items: Vec<Value>) -> Result<Vec<Value>, PipelineError> {
        Err(Self::refusal())
    }

    fn run_each(&self, items: Vec<BatchItem>) -> Vec<Result<BatchAnswer, PipelineError>> {
        items.iter().map(|_| Err(Self::refusal())).collect()
    }

    fn infer_tensors(&self, _inputs: Vec<Tensor>) -> Result<Vec<Tensor>, PipelineError> {
        Err(Self::refusal())
    }
}

/// The model a step's `data` goes to, as far as [`next_data`] needs to know it.
#[derive(Debug, Clone, Copy)]
pub struct StepTarget<'a> {
    /// Built-ins take any JSON: an answer reaches them unchanged unless `inputs` maps it.
    pub builtin: bool,
    /// The model's declared inputs (empty for models that take any JSON).
    pub inputs: &'a [TensorSpec],
}

impl<'a> StepTarget<'a> {
    /// The target `description` describes.
    pub fn of(description: &'a ModelDescription) -> Self {
        Self {
            builtin: description.backend == Backend::Builtin,
            inputs: &description.inputs,
        }
    }
}

/// The `data` of the step after the one that answered `output` (one request's `data`: for
/// `/predict/batch`, each item goes through this on its own). In order:
///
/// 1. With `inputs` (`{input = "field"}`), an object answer `{field: v, ...}` becomes
///    `{input: v}` for every mapped pair, and a list of objects (one per example) becomes one
///    object of lists, `{input: [v0, v1, ...]}`. A missing field, or an answer of another
///    shape, is an error naming it.
/// 2. Without `inputs`, a built-in gets the answer unchanged. Any other model gets it
///    unchanged too, except a non-empty list of objects, which becomes an object of lists
///    (`[{"a": 1}, {"a": 2}]` → `{"a": [1, 2]}`): the form in which models take several
///    examples keyed by input name. Every object of the list must have the same fields.
/// 3. A model that declares exactly one input takes its `data` bare (not keyed by the input's
///    name), so an object whose only field is that input's name is replaced by the field's
///    value: `{"embedding": [[..], [..]]}` → `[[..], [..]]`.
pub fn next_data(
    output: Value,
    step: &PipelineStep,
    target: StepTarget<'_>,
) -> Result<Value, String> {
    let data = if !step.inputs.is_empty() {
        map_fields(output, &step.inputs)?
    } else if target.builtin {
        return Ok(output);
    } else {
        match output {
            Value::Array(examples) if is_list_of_objects(&examples) => transpose(examples)?,
            other => other,
        }
    };
    Ok(match (target.builtin, target.inputs, data) {
        (false, [only], Value::Object(mut fields))
            if fields.len() == 1 && fields.contains_key(&only.name) =>
        {
            fields.remove(&only.name).unwrap_or(Value::Null)
        }
        (_, _, data) => data,
    })
}

fn is_list_of_objects(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(Value::is_object)
}

/// `[{"a": 1, "b": 2}, {"a": 3, "b": 4}]` → `{"a": [1, 3], "b": [2, 4]}`, keys in the first
/// object's order.
fn transpose(examples: Vec<Value>) -> Result<Value, String> {
    let count = examples.len();
    let mut columns: Vec<(String, Vec<Value>)> = Vec::new();
    for (index, example) in examples.into_iter().enumerate() {
        // `is_list_of_objects` checked every item.
        let Value::Object(mut fields) = example else {
            continue;
        };
        if index == 0 {
            columns = fields
                .keys()
                .map(|name| (name.clone(), Vec::with_capacity(count)))
                .collect();
        }
        let same_fields = fields.len() == columns.len()
            && columns.iter().all(|(name, _)| fields.contains_key(name));
        if !same_fields {
            return Err(format!(
                "the previous step answered a list of objects with different fields: example \
                 {index} has {}, example 0 has {}",
                field_names(fields.keys()),
                field_names(columns.iter().map(|(name, _)| name))
            ));
        }
        for (name, column) in &mut columns {
            column.push(fields.remove(name.as_str()).unwrap_or(Value::Null));
        }
    }
    Ok(Value::Object(
        columns
            .into_iter()
            .map(|(name, column)| (name, Value::Array(column)))
            .collect(),
    ))
}

fn map_fields(output: Value, inputs: &[(String, String)]) -> Result<Value, String> {
    match output {
        Value::Object(mut fields) => {
            let mut data = Map::new();
            for (input, field) in inputs {
                // A field mapped to two inputs is copied; otherwise it moves.
                let value = if inputs.iter().filter(|(_, other)| other == field).count() > 1 {
                    fields.get(field).cloned()
                } else {
                    fields.remove(field)
                };
                let value =
                    value.ok_or_else(|| missing_field(input, field, None, &data, &fields))?;
                data.insert(input.clone(), value);
            }
            Ok(Value::Object(data))
        }
        Value::Array(examples) if is_list_of_objects(&examples) => {
            let mut columns: Vec<Vec<Value>> = inputs
                .iter()
                .map(|_| Vec::with_capacity(examples.len()))
                .collect();
            for (index, example) in examples.iter().enumerate() {
                for ((input, field), column) in inputs.iter().zip(&mut columns) {
                    let value = example.get(field).ok_or_else(|| {
                        let fields = example.as_object().cloned().unwrap_or_default();
                        missing_field(input, field, Some(index), &Map::new(), &fields)
                    })?;
                    column.push(value.clone());
                }
            }
            Ok(Value::Object(
                inputs
                    .iter()
                    .zip(columns)
                    .map(|((input, _), column)| (input.clone(), Value::Array(column)))
                    .collect(),
            ))
        }
        other => Err(format!(
            "`inputs` maps fields of the previous step's answer, but it answered {}, not an \
             object or a list of objects",
            json_kind(&other)
        )),
    }
}

fn missing_field(
    input: &str,
    field: &str,
    example: Option<usize>,
    taken: &Map<String, Value>,
    left: &Map<String, Value>,
) -> String {
    let whose = match example {
        Some(index) => format!("example {index} of the previous step's answer"),
        None => "the previous step's answer".to_owned(),
    };
    format!(
        "input `{input}` takes field `{field}`, which {whose} does not have (its fields: {})",
        field_names(taken.keys().chain(left.keys()))
    )
}

fn field_names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<String> = names.map(|name| format!("`{name}`")).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list of non-objects",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn step(inputs: &[(&str, &str)]) -> PipelineStep {
        PipelineStep {
            model: ModelName::parse("next").unwrap(),
            version: None,
            inputs: inputs
                .iter()
                .map(|(input, field)| ((*input).to_owned(), (*field).to_owned()))
                .collect(),
        }
    }

    fn spec(name: &str) -> TensorSpec {
        TensorSpec {
            name: name.to_owned(),
            datatype: "FP32".to_owned(),
            shape: vec![-1, 2],
        }
    }

    const BUILTIN: StepTarget<'static> = StepTarget {
        builtin: true,
        inputs: &[],
    };

    #[test]
    fn references_are_name_and_optional_version() {
        let (name, version) = PipelineStep::parse_reference("iris:v1").unwrap();
        assert_eq!((name.as_str(), version.unwrap().as_str()), ("iris", "v1"));
        let (name, version) = PipelineStep::parse_reference("iris").unwrap();
        assert_eq!((name.as_str(), version), ("iris", None));
        for bad in ["", ":v1", "iris:", "ir is", "iris:v1:v2", "../iris"] {
            assert!(PipelineStep::parse_reference(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_list_of_objects_becomes_an_object_of_lists_for_a_model_and_stays_for_a_builtin() {
        let answer = json!([{"embedding": [1, 2]}, {"embedding": [3, 4]}]);
        let inputs = [spec("embedding"), spec("other")];
        let model = StepTarget {
            builtin: false,
            inputs: &inputs,
        };
        assert_eq!(
            next_data(answer.clone(), &step(&[]), model),
            Ok(json!({"embedding": [[1, 2], [3, 4]]}))
        );
        assert_eq!(next_data(answer.clone(), &step(&[]), BUILTIN), Ok(answer));
    }

    #[test]
    fn a_one_input_model_gets_its_data_bare() {
        let inputs = [spec("embedding")];
        let model = StepTarget {
            builtin: false,
            inputs: &inputs,
        };
        let list = json!([{"embedding": [1, 2]}, {"embedding": [3, 4]}]);
        assert_eq!(
            next_data(list, &step(&[]), model),
            Ok(json!([[1, 2], [3, 4]]))
        );
        let single = json!({"embedding": [1, 2]});
        assert_eq!(next_data(single, &step(&[]), model), Ok(json!([1, 2])));
        // Anything else goes as it is, for the model to judge.
        let other = json!({"embedding": [1, 2], "extra": 1});
        assert_eq!(next_data(other.clone(), &step(&[]), model), Ok(other));
    }

    #[test]
    fn inputs_map_fields_of_an_object_or_of_each_example() {
        let mapping = step(&[("input", "probabilities"), ("copy", "probabilities")]);
        let single = json!({"label": 1, "probabilities": [0.1, 0.9]});
        assert_eq!(
            next_data(single, &mapping, BUILTIN),
            Ok(json!({"input": [0.1, 0.9], "copy": [0.1, 0.9]}))
        );
        let list = json!([{"label": 1, "p": 0.5}, {"label": 0, "p": 0.25}]);
        assert_eq!(
            next_data(list, &step(&[("x", "p")]), BUILTIN),
            Ok(json!({"x": [0.5, 0.25]}))
        );
    }

    #[test]
    fn unusable_answers_are_errors_naming_the_field_or_the_shape() {
        let err =
            next_data(json!({"label": 1}), &step(&[("input", "probs")]), BUILTIN).unwrap_err();
        assert!(err.contains("`probs`") && err.contains("`label`"), "{err}");
        let err = next_data(
            json!([{"p": 1}, {"q": 2}]),
            &step(&[("input", "p")]),
            BUILTIN,
        )
        .unwrap_err();
        assert!(err.contains("example 1"), "{err}");
        let err = next_data(json!([1, 2]), &step(&[("input", "p")]), BUILTIN).unwrap_err();
        assert!(err.contains("a list of non-objects"), "{err}");
        let model = StepTarget {
            builtin: false,
            inputs: &[],
        };
        let err = next_data(json!([{"a": 1}, {"b": 2}]), &step(&[]), model).unwrap_err();
        assert!(err.contains("different fields"), "{err}");
    }
}
