//! The REST infer request and response (`POST /v2/models/{m}[/versions/{v}]/infer`), with the
//! binary tensor extension: a body whose first `Inference-Header-Content-Length` bytes are the
//! JSON header and whose rest holds the raw contents of the inputs that declare a
//! `binary_data_size` parameter, in order; outputs asked for with `binary_data: true` (or all
//! of them with the request parameter `binary_data_output: true`) come back the same way.

use std::time::Duration;

use inference_engine_core::tensor::Tensor;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::wire::{self, WireError};

/// The header naming the length of the JSON part of a binary body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Debug, Deserialize)]
struct RequestBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputBody>,
    #[serde(default)]
    outputs: Vec<OutputBody>,
}

#[derive(Debug, Deserialize)]
struct InputBody {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct OutputBody {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// An output the client asked for, and whether it wants it as raw bytes (`None`: the
/// request's `binary_data_output`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOutput {
    pub name: String,
    pub binary: Option<bool>,
}

/// Which outputs go back, and how.
#[derive(Debug, Clone, Default)]
pub struct OutputSelection {
    /// Empty: every output of the model.
    pub requested: Vec<RequestedOutput>,
    /// `binary_data_output`: outputs not listed in `requested` come back as raw bytes.
    pub binary_by_default: bool,
}

impl OutputSelection {
    /// Whether `output` goes back as raw bytes.
    pub fn binary(&self, output: &str) -> bool {
        self.requested
            .iter()
            .find(|requested| requested.name == output)
            .and_then(|requested| requested.binary)
            .unwrap_or(self.binary_by_default)
    }

    pub fn names(&self) -> Vec<String> {
        self.requested
            .iter()
            .map(|output| output.name.clone())
            .collect()
    }
}

/// A decoded infer request.
#[derive(Debug, Clone)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    pub outputs: OutputSelection,
    /// The `timeout` parameter (microseconds in the protocol).
    pub timeout: Option<Duration>,
    /// The `priority` parameter (1 is the highest level; 0 the default).
    pub priority: Option<u64>,
}

/// Decodes a request body; `header_length` is the `Inference-Header-Content-Length` header.
pub fn parse_infer_request(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<InferRequest, WireError> {
    let (header, mut binary) = match header_length {
        Some(length) => body.split_at_checked(length).ok_or_else(|| {
            WireError(format!(
                "{HEADER_LENGTH} is {length} but the body has only {} bytes",
                body.len()
            ))
        })?,
        None => (body, &[][..]),
    };
    let request: RequestBody = serde_json::from_slice(header)
        .map_err(|err| WireError(format!("the request is not a valid infer request: {err}")))?;
    if request.inputs.is_empty() {
        return Err(WireError::new("the request has no inputs"));
    }
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in request.inputs {
        let datatype = wire::datatype(&input.datatype, &input.name)?;
        let dims = wire::shape(&input.shape, &input.name)?;
        let data = match input.parameters.get("binary_data_size") {
            Some(size) => {
                let size = size
                    .as_u64()
                    .and_then(|size| usize::try_from(size).ok())
                    .ok_or_else(|| {
                        WireError(format!(
                            "tensor `{}`: binary_data_size must be a non-negative integer",
                            input.name
                        ))
                    })?;
                let (raw, rest) = binary.split_at_checked(size).ok_or_else(|| {
                    WireError(format!(
                        "tensor `{}`: binary_data_size is {size} but only {} binary bytes remain",
                        input.name,
                        binary.len()
                    ))
                })?;
                binary = rest;
                wire::data_from_raw(&input.name, datatype, raw)?
            }
            None => {
                let data = input.data.as_ref().ok_or_else(|| {
                    WireError(format!(
                        "tensor `{}` has neither `data` nor a binary_data_size parameter",
                        input.name
                    ))
                })?;
                wire::data_from_json(&input.name, datatype, data)?
            }
        };
        inputs.push(wire::tensor(&input.name, dims, data)?);
    }
    if !binary.is_empty() {
        return Err(WireError(format!(
            "{} binary bytes follow the JSON header that no input claims (binary_data_size)",
            binary.len()
        )));
    }
    let requested = request
        .outputs
        .into_iter()
        .map(|output| {
            let binary = flag(&output.parameters, "binary_data")?;
            Ok(RequestedOutput {
                name: output.name,
                binary,
            })
        })
        .collect::<Result<_, WireError>>()?;
    Ok(InferRequest {
        id: request.id,
        inputs,
        outputs: OutputSelection {
            requested,
            binary_by_default: flag(&request.parameters, "binary_data_output")?.unwrap_or(false),
        },
        timeout: timeout(&request.parameters)?,
        priority: priority(&request.parameters)?,
    })
}

fn flag(parameters: &Map<String, Value>, name: &str) -> Result<Option<bool>, WireError> {
    parameters
        .get(name)
        .map(|value| {
            value
                .as_bool()
                .ok_or_else(|| WireError(format!("parameter {name} must be true or false")))
        })
        .transpose()
}

/// The `timeout` request parameter, in microseconds as Triton's clients send it.
pub fn timeout(parameters: &Map<String, Value>) -> Result<Option<Duration>, WireError> {
    parameters
        .get("timeout")
        .map(|value| {
            value.as_u64().map(Duration::from_micros).ok_or_else(|| {
                WireError::new("parameter timeout must be a non-negative integer (microseconds)")
            })
        })
        .transpose()
}

/// The `priority` request parameter.
pub fn priority(parameters: &Map<String, Value>) -> Result<Option<u64>, WireError> {
    parameters
        .get("priority")
        .map(|value| {
            value
                .as_u64()
                .ok_or_else(|| WireError::new("parameter priority must be a non-negative integer"))
        })
        .transpose()
}

/// An encoded response: the body, and the length of its JSON part when binary outputs follow.
#[derive(Debug, Clone)]
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

/// Encodes the outputs, raw where `binary(name)` says so.
pub fn encode_infer_response(
    model_name: &str,
    model_version: &str,
    id: Option<&str>,
    outputs: &[Tensor],
    binary: impl Fn(&str) -> bool,
) -> EncodedResponse {
    let mut raw = Vec::new();
    let mut described = Vec::with_capacity(outputs.len());
    for output in outputs {
        let mut entry = json!({
            "name": output.name,
            "datatype": output.datatype().as_str(),
            "shape": output.shape,
        });
        if binary(&output.name) {
            let start = raw.len();
            wire::write_raw(&output.data, &mut raw);
            entry["parameters"] = json!({"binary_data_size": raw.len() - start});
        } else {
            entry["data"] = Value::Array(output.data.to_json_values());
        }
        described.push(entry);
    }
    let mut header = json!({
        "model_name": model_name,
        "model_version": model_version,
        "outputs": described,
    });
    if let Some(id) = id {
        header["id"] = Value::String(id.to_owned());
    }
    let mut body = header.to_string().into_bytes();
    if raw.is_empty() {
        return EncodedResponse {
            body,
            header_length: None,
        };
    }
    let header_length = body.len();
    body.extend_from_slice(&raw);
    EncodedResponse {
        body,
        header_length: Some(header_length),
    }
}

#[cfg(test)]
mod tests {
    use inference_engine_core::tensor::TensorData;

    use super::*;

    #[test]
    fn a_json_request_decodes_with_its_outputs_and_timeout() {
        let body = json!({
            "id": "r1",
            "parameters": {"timeout": 2500},
            "inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [[1, 2]]}],
            "outputs": [{"name": "label", "parameters": {"binary_data": true}}]
        });
        let request = parse_infer_request(body.to_string().as_bytes(), None).unwrap();
        assert_eq!(request.id.as_deref(), Some("r1"));
        assert_eq!(request.inputs[0].data, TensorData::Fp32(vec![1.0, 2.0]));
        assert_eq!(request.timeout, Some(Duration::from_micros(2500)));
        assert!(request.outputs.binary("label"));
        assert!(!request.outputs.binary("probabilities"));
    }

    #[test]
    fn binary_inputs_are_read_in_order_after_the_header() {
        let header = json!({
            "parameters": {"binary_data_output": true},
            "inputs": [
                {"name": "a", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}},
                {"name": "b", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}
            ]
        })
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(&wire::to_raw(&TensorData::Int32(vec![7, -1])));
        body.extend_from_slice(&[2, 0, 0, 0, b'h', b'i']);
        let request = parse_infer_request(&body, Some(header.len())).unwrap();
        assert_eq!(request.inputs[0].data, TensorData::Int32(vec![7, -1]));
        assert_eq!(
            request.inputs[1].data,
            TensorData::Bytes(vec![b"hi".to_vec()])
        );
        assert!(request.outputs.binary("anything"));

        // binary_data_output is the default of listed outputs too, unless they say otherwise.
        let listed = json!({
            "parameters": {"binary_data_output": true},
            "inputs": [{"name": "a", "shape": [1], "datatype": "INT32", "data": [1]}],
            "outputs": [{"name": "p"}, {"name": "q", "parameters": {"binary_data": false}}]
        });
        let request = parse_infer_request(listed.to_string().as_bytes(), None).unwrap();
        assert!(request.outputs.binary("p"));
        assert!(!request.outputs.binary("q"));

        let err = parse_infer_request(&body[..body.len() - 1], Some(header.len())).unwrap_err();
        assert!(err.0.contains("tensor `b`"), "{err}");
        let mut extra = body.clone();
        extra.push(0);
        assert!(parse_infer_request(&extra, Some(header.len())).is_err());
    }

    #[test]
    fn the_element_count_must_match_the_shape() {
        let body = json!({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3]}]});
        let err = parse_infer_request(body.to_string().as_bytes(), None).unwrap_err();
        assert_eq!(
            err.0,
            "tensor `x` has shape [2, 4], which holds 8 elements, but 3 were sent"
        );
    }

    #[test]
    fn responses_put_binary_outputs_after_the_json_header() {
        let outputs = vec![
            Tensor::new("label", vec![2], TensorData::Int64(vec![1, 2])).unwrap(),
            Tensor::new("p", vec![1], TensorData::Fp32(vec![0.5])).unwrap(),
        ];
        let encoded = encode_infer_response("iris", "v1", Some("r1"), &outputs, |name| name == "p");
        let length = encoded.header_length.unwrap();
        let header: Value = serde_json::from_slice(&encoded.body[..length]).unwrap();
        assert_eq!(header["id"], "r1");
        assert_eq!(header["outputs"][0]["data"], json!([1, 2]));
        assert_eq!(header["outputs"][1]["parameters"]["binary_data_size"], 4);
        assert_eq!(&encoded.body[length..], 0.5_f32.to_le_bytes());

        let plain = encode_infer_response("iris", "v1", None, &outputs, |_| false);
        assert!(plain.header_length.is_none());
        let header: Value = serde_json::from_slice(&plain.body).unwrap();
        assert_eq!(header["outputs"][1]["data"], json!([0.5]));
        assert!(header.get("id").is_none());
    }
}
