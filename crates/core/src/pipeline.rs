//! The contract every model implements: preprocess → validate → infer → postprocess.
//!
//! [`Pipeline`] is the typed form authors write; [`Model`] is the object-safe form the registry
//! stores and executor threads call. The blanket erasure lives in [`PipelineModel`] so that a
//! backend that can do better than item-by-item (a batched ONNX run) implements `infer_batch`
//! once and every caller benefits.

use std::fmt;

use serde_json::Value;

use crate::error::{Classified, ErrorKind};
use crate::tensor::Tensor;

/// Why a model call failed. Both variants are final: retrying the same input cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// The input does not fit the model (shape, type, range). The message names the problem.
    #[error("{0}")]
    InvalidInput(String),
    /// The model itself failed on valid input.
    #[error("{0}")]
    Inference(String),
    /// A service the model needs (a remote inference server) cannot be reached.
    #[error("{0}")]
    Unavailable(String),
}

impl PipelineError {
    /// Prefixes the message with the batch item it concerns, so a 256-item batch says which one.
    pub(crate) fn for_item(self, index: usize) -> Self {
        match self {
            Self::InvalidInput(message) => Self::InvalidInput(format!("items[{index}]: {message}")),
            Self::Inference(message) => Self::Inference(format!("items[{index}]: {message}")),
            Self::Unavailable(message) => Self::Unavailable(message),
        }
    }
}

impl Classified for PipelineError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidInput(_) => ErrorKind::InvalidInput,
            Self::Inference(_) => ErrorKind::Internal,
            Self::Unavailable(_) => ErrorKind::Unavailable,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::Inference(_) => "inference_failed",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// A model written as four typed stages. Runs on executor threads, so it may block.
fn no_tensor_interface() -> PipelineError {
    PipelineError::InvalidInput(
        "this model takes JSON `data` only (POST /predict); it has no tensor interface".into(),
    )
}

/// One request of a dynamic batch: JSON `data` (`/predict`) or named tensors (the protocol).
#[derive(Debug, Clone, PartialEq)]
pub enum BatchItem {
    Json(Value),
    Tensors(Vec<Tensor>),
}

/// A batch item's answer, in the form its request came in.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchAnswer {
    Json(Value),
    Tensors(Vec<Tensor>),
}

pub trait Pipeline: Send + Sync + 'static {
    /// What preprocessing turns the client's JSON into (a tensor, a string, ...).
    type Input: Send;
    /// What the model produces before postprocessing.
    type Output: Send;

    fn preprocess(&self, data: Value) -> Result<Self::Input, PipelineError>;

    fn validate(&self, _input: &Self::Input) -> Result<(), PipelineError> {
        Ok(())
    }

    /// A cheap look at a request's `data` on the caller's task, before it waits for an
    /// executor thread: an input the model can never take is refused at once (422), however
    /// busy the model is and however short the request's deadline, instead of timing out in
    /// the queue (504). It must not run the model or costly preprocessing (decoding an image,
    /// tokenizing): those wait for the thread, where `preprocess` and `validate` still run.
    fn check(&self, _data: &Value) -> Result<(), PipelineError> {
        Ok(())
    }

    fn infer(&self, input: Self::Input) -> Result<Self::Output, PipelineError>;

    /// Runs several inputs at once; backends that can stack inputs override this.
    fn infer_batch(&self, inputs: Vec<Self::Input>) -> Result<Vec<Self::Output>, PipelineError> {
        inputs
            .into_iter()
            .enumerate()
            .map(|(index, input)| self.infer(input).map_err(|err| err.for_item(index)))
            .collect()
    }

    fn postprocess(&self, output: Self::Output) -> Result<Value, PipelineError>;

    /// Runs the model on named tensors (the Open Inference Protocol path): the model's own
    /// inputs and outputs, no JSON pre- or postprocessing.
    fn infer_tensors(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, PipelineError> {
        let input = self.tensors_to_input(inputs)?;
        let output = self.infer(input)?;
        self.output_to_tensors(output)
    }

    /// The tensor path's "preprocess and validate": named tensors → the model's input. Models
    /// without a tensor signature refuse.
    fn tensors_to_input(&self, _inputs: Vec<Tensor>) -> Result<Self::Input, PipelineError> {
        Err(no_tensor_interface())
    }

    /// The tensor path's "postprocess": the model's output as its raw named tensors.
    fn output_to_tensors(&self, _output: Self::Output) -> Result<Vec<Tensor>, PipelineError> {
        Err(no_tensor_interface())
    }
}

/// A model as the registry and the executors see it: JSON in, JSON out.
pub trait Model: Send + Sync + fmt::Debug {
    fn predict(&self, data: Value) -> Result<Value, PipelineError>;

    /// All items succeed or the call fails, naming the first bad item.
    fn predict_batch(&self, items: Vec<Value>) -> Result<Vec<Value>, PipelineError>;

    /// Independent requests run together (dynamic batching): the valid items share one model
    /// run, JSON and tensor requests alike, and each item gets its own outcome in its own
    /// form, so one caller's bad input fails only itself.
    fn run_each(&self, items: Vec<BatchItem>) -> Vec<Result<BatchAnswer, PipelineError>>;

    /// See [`Pipeline::infer_tensors`].
    fn infer_tensors(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, PipelineError>;

    /// See [`Pipeline::check`].
    fn check(&self, _data: &Value) -> Result<(), PipelineError> {
        Ok(())
    }
}

/// Adapts any [`Pipeline`] into a [`Model`].
pub struct PipelineModel<P> {
    pipeline: P,
}

impl<P: Pipeline> PipelineModel<P> {
    pub fn new(pipeline: P) -> Self {
        Self { pipeline }
    }
}

impl<P> fmt::Debug for PipelineModel<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineModel")
            .field("pipeline", &std::any::type_name::<P>())
            .finish()
    }
}

impl<P: Pipeline> PipelineModel<P> {
    fn prepare(&self, data: Value) -> Result<P::Input, PipelineError> {
        let input = self.pipeline.preprocess(data)?;
        self.pipeline.validate(&input)?;
        Ok(input)
    }
}

impl<P: Pipeline> Model for PipelineModel<P> {
    fn infer_tensors(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, PipelineError> {
        self.pipeline.infer_tensors(inputs)
    }

    fn check(&self, data: &Value) -> Result<(), PipelineError> {
        self.pipeline.check(data)
    }

    fn predict(&self, data: Value) -> Result<Value, PipelineError> {
        let input = self.pipeline.preprocess(data)?;
        self.pipeline.validate(&input)?;
        let output = self.pipeline.infer(input)?;
        self.pipeline.postprocess(output)
    }

    fn predict_batch(&self, items: Vec<Value>) -> Result<Vec<Value>, PipelineError> {
        let mut inputs = Vec::with_capacity(items.len());
        for (index, data) in items.into_iter().enumerate() {
            inputs.push(self.prepare(data).map_err(|err| err.for_item(index))?);
        }
        let outputs = self.pipeline.infer_batch(inputs)?;
        outputs
            .into_iter()
            .enumerate()
            .map(|(index, output)| {
                self.pipeline
                    .postprocess(output)
                    .map_err(|err| err.for_item(index))
            })
            .collect()
    }

    fn run_each(&self, items: Vec<BatchItem>) -> Vec<Result<BatchAnswer, PipelineError>> {
        let mut outcomes: Vec<Result<BatchAnswer, PipelineError>> = Vec::with_capacity(items.len());
        let mut inputs = Vec::with_capacity(items.len());
        // Where each prepared input's answer goes, and whether it answers in tensors.
        let mut slots = Vec::with_capacity(items.len());
        for item in items {
            let (prepared, tensors) = match item {
                BatchItem::Json(data) => (self.prepare(data), false),
                BatchItem::Tensors(tensors) => (self.pipeline.tensors_to_input(tensors), true),
            };
            match prepared {
                Ok(input) => {
                    slots.push((outcomes.len(), tensors));
                    inputs.push(input);
                    outcomes.push(Ok(BatchAnswer::Json(Value::Null)));
                }
                Err(err) => outcomes.push(Err(err)),
            }
        }
        if inputs.is_empty() {
            return outcomes;
        }
        match self.pipeline.infer_batch(inputs) {
            Ok(outputs) if outputs.len() == slots.len() => {
                for ((slot, tensors), output) in slots.into_iter().zip(outputs) {
                    outcomes[slot] = if tensors {
                        self.pipeline
                            .output_to_tensors(output)
                            .map(BatchAnswer::Tensors)
                    } else {
                        self.pipeline.postprocess(output).map(BatchAnswer::Json)
                    };
                }
            }
            Ok(outputs) => {
                let err = PipelineError::Inference(format!(
                    "the model returned {} results for {} inputs",
                    outputs.len(),
                    slots.len()
                ));
                for (slot, _) in slots {
                    outcomes[slot] = Err(err.clone());
                }
            }
            Err(err) => {
                for (slot, _) in slots {
                    outcomes[slot] = Err(err.clone());
                }
            }
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doubles numbers; rejects anything else at preprocessing and negatives at validation.
    struct Doubler;

    impl Pipeline for Doubler {
        type Input = f64;
        type Output = f64;

        fn preprocess(&self, data: Value) -> Result<f64, PipelineError> {
            data.as_f64()
                .ok_or_else(|| PipelineError::InvalidInput("expected a number".into()))
        }

        fn validate(&self, input: &f64) -> Result<(), PipelineError> {
            if *input < 0.0 {
                return Err(PipelineError::InvalidInput("must not be negative".into()));
            }
            Ok(())
        }

        fn infer(&self, input: f64) -> Result<f64, PipelineError> {
            Ok(input * 2.0)
        }

        fn postprocess(&self, output: f64) -> Result<Value, PipelineError> {
            Ok(Value::from(output))
        }
    }

    #[test]
    fn predict_runs_every_stage() {
        let model = PipelineModel::new(Doubler);
        assert_eq!(model.predict(Value::from(2.5)), Ok(Value::from(5.0)));
        assert_eq!(
            model.predict(Value::from(-1.0)),
            Err(PipelineError::InvalidInput("must not be negative".into()))
        );
    }

    #[test]
    fn each_item_gets_its_own_outcome() {
        let model = PipelineModel::new(Doubler);
        let json = |value: f64| BatchItem::Json(Value::from(value));
        let outcomes = model.run_each(vec![
            json(1.0),
            BatchItem::Json(Value::from("x")),
            BatchItem::Tensors(Vec::new()),
            json(3.0),
        ]);
        assert_eq!(outcomes[0], Ok(BatchAnswer::Json(Value::from(2.0))));
        assert_eq!(
            outcomes[1],
            Err(PipelineError::InvalidInput("expected a number".into()))
        );
        // A pipeline without a tensor interface refuses tensor items, alone.
        assert_eq!(outcomes[2], Err(no_tensor_interface()));
        assert_eq!(outcomes[3], Ok(BatchAnswer::Json(Value::from(6.0))));
    }

    #[test]
    fn batch_keeps_order_and_names_the_bad_item() {
        let model = PipelineModel::new(Doubler);
        let ok = model.predict_batch(vec![Value::from(1.0), Value::from(2.0)]);
        assert_eq!(ok, Ok(vec![Value::from(2.0), Value::from(4.0)]));
        let bad = model.predict_batch(vec![Value::from(1.0), Value::from("x")]);
        assert_eq!(
            bad,
            Err(PipelineError::InvalidInput(
                "items[1]: expected a number".into()
            ))
        );
    }
}
