//! The normalised (cosine) classifier head that LDAM's scale and margins assume.

use ndarray::{Array1, Array2, ArrayRef2, ArrayView2, Axis};

use crate::error::check_shape;
use crate::{Error, Float, Result};

/// The logits of a cosine classifier head and its backward pass: `z_ik = ĥ_i·ŵ_k`, with `ĥ_i` the
/// unit-norm feature row `i` of `[B, D]` features and `ŵ_k` the unit-norm column `k` of `[D, K]`
/// class weights, so every logit lies in `[−1, 1]`.
///
/// This is the head LDAM is defined on (the paper's `NormedLinear`): its scale `s = 30` and
/// margins `m_k ≤ 0.5` are sized for cosine logits (see [`LdamLoss`](crate::LdamLoss)).
///
/// # Gradient
///
/// With `G = ∂L/∂z` (`[B, K]`), the gradients through the unit vectors are `G·Ŵᵀ` for `ĥ` and `Ĥᵀ·G`
/// for `ŵ`; through `v̂ = v/|v|` a gradient `g` becomes `(g − v̂(v̂·g))/|v|`. Norms are floored at
/// `1e-12`, as PyTorch's `F.normalize`, so a zero vector has a zero direction; they are taken
/// from the vector divided by its largest entry, so any finite vector has its direction.
///
/// # Errors
///
/// [`forward`](Self::forward): [`Error::EmptyBatch`] for no rows, [`Error::NoClasses`] for no
/// class column, [`Error::ShapeMismatch`] (`"weights"`) unless the weights have `D` rows,
/// [`Error::InvalidParameter`] (`"features"`, `"weights"`) for a non-finite entry (its row-major
/// index). [`backward`](Self::backward): [`Error::ShapeMismatch`] (`"grad_logits"`) unless the
/// gradient is `[B, K]`, [`Error::InvalidParameter`] (`"grad_logits"`) for a non-finite entry (its
/// row-major index), [`Error::Overflow`] (`"cosine feature gradient"`, `"cosine weight
/// gradient"`, with the entry's row and column) for a gradient beyond the range of `F`.
///
/// # Example
///
/// ```
/// use longtail::{CosineHead, LdamLoss, Loss};
/// use ndarray::array;
///
/// let features = array![[3.0_f64, 4.0], [-1.0, 0.5]];
/// let weights = array![[1.0, 0.0, 2.0], [0.0, 1.0, 2.0]];
/// let head = CosineHead::forward(&features, &weights)?;
/// assert!((head.logits()[[0, 0]] - 0.6).abs() < 1e-15); // cos of the angle to class 0
/// let loss = LdamLoss::new(&[100.0, 10.0, 1.0])?;
/// let (_, grad_logits) = loss.loss_and_grad(&head.logits(), &[0, 2])?;
/// let (grad_features, grad_weights) = head.backward(&grad_logits)?;
/// assert_eq!((grad_features.dim(), grad_weights.dim()), ((2, 2), (2, 3)));
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - K. Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
///   NeurIPS 2019, arXiv:1906.07413 (`NormedLinear` in the authors' code).
/// - H. Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018,
///   arXiv:1801.09414.
#[derive(Debug, Clone, PartialEq)]
pub struct CosineHead<F> {
    features_unit: Array2<F>,
    features_norm: Norms<F>,
    weights_unit: Array2<F>,
    weights_norm: Norms<F>,
    logits: Array2<F>,
}

/// Each vector's norm as `scale·unscaled` (`scale` its largest `|v_j|`, `unscaled` in
/// `[1, √D]`), or `1e-12·1` where floored: a norm beyond `F` (or its square) still fits.
#[derive(Debug, Clone, PartialEq)]
struct Norms<F> {
    scale: Array1<F>,
    unscaled: Array1<F>,
}

/// The floor of a norm, as PyTorch's `F.normalize(eps=1e-12)`.
const NORM_FLOOR: f64 = 1e-12;

impl<F: Float> CosineHead<F> {
    /// The cosine logits of `features` (`[B, D]`) against the class `weights` (`[D, K]`), keeping
    /// what [`backward`](Self::backward) needs.
    ///
    /// # Errors
    ///
    /// See [`CosineHead`].
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::CosineHead;
    /// use ndarray::array;
    ///
    /// let head = CosineHead::forward(&array![[2.0_f32, 0.0]], &array![[1.0, -1.0], [1.0, 0.0]])?;
    /// assert!((head.logits()[[0, 0]] - 0.5f32.sqrt()).abs() < 1e-6 && head.logits()[[0, 1]] == -1.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn forward(features: &ArrayRef2<F>, weights: &ArrayRef2<F>) -> Result<Self> {
        match (features.nrows(), weights.ncols()) {
            (0, _) => return Err(Error::EmptyBatch),
            (_, 0) => return Err(Error::NoClasses),
            _ => {}
        }
        check_shape("weights", &[features.ncols(), weights.ncols()], weights.shape())?;
        for (name, a) in [("features", features), ("weights", weights)] {
            if let Some((i, v)) = a.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                let expected = "finite";
                return Err(Error::InvalidParameter { name, index: Some(i), value: v.as_f64(), expected });
            }
        }
        let (features_norm, features_unit) = normalize(features, Axis(1));
        let (weights_norm, weights_unit) = normalize(weights, Axis(0));
        let logits = features_unit.dot(&weights_unit);
        Ok(Self { features_unit, features_norm, weights_unit, weights_norm, logits })
    }

    /// The logits `z_ik = ĥ_i·ŵ_k` (`[B, K]`).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::CosineHead;
    /// use ndarray::array;
    ///
    /// let head = CosineHead::forward(&array![[1.0_f64, 1.0]], &array![[1.0], [1.0]])?;
    /// assert!((head.logits()[[0, 0]] - 1.0).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn logits(&self) -> ArrayView2<'_, F> {
        self.logits.view()
    }

    /// The gradients with respect to the features (`[B, D]`) and the class weights (`[D, K]`)
    /// of a loss whose gradient with respect to the logits is `grad_logits` (`[B, K]`).
    ///
    /// # Errors
    ///
    /// See [`CosineHead`].
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::CosineHead;
    /// use ndarray::array;
    ///
    /// let head = CosineHead::forward(&array![[3.0_f64, 4.0]], &array![[1.0], [0.0]])?;
    /// let (grad_features, _) = head.backward(&array![[1.0]])?;
    /// // Moving the feature along itself leaves its cosine unchanged.
    /// assert!((grad_features[[0, 0]] * 3.0 + grad_features[[0, 1]] * 4.0).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn backward(&self, grad_logits: &ArrayRef2<F>) -> Result<(Array2<F>, Array2<F>)> {
        check_shape("grad_logits", self.logits.shape(), grad_logits.shape())?;
        if let Some((i, v)) = grad_logits.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            let (name, expected) = ("grad_logits", "finite");
            return Err(Error::InvalidParameter { name, index: Some(i), value: v.as_f64(), expected });
        }
        // The gradient divided by its largest entry, multiplied back in `through_normalize`.
        let top = grad_logits.iter().fold(F::zero(), |m, &x| if x.abs() > m { x.abs() } else { m });
        let divisor = if top > F::zero() { top } else { F::one() };
        let grad = grad_logits.mapv(|x| x / divisor);
        let features = through_normalize(
            grad.dot(&self.weights_unit.t()),
            &self.features_unit,
            &self.features_norm,
            divisor,
            Axis(1),
        );
        let weights = through_normalize(
            self.features_unit.t().dot(&grad),
            &self.weights_unit,
            &self.weights_norm,
            divisor,
            Axis(0),
        );
        for (what, a) in [("cosine feature gradient", &features), ("cosine weight gradient", &weights)] {
            if let Some(((row, class), _)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
                return Err(Error::Overflow { what, row: Some(row), class: Some(class), value: None });
            }
        }
        Ok((features, weights))
    }
}

/// The norms of the vectors along `axis` (floored at [`NORM_FLOOR`]) and the unit vectors. Each
/// vector is divided by its largest `|v_j|` before it is squared, so that neither a huge entry
/// (whose square overflows) nor a tiny one (whose square underflows) loses the direction.
fn normalize<F: Float>(a: &ArrayRef2<F>, axis: Axis) -> (Norms<F>, Array2<F>) {
    let floor = F::from_f64(NORM_FLOOR);
    let mut unit = a.to_owned();
    let across = if axis == Axis(0) { Axis(1) } else { Axis(0) };
    let n = a.len_of(across);
    let (mut scale, mut unscaled) = (Array1::from_elem(n, F::one()), Array1::from_elem(n, F::one()));
    for (((mut v, m), s), original) in
        unit.axis_iter_mut(across).zip(scale.iter_mut()).zip(unscaled.iter_mut()).zip(a.axis_iter(across))
    {
        let max = original.iter().fold(F::zero(), |m, &x| if x.abs() > m { x.abs() } else { m });
        let norm = if max > F::zero() {
            let scaled = original.iter().fold(F::zero(), |t, &x| t + (x / max) * (x / max)).sqrt();
            (max, scaled)
        } else {
            (F::zero(), F::one())
        };
        // |v| > floor, as `max·scaled > floor` without forming a product that may overflow.
        if norm.0 > floor / norm.1 {
            (*m, *s) = norm;
            v.iter_mut().for_each(|x| *x = *x / norm.0 / norm.1);
        } else {
            (*m, *s) = (floor, F::one());
            v.iter_mut().for_each(|x| *x /= floor);
        }
    }
    (Norms { scale, unscaled }, unit)
}

/// A gradient `g/top` with respect to unit vectors `v̂ = v/|v|` (along `axis`), taken to `v`:
/// `(g − v̂(v̂·g))/|v|`, the factor `top/|v|` applied last (as `(top / scale) / unscaled`), so
/// that only a result beyond `F` overflows.
fn through_normalize<F: Float>(
    g: Array2<F>,
    unit: &Array2<F>,
    norms: &Norms<F>,
    top: F,
    axis: Axis,
) -> Array2<F> {
    let along = (&g * unit).sum_axis(axis).insert_axis(axis);
    let mut projected = unit.clone();
    projected *= &along;
    let mut out = g - &projected;
    let across = if axis == Axis(0) { Axis(1) } else { Axis(0) };
    for ((mut v, &m), &s) in out.axis_iter_mut(across).zip(&norms.scale).zip(&norms.unscaled) {
        let factor = top / m;
        v.iter_mut().filter(|o| **o != F::zero()).for_each(|o| {
            // `top / m` overflows only for a tiny norm and a huge gradient: then `o·top` first.
            *o = if factor.is_finite() { *o * factor / s } else { *o * top / m / s };
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, array};

    use super::CosineHead;
    use crate::Error;

    /// `L = Σ c ⊙ z` for fixed `c`, so `∂L/∂z = c`; the head's gradients against central
    /// differences, in f64 and (against the f64 ones) in f32.
    #[test]
    fn the_backward_pass_matches_finite_differences() {
        let features = array![[0.3_f64, -1.2, 2.0], [1.5, 0.2, -0.7], [-0.4, 0.9, 0.1], [2.0, 2.0, -1.0]];
        let weights = array![[1.0, -0.5], [0.3, 0.8], [-0.2, 1.1]];
        let c = array![[0.5, -1.0], [2.0, 0.3], [-0.7, 0.4], [1.0, 1.0]];
        let loss =
            |f: &Array2<f64>, w: &Array2<f64>| (&CosineHead::forward(f, w).unwrap().logits() * &c).sum();
        let head = CosineHead::forward(&features, &weights).unwrap();
        let (grad_f, grad_w) = head.backward(&c).unwrap();
        let h = f64::EPSILON.cbrt();
        for (i, g) in grad_f.indexed_iter() {
            let (mut up, mut down) = (features.clone(), features.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (loss(&up, &weights) - loss(&down, &weights)) / (2.0 * h);
            assert!((g - numeric).abs() <= 1e-6 * numeric.abs().max(1.0), "features {i:?}: {g} vs {numeric}");
        }
        for (i, g) in grad_w.indexed_iter() {
            let (mut up, mut down) = (weights.clone(), weights.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (loss(&features, &up) - loss(&features, &down)) / (2.0 * h);
            assert!((g - numeric).abs() <= 1e-6 * numeric.abs().max(1.0), "weights {i:?}: {g} vs {numeric}");
        }
        let narrow = CosineHead::forward(&features.mapv(|v| v as f32), &weights.mapv(|v| v as f32)).unwrap();
        let (f32_f, f32_w) = narrow.backward(&c.mapv(|v| v as f32)).unwrap();
        assert!(f32_f.iter().zip(&grad_f).all(|(&a, &b)| (f64::from(a) - b).abs() <= 1e-5));
        assert!(f32_w.iter().zip(&grad_w).all(|(&a, &b)| (f64::from(a) - b).abs() <= 1e-5));
    }

    #[test]
    fn logits_are_cosines_and_a_zero_vector_has_no_direction() {
        let head = CosineHead::forward(&array![[3.0_f64, 4.0], [0.0, 0.0]], &array![[1.0], [0.0]]).unwrap();
        assert_eq!(head.logits(), array![[0.6], [0.0]]);
        let (grad_f, _) = head.backward(&array![[1.0], [1.0]]).unwrap();
        assert!(grad_f.iter().all(|g| g.is_finite()));
    }

    #[test]
    fn every_error_names_its_input() {
        let f = array![[1.0_f64, 2.0]];
        let empty = Array2::<f64>::zeros((0, 2));
        assert_eq!(CosineHead::forward(&empty, &array![[1.0], [1.0]]).unwrap_err(), Error::EmptyBatch);
        assert_eq!(CosineHead::forward(&f, &Array2::zeros((2, 0))).unwrap_err(), Error::NoClasses);
        let err = CosineHead::forward(&f, &array![[1.0, 2.0]]).unwrap_err();
        assert_eq!(err, Error::ShapeMismatch { name: "weights", expected: vec![2, 2], found: vec![1, 2] });
        let err = CosineHead::forward(&array![[1.0, f64::NAN]], &array![[1.0], [1.0]]).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "features", index: Some(1), .. }));
        let err = CosineHead::forward(&f, &array![[1.0], [f64::INFINITY]]).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "weights", index: Some(1), .. }));
        let head = CosineHead::forward(&f, &array![[1.0], [1.0]]).unwrap();
        let err = head.backward(&array![[1.0, 1.0]]).unwrap_err();
        assert_eq!(
            err,
            Error::ShapeMismatch { name: "grad_logits", expected: vec![1, 1], found: vec![1, 2] }
        );
    }
}
