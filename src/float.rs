//! The float bound every kernel is generic over, and the lane-parallel reductions they share.

use core::fmt::{Debug, Display, LowerExp};
use core::iter::Sum;
use core::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::ScalarOperand;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// The element type the crate computes in: `f32` or `f64`.
///
/// The trait is sealed: the kernels rely on IEEE-754 binary32/binary64 semantics (`-inf` as a mask,
/// `ε^(1/2)` tolerances), so no other type can implement it.
///
/// # Example
///
/// ```
/// use longtail::Float;
///
/// fn half<F: Float>(x: F) -> F {
///     x * F::from_f64(0.5)
/// }
/// assert_eq!(half(3.0_f32), 1.5);
/// assert_eq!(half(3.0_f64).as_f64(), 1.5);
/// ```
pub trait Float:
    num_traits::Float
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Default
    + Debug
    + Display
    + LowerExp
    + Send
    + Sync
    + ScalarOperand
    + sealed::Sealed
    + 'static
{
    /// Rounds an `f64` to the nearest value of this type (saturating to `±inf`).
    fn from_f64(x: f64) -> Self;
    /// Widens (or keeps) the value as an `f64`, exactly.
    fn as_f64(self) -> f64;
}

impl Float for f32 {
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Float for f64 {
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
}

/// Independent accumulators per reduction: lets the compiler vectorise a sum without reassociating
/// floats on its own, and keeps the rounding error of long rows down.
const LANES: usize = 8;

/// `Σ x`, accumulated in [`LANES`] interleaved partial sums.
#[inline]
pub(crate) fn lane_sum<F: Float>(x: &[F]) -> F {
    let mut acc = [F::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    let mut total = tail.iter().fold(F::zero(), |s, &v| s + v);
    for a in acc {
        total += a;
    }
    total
}

/// `max x` (`-inf` for an empty slice), for NaN-free input.
#[inline]
pub(crate) fn lane_max<F: Float>(x: &[F]) -> F {
    let greater = |a: F, b: F| if b > a { b } else { a };
    let mut acc = [F::neg_infinity(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = greater(*a, v);
        }
    }
    acc.into_iter().chain(tail.iter().copied()).fold(F::neg_infinity(), greater)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_reductions_match_sequential_ones_for_every_tail_length() {
        for n in 0..40 {
            let x: Vec<f64> = (0..n).map(|i| ((i * 7919) % 23) as f64 - 11.0).collect();
            assert_eq!(lane_sum(&x), x.iter().sum::<f64>());
            assert_eq!(lane_max(&x), x.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        }
    }
}
