//! Named tensors: what a model takes and gives when a client speaks tensors (the Open
//! Inference Protocol) rather than the engine's JSON `data`.
//!
//! The element types are the protocol's (`BOOL`, `UINT8` … `FP64`, `BYTES`); how tensors travel
//! on a wire (JSON, raw little-endian bytes, typed protobuf contents) belongs to the protocol
//! adapter, not here. `FP16` and `BF16` keep their 16-bit patterns: no model in this crate does
//! arithmetic on them, and the adapters convert at the edge.

use std::fmt::{self, Write as _};
use std::ops::Range;

use serde_json::{Number, Value, json};

/// An element type, by its Open Inference Protocol name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bf16,
    Bytes,
}

impl DataType {
    pub const ALL: [Self; 14] = [
        Self::Bool,
        Self::Uint8,
        Self::Uint16,
        Self::Uint32,
        Self::Uint64,
        Self::Int8,
        Self::Int16,
        Self::Int32,
        Self::Int64,
        Self::Fp16,
        Self::Fp32,
        Self::Fp64,
        Self::Bf16,
        Self::Bytes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp16 => "FP16",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bf16 => "BF16",
            Self::Bytes => "BYTES",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|datatype| datatype.as_str() == name)
    }

    /// Bytes per element in the raw little-endian layout; `None` for `BYTES` (length-prefixed).
    pub fn element_size(self) -> Option<usize> {
        match self {
            Self::Bool | Self::Uint8 | Self::Int8 => Some(1),
            Self::Uint16 | Self::Int16 | Self::Fp16 | Self::Bf16 => Some(2),
            Self::Uint32 | Self::Int32 | Self::Fp32 => Some(4),
            Self::Uint64 | Self::Int64 | Self::Fp64 => Some(8),
            Self::Bytes => None,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tensor's elements, flattened in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    /// IEEE half-precision bit patterns.
    Fp16(Vec<u16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    /// bfloat16 bit patterns.
    Bf16(Vec<u16>),
    Bytes(Vec<Vec<u8>>),
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            Self::Bool(_) => DataType::Bool,
            Self::Uint8(_) => DataType::Uint8,
            Self::Uint16(_) => DataType::Uint16,
            Self::Uint32(_) => DataType::Uint32,
            Self::Uint64(_) => DataType::Uint64,
            Self::Int8(_) => DataType::Int8,
            Self::Int16(_) => DataType::Int16,
            Self::Int32(_) => DataType::Int32,
            Self::Int64(_) => DataType::Int64,
            Self::Fp16(_) => DataType::Fp16,
            Self::Fp32(_) => DataType::Fp32,
            Self::Fp64(_) => DataType::Fp64,
            Self::Bf16(_) => DataType::Bf16,
            Self::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Bool(values) => values.len(),
            Self::Uint8(values) => values.len(),
            Self::Uint16(values) | Self::Fp16(values) | Self::Bf16(values) => values.len(),
            Self::Uint32(values) => values.len(),
            Self::Uint64(values) => values.len(),
            Self::Int8(values) => values.len(),
            Self::Int16(values) => values.len(),
            Self::Int32(values) => values.len(),
            Self::Int64(values) => values.len(),
            Self::Fp32(values) => values.len(),
            Self::Fp64(values) => values.len(),
            Self::Bytes(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// A tensor whose shape does not account for its elements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tensor `{name}` has shape {shape:?} ({expected} elements) but {actual} elements")]
pub struct ShapeMismatch {
    pub name: String,
    pub shape: Vec<usize>,
    pub expected: usize,
    pub actual: usize,
}

impl Tensor {
    /// A tensor whose element count matches its shape.
    pub fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        data: TensorData,
    ) -> Result<Self, ShapeMismatch> {
        let name = name.into();
        let expected = element_count(&shape);
        if expected != Some(data.len()) {
            return Err(ShapeMismatch {
                name,
                expected: expected.unwrap_or(usize::MAX),
                actual: data.len(),
                shape,
            });
        }
        Ok(Self { name, shape, data })
    }

    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }
}

/// Rebuilds the same variant from `$body`, a new element vector made from `$values`.
macro_rules! each_variant {
    (map $data:expr, $values:ident => $body:expr) => {
        match $data {
            TensorData::Bool($values) => TensorData::Bool($body),
            TensorData::Uint8($values) => TensorData::Uint8($body),
            TensorData::Uint16($values) => TensorData::Uint16($body),
            TensorData::Uint32($values) => TensorData::Uint32($body),
            TensorData::Uint64($values) => TensorData::Uint64($body),
            TensorData::Int8($values) => TensorData::Int8($body),
            TensorData::Int16($values) => TensorData::Int16($body),
            TensorData::Int32($values) => TensorData::Int32($body),
            TensorData::Int64($values) => TensorData::Int64($body),
            TensorData::Fp16($values) => TensorData::Fp16($body),
            TensorData::Fp32($values) => TensorData::Fp32($body),
            TensorData::Fp64($values) => TensorData::Fp64($body),
            TensorData::Bf16($values) => TensorData::Bf16($body),
            TensorData::Bytes($values) => TensorData::Bytes($body),
        }
    };
}

impl TensorData {
    /// The elements as flat JSON values: numbers (FP16/BF16 widened; non-finite floats become
    /// `null`), booleans, and `BYTES` elements as strings (invalid UTF-8 replaced).
    pub fn to_json_values(&self) -> Vec<Value> {
        self.range_to_json_values(0..self.len())
    }

    /// [`Self::to_json_values`] of the elements in `range` only (one example's row of a
    /// batch). Panics if `range` is out of bounds, like slicing.
    pub fn range_to_json_values(&self, range: Range<usize>) -> Vec<Value> {
        fn numbers<T: Copy + Into<Value>>(values: &[T]) -> Vec<Value> {
            values.iter().map(|&value| value.into()).collect()
        }
        match self {
            Self::Bool(values) => numbers(&values[range]),
            Self::Uint8(values) => numbers(&values[range]),
            Self::Uint16(values) => numbers(&values[range]),
            Self::Uint32(values) => numbers(&values[range]),
            Self::Uint64(values) => numbers(&values[range]),
            Self::Int8(values) => numbers(&values[range]),
            Self::Int16(values) => numbers(&values[range]),
            Self::Int32(values) => numbers(&values[range]),
            Self::Int64(values) => numbers(&values[range]),
            Self::Fp16(values) => values[range]
                .iter()
                .map(|&bits| f32_json(f16_to_f32(bits)))
                .collect(),
            Self::Bf16(values) => values[range]
                .iter()
                .map(|&bits| f32_json(bf16_to_f32(bits)))
                .collect(),
            Self::Fp32(values) => values[range].iter().map(|&value| f32_json(value)).collect(),
            Self::Fp64(values) => values[range]
                .iter()
                .map(|&value| Number::from_f64(value).map_or(Value::Null, Value::Number))
                .collect(),
            Self::Bytes(values) => values[range]
                .iter()
                .map(|bytes| Value::String(String::from_utf8_lossy(bytes).into_owned()))
                .collect(),
        }
    }

    /// Element `index` as a number, for comparisons (argmax, range checks); `None` for
    /// `BOOL` and `BYTES`, or past the end.
    #[allow(clippy::cast_precision_loss)]
    pub fn number_at(&self, index: usize) -> Option<f64> {
        Some(match self {
            Self::Uint8(values) => f64::from(*values.get(index)?),
            Self::Uint16(values) => f64::from(*values.get(index)?),
            Self::Uint32(values) => f64::from(*values.get(index)?),
            Self::Uint64(values) => *values.get(index)? as f64,
            Self::Int8(values) => f64::from(*values.get(index)?),
            Self::Int16(values) => f64::from(*values.get(index)?),
            Self::Int32(values) => f64::from(*values.get(index)?),
            Self::Int64(values) => *values.get(index)? as f64,
            Self::Fp16(values) => f64::from(f16_to_f32(*values.get(index)?)),
            Self::Bf16(values) => f64::from(bf16_to_f32(*values.get(index)?)),
            Self::Fp32(values) => f64::from(*values.get(index)?),
            Self::Fp64(values) => *values.get(index)?,
            Self::Bool(_) | Self::Bytes(_) => return None,
        })
    }

    /// A copy of the elements in `range` (one request's rows of a batch). Panics if `range` is
    /// out of bounds, like slicing.
    pub fn slice(&self, range: Range<usize>) -> Self {
        each_variant!(map self, values => values[range].to_vec())
    }

    /// The elements of `parts` one after the other (requests stacked into one batch). `None`
    /// when the parts are not all of one datatype, or there are none.
    pub fn concat(parts: &[&Self]) -> Option<Self> {
        let (first, rest) = parts.split_first()?;
        let total = parts.iter().map(|part| part.len()).sum();
        let datatype = first.datatype();
        if rest.iter().any(|part| part.datatype() != datatype) {
            return None;
        }
        macro_rules! gather {
            ($variant:ident) => {{
                let mut all = Vec::with_capacity(total);
                for part in parts {
                    if let Self::$variant(values) = part {
                        all.extend_from_slice(values);
                    }
                }
                Self::$variant(all)
            }};
        }
        Some(match first {
            Self::Bool(_) => gather!(Bool),
            Self::Uint8(_) => gather!(Uint8),
            Self::Uint16(_) => gather!(Uint16),
            Self::Uint32(_) => gather!(Uint32),
            Self::Uint64(_) => gather!(Uint64),
            Self::Int8(_) => gather!(Int8),
            Self::Int16(_) => gather!(Int16),
            Self::Int32(_) => gather!(Int32),
            Self::Int64(_) => gather!(Int64),
            Self::Fp16(_) => gather!(Fp16),
            Self::Fp32(_) => gather!(Fp32),
            Self::Fp64(_) => gather!(Fp64),
            Self::Bf16(_) => gather!(Bf16),
            Self::Bytes(_) => gather!(Bytes),
        })
    }
}

impl Tensor {
    /// `{"name", "datatype", "shape", "data"}` with flat data: the protocol's JSON tensor, and
    /// what job records keep of tensor answers.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "datatype": self.datatype().as_str(),
            "shape": self.shape,
            "data": self.data.to_json_values(),
        })
    }
}

/// IEEE 754 half precision → f32 (exact).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match (exponent, mantissa) {
        (0, 0) => 0,
        // Subnormal: value = mantissa × 2^-24, exactly representable in f32.
        (0, _) => return sign_of(bits) * (mantissa as f32) * 2f32.powi(-24),
        (0x1f, 0) => 0xff << 23,
        (0x1f, _) => (0xff << 23) | (mantissa << 13),
        _ => ((exponent + 127 - 15) << 23) | (mantissa << 13),
    };
    f32::from_bits(sign | magnitude)
}

fn sign_of(bits: u16) -> f32 {
    if bits >> 15 == 1 { -1.0 } else { 1.0 }
}

/// f32 → IEEE 754 half precision, rounding to nearest even; out-of-range values become ±inf.
pub fn f32_to_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    if exponent == 0xff {
        let nan = if mantissa == 0 { 0 } else { 0x200 };
        return sign | 0x7c00 | nan;
    }
    let half_exponent = exponent - 127 + 15;
    if half_exponent >= 0x1f {
        return sign | 0x7c00;
    }
    if half_exponent <= 0 {
        if half_exponent < -10 {
            return sign;
        }
        let full = mantissa | 0x80_0000;
        let shift = (14 - half_exponent) as u32;
        let half = full >> shift;
        let rest = full & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let round = u32::from(rest > halfway || (rest == halfway && half & 1 == 1));
        return sign | (half + round) as u16;
    }
    let half = ((half_exponent as u32) << 10) | (mantissa >> 13);
    let rest = mantissa & 0x1fff;
    let round = u32::from(rest > 0x1000 || (rest == 0x1000 && half & 1 == 1));
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    sign | (half + round) as u16
}

/// bfloat16 → f32 (exact: bfloat16 is the top half of an f32).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// f32 → bfloat16, rounding to nearest even.
pub fn f32_to_bf16(value: f32) -> u16 {
    let bits = value.to_bits();
    if value.is_nan() {
        return ((bits >> 16) as u16) | 0x40;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// An FP32 value as the JSON number a person expects: `0.1`, not `0.10000000149011612`.
/// f32's `Display` prints the shortest text that reads back as the same f32; that text read
/// as an f64 serialises the same way. Non-finite values have no JSON form and become `null`.
pub fn f32_json(value: f32) -> Value {
    if !value.is_finite() {
        return Value::Null;
    }
    let mut text = ShortText::default();
    let shortest = write!(text, "{value}")
        .ok()
        .and_then(|()| text.as_str().parse::<f64>().ok());
    let wide = shortest.unwrap_or_else(|| f64::from(value));
    Number::from_f64(wide).map_or(Value::Null, Value::Number)
}

/// A stack buffer for formatting one number without allocating.
struct ShortText {
    bytes: [u8; 64],
    len: usize,
}

impl Default for ShortText {
    fn default() -> Self {
        Self {
            bytes: [0; 64],
            len: 0,
        }
    }
}

impl ShortText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for ShortText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Flat row-major values as nested arrays of `dims` (a bare value when `dims` is empty; `null`
/// for positions past the values' end).
pub fn nest_json(values: Vec<Value>, dims: &[usize]) -> Value {
    fn build(values: &mut std::vec::IntoIter<Value>, dims: &[usize]) -> Value {
        match dims.split_first() {
            None => values.next().unwrap_or(Value::Null),
            Some((&len, inner)) => Value::Array((0..len).map(|_| build(values, inner)).collect()),
        }
    }
    build(&mut values.into_iter(), dims)
}

/// The number of elements of a shape, `None` when it overflows.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1_usize, |count, &dim| count.checked_mul(dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datatype_round_trips_through_its_name() {
        for datatype in DataType::ALL {
            assert_eq!(DataType::parse(datatype.as_str()), Some(datatype));
        }
        assert_eq!(DataType::parse("fp32"), None);
        assert_eq!(DataType::parse("STRING"), None);
    }

    #[test]
    fn a_tensor_must_hold_as_many_elements_as_its_shape_says() {
        assert!(Tensor::new("x", vec![2, 3], TensorData::Fp32(vec![0.0; 6])).is_ok());
        let err = Tensor::new("x", vec![2, 3], TensorData::Fp32(vec![0.0; 5])).unwrap_err();
        assert_eq!(err.expected, 6);
        assert_eq!(err.actual, 5);
        assert!(Tensor::new("x", vec![usize::MAX, 2], TensorData::Int8(Vec::new())).is_err());
        assert!(Tensor::new("scalar", vec![], TensorData::Int64(vec![7])).is_ok());
    }

    #[test]
    fn half_precision_conversions_round_trip_and_round_to_nearest() {
        for value in [
            0.0_f32,
            -0.0,
            1.0,
            -2.5,
            0.333_251_95,
            65504.0,
            6.103_515_6e-5,
            5.960_464_5e-8,
        ] {
            assert_eq!(f16_to_f32(f32_to_f16(value)), value, "{value}");
        }
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(70000.0), 0x7c00);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        for value in [0.0_f32, 1.0, -3.5, 2f32.powi(100)] {
            assert_eq!(bf16_to_f32(f32_to_bf16(value)), value);
        }
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
    }

    #[test]
    fn flat_values_nest_by_their_shape() {
        let values = (1..=6).map(Value::from).collect::<Vec<_>>();
        assert_eq!(
            nest_json(values.clone(), &[2, 3]),
            json!([[1, 2, 3], [4, 5, 6]])
        );
        assert_eq!(nest_json(values, &[]), json!(1));
    }

    #[test]
    fn rows_slice_and_batches_concatenate_without_mixing_datatypes() {
        let data = TensorData::Int64(vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(data.slice(2..4), TensorData::Int64(vec![3, 4]));
        assert_eq!(data.range_to_json_values(4..6), vec![json!(5), json!(6)]);
        assert_eq!(data.number_at(5), Some(6.0));
        assert_eq!(data.number_at(6), None);
        let words = TensorData::Bytes(vec![b"a".to_vec()]);
        assert_eq!(words.number_at(0), None);
        let joined = TensorData::concat(&[&data.slice(0..1), &TensorData::Int64(vec![9])]);
        assert_eq!(joined, Some(TensorData::Int64(vec![1, 9])));
        assert_eq!(TensorData::concat(&[&data, &words]), None);
        assert_eq!(TensorData::concat(&[]), None);
    }

    #[test]
    fn tensors_render_as_protocol_json() {
        let tensor = Tensor::new("p", vec![1, 2], TensorData::Fp32(vec![0.1, f32::NAN])).unwrap();
        assert_eq!(
            tensor.to_json(),
            json!({"name": "p", "datatype": "FP32", "shape": [1, 2], "data": [0.1, null]})
        );
        let words = TensorData::Bytes(vec![b"hi".to_vec()]);
        assert_eq!(words.to_json_values(), vec![json!("hi")]);
    }
}
