//! `inference-engine models inspect PATH.onnx`: what a graph takes and produces, and a
//! `model.toml` to start from.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use inference_engine_core::source::TensorSpec;
use tract_onnx::pb;
use tract_onnx::prelude::{Framework, InferenceFact, InferenceModel, InferenceModelExt, TDim};

use crate::error::OnnxError;
use crate::manifest::DataType;
use crate::pipeline::{BATCH_SYMBOL, datum_type_name, unimplemented_ops};

/// What an ONNX file declares, completed by tract's shape inference where it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    pub path: PathBuf,
    /// `producer_name producer_version`, when the file says.
    pub producer: Option<String>,
    pub opsets: Vec<OpsetImport>,
    /// The graph's inputs (initialisers excluded); `-1` for symbolic or unknown dimensions.
    pub inputs: Vec<TensorSpec>,
    /// The graph's outputs; `-1` for symbolic or unknown dimensions, `UNKNOWN` for a type
    /// that is not a tensor (a sequence or a map) or cannot be determined.
    pub outputs: Vec<TensorSpec>,
    /// Operators tract cannot run, as ``OpType (node `name`)``: the model will not load.
    pub unsupported_ops: Vec<String>,
}

/// One operator set the graph imports, e.g. `ai.onnx.ml 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsetImport {
    pub domain: String,
    pub version: i64,
}

impl fmt::Display for OpsetImport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.domain, self.version)
    }
}

const UNKNOWN_TYPE: &str = "UNKNOWN";

/// Reads the ONNX file at `path` and describes its signature.
///
/// Output types come from tract's inference with the inputs fixed (first dimension the batch
/// symbol `N`); where tract cannot type the graph, from what the file declares.
pub fn inspect(path: &Path) -> Result<Inspection, OnnxError> {
    let onnx = tract_onnx::onnx();
    let proto = onnx.proto_model_for_path(path).map_err(|err| {
        OnnxError::Model(format!(
            "{}: not a readable ONNX model: {err:#}",
            path.display()
        ))
    })?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Model(format!("{}: the file holds no graph", path.display())))?;
    let initialisers = graph
        .initializer
        .iter()
        .map(|tensor| tensor.name.as_str())
        .collect::<HashSet<_>>();
    let inputs = graph
        .input
        .iter()
        .filter(|input| !initialisers.contains(input.name.as_str()))
        .map(declared_spec)
        .collect::<Vec<_>>();
    let mut outputs = graph.output.iter().map(declared_spec).collect::<Vec<_>>();
    let model_dir = path.parent().and_then(Path::to_str);
    let model = onnx
        .parse(&proto, model_dir)
        .map_err(|err| {
            OnnxError::Model(format!(
                "{}: tract cannot read the graph: {err:#}",
                path.display()
            ))
        })?
        .model;
    let unsupported_ops = unimplemented_ops(&model);
    match inferred_outputs(model, &inputs) {
        Ok(inferred) if inferred.len() == outputs.len() => {
            for (output, (datatype, shape)) in outputs.iter_mut().zip(inferred) {
                merge(output, datatype, shape);
            }
        }
        Ok(_) => {}
        Err(err) => {
            tracing::debug!(path = %path.display(), "tract cannot type the graph; using the declared outputs: {err:#}");
        }
    }
    let opsets = proto
        .opset_import
        .iter()
        .map(|import| OpsetImport {
            domain: if import.domain.is_empty() {
                "ai.onnx".to_owned()
            } else {
                import.domain.clone()
            },
            version: import.version,
        })
        .collect();
    let producer = [
        proto.producer_name.as_str(),
        proto.producer_version.as_str(),
    ]
    .iter()
    .filter(|part| !part.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join(" ");
    Ok(Inspection {
        path: path.to_owned(),
        producer: (!producer.is_empty()).then_some(producer),
        opsets,
        inputs,
        outputs,
        unsupported_ops,
    })
}

/// Output types and shapes as tract infers them once the inputs are fixed, in graph order.
fn inferred_outputs(
    mut model: InferenceModel,
    inputs: &[TensorSpec],
) -> tract_onnx::prelude::TractResult<Vec<(String, Vec<i64>)>> {
    let batch = model.symbols.sym(BATCH_SYMBOL);
    let outlets = model.input_outlets()?.to_vec();
    for (index, outlet) in outlets.iter().enumerate() {
        let name = model.node(outlet.node).name.clone();
        let Some(spec) = inputs.iter().find(|input| input.name == name) else {
            continue;
        };
        let Some(datatype) = DataType::from_name(&spec.datatype) else {
            continue;
        };
        let shape = spec
            .shape
            .iter()
            .enumerate()
            .map(|(axis, &dim)| match (axis, usize::try_from(dim)) {
                (0, _) => TDim::from(batch.clone()),
                (_, Ok(size)) => TDim::from(size),
                (_, Err(_)) => TDim::from(model.symbols.sym(&format!("{name}_{axis}"))),
            })
            .collect::<Vec<_>>();
        let fact = InferenceFact::dt_shape(crate::pipeline::datum_type(datatype), shape);
        model.set_input_fact(index, fact)?;
    }
    let typed = model.into_typed()?;
    (0..typed.output_outlets()?.len())
        .map(|index| {
            let fact = typed.output_fact(index)?;
            let shape = fact
                .shape
                .iter()
                .map(|dim| dim.to_i64().unwrap_or(-1))
                .collect();
            Ok((datum_type_name(fact.datum_type), shape))
        })
        .collect()
}

/// tract's inference wins where it knows more; the declaration fills what it leaves open.
fn merge(output: &mut TensorSpec, datatype: String, shape: Vec<i64>) {
    output.datatype = datatype;
    if shape.len() == output.shape.len() {
        for (declared, inferred) in output.shape.iter_mut().zip(shape) {
            if inferred >= 0 {
                *declared = inferred;
            }
        }
    } else {
        output.shape = shape;
    }
}

fn declared_spec(info: &pb::ValueInfoProto) -> TensorSpec {
    let tensor = info.r#type.as_ref().and_then(|proto| proto.value.as_ref());
    let (datatype, shape) = match tensor {
        Some(pb::type_proto::Value::TensorType(tensor)) => {
            let shape = tensor
                .shape
                .as_ref()
                .map(|shape| {
                    shape
                        .dim
                        .iter()
                        .map(|dim| match dim.value {
                            Some(pb::tensor_shape_proto::dimension::Value::DimValue(size))
                                if size >= 0 =>
                            {
                                size
                            }
                            _ => -1,
                        })
                        .collect()
                })
                .unwrap_or_default();
            (elem_type_name(tensor.elem_type), shape)
        }
        None => (UNKNOWN_TYPE.to_owned(), Vec::new()),
    };
    TensorSpec {
        name: info.name.clone(),
        datatype,
        shape,
    }
}

/// The Open Inference Protocol name of an ONNX `TensorProto.DataType`.
fn elem_type_name(elem_type: i32) -> String {
    let name = match elem_type {
        1 => "FP32",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "BYTES",
        9 => "BOOL",
        10 => "FP16",
        11 => "FP64",
        12 => "UINT32",
        13 => "UINT64",
        16 => "BF16",
        _ => return UNKNOWN_TYPE.to_owned(),
    };
    name.to_owned()
}

impl Inspection {
    /// The graph's signature and a suggested `model.toml` (postprocess raw), as printed by
    /// `inference-engine models inspect`.
    pub fn report(&self) -> String {
        let mut report = String::new();
        let _ = writeln!(report, "file: {}", self.path.display());
        if let Some(producer) = &self.producer {
            let _ = writeln!(report, "producer: {producer}");
        }
        let opsets = self
            .opsets
            .iter()
            .map(OpsetImport::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(report, "opset: {opsets}");
        for (title, tensors) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            let _ = writeln!(report, "{title}:");
            for tensor in tensors {
                let _ = writeln!(
                    report,
                    "  {}: {} {:?}",
                    tensor.name, tensor.datatype, tensor.shape
                );
            }
        }
        if !self.unsupported_ops.is_empty() {
            let _ = writeln!(
                report,
                "warning: tract-onnx cannot run {}; this model will not load",
                self.unsupported_ops.join(", ")
            );
        }
        let _ = writeln!(report);
        let _ = writeln!(report, "suggested model.toml:");
        report.push_str(&self.suggested_manifest());
        report
    }

    /// A `model.toml` for this graph in the documented format, with `[postprocess] kind =
    /// "raw"`. Tensors the engine cannot serve are left out, with a comment saying why.
    pub fn suggested_manifest(&self) -> String {
        let mut text = String::new();
        let file = self
            .path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("model.onnx");
        let _ = writeln!(text, "backend = \"onnx\"");
        let _ = writeln!(text, "file = {}", toml_string(file));
        let _ = writeln!(text, "# description = \"what this model does\"");
        for (table, tensors) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            for tensor in tensors {
                let _ = writeln!(text);
                write_tensor(&mut text, table, tensor);
            }
        }
        let _ = writeln!(text);
        let _ = writeln!(text, "[postprocess]");
        let _ = writeln!(text, "kind = \"raw\"");
        text
    }
}

fn write_tensor(text: &mut String, table: &str, tensor: &TensorSpec) {
    if DataType::from_name(&tensor.datatype).is_none() {
        let _ = writeln!(
            text,
            "# {} `{}` is {}, which the engine does not serve (FP32, FP64, INT64, INT32); \
             left out",
            table.trim_end_matches('s'),
            tensor.name,
            tensor.datatype
        );
        return;
    }
    let _ = writeln!(text, "[[{table}]]");
    let _ = writeln!(text, "name = {}", toml_string(&tensor.name));
    let _ = writeln!(text, "datatype = \"{}\"", tensor.datatype);
    let mut shape = tensor.shape.clone();
    match shape.first_mut() {
        Some(first) if *first != -1 => {
            let _ = writeln!(
                text,
                "# the graph fixes the batch dimension at {first}; the engine needs it free"
            );
            *first = -1;
        }
        Some(_) => {}
        None => {
            let _ = writeln!(
                text,
                "# the graph declares no shape: write -1, then one example's"
            );
        }
    }
    if shape.iter().skip(1).any(|&dim| dim < 0) {
        let _ = writeln!(
            text,
            "# replace each -1 after the first with the size of one example's dimension"
        );
    }
    let dims = shape
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(text, "shape = [{dims}]");
}

/// A TOML basic string (quoted and escaped by toml itself).
fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}
