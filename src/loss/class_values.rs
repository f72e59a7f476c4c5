//! Per-class values a loss is built from: a prior, counts or weights, from what users hold.

use ndarray::{Array1, ArrayView1, CowArray, Ix1};

use crate::{Float, Prior};

/// Per-class values (a prior, counts, weights or margins' counts) as a loss's constructor takes
/// them: a [`&Prior`](Prior) (its counts), or a slice, array, `Vec`, [`Array1`] or view of the
/// loss's own float type.
///
/// A `&Prior` converts into the float type of the loss being built, so
/// `SoftmaxLoss::logit_adjusted(&prior)` needs no turbofish: the loss takes the float type of the
/// logits it is called on.
///
/// # Example
///
/// ```
/// use longtail::{Loss, Prior, SoftmaxLoss};
/// use ndarray::array;
///
/// let prior = Prior::from_labels(&[0, 0, 0, 1], 2)?;
/// let from_prior = SoftmaxLoss::logit_adjusted(&prior)?;
/// let from_counts = SoftmaxLoss::logit_adjusted(&[3.0_f32, 1.0])?;
/// let logits = array![[0.5_f32, 0.0]];
/// assert_eq!(from_prior.loss(&logits, &[1])?, from_counts.loss(&logits, &[1])?);
/// # Ok::<(), longtail::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClassValues<'a, F>(pub(crate) CowArray<'a, F, Ix1>);

impl<'a, F: Float> ClassValues<'a, F> {
    /// The values as a view.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::ClassValues;
    /// assert_eq!(ClassValues::from(&[1.0_f32, 2.0]).view().to_vec(), vec![1.0, 2.0]);
    /// ```
    pub fn view(&self) -> ArrayView1<'_, F> {
        self.0.view()
    }
}

impl<'a, F: Float> From<&Prior> for ClassValues<'a, F> {
    fn from(prior: &Prior) -> Self {
        Self(CowArray::from(prior.counts().iter().map(|&c| F::from_f64(c)).collect::<Array1<F>>()))
    }
}

impl<'a, F: Float> From<ArrayView1<'a, F>> for ClassValues<'a, F> {
    fn from(values: ArrayView1<'a, F>) -> Self {
        Self(CowArray::from(values))
    }
}

impl<'a, F: Float> From<&'a [F]> for ClassValues<'a, F> {
    fn from(values: &'a [F]) -> Self {
        ArrayView1::from(values).into()
    }
}

impl<'a, F: Float, const N: usize> From<&'a [F; N]> for ClassValues<'a, F> {
    fn from(values: &'a [F; N]) -> Self {
        ArrayView1::from(&values[..]).into()
    }
}

impl<'a, F: Float> From<&'a Vec<F>> for ClassValues<'a, F> {
    fn from(values: &'a Vec<F>) -> Self {
        ArrayView1::from(values.as_slice()).into()
    }
}

impl<'a, F: Float> From<&'a Array1<F>> for ClassValues<'a, F> {
    fn from(values: &'a Array1<F>) -> Self {
        values.view().into()
    }
}

impl<F: Float> From<Array1<F>> for ClassValues<'_, F> {
    fn from(values: Array1<F>) -> Self {
        Self(CowArray::from(values))
    }
}
