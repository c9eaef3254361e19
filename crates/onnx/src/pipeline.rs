//! [`OnnxPipeline`]: a graph (on ONNX Runtime, tract, or a remote server) behind the core
//! `Pipeline` contract.
//!
//! preprocess turns `data` into one tensor per graph input ([`Examples`]); `infer_batch`
//! stacks the rows of several requests into one run and hands each request back its own rows
//! ([`Predictions`], which share the run's outputs instead of copying them); postprocess turns
//! a request's rows into JSON as the manifest's `[postprocess]` says.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use inference_engine_core::pipeline::{Pipeline, PipelineError};
use inference_engine_core::source::LoadContext;
use inference_engine_core::tensor::{Tensor, TensorData};
use serde_json::{Map, Value};

use crate::error::OnnxError;
use crate::examples::{self, Examples, InputLayout};
use crate::manifest::{Manifest, PostprocessKind, TensorManifest};
use crate::outputs::Output;
use crate::remote::{RemoteGraph, RemoteModel};
use crate::runtime::{Graph, Runtimes};

/// A loaded ONNX model: its graph plus what the manifest says about its inputs, outputs,
/// checks and postprocessing.
pub struct OnnxPipeline {
    graph: Box<dyn Graph>,
    /// In the order the graph takes them (the manifest's order).
    inputs: Vec<InputLayout>,
    /// Names of the graph's outputs, in the manifest's order.
    outputs: Vec<String>,
    min: Option<f64>,
    max: Option<f64>,
    postprocess: Postprocess,
}

#[derive(Debug)]
struct Postprocess {
    kind: PostprocessKind,
    /// Index into the outputs of the tensor argmax / probabilities read.
    tensor: usize,
    labels: Vec<String>,
}

impl fmt::Debug for OnnxPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxPipeline")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("postprocess", &self.postprocess)
            .finish_non_exhaustive()
    }
}

/// One request's share of a model run: rows `first_row..first_row + rows` of every output.
#[derive(Debug)]
pub struct Predictions {
    /// The run's whole outputs, in the manifest's output order; shared by every request of a
    /// batch so splitting a batch copies nothing.
    outputs: Arc<Vec<Output>>,
    first_row: usize,
    rows: usize,
    single: bool,
}

impl Predictions {
    /// How many examples these predictions are for.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

impl OnnxPipeline {
    /// Loads the graph at `model_path` on the runtime the manifest gets from `runtimes`, checked
    /// against the manifest's inputs and outputs. Blocking.
    pub fn load(
        model_path: &Path,
        manifest: &Manifest,
        runtimes: &Runtimes,
        context: &LoadContext,
    ) -> Result<Self, OnnxError> {
        let graph = runtimes.load_graph(model_path, manifest, context)?;
        Ok(Self::assemble(manifest, graph))
    }

    /// A `remote_v2` model: the manifest's checks and postprocessing around `remote`.
    pub fn remote(manifest: &Manifest, remote: Arc<dyn RemoteModel>) -> Self {
        Self::assemble(manifest, Box::new(RemoteGraph::new(remote, manifest)))
    }

    fn assemble(manifest: &Manifest, graph: Box<dyn Graph>) -> Self {
        let postprocess = Postprocess {
            kind: manifest.postprocess.kind,
            tensor: manifest.postprocess_output_index().unwrap_or(0),
            labels: manifest.postprocess.labels.clone().unwrap_or_default(),
        };
        let (min, max) = manifest
            .validation
            .as_ref()
            .map_or((None, None), |validation| (validation.min, validation.max));
        Self {
            graph,
            inputs: manifest
                .inputs
                .iter()
                .filter_map(InputLayout::new)
                .collect(),
            outputs: manifest
                .outputs
                .iter()
                .map(|output| output.name.clone())
                .collect(),
            min,
            max,
            postprocess,
        }
    }

    fn input_names(&self) -> Vec<String> {
        self.inputs
            .iter()
            .map(|layout| layout.name.clone())
            .collect()
    }

    /// Runs the graph on stacked inputs holding `rows` examples; every output must have `rows`
    /// as its first dimension.
    fn run(&self, tensors: Vec<Tensor>, rows: usize) -> Result<Arc<Vec<Output>>, PipelineError> {
        let outputs = self.graph.run(tensors)?;
        for (output, name) in outputs.iter().zip(&self.outputs) {
            if output.rows() != Some(rows) {
                return Err(PipelineError::Inference(format!(
                    "output `{name}` has {} rows; expected {rows} (one per example) first",
                    output
                        .rows()
                        .map_or_else(|| "no".to_owned(), |found| found.to_string())
                )));
            }
        }
        Ok(Arc::new(outputs))
    }

    /// Stacks requests whose inputs have the same non-batch shapes, runs them once, and hands
    /// each its own rows.
    fn run_stacked(&self, group: &[&Examples]) -> Result<Vec<Predictions>, PipelineError> {
        let rows = group.iter().map(|input| input.rows).sum();
        let mut stacked = Vec::with_capacity(self.inputs.len());
        for (index, layout) in self.inputs.iter().enumerate() {
            let parts = group
                .iter()
                .map(|input| &input.tensors[index].data)
                .collect::<Vec<_>>();
            let data = TensorData::concat(&parts).ok_or_else(|| {
                PipelineError::Inference(format!("cannot stack input `{}`", layout.name))
            })?;
            let mut shape = group[0].tensors[index].shape.clone();
            shape[0] = rows;
            let tensor = Tensor::new(layout.name.clone(), shape, data)
                .map_err(|err| PipelineError::Inference(err.to_string()))?;
            stacked.push(tensor);
        }
        let outputs = self.run(stacked, rows)?;
        let mut first_row = 0;
        Ok(group
            .iter()
            .map(|input| {
                let predictions = Predictions {
                    outputs: Arc::clone(&outputs),
                    first_row,
                    rows: input.rows,
                    single: input.single,
                };
                first_row += input.rows;
                predictions
            })
            .collect())
    }

    fn result_for(&self, outputs: &[Output], row: usize) -> Result<Value, PipelineError> {
        let inference = PipelineError::Inference;
        match self.postprocess.kind {
            PostprocessKind::Raw => {
                let mut result = Map::with_capacity(self.outputs.len());
                for (name, output) in self.outputs.iter().zip(outputs) {
                    result.insert(name.clone(), output.row_json(row));
                }
                Ok(Value::Object(result))
            }
            PostprocessKind::Argmax | PostprocessKind::Probabilities => {
                let index = self.postprocess.tensor;
                let name = &self.outputs[index];
                let labels = &self.postprocess.labels;
                let scores = outputs[index].row_numbers(row).ok_or_else(|| {
                    inference(format!(
                        "output `{name}` has no numbers to read labels from"
                    ))
                })?;
                if scores.len() != labels.len() {
                    return Err(inference(format!(
                        "output `{name}` has {} values per example but the manifest has {} labels",
                        scores.len(),
                        labels.len()
                    )));
                }
                if self.postprocess.kind == PostprocessKind::Argmax {
                    let best = argmax(&scores).unwrap_or(0);
                    return Ok(Value::String(labels[best].clone()));
                }
                let values = outputs[index].row_json(row);
                let values = values.as_array().map_or(&[][..], Vec::as_slice);
                let mut result = Map::with_capacity(labels.len());
                for (label, value) in labels.iter().zip(values) {
                    result.insert(label.clone(), value.clone());
                }
                Ok(Value::Object(result))
            }
        }
    }
}

/// The index of the highest value (the first one on ties; NaN never wins).
fn argmax(scores: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (index, &score) in scores.iter().enumerate() {
        if score.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, top)| score > top) {
            best = Some((index, score));
        }
    }
    best.map(|(index, _)| index)
}

impl Pipeline for OnnxPipeline {
    type Input = Examples;
    type Output = Predictions;

    fn preprocess(&self, data: Value) -> Result<Examples, PipelineError> {
        examples::read_examples(data, &self.inputs)
    }

    fn validate(&self, input: &Examples) -> Result<(), PipelineError> {
        examples::check_bounds(input, &self.inputs, self.min, self.max)
    }

    fn infer(&self, input: Examples) -> Result<Predictions, PipelineError> {
        let Examples {
            tensors,
            rows,
            single,
        } = input;
        Ok(Predictions {
            outputs: self.run(tensors, rows)?,
            first_row: 0,
            rows,
            single,
        })
    }

    /// One run for all the requests whose inputs have the same shape: their rows are stacked
    /// along the batch dimension, and each request gets back exactly its own rows. Requests
    /// of another shape (another sequence length) run in a run of their own: stacking needs
    /// equal shapes, and padding could change what a graph without a mask computes.
    fn infer_batch(&self, inputs: Vec<Examples>) -> Result<Vec<Predictions>, PipelineError> {
        if inputs.len() <= 1 {
            return inputs.into_iter().map(|input| self.infer(input)).collect();
        }
        let mut groups: Vec<(Vec<&[usize]>, Vec<usize>)> = Vec::new();
        for (index, input) in inputs.iter().enumerate() {
            let signature = input.signature();
            match groups.iter_mut().find(|(known, _)| *known == signature) {
                Some((_, members)) => members.push(index),
                None => groups.push((signature, vec![index])),
            }
        }
        let mut answers: Vec<Option<Predictions>> = inputs.iter().map(|_| None).collect();
        for (_, members) in &groups {
            let group = members
                .iter()
                .map(|&index| &inputs[index])
                .collect::<Vec<_>>();
            for (&index, predictions) in members.iter().zip(self.run_stacked(&group)?) {
                answers[index] = Some(predictions);
            }
        }
        answers
            .into_iter()
            .map(|answer| {
                answer.ok_or_else(|| PipelineError::Inference("a batch item got no answer".into()))
            })
            .collect()
    }

    /// The client's own tensors as the graph's inputs: by name (any order), each checked
    /// against the manifest and the `[validation]` bounds.
    fn tensors_to_input(&self, inputs: Vec<Tensor>) -> Result<Examples, PipelineError> {
        let invalid = PipelineError::InvalidInput;
        if let Some(unknown) = inputs
            .iter()
            .find(|tensor| !self.inputs.iter().any(|layout| layout.name == tensor.name))
        {
            return Err(invalid(format!(
                "the model has no input `{}` (inputs: {})",
                unknown.name,
                quoted(&self.input_names())
            )));
        }
        let mut inputs = inputs;
        let mut tensors = Vec::with_capacity(self.inputs.len());
        let mut rows = None;
        for layout in &self.inputs {
            let position = inputs
                .iter()
                .position(|tensor| tensor.name == layout.name)
                .ok_or_else(|| invalid(format!("input `{}` is missing", layout.name)))?;
            let tensor = inputs.swap_remove(position);
            let tensor_rows = check_input_tensor(&tensor, layout)?;
            if rows.is_some_and(|rows| rows != tensor_rows) {
                return Err(invalid(format!(
                    "input `{}` has {tensor_rows} rows but the other inputs have {}",
                    layout.name,
                    rows.unwrap_or_default()
                )));
            }
            rows = Some(tensor_rows);
            tensors.push(tensor);
        }
        if let Some(duplicate) = inputs.first() {
            return Err(invalid(format!(
                "input `{}` is given twice",
                duplicate.name
            )));
        }
        let examples = Examples {
            tensors,
            rows: rows.unwrap_or_default(),
            single: false,
        };
        examples::check_bounds(&examples, &self.inputs, self.min, self.max)?;
        Ok(examples)
    }

    /// Every declared output, this request's rows only (a batch's run is shared).
    fn output_to_tensors(&self, output: Predictions) -> Result<Vec<Tensor>, PipelineError> {
        let rows = output.first_row..output.first_row + output.rows;
        self.outputs
            .iter()
            .zip(output.outputs.iter())
            .map(|(name, tensor)| tensor.rows_tensor(name, rows.clone()))
            .collect()
    }

    fn postprocess(&self, output: Predictions) -> Result<Value, PipelineError> {
        let rows = output.first_row..output.first_row + output.rows;
        if output.single {
            return self.result_for(&output.outputs, rows.start);
        }
        let results = rows
            .map(|row| self.result_for(&output.outputs, row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Value::Array(results))
    }
}

/// A client's tensor must have the input's datatype and shape; returns its rows.
fn check_input_tensor(tensor: &Tensor, layout: &InputLayout) -> Result<usize, PipelineError> {
    let invalid = PipelineError::InvalidInput;
    if tensor.datatype() != layout.datatype {
        return Err(invalid(format!(
            "input `{}` is {}; the model takes {}",
            tensor.name,
            tensor.datatype(),
            layout.datatype
        )));
    }
    if !layout.accepts_shape(&tensor.shape) {
        return Err(invalid(format!(
            "input `{}` has shape {:?}; the model takes {:?} (-1: any size)",
            tensor.name,
            tensor.shape,
            layout.manifest_shape()
        )));
    }
    match tensor.shape[0] {
        0 => Err(invalid(format!(
            "input `{}` has no rows; send at least one",
            tensor.name
        ))),
        rows => Ok(rows),
    }
}

/// Every graph input must be declared, and every declared input must be in the graph.
pub(crate) fn check_declared(
    what: &str,
    declared: &[TensorManifest],
    in_graph: &[String],
) -> Result<(), OnnxError> {
    for tensor in declared {
        if !in_graph.contains(&tensor.name) {
            return Err(OnnxError::Model(format!(
                "{what} `{}` is not an {what} of the graph (graph {what}s: {})",
                tensor.name,
                quoted(in_graph)
            )));
        }
    }
    for name in in_graph {
        if !declared.iter().any(|tensor| &tensor.name == name) {
            return Err(OnnxError::Model(format!(
                "graph {what} `{name}` is not declared in model.toml (every graph {what} must be)"
            )));
        }
    }
    Ok(())
}

pub(crate) fn quoted(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_best_and_never_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1));
        assert_eq!(argmax(&[f64::NAN, 0.5]), Some(1));
        assert_eq!(argmax(&[]), None);
    }
}
