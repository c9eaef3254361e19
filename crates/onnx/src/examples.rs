//! Request `data` → one tensor per graph input (docs/model-repository.md, "Request `data`").
//!
//! This is on the hot path of every ONNX request, so it walks the JSON once, never clones a
//! `Value`, and writes each value straight into the tensor it ends up in: one allocation per
//! graph input, sized up front from the example shape and the number of examples. A dynamic
//! dimension (`-1` in the manifest) takes its size from the request's first example; every
//! other example must have the same shape (a tensor is rectangular).

use std::fmt::{self, Write as _};

use inference_engine_core::pipeline::PipelineError;
use inference_engine_core::tensor::{Tensor, TensorData, element_count, f32_to_bf16, f32_to_f16};
use serde_json::{Map, Number, Value};

use crate::manifest::{TensorManifest, TensorType};

/// One graph input as requests must fill it.
#[derive(Debug, Clone)]
pub(crate) struct InputLayout {
    pub(crate) name: String,
    pub(crate) datatype: TensorType,
    /// One example's shape (`shape[1..]` of the manifest); `None` for a dynamic dimension.
    pub(crate) dims: Vec<Option<usize>>,
}

impl InputLayout {
    /// `None` for a manifest entry that is not a tensor (validation keeps maps out of inputs).
    pub(crate) fn new(tensor: &TensorManifest) -> Option<Self> {
        Some(Self {
            name: tensor.name.clone(),
            datatype: tensor.datatype.tensor()?,
            dims: tensor.example_dims(),
        })
    }

    /// The shape as the manifest writes it: `[-1, ...]`, `-1` for every dynamic dimension.
    pub(crate) fn manifest_shape(&self) -> Vec<i64> {
        std::iter::once(-1)
            .chain(
                self.dims
                    .iter()
                    .map(|dim| dim.map_or(-1, |size| i64::try_from(size).unwrap_or(i64::MAX))),
            )
            .collect()
    }

    /// Whether a tensor's shape (rows first) fits this input.
    pub(crate) fn accepts_shape(&self, shape: &[usize]) -> bool {
        shape.len() == self.dims.len() + 1
            && shape[1..]
                .iter()
                .zip(&self.dims)
                .all(|(&size, dim)| dim.is_none_or(|dim| dim == size))
    }
}

/// The examples of one request, ready to run: one tensor per graph input, each with the
/// examples stacked along the first (batch) dimension.
#[derive(Debug)]
pub struct Examples {
    /// In the manifest's input order; each has `rows` as its first dimension.
    pub(crate) tensors: Vec<Tensor>,
    pub(crate) rows: usize,
    /// The request sent one example (not a list), so it gets one result (not a list).
    pub(crate) single: bool,
}

impl Examples {
    /// How many examples the request holds.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether the request sent one bare example rather than a list of examples.
    pub fn is_single(&self) -> bool {
        self.single
    }

    /// The non-batch dimensions of every input: requests with equal signatures can be
    /// stacked into one run.
    pub(crate) fn signature(&self) -> Vec<&[usize]> {
        self.tensors
            .iter()
            .map(|tensor| tensor.shape.get(1..).unwrap_or(&[]))
            .collect()
    }
}

/// Parses a request's `data` for a graph with these inputs.
pub(crate) fn read_examples(
    data: Value,
    layouts: &[InputLayout],
) -> Result<Examples, PipelineError> {
    match layouts {
        [layout] => {
            let (tensor, shape) = read_input(&data, layout).map_err(PipelineError::InvalidInput)?;
            Ok(Examples {
                tensors: vec![tensor],
                rows: shape.rows,
                single: shape.single,
            })
        }
        _ => read_several(data, layouts),
    }
}

fn read_several(data: Value, layouts: &[InputLayout]) -> Result<Examples, PipelineError> {
    let invalid = PipelineError::InvalidInput;
    let Value::Object(mut fields) = data else {
        return Err(invalid(format!(
            "this model has {} inputs ({}); send an object keyed by input name, found {}",
            layouts.len(),
            input_names(layouts),
            kind(&data)
        )));
    };
    let mut tensors = Vec::with_capacity(layouts.len());
    let mut first: Option<(&str, RequestShape)> = None;
    for layout in layouts {
        let Some(value) = fields.remove(&layout.name) else {
            return Err(invalid(format!(
                "missing input `{}`; the model's inputs are {}",
                layout.name,
                input_names(layouts)
            )));
        };
        let (tensor, shape) = read_input(&value, layout)
            .map_err(|message| invalid(format!("input `{}`: {message}", layout.name)))?;
        if let Some((first_name, first_shape)) = first {
            check_agreement(first_name, first_shape, &layout.name, shape).map_err(invalid)?;
        } else {
            first = Some((&layout.name, shape));
        }
        tensors.push(tensor);
    }
    reject_unknown_inputs(&fields, layouts).map_err(invalid)?;
    let shape = first.map(|(_, shape)| shape).unwrap_or(RequestShape {
        rows: 0,
        single: false,
    });
    Ok(Examples {
        tensors,
        rows: shape.rows,
        single: shape.single,
    })
}

fn check_agreement(
    first_name: &str,
    first: RequestShape,
    name: &str,
    shape: RequestShape,
) -> Result<(), String> {
    let describe = |single: bool| {
        if single {
            "a single example"
        } else {
            "a list of examples"
        }
    };
    if first.single != shape.single {
        return Err(format!(
            "inputs must agree on single example vs. list: `{first_name}` is {} but `{name}` is {}",
            describe(first.single),
            describe(shape.single)
        ));
    }
    if first.rows != shape.rows {
        return Err(format!(
            "inputs must have the same number of examples: `{first_name}` has {} but `{name}` \
             has {}",
            first.rows, shape.rows
        ));
    }
    Ok(())
}

fn reject_unknown_inputs(
    fields: &Map<String, Value>,
    layouts: &[InputLayout],
) -> Result<(), String> {
    match fields.keys().next() {
        Some(unknown) => Err(format!(
            "unknown input `{unknown}`; the model's inputs are {}",
            input_names(layouts)
        )),
        None => Ok(()),
    }
}

fn input_names(layouts: &[InputLayout]) -> String {
    layouts
        .iter()
        .map(|layout| format!("`{}`", layout.name))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, Copy)]
struct RequestShape {
    rows: usize,
    single: bool,
}

fn read_input(value: &Value, layout: &InputLayout) -> Result<(Tensor, RequestShape), String> {
    let (data, shape, request) = match layout.datatype {
        TensorType::Fp32 => read_typed::<f32>(value, &layout.dims)?,
        TensorType::Fp64 => read_typed::<f64>(value, &layout.dims)?,
        TensorType::Fp16 => read_typed::<Half>(value, &layout.dims)?,
        TensorType::Bf16 => read_typed::<BrainHalf>(value, &layout.dims)?,
        TensorType::Int64 => read_typed::<i64>(value, &layout.dims)?,
        TensorType::Int32 => read_typed::<i32>(value, &layout.dims)?,
        TensorType::Int16 => read_typed::<i16>(value, &layout.dims)?,
        TensorType::Int8 => read_typed::<i8>(value, &layout.dims)?,
        TensorType::Uint64 => read_typed::<u64>(value, &layout.dims)?,
        TensorType::Uint32 => read_typed::<u32>(value, &layout.dims)?,
        TensorType::Uint16 => read_typed::<u16>(value, &layout.dims)?,
        TensorType::Uint8 => read_typed::<u8>(value, &layout.dims)?,
        TensorType::Bool => read_typed::<bool>(value, &layout.dims)?,
        TensorType::Bytes => read_typed::<Vec<u8>>(value, &layout.dims)?,
    };
    let tensor = Tensor::new(layout.name.clone(), shape, data).map_err(|err| err.to_string())?;
    Ok((tensor, request))
}

fn read_typed<T: Element>(
    value: &Value,
    declared: &[Option<usize>],
) -> Result<(TensorData, Vec<usize>, RequestShape), String> {
    if matches!(value, Value::Array(items) if items.is_empty()) {
        return Err("data is an empty list; send one example or a list of examples".to_owned());
    }
    let depth = nesting_depth(value);
    let rank = declared.len();
    let (request, first_example) = if depth == rank {
        let request = RequestShape {
            rows: 1,
            single: true,
        };
        (request, value)
    } else if depth == rank + 1 {
        let (rows, first) = match value {
            Value::Array(items) => (items.len(), items.first().unwrap_or(value)),
            _ => (1, value),
        };
        let request = RequestShape {
            rows,
            single: false,
        };
        (request, first)
    } else {
        let found = if depth == 0 {
            kind(value).to_owned()
        } else {
            format!("lists nested {depth} deep")
        };
        return Err(format!(
            "expected one example of shape {} or a list of them, found {found}",
            shape_text(declared)
        ));
    };

    let dims = resolve_dims(first_example, declared);
    let mut tensor_shape = Vec::with_capacity(rank + 1);
    tensor_shape.push(request.rows);
    tensor_shape.extend_from_slice(&dims);
    let capacity = element_count(&tensor_shape)
        .ok_or_else(|| format!("a tensor of shape {tensor_shape:?} is too large"))?;
    let mut out = Vec::with_capacity(capacity);
    let mut walker = Walker {
        dims: &dims,
        declared,
        path: Vec::with_capacity(rank + 1),
        example: 0,
    };
    match (request.single, value) {
        (false, Value::Array(examples)) => {
            for (index, example) in examples.iter().enumerate() {
                walker.example = index;
                walker.path.push(index);
                walker.fill(example, 0, &mut out)?;
                walker.path.pop();
            }
        }
        _ => walker.fill(value, 0, &mut out)?,
    }
    Ok((T::into_data(out), tensor_shape, request))
}

/// One example's shape: the declared sizes, and for each dynamic dimension the length found
/// in `example` (following first elements; 0 where the example runs out of nesting, which
/// the fill then reports).
fn resolve_dims(example: &Value, declared: &[Option<usize>]) -> Vec<usize> {
    let mut value = Some(example);
    declared
        .iter()
        .map(|dim| {
            let items = match value {
                Some(Value::Array(items)) => Some(items),
                _ => None,
            };
            value = items.and_then(|items| items.first());
            dim.unwrap_or_else(|| items.map_or(0, Vec::len))
        })
        .collect()
}

/// `[4]`, `[-1, 128]`: a shape as the manifest writes it (`-1` for a dynamic dimension).
fn shape_text(dims: &[Option<usize>]) -> String {
    let parts = dims
        .iter()
        .map(|dim| dim.map_or_else(|| "-1".to_owned(), |size| size.to_string()))
        .collect::<Vec<_>>();
    format!("[{}]", parts.join(", "))
}

/// How deep arrays nest, following first elements: `[[1, 2]]` is 2, `3` is 0, `[]` is 1.
fn nesting_depth(mut value: &Value) -> usize {
    let mut depth = 0;
    while let Value::Array(items) = value {
        depth += 1;
        match items.first() {
            Some(first) => value = first,
            None => break,
        }
    }
    depth
}

/// Fills a tensor from nested arrays, remembering where it is for error messages.
struct Walker<'a> {
    /// One example's shape, dynamic dimensions resolved from the first example.
    dims: &'a [usize],
    /// The manifest's dimensions (`None`: dynamic), for error messages.
    declared: &'a [Option<usize>],
    /// Indices from the input's root to the current value (only formatted on error).
    path: Vec<usize>,
    example: usize,
}

impl Walker<'_> {
    fn fill<T: Element>(
        &mut self,
        value: &Value,
        level: usize,
        out: &mut Vec<T>,
    ) -> Result<(), String> {
        let Some((&expected, inner)) = self.dims[level..].split_first() else {
            out.push(self.element(value, None)?);
            return Ok(());
        };
        let Value::Array(items) = value else {
            return Err(format!(
                "expected a list, found {} at {}",
                kind(value),
                self.at(None)
            ));
        };
        if items.len() != expected {
            return Err(self.wrong_length(level, items.len(), expected));
        }
        if inner.is_empty() {
            for (index, item) in items.iter().enumerate() {
                out.push(self.element(item, Some(index))?);
            }
            return Ok(());
        }
        for (index, item) in items.iter().enumerate() {
            self.path.push(index);
            self.fill(item, level + 1, out)?;
            self.path.pop();
        }
        Ok(())
    }

    fn element<T: Element>(&self, value: &Value, last: Option<usize>) -> Result<T, String> {
        T::from_json(value).ok_or_else(|| {
            let found = match value {
                Value::Number(number) => number.to_string(),
                other => kind(other).to_owned(),
            };
            // A value of the right kind but out of range is named by the type ("an integer
            // within the INT32 range"); one of the wrong kind inside a list by the list it
            // should have been ("a list of numbers").
            let right_kind = matches!(value, Value::Number(_)) == T::NUMERIC;
            let what = if right_kind || last.is_none() {
                T::EXPECTED.to_owned()
            } else {
                format!("a list of {}", T::PLURAL)
            };
            format!("expected {what}, found {found} at {}", self.at(last))
        })
    }

    fn wrong_length(&self, level: usize, found: usize, expected: usize) -> String {
        let example = self.example;
        if self.declared[level].is_none() {
            return format!(
                "example {example} has {found} entries at {}; the first example has {expected} \
                 there (dimension {} is dynamic, but every example of a request must have the \
                 same shape)",
                self.at(None),
                level + 1
            );
        }
        if level == 0 && self.dims.len() == 1 {
            return format!("example {example} has {found} features; the model expects {expected}");
        }
        format!(
            "example {example} has {found} entries at {}; the model expects {expected} (one \
             example has shape {})",
            self.at(None),
            shape_text(self.declared)
        )
    }

    /// The current path, plus `last` if given, as `[0][2]` (or "the top level").
    fn at(&self, last: Option<usize>) -> String {
        let mut text = String::new();
        for index in self.path.iter().chain(last.as_ref()) {
            let _ = write!(text, "[{index}]");
        }
        if text.is_empty() {
            text.push_str("the top level");
        }
        text
    }
}

/// What a JSON value is, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A tensor element type requests can fill.
pub(crate) trait Element: Sized + fmt::Debug {
    /// What a value must be, for error messages ("a number within the FP32 range").
    const EXPECTED: &'static str;
    /// The same for a list of them ("numbers").
    const PLURAL: &'static str;
    /// Whether JSON numbers are this type's values (not booleans or strings).
    const NUMERIC: bool = true;

    /// The value, or `None` if it is not one or does not fit the type.
    fn from_json(value: &Value) -> Option<Self>;

    fn into_data(values: Vec<Self>) -> TensorData;
}

/// Half precision, as its bit pattern (the core tensor keeps FP16 that way).
#[derive(Debug, Clone, Copy)]
struct Half(u16);

/// bfloat16, as its bit pattern.
#[derive(Debug, Clone, Copy)]
struct BrainHalf(u16);

/// A JSON number as an `f32`, when it is finite there.
fn finite_f32(value: &Value) -> Option<f32> {
    // Narrowing is the point: 32-bit (and 16-bit) float inputs hold the nearest value.
    #[allow(clippy::cast_possible_truncation)]
    let narrow = value.as_number()?.as_f64()? as f32;
    narrow.is_finite().then_some(narrow)
}

impl Element for f32 {
    const EXPECTED: &'static str = "a number within the FP32 range";
    const PLURAL: &'static str = "numbers";

    fn from_json(value: &Value) -> Option<Self> {
        finite_f32(value)
    }

    fn into_data(values: Vec<Self>) -> TensorData {
        TensorData::Fp32(values)
    }
}

impl Element for Half {
    const EXPECTED: &'static str = "a number within the FP16 range";
    const PLURAL: &'static str = "numbers";

    fn from_json(value: &Value) -> Option<Self> {
        let bits = f32_to_f16(finite_f32(value)?);
        // 0x7c00: infinity, what a value beyond 65504 rounds to.
        (bits & 0x7fff != 0x7c00).then_some(Self(bits))
    }

    fn into_data(values: Vec<Self>) -> TensorData {
        TensorData::Fp16(values.into_iter().map(|half| half.0).collect())
    }
}

impl Element for BrainHalf {
    const EXPECTED: &'static str = "a number within the BF16 range";
    const PLURAL: &'static str = "numbers";

    fn from_json(value: &Value) -> Option<Self> {
        Some(Self(f32_to_bf16(finite_f32(value)?)))
    }

    fn into_data(values: Vec<Self>) -> TensorData {
        TensorData::Bf16(values.into_iter().map(|half| half.0).collect())
    }
}

impl Element for f64 {
    const EXPECTED: &'static str = "a number";
    const PLURAL: &'static str = "numbers";

    fn from_json(value: &Value) -> Option<Self> {
        value.as_number()?.as_f64()
    }

    fn into_data(values: Vec<Self>) -> TensorData {
        TensorData::Fp64(values)
    }
}

/// The integer types: any JSON integer (or whole float such as `3.0`) within range.
macro_rules! integer_element {
    ($($ty:ty => $variant:ident, $name:literal;)*) => {$(
        impl Element for $ty {
            const EXPECTED: &'static str = concat!("an integer within the ", $name, " range");
            const PLURAL: &'static str = "integers";

            fn from_json(value: &Value) -> Option<Self> {
                let number = value.as_number()?;
                if let Some(wide) = number.as_i64() {
                    return Self::try_from(wide).ok();
                }
                if let Some(wide) = number.as_u64() {
                    return Self::try_from(wide).ok();
                }
                Self::try_from(whole_number(number)?).ok()
            }

            fn into_data(values: Vec<Self>) -> TensorData {
                TensorData::$variant(values)
            }
        }
    )*};
}

integer_element! {
    i64 => Int64, "INT64";
    i32 => Int32, "INT32";
    i16 => Int16, "INT16";
    i8 => Int8, "INT8";
    u64 => Uint64, "UINT64";
    u32 => Uint32, "UINT32";
    u16 => Uint16, "UINT16";
    u8 => Uint8, "UINT8";
}

impl Element for bool {
    const EXPECTED: &'static str = "true, false, 0 or 1";
    const PLURAL: &'static str = "booleans";
    const NUMERIC: bool = false;

    fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::Bool(flag) => Some(*flag),
            Value::Number(number) => match number.as_u64()? {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            },
            _ => None,
        }
    }

    fn into_data(values: Vec<Self>) -> TensorData {
        TensorData::Bool(values)
    }
}

impl Element for Vec<u8> {
    const EXPECTED: &'static str = "a string";
    const PLURAL: &'static str = "strings";
    const NUMERIC: bool = false;

    fn from_json(value: &Value) -> Option<Self> {
        value.as_str().map(|text| text.as_bytes().to_vec())
    }

    fn into_data(values: Vec<Self>) -> TensorData {
        TensorData::Bytes(values)
    }
}

/// `3.0` is accepted where an integer is expected; `3.5` is not.
fn whole_number(number: &Number) -> Option<i64> {
    let value = number.as_f64()?;
    // 2^63 as f64; anything at or beyond it does not fit an i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if value.fract() == 0.0 && (-LIMIT..LIMIT).contains(&value) {
        #[allow(clippy::cast_possible_truncation)]
        Some(value as i64)
    } else {
        None
    }
}

/// Checks `[validation] min / max` on every numeric value of every example.
pub(crate) fn check_bounds(
    examples: &Examples,
    layouts: &[InputLayout],
    min: Option<f64>,
    max: Option<f64>,
) -> Result<(), PipelineError> {
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    for (tensor, layout) in examples.tensors.iter().zip(layouts) {
        bounds_of(tensor, min, max).map_err(|message| {
            if layouts.len() > 1 {
                PipelineError::InvalidInput(format!("input `{}`: {message}", layout.name))
            } else {
                PipelineError::InvalidInput(message)
            }
        })?;
    }
    Ok(())
}

fn bounds_of(tensor: &Tensor, min: Option<f64>, max: Option<f64>) -> Result<(), String> {
    let per_example = element_count(tensor.shape.get(1..).unwrap_or(&[]))
        .unwrap_or(1)
        .max(1);
    let min = min.unwrap_or(f64::NEG_INFINITY);
    let max = max.unwrap_or(f64::INFINITY);
    for index in 0..tensor.data.len() {
        // Booleans and strings have no range.
        let Some(value) = tensor.data.number_at(index) else {
            return Ok(());
        };
        if value >= min && value <= max {
            continue;
        }
        let (example, feature) = (index / per_example, index % per_example);
        let side = if value < min {
            format!("below the minimum {min:?}")
        } else {
            format!("above the maximum {max:?}")
        };
        return Err(format!(
            "feature {feature} of example {example} is {value:?}, {side}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layout(name: &str, datatype: TensorType, dims: &[usize]) -> InputLayout {
        InputLayout {
            name: name.into(),
            datatype,
            dims: dims.iter().copied().map(Some).collect(),
        }
    }

    fn iris() -> Vec<InputLayout> {
        vec![layout("input", TensorType::Fp32, &[4])]
    }

    fn error(data: Value, layouts: &[InputLayout]) -> String {
        match read_examples(data, layouts) {
            Err(PipelineError::InvalidInput(message)) => message,
            other => panic!("expected an invalid input error, got {other:?}"),
        }
    }

    /// The elements of a tensor of a known datatype.
    trait Extract: Sized {
        fn extract(data: &TensorData) -> Option<Vec<Self>>;
    }

    macro_rules! extract {
        ($($ty:ty => $variant:ident),*) => {$(
            impl Extract for $ty {
                fn extract(data: &TensorData) -> Option<Vec<Self>> {
                    match data {
                        TensorData::$variant(values) => Some(values.clone()),
                        _ => None,
                    }
                }
            }
        )*};
    }

    extract!(f32 => Fp32, f64 => Fp64, i64 => Int64, i32 => Int32);

    fn values<T: Extract>(tensor: &Tensor) -> Vec<T> {
        T::extract(&tensor.data).unwrap()
    }

    #[test]
    fn one_example_is_a_single_row() {
        let examples = read_examples(json!([5.1, 3.5, 1.4, 0.2]), &iris()).unwrap();
        assert!(examples.is_single());
        assert_eq!(examples.rows(), 1);
        assert_eq!(examples.tensors[0].shape, [1, 4]);
        assert_eq!(
            values::<f32>(&examples.tensors[0]),
            vec![5.1, 3.5, 1.4, 0.2]
        );
    }

    #[test]
    fn a_list_of_examples_is_stacked_along_the_batch() {
        let data = json!([[5.1, 3.5, 1.4, 0.2], [6.7, 3, 5.2, 2.3]]);
        let examples = read_examples(data, &iris()).unwrap();
        assert!(!examples.is_single());
        assert_eq!(examples.rows(), 2);
        assert_eq!(examples.tensors[0].shape, [2, 4]);
        assert_eq!(
            values::<f32>(&examples.tensors[0]),
            vec![5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]
        );
    }

    #[test]
    fn a_list_of_one_example_is_still_a_list() {
        let examples = read_examples(json!([[1, 2, 3, 4]]), &iris()).unwrap();
        assert!(!examples.is_single());
        assert_eq!(examples.rows(), 1);
    }

    #[test]
    fn scalar_examples_and_deeper_shapes_follow_the_nesting_rule() {
        let scalar = vec![layout("x", TensorType::Int64, &[])];
        let one = read_examples(json!(7), &scalar).unwrap();
        assert!(one.is_single());
        assert_eq!(values::<i64>(&one.tensors[0]), vec![7]);
        let list = read_examples(json!([1, 2, 3]), &scalar).unwrap();
        assert_eq!((list.rows(), list.is_single()), (3, false));

        let grid = vec![layout("x", TensorType::Fp64, &[2, 2])];
        let one = read_examples(json!([[1, 2], [3, 4]]), &grid).unwrap();
        assert_eq!((one.rows(), one.is_single()), (1, true));
        assert_eq!(values::<f64>(&one.tensors[0]), vec![1.0, 2.0, 3.0, 4.0]);
        let two = read_examples(json!([[[1, 2], [3, 4]], [[5, 6], [7, 8]]]), &grid).unwrap();
        assert_eq!(two.tensors[0].shape, [2, 2, 2]);
        assert_eq!(
            error(json!([[[1, 2], [3, 4]], [[5, 6], [7]]]), &grid),
            "example 1 has 1 entries at [1][1]; the model expects 2 (one example has shape [2, 2])"
        );
    }

    #[test]
    fn a_short_example_is_named_with_its_feature_count() {
        assert_eq!(
            error(json!([[1, 2, 3, 4], [1, 2, 3]]), &iris()),
            "example 1 has 3 features; the model expects 4"
        );
        assert_eq!(
            error(json!([1, 2, 3, 4, 5]), &iris()),
            "example 0 has 5 features; the model expects 4"
        );
    }

    #[test]
    fn a_non_number_is_named_with_its_position() {
        assert_eq!(
            error(json!([[1, 2, "x", 4]]), &iris()),
            "expected a list of numbers, found a string at [0][2]"
        );
        assert_eq!(
            error(json!([1, null, 3, 4]), &iris()),
            "expected a list of numbers, found null at [1]"
        );
        assert_eq!(
            error(json!([[1, 2, 3, 4], 5]), &iris()),
            "expected a list, found a number at [1]"
        );
    }

    #[test]
    fn the_wrong_nesting_is_explained() {
        assert_eq!(
            error(json!("hello"), &iris()),
            "expected one example of shape [4] or a list of them, found a string"
        );
        assert_eq!(
            error(json!([[[1, 2, 3, 4]]]), &iris()),
            "expected one example of shape [4] or a list of them, found lists nested 3 deep"
        );
        assert_eq!(
            error(json!([]), &iris()),
            "data is an empty list; send one example or a list of examples"
        );
    }

    #[test]
    fn integers_must_be_whole_and_in_range() {
        let ints = vec![layout("x", TensorType::Int32, &[2])];
        let examples = read_examples(json!([3, 4.0]), &ints).unwrap();
        assert_eq!(values::<i32>(&examples.tensors[0]), vec![3, 4]);
        assert_eq!(
            error(json!([3, 4.5]), &ints),
            "expected an integer within the INT32 range, found 4.5 at [1]"
        );
        assert_eq!(
            error(json!([3, 4_000_000_000_i64]), &ints),
            "expected an integer within the INT32 range, found 4000000000 at [1]"
        );
        assert_eq!(
            error(json!([1e39, 1, 2, 3]), &iris()),
            "expected a number within the FP32 range, found 1e+39 at [0]"
        );
    }

    #[test]
    fn several_inputs_are_read_from_an_object_keyed_by_name() {
        let layouts = vec![
            layout("a", TensorType::Fp32, &[2]),
            layout("b", TensorType::Int64, &[1]),
        ];
        let examples =
            read_examples(json!({"b": [[1], [2]], "a": [[1, 2], [3, 4]]}), &layouts).unwrap();
        assert_eq!(examples.rows(), 2);
        assert_eq!(values::<i64>(&examples.tensors[1]), vec![1, 2]);

        assert_eq!(
            error(json!([1, 2]), &layouts),
            "this model has 2 inputs (`a`, `b`); send an object keyed by input name, found a list"
        );
        assert_eq!(
            error(json!({"a": [1, 2]}), &layouts),
            "missing input `b`; the model's inputs are `a`, `b`"
        );
        assert_eq!(
            error(json!({"a": [1, 2], "b": [1], "c": 1}), &layouts),
            "unknown input `c`; the model's inputs are `a`, `b`"
        );
        assert_eq!(
            error(json!({"a": [1, 2], "b": [[1]]}), &layouts),
            "inputs must agree on single example vs. list: `a` is a single example but `b` is a \
             list of examples"
        );
        assert_eq!(
            error(json!({"a": [[1, 2]], "b": [[1], [2]]}), &layouts),
            "inputs must have the same number of examples: `a` has 1 but `b` has 2"
        );
        assert_eq!(
            error(json!({"a": [1, "2"], "b": [1]}), &layouts),
            "input `a`: expected a list of numbers, found a string at [1]"
        );
    }

    #[test]
    fn bounds_name_the_feature_and_the_example() {
        let layouts = iris();
        let examples = read_examples(json!([[1, 2, 3, 4], [1, 2, 120, 4]]), &layouts).unwrap();
        assert_eq!(
            check_bounds(&examples, &layouts, Some(0.0), Some(100.0)),
            Err(PipelineError::InvalidInput(
                "feature 2 of example 1 is 120.0, above the maximum 100.0".into()
            ))
        );
        let examples = read_examples(json!([1, -0.5, 3, 4]), &layouts).unwrap();
        assert_eq!(
            check_bounds(&examples, &layouts, Some(0.0), None),
            Err(PipelineError::InvalidInput(
                "feature 1 of example 0 is -0.5, below the minimum 0.0".into()
            ))
        );
        assert_eq!(check_bounds(&examples, &layouts, None, Some(10.0)), Ok(()));
    }
}
