//! Class weights from class counts, and the deferred re-weighting schedule that switches them on.

use ndarray::Array1;

use super::Prior;
use crate::{Error, Float, Result};

/// How class weights `w_k` are derived from class counts `n_k` (`n = Σ n_k`, `K` classes).
///
/// | scheme | `w_k` | constructor |
/// |---|---|---|
/// | inverse frequency (scikit-learn's `"balanced"`) | `n / (K·n_k)` | [`inverse_frequency`](Self::inverse_frequency) |
/// | power | `n_k^(−p)` | [`power`](Self::power) |
/// | effective number (Cui et al. 2019) | `(1 − β) / (1 − β^{n_k})` | [`effective_number`](Self::effective_number) |
///
/// [`rescaled`](Self::rescaled) multiplies them by `K / Σ_j w_j` so that they sum to `K` (as Cui
/// et al. and LDAM-DRW do). A class of count 0 has no finite weight and is an error.
///
/// # Example
///
/// ```
/// use longtail::SoftmaxLoss;
/// use longtail::prior::{ClassWeights, Prior};
///
/// let prior = Prior::from_counts(&[900.0, 90.0, 10.0])?;
/// let w = ClassWeights::inverse_frequency().weights::<f32>(&prior)?;
/// assert_eq!(w[2], 1000.0 / (3.0 * 10.0));
/// let loss = SoftmaxLoss::class_weighted(&w)?;
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - Y. Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019,
///   arXiv:1901.05555.
/// - G. King, L. Zeng, "Logistic Regression in Rare Events Data", Political Analysis 9(2), 2001
///   (scikit-learn's `compute_class_weight("balanced")`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassWeights {
    scheme: Scheme,
    rescale: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scheme {
    InverseFrequency,
    Power(f64),
    EffectiveNumber(f64),
}

impl ClassWeights {
    /// `w_k = n / (K·n_k)`: scikit-learn's `compute_class_weight("balanced")`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::{ClassWeights, Prior};
    /// let w = ClassWeights::inverse_frequency().weights::<f64>(&Prior::from_counts(&[3.0, 1.0])?)?;
    /// assert_eq!(w.to_vec(), vec![4.0 / 6.0, 2.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// King & Zeng 2001; scikit-learn `sklearn.utils.class_weight.compute_class_weight`.
    pub fn inverse_frequency() -> Self {
        Self { scheme: Scheme::InverseFrequency, rescale: false }
    }

    /// `w_k = n_k^(−p)`: `p = 1` is inverse frequency up to scale, `p = 1/2` its square root,
    /// `p = 0` uniform.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"p"`) for a negative or non-finite `p`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::{ClassWeights, Prior};
    /// let w = ClassWeights::power(0.5)?.weights::<f64>(&Prior::from_counts(&[100.0, 4.0])?)?;
    /// assert_eq!(w.to_vec(), vec![0.1, 0.5]);
    /// assert!(ClassWeights::power(-1.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// D. Mahajan et al., "Exploring the Limits of Weakly Supervised Pretraining", ECCV 2018,
    /// arXiv:1805.00932 (square-root re-weighting).
    pub fn power(p: f64) -> Result<Self> {
        if !(p.is_finite() && p >= 0.0) {
            return Err(Error::InvalidParameter {
                name: "p",
                index: None,
                value: p,
                expected: "finite and >= 0",
            });
        }
        Ok(Self { scheme: Scheme::Power(p), rescale: false })
    }

    /// `w_k = (1 − β) / (1 − β^{n_k})`, the inverse effective number of samples; `β → 1`
    /// approaches inverse frequency, `β = 0` is uniform. Cui et al. use `β = 0.9999`
    /// ([`DEFAULT_BETA`](Self::DEFAULT_BETA)).
    ///
    /// Computed as `(1 − β) / −expm1(n_k·ln β)`, accurate for `β` near 1 and small counts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"beta"`) for `β` outside `[0, 1)`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::{ClassWeights, Prior};
    /// let weights = ClassWeights::effective_number(ClassWeights::DEFAULT_BETA)?;
    /// let w = weights.weights::<f64>(&Prior::from_counts(&[10000.0, 10.0])?)?;
    /// assert!(w[1] > 50.0 * w[0]);
    /// assert!(ClassWeights::effective_number(1.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Y. Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019,
    /// arXiv:1901.05555.
    pub fn effective_number(beta: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&beta) {
            return Err(Error::InvalidParameter {
                name: "beta",
                index: None,
                value: beta,
                expected: "in [0, 1)",
            });
        }
        Ok(Self { scheme: Scheme::EffectiveNumber(beta), rescale: false })
    }

    /// The `β` Cui et al. recommend for large data sets: `0.9999`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::ClassWeights;
    /// assert!(ClassWeights::effective_number(ClassWeights::DEFAULT_BETA).is_ok());
    /// ```
    pub const DEFAULT_BETA: f64 = 0.9999;

    /// Rescales the weights to sum to `K`: `w_k · K / Σ_j w_j`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::{ClassWeights, Prior};
    /// let w = ClassWeights::power(1.0)?.rescaled().weights::<f64>(&Prior::from_counts(&[3.0, 1.0])?)?;
    /// assert_eq!(w.to_vec(), vec![0.5, 1.5]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Cui et al. 2019, arXiv:1901.05555 (weights normalised to sum to the number of classes).
    pub fn rescaled(mut self) -> Self {
        self.rescale = true;
        self
    }

    /// The weights for a prior's counts, one per class, as `F`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"counts"`, with the class) for a class of count 0 (unless
    /// the scheme is uniform: `p = 0` or `β = 0`); [`Error::Overflow`] (`"class weight"`, with the
    /// class and its count) for a weight beyond the range of `F`. Rescaled weights are computed
    /// relative to the largest (from logarithms where need be) where the weights themselves would
    /// overflow or fall below the normal range (counts near `1e-308` or `1e308`, a large `p`),
    /// so they overflow only when the result does.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::{ClassWeights, Prior};
    /// let prior = Prior::from_counts(&[5.0, 0.0])?;
    /// assert!(ClassWeights::inverse_frequency().weights::<f64>(&prior).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Cui et al. 2019, arXiv:1901.05555; King & Zeng 2001.
    pub fn weights<F: Float>(&self, prior: &Prior) -> Result<Array1<F>> {
        let weights = self.weights_f64(prior)?;
        let out: Array1<F> = weights.iter().map(|&w| F::from_f64(w)).collect();
        match out.iter().position(|w| !w.is_finite()) {
            Some(k) => Err(Error::Overflow {
                what: "class weight",
                row: None,
                class: Some(k),
                value: Some(prior.counts()[k]),
            }),
            None => Ok(out),
        }
    }

    fn weights_f64(&self, prior: &Prior) -> Result<Vec<f64>> {
        let classes = prior.classes() as f64;
        let weight = |n: f64| match self.scheme {
            // `n/n_k >= 1` first, so that `K·n_k` never overflows.
            Scheme::InverseFrequency => match prior.total() / n {
                ratio if ratio.is_finite() => ratio / classes,
                _ => prior.total() / classes / n,
            },
            Scheme::Power(p) => n.powf(-p),
            Scheme::EffectiveNumber(0.0) => 1.0,
            Scheme::EffectiveNumber(beta) => {
                let t = n * beta.ln();
                if t > -SMALL_EXPONENT {
                    // `1 − β^n ≈ −n·ln β·(1 + n·ln β/2)`: without the product `n·ln β`, which
                    // underflows (or loses digits) for a subnormal count.
                    (1.0 - beta) / -beta.ln() / n / (1.0 + t / 2.0)
                } else {
                    (1.0 - beta) / -t.exp_m1()
                }
            }
        };
        let counts = prior.counts();
        let uniform = matches!(self.scheme, Scheme::Power(0.0) | Scheme::EffectiveNumber(0.0));
        if let Some(k) = counts.iter().position(|&n| n == 0.0 && !uniform) {
            return Err(zero_count(k, counts[k]));
        }
        let weights: Vec<f64> = counts.iter().map(|&n| weight(n)).collect();
        let finite = weights.iter().all(|w| w.is_finite());
        if !self.rescale {
            return match weights.iter().position(|w| !w.is_finite()) {
                Some(k) => Err(Error::Overflow {
                    what: "class weight",
                    row: None,
                    class: Some(k),
                    value: Some(counts[k]),
                }),
                None => Ok(weights),
            };
        }
        let sum: f64 = weights.iter().sum();
        let rescale = |w: &[f64], sum: f64| w.iter().map(|w| w / sum * classes).collect();
        if finite && sum.is_finite() && weights.iter().all(|&w| w >= f64::MIN_POSITIVE) {
            return Ok(rescale(&weights, sum));
        }
        // Weights beyond the range or below the normal one (tiny or huge counts, a large `p`),
        // rescaled without forming them: for `n^{−p}` (and `1/n`) as `(n / n_min)^{−p}`, at most
        // 1 (from logarithms where the ratio overflows); for the effective number from
        // logarithms, `K·e^{ln w_k − max ln w} / Σ e^{ln w_j − max ln w}`.
        let relative: Vec<f64> = match self.scheme {
            Scheme::InverseFrequency | Scheme::Power(_) => {
                let p = if let Scheme::Power(p) = self.scheme { p } else { 1.0 };
                let min = counts.iter().fold(f64::INFINITY, |m, &n| m.min(n));
                let relative = |n: f64| match n / min {
                    ratio if ratio.is_finite() => ratio.powf(-p),
                    _ => (-p * (n.ln() - min.ln())).exp(),
                };
                counts.iter().map(|&n| relative(n)).collect()
            }
            Scheme::EffectiveNumber(beta) => {
                let ln_weight = |n: f64| {
                    let t = n * beta.ln();
                    let ln_denominator = if t > -SMALL_EXPONENT {
                        n.ln() + (-beta.ln()).ln() + (t / 2.0).ln_1p()
                    } else {
                        (-t.exp_m1()).ln()
                    };
                    (1.0 - beta).ln() - ln_denominator
                };
                let logs: Vec<f64> = counts.iter().map(|&n| ln_weight(n)).collect();
                let max = logs.iter().fold(f64::NEG_INFINITY, |m, &l| m.max(l));
                logs.iter().map(|l| (l - max).exp()).collect()
            }
        };
        Ok(rescale(&relative, relative.iter().sum()))
    }
}

/// Below this `|n·ln β|`, `1 − β^n` is `−n·ln β·(1 + n·ln β/2)` to the rounding of `f64`.
const SMALL_EXPONENT: f64 = 1e-9;

fn zero_count(class: usize, count: f64) -> Error {
    Error::InvalidParameter {
        name: "counts",
        index: Some(class),
        value: count,
        expected: "large enough for a finite class weight (> 0; smooth zero counts first)",
    }
}

/// Deferred re-weighting (DRW, Cao et al. 2019): uniform class weights until epoch `E`, the
/// class-balanced weights from epoch `E` on (epochs count from 0).
///
/// The weights are computed once, when the schedule is built. LDAM-DRW uses
/// `ClassWeights::effective_number(0.9999).rescaled()` from epoch 160 of 200.
///
/// # Example
///
/// ```
/// use longtail::SoftmaxLoss;
/// use longtail::prior::{ClassWeights, DeferredReweighting, Prior};
///
/// let prior = Prior::from_counts(&[500.0, 50.0, 5.0])?;
/// let weights = ClassWeights::effective_number(ClassWeights::DEFAULT_BETA)?.rescaled();
/// let drw = DeferredReweighting::new(160, weights, &prior)?;
/// assert_eq!(drw.weights_at::<f32>(0).to_vec(), vec![1.0; 3]);
/// let late = drw.weights_at::<f32>(160);
/// assert!(late[2] > late[1] && late[1] > late[0]);
/// let loss = SoftmaxLoss::class_weighted(&late)?;
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// K. Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
/// NeurIPS 2019, arXiv:1906.07413.
#[derive(Debug, Clone, PartialEq)]
pub struct DeferredReweighting {
    start_epoch: usize,
    weights: Vec<f64>,
}

impl DeferredReweighting {
    /// Uniform weights before `start_epoch`, `weights` of `prior` from `start_epoch` on.
    ///
    /// # Errors
    ///
    /// The errors of [`ClassWeights::weights`] for this prior, in `f32`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::{ClassWeights, DeferredReweighting, Prior};
    /// let prior = Prior::from_counts(&[1.0, 0.0])?;
    /// assert!(DeferredReweighting::new(5, ClassWeights::inverse_frequency(), &prior).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Cao et al. 2019, arXiv:1906.07413.
    pub fn new(start_epoch: usize, weights: ClassWeights, prior: &Prior) -> Result<Self> {
        // Checked in f32, the narrowest float, so `weights_at` cannot overflow for any `F`.
        weights.weights::<f32>(prior)?;
        Ok(Self { start_epoch, weights: weights.weights_f64(prior)? })
    }

    /// The first epoch with class-balanced weights.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::{ClassWeights, DeferredReweighting, Prior};
    /// let prior = Prior::from_counts(&[1.0, 2.0])?;
    /// assert_eq!(DeferredReweighting::new(3, ClassWeights::inverse_frequency(), &prior)?.start_epoch(), 3);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn start_epoch(&self) -> usize {
        self.start_epoch
    }

    /// The class weights to train epoch `epoch` with: all ones before the start epoch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::{ClassWeights, DeferredReweighting, Prior};
    /// let prior = Prior::from_counts(&[3.0, 1.0])?;
    /// let drw = DeferredReweighting::new(2, ClassWeights::inverse_frequency(), &prior)?;
    /// assert_eq!(drw.weights_at::<f64>(1).to_vec(), vec![1.0, 1.0]);
    /// assert_eq!(drw.weights_at::<f64>(2).to_vec(), vec![4.0 / 6.0, 2.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Cao et al. 2019, arXiv:1906.07413.
    pub fn weights_at<F: Float>(&self, epoch: usize) -> Array1<F> {
        if epoch < self.start_epoch {
            Array1::ones(self.weights.len())
        } else {
            self.weights.iter().map(|&w| F::from_f64(w)).collect()
        }
    }
}
