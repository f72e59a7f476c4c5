//! What each row of a batch is fitted to, and how much each row counts.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, CowArray, Ix1};

use crate::Float;

/// The targets of a batch, one type for every loss: hard labels, probability rows or multi-hot
/// rows, with optional per-sample weights.
///
/// - [`labels`](Self::labels): `y_i ∈ 0..K`, one per row, as `usize` or `u32` (see [`Labels`]).
/// - [`probs`](Self::probs): a `[B, K]` array whose rows are distributions (non-negative, summing
///   to 1 within `√ε` of the float type).
/// - [`multi_hot`](Self::multi_hot): a `[B, K]` array of label sets, entries exactly 0 or 1, any
///   number of positives per row.
/// - Per-sample weights `s_i ≥ 0` scale row `i`'s loss and its share of the mean; a weight of 0
///   ignores the row (this replaces PyTorch's `ignore_index`). Without them every `s_i = 1`.
///
/// Each loss states which kinds it takes ([`Loss`](crate::Loss) lists them); another kind is
/// [`Error::UnsupportedTargets`](crate::Error::UnsupportedTargets). The one-vs-rest losses
/// ([`SigmoidLoss`](crate::SigmoidLoss), [`ZlprLoss`](crate::ZlprLoss),
/// [`AsymmetricLoss`](crate::AsymmetricLoss)) read hard labels as one-hot rows.
///
/// A slice, `Vec`, array or view of `usize` or `u32` converts into hard labels, and a `[B, K]`
/// array or view (or a reference to one) into probability targets, so a loss call can take
/// `&labels` or `&probs` directly, as it takes `&logits`.
///
/// # Example
///
/// ```
/// use longtail::{Loss, SoftmaxLoss, Targets};
/// use ndarray::array;
///
/// let logits = array![[2.0_f64, 0.0], [0.0, 1.0], [5.0, -5.0]];
/// // Row 2 is padding: weight 0 ignores it, and the mean divides by the weights that count.
/// let labels: Vec<u32> = vec![0, 1, 1]; // as a framework's label tensor holds them
/// let targets = Targets::labels(&labels).with_sample_weights(&[1.0, 1.0, 0.0]);
/// let (loss, grad) = SoftmaxLoss::cross_entropy().loss_and_grad(&logits, targets)?;
/// let two_rows = SoftmaxLoss::cross_entropy().loss(&logits.slice(ndarray::s![..2, ..]), &[0, 1])?;
/// assert!((loss - two_rows).abs() < 1e-15);
/// assert_eq!(grad.row(2).to_vec(), vec![0.0, 0.0]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// PyTorch `torch.nn.functional.cross_entropy` (its `target` and `ignore_index` arguments).
#[derive(Debug, Clone)]
pub struct Targets<'a, F> {
    pub(crate) kind: TargetKind<'a, F>,
    pub(crate) sample_weights: Option<ArrayView1<'a, F>>,
}

/// Hard labels, or `[B, K]` rows of targets (probability or multi-hot).
#[derive(Debug, Clone)]
pub(crate) enum TargetKind<'a, F> {
    Labels(CowArray<'a, usize, Ix1>),
    Rows(ArrayView2<'a, F>, RowKind),
}

/// What the `[B, K]` target rows hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowKind {
    /// Distributions: entries `≥ 0` summing to 1.
    Probs,
    /// Label sets: entries exactly 0 or 1.
    MultiHot,
}

impl<F> TargetKind<'_, F> {
    /// The kind's name, for errors: `"hard labels"`, `"probability targets"` or `"multi-hot targets"`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Labels(_) => "hard labels",
            Self::Rows(_, RowKind::Probs) => "probability targets",
            Self::Rows(_, RowKind::MultiHot) => "multi-hot targets",
        }
    }
}

impl<'a, F: Float> Targets<'a, F> {
    /// Hard labels, one class index per row (`usize` or `u32`).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Targets;
    /// let labels = vec![0_u32, 2, 1];
    /// let targets = Targets::<f32>::labels(&labels);
    /// assert_eq!(targets.len(), 3);
    /// ```
    pub fn labels(labels: impl Into<Labels<'a>>) -> Self {
        Self { kind: TargetKind::Labels(labels.into().0), sample_weights: None }
    }

    /// Probability targets, a `[B, K]` array whose rows are distributions.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Targets;
    /// use ndarray::array;
    /// let probs = array![[0.9_f64, 0.1], [0.5, 0.5]];
    /// assert_eq!(Targets::probs(&probs).len(), 2);
    /// ```
    pub fn probs(probs: impl Into<ArrayView2<'a, F>>) -> Self {
        Self { kind: TargetKind::Rows(probs.into(), RowKind::Probs), sample_weights: None }
    }

    /// Multi-hot targets, a `[B, K]` array of label sets (entries exactly 0 or 1).
    ///
    /// Multi-hot targets are floats, as data loaders produce them; soft values are rejected, since
    /// the losses that take them are defined on label sets.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Targets;
    /// use ndarray::array;
    /// assert_eq!(Targets::multi_hot(&array![[1.0_f32, 0.0, 1.0]]).len(), 1);
    /// ```
    pub fn multi_hot(multi_hot: impl Into<ArrayView2<'a, F>>) -> Self {
        Self { kind: TargetKind::Rows(multi_hot.into(), RowKind::MultiHot), sample_weights: None }
    }

    /// Weights each row's loss by `s_i ≥ 0` (length `B`); 0 ignores the row.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Targets;
    /// let targets = Targets::labels(&[1, 0]).with_sample_weights(&[0.5_f32, 2.0]);
    /// assert_eq!(targets.len(), 2);
    /// ```
    pub fn with_sample_weights(mut self, weights: impl Into<ArrayView1<'a, F>>) -> Self {
        self.sample_weights = Some(weights.into());
        self
    }

    /// The number of rows the targets describe.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Targets;
    /// assert!(Targets::<f64>::labels(&[0_usize; 0]).is_empty());
    /// ```
    pub fn len(&self) -> usize {
        match &self.kind {
            TargetKind::Labels(labels) => labels.len(),
            TargetKind::Rows(rows, _) => rows.nrows(),
        }
    }

    /// Whether the targets describe no row.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Targets;
    /// assert!(!Targets::<f64>::labels(&[3]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The weight of row `i` (1 without sample weights).
    pub(crate) fn sample_weight(&self, i: usize) -> F {
        self.sample_weights.as_ref().map_or(F::one(), |w| w[i])
    }
}

/// Hard labels, one class index per row: borrowed `usize` labels, or `u32` labels (what burn and
/// candle hold) widened once into a buffer of `B` indices.
///
/// Every function of the crate that takes labels takes `impl Into<Labels>`: a slice, array, `Vec`,
/// [`Array1`] or view of `usize` or `u32`.
///
/// # Example
///
/// ```
/// use longtail::Prior;
///
/// let wide = Prior::from_labels(&[0_usize, 1, 1], 2)?;
/// let narrow = Prior::from_labels(&vec![0_u32, 1, 1], 2)?;
/// assert_eq!(wide, narrow);
/// # Ok::<(), longtail::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Labels<'a>(pub(crate) CowArray<'a, usize, Ix1>);

impl<'a> Labels<'a> {
    /// The labels as a view.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Labels;
    /// assert_eq!(Labels::from(&vec![2_u32, 0]).view().to_vec(), vec![2, 0]);
    /// ```
    pub fn view(&self) -> ArrayView1<'_, usize> {
        self.0.view()
    }
}

impl core::ops::Deref for Labels<'_> {
    type Target = ndarray::ArrayRef1<usize>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a> From<ArrayView1<'a, usize>> for Labels<'a> {
    fn from(labels: ArrayView1<'a, usize>) -> Self {
        Self(CowArray::from(labels))
    }
}

impl<'a> From<ArrayView1<'a, u32>> for Labels<'a> {
    fn from(labels: ArrayView1<'a, u32>) -> Self {
        Self(CowArray::from(labels.mapv(|y| y as usize)))
    }
}

/// `From` conversions into [`Labels`] and [`Targets`] (as hard labels) for the containers of `usize`
/// and `u32` labels.
macro_rules! label_containers {
    ($($index:ty),*) => {$(
        impl<'a> From<&'a [$index]> for Labels<'a> {
            fn from(labels: &'a [$index]) -> Self {
                ArrayView1::from(labels).into()
            }
        }
        impl<'a> From<&'a Vec<$index>> for Labels<'a> {
            fn from(labels: &'a Vec<$index>) -> Self {
                ArrayView1::from(labels.as_slice()).into()
            }
        }
        impl<'a> From<&'a Array1<$index>> for Labels<'a> {
            fn from(labels: &'a Array1<$index>) -> Self {
                labels.view().into()
            }
        }
        impl<'a, F: Float> From<&'a [$index]> for Targets<'a, F> {
            fn from(labels: &'a [$index]) -> Self {
                Self::labels(labels)
            }
        }
        impl<'a, F: Float> From<&'a Vec<$index>> for Targets<'a, F> {
            fn from(labels: &'a Vec<$index>) -> Self {
                Self::labels(labels)
            }
        }
        impl<'a, F: Float> From<&'a Array1<$index>> for Targets<'a, F> {
            fn from(labels: &'a Array1<$index>) -> Self {
                Self::labels(labels)
            }
        }
        impl<'a, F: Float> From<ArrayView1<'a, $index>> for Targets<'a, F> {
            fn from(labels: ArrayView1<'a, $index>) -> Self {
                Self::labels(labels)
            }
        }
    )*};
}

label_containers!(usize, u32);

// Arrays of `usize` only: a literal `&[0, 2, 1]` then needs no suffix.
impl<'a, const N: usize> From<&'a [usize; N]> for Labels<'a> {
    fn from(labels: &'a [usize; N]) -> Self {
        ArrayView1::from(&labels[..]).into()
    }
}

impl<'a, F: Float, const N: usize> From<&'a [usize; N]> for Targets<'a, F> {
    fn from(labels: &'a [usize; N]) -> Self {
        Self::labels(labels)
    }
}

impl<'a, F: Float> From<&'a Array2<F>> for Targets<'a, F> {
    fn from(probs: &'a Array2<F>) -> Self {
        Self::probs(probs.view())
    }
}

impl<'a, F: Float> From<ArrayView2<'a, F>> for Targets<'a, F> {
    fn from(probs: ArrayView2<'a, F>) -> Self {
        Self::probs(probs)
    }
}

impl<'a, F: Float> From<&'a ArrayView2<'_, F>> for Targets<'a, F> {
    fn from(probs: &'a ArrayView2<'_, F>) -> Self {
        Self::probs(probs.view())
    }
}

impl<'a, F: Float> From<&'a ArrayView1<'_, usize>> for Targets<'a, F> {
    fn from(labels: &'a ArrayView1<'_, usize>) -> Self {
        Self::labels(labels.view())
    }
}

impl<'a, F: Float> From<&'a ArrayView1<'_, u32>> for Targets<'a, F> {
    fn from(labels: &'a ArrayView1<'_, u32>) -> Self {
        Self::labels(labels.view())
    }
}

impl<'a, 'b, F: Float> From<&'b Targets<'a, F>> for Targets<'a, F> {
    fn from(targets: &'b Targets<'a, F>) -> Self {
        targets.clone()
    }
}
