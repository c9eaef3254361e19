//! [`OnnxPipeline`]: a graph (on ONNX Runtime, tract, or a remote server) behind the core
//! `Pipeline` contract.
//!
//! preprocess turns `data` into one tensor per graph input ([`Examples`]), or, for a model with
//! a tokenizer, into unpadded token sequences ([`TextExamples`]) and for an image model into
//! its pixel tensor; `infer_batch` stacks the rows of several requests into one run (padding
//! token sequences to the longest among them) and hands each request back its own rows
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
use crate::image::ImagePreprocessor;
use crate::manifest::{Manifest, Pooling, PostprocessKind, TensorManifest};
use crate::outputs::Output;
use crate::remote::{RemoteGraph, RemoteModel};
use crate::runtime::{Graph, Runtimes};
use crate::text::{self, EncodedText, TextExamples, TextPreprocessor};

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
    /// What turns raw text or images into the graph's inputs, if the model takes them.
    text: Option<TextPreprocessor>,
    image: Option<ImagePreprocessor>,
    postprocess: Postprocess,
}

#[derive(Debug)]
struct Postprocess {
    kind: PostprocessKind,
    /// Index into the outputs of the tensor the kind reads.
    tensor: usize,
    labels: Vec<String>,
    softmax: bool,
    cls_pooling: bool,
    normalize: bool,
}

/// A request ready to run: the graph's tensors, or token sequences still to be padded.
#[derive(Debug)]
pub enum Prepared {
    Tensors(Examples),
    Text(TextExamples),
}

impl fmt::Debug for OnnxPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxPipeline")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("text", &self.text)
            .field("image", &self.image)
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
    /// The request's texts and tokens, one per row, when it sent text.
    texts: Vec<EncodedText>,
}

impl Predictions {
    /// How many examples these predictions are for.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

impl OnnxPipeline {
    /// Loads the graph at `model_path` on the runtime the manifest gets from `runtimes`, checked
    /// against the manifest's inputs and outputs; files the manifest names (a tokenizer) are
    /// read from `dir`, the version folder. Blocking.
    pub fn load(
        dir: &Path,
        model_path: &Path,
        manifest: &Manifest,
        runtimes: &Runtimes,
        context: &LoadContext,
    ) -> Result<Self, OnnxError> {
        let graph = runtimes.load_graph(model_path, manifest, context)?;
        Self::assemble(dir, manifest, graph)
    }

    /// A `remote_v2` model: the manifest's checks, preprocessing and postprocessing around
    /// `remote`.
    pub fn remote(
        dir: &Path,
        manifest: &Manifest,
        remote: Arc<dyn RemoteModel>,
    ) -> Result<Self, OnnxError> {
        Self::assemble(dir, manifest, Box::new(RemoteGraph::new(remote, manifest)))
    }

    fn assemble(dir: &Path, manifest: &Manifest, graph: Box<dyn Graph>) -> Result<Self, OnnxError> {
        let settings = &manifest.postprocess;
        let postprocess = Postprocess {
            kind: settings.kind,
            tensor: manifest.postprocess_output_index().unwrap_or(0),
            labels: settings.labels.clone().unwrap_or_default(),
            softmax: settings.softmax.unwrap_or(true),
            cls_pooling: settings.pooling == Some(Pooling::Cls),
            normalize: settings.normalize,
        };
        let (min, max) = manifest
            .validation
            .as_ref()
            .map_or((None, None), |validation| (validation.min, validation.max));
        let text = match (manifest.tokenizer(), &manifest.preprocess) {
            (Some(file), Some(preprocess)) => Some(TextPreprocessor::load(
                &dir.join(file),
                preprocess.max_length,
                &manifest.inputs,
            )?),
            _ => None,
        };
        let image = manifest
            .image()
            .zip(manifest.inputs.first())
            .map(|(settings, input)| ImagePreprocessor::new(settings, &input.name));
        Ok(Self {
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
            text,
            image,
            postprocess,
        })
    }

    /// The graph inputs a text request's `data` becomes: its texts tokenized, truncated and
    /// padded to their longest sequence (what `models` tooling and tests compare with other
    /// tokenizers). Fails for a model without a tokenizer or `data` that is not text.
    pub fn text_inputs(&self, data: &Value) -> Result<Vec<Tensor>, PipelineError> {
        let invalid = PipelineError::InvalidInput;
        let preprocessor = self
            .text
            .as_ref()
            .ok_or_else(|| invalid("this model has no tokenizer".into()))?;
        let examples = preprocessor
            .read(data)
            .ok_or_else(|| invalid("`data` is not text".into()))??;
        preprocessor.tensors(&[&examples])
    }

    /// A raw request body holding one encoded image, for a model with `[preprocess.image]`.
    pub fn read_image(&self, bytes: &[u8]) -> Result<Prepared, PipelineError> {
        let image = self.image.as_ref().ok_or_else(|| {
            PipelineError::InvalidInput("this model takes no images ([preprocess.image])".into())
        })?;
        image.read_bytes(bytes).map(Prepared::Tensors)
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
                    texts: Vec::new(),
                };
                first_row += input.rows;
                predictions
            })
            .collect())
    }

    /// Runs every text request of a batch at once, their token sequences padded to the
    /// longest among them, and hands each its own rows.
    fn run_text(&self, group: Vec<TextExamples>) -> Result<Vec<Predictions>, PipelineError> {
        let preprocessor = self.text.as_ref().ok_or_else(|| {
            PipelineError::Inference("text input for a model without a tokenizer".into())
        })?;
        let rows = group.iter().map(|examples| examples.rows.len()).sum();
        let tensors = preprocessor.tensors(&group.iter().collect::<Vec<_>>())?;
        let outputs = self.run(tensors, rows)?;
        let mut first_row = 0;
        Ok(group
            .into_iter()
            .map(|examples| {
                let rows = examples.rows.len();
                let predictions = Predictions {
                    outputs: Arc::clone(&outputs),
                    first_row,
                    rows,
                    single: examples.single,
                    texts: examples.rows,
                };
                first_row += rows;
                predictions
            })
            .collect())
    }

    fn result_for(
        &self,
        outputs: &[Output],
        row: usize,
        text: Option<&EncodedText>,
    ) -> Result<Value, PipelineError> {
        let inference = PipelineError::Inference;
        match self.postprocess.kind {
            PostprocessKind::Raw => {
                let mut result = Map::with_capacity(self.outputs.len());
                for (name, output) in self.outputs.iter().zip(outputs) {
                    result.insert(name.clone(), output.row_json(row));
                }
                Ok(Value::Object(result))
            }
            PostprocessKind::Classification => {
                let (scores, _) = self.row_values(outputs, row)?;
                self.check_label_count(scores.len())?;
                Ok(text::classification(
                    &scores,
                    &self.postprocess.labels,
                    self.postprocess.softmax,
                ))
            }
            PostprocessKind::Embedding => {
                let (values, dims) = self.row_values(outputs, row)?;
                let tokens = text.map(|text| text.encoding.len());
                Ok(text::embedding(
                    &values,
                    &dims,
                    tokens,
                    self.postprocess.cls_pooling,
                    self.postprocess.normalize,
                ))
            }
            PostprocessKind::TokenClassification => {
                let text = text.ok_or_else(|| {
                    PipelineError::InvalidInput(
                        "token_classification answers text: send strings, not token ids".into(),
                    )
                })?;
                let (values, dims) = self.row_values(outputs, row)?;
                if dims.last() != Some(&self.postprocess.labels.len()) {
                    return Err(inference(format!(
                        "output `{}` has {:?} values per token; the manifest has {} labels",
                        self.outputs[self.postprocess.tensor],
                        dims.last(),
                        self.postprocess.labels.len()
                    )));
                }
                Ok(text::token_classification(
                    &values,
                    &self.postprocess.labels,
                    text,
                ))
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

impl OnnxPipeline {
    /// Example `row` of the tensor the postprocessing reads: its values and its shape
    /// without the batch dimension.
    fn row_values(
        &self,
        outputs: &[Output],
        row: usize,
    ) -> Result<(Vec<f64>, Vec<usize>), PipelineError> {
        let index = self.postprocess.tensor;
        let output = &outputs[index];
        let values = output.row_numbers(row).ok_or_else(|| {
            PipelineError::Inference(format!(
                "output `{}` has no numbers to postprocess",
                self.outputs[index]
            ))
        })?;
        Ok((values, output.example_dims()))
    }

    fn check_label_count(&self, values: usize) -> Result<(), PipelineError> {
        let labels = self.postprocess.labels.len();
        if values == labels {
            return Ok(());
        }
        Err(PipelineError::Inference(format!(
            "output `{}` has {values} values per example but the manifest has {labels} labels",
            self.outputs[self.postprocess.tensor]
        )))
    }

    /// The client's raw inputs for the model's preprocessing, if `data` is in one of its forms.
    fn read_raw(&self, data: &Value) -> Option<Result<Prepared, PipelineError>> {
        if let Some(text) = &self.text {
            return text.read(data).map(|read| read.map(Prepared::Text));
        }
        self.image
            .as_ref()?
            .read(data)
            .map(|read| read.map(Prepared::Tensors))
    }
}

/// The index of the highest value (the first one on ties; NaN never wins).
pub(crate) fn argmax(scores: &[f64]) -> Option<usize> {
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
    type Input = Prepared;
    type Output = Predictions;

    fn preprocess(&self, data: Value) -> Result<Prepared, PipelineError> {
        if let Some(prepared) = self.read_raw(&data) {
            return prepared;
        }
        examples::read_examples(data, &self.inputs).map(Prepared::Tensors)
    }

    /// Tensor inputs are read once more here (a walk over the request's numbers, small next
    /// to parsing its JSON); raw texts and images are left to the executor thread, since
    /// reading them is the costly part.
    fn check(&self, data: &Value) -> Result<(), PipelineError> {
        if self.text.is_some() || self.image.is_some() {
            return Ok(());
        }
        let examples = examples::read_examples(data.clone(), &self.inputs)?;
        examples::check_bounds(&examples, &self.inputs, self.min, self.max)
    }

    fn validate(&self, input: &Prepared) -> Result<(), PipelineError> {
        match input {
            Prepared::Tensors(examples) => {
                examples::check_bounds(examples, &self.inputs, self.min, self.max)
            }
            // Token ids come from the tokenizer's own vocabulary.
            Prepared::Text(_) => Ok(()),
        }
    }

    fn infer(&self, input: Prepared) -> Result<Predictions, PipelineError> {
        let examples = match input {
            Prepared::Tensors(examples) => examples,
            Prepared::Text(text) => {
                return self
                    .run_text(vec![text])?
                    .pop()
                    .ok_or_else(|| PipelineError::Inference("the run gave no answer".into()));
            }
        };
        let Examples {
            tensors,
            rows,
            single,
        } = examples;
        Ok(Predictions {
            outputs: self.run(tensors, rows)?,
            first_row: 0,
            rows,
            single,
            texts: Vec::new(),
        })
    }

    /// One run for all the requests whose inputs have the same shape: their rows are stacked
    /// along the batch dimension, and each request gets back exactly its own rows. Requests
    /// of another shape (another sequence length) run in a run of their own: stacking needs
    /// equal shapes, and padding could change what a graph without a mask computes. Text
    /// requests all share one run, padded to their longest sequence (the tokenizer's
    /// attention mask covers the padding).
    fn infer_batch(&self, inputs: Vec<Prepared>) -> Result<Vec<Predictions>, PipelineError> {
        if inputs.len() <= 1 {
            return inputs.into_iter().map(|input| self.infer(input)).collect();
        }
        let mut answers: Vec<Option<Predictions>> = inputs.iter().map(|_| None).collect();
        let mut texts = Vec::new();
        let mut text_slots = Vec::new();
        let mut tensors = Vec::new();
        for (index, input) in inputs.into_iter().enumerate() {
            match input {
                Prepared::Text(text) => {
                    text_slots.push(index);
                    texts.push(text);
                }
                Prepared::Tensors(examples) => tensors.push((index, examples)),
            }
        }
        if !texts.is_empty() {
            for (index, predictions) in text_slots.into_iter().zip(self.run_text(texts)?) {
                answers[index] = Some(predictions);
            }
        }
        let mut groups: Vec<(Vec<&[usize]>, Vec<usize>)> = Vec::new();
        for (position, (_, examples)) in tensors.iter().enumerate() {
            let signature = examples.signature();
            match groups.iter_mut().find(|(known, _)| *known == signature) {
                Some((_, members)) => members.push(position),
                None => groups.push((signature, vec![position])),
            }
        }
        for (_, members) in &groups {
            let group = members
                .iter()
                .map(|&position| &tensors[position].1)
                .collect::<Vec<_>>();
            for (&position, predictions) in members.iter().zip(self.run_stacked(&group)?) {
                answers[tensors[position].0] = Some(predictions);
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
    /// against the manifest and the `[validation]` bounds. A model with a tokenizer or image
    /// preprocessing also takes one `BYTES` tensor of texts or encoded images instead.
    fn tensors_to_input(&self, inputs: Vec<Tensor>) -> Result<Prepared, PipelineError> {
        if let [raw] = inputs.as_slice()
            && raw.datatype() == inference_engine_core::tensor::DataType::Bytes
        {
            if let Some(text) = &self.text {
                return text.read_tensor(raw).map(Prepared::Text);
            }
            if let Some(image) = &self.image {
                return image.read_tensor(raw).map(Prepared::Tensors);
            }
        }
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
        Ok(Prepared::Tensors(examples))
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
        let text = |row: usize| output.texts.get(row - output.first_row);
        if output.single {
            return self.result_for(&output.outputs, rows.start, text(rows.start));
        }
        let results = rows
            .map(|row| self.result_for(&output.outputs, row, text(row)))
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
