//! Request `data` → one tensor per graph input (docs/model-repository.md, "Request `data`").
//!
//! This is on the hot path of every ONNX request, so it walks the JSON once, never clones a
//! `Value`, and writes each number straight into the tensor it ends up in: one allocation per
//! graph input, sized up front from the example shape and the number of examples.

use std::fmt::{self, Write as _};

use inference_engine_core::pipeline::PipelineError;
use serde_json::{Map, Number, Value};
use tract_onnx::prelude::tract_num_traits::Zero;
use tract_onnx::prelude::{Datum, Tensor};

use crate::manifest::{DataType, TensorManifest};

/// One graph input as requests must fill it.
#[derive(Debug, Clone)]
pub(crate) struct InputLayout {
    pub(crate) name: String,
    pub(crate) datatype: DataType,
    /// One example's shape (`shape[1..]` of the manifest).
    pub(crate) dims: Vec<usize>,
}

impl InputLayout {
    pub(crate) fn new(tensor: &TensorManifest) -> Self {
        Self {
            name: tensor.name.clone(),
            datatype: tensor.datatype,
            dims: tensor.example_dims(),
        }
    }

    pub(crate) fn values_per_example(&self) -> usize {
        self.dims.iter().product()
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
    match layout.datatype {
        DataType::Fp32 => read_typed::<f32>(value, &layout.dims),
        DataType::Fp64 => read_typed::<f64>(value, &layout.dims),
        DataType::Int64 => read_typed::<i64>(value, &layout.dims),
        DataType::Int32 => read_typed::<i32>(value, &layout.dims),
    }
}

fn read_typed<T: Element>(value: &Value, dims: &[usize]) -> Result<(Tensor, RequestShape), String> {
    if matches!(value, Value::Array(items) if items.is_empty()) {
        return Err("data is an empty list; send one example or a list of examples".to_owned());
    }
    let depth = nesting_depth(value);
    let rank = dims.len();
    let shape = if depth == rank {
        RequestShape {
            rows: 1,
            single: true,
        }
    } else if depth == rank + 1 {
        let rows = match value {
            Value::Array(items) => items.len(),
            _ => 1,
        };
        RequestShape {
            rows,
            single: false,
        }
    } else {
        let found = if depth == 0 {
            kind(value).to_owned()
        } else {
            format!("lists nested {depth} deep")
        };
        return Err(format!(
            "expected one example of shape {dims:?} or a list of them, found {found}"
        ));
    };

    let mut tensor_shape = Vec::with_capacity(rank + 1);
    tensor_shape.push(shape.rows);
    tensor_shape.extend_from_slice(dims);
    let mut tensor = Tensor::zero::<T>(&tensor_shape).map_err(|err| format!("{err:#}"))?;
    {
        let mut view = tensor
            .try_as_plain_ram_mut()
            .map_err(|err| format!("{err:#}"))?;
        let out = view.as_slice_mut::<T>().map_err(|err| format!("{err:#}"))?;
        let mut walker = Walker {
            dims,
            path: Vec::with_capacity(rank + 1),
            example: 0,
            cursor: 0,
        };
        match (shape.single, value) {
            (false, Value::Array(examples)) => {
                for (index, example) in examples.iter().enumerate() {
                    walker.example = index;
                    walker.path.push(index);
                    walker.fill(example, 0, out)?;
                    walker.path.pop();
                }
            }
            _ => walker.fill(value, 0, out)?,
        }
    }
    Ok((tensor, shape))
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
    /// One example's shape.
    dims: &'a [usize],
    /// Indices from the input's root to the current value (only formatted on error).
    path: Vec<usize>,
    example: usize,
    /// Next slot to write in the output.
    cursor: usize,
}

impl Walker<'_> {
    fn fill<T: Element>(
        &mut self,
        value: &Value,
        level: usize,
        out: &mut [T],
    ) -> Result<(), String> {
        let Some((&expected, inner)) = self.dims[level..].split_first() else {
            return match value {
                Value::Number(number) => {
                    out[self.cursor] = self.number(number, None)?;
                    self.cursor += 1;
                    Ok(())
                }
                other => Err(format!(
                    "expected a number, found {} at {}",
                    kind(other),
                    self.at(None)
                )),
            };
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
            let slots = &mut out[self.cursor..self.cursor + expected];
            for (index, (slot, item)) in slots.iter_mut().zip(items).enumerate() {
                match item {
                    Value::Number(number) => *slot = self.number(number, Some(index))?,
                    other => {
                        return Err(format!(
                            "expected a list of numbers, found {} at {}",
                            kind(other),
                            self.at(Some(index))
                        ));
                    }
                }
            }
            self.cursor += expected;
            return Ok(());
        }
        for (index, item) in items.iter().enumerate() {
            self.path.push(index);
            self.fill(item, level + 1, out)?;
            self.path.pop();
        }
        Ok(())
    }

    fn number<T: Element>(&self, number: &Number, last: Option<usize>) -> Result<T, String> {
        T::from_number(number).ok_or_else(|| {
            format!(
                "expected {}, found {number} at {}",
                T::EXPECTED,
                self.at(last)
            )
        })
    }

    fn wrong_length(&self, level: usize, found: usize, expected: usize) -> String {
        let example = self.example;
        if level == 0 && self.dims.len() == 1 {
            return format!("example {example} has {found} features; the model expects {expected}");
        }
        format!(
            "example {example} has {found} entries at {}; the model expects {expected} (one \
             example has shape {:?})",
            self.at(None),
            self.dims
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
/// `Zero` because the tensor is allocated zeroed before it is filled.
pub(crate) trait Element: Datum + Copy + fmt::Debug + Zero {
    /// What a value must be, for error messages ("a number", "an integer").
    const EXPECTED: &'static str;

    /// The value, or `None` if it does not fit the type.
    fn from_number(number: &Number) -> Option<Self>;

    /// For range checks.
    fn to_f64(self) -> f64;
}

impl Element for f32 {
    const EXPECTED: &'static str = "a number within the FP32 range";

    fn from_number(number: &Number) -> Option<Self> {
        // Narrowing is the point: FP32 inputs hold the nearest f32.
        #[allow(clippy::cast_possible_truncation)]
        let value = number.as_f64()? as f32;
        value.is_finite().then_some(value)
    }

    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Element for f64 {
    const EXPECTED: &'static str = "a number";

    fn from_number(number: &Number) -> Option<Self> {
        number.as_f64()
    }

    fn to_f64(self) -> f64 {
        self
    }
}

impl Element for i64 {
    const EXPECTED: &'static str = "an integer within the INT64 range";

    fn from_number(number: &Number) -> Option<Self> {
        number.as_i64().or_else(|| whole_number(number))
    }

    #[allow(clippy::cast_precision_loss)]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Element for i32 {
    const EXPECTED: &'static str = "an integer within the INT32 range";

    fn from_number(number: &Number) -> Option<Self> {
        let wide = number.as_i64().or_else(|| whole_number(number))?;
        i32::try_from(wide).ok()
    }

    fn to_f64(self) -> f64 {
        f64::from(self)
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

/// Checks `[validation] min / max` on every value of every example.
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
        let result = match layout.datatype {
            DataType::Fp32 => bounds_of::<f32>(tensor, layout, min, max),
            DataType::Fp64 => bounds_of::<f64>(tensor, layout, min, max),
            DataType::Int64 => bounds_of::<i64>(tensor, layout, min, max),
            DataType::Int32 => bounds_of::<i32>(tensor, layout, min, max),
        };
        result.map_err(|message| {
            if layouts.len() > 1 {
                PipelineError::InvalidInput(format!("input `{}`: {message}", layout.name))
            } else {
                PipelineError::InvalidInput(message)
            }
        })?;
    }
    Ok(())
}

fn bounds_of<T: Element>(
    tensor: &Tensor,
    layout: &InputLayout,
    min: Option<f64>,
    max: Option<f64>,
) -> Result<(), String> {
    let view = tensor
        .try_as_plain_ram()
        .map_err(|err| format!("{err:#}"))?;
    let values = view.as_slice::<T>().map_err(|err| format!("{err:#}"))?;
    let per_example = layout.values_per_example().max(1);
    let min = min.unwrap_or(f64::NEG_INFINITY);
    let max = max.unwrap_or(f64::INFINITY);
    for (index, value) in values.iter().enumerate() {
        let wide = value.to_f64();
        if wide >= min && wide <= max {
            continue;
        }
        let (example, feature) = (index / per_example, index % per_example);
        let side = if wide < min {
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

    fn layout(name: &str, datatype: DataType, dims: &[usize]) -> InputLayout {
        InputLayout {
            name: name.into(),
            datatype,
            dims: dims.to_vec(),
        }
    }

    fn iris() -> Vec<InputLayout> {
        vec![layout("input", DataType::Fp32, &[4])]
    }

    fn error(data: Value, layouts: &[InputLayout]) -> String {
        match read_examples(data, layouts) {
            Err(PipelineError::InvalidInput(message)) => message,
            other => panic!("expected an invalid input error, got {other:?}"),
        }
    }

    fn values<T: Element>(tensor: &Tensor) -> Vec<T> {
        tensor
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<T>()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn one_example_is_a_single_row() {
        let examples = read_examples(json!([5.1, 3.5, 1.4, 0.2]), &iris()).unwrap();
        assert!(examples.is_single());
        assert_eq!(examples.rows(), 1);
        assert_eq!(examples.tensors[0].shape(), &[1, 4]);
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
        assert_eq!(examples.tensors[0].shape(), &[2, 4]);
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
        let scalar = vec![layout("x", DataType::Int64, &[])];
        let one = read_examples(json!(7), &scalar).unwrap();
        assert!(one.is_single());
        assert_eq!(values::<i64>(&one.tensors[0]), vec![7]);
        let list = read_examples(json!([1, 2, 3]), &scalar).unwrap();
        assert_eq!((list.rows(), list.is_single()), (3, false));

        let grid = vec![layout("x", DataType::Fp64, &[2, 2])];
        let one = read_examples(json!([[1, 2], [3, 4]]), &grid).unwrap();
        assert_eq!((one.rows(), one.is_single()), (1, true));
        assert_eq!(values::<f64>(&one.tensors[0]), vec![1.0, 2.0, 3.0, 4.0]);
        let two = read_examples(json!([[[1, 2], [3, 4]], [[5, 6], [7, 8]]]), &grid).unwrap();
        assert_eq!(two.tensors[0].shape(), &[2, 2, 2]);
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
        let ints = vec![layout("x", DataType::Int32, &[2])];
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
            layout("a", DataType::Fp32, &[2]),
            layout("b", DataType::Int64, &[1]),
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
