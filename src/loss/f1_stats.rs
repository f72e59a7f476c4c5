//! The batch statistics of the smooth-F1 losses: per-class sums that merge across workers.

use crate::error::check_shape;
use crate::{Error, Float, Result};

/// The soft confusion sums a smooth-F1 loss needs, per class `k`: `Σ_i s_i·y_ik·p_ik` (the soft
/// true positives), `Σ_i s_i·(y_ik + p_ik)` (target plus predicted mass, `S_k`) and the total row
/// weight `W = Σ_i s_i` (`B` without sample weights).
///
/// They are sums over rows, so the statistics of a global batch are the merge of the statistics
/// of its parts: a data-parallel trainer computes them on each worker
/// ([`SmoothF1Loss::stats`](crate::SmoothF1Loss::stats),
/// [`BinarySmoothF1Loss::stats`](crate::BinarySmoothF1Loss::stats)), all-reduces them with its own
/// engine ([`merge`](Self::merge), or [`from_parts`](Self::from_parts) on summed arrays), and
/// passes the merged value to the loss's `*_with_stats` call. Sums are kept in `f64`.
///
/// `F1_k = 2·Σ_i s_i y_ik p_ik / S_k` (0 where `S_k = 0`).
///
/// # Example
///
/// ```
/// use longtail::{F1Stats, SmoothF1Loss};
/// use ndarray::{array, s};
///
/// let logits = array![[2.0_f64, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, -1.0]];
/// let labels = [0, 1, 1, 0];
/// let loss = SmoothF1Loss::macro_f1();
/// // Two workers, two rows each: merging their statistics gives the whole batch's.
/// let mut merged = loss.stats(&logits.slice(s![..2, ..]), &labels[..2])?;
/// merged.merge(&loss.stats(&logits.slice(s![2.., ..]), &labels[2..])?)?;
/// let whole = loss.stats(&logits, &labels)?;
/// assert_eq!(merged.weight(), whole.weight());
/// assert!((merged.f1()[1] - whole.f1()[1]).abs() < 1e-15);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// J. Su, "再谈类别不平衡问题：调节权重与魔改Loss的对比联系", kexue.fm/archives/7708 (2020).
#[derive(Debug, Clone, PartialEq)]
pub struct F1Stats {
    true_positive: Vec<f64>,
    mass: Vec<f64>,
    weight: f64,
}

impl F1Stats {
    /// Empty statistics over `classes` classes: all sums 0, the identity of [`merge`](Self::merge).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::F1Stats;
    /// let empty = F1Stats::new(3);
    /// assert_eq!((empty.classes(), empty.weight()), (3, 0.0));
    /// ```
    pub fn new(classes: usize) -> Self {
        Self { true_positive: vec![0.0; classes], mass: vec![0.0; classes], weight: 0.0 }
    }

    /// Statistics from their sums, e.g. after an all-reduce.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] (`"mass"`) if the two vectors differ in length;
    /// [`Error::InvalidParameter`] (`"true_positive"`, `"mass"`, `"weight"`) for a negative or
    /// non-finite sum, or a soft true-positive sum above half the class's mass (`y·p ≤ (y + p)/2`
    /// for `y, p ∈ [0, 1]`).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::F1Stats;
    ///
    /// let stats = F1Stats::from_parts(vec![3.0, 1.0], vec![8.0, 4.0], 4.0)?;
    /// assert_eq!(stats.f1(), vec![0.75, 0.5]);
    /// assert!(F1Stats::from_parts(vec![3.0], vec![5.0], 4.0).is_err()); // 3 > 5/2
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`F1Stats`].
    pub fn from_parts(true_positive: Vec<f64>, mass: Vec<f64>, weight: f64) -> Result<Self> {
        check_shape("mass", &[true_positive.len()], &[mass.len()])?;
        let valid = |v: f64| v.is_finite() && v >= 0.0;
        let bad = |name, index, value, expected| Error::InvalidParameter { name, index, value, expected };
        if let Some(k) = mass.iter().position(|&v| !valid(v)) {
            return Err(bad("mass", Some(k), mass[k], "finite and >= 0"));
        }
        let within = |k: usize| valid(true_positive[k]) && true_positive[k] <= 0.5 * mass[k];
        if let Some(k) = (0..true_positive.len()).find(|&k| !within(k)) {
            return Err(bad("true_positive", Some(k), true_positive[k], "finite, >= 0 and <= mass / 2"));
        }
        if !valid(weight) {
            return Err(bad("weight", None, weight, "finite and >= 0"));
        }
        Ok(Self { true_positive, mass, weight })
    }

    /// Adds `other`'s sums to these (both over the same classes).
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] (`"stats"`) if the class counts differ; `self` is then
    /// unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::F1Stats;
    ///
    /// let mut a = F1Stats::from_parts(vec![1.0], vec![3.0], 2.0)?;
    /// a.merge(&F1Stats::from_parts(vec![2.0], vec![5.0], 3.0)?)?;
    /// assert_eq!((a.true_positive(), a.mass(), a.weight()), (&[3.0][..], &[8.0][..], 5.0));
    /// assert!(a.merge(&F1Stats::new(2)).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`F1Stats`].
    pub fn merge(&mut self, other: &F1Stats) -> Result<()> {
        check_shape("stats", &[self.classes()], &[other.classes()])?;
        // Checked before anything is added: a sum beyond f64 leaves `self` unchanged.
        let sums =
            self.true_positive.iter().zip(&other.true_positive).chain(self.mass.iter().zip(&other.mass));
        if !sums.chain([(&self.weight, &other.weight)]).all(|(a, b)| (a + b).is_finite()) {
            return Err(Error::Overflow { what: "F1 statistics", row: None, class: None, value: None });
        }
        for (a, b) in self.true_positive.iter_mut().zip(&other.true_positive) {
            *a += b;
        }
        for (a, b) in self.mass.iter_mut().zip(&other.mass) {
            *a += b;
        }
        self.weight += other.weight;
        Ok(())
    }

    /// The number of classes `K`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::F1Stats::new(4).classes(), 4);
    /// ```
    pub fn classes(&self) -> usize {
        self.mass.len()
    }

    /// `Σ_i s_i·y_ik·p_ik` per class.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::F1Stats::new(2).true_positive(), &[0.0, 0.0]);
    /// ```
    pub fn true_positive(&self) -> &[f64] {
        &self.true_positive
    }

    /// `S_k = Σ_i s_i·(y_ik + p_ik)` per class.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::F1Stats::new(2).mass(), &[0.0, 0.0]);
    /// ```
    pub fn mass(&self) -> &[f64] {
        &self.mass
    }

    /// The total row weight `W = Σ_i s_i`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::F1Stats::new(2).weight(), 0.0);
    /// ```
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// The soft per-class `F1_k = 2·Σ s y p / S_k` (0 where `S_k = 0`).
    ///
    /// # Example
    ///
    /// ```
    /// let stats = longtail::F1Stats::from_parts(vec![1.0, 0.0], vec![4.0, 0.0], 2.0)?;
    /// assert_eq!(stats.f1(), vec![0.5, 0.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn f1(&self) -> Vec<f64> {
        self.true_positive.iter().zip(&self.mass).map(|(&tp, &mass)| ratio(2.0 * tp, mass)).collect()
    }

    /// The soft micro `F1 = 2·Σ_k Σ s y p / Σ_k S_k` (0 if every `S_k = 0`).
    ///
    /// # Example
    ///
    /// ```
    /// let stats = longtail::F1Stats::from_parts(vec![1.0, 0.0], vec![4.0, 0.0], 2.0)?;
    /// assert_eq!(stats.micro_f1(), 0.5);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn micro_f1(&self) -> f64 {
        // Relative to the largest mass: the sums of statistics near f64's maximum would overflow.
        let max = self.mass.iter().fold(0.0_f64, |m, &v| m.max(v));
        if max == 0.0 {
            return 0.0;
        }
        let (tp, mass) = self
            .true_positive
            .iter()
            .zip(&self.mass)
            .fold((0.0, 0.0), |(t, m), (&tp, &mass)| (t + tp / max, m + mass / max));
        ratio(2.0 * tp, mass)
    }

    /// Adds one row's contribution `s·y·p`, `s·(y + p)` to class `k` (the row weight separately).
    /// Adds a row of weight `s`, targets `y` and probabilities `p_k = e_k·inv_total`.
    /// Whether every sum is finite (a batch's sums of huge weights can overflow `f64`).
    pub(crate) fn is_finite(&self) -> bool {
        self.weight.is_finite() && self.true_positive.iter().chain(&self.mass).all(|v| v.is_finite())
    }

    #[inline(always)]
    pub(crate) fn add_row<F: Float>(&mut self, s: f64, y: &[F], e: &[F], inv_total: F) {
        let sums = self.true_positive.iter_mut().zip(self.mass.iter_mut());
        let rows = y.iter().zip(e).map(|(&y, &e)| (y.as_f64(), (e * inv_total).as_f64()));
        sums.zip(rows).for_each(|((tp, mass), (y, p))| {
            *tp += s * y * p;
            *mass += s * (y + p);
        });
    }

    /// Adds sums `Σ s·y·p` and `Σ s·(y + p)` of rows to class `k`.
    #[inline]
    pub(crate) fn add_sums(&mut self, k: usize, true_positive: f64, mass: f64) {
        self.true_positive[k] += true_positive;
        self.mass[k] += mass;
    }

    /// Adds a row weight `s` to `W`.
    #[inline]
    pub(crate) fn add_weight(&mut self, s: f64) {
        self.weight += s;
    }
}

/// `a / b`, 0 when `b = 0`.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}
