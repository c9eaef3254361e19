//! Tensor elements in each of the protocol's wire forms: JSON (nested or flat arrays), raw
//! little-endian bytes (`BYTES` elements as a 4-byte little-endian length and the bytes), and
//! the typed `InferTensorContents` of gRPC.

use inference_engine_core::tensor::{DataType, Tensor, TensorData, f32_to_bf16, f32_to_f16};
use serde_json::Value;

use crate::proto::inference::InferTensorContents;

/// A request the protocol cannot accept; the sentence names the tensor and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

impl WireError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A protocol datatype name, or a clear error.
pub fn datatype(name: &str, tensor: &str) -> Result<DataType, WireError> {
    DataType::parse(name).ok_or_else(|| {
        WireError(format!(
            "tensor `{tensor}` has datatype {name:?}; expected one of {}",
            DataType::ALL.map(DataType::as_str).join(", ")
        ))
    })
}

/// A wire shape (`int64`s) as dimensions; negative sizes are refused.
pub fn shape(dims: &[i64], tensor: &str) -> Result<Vec<usize>, WireError> {
    dims.iter()
        .map(|&dim| usize::try_from(dim))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            WireError(format!(
                "tensor `{tensor}` has a negative dimension in shape {dims:?}"
            ))
        })
}

/// A wire tensor, its element count checked against its shape.
pub fn tensor(name: &str, dims: Vec<usize>, data: TensorData) -> Result<Tensor, WireError> {
    Tensor::new(name, dims, data).map_err(|err| {
        WireError(format!(
            "tensor `{}` has shape {:?}, which holds {} elements, but {} were sent",
            err.name, err.shape, err.expected, err.actual
        ))
    })
}

/// Shape as the protocol writes it.
pub fn wire_shape(dims: &[usize]) -> Vec<i64> {
    dims.iter()
        .map(|&dim| i64::try_from(dim).unwrap_or(i64::MAX))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// JSON

/// The `data` of a JSON tensor: nested arrays in row-major order, or one flat array.
pub fn data_from_json(
    name: &str,
    datatype: DataType,
    data: &Value,
) -> Result<TensorData, WireError> {
    let mut leaves = Vec::new();
    flatten(data, &mut leaves);
    let element = |index: usize, value: &Value| {
        WireError(format!(
            "tensor `{name}`: element {index} ({value}) is not a valid {datatype} value"
        ))
    };
    fn each<T>(
        leaves: &[&Value],
        read: impl Fn(&Value) -> Option<T>,
        element: impl Fn(usize, &Value) -> WireError,
    ) -> Result<Vec<T>, WireError> {
        leaves
            .iter()
            .enumerate()
            .map(|(index, value)| read(value).ok_or_else(|| element(index, value)))
            .collect()
    }
    fn signed<T: TryFrom<i64>>(value: &Value) -> Option<T> {
        value.as_i64().and_then(|number| T::try_from(number).ok())
    }
    fn unsigned<T: TryFrom<u64>>(value: &Value) -> Option<T> {
        value.as_u64().and_then(|number| T::try_from(number).ok())
    }
    // JSON has no f32: a number outside f32's range is refused, not turned into infinity.
    fn float32(value: &Value) -> Option<f32> {
        let wide = value.as_f64()?;
        let narrow = wide as f32;
        (narrow.is_finite() || !wide.is_finite()).then_some(narrow)
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(each(&leaves, Value::as_bool, element)?),
        DataType::Uint8 => TensorData::Uint8(each(&leaves, unsigned, element)?),
        DataType::Uint16 => TensorData::Uint16(each(&leaves, unsigned, element)?),
        DataType::Uint32 => TensorData::Uint32(each(&leaves, unsigned, element)?),
        DataType::Uint64 => TensorData::Uint64(each(&leaves, Value::as_u64, element)?),
        DataType::Int8 => TensorData::Int8(each(&leaves, signed, element)?),
        DataType::Int16 => TensorData::Int16(each(&leaves, signed, element)?),
        DataType::Int32 => TensorData::Int32(each(&leaves, signed, element)?),
        DataType::Int64 => TensorData::Int64(each(&leaves, Value::as_i64, element)?),
        DataType::Fp16 => TensorData::Fp16(each(
            &leaves,
            |value| float32(value).map(f32_to_f16),
            element,
        )?),
        DataType::Bf16 => TensorData::Bf16(each(
            &leaves,
            |value| float32(value).map(f32_to_bf16),
            element,
        )?),
        DataType::Fp32 => TensorData::Fp32(each(&leaves, float32, element)?),
        DataType::Fp64 => TensorData::Fp64(each(&leaves, Value::as_f64, element)?),
        DataType::Bytes => TensorData::Bytes(each(
            &leaves,
            |value| value.as_str().map(|text| text.as_bytes().to_vec()),
            element,
        )?),
    })
}

fn flatten<'a>(value: &'a Value, leaves: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, leaves)),
        leaf => leaves.push(leaf),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw bytes

/// Little-endian element encoding.
trait LittleEndian: Sized + Copy {
    const SIZE: usize;
    fn read(bytes: &[u8]) -> Self;
    fn write(self, out: &mut Vec<u8>);
}

macro_rules! little_endian {
    ($($kind:ty),*) => {$(
        impl LittleEndian for $kind {
            const SIZE: usize = size_of::<$kind>();
            fn read(bytes: &[u8]) -> Self {
                let mut buffer = [0_u8; size_of::<$kind>()];
                buffer.copy_from_slice(bytes);
                <$kind>::from_le_bytes(buffer)
            }
            fn write(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
little_endian!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

fn read_all<T: LittleEndian>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(T::SIZE).map(T::read).collect()
}

fn write_all<T: LittleEndian>(values: &[T], out: &mut Vec<u8>) {
    out.reserve(values.len() * T::SIZE);
    values.iter().for_each(|value| value.write(out));
}

/// A tensor's raw contents.
pub fn data_from_raw(
    name: &str,
    datatype: DataType,
    bytes: &[u8],
) -> Result<TensorData, WireError> {
    if let Some(size) = datatype.element_size()
        && !bytes.len().is_multiple_of(size)
    {
        return Err(WireError(format!(
            "tensor `{name}`: {} bytes of raw {datatype} data is not a whole number of \
             {size}-byte elements",
            bytes.len()
        )));
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(bytes.iter().map(|&byte| byte != 0).collect()),
        DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
        DataType::Uint16 => TensorData::Uint16(read_all(bytes)),
        DataType::Uint32 => TensorData::Uint32(read_all(bytes)),
        DataType::Uint64 => TensorData::Uint64(read_all(bytes)),
        DataType::Int8 => TensorData::Int8(read_all(bytes)),
        DataType::Int16 => TensorData::Int16(read_all(bytes)),
        DataType::Int32 => TensorData::Int32(read_all(bytes)),
        DataType::Int64 => TensorData::Int64(read_all(bytes)),
        DataType::Fp16 => TensorData::Fp16(read_all(bytes)),
        DataType::Bf16 => TensorData::Bf16(read_all(bytes)),
        DataType::Fp32 => TensorData::Fp32(read_all(bytes)),
        DataType::Fp64 => TensorData::Fp64(read_all(bytes)),
        DataType::Bytes => TensorData::Bytes(length_prefixed(name, bytes)?),
    })
}

fn length_prefixed(name: &str, mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, WireError> {
    let mut elements = Vec::new();
    while !bytes.is_empty() {
        let truncated = || {
            WireError(format!(
                "tensor `{name}`: raw BYTES element {} is truncated (each element is a 4-byte \
                 little-endian length, then that many bytes)",
                elements.len()
            ))
        };
        let (length, rest) = bytes.split_first_chunk::<4>().ok_or_else(truncated)?;
        let length = u32::from_le_bytes(*length) as usize;
        let (element, rest) = rest.split_at_checked(length).ok_or_else(truncated)?;
        elements.push(element.to_vec());
        bytes = rest;
    }
    Ok(elements)
}

/// A tensor's elements as raw bytes (appended to `out`).
pub fn write_raw(data: &TensorData, out: &mut Vec<u8>) {
    match data {
        TensorData::Bool(values) => out.extend(values.iter().map(|&value| u8::from(value))),
        TensorData::Uint8(values) => out.extend_from_slice(values),
        TensorData::Uint16(values) | TensorData::Fp16(values) | TensorData::Bf16(values) => {
            write_all(values, out);
        }
        TensorData::Uint32(values) => write_all(values, out),
        TensorData::Uint64(values) => write_all(values, out),
        TensorData::Int8(values) => write_all(values, out),
        TensorData::Int16(values) => write_all(values, out),
        TensorData::Int32(values) => write_all(values, out),
        TensorData::Int64(values) => write_all(values, out),
        TensorData::Fp32(values) => write_all(values, out),
        TensorData::Fp64(values) => write_all(values, out),
        TensorData::Bytes(values) => {
            for value in values {
                let length = u32::try_from(value.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&length.to_le_bytes());
                out.extend_from_slice(value);
            }
        }
    }
}

/// A tensor's elements as raw bytes.
pub fn to_raw(data: &TensorData) -> Vec<u8> {
    let mut out = Vec::new();
    write_raw(data, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Typed gRPC contents

/// The typed `contents` of a gRPC input tensor.
pub fn data_from_contents(
    name: &str,
    datatype: DataType,
    contents: InferTensorContents,
) -> Result<TensorData, WireError> {
    let narrow = |what: &str| {
        WireError(format!(
            "tensor `{name}`: a value of {what} does not fit its datatype {datatype}"
        ))
    };
    fn narrowed<T: TryFrom<W>, W: Copy>(
        values: Vec<W>,
        error: impl Fn() -> WireError,
    ) -> Result<Vec<T>, WireError> {
        values
            .into_iter()
            .map(|value| T::try_from(value).map_err(|_| error()))
            .collect()
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(contents.bool_contents),
        DataType::Int8 => {
            TensorData::Int8(narrowed(contents.int_contents, || narrow("int_contents"))?)
        }
        DataType::Int16 => {
            TensorData::Int16(narrowed(contents.int_contents, || narrow("int_contents"))?)
        }
        DataType::Int32 => TensorData::Int32(contents.int_contents),
        DataType::Int64 => TensorData::Int64(contents.int64_contents),
        DataType::Uint8 => TensorData::Uint8(narrowed(contents.uint_contents, || {
            narrow("uint_contents")
        })?),
        DataType::Uint16 => TensorData::Uint16(narrowed(contents.uint_contents, || {
            narrow("uint_contents")
        })?),
        DataType::Uint32 => TensorData::Uint32(contents.uint_contents),
        DataType::Uint64 => TensorData::Uint64(contents.uint64_contents),
        DataType::Fp32 => TensorData::Fp32(contents.fp32_contents),
        DataType::Fp64 => TensorData::Fp64(contents.fp64_contents),
        DataType::Bytes => TensorData::Bytes(
            contents
                .bytes_contents
                .into_iter()
                .map(|bytes| bytes.to_vec())
                .collect(),
        ),
        DataType::Fp16 | DataType::Bf16 => {
            return Err(WireError(format!(
                "tensor `{name}`: {datatype} has no typed contents; send it in raw_input_contents"
            )));
        }
    })
}

/// The typed `contents` for a tensor; `None` for FP16/BF16, which only travel raw.
pub fn data_to_contents(data: TensorData) -> Option<InferTensorContents> {
    let mut contents = InferTensorContents::default();
    match data {
        TensorData::Bool(values) => contents.bool_contents = values,
        TensorData::Int8(values) => {
            contents.int_contents = values.into_iter().map(i32::from).collect()
        }
        TensorData::Int16(values) => {
            contents.int_contents = values.into_iter().map(i32::from).collect()
        }
        TensorData::Int32(values) => contents.int_contents = values,
        TensorData::Int64(values) => contents.int64_contents = values,
        TensorData::Uint8(values) => {
            contents.uint_contents = values.into_iter().map(u32::from).collect()
        }
        TensorData::Uint16(values) => {
            contents.uint_contents = values.into_iter().map(u32::from).collect()
        }
        TensorData::Uint32(values) => contents.uint_contents = values,
        TensorData::Uint64(values) => contents.uint64_contents = values,
        TensorData::Fp32(values) => contents.fp32_contents = values,
        TensorData::Fp64(values) => contents.fp64_contents = values,
        TensorData::Bytes(values) => {
            contents.bytes_contents = values.into_iter().map(Into::into).collect();
        }
        TensorData::Fp16(_) | TensorData::Bf16(_) => return None,
    }
    Some(contents)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_data_may_be_nested_or_flat_and_is_range_checked() {
        let nested = data_from_json("x", DataType::Fp32, &json!([[1, 2.5], [3, 4]])).unwrap();
        let flat = data_from_json("x", DataType::Fp32, &json!([1, 2.5, 3, 4])).unwrap();
        assert_eq!(nested, flat);
        assert_eq!(nested, TensorData::Fp32(vec![1.0, 2.5, 3.0, 4.0]));
        let err = data_from_json("x", DataType::Uint8, &json!([1, 256])).unwrap_err();
        assert_eq!(
            err.0,
            "tensor `x`: element 1 (256) is not a valid UINT8 value"
        );
        assert!(data_from_json("x", DataType::Int64, &json!([1.5])).is_err());
        assert!(data_from_json("x", DataType::Fp32, &json!([1e300])).is_err());
        assert_eq!(
            data_from_json("s", DataType::Bytes, &json!(["a", "bc"])).unwrap(),
            TensorData::Bytes(vec![b"a".to_vec(), b"bc".to_vec()])
        );
        assert_eq!(
            data_from_json("b", DataType::Bool, &json!([true, false])).unwrap(),
            TensorData::Bool(vec![true, false])
        );
    }

    #[test]
    fn every_datatype_round_trips_through_raw_bytes() {
        let samples = [
            TensorData::Bool(vec![true, false]),
            TensorData::Uint8(vec![0, 255]),
            TensorData::Uint16(vec![1, 65535]),
            TensorData::Uint32(vec![7, u32::MAX]),
            TensorData::Uint64(vec![u64::MAX]),
            TensorData::Int8(vec![-128, 127]),
            TensorData::Int16(vec![-2]),
            TensorData::Int32(vec![i32::MIN]),
            TensorData::Int64(vec![-1, i64::MAX]),
            TensorData::Fp16(vec![0x3c00]),
            TensorData::Bf16(vec![0x3f80]),
            TensorData::Fp32(vec![0.5, -1.25]),
            TensorData::Fp64(vec![1e-300]),
            TensorData::Bytes(vec![b"".to_vec(), b"hello".to_vec()]),
        ];
        for data in samples {
            let raw = to_raw(&data);
            assert_eq!(data_from_raw("t", data.datatype(), &raw).unwrap(), data);
        }
        assert_eq!(to_raw(&TensorData::Fp32(vec![1.0])), 1.0_f32.to_le_bytes());
        assert_eq!(
            to_raw(&TensorData::Bytes(vec![b"ab".to_vec()])),
            [2, 0, 0, 0, b'a', b'b']
        );
    }

    #[test]
    fn malformed_raw_bytes_are_refused_with_the_reason() {
        let err = data_from_raw("x", DataType::Fp32, &[0; 7]).unwrap_err();
        assert!(
            err.0.contains("not a whole number of 4-byte elements"),
            "{err}"
        );
        let err = data_from_raw("s", DataType::Bytes, &[5, 0, 0, 0, b'a']).unwrap_err();
        assert!(err.0.contains("truncated"), "{err}");
    }

    #[test]
    fn typed_contents_round_trip_and_narrow_with_checks() {
        let data = TensorData::Int16(vec![-3, 300]);
        let contents = data_to_contents(data.clone()).unwrap();
        assert_eq!(contents.int_contents, vec![-3, 300]);
        assert_eq!(
            data_from_contents("t", DataType::Int16, contents).unwrap(),
            data
        );
        let too_big = InferTensorContents {
            uint_contents: vec![256],
            ..InferTensorContents::default()
        };
        assert!(data_from_contents("t", DataType::Uint8, too_big).is_err());
        assert!(data_to_contents(TensorData::Fp16(vec![0])).is_none());
    }

    #[test]
    fn shapes_must_match_the_element_count() {
        let err = tensor("x", vec![2, 2], TensorData::Int32(vec![1, 2, 3])).unwrap_err();
        assert_eq!(
            err.0,
            "tensor `x` has shape [2, 2], which holds 4 elements, but 3 were sent"
        );
        assert!(shape(&[-1, 4], "x").is_err());
    }
}
