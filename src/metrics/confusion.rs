//! The confusion matrix and the per-class and averaged scores read from it.

use ndarray::{Array2, ArrayView1, ArrayView2};

use crate::Labels;
use crate::{Error, Result};

/// Counts of (true class, predicted class) pairs: entry `[i, j]` is the number of samples of true
/// class `i` predicted as `j` (scikit-learn's `confusion_matrix` orientation), over `K` classes
/// given explicitly, so classes absent from both sides keep their row and column.
///
/// With `tp_k = C[k, k]`, support `s_k = Σ_j C[k, j]` (row sum) and predicted count
/// `c_k = Σ_i C[i, k]` (column sum):
///
/// - recall `r_k = tp_k / s_k`, undefined (`None`) for a class absent from the labels;
/// - precision `p_k = tp_k / c_k`, undefined (`None`) for a class never predicted;
/// - F1 `f_k = 2·tp_k / (s_k + c_k)`, undefined (`None`) only for a class absent from both; a
///   class with an undefined precision or recall but present on one side has `f_k = 0`.
///
/// The averages follow scikit-learn exactly: [`balanced_accuracy`](Self::balanced_accuracy)
/// (`balanced_accuracy_score`) averages recall over the classes present in the labels;
/// [`macro_f1`](Self::macro_f1) (`f1_score(average="macro")`) averages F1 over the classes present
/// in the labels or the predictions.
///
/// Confusion matrices of the same `K` [`merge`](Self::merge) by addition (data-parallel
/// evaluation).
///
/// # Example
///
/// ```
/// use longtail::metrics::ConfusionMatrix;
///
/// // Class 2 is never seen and never predicted: it is left out of every average.
/// let cm = ConfusionMatrix::new(&[0, 0, 1, 1, 1], &[0, 1, 1, 1, 0], 3)?;
/// assert_eq!(cm.counts()[[1, 0]], 1);
/// assert_eq!(cm.accuracy(), 0.6);
/// assert_eq!(cm.balanced_accuracy(), (0.5 + 2.0 / 3.0) / 2.0);
/// assert_eq!(cm.recalls()[2], None);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - scikit-learn `sklearn.metrics.confusion_matrix`, `balanced_accuracy_score`,
///   `precision_recall_fscore_support`, `f1_score`.
/// - K. H. Brodersen et al., "The balanced accuracy and its posterior distribution", ICPR 2010.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    counts: Array2<u64>,
}

impl ConfusionMatrix {
    /// Counts the pairs `(labels[i], predictions[i])` over `classes` classes.
    ///
    /// # Errors
    ///
    /// In this order: [`Error::NoClasses`] if `classes` is 0; [`Error::EmptyBatch`] for no
    /// labels; [`Error::ShapeMismatch`] (`"predictions"`) for lengths that differ;
    /// [`Error::LabelOutOfRange`] for a label `≥ K`; [`Error::PredictionOutOfRange`] for a
    /// prediction `≥ K`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Error;
    /// use longtail::metrics::ConfusionMatrix;
    ///
    /// let cm = ConfusionMatrix::new(&[1, 0], &[1, 1], 2)?;
    /// assert_eq!(cm.counts().to_owned(), ndarray::array![[0, 1], [0, 1]]);
    /// let err = ConfusionMatrix::new(&[1, 0], &[1, 2], 2).unwrap_err();
    /// assert_eq!(err, Error::PredictionOutOfRange { row: 1, prediction: 2, classes: 2 });
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// scikit-learn `sklearn.metrics.confusion_matrix` (with `labels=range(K)`).
    pub fn new<'a>(
        labels: impl Into<Labels<'a>>,
        predictions: impl Into<Labels<'a>>,
        classes: usize,
    ) -> Result<Self> {
        let (labels, predictions) = (labels.into(), predictions.into());
        if classes == 0 {
            return Err(Error::NoClasses);
        }
        if labels.is_empty() {
            return Err(Error::EmptyBatch);
        }
        crate::error::check_shape("predictions", labels.shape(), predictions.shape())?;
        if let Some(row) = labels.iter().position(|&y| y >= classes) {
            return Err(Error::LabelOutOfRange { row, label: labels[row], classes });
        }
        check_predictions(predictions.view(), classes)?;
        let mut counts = Array2::zeros((classes, classes));
        labels.iter().zip(predictions.iter()).for_each(|(&y, &p)| counts[[y, p]] += 1);
        Ok(Self { counts })
    }

    /// The number of classes `K`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::ConfusionMatrix;
    /// assert_eq!(ConfusionMatrix::new(&[0], &[0], 4)?.classes(), 4);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn classes(&self) -> usize {
        self.counts.nrows()
    }

    /// The `[K, K]` counts: rows are true classes, columns predicted classes.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::ConfusionMatrix;
    /// let cm = ConfusionMatrix::new(&[0, 1], &[1, 1], 2)?;
    /// assert_eq!(cm.counts()[[0, 1]], 1);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn counts(&self) -> ArrayView2<'_, u64> {
        self.counts.view()
    }

    /// The number of samples counted.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::ConfusionMatrix;
    /// assert_eq!(ConfusionMatrix::new(&[0, 1, 1], &[1, 1, 0], 2)?.total(), 3);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn total(&self) -> u64 {
        self.counts.sum()
    }

    /// Adds another confusion matrix's counts (the samples of both).
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] (`"confusion_matrix"`) for a different `K`;
    /// [`Error::Overflow`] (`"confusion matrix counts"`) if a count or the total would exceed
    /// `u64::MAX`. `self` is then unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::ConfusionMatrix;
    /// let mut cm = ConfusionMatrix::new(&[0, 1], &[0, 0], 2)?;
    /// cm.merge(&ConfusionMatrix::new(&[1], &[1], 2)?)?;
    /// assert_eq!(cm, ConfusionMatrix::new(&[0, 1, 1], &[0, 0, 1], 2)?);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn merge(&mut self, other: &ConfusionMatrix) -> Result<()> {
        crate::error::check_shape("confusion_matrix", self.counts.shape(), other.counts.shape())?;
        // Checked before anything is added: a count that would wrap leaves `self` unchanged.
        let total = self.total().checked_add(other.total());
        if total.is_none() || self.counts.iter().zip(&other.counts).any(|(a, b)| a.checked_add(*b).is_none())
        {
            return Err(Error::Overflow {
                what: "confusion matrix counts",
                row: None,
                class: None,
                value: None,
            });
        }
        self.counts += &other.counts;
        Ok(())
    }

    /// Accuracy: `Σ_k tp_k / n`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::ConfusionMatrix;
    /// assert_eq!(ConfusionMatrix::new(&[0, 1, 1, 1], &[0, 0, 1, 1], 2)?.accuracy(), 0.75);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// scikit-learn `sklearn.metrics.accuracy_score`.
    pub fn accuracy(&self) -> f64 {
        self.counts.diag().sum() as f64 / self.total() as f64
    }

    /// Per-class recall `tp_k / s_k`; `None` for a class absent from the labels.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::ConfusionMatrix;
    /// let cm = ConfusionMatrix::new(&[0, 0, 1], &[0, 1, 1], 3)?;
    /// assert_eq!(cm.recalls(), vec![Some(0.5), Some(1.0), None]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// scikit-learn `precision_recall_fscore_support(average=None, zero_division=np.nan)`.
    pub fn recalls(&self) -> Vec<Option<f64>> {
        (0..self.classes()).map(|k| ratio(self.counts[[k, k]], self.support(k))).collect()
    }

    /// Per-class precision `tp_k / c_k`; `None` for a class never predicted.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::ConfusionMatrix;
    /// let cm = ConfusionMatrix::new(&[0, 0, 1], &[0, 1, 1], 3)?;
    /// assert_eq!(cm.precisions(), vec![Some(1.0), Some(0.5), None]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// scikit-learn `precision_recall_fscore_support(average=None, zero_division=np.nan)`.
    pub fn precisions(&self) -> Vec<Option<f64>> {
        (0..self.classes()).map(|k| ratio(self.counts[[k, k]], self.predicted(k))).collect()
    }

    /// Per-class F1 `2·tp_k / (s_k + c_k)`; `None` for a class absent from both the labels and the
    /// predictions (0 for a class present on one side only).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::ConfusionMatrix;
    /// let cm = ConfusionMatrix::new(&[0, 0, 1], &[0, 2, 1], 4)?;
    /// assert_eq!(cm.f1_scores(), vec![Some(2.0 / 3.0), Some(1.0), Some(0.0), None]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// scikit-learn `precision_recall_fscore_support(average=None, zero_division=np.nan)`.
    pub fn f1_scores(&self) -> Vec<Option<f64>> {
        (0..self.classes())
            .map(|k| {
                // `2·tp` and `support + predicted` exceed u64 for counts above 2^63: in u128.
                let (tp, n) =
                    (self.counts[[k, k]] as u128, self.support(k) as u128 + self.predicted(k) as u128);
                (n > 0).then(|| (2 * tp) as f64 / n as f64)
            })
            .collect()
    }

    /// Balanced accuracy: the mean recall over the classes present in the labels (those absent
    /// have no recall and are left out, as scikit-learn's `balanced_accuracy_score` does).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::ConfusionMatrix;
    /// // Class 2 is predicted but never a label: it does not count.
    /// let cm = ConfusionMatrix::new(&[0, 0, 1, 1], &[0, 2, 1, 1], 3)?;
    /// assert_eq!(cm.balanced_accuracy(), 0.75);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// scikit-learn `sklearn.metrics.balanced_accuracy_score` (`adjusted=False`); Brodersen et al.
    /// 2010; Menon et al. 2020, arXiv:2007.07314 (the balanced error).
    pub fn balanced_accuracy(&self) -> f64 {
        mean(self.recalls().into_iter().flatten())
    }

    /// Macro-F1: the mean F1 over the classes present in the labels or the predictions, as
    /// scikit-learn's `f1_score(average="macro")` with its default label set.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::ConfusionMatrix;
    /// let cm = ConfusionMatrix::new(&[0, 0, 1], &[0, 2, 1], 4)?;
    /// assert_eq!(cm.macro_f1(), (2.0 / 3.0 + 1.0 + 0.0) / 3.0); // class 3 is left out
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// scikit-learn `sklearn.metrics.f1_score(average="macro")`.
    pub fn macro_f1(&self) -> f64 {
        mean(self.f1_scores().into_iter().flatten())
    }

    /// The lowest recall over the classes present in the labels.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::ConfusionMatrix;
    /// let cm = ConfusionMatrix::new(&[0, 0, 1, 1], &[0, 0, 1, 0], 3)?;
    /// assert_eq!(cm.worst_class_recall(), 0.5);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// A. K. Menon et al., "Long-tail learning via logit adjustment", arXiv:2007.07314 (worst-class
    /// error); S. Sagawa et al., "Distributionally Robust Neural Networks", arXiv:1911.08731.
    pub fn worst_class_recall(&self) -> f64 {
        self.recalls().into_iter().flatten().fold(f64::INFINITY, f64::min)
    }

    /// The geometric mean of the recalls over the classes present in the labels:
    /// `(Π_k r_k)^(1/|present|)`, computed as `exp(mean log r_k)`; 0 if any recall is 0.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::ConfusionMatrix;
    /// let cm = ConfusionMatrix::new(&[0, 0, 0, 0, 1], &[0, 0, 0, 0, 1], 2)?;
    /// assert_eq!(cm.geometric_mean_recall(), 1.0);
    /// let cm = ConfusionMatrix::new(&[0, 0, 1, 1], &[0, 1, 1, 1], 2)?;
    /// assert!((cm.geometric_mean_recall() - 0.5f64.sqrt()).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// M. Kubat, S. Matwin, "Addressing the Curse of Imbalanced Training Sets: One-Sided
    /// Selection", ICML 1997; imbalanced-learn `geometric_mean_score`.
    pub fn geometric_mean_recall(&self) -> f64 {
        mean(self.recalls().into_iter().flatten().map(f64::ln)).exp()
    }

    /// Row sum `s_k`: the samples of true class `k`.
    pub(crate) fn support(&self, k: usize) -> u64 {
        self.counts.row(k).sum()
    }

    /// Column sum `c_k`: the samples predicted as `k`.
    fn predicted(&self, k: usize) -> u64 {
        self.counts.column(k).sum()
    }
}

/// Fails with [`Error::PredictionOutOfRange`] for the first prediction `≥ classes`.
pub(crate) fn check_predictions(predictions: ArrayView1<'_, usize>, classes: usize) -> Result<()> {
    match predictions.iter().position(|&p| p >= classes) {
        Some(row) => Err(Error::PredictionOutOfRange { row, prediction: predictions[row], classes }),
        None => Ok(()),
    }
}

/// `a / b`, undefined when `b = 0`.
fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// The mean of a non-empty iterator (every matrix has a sample, so some class is present).
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0_usize), |(s, n), v| (s + v, n + 1));
    sum / n as f64
}
