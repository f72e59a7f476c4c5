//! The adapter's one error type: the core crate's error, or a tensor the adapter cannot read.

use core::fmt;

use burn::tensor::DType;

/// Everything that can go wrong between a burn tensor and a core loss.
///
/// A core error (bad label, non-finite logit, wrong shape, bad parameter) arrives unchanged as
/// [`Error::Core`], naming the row, class or parameter at fault; the other variants name the
/// tensor the adapter could not map to the core's types.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Int, Tensor};
/// use longtail_burn::{Error, LogitAdjustedLossConfig, Targets};
///
/// let device = Device::flex();
/// let loss = LogitAdjustedLossConfig::new(vec![90.0, 10.0]).init::<f32>()?;
/// let logits = Tensor::<2>::from_data([[1.0_f32, 0.0]], &device);
/// let labels = Tensor::<1, Int>::from_data([2], &device); // class 2 of 2
/// let err = loss.try_forward(logits, &Targets::labels(labels)).unwrap_err();
/// assert!(matches!(err, Error::Core(longtail::Error::LabelOutOfRange { .. })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The core crate rejected the batch or a parameter.
    Core(longtail::Error),
    /// A tensor's element type is not the loss's float type.
    DType {
        /// Which argument (`"logits"`, `"probs"`, `"sample_weights"`).
        tensor: &'static str,
        /// The loss's element type.
        expected: DType,
        /// The tensor's element type.
        found: DType,
    },
    /// A label tensor holds a value that is not a class index (negative, or not an integer
    /// tensor).
    Label {
        /// The row of the first bad label.
        row: usize,
        /// Its value.
        value: i64,
    },
    /// The tensor-op path found a non-finite value (it rejects `NaN` and `±inf` logits and
    /// targets; the CPU path names the exact row and class instead).
    NonFinite {
        /// Which argument.
        tensor: &'static str,
    },
    /// The tensor-op path found a negative or non-finite sample weight, or a probability target
    /// that is negative or whose row does not sum to 1 (the CPU path names the row and class).
    Invalid {
        /// Which argument (`"probs"` or `"sample_weights"`).
        tensor: &'static str,
    },
    /// A tensor could not be read back from its device.
    Read(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Core(e) => write!(f, "{e}"),
            Self::DType { tensor, expected, found } => {
                write!(f, "{tensor}: expected element type {expected:?}, found {found:?}")
            }
            Self::Label { row, value } => write!(f, "labels: row {row} holds {value}, not a class index"),
            Self::NonFinite { tensor } => write!(f, "{tensor}: holds a NaN or infinite value"),
            Self::Invalid { tensor } => write!(f, "{tensor}: a negative or non-finite value, or a row off 1"),
            Self::Read(message) => write!(f, "reading a tensor from its device: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl From<longtail::Error> for Error {
    fn from(e: longtail::Error) -> Self {
        Self::Core(e)
    }
}

/// The adapter's result type.
pub type Result<T> = core::result::Result<T, Error>;
