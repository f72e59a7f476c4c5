//! The one error type of the crate.

use core::fmt;

/// Why a loss, a softmax or a builder refused its input.
///
/// Every public function validates its input completely before it writes any output, so on an
/// error the caller's buffers are untouched. Each variant names what was at fault (row, class,
/// label, shape or parameter), so the message points at the offending entry.
///
/// # Example
///
/// ```
/// use longtail::{Error, Loss, SoftmaxLoss};
/// use ndarray::array;
///
/// let logits = array![[1.0_f64, 2.0], [0.5, f64::NAN]];
/// let err = SoftmaxLoss::cross_entropy().loss_and_grad(&logits, &[0, 1]).unwrap_err();
/// assert!(matches!(err, Error::NonFiniteLogit { row: 1, class: 1, .. }));
/// assert_eq!(err.to_string(), "logit at row 1, class 1 is NaN (NaN and +inf are not allowed; -inf masks a class)");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The batch has no rows.
    EmptyBatch,
    /// There are zero classes (logits with no columns, or `K = 0`).
    NoClasses,
    /// An array's shape does not fit the logits `[B, K]`.
    ShapeMismatch {
        /// Which argument: `"labels"`, `"targets"`, `"sample_weights"`, `"grad_out"`, `"out"`,
        /// `"losses_out"`, `"prior"`, `"class_weights"`, `"alpha"`, `"margins"`, `"counts"`,
        /// `"pos_weight"`, `"stats"`, `"mass"`, `"state"`, `"negative"`, `"false_positive"` or
        /// `"false_negative"` for the losses; the `prior`, `adjust` and `metrics` calls name
        /// theirs in their `# Errors` sections.
        name: &'static str,
        /// The shape it must have.
        expected: Vec<usize>,
        /// The shape it has.
        found: Vec<usize>,
    },
    /// A hard label is not a class index `0..K`.
    LabelOutOfRange {
        /// Row of the batch.
        row: usize,
        /// The label found.
        label: usize,
        /// The number of classes `K`.
        classes: usize,
    },
    /// A logit is NaN or `+inf` (or overflows to `+inf` once logit-adjusted).
    NonFiniteLogit {
        /// Row of the batch.
        row: usize,
        /// Class (column).
        class: usize,
        /// The logit found.
        value: f64,
    },
    /// A class that carries target mass in a row that counts has logit `-inf`: its loss is infinite.
    MaskedTarget {
        /// Row of the batch.
        row: usize,
        /// The masked class.
        class: usize,
    },
    /// Every logit of a row is `-inf`, so its softmax is undefined.
    FullyMasked {
        /// Row of the batch.
        row: usize,
    },
    /// A probability target is negative or not finite.
    InvalidTarget {
        /// Row of the batch.
        row: usize,
        /// Class (column).
        class: usize,
        /// The target found.
        value: f64,
    },
    /// A row of probability targets does not sum to 1 within `tolerance`.
    TargetSum {
        /// Row of the batch.
        row: usize,
        /// The row's sum.
        sum: f64,
        /// The allowed `|sum − 1|`: `√ε` of the float type (3.5e-4 for `f32`, 1.5e-8 for `f64`).
        tolerance: f64,
    },
    /// A per-sample weight is negative or not finite.
    InvalidSampleWeight {
        /// Row of the batch.
        row: usize,
        /// The weight found.
        value: f64,
    },
    /// A parameter given to a builder is out of its domain.
    InvalidParameter {
        /// Which parameter: `"gamma"`, `"label_smoothing"`, `"tau"`, `"prior"`, `"class_weights"`,
        /// `"alpha"`, `"margins"` (index `y·K + k`), `"counts"`, `"max_margin"`, `"scale"`,
        /// `"epsilon"`, `"pos_weight"`, `"true_positive"`, `"mass"`, `"weight"`, `"p"`, `"q"`, `"eps"`,
        /// `"counts"`, `"mu"`, `"positive"`, `"negative"`, `"batches"`, `"beta"`, `"smooth"`,
        /// `"false_positive"` or `"false_negative"` for the losses; the `prior`, `adjust` and
        /// `metrics` calls name theirs in their `# Errors` sections.
        name: &'static str,
        /// The entry at fault, for a per-class parameter.
        index: Option<usize>,
        /// The value found.
        value: f64,
        /// The domain it must lie in.
        expected: &'static str,
    },
    /// A predicted class is not a class index `0..K`.
    PredictionOutOfRange {
        /// Position in the predictions.
        row: usize,
        /// The prediction found.
        prediction: usize,
        /// The number of classes `K`.
        classes: usize,
    },
    /// A square linear system has no (numerically) unique solution: elimination found no pivot
    /// larger than `K·ε·max|entry|` in `column`, or the system is so ill-conditioned that its
    /// solution's error bound `K·κ∞·ε` exceeds `10⁻⁶` (`column`: the smallest pivot's).
    SingularMatrix {
        /// Which matrix: `"confusion_matrix"`.
        name: &'static str,
        /// The column without a usable pivot.
        column: usize,
    },
    /// A binary or multi-hot target lies outside its domain (`[0, 1]` for binary losses, `{0, 1}`
    /// for multi-hot ones); for a `[B]` target `class` is 0.
    TargetOutOfRange {
        /// Row of the batch.
        row: usize,
        /// Class (column).
        class: usize,
        /// The target found.
        value: f64,
        /// The domain it must lie in.
        expected: &'static str,
    },
    /// The loss does not take this kind of targets (hard labels, probability rows, multi-hot
    /// rows; see [`Targets`](crate::Targets)).
    UnsupportedTargets {
        /// Which loss, e.g. `"LdamLoss"`.
        loss: &'static str,
        /// The kinds it takes, e.g. `"hard labels"`.
        expected: &'static str,
        /// The kind it was given, e.g. `"probability targets"`.
        found: &'static str,
    },
    /// A value is beyond the range of its type although every input is valid: a transform
    /// (logit adjustment, LDAM's scale and margin, a label prior) turns a finite logit into `±inf`,
    /// a result (loss, gradient, log-probability) exceeds the float type, or a count would wrap.
    Overflow {
        /// What overflowed, e.g. `"logit + adjustment"`, `"scale * (logit - margin)"`, `"loss"`,
        /// `"gradient"`, `"log_softmax"`, `"counts"`; each call names its own in `# Errors`.
        what: &'static str,
        /// Row of the batch, if the overflow belongs to one.
        row: Option<usize>,
        /// Class (column), if the overflow belongs to one.
        class: Option<usize>,
        /// The input that overflowed (the logit, or the count), if there is one.
        value: Option<f64>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyBatch => write!(f, "the batch is empty (zero rows)"),
            Self::NoClasses => write!(f, "there are zero classes (zero columns, or K = 0)"),
            Self::ShapeMismatch { name, expected, found } => {
                write!(f, "{name} has shape {found:?}, expected {expected:?}")
            }
            Self::LabelOutOfRange { row, label, classes } => {
                write!(f, "label {label} at row {row} is not a class index 0..{classes}")
            }
            Self::NonFiniteLogit { row, class, value } => write!(
                f,
                "logit at row {row}, class {class} is {} (NaN and +inf are not allowed; -inf masks a class)",
                Short(*value)
            ),
            Self::MaskedTarget { row, class } => write!(
                f,
                "row {row} puts target mass on class {class}, whose logit is -inf: the loss is infinite"
            ),
            Self::FullyMasked { row } => {
                write!(f, "every logit of row {row} is -inf: its softmax is undefined")
            }
            Self::InvalidTarget { row, class, value } => write!(
                f,
                "probability target at row {row}, class {class} is {}; it must be finite and >= 0",
                Short(*value)
            ),
            Self::TargetSum { row, sum, tolerance } => {
                write!(
                    f,
                    "probability targets of row {row} sum to {}, not 1 (tolerance {tolerance:e})",
                    Short(*sum)
                )
            }
            Self::InvalidSampleWeight { row, value } => {
                write!(f, "sample weight at row {row} is {}; it must be finite and >= 0", Short(*value))
            }
            Self::InvalidParameter { name, index: Some(i), value, expected } => {
                write!(f, "{name}[{i}] is {}; expected {expected}", Short(*value))
            }
            Self::InvalidParameter { name, index: None, value, expected } => {
                write!(f, "{name} is {}; expected {expected}", Short(*value))
            }
            Self::PredictionOutOfRange { row, prediction, classes } => {
                write!(f, "prediction {prediction} at row {row} is not a class index 0..{classes}")
            }
            Self::SingularMatrix { name, column } => write!(
                f,
                "{name} is singular: no usable pivot in column {column} (a class never predicted or never seen?)"
            ),
            Self::TargetOutOfRange { row, class, value, expected } => {
                write!(f, "target at row {row}, class {class} is {}; expected {expected}", Short(*value))
            }
            Self::UnsupportedTargets { loss, expected, found } => {
                write!(f, "{loss} takes {expected}, not {found}")
            }
            Self::Overflow { what, row, class, value } => {
                write!(f, "{what} overflows")?;
                match (row, class) {
                    (Some(row), Some(class)) => write!(f, " at row {row}, class {class}")?,
                    (Some(row), None) => write!(f, " at row {row}")?,
                    (None, Some(class)) => write!(f, " at class {class}")?,
                    (None, None) => {}
                }
                if let Some(value) = value {
                    write!(f, " (from {})", Short(*value))?;
                }
                write!(f, ": the result is beyond the range of its type")
            }
        }
    }
}

impl std::error::Error for Error {}

/// A value in a message, in its shortest form: positional between `1e-4` and `1e16`, scientific
/// outside (`3.4e38`, not 39 digits), and with the digits of `f32` when it is exactly an `f32`
/// (the value came from one, widened to `f64`).
pub(crate) struct Short(pub f64);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let positional = v == 0.0 || !v.is_finite() || (1e-4..1e16).contains(&v.abs());
        // An f64 that is exactly an f32 prints with the f32's shortest digits.
        let narrow = v as f32;
        if f64::from(narrow) == v {
            if positional { write!(f, "{narrow}") } else { write!(f, "{narrow:e}") }
        } else if positional {
            write!(f, "{v}")
        } else {
            write!(f, "{v:e}")
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Fails with [`Error::ShapeMismatch`] unless `found == expected`.
pub(crate) fn check_shape(name: &'static str, expected: &[usize], found: &[usize]) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { name, expected: expected.to_vec(), found: found.to_vec() })
    }
}
