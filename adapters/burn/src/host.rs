//! Burn's CPU backends seen from the core: their float storage as an ndarray view (in place), and
//! owned arrays handed back to them as tensors (moved, not copied).
//!
//! Both CPU backends of burn 0.22 keep a tensor's data in one host buffer:
//!
//! - Flex: `FlexTensor::storage::<E>()` is the whole buffer as `&[E]`, and its `Layout` gives the
//!   shape, element strides and start offset. Any layout with non-negative strides (contiguous,
//!   row-sliced, transposed) is viewed in place; a flipped one (negative stride) is not.
//! - NdArray: the primitive is an `ArcArray<E, IxDyn>` of the very ndarray version the core uses,
//!   so `NdArrayStorage::view()` is the view, whatever its strides.
//!
//! Going back, an `Array2<E>` becomes a Flex tensor through `TensorData` (which takes the `Vec`
//! without copying) and an NdArray tensor as its `ArcArray` (no copy either).

use burn::backend::Backend;
use burn::tensor::{DType, TensorData};
use longtail::ndarray::{Array2, ArrayView2};

use crate::Element;

/// A CPU backend whose float storage the core kernels read in place.
pub trait HostBackend: Backend {
    /// The primitive as a `[B, K]` view of its own storage, or `None` if its rank, element type
    /// or layout does not allow one.
    fn view<F: Element>(tensor: &Self::FloatTensorPrimitive) -> Option<ArrayView2<'_, F>>;
    /// An owned array as this backend's float tensor, without copying its buffer.
    fn from_array<F: Element>(array: Array2<F>) -> Self::FloatTensorPrimitive;
    /// A one-element tensor `[value]`.
    fn scalar<F: Element>(value: F) -> Self::FloatTensorPrimitive;
    /// The value of a one-element float tensor.
    fn read_scalar(tensor: &Self::FloatTensorPrimitive) -> Option<f64>;
}

/// The host buffer of an array in standard layout, or a copy in it.
fn into_vec<F: Element>(array: Array2<F>) -> Vec<F> {
    if array.is_standard_layout() {
        let (vec, offset) = array.into_raw_vec_and_offset();
        debug_assert!(offset.unwrap_or(0) == 0);
        vec
    } else {
        array.iter().copied().collect()
    }
}

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::flex::{Flex, FlexTensor};

    use super::*;

    impl HostBackend for Flex {
        fn view<F: Element>(tensor: &FlexTensor) -> Option<ArrayView2<'_, F>> {
            use longtail::ndarray::ShapeBuilder;
            let layout = tensor.layout();
            if tensor.dtype() != F::DTYPE || layout.num_dims() != 2 {
                return None;
            }
            let dims = layout.shape();
            let strides = layout.strides();
            let (rows, cols) = (dims[0], dims[1]);
            let (s0, s1) = (usize::try_from(strides[0]).ok()?, usize::try_from(strides[1]).ok()?);
            let storage = F::flex_storage(tensor);
            let start = layout.start_offset();
            if rows == 0 || cols == 0 {
                return ArrayView2::from_shape((rows, cols), &[]).ok();
            }
            ArrayView2::from_shape((rows, cols).strides((s0, s1)), storage.get(start..)?).ok()
        }

        fn from_array<F: Element>(array: Array2<F>) -> FlexTensor {
            let shape = [array.nrows(), array.ncols()];
            FlexTensor::from_data(TensorData::new(into_vec(array), shape))
        }

        fn scalar<F: Element>(value: F) -> FlexTensor {
            FlexTensor::from_data(TensorData::new(vec![value], [1]))
        }

        fn read_scalar(tensor: &FlexTensor) -> Option<f64> {
            let start = tensor.layout().start_offset();
            match tensor.dtype() {
                DType::F32 => tensor.storage::<f32>().get(start).map(|&v| f64::from(v)),
                DType::F64 => tensor.storage::<f64>().get(start).copied(),
                _ => None,
            }
        }
    }
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)]
mod ndarray_backend {
    use burn::backend::ndarray::{NdArray, NdArrayTensor};

    use super::*;

    impl HostBackend for NdArray {
        fn view<F: Element>(tensor: &NdArrayTensor) -> Option<ArrayView2<'_, F>> {
            F::ndarray_view(tensor)?.into_dimensionality::<longtail::ndarray::Ix2>().ok()
        }

        fn from_array<F: Element>(array: Array2<F>) -> NdArrayTensor {
            F::ndarray_tensor(array.into_dyn().into_shared())
        }

        fn scalar<F: Element>(value: F) -> NdArrayTensor {
            F::ndarray_tensor(longtail::ndarray::arr1(&[value]).into_dyn().into_shared())
        }

        fn read_scalar(tensor: &NdArrayTensor) -> Option<f64> {
            match tensor {
                NdArrayTensor::F32(s) => s.view().iter().next().map(|&v| f64::from(v)),
                NdArrayTensor::F64(s) => s.view().iter().next().copied(),
                _ => None,
            }
        }
    }
}

/// `TensorData` of a float tensor as an owned `[B, K]` array (the host copy of the fallback path).
pub(crate) fn data_to_array<F: Element>(data: TensorData, tensor: &'static str) -> crate::Result<Array2<F>> {
    let found = data.dtype();
    if found != F::DTYPE {
        return Err(crate::Error::DType { tensor, expected: F::DTYPE, found });
    }
    let shape = data.shape().clone();
    let values = data.try_into_vec::<F>().map_err(|e| crate::Error::Read(format!("{e:?}")))?;
    Array2::from_shape_vec((shape[0], shape[1]), values).map_err(|e| crate::Error::Read(e.to_string()))
}

/// An owned array as `TensorData` (moves its buffer).
pub(crate) fn array_to_data<F: Element>(array: Array2<F>) -> TensorData {
    let shape = [array.nrows(), array.ncols()];
    TensorData::new(into_vec(array), shape)
}
