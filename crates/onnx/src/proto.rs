//! The few fields of an ONNX file (`onnx.proto`, field numbers of the ONNX specification) that
//! say what a graph takes and gives: enough to describe any model, whatever its operators,
//! without a runtime. Fields not listed here (weights, nodes' attributes) are skipped by the
//! decoder, so reading a large model's signature costs a scan, not a copy.

use std::collections::HashMap;
use std::path::Path;

use prost::Message as _;

/// Reads the signature part of the ONNX file at `path`.
pub(crate) fn read_model(path: &Path) -> Result<ModelProto, String> {
    let bytes = std::fs::read(path).map_err(|err| err.to_string())?;
    ModelProto::decode(bytes.as_slice()).map_err(|err| err.to_string())
}

/// The symbol the file names each input dimension by (`batch`, `sequence`), where it names
/// one: inputs that share a symbol share the size.
pub(crate) fn input_dimension_names(model: &ModelProto) -> HashMap<String, Vec<Option<String>>> {
    let Some(graph) = &model.graph else {
        return HashMap::new();
    };
    graph
        .input
        .iter()
        .map(|input| {
            let dims = input
                .r#type
                .as_ref()
                .and_then(|proto| proto.tensor_type.as_ref())
                .and_then(|tensor| tensor.shape.as_ref())
                .map(|shape| {
                    shape
                        .dim
                        .iter()
                        .map(|dim| dim.dim_param.clone().filter(|name| !name.is_empty()))
                        .collect()
                })
                .unwrap_or_default();
            (input.name.clone(), dims)
        })
        .collect()
}

/// `ModelProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ModelProto {
    #[prost(string, tag = "2")]
    pub(crate) producer_name: String,
    #[prost(string, tag = "3")]
    pub(crate) producer_version: String,
    #[prost(message, optional, tag = "7")]
    pub(crate) graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub(crate) opset_import: Vec<OperatorSetIdProto>,
}

/// `GraphProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GraphProto {
    #[prost(message, repeated, tag = "5")]
    pub(crate) initializer: Vec<NamedProto>,
    #[prost(message, repeated, tag = "11")]
    pub(crate) input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub(crate) output: Vec<ValueInfoProto>,
}

/// The name of a `TensorProto` (an initializer: a weight, not an input a request fills).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct NamedProto {
    #[prost(string, tag = "8")]
    pub(crate) name: String,
}

/// `OperatorSetIdProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub(crate) domain: String,
    #[prost(int64, tag = "2")]
    pub(crate) version: i64,
}

/// `ValueInfoProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) r#type: Option<TypeProto>,
}

/// `TypeProto`: a tensor, a sequence or a map (the other kinds are left out).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub(crate) tensor_type: Option<TensorTypeProto>,
    #[prost(message, optional, boxed, tag = "4")]
    pub(crate) sequence_type: Option<Box<SequenceTypeProto>>,
    #[prost(message, optional, tag = "5")]
    pub(crate) map_type: Option<MapTypeProto>,
}

/// `TypeProto.Tensor`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    pub(crate) elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub(crate) shape: Option<TensorShapeProto>,
}

/// `TypeProto.Sequence`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SequenceTypeProto {
    #[prost(message, optional, boxed, tag = "1")]
    pub(crate) elem_type: Option<Box<TypeProto>>,
}

/// `TypeProto.Map`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct MapTypeProto {
    #[prost(int32, tag = "1")]
    pub(crate) key_type: i32,
}

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub(crate) dim: Vec<DimensionProto>,
}

/// `TensorShapeProto.Dimension`: a size (`dim_value`) or a symbol (`dim_param`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DimensionProto {
    #[prost(int64, optional, tag = "1")]
    pub(crate) dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub(crate) dim_param: Option<String>,
}
