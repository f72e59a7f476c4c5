//! The float types a loss runs in: `f32` and `f64`, as the core's `Float` and burn's element.

use burn::tensor::DType;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// `f32` or `f64`: a float type of the core crate that burn stores natively.
///
/// The loss is built for one of them (`LogitAdjustedLossConfig::new(..).init::<f32>()`), and a
/// logits tensor of another element type is an [`Error::DType`](crate::Error::DType). burn
/// creates float tensors in its default type, `f32`, unless given one: f64 tensors for an `f64`
/// loss come from `Tensor::from_data(data, (&device, DType::F64))`.
pub trait Element: longtail::Float + burn::tensor::Element + sealed::Sealed {
    /// burn's tag for this type.
    const DTYPE: DType;
    #[cfg(feature = "flex")]
    #[doc(hidden)]
    fn flex_storage(tensor: &burn::backend::flex::FlexTensor) -> &[Self];
    #[cfg(feature = "ndarray")]
    #[doc(hidden)]
    #[allow(deprecated)]
    fn ndarray_view(
        tensor: &burn::backend::ndarray::NdArrayTensor,
    ) -> Option<longtail::ndarray::ArrayViewD<'_, Self>>;
    #[cfg(feature = "ndarray")]
    #[doc(hidden)]
    #[allow(deprecated)]
    fn ndarray_tensor(
        array: longtail::ndarray::ArcArray<Self, longtail::ndarray::IxDyn>,
    ) -> burn::backend::ndarray::NdArrayTensor;
}

macro_rules! element {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            #[cfg(feature = "flex")]
            fn flex_storage(tensor: &burn::backend::flex::FlexTensor) -> &[Self] {
                tensor.storage::<$t>()
            }
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            fn ndarray_view(
                tensor: &burn::backend::ndarray::NdArrayTensor,
            ) -> Option<longtail::ndarray::ArrayViewD<'_, Self>> {
                match tensor {
                    burn::backend::ndarray::NdArrayTensor::$variant(storage) => Some(storage.view()),
                    _ => None,
                }
            }
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            fn ndarray_tensor(
                array: longtail::ndarray::ArcArray<Self, longtail::ndarray::IxDyn>,
            ) -> burn::backend::ndarray::NdArrayTensor {
                array.into()
            }
        }
    };
}

element!(f32, F32);
element!(f64, F64);
