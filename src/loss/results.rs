//! The last step of every loss: a result beyond the float's range is an [`Error::Overflow`] that
//! names it, never an `inf` handed back.

use ndarray::{ArrayRef, ArrayRef1, Dimension};

use crate::float::{apply_pow2, exponent_of, ldexp};
use crate::{Error, Float, Result};

/// [`Error::Overflow`] of a result (`row`: the sample whose result it is, if one).
pub(super) fn overflow(what: &'static str, row: Option<usize>) -> Error {
    Error::Overflow { what, row, class: None, value: None }
}

/// The reduced loss `total / divisor · 2^exp` (each in `f64`) as `F`, or an overflow of
/// `"loss"`. The quotient is taken of the mantissas, so that it overflows or underflows `f64` only
/// where the result itself does.
pub(super) fn reduced_loss<F: Float>(total: f64, divisor: f64, exp: i32) -> Result<F> {
    let (a, b) = (exponent_of(total), exponent_of(divisor));
    let loss = F::from_f64(ldexp(ldexp(total, -a) / ldexp(divisor, -b), a - b + exp));
    if loss.is_finite() { Ok(loss) } else { Err(overflow("loss", None)) }
}

/// `Ok` if every row's loss is finite, else an overflow of `"loss"` naming the first row.
pub(super) fn check_row_losses<F: Float>(losses: &ArrayRef1<F>) -> Result<()> {
    match losses.iter().position(|v| !v.is_finite()) {
        Some(row) => Err(overflow("loss", Some(row))),
        None => Ok(()),
    }
}

/// Multiplies the gradient, if given, by `2^k` (the part of the scale the kernel left out, see
/// [`split_scale`](crate::float::split_scale)); an overflow of `"gradient"` if an entry leaves
/// `F`'s range.
pub(super) fn finish_gradient<F: Float, D: Dimension>(
    grad: Option<&mut ArrayRef<F, D>>,
    k: i32,
) -> Result<()> {
    if grad.is_some_and(|grad| !apply_pow2(grad, k)) { Err(overflow("gradient", None)) } else { Ok(()) }
}
