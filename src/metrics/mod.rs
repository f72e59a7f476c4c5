//! The metrics long-tail papers report, over hard labels and predictions (`&[usize]` or
//! `ArrayView1<usize>`) with an explicit number of classes `K`; values are `f64`.
//!
//! [`ConfusionMatrix`] holds the counts and reads every score off them; the free functions are
//! shortcuts for one score. A class absent from the labels (or the predictions) is handled as
//! scikit-learn does: see [`ConfusionMatrix`]. [`ShotSplit`] groups classes into many-, medium-
//! and few-shot by their training counts.

mod confusion;
mod shots;

pub use confusion::ConfusionMatrix;
pub(crate) use confusion::check_predictions;
pub use shots::{Shot, ShotReport, ShotSplit};

use crate::Labels;
use crate::Result;

/// Accuracy: the fraction of predictions equal to the label.
///
/// # Errors
///
/// The errors of [`ConfusionMatrix::new`].
///
/// # Example
///
/// ```
/// assert_eq!(longtail::metrics::accuracy(&[0, 1, 1, 2], &[0, 1, 0, 2], 3)?, 0.75);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// scikit-learn `sklearn.metrics.accuracy_score`.
pub fn accuracy<'a>(
    labels: impl Into<Labels<'a>>,
    predictions: impl Into<Labels<'a>>,
    classes: usize,
) -> Result<f64> {
    Ok(ConfusionMatrix::new(labels, predictions, classes)?.accuracy())
}

/// Balanced accuracy: the mean per-class recall over the classes present in the labels.
///
/// # Errors
///
/// The errors of [`ConfusionMatrix::new`].
///
/// # Example
///
/// ```
/// // Class 0: 1 of 3 right; class 1: 1 of 1 right.
/// assert_eq!(longtail::metrics::balanced_accuracy(&[0, 0, 0, 1], &[0, 1, 1, 1], 2)?, 2.0 / 3.0);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// scikit-learn `sklearn.metrics.balanced_accuracy_score`; K. H. Brodersen et al., "The balanced
/// accuracy and its posterior distribution", ICPR 2010.
pub fn balanced_accuracy<'a>(
    labels: impl Into<Labels<'a>>,
    predictions: impl Into<Labels<'a>>,
    classes: usize,
) -> Result<f64> {
    Ok(ConfusionMatrix::new(labels, predictions, classes)?.balanced_accuracy())
}

/// Macro-F1: the mean per-class F1 over the classes present in the labels or the predictions.
///
/// # Errors
///
/// The errors of [`ConfusionMatrix::new`].
///
/// # Example
///
/// ```
/// let f1 = longtail::metrics::macro_f1(&[0, 0, 1, 1], &[0, 0, 1, 0], 2)?;
/// assert!((f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-15);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// scikit-learn `sklearn.metrics.f1_score(average="macro")`.
pub fn macro_f1<'a>(
    labels: impl Into<Labels<'a>>,
    predictions: impl Into<Labels<'a>>,
    classes: usize,
) -> Result<f64> {
    Ok(ConfusionMatrix::new(labels, predictions, classes)?.macro_f1())
}
