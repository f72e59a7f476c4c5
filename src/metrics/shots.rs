//! The many/medium/few-shot split of classes by training counts, and the accuracy of each group.

use super::ConfusionMatrix;
use crate::{Error, Prior, Result};

/// How many training samples make a class many-, medium- or few-shot.
///
/// A class with training count `n_k` is **many-shot** if `n_k > many_above`, **few-shot** if
/// `n_k < few_below`, and **medium-shot** otherwise. The default, `many_above = 100`,
/// `few_below = 20`, is the convention of Liu et al. 2019 (ImageNet-LT, Places-LT), followed by
/// most long-tail papers: many `> 100`, medium `20..=100`, few `< 20`.
///
/// # Example
///
/// ```
/// use longtail::metrics::{Shot, ShotSplit};
///
/// let split = ShotSplit::default();
/// assert_eq!(split.shot(101.0)?, Shot::Many);
/// assert_eq!(split.shot(100.0)?, Shot::Medium);
/// assert_eq!(split.shot(20.0)?, Shot::Medium);
/// assert_eq!(split.shot(19.0)?, Shot::Few);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Z. Liu et al., "Large-Scale Long-Tailed Recognition in an Open World", CVPR 2019,
/// arXiv:1904.05160 (and its code's `shot_acc`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShotSplit {
    many_above: f64,
    few_below: f64,
}

/// The group of a class in a [`ShotSplit`].
///
/// # Example
///
/// ```
/// use longtail::metrics::{Shot, ShotSplit};
/// let groups = [500.0, 50.0, 5.0].iter().map(|&n| ShotSplit::default().shot(n)).collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(groups, [Shot::Many, Shot::Medium, Shot::Few]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Liu et al. 2019, arXiv:1904.05160.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shot {
    /// More than `many_above` training samples.
    Many,
    /// Between `few_below` and `many_above` training samples, both included.
    Medium,
    /// Fewer than `few_below` training samples.
    Few,
}

impl Default for ShotSplit {
    fn default() -> Self {
        Self { many_above: 100.0, few_below: 20.0 }
    }
}

impl ShotSplit {
    /// Many-shot above `many_above` samples, few-shot below `few_below`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`]: `"many_above"` if it is negative or not finite;
    /// `"few_below"` if it is negative, not finite or above `many_above`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::{Shot, ShotSplit};
    /// let split = ShotSplit::new(1000.0, 100.0)?;
    /// assert_eq!(split.shot(500.0)?, Shot::Medium);
    /// assert!(ShotSplit::new(10.0, 20.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Liu et al. 2019, arXiv:1904.05160.
    pub fn new(many_above: f64, few_below: f64) -> Result<Self> {
        if !(many_above.is_finite() && many_above >= 0.0) {
            return Err(Error::InvalidParameter {
                name: "many_above",
                index: None,
                value: many_above,
                expected: "finite and >= 0",
            });
        }
        if !(few_below.is_finite() && few_below >= 0.0 && few_below <= many_above) {
            return Err(Error::InvalidParameter {
                name: "few_below",
                index: None,
                value: few_below,
                expected: "finite, >= 0 and <= many_above",
            });
        }
        Ok(Self { many_above, few_below })
    }

    /// The many-shot threshold: classes with more training samples are many-shot.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::metrics::ShotSplit::default().many_above(), 100.0);
    /// ```
    pub fn many_above(&self) -> f64 {
        self.many_above
    }

    /// The few-shot threshold: classes with fewer training samples are few-shot.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::metrics::ShotSplit::default().few_below(), 20.0);
    /// ```
    pub fn few_below(&self) -> f64 {
        self.few_below
    }

    /// The group of a class with `count` training samples.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"count"`) for a negative or NaN count (`+inf` is many-shot).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::metrics::{Shot, ShotSplit};
    /// assert_eq!(ShotSplit::default().shot(3.0)?, Shot::Few);
    /// assert!(ShotSplit::default().shot(f64::NAN).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn shot(&self, count: f64) -> Result<Shot> {
        if count.is_nan() || count < 0.0 {
            return Err(Error::InvalidParameter {
                name: "count",
                index: None,
                value: count,
                expected: ">= 0 (not NaN)",
            });
        }
        Ok(if count > self.many_above {
            Shot::Many
        } else if count < self.few_below {
            Shot::Few
        } else {
            Shot::Medium
        })
    }

    /// The mean recall (per-class accuracy) of each group, over the classes of the group that are
    /// present in the evaluation labels; `None` for a group with no such class. Classes absent
    /// from the evaluation set are left out, as in Liu et al.'s `shot_acc`.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] (`"train_prior"`) if the prior's class count is not the
    /// matrix's `K`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Prior;
    /// use longtail::metrics::{ConfusionMatrix, ShotSplit};
    ///
    /// let train = Prior::from_counts(&[500.0, 50.0, 5.0])?;
    /// let cm = ConfusionMatrix::new(&[0, 0, 1, 1, 2, 2], &[0, 0, 1, 0, 0, 0], 3)?;
    /// let report = ShotSplit::default().report(&cm, &train)?;
    /// assert_eq!((report.many, report.medium, report.few), (Some(1.0), Some(0.5), Some(0.0)));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Liu et al. 2019, arXiv:1904.05160.
    pub fn report(&self, confusion: &ConfusionMatrix, train_prior: &Prior) -> Result<ShotReport> {
        crate::error::check_shape("train_prior", &[confusion.classes()], &[train_prior.classes()])?;
        let recalls = confusion.recalls();
        let group_mean = |shot: Shot| {
            let (sum, n) = recalls
                .iter()
                .zip(train_prior.counts())
                // A prior's counts are finite and >= 0.
                .filter(|&(_, &count)| self.shot(count).is_ok_and(|s| s == shot))
                .filter_map(|(recall, _)| *recall)
                .fold((0.0, 0_usize), |(s, n), r| (s + r, n + 1));
            (n > 0).then(|| sum / n as f64)
        };
        Ok(ShotReport {
            many: group_mean(Shot::Many),
            medium: group_mean(Shot::Medium),
            few: group_mean(Shot::Few),
        })
    }
}

/// The mean per-class recall of the many-, medium- and few-shot classes (see
/// [`ShotSplit::report`]).
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::metrics::{ConfusionMatrix, ShotSplit};
///
/// let cm = ConfusionMatrix::new(&[0, 1], &[0, 0], 2)?;
/// let report = ShotSplit::default().report(&cm, &Prior::from_counts(&[1000.0, 3.0])?)?;
/// assert_eq!((report.many, report.medium, report.few), (Some(1.0), None, Some(0.0)));
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Liu et al. 2019, arXiv:1904.05160.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShotReport {
    /// Many-shot classes' mean recall, or `None` if no such class is in the evaluation labels.
    pub many: Option<f64>,
    /// Medium-shot classes' mean recall, or `None` if no such class is in the evaluation labels.
    pub medium: Option<f64>,
    /// Few-shot classes' mean recall, or `None` if no such class is in the evaluation labels.
    pub few: Option<f64>,
}
