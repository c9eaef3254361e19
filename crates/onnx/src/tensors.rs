//! Core [`Tensor`]s ⇄ tract tensors, for the tensor path (`Pipeline::infer_tensors`): what
//! Open Inference Protocol clients send goes into the plan as it is, and the plan's outputs
//! come back as they are.

use inference_engine_core::pipeline::PipelineError;
use inference_engine_core::tensor::{Tensor, TensorData};
use tract_onnx::prelude::{DatumType, Tensor as TractTensor, tract_ndarray};

use crate::examples::InputLayout;
use crate::manifest::DataType;

impl DataType {
    /// The core element type of a manifest datatype.
    pub fn core(self) -> inference_engine_core::tensor::DataType {
        use inference_engine_core::tensor::DataType as Core;
        match self {
            Self::Fp32 => Core::Fp32,
            Self::Fp64 => Core::Fp64,
            Self::Int64 => Core::Int64,
            Self::Int32 => Core::Int32,
        }
    }
}

/// Checks one input against its manifest entry and moves its elements into a tract tensor
/// (no copy). Returns the tensor and its number of rows.
pub(crate) fn input_to_tract(
    tensor: Tensor,
    layout: &InputLayout,
) -> Result<(TractTensor, usize), PipelineError> {
    let invalid = PipelineError::InvalidInput;
    let expected = layout.datatype.core();
    if tensor.datatype() != expected {
        return Err(invalid(format!(
            "input `{}` is {}; the model takes {expected}",
            tensor.name,
            tensor.datatype()
        )));
    }
    if tensor.shape.len() != layout.dims.len() + 1 || tensor.shape[1..] != layout.dims[..] {
        let mut wanted = vec![-1_i64];
        wanted.extend(layout.dims.iter().map(|&dim| dim as i64));
        return Err(invalid(format!(
            "input `{}` has shape {:?}; the model takes {wanted:?} (-1: any number of rows)",
            tensor.name, tensor.shape
        )));
    }
    let rows = tensor.shape[0];
    if rows == 0 {
        return Err(invalid(format!(
            "input `{}` has no rows; send at least one",
            tensor.name
        )));
    }
    Ok((to_tract(tensor)?, rows))
}

/// A remote server's output as a tract tensor, if it has the declared datatype.
pub(crate) fn remote_output_to_tract(
    tensor: Tensor,
    declared: DataType,
) -> Result<TractTensor, PipelineError> {
    if tensor.datatype() != declared.core() {
        return Err(PipelineError::Inference(format!(
            "the remote server returned output `{}` as {}; model.toml declares {declared}",
            tensor.name,
            tensor.datatype()
        )));
    }
    to_tract(tensor)
}

/// Moves a core tensor of a manifest datatype into a tract tensor (no copy).
fn to_tract(tensor: Tensor) -> Result<TractTensor, PipelineError> {
    let shape = tract_ndarray::IxDyn(&tensor.shape);
    let array = |err: tract_ndarray::ShapeError| {
        PipelineError::Inference(format!("tensor `{}`: {err}", tensor.name))
    };
    Ok(match tensor.data {
        TensorData::Fp32(values) => tract_ndarray::ArrayD::from_shape_vec(shape, values)
            .map(TractTensor::from)
            .map_err(array)?,
        TensorData::Fp64(values) => tract_ndarray::ArrayD::from_shape_vec(shape, values)
            .map(TractTensor::from)
            .map_err(array)?,
        TensorData::Int64(values) => tract_ndarray::ArrayD::from_shape_vec(shape, values)
            .map(TractTensor::from)
            .map_err(array)?,
        TensorData::Int32(values) => tract_ndarray::ArrayD::from_shape_vec(shape, values)
            .map(TractTensor::from)
            .map_err(array)?,
        other => {
            return Err(PipelineError::InvalidInput(format!(
                "tensor `{}` is {}; model.toml datatypes are FP32, FP64, INT64 and INT32",
                tensor.name,
                other.datatype()
            )));
        }
    })
}

/// A tract tensor (a plan output, or an input on its way to a remote server) as a core
/// tensor named `name`.
pub(crate) fn from_tract(name: &str, tensor: &TractTensor) -> Result<Tensor, PipelineError> {
    fn values<T: tract_onnx::prelude::Datum + Clone>(
        tensor: &TractTensor,
    ) -> Result<Vec<T>, PipelineError> {
        let failed =
            |err: tract_onnx::prelude::TractError| PipelineError::Inference(format!("{err:#}"));
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
        DatumType::String => TensorData::Bytes(
            values::<String>(tensor)?
                .into_iter()
                .map(String::into_bytes)
                .collect(),
        ),
        other => {
            return Err(PipelineError::Inference(format!(
                "output `{name}` has element type {other:?}, which the protocol cannot carry"
            )));
        }
    };
    Tensor::new(name, tensor.shape().to_vec(), data)
        .map_err(|err| PipelineError::Inference(err.to_string()))
}
