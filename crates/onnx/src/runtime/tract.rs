//! tract, the pure-Rust fallback: an optimised plan with the manifest's inputs fixed (the
//! batch and every dynamic dimension symbolic), and core tensors ⇄ tract tensors around it.

use std::path::Path;
use std::sync::Arc;

use half::f16;
use inference_engine_core::pipeline::PipelineError;
use inference_engine_core::tensor::{Tensor, TensorData};
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModel, InferenceModelExt, IntoArcTensor,
    IntoRunnable, IntoTValue, TDim, TValue, Tensor as TractTensor, TractError, TypedFact,
    TypedRunnableModel, tract_ndarray,
};
use tract_onnx::tract_hir::ops::unimpl::UnimplementedOp;

use crate::error::OnnxError;
use crate::manifest::{Manifest, TensorManifest, TensorType};
use crate::outputs::Output;
use crate::proto;
use crate::runtime::Graph;

/// The name of the batch dimension's symbol in the graph's input facts.
pub(crate) const BATCH_SYMBOL: &str = "N";

pub(crate) struct TractGraph {
    plan: Arc<TypedRunnableModel>,
    /// Declared outputs, in the manifest's (and the plan's) order.
    outputs: Vec<String>,
}

impl TractGraph {
    /// Reads the graph at `path`, fixes its inputs to the manifest's types and shapes, checks
    /// the declared outputs, and optimises it.
    pub(crate) fn load(path: &Path, manifest: &Manifest) -> Result<Self, OnnxError> {
        // Exporters (PyTorch's dynamo) name their own dimension symbols in the graph's value
        // infos; the manifest's input facts are what tract should go by.
        let mut model = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .model_for_path(path)
            .map_err(|err| model_error("not a readable ONNX model", &err))?;
        let unsupported = unimplemented_ops(&model);
        if !unsupported.is_empty() {
            return Err(OnnxError::Model(format!(
                "the graph uses operators tract-onnx does not implement: {} (runtime = \
                 \"onnxruntime\" runs them)",
                unsupported.join(", ")
            )));
        }
        if let Some(unsupported) = manifest
            .inputs
            .iter()
            .chain(&manifest.outputs)
            .find(|tensor| tensor.datatype.tensor().and_then(datum_type).is_none())
        {
            return Err(OnnxError::Model(format!(
                "`{}` is {}, which tract does not run (runtime = \"onnxruntime\" does)",
                unsupported.name, unsupported.datatype
            )));
        }

        let graph_inputs = model
            .input_outlets()
            .map_err(|err| model_error("cannot list the graph inputs", &err))?
            .iter()
            .map(|outlet| model.node(outlet.node).name.clone())
            .collect::<Vec<_>>();
        crate::pipeline::check_declared("input", &manifest.inputs, &graph_inputs)?;
        model
            .select_inputs_by_name(manifest.inputs.iter().map(|input| input.name.as_str()))
            .map_err(|err| model_error("cannot order the graph inputs", &err))?;
        // Dynamic dimensions the file names alike (`sequence` of input_ids and attention_mask)
        // are one symbol, so tract knows they agree; the names are in the value infos tract
        // was told to ignore, so they are read from the file.
        let names = proto::read_model(path)
            .map(|proto| proto::input_dimension_names(&proto))
            .unwrap_or_default();
        for (index, input) in manifest.inputs.iter().enumerate() {
            let fact = input_fact(&model, input, names.get(&input.name).map(Vec::as_slice));
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
                    crate::pipeline::quoted(&graph_outputs)
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
        Ok(Self {
            plan,
            outputs: manifest
                .outputs
                .iter()
                .map(|output| output.name.clone())
                .collect(),
        })
    }
}

impl Graph for TractGraph {
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Output>, PipelineError> {
        let inputs = inputs
            .into_iter()
            .map(|tensor| to_tract(tensor).map(IntoTValue::into_tvalue))
            .collect::<Result<tract_onnx::prelude::TVec<TValue>, _>>()?;
        let outputs = self
            .plan
            .run(inputs)
            .map_err(|err| PipelineError::Inference(format!("{err:#}")))?;
        outputs
            .into_iter()
            .zip(&self.outputs)
            .map(|(value, name)| from_tract(name, &value.into_arc_tensor()).map(Output::Tensor))
            .collect()
    }
}

/// The manifest's type and shape for an input: the batch as the symbol `N`, every dynamic
/// dimension as the symbol the file names it by (`graph_names`, per axis), else a symbol of
/// its own.
fn input_fact(
    model: &InferenceModel,
    input: &TensorManifest,
    graph_names: Option<&[Option<String>]>,
) -> InferenceFact {
    let mut shape = vec![TDim::from(model.symbols.sym(BATCH_SYMBOL))];
    for (axis, dim) in input.example_dims().into_iter().enumerate() {
        let graph_name = graph_names
            .and_then(|names| names.get(axis + 1))
            .and_then(Option::as_deref);
        shape.push(match (dim, graph_name) {
            (Some(size), _) => TDim::from(size),
            (None, Some(name)) => TDim::from(model.symbols.sym(&format!("dim_{name}"))),
            (None, None) => TDim::from(model.symbols.sym(&format!("{}_{}", input.name, axis + 1))),
        });
    }
    match input.datatype.tensor().and_then(datum_type) {
        Some(datum_type) => InferenceFact::dt_shape(datum_type, shape),
        None => InferenceFact::shape(shape),
    }
}

/// The declared output must have the datatype, rank and fixed dimensions the graph produces.
fn check_output_fact(output: &TensorManifest, fact: &TypedFact) -> Result<(), OnnxError> {
    let declared = output.datatype.tensor().and_then(datum_type);
    if declared != Some(fact.datum_type) {
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
            .all(|(&graph, &declared)| graph == -1 || declared == -1 || graph == declared);
    if !matches {
        return Err(OnnxError::Model(format!(
            "output `{}` has shape {graph_shape:?} in the graph (-1: any size) but model.toml \
             says {:?}",
            output.name, output.shape
        )));
    }
    Ok(())
}

/// tract's element type; `None` for bfloat16, which tract does not have.
pub(crate) fn datum_type(element: TensorType) -> Option<DatumType> {
    Some(match element {
        TensorType::Bool => DatumType::Bool,
        TensorType::Uint8 => DatumType::U8,
        TensorType::Uint16 => DatumType::U16,
        TensorType::Uint32 => DatumType::U32,
        TensorType::Uint64 => DatumType::U64,
        TensorType::Int8 => DatumType::I8,
        TensorType::Int16 => DatumType::I16,
        TensorType::Int32 => DatumType::I32,
        TensorType::Int64 => DatumType::I64,
        TensorType::Fp16 => DatumType::F16,
        TensorType::Fp32 => DatumType::F32,
        TensorType::Fp64 => DatumType::F64,
        TensorType::Bytes => DatumType::String,
        TensorType::Bf16 => return None,
    })
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

/// Moves a core tensor into a tract tensor (no copy for plain element types).
fn to_tract(tensor: Tensor) -> Result<TractTensor, PipelineError> {
    let Tensor { name, shape, data } = tensor;
    let shape = tract_ndarray::IxDyn(&shape);
    let array = |err: tract_ndarray::ShapeError| {
        PipelineError::Inference(format!("tensor `{name}`: {err}"))
    };
    macro_rules! owned {
        ($values:expr) => {
            tract_ndarray::ArrayD::from_shape_vec(shape, $values)
                .map(TractTensor::from)
                .map_err(array)
        };
    }
    match_plain_elements! {
        data,
        values => owned!(values),
        TensorData::Fp16(bits) => owned!(bits.into_iter().map(f16::from_bits).collect::<Vec<_>>()),
        TensorData::Bytes(items) => owned!(
            items
                .into_iter()
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .collect::<Vec<_>>()
        ),
        TensorData::Bf16(_) => Err(PipelineError::InvalidInput(format!(
            "input `{name}` is BF16, which tract does not run (runtime = \"onnxruntime\" does)"
        ))),
    }
}

/// A tract tensor (a plan output) as a core tensor named `name`.
fn from_tract(name: &str, tensor: &TractTensor) -> Result<Tensor, PipelineError> {
    fn values<T: tract_onnx::prelude::Datum + Clone>(
        tensor: &TractTensor,
    ) -> Result<Vec<T>, PipelineError> {
        let failed = |err: TractError| PipelineError::Inference(format!("{err:#}"));
        let view = tensor.try_as_plain_ram().map_err(failed)?;
        view.as_slice::<T>().map(<[T]>::to_vec).map_err(failed)
    }
    let data = match tensor.datum_type() {
        DatumType::Bool => TensorData::Bool(values(tensor)?),
        DatumType::U8 => TensorData::Uint8(values(tensor)?),
        DatumType::U16 => TensorData::Uint16(values(tensor)?),
        DatumType::U32 => TensorData::Uint32(values(tensor)?),
        DatumType::U64 => TensorData::Uint64(values(tensor)?),
        DatumType::I8 => TensorData::Int8(values(tensor)?),
        DatumType::I16 => TensorData::Int16(values(tensor)?),
        DatumType::I32 => TensorData::Int32(values(tensor)?),
        DatumType::I64 => TensorData::Int64(values(tensor)?),
        DatumType::F32 => TensorData::Fp32(values(tensor)?),
        DatumType::F64 => TensorData::Fp64(values(tensor)?),
        DatumType::F16 => TensorData::Fp16(
            values::<f16>(tensor)?
                .into_iter()
                .map(f16::to_bits)
                .collect(),
        ),
        DatumType::String => TensorData::Bytes(
            values::<String>(tensor)?
                .into_iter()
                .map(String::into_bytes)
                .collect(),
        ),
        other => {
            return Err(PipelineError::Inference(format!(
                "output `{name}` has element type {other:?}, which the engine cannot return"
            )));
        }
    };
    Tensor::new(name, tensor.shape().to_vec(), data)
        .map_err(|err| PipelineError::Inference(err.to_string()))
}
