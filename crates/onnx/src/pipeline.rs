//! [`OnnxPipeline`]: a tract plan (or, for `remote_v2` models, a remote server) behind the
//! core `Pipeline` contract.
//!
//! preprocess turns `data` into one tensor per graph input ([`Examples`]); `infer_batch`
//! stacks the rows of several requests into one tract run and hands each request back its own
//! rows ([`Predictions`], which share the run's output tensors instead of copying them);
//! postprocess turns a request's rows into JSON as the manifest's `[postprocess]` says.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use inference_engine_core::pipeline::{Pipeline, PipelineError};
use inference_engine_core::tensor::{Tensor as CoreTensor, f32_json};
use serde_json::{Map, Number, Value};
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModel, InferenceModelExt, IntoArcTensor,
    IntoRunnable, IntoTValue, TDim, TValue, Tensor, TractError, TypedFact, TypedRunnableModel,
};
use tract_onnx::tract_hir::ops::unimpl::UnimplementedOp;

use crate::error::OnnxError;
use crate::examples::{self, Examples, InputLayout};
use crate::manifest::{DataType, Manifest, PostprocessKind, TensorManifest};
use crate::remote::RemoteModel;
use crate::tensors;

/// The name of the batch dimension's symbol in the graph's input facts.
pub(crate) const BATCH_SYMBOL: &str = "N";

/// A loaded ONNX model: an optimised tract plan plus what the manifest says about its
/// inputs, outputs, checks and postprocessing.
pub struct OnnxPipeline {
    engine: Engine,
    /// In the order the plan takes them (the manifest's order).
    inputs: Vec<InputLayout>,
    /// Names of the plan's outputs, in the manifest's order.
    outputs: Vec<String>,
    /// Their declared datatypes (remote answers are checked against them).
    output_types: Vec<DataType>,
    min: Option<f64>,
    max: Option<f64>,
    postprocess: Postprocess,
}

/// What runs the graph.
enum Engine {
    Tract(Arc<TypedRunnableModel>),
    Remote(Arc<dyn RemoteModel>),
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
    /// The run's whole output tensors, in the manifest's output order; shared by every
    /// request of a batch so splitting a batch copies nothing.
    tensors: Vec<Arc<Tensor>>,
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
    /// Reads the graph at `model_path`, fixes its inputs to the manifest's types and shapes
    /// (batch dimension symbolic), checks the declared outputs, and optimises it.
    pub fn load(model_path: &Path, manifest: &Manifest) -> Result<Self, OnnxError> {
        let mut model = tract_onnx::onnx()
            .model_for_path(model_path)
            .map_err(|err| model_error("not a readable ONNX model", &err))?;
        let unsupported = unimplemented_ops(&model);
        if !unsupported.is_empty() {
            return Err(OnnxError::Model(format!(
                "the graph uses operators tract-onnx does not implement: {}",
                unsupported.join(", ")
            )));
        }

        let graph_inputs = model
            .input_outlets()
            .map_err(|err| model_error("cannot list the graph inputs", &err))?
            .iter()
            .map(|outlet| model.node(outlet.node).name.clone())
            .collect::<Vec<_>>();
        check_declared("input", &manifest.inputs, &graph_inputs)?;
        model
            .select_inputs_by_name(manifest.inputs.iter().map(|input| input.name.as_str()))
            .map_err(|err| model_error("cannot order the graph inputs", &err))?;
        let batch = model.symbols.sym(BATCH_SYMBOL);
        for (index, input) in manifest.inputs.iter().enumerate() {
            let mut shape = vec![TDim::from(batch.clone())];
            shape.extend(input.example_dims().into_iter().map(TDim::from));
            let fact = InferenceFact::dt_shape(datum_type(input.datatype), shape);
            model.set_input_fact(index, fact).map_err(|err| {
                model_error(
                    &format!("cannot set the type of input `{}`", input.name),
                    &err,
                )
            })?;
        }

        let graph_outputs = model
            .output_outlets()
            .map_err(|err| model_error("cannot list the graph outputs", &err))?
            .iter()
            .filter_map(|outlet| model.outlet_label(*outlet).map(str::to_owned))
            .collect::<Vec<_>>();
        for output in &manifest.outputs {
            if !graph_outputs.contains(&output.name) {
                return Err(OnnxError::Model(format!(
                    "output `{}` is not an output of the graph (graph outputs: {})",
                    output.name,
                    quoted(&graph_outputs)
                )));
            }
        }
        model
            .select_outputs_by_name(manifest.outputs.iter().map(|output| output.name.as_str()))
            .map_err(|err| model_error("cannot select the declared outputs", &err))?;

        let typed = model
            .into_optimized()
            .map_err(|err| model_error("tract cannot prepare the graph", &err))?;
        for (index, output) in manifest.outputs.iter().enumerate() {
            let fact = typed
                .output_fact(index)
                .map_err(|err| model_error("cannot read the output types", &err))?;
            check_output_fact(output, fact)?;
        }
        let plan = typed
            .into_runnable()
            .map_err(|err| model_error("tract cannot plan the graph", &err))?;
        Ok(Self::assemble(manifest, Engine::Tract(plan)))
    }

    /// A `remote_v2` model: the manifest's checks and postprocessing around `remote`.
    pub fn remote(manifest: &Manifest, remote: Arc<dyn RemoteModel>) -> Self {
        Self::assemble(manifest, Engine::Remote(remote))
    }

    fn assemble(manifest: &Manifest, engine: Engine) -> Self {
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
            engine,
            inputs: manifest.inputs.iter().map(InputLayout::new).collect(),
            outputs: manifest
                .outputs
                .iter()
                .map(|output| output.name.clone())
                .collect(),
            output_types: manifest
                .outputs
                .iter()
                .map(|output| output.datatype)
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

    /// Runs the plan on stacked inputs holding `rows` examples; every output must have `rows`
    /// as its first dimension.
    fn run(&self, tensors: Vec<Tensor>, rows: usize) -> Result<Vec<Arc<Tensor>>, PipelineError> {
        let outputs = match &self.engine {
            Engine::Tract(plan) => {
                let inputs = tensors
                    .into_iter()
                    .map(IntoTValue::into_tvalue)
                    .collect::<tract_onnx::prelude::TVec<TValue>>();
                plan.run(inputs)
                    .map_err(|err| PipelineError::Inference(format!("{err:#}")))?
                    .into_iter()
                    .map(TValue::into_arc_tensor)
                    .collect::<Vec<_>>()
            }
            Engine::Remote(remote) => self.run_remote(remote.as_ref(), &tensors)?,
        };
        outputs
            .into_iter()
            .zip(&self.outputs)
            .map(|(tensor, name)| {
                if tensor.shape().first() != Some(&rows) {
                    return Err(PipelineError::Inference(format!(
                        "output `{name}` has shape {:?}; expected {rows} rows (one per example) \
                         first",
                        tensor.shape()
                    )));
                }
                Ok(tensor)
            })
            .collect()
    }

    /// Sends the inputs to the remote server and puts its outputs in the manifest's order,
    /// each checked against its declared datatype.
    fn run_remote(
        &self,
        remote: &dyn RemoteModel,
        tensors: &[Tensor],
    ) -> Result<Vec<Arc<Tensor>>, PipelineError> {
        let inputs = tensors
            .iter()
            .zip(&self.inputs)
            .map(|(tensor, layout)| tensors::from_tract(&layout.name, tensor))
            .collect::<Result<Vec<_>, _>>()?;
        let mut answered = remote.infer(inputs, &self.outputs)?;
        self.outputs
            .iter()
            .zip(&self.output_types)
            .map(|(name, datatype)| {
                let position = answered
                    .iter()
                    .position(|tensor| &tensor.name == name)
                    .ok_or_else(|| {
                        PipelineError::Inference(format!(
                            "the remote server did not return output `{name}`"
                        ))
                    })?;
                tensors::remote_output_to_tract(answered.swap_remove(position), *datatype)
                    .map(Arc::new)
            })
            .collect()
    }

    fn result_for(&self, tensors: &[Arc<Tensor>], row: usize) -> Result<Value, PipelineError> {
        let inference = PipelineError::Inference;
        match self.postprocess.kind {
            PostprocessKind::Raw => {
                let mut result = Map::with_capacity(self.outputs.len());
                for (name, tensor) in self.outputs.iter().zip(tensors) {
                    let value = Row::of(tensor, row)
                        .map_err(|message| inference(format!("output `{name}`: {message}")))?
                        .to_nested_json(&tensor.shape()[1..]);
                    result.insert(name.clone(), value);
                }
                Ok(Value::Object(result))
            }
            PostprocessKind::Argmax | PostprocessKind::Probabilities => {
                let index = self.postprocess.tensor;
                let name = &self.outputs[index];
                let labels = &self.postprocess.labels;
                let row = Row::of(&tensors[index], row)
                    .map_err(|message| inference(format!("output `{name}`: {message}")))?;
                if row.len() != labels.len() {
                    return Err(inference(format!(
                        "output `{name}` has {} values per example but the manifest has {} labels",
                        row.len(),
                        labels.len()
                    )));
                }
                if self.postprocess.kind == PostprocessKind::Argmax {
                    let best = row.argmax().unwrap_or(0);
                    return Ok(Value::String(labels[best].clone()));
                }
                let mut result = Map::with_capacity(labels.len());
                for (label, value) in labels.iter().zip(row.to_flat_json()) {
                    result.insert(label.clone(), value);
                }
                Ok(Value::Object(result))
            }
        }
    }
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
            tensors: self.run(tensors, rows)?,
            first_row: 0,
            rows,
            single,
        })
    }

    /// One tract run for all the requests: their rows are stacked along the batch dimension,
    /// and each request gets back exactly its own rows.
    fn infer_batch(&self, inputs: Vec<Examples>) -> Result<Vec<Predictions>, PipelineError> {
        if inputs.len() <= 1 {
            return inputs.into_iter().map(|input| self.infer(input)).collect();
        }
        let total_rows = inputs.iter().map(|input| input.rows).sum();
        let mut stacked = Vec::with_capacity(self.inputs.len());
        for index in 0..self.inputs.len() {
            let parts = inputs
                .iter()
                .map(|input| &input.tensors[index])
                .collect::<Vec<_>>();
            let tensor = Tensor::stack_tensors(0, &parts).map_err(|err| {
                PipelineError::Inference(format!("cannot stack the batch: {err:#}"))
            })?;
            stacked.push(tensor);
        }
        let tensors = self.run(stacked, total_rows)?;
        let mut first_row = 0;
        Ok(inputs
            .iter()
            .map(|input| {
                let predictions = Predictions {
                    tensors: tensors.clone(),
                    first_row,
                    rows: input.rows,
                    single: input.single,
                };
                first_row += input.rows;
                predictions
            })
            .collect())
    }

    /// The client's own tensors as the plan's inputs: by name (any order), each checked
    /// against the manifest and the `[validation]` bounds.
    fn tensors_to_input(&self, inputs: Vec<CoreTensor>) -> Result<Examples, PipelineError> {
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
            let (tensor, tensor_rows) =
                tensors::input_to_tract(inputs.swap_remove(position), layout)?;
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
        let rows = rows.unwrap_or_default();
        let examples = Examples {
            tensors,
            rows,
            single: false,
        };
        examples::check_bounds(&examples, &self.inputs, self.min, self.max)?;
        Ok(examples)
    }

    /// Every declared output, this request's rows only (a batch's run is shared).
    fn output_to_tensors(&self, output: Predictions) -> Result<Vec<CoreTensor>, PipelineError> {
        self.outputs
            .iter()
            .zip(&output.tensors)
            .map(|(name, tensor)| {
                if output.first_row == 0 && tensor.shape().first() == Some(&output.rows) {
                    return tensors::from_tract(name, tensor);
                }
                let rows = tensor
                    .slice(0, output.first_row, output.first_row + output.rows)
                    .map_err(|err| PipelineError::Inference(format!("output `{name}`: {err:#}")))?;
                tensors::from_tract(name, &rows)
            })
            .collect()
    }

    fn postprocess(&self, output: Predictions) -> Result<Value, PipelineError> {
        let rows = output.first_row..output.first_row + output.rows;
        if output.single {
            return self.result_for(&output.tensors, rows.start);
        }
        let results = rows
            .map(|row| self.result_for(&output.tensors, row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Value::Array(results))
    }
}

fn check_declared(
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

/// The declared output must have the datatype, rank and fixed dimensions the graph produces.
fn check_output_fact(output: &TensorManifest, fact: &TypedFact) -> Result<(), OnnxError> {
    let declared = datum_type(output.datatype);
    if fact.datum_type != declared {
        return Err(OnnxError::Model(format!(
            "output `{}` is {} in the graph but model.toml says {}",
            output.name,
            datum_type_name(fact.datum_type),
            output.datatype
        )));
    }
    let graph_shape = fact
        .shape
        .iter()
        .map(|dim| dim.to_i64().unwrap_or(-1))
        .collect::<Vec<_>>();
    let matches = graph_shape.len() == output.shape.len()
        && graph_shape
            .iter()
            .zip(&output.shape)
            .skip(1)
            .all(|(&graph, &declared)| graph == -1 || graph == declared);
    if !matches {
        return Err(OnnxError::Model(format!(
            "output `{}` has shape {graph_shape:?} in the graph (-1: any size) but model.toml \
             says {:?}",
            output.name, output.shape
        )));
    }
    Ok(())
}

pub(crate) fn datum_type(datatype: DataType) -> DatumType {
    match datatype {
        DataType::Fp32 => DatumType::F32,
        DataType::Fp64 => DatumType::F64,
        DataType::Int64 => DatumType::I64,
        DataType::Int32 => DatumType::I32,
    }
}

/// The Open Inference Protocol name of a tract element type (`FP32`, `INT64`, `BYTES`, ...).
pub(crate) fn datum_type_name(datum_type: DatumType) -> String {
    let name = match datum_type {
        DatumType::Bool => "BOOL",
        DatumType::U8 => "UINT8",
        DatumType::U16 => "UINT16",
        DatumType::U32 => "UINT32",
        DatumType::U64 => "UINT64",
        DatumType::I8 => "INT8",
        DatumType::I16 => "INT16",
        DatumType::I32 => "INT32",
        DatumType::I64 => "INT64",
        DatumType::F16 => "FP16",
        DatumType::F32 => "FP32",
        DatumType::F64 => "FP64",
        DatumType::String => "BYTES",
        other => return format!("{other:?}"),
    };
    name.to_owned()
}

/// The graph's operators tract parsed as placeholders (`UnimplementedOp`), as
/// ``OpType (node `name`)``.
pub(crate) fn unimplemented_ops(model: &InferenceModel) -> Vec<String> {
    model
        .nodes()
        .iter()
        .filter(|node| node.op_is::<UnimplementedOp>())
        .map(|node| {
            let op = node.op.name();
            let op_type = op
                .strip_prefix("Unimplemented(")
                .and_then(|rest| rest.strip_suffix(')'))
                .unwrap_or(&op);
            format!("{op_type} (node `{}`)", node.name)
        })
        .collect()
}

fn model_error(context: &str, err: &TractError) -> OnnxError {
    OnnxError::Model(format!("{context}: {err:#}"))
}

fn quoted(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One example's values of an output tensor, typed.
enum Row<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    I64(&'a [i64]),
    I32(&'a [i32]),
    I16(&'a [i16]),
    I8(&'a [i8]),
    U64(&'a [u64]),
    U32(&'a [u32]),
    U16(&'a [u16]),
    U8(&'a [u8]),
    Bool(&'a [bool]),
    Text(&'a [String]),
}

macro_rules! row_slice {
    ($tensor:expr, $row:expr, $variant:ident, $ty:ty) => {{
        let view = $tensor
            .try_as_plain_ram()
            .map_err(|err| format!("{err:#}"))?;
        let values = view.as_slice::<$ty>().map_err(|err| format!("{err:#}"))?;
        let per_row: usize = $tensor.shape()[1..].iter().product();
        let start = $row * per_row;
        match values.get(start..start + per_row) {
            Some(slice) => Row::$variant(slice),
            None => return Err(format!("has no row {}", $row)),
        }
    }};
}

impl<'a> Row<'a> {
    fn of(tensor: &'a Tensor, row: usize) -> Result<Self, String> {
        Ok(match tensor.datum_type() {
            DatumType::F32 => row_slice!(tensor, row, F32, f32),
            DatumType::F64 => row_slice!(tensor, row, F64, f64),
            DatumType::I64 => row_slice!(tensor, row, I64, i64),
            DatumType::I32 => row_slice!(tensor, row, I32, i32),
            DatumType::I16 => row_slice!(tensor, row, I16, i16),
            DatumType::I8 => row_slice!(tensor, row, I8, i8),
            DatumType::U64 => row_slice!(tensor, row, U64, u64),
            DatumType::U32 => row_slice!(tensor, row, U32, u32),
            DatumType::U16 => row_slice!(tensor, row, U16, u16),
            DatumType::U8 => row_slice!(tensor, row, U8, u8),
            DatumType::Bool => row_slice!(tensor, row, Bool, bool),
            DatumType::String => row_slice!(tensor, row, Text, String),
            other => {
                return Err(format!(
                    "has element type {other:?}, which has no JSON form"
                ));
            }
        })
    }

    fn len(&self) -> usize {
        match self {
            Self::F32(values) => values.len(),
            Self::F64(values) => values.len(),
            Self::I64(values) => values.len(),
            Self::I32(values) => values.len(),
            Self::I16(values) => values.len(),
            Self::I8(values) => values.len(),
            Self::U64(values) => values.len(),
            Self::U32(values) => values.len(),
            Self::U16(values) => values.len(),
            Self::U8(values) => values.len(),
            Self::Bool(values) => values.len(),
            Self::Text(values) => values.len(),
        }
    }

    fn value(&self, index: usize) -> Value {
        match self {
            Self::F32(values) => f32_json(values[index]),
            Self::F64(values) => Number::from_f64(values[index]).map_or(Value::Null, Value::Number),
            Self::I64(values) => Value::from(values[index]),
            Self::I32(values) => Value::from(values[index]),
            Self::I16(values) => Value::from(values[index]),
            Self::I8(values) => Value::from(values[index]),
            Self::U64(values) => Value::from(values[index]),
            Self::U32(values) => Value::from(values[index]),
            Self::U16(values) => Value::from(values[index]),
            Self::U8(values) => Value::from(values[index]),
            Self::Bool(values) => Value::Bool(values[index]),
            Self::Text(values) => Value::String(values[index].clone()),
        }
    }

    /// For argmax; `None` for non-numeric rows.
    #[allow(clippy::cast_precision_loss)]
    fn score(&self, index: usize) -> Option<f64> {
        Some(match self {
            Self::F32(values) => f64::from(values[index]),
            Self::F64(values) => values[index],
            Self::I64(values) => values[index] as f64,
            Self::I32(values) => f64::from(values[index]),
            Self::I16(values) => f64::from(values[index]),
            Self::I8(values) => f64::from(values[index]),
            Self::U64(values) => values[index] as f64,
            Self::U32(values) => f64::from(values[index]),
            Self::U16(values) => f64::from(values[index]),
            Self::U8(values) => f64::from(values[index]),
            Self::Bool(_) | Self::Text(_) => return None,
        })
    }

    /// The index of the highest value (the first one on ties; NaN never wins).
    fn argmax(&self) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for index in 0..self.len() {
            let Some(score) = self.score(index).filter(|score| !score.is_nan()) else {
                continue;
            };
            if best.is_none_or(|(_, top)| score > top) {
                best = Some((index, score));
            }
        }
        best.map(|(index, _)| index)
    }

    fn to_flat_json(&self) -> Vec<Value> {
        (0..self.len()).map(|index| self.value(index)).collect()
    }

    /// The row as nested arrays of `dims` (a bare value when `dims` is empty).
    fn to_nested_json(&self, dims: &[usize]) -> Value {
        let mut next = 0;
        self.nest(dims, &mut next)
    }

    fn nest(&self, dims: &[usize], next: &mut usize) -> Value {
        match dims.split_first() {
            None => {
                let value = self.value(*next);
                *next += 1;
                value
            }
            Some((&len, inner)) => Value::Array((0..len).map(|_| self.nest(inner, next)).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp32_values_print_as_their_shortest_decimal() {
        assert_eq!(f32_json(0.1).to_string(), "0.1");
        assert_eq!(f32_json(1.0).to_string(), "1.0");
        assert_eq!(f32_json(f32::MAX).as_f64(), Some(3.4028235e38));
        assert_eq!(f32_json(1e-45).as_f64(), Some(1e-45));
        assert_eq!(f32_json(f32::NAN), Value::Null);
        assert_eq!(f32_json(-3.25).to_string(), "-3.25");
    }

    #[test]
    fn rows_nest_by_the_example_shape_and_argmax_takes_the_first_best() {
        let values = [1.0_f32, 3.0, 3.0, 2.0];
        let row = Row::F32(&values);
        assert_eq!(
            row.to_nested_json(&[2, 2]).to_string(),
            "[[1.0,3.0],[3.0,2.0]]"
        );
        assert_eq!(row.to_nested_json(&[4]).to_string(), "[1.0,3.0,3.0,2.0]");
        assert_eq!(row.argmax(), Some(1));
        let scalar = [7_i64];
        assert_eq!(Row::I64(&scalar).to_nested_json(&[]), Value::from(7));
        let with_nan = [f32::NAN, 0.5];
        assert_eq!(Row::F32(&with_nan).argmax(), Some(1));
    }
}
