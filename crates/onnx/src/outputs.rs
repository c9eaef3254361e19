//! What a graph run gives back: one [`Output`] per declared output, each holding one row per
//! example, whichever runtime produced it.

use std::ops::Range;

use inference_engine_core::pipeline::PipelineError;
use inference_engine_core::tensor::{Tensor, TensorData, element_count, nest_json};
use serde_json::{Map, Value};

/// One output of a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    /// A tensor whose first dimension is the examples.
    Tensor(Tensor),
    /// One map per example (an ONNX `seq(map(K, V))`, what scikit-learn's `ZipMap` gives):
    /// keys as text (`int64` keys too), values as JSON numbers.
    Maps(Vec<Map<String, Value>>),
}

impl Output {
    /// How many examples the output holds: the first dimension of a tensor (`None` for a
    /// scalar), the number of maps.
    pub(crate) fn rows(&self) -> Option<usize> {
        match self {
            Self::Tensor(tensor) => tensor.shape.first().copied(),
            Self::Maps(maps) => Some(maps.len()),
        }
    }

    /// Example `row` as JSON: the tensor's slice nested by its shape (a bare value for one
    /// element per example), or the map.
    pub(crate) fn row_json(&self, row: usize) -> Value {
        match self {
            Self::Tensor(tensor) => {
                let dims = tensor.shape.get(1..).unwrap_or(&[]);
                let values = tensor
                    .data
                    .range_to_json_values(row_range(tensor, row..row + 1));
                nest_json(values, dims)
            }
            Self::Maps(maps) => maps.get(row).cloned().map_or(Value::Null, Value::Object),
        }
    }

    /// One example's shape: the tensor's dimensions after the first (none for a map).
    pub(crate) fn example_dims(&self) -> Vec<usize> {
        match self {
            Self::Tensor(tensor) => tensor.shape.get(1..).unwrap_or(&[]).to_vec(),
            Self::Maps(_) => Vec::new(),
        }
    }

    /// Example `row`'s values as numbers (argmax, probabilities); `None` for a map or a
    /// non-numeric tensor.
    pub(crate) fn row_numbers(&self, row: usize) -> Option<Vec<f64>> {
        let Self::Tensor(tensor) = self else {
            return None;
        };
        row_range(tensor, row..row + 1)
            .map(|index| tensor.data.number_at(index))
            .collect()
    }

    /// Rows `rows` as a tensor named `name` (the protocol's answer): a tensor's slice, or one
    /// `BYTES` element per map holding the map's JSON text.
    pub(crate) fn rows_tensor(
        &self,
        name: &str,
        rows: Range<usize>,
    ) -> Result<Tensor, PipelineError> {
        let (shape, data) = match self {
            Self::Tensor(tensor) => {
                let mut shape = tensor.shape.clone();
                if let Some(first) = shape.first_mut() {
                    *first = rows.len();
                }
                let data = if rows.start == 0 && Some(rows.end) == self.rows() {
                    tensor.data.clone()
                } else {
                    tensor.data.slice(row_range(tensor, rows))
                };
                (shape, data)
            }
            Self::Maps(maps) => {
                let texts = maps[rows.clone()]
                    .iter()
                    .map(|map| Value::Object(map.clone()).to_string().into_bytes())
                    .collect();
                (vec![rows.len()], TensorData::Bytes(texts))
            }
        };
        Tensor::new(name, shape, data).map_err(|err| PipelineError::Inference(err.to_string()))
    }
}

/// The element indices of `rows` in a tensor whose first dimension is the examples.
fn row_range(tensor: &Tensor, rows: Range<usize>) -> Range<usize> {
    let per_row = element_count(tensor.shape.get(1..).unwrap_or(&[])).unwrap_or(0);
    rows.start * per_row..rows.end * per_row
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tensor(shape: Vec<usize>, values: Vec<f32>) -> Output {
        Output::Tensor(Tensor::new("t", shape, TensorData::Fp32(values)).unwrap())
    }

    #[test]
    fn rows_nest_by_the_example_shape() {
        let output = tensor(vec![2, 2, 2], vec![1.0, 3.0, 3.0, 2.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(output.rows(), Some(2));
        assert_eq!(output.row_json(0), json!([[1.0, 3.0], [3.0, 2.0]]));
        assert_eq!(output.row_json(1), json!([[5.0, 6.0], [7.0, 8.0]]));
        assert_eq!(output.row_numbers(0), Some(vec![1.0, 3.0, 3.0, 2.0]));
        let scalars = tensor(vec![3], vec![7.0, 8.0, 9.0]);
        assert_eq!(scalars.row_json(2), json!(9.0));
    }

    #[test]
    fn a_requests_rows_become_their_own_tensor_and_maps_travel_as_json_text() {
        let output = tensor(vec![3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let rows = output.rows_tensor("p", 1..3).unwrap();
        assert_eq!(rows.shape, vec![2, 2]);
        assert_eq!(rows.data, TensorData::Fp32(vec![3.0, 4.0, 5.0, 6.0]));

        let mut first = Map::new();
        first.insert("setosa".into(), json!(0.75));
        let maps = Output::Maps(vec![first.clone(), Map::new()]);
        assert_eq!(maps.row_json(0), Value::Object(first));
        assert_eq!(maps.row_numbers(0), None);
        let texts = maps.rows_tensor("probabilities", 0..1).unwrap();
        assert_eq!(
            texts.data,
            TensorData::Bytes(vec![br#"{"setosa":0.75}"#.to_vec()])
        );
    }
}
