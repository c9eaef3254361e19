//! `inference-engine models inspect PATH.onnx`: what a graph takes and produces, and a
//! `model.toml` to start from.

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use inference_engine_core::source::{MAP_DATATYPE, TensorSpec};
use tract_onnx::prelude::{Framework, InferenceFact, InferenceModel, InferenceModelExt, TDim};

use crate::error::OnnxError;
use crate::manifest::DataType;
use crate::proto::{ModelProto, ValueInfoProto, read_model};
use crate::runtime::tract::{BATCH_SYMBOL, datum_type, datum_type_name, unimplemented_ops};

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
    /// Operators tract cannot run, as ``OpType (node `name`)``: the model needs ONNX Runtime
    /// (the default runtime).
    pub unsupported_ops: Vec<String>,
    /// Outputs that are neither a tensor nor a sequence of maps, with what they are (`a
    /// sequence of tensors`, `a map`): the engine does not serve them.
    pub other_outputs: Vec<(String, &'static str)>,
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

pub(crate) const UNKNOWN_TYPE: &str = "UNKNOWN";

/// A graph's inputs (initialisers excluded) and outputs as the file declares them.
#[derive(Debug)]
pub(crate) struct Signature {
    pub(crate) inputs: Vec<TensorSpec>,
    pub(crate) outputs: Vec<TensorSpec>,
    /// Outputs of a kind the engine has no datatype for, and what they are.
    pub(crate) other_outputs: Vec<(String, &'static str)>,
}

/// What the ONNX file at `path` declares it takes and gives, without a runtime.
pub(crate) fn declared_signature(path: &Path) -> Result<Signature, String> {
    read_signature(path).map(|(_, signature)| signature)
}

fn read_signature(path: &Path) -> Result<(ModelProto, Signature), String> {
    let proto = read_model(path)?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| "the file holds no graph".to_owned())?;
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
        .collect();
    let outputs = graph.output.iter().map(declared_spec).collect();
    let other_outputs = graph
        .output
        .iter()
        .filter_map(|output| {
            let declared = output.r#type.as_ref()?;
            let kind = match (&declared.sequence_type, &declared.map_type) {
                (Some(sequence), _) => match sequence.elem_type.as_deref() {
                    Some(element) if element.map_type.is_some() => return None,
                    Some(element) if element.tensor_type.is_some() => "a sequence of tensors",
                    _ => "a sequence",
                },
                (None, Some(_)) => "a map",
                (None, None) => return None,
            };
            Some((output.name.clone(), kind))
        })
        .collect();
    Ok((
        proto,
        Signature {
            inputs,
            outputs,
            other_outputs,
        },
    ))
}

/// Reads the ONNX file at `path` and describes its signature.
///
/// The signature is what the file declares (read without a runtime, so any model can be
/// described); where an output's dimensions are left open and tract can type the graph with
/// the inputs fixed (first dimension the batch symbol `N`), tract's inference fills them in.
pub fn inspect(path: &Path) -> Result<Inspection, OnnxError> {
    let (
        proto,
        Signature {
            inputs,
            mut outputs,
            other_outputs,
        },
    ) = read_signature(path).map_err(|err| {
        OnnxError::Model(format!(
            "{}: not a readable ONNX model: {err}",
            path.display()
        ))
    })?;
    let onnx = tract_onnx::onnx().with_ignore_value_info(true);
    let model_dir = path.parent().and_then(Path::to_str);
    let parsed = onnx
        .proto_model_for_path(path)
        .and_then(|tract_proto| onnx.parse(&tract_proto, model_dir));
    let unsupported_ops = match parsed {
        Ok(parsed) => {
            let unsupported = unimplemented_ops(&parsed.model);
            if unsupported.is_empty() {
                match inferred_outputs(parsed.model, &inputs) {
                    Ok(inferred) if inferred.len() == outputs.len() => {
                        for (output, (datatype, shape)) in outputs.iter_mut().zip(inferred) {
                            merge(output, &datatype, &shape);
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!(path = %path.display(), "tract cannot type the graph; using the declared outputs: {err:#}");
                    }
                }
            }
            unsupported
        }
        Err(err) => vec![format!("the graph itself ({err:#})")],
    };
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
        other_outputs,
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
        let Some(datum_type) = DataType::from_name(&spec.datatype)
            .and_then(DataType::tensor)
            .and_then(datum_type)
        else {
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
        let fact = InferenceFact::dt_shape(datum_type, shape);
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

/// tract's inference fills what the declaration leaves open (an unknown type, a dimension
/// without a size); it never overrides what the file declares.
fn merge(output: &mut TensorSpec, datatype: &str, shape: &[i64]) {
    if output.datatype == UNKNOWN_TYPE {
        output.datatype = datatype.to_owned();
    } else if output.datatype != datatype {
        return;
    }
    if output.shape.is_empty() {
        output.shape = shape.to_vec();
    } else if shape.len() == output.shape.len() {
        for (declared, &inferred) in output.shape.iter_mut().zip(shape) {
            if *declared < 0 && inferred >= 0 {
                *declared = inferred;
            }
        }
    }
}

fn declared_spec(info: &ValueInfoProto) -> TensorSpec {
    let declared = info.r#type.as_ref();
    let is_map_sequence = declared
        .and_then(|proto| proto.sequence_type.as_ref())
        .and_then(|sequence| sequence.elem_type.as_ref())
        .is_some_and(|element| element.map_type.is_some());
    let (datatype, shape) = if is_map_sequence {
        // scikit-learn's ZipMap: seq(map(K, V)), one map per example.
        (MAP_DATATYPE.to_owned(), vec![-1])
    } else if let Some(tensor) = declared.and_then(|proto| proto.tensor_type.as_ref()) {
        let shape = tensor
            .shape
            .as_ref()
            .map(|shape| {
                shape
                    .dim
                    .iter()
                    .map(|dim| dim.dim_value.filter(|&size| size > 0).unwrap_or(-1))
                    .collect()
            })
            .unwrap_or_default();
        (elem_type_name(tensor.elem_type), shape)
    } else {
        (UNKNOWN_TYPE.to_owned(), Vec::new())
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

/// scikit-learn's operators (the `ai.onnx.ml` domain that skl2onnx and onnxmltools write).
const ONNX_ML_OPS: [&str; 19] = [
    "ArrayFeatureExtractor",
    "Binarizer",
    "CastMap",
    "CategoryMapper",
    "DictVectorizer",
    "FeatureVectorizer",
    "Imputer",
    "LabelEncoder",
    "LinearClassifier",
    "LinearRegressor",
    "Normalizer",
    "OneHotEncoder",
    "SVMClassifier",
    "SVMRegressor",
    "Scaler",
    "TreeEnsemble",
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
    "ZipMap",
];

/// The skl2onnx option that makes a classifier's probabilities a tensor.
pub const NO_ZIPMAP_OPTION: &str = "options={id(model): {'zipmap': False}}";

/// A classifier's outputs: the per-class scores and how many classes there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierOutputs {
    /// The output that holds one score per class.
    pub tensor: String,
    pub classes: usize,
    /// `probabilities` when the scores are probabilities, `classification` (softmax first)
    /// when they are logits.
    pub kind: &'static str,
}

impl Inspection {
    /// The graph's signature and a suggested `model.toml` (postprocess raw), as printed by
    /// `inference-engine models inspect`, on a machine with ONNX Runtime.
    pub fn report(&self) -> String {
        self.report_for(None)
    }

    /// [`Inspection::report`] on a machine where `only_tract` says why tract is the only
    /// runtime (`ONNX_RUNTIME=tract`, or the library is missing), if it is.
    pub fn report_for(&self, only_tract: Option<&str>) -> String {
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
                "note: tract cannot run {}; serve it on runtime = \"onnxruntime\" (the default)",
                self.unsupported_ops.join(", ")
            );
        }
        for fix in self.advice(only_tract) {
            let _ = writeln!(report, "fix: {fix}");
        }
        if let Some(template) = self.classifier_postprocess() {
            let _ = writeln!(report);
            let _ = writeln!(
                report,
                "the outputs look like a classifier's: for answers keyed by class name, put this \
                 [postprocess] in the model.toml below instead of kind = \"raw\" (the labels in \
                 the order of the model's classes, e.g. scikit-learn's `classes_`):"
            );
            report.push_str(&template);
        }
        let _ = writeln!(report);
        let _ = writeln!(report, "suggested model.toml:");
        report.push_str(&self.suggested_manifest());
        report
    }

    /// What to change, one sentence each, for what the graph holds that the engine recognises:
    /// ZipMap outputs (skl2onnx's option), sequence and map outputs, and operators tract
    /// cannot run when `only_tract` says why tract is the only runtime.
    pub fn advice(&self, only_tract: Option<&str>) -> Vec<String> {
        let mut advice = Vec::new();
        for output in self
            .outputs
            .iter()
            .filter(|output| output.datatype == MAP_DATATYPE)
        {
            advice.push(format!(
                "output `{}` is a sequence of maps, one {{class: probability}} per example \
                 (scikit-learn's ZipMap): kind = \"raw\" serves it as it is, but kind = \
                 \"probabilities\", \"argmax\" or \"classification\" need a tensor of \
                 probabilities: convert again without ZipMap, skl2onnx `convert_sklearn(model, \
                 ..., {NO_ZIPMAP_OPTION})` (onnxmltools: `zipmap=False`), and inspect the new \
                 file",
                output.name
            ));
        }
        for (name, kind) in &self.other_outputs {
            advice.push(format!(
                "output `{name}` is {kind}, which the engine does not serve (it is left out of \
                 the manifest): export it as a tensor (for a scikit-learn classifier's \
                 probabilities, skl2onnx's {NO_ZIPMAP_OPTION}; for PyTorch, return a tensor, \
                 not a list or a dict)"
            ));
        }
        let ml_ops = self
            .unsupported_ops
            .iter()
            .filter(|op| {
                let op_type = op.split(' ').next().unwrap_or_default();
                ONNX_ML_OPS.contains(&op_type)
            })
            .map(String::as_str)
            .collect::<Vec<_>>();
        if !ml_ops.is_empty() {
            advice.push(format!(
                "{} {} scikit-learn's (ONNX-ML, ai.onnx.ml: skl2onnx, onnxmltools); ONNX Runtime \
                 runs every one of them",
                ml_ops.join(", "),
                if ml_ops.len() == 1 { "is" } else { "are" }
            ));
        }
        if let (false, Some(reason)) = (self.unsupported_ops.is_empty(), only_tract) {
            advice.push(format!(
                "this machine has only tract ({reason}), so the model would be listed not ready: \
                 install ONNX Runtime (scripts/install-onnxruntime.sh, or ORT_DYLIB_PATH) and \
                 leave ONNX_RUNTIME unset"
            ));
        }
        advice
    }

    /// The classifier's outputs, when the graph's look like one: one floating-point score per
    /// class (`[-1, classes]`, at least two) next to a label per example, or alone when its
    /// name says probabilities or logits.
    pub fn classifier_outputs(&self) -> Option<ClassifierOutputs> {
        let scores = |output: &&TensorSpec| {
            matches!(output.datatype.as_str(), "FP32" | "FP64" | "FP16")
                && matches!(output.shape.as_slice(), [_, classes] if *classes >= 2)
        };
        let label = |output: &TensorSpec| {
            matches!(output.datatype.as_str(), "INT64" | "INT32" | "BYTES")
                && matches!(output.shape.as_slice(), [_] | [_, 1])
        };
        let candidates = self.outputs.iter().filter(scores).collect::<Vec<_>>();
        let [candidate] = candidates.as_slice() else {
            return None;
        };
        let name = candidate.name.to_ascii_lowercase();
        let kind = if name.contains("logit") {
            "classification"
        } else if name.contains("prob") || self.outputs.iter().any(label) {
            "probabilities"
        } else {
            return None;
        };
        Some(ClassifierOutputs {
            tensor: candidate.name.clone(),
            classes: usize::try_from(candidate.shape[1]).ok()?,
            kind,
        })
    }

    /// A `[postprocess]` table for [`Inspection::classifier_outputs`], with placeholder labels
    /// (`class_0`, ...): the graph does not say what its classes are called.
    pub fn classifier_postprocess(&self) -> Option<String> {
        let classifier = self.classifier_outputs()?;
        let labels = (0..classifier.classes)
            .map(|class| toml_string(&format!("class_{class}")))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = String::new();
        let _ = writeln!(text, "[postprocess]");
        let _ = writeln!(text, "kind = \"{}\"", classifier.kind);
        let _ = writeln!(text, "tensor = {}", toml_string(&classifier.tensor));
        let _ = writeln!(text, "labels = [{labels}]");
        Some(text)
    }

    /// A `model.toml` for this graph in the documented format, on ONNX Runtime, with
    /// `[postprocess] kind = "raw"`: it serves the model as it is. Tensors the engine cannot
    /// serve are left out, with a comment saying why.
    pub fn suggested_manifest(&self) -> String {
        let mut text = String::new();
        let file = self
            .path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("model.onnx");
        let _ = writeln!(text, "backend = \"onnx\"");
        let _ = writeln!(text, "runtime = \"onnxruntime\"");
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
    let servable = match DataType::from_name(&tensor.datatype) {
        Some(DataType::Map) => table == "outputs",
        Some(DataType::Tensor(_)) => true,
        None => false,
    };
    if !servable {
        let _ = writeln!(
            text,
            "# {} `{}` is {}, which the engine does not serve; left out",
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
                "# the graph fixes the batch dimension at {first}; the engine stacks requests \
                 along it, so re-export the model with a dynamic batch axis"
            );
            *first = -1;
        }
        Some(_) => {}
        None => {
            let _ = writeln!(
                text,
                "# the graph declares no shape: write -1 (the batch), then one example's \
                 dimensions (-1 for any size)"
            );
            shape.push(-1);
        }
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
