//! The batch statistics of the Tversky loss: per-class soft confusion sums that merge across workers.

use super::smooth_f1::SoftmaxSums;
use crate::error::check_shape;
use crate::{Error, Float, Result};

/// The soft confusion sums of a batch, per class `k`: true positives `TP_k = Σ_i s_i·y_ik·p_ik`,
/// false positives `FP_k = Σ_i s_i·(1 − y_ik)·p_ik`, false negatives `FN_k = Σ_i s_i·y_ik·(1 − p_ik)`,
/// and the total row weight `W = Σ_i s_i` (`B` without sample weights).
///
/// They are sums over rows, so the statistics of a global batch are the merge of the statistics
/// of its parts: a data-parallel trainer computes them on each worker
/// ([`TverskyLoss::stats`](crate::TverskyLoss::stats)), all-reduces them with its own engine
/// ([`merge`](Self::merge), or [`from_parts`](Self::from_parts) on summed arrays), and passes the
/// merged value to [`TverskyLoss::loss_and_grad_with_stats_into`](crate::TverskyLoss::loss_and_grad_with_stats_into).
/// Sums are kept in `f64`.
///
/// `TI_k = (TP_k + smooth) / max(TP_k + α·FP_k + β·FN_k + smooth, ε)`; at `α = β = 1/2` this is
/// the soft Dice (F1) of [`F1Stats`](crate::F1Stats): `2·TP/(2·TP + FP + FN)`.
///
/// # Example
///
/// ```
/// use longtail::TverskyLoss;
/// use ndarray::{array, s};
///
/// let logits = array![[2.0_f64, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, -1.0]];
/// let labels = [0, 1, 1, 0];
/// let loss = TverskyLoss::multiclass();
/// // Two workers, two rows each: merging their statistics gives the whole batch's.
/// let mut merged = loss.stats(&logits.slice(s![..2, ..]), &labels[..2])?;
/// merged.merge(&loss.stats(&logits.slice(s![2.., ..]), &labels[2..])?)?;
/// let whole = loss.stats(&logits, &labels)?;
/// assert_eq!(merged.weight(), whole.weight());
/// assert!((merged.tversky(0.5, 0.5, 0.0, 1e-7)[1] - whole.tversky(0.5, 0.5, 0.0, 1e-7)[1]).abs() < 1e-15);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// S. S. M. Salehi, D. Erdogmus, A. Gholipour, "Tversky loss function for image segmentation
/// using 3D fully convolutional deep networks", MLMI 2017, arXiv:1706.05721.
#[derive(Debug, Clone, PartialEq)]
pub struct TverskyStats {
    true_positive: Vec<f64>,
    false_positive: Vec<f64>,
    false_negative: Vec<f64>,
    weight: f64,
}

impl TverskyStats {
    /// Empty statistics over `classes` classes: all sums 0, the identity of [`merge`](Self::merge).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::TverskyStats;
    /// let empty = TverskyStats::new(3);
    /// assert_eq!((empty.classes(), empty.weight()), (3, 0.0));
    /// ```
    pub fn new(classes: usize) -> Self {
        let zeros = vec![0.0; classes];
        Self {
            true_positive: zeros.clone(),
            false_positive: zeros.clone(),
            false_negative: zeros,
            weight: 0.0,
        }
    }

    /// Statistics from their sums, e.g. after an all-reduce.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] (`"false_positive"`, `"false_negative"`) if a vector differs in
    /// length from `true_positive`; [`Error::InvalidParameter`] (`"true_positive"`,
    /// `"false_positive"`, `"false_negative"`, `"weight"`) for a negative or non-finite sum.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::TverskyStats;
    ///
    /// let stats = TverskyStats::from_parts(vec![3.0], vec![1.0], vec![2.0], 5.0)?;
    /// assert_eq!(stats.tversky(0.5, 0.5, 0.0, 1e-7), vec![2.0 / 3.0]); // 3 / (3 + 0.5 + 1)
    /// assert!(TverskyStats::from_parts(vec![3.0], vec![-1.0], vec![2.0], 5.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`TverskyStats`].
    pub fn from_parts(
        true_positive: Vec<f64>,
        false_positive: Vec<f64>,
        false_negative: Vec<f64>,
        weight: f64,
    ) -> Result<Self> {
        check_shape("false_positive", &[true_positive.len()], &[false_positive.len()])?;
        check_shape("false_negative", &[true_positive.len()], &[false_negative.len()])?;
        let valid = |v: f64| v.is_finite() && v >= 0.0;
        for (name, sums) in [
            ("true_positive", &true_positive),
            ("false_positive", &false_positive),
            ("false_negative", &false_negative),
        ] {
            if let Some(k) = sums.iter().position(|&v| !valid(v)) {
                return Err(Error::InvalidParameter {
                    name,
                    index: Some(k),
                    value: sums[k],
                    expected: "finite and >= 0",
                });
            }
        }
        if !valid(weight) {
            return Err(Error::InvalidParameter {
                name: "weight",
                index: None,
                value: weight,
                expected: "finite and >= 0",
            });
        }
        Ok(Self { true_positive, false_positive, false_negative, weight })
    }

    /// Adds `other`'s sums to these (both over the same classes).
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] (`"stats"`) if the class counts differ; `self` is then unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::TverskyStats;
    ///
    /// let mut a = TverskyStats::from_parts(vec![1.0], vec![0.5], vec![0.5], 2.0)?;
    /// a.merge(&TverskyStats::from_parts(vec![2.0], vec![1.0], vec![0.0], 3.0)?)?;
    /// assert_eq!((a.true_positive(), a.false_positive(), a.weight()), (&[3.0][..], &[1.5][..], 5.0));
    /// assert!(a.merge(&TverskyStats::new(2)).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`TverskyStats`].
    pub fn merge(&mut self, other: &TverskyStats) -> Result<()> {
        check_shape("stats", &[self.classes()], &[other.classes()])?;
        let add = |a: &mut Vec<f64>, b: &[f64]| a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        add(&mut self.true_positive, &other.true_positive);
        add(&mut self.false_positive, &other.false_positive);
        add(&mut self.false_negative, &other.false_negative);
        self.weight += other.weight;
        Ok(())
    }

    /// The number of classes `K`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::loss::TverskyStats::new(4).classes(), 4);
    /// ```
    pub fn classes(&self) -> usize {
        self.true_positive.len()
    }

    /// `TP_k = Σ_i s_i·y_ik·p_ik` per class.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::loss::TverskyStats::new(2).true_positive(), &[0.0, 0.0]);
    /// ```
    pub fn true_positive(&self) -> &[f64] {
        &self.true_positive
    }

    /// `FP_k = Σ_i s_i·(1 − y_ik)·p_ik` per class.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::loss::TverskyStats::new(2).false_positive(), &[0.0, 0.0]);
    /// ```
    pub fn false_positive(&self) -> &[f64] {
        &self.false_positive
    }

    /// `FN_k = Σ_i s_i·y_ik·(1 − p_ik)` per class.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::loss::TverskyStats::new(2).false_negative(), &[0.0, 0.0]);
    /// ```
    pub fn false_negative(&self) -> &[f64] {
        &self.false_negative
    }

    /// The total row weight `W = Σ_i s_i`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::loss::TverskyStats::new(2).weight(), 0.0);
    /// ```
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// The soft per-class Tversky index `TI_k = (TP_k + smooth) / max(TP_k + α·FP_k + β·FN_k + smooth, ε)`.
    ///
    /// # Example
    ///
    /// ```
    /// let stats = longtail::loss::TverskyStats::from_parts(vec![1.0], vec![1.0], vec![0.0], 2.0)?;
    /// assert_eq!(stats.tversky(0.5, 0.5, 0.0, 1e-7), vec![1.0 / 1.5]);
    /// assert_eq!(stats.tversky(0.0, 1.0, 0.0, 1e-7), vec![1.0]); // false positives ignored
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn tversky(&self, alpha: f64, beta: f64, smooth: f64, eps: f64) -> Vec<f64> {
        (0..self.classes())
            .map(|k| {
                let tp = self.true_positive[k];
                (tp + smooth)
                    / (tp + alpha * self.false_positive[k] + beta * self.false_negative[k] + smooth).max(eps)
            })
            .collect()
    }

    /// Adds one decision of weight `s`, target `y` and probability `p` to class `k`.
    #[inline(always)]
    pub(super) fn add(&mut self, k: usize, s: f64, y: f64, (p, q): (f64, f64)) {
        self.true_positive[k] += s * y * p;
        self.false_positive[k] += s * (1.0 - y) * p;
        self.false_negative[k] += s * y * q;
    }
}

impl SoftmaxSums for TverskyStats {
    fn empty(classes: usize) -> Self {
        TverskyStats::new(classes)
    }

    #[inline(always)]
    fn add_weight(&mut self, s: f64) {
        self.weight += s;
    }

    #[inline(always)]
    fn add_row<F: Float>(&mut self, s: f64, y: &[F], e: &[F], inv_total: F) {
        // 1 − p_k: for the argmax (where e_k = 1) the others' share, which `1 − p` would round
        // away as p → 1; elsewhere p ≤ 1/2 and `1 − p` is exact.
        let argmax = e.iter().position(|&e| e == F::one());
        let rest: f64 = argmax
            .map_or(0.0, |a| e.iter().enumerate().filter(|&(j, _)| j != a).map(|(_, &e)| e.as_f64()).sum());
        for (k, (&y, &e)) in y.iter().zip(e).enumerate() {
            let p = (e * inv_total).as_f64();
            let q = if Some(k) == argmax { rest * inv_total.as_f64() } else { 1.0 - p };
            self.add(k, s, y.as_f64(), (p, q));
        }
    }
}
