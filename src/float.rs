//! The float bound every kernel is generic over, the fast vectorisable `exp` and the lane-parallel
//! reductions the kernels share.

use core::fmt::{Debug, Display, LowerExp};
use core::iter::Sum;
use core::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::ScalarOperand;

mod sealed {
    /// What the kernels need of a float beyond `num_traits`; private, so [`Float`](super::Float)
    /// stays sealed.
    pub trait Sealed: Copy + core::ops::Div<Output = Self> {
        /// `e^x` for `x ≤ 0` (see [`exp_nonpos`](super::exp_nonpos)); `FMA` selects fused
        /// multiply-adds, for callers compiled with the `fma` target feature.
        fn exp_nonpos<const FMA: bool>(x: Self) -> Self;
        /// `ln u + c/u` for a positive normal `u` (see [`ln_1p_unit`](super::ln_1p_unit)).
        #[inline(always)]
        fn ln_compensated<const FMA: bool>(u: Self, c: Self) -> Self {
            Self::ln_plus::<FMA>(u, c / u)
        }
        /// `ln u + t` for a positive normal `u` and a correction `t` far below `ln u`'s ulp (any
        /// other `u`, as a vector lane that is discarded, gives an unspecified value, no panic).
        fn ln_plus<const FMA: bool>(u: Self, t: Self) -> Self;
        /// `q^γ` for `q ∈ [0, 1]`, `γ > 0` (see [`pow_unit`](super::pow_unit)).
        fn pow_unit<const FMA: bool>(q: Self, gamma: Self) -> Self;
    }
}

/// `a·b + c`, fused when `FMA` (one rounding; a libm call without the hardware instruction).
#[inline(always)]
pub(crate) fn mul_add<F: num_traits::Float, const FMA: bool>(a: F, b: F, c: F) -> F {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `e^x` for `x ≤ 0`, branch-free so that loops over slices vectorise (Cephes' scheme, with
/// minimax polynomials).
///
/// `x = n·ln 2 + r` with `n = round(x / ln 2)` (added to and subtracted from `1.5·2^p + bias`,
/// which leaves the biased exponent `n + bias` in the low mantissa bits), `r` from a two-part
/// `ln 2` (Cody–Waite), `e^r = 1 + r(1 + r·q(r))` with `q` a minimax polynomial for the relative
/// error on `|r| ≤ ln 2 / 2` (degree 6 in all for f32, 11 for f64; relative error 3·10⁻⁹ and
/// 8·10⁻¹⁸, below a tenth of an ulp), and `2^n` assembled from its exponent bits. Within 1 ulp of
/// the correctly rounded `e^x` for f32 (every float of `[−88.5, 0]`, with or without FMA: tested
/// exhaustively once, sampled in the tests) and within 2 ulp for f64 (tested). `e^0 = 1` exactly.
/// The underflow costs no compare: `x` is clamped at a point where `n = −bias`, whose `2^n` bits
/// are those of `+0`, so results below about `e^{−87.68}` (f32) and `e^{−708.75}` (f64), `-inf`
/// included, are exactly 0 (a masked class gets probability exactly 0), and the few results just
/// above are subnormal. Positive `x` is outside the contract.
#[inline(always)]
pub(crate) fn exp_nonpos<F: Float, const FMA: bool>(x: F) -> F {
    F::exp_nonpos::<FMA>(x)
}

/// `ln(1 + e)` for `e ∈ [−1/2, 1]`, branch-free so that loops over slices vectorise (musl's `log1p`).
///
/// `u = 1 + e` is rounded, and its rounding error `c = e − (u − 1)` (exact, as `|e| ≤ 1`) is added
/// back as `c/u`, so small `e` keep their relative accuracy (`e` below `ε/2` gives `e` itself). `u`
/// is split with bit tricks into `2^k·m`, `m ∈ [√½, √2)`, and `ln m = ln(1 + f)` comes from
/// `s = f/(2 + f)`, `ln(1 + f) = 2 atanh s` by a minimax polynomial in `s²` (degree 4 for f32, 7
/// for f64), plus `k·ln 2` in two parts. Within 1 ulp, with or without FMA (tested): of the
/// correctly rounded value for f32 (every 499th float of `[−1/2, 1]` and 10^6 draws), of the
/// platform's `ln_1p` for f64 (3·10^6 draws). `ln_1p(0) = 0` exactly.
#[inline(always)]
pub(crate) fn ln_1p_unit<F: Float, const FMA: bool>(e: F) -> F {
    let u = F::one() + e;
    F::ln_compensated::<FMA>(u, e - (u - F::one()))
}

/// `(ln(1 + e), 1/(1 + e))` for `e ∈ [0, 1]`: [`ln_1p_unit`] with its rounding error `c` added
/// back as `c·r` from the reciprocal `r` returned beside it, one division fewer than computing
/// the two apart. Within 1 ulp for f32 (every 499th float of `[0, 1]` and 10^6 draws) and f64
/// (10^6 draws), tested as [`ln_1p_unit`]; `r` is correctly rounded.
#[inline(always)]
pub(crate) fn ln_1p_unit_recip<F: Float, const FMA: bool>(e: F) -> (F, F) {
    let u = F::one() + e;
    let r = u.recip();
    (F::ln_plus::<FMA>(u, (e - (u - F::one())) * r), r)
}

/// `ln u + c/u` for a positive normal `u` and a `c` far below `u`'s ulp (the rounding error of a
/// sum `u`, added back), by the scheme of [`ln_1p_unit`], which is `ln_compensated(1 + e, e − ((1
/// + e) − 1))`.
#[inline(always)]
pub(crate) fn ln_compensated<F: Float, const FMA: bool>(u: F, c: F) -> F {
    F::ln_compensated::<FMA>(u, c)
}

/// `ln x` for a positive normal `x`, by the scheme of [`ln_1p_unit`]: within 1 ulp (tested).
/// Subnormal, zero, negative and non-finite `x` are outside the contract.
#[inline(always)]
pub(crate) fn ln_normal<F: Float, const FMA: bool>(x: F) -> F {
    F::ln_compensated::<FMA>(x, F::zero())
}

/// `q^γ` for `q ∈ [0, 1]` and `γ > 0`, branch-free so that loops over slices vectorise:
/// `e^{γ ln q}` by [`exp_nonpos`] and the logarithm of [`ln_normal`], in f64; `0^γ = 0`.
///
/// An error `δ` in `γ ln q` is a relative error `δ` in the result, and `|γ ln q|` reaches 745
/// before the result underflows, so a plain f64 `γ·ln q` would cost up to `|γ ln q|` ulp. For f32
/// that is still far below an f32 ulp (the result rounds to f32 once: correctly rounded but where
/// the exact value lies within a relative `10^−13` of a midpoint). For f64, `ln q = k·ln2_hi + a` is
/// carried in two parts (`k·ln2_hi` exact, `|a| < 0.35`) and `γ·ln q` as a product with its exact
/// rounding error, which is added back as `e^y·(1 + y_lo)`: the error is that of `a`, a few `γ`
/// ulp at most, whatever the size of `ln q` (tested: within `2 + γ` ulp of the platform's `powf`;
/// 6 ulp at `γ = 16`).
#[inline(always)]
pub(crate) fn pow_unit<F: Float, const FMA: bool>(q: F, gamma: F) -> F {
    F::pow_unit::<FMA>(q, gamma)
}

/// `a·b − p` exactly, for `p` the rounded `a·b` (Dekker's product without fused multiply-adds).
#[inline(always)]
fn product_error<const FMA: bool>(a: f64, b: f64, p: f64) -> f64 {
    if FMA {
        return a.mul_add(b, -p);
    }
    let split = |x: f64| {
        let c = 134_217_729.0 * x; // 2^27 + 1
        let high = c - (c - x);
        (high, x - high)
    };
    let ((ah, al), (bh, bl)) = (split(a), split(b));
    ((ah * bh - p) + ah * bl + al * bh) + al * bl
}

/// The f64 logarithm of [`ln_plus`](sealed::Sealed::ln_plus) in two parts: `ln u + t = a + k·ln2_hi`
/// with `k` an integer, `k·ln2_hi` exact and `|a| < 0.35` (before the final, rounded, sum).
#[inline(always)]
fn ln_parts_f64<const FMA: bool>(u: f64, t: f64) -> (f64, f64) {
    const SQRT_HALF: u64 = 0x3fe6_a09e_0000_0000; // √½, its high word
    const LG: [f64; 7] = [
        6.666_666_666_666_735e-1,
        3.999_999_999_940_942e-1,
        2.857_142_874_366_239e-1,
        2.222_219_843_214_978_4e-1,
        1.818_357_216_161_805e-1,
        1.531_383_769_920_937_3e-1,
        1.479_819_860_511_658_6e-1,
    ];
    let fma = mul_add::<f64, FMA>;
    let shifted = u.to_bits().wrapping_add(0x3ff0_0000_0000_0000 - SQRT_HALF);
    // `2^52 + 1023 + k` as a float, minus the bias (no i64 → f64 conversion in AVX2).
    let k = f64::from_bits(0x4330_0000_0000_0000 | (shifted >> 52)) - 4_503_599_627_371_519.0;
    let f = f64::from_bits((shifted & 0x000f_ffff_ffff_ffff) + SQRT_HALF) - 1.0;
    let half_f2 = 0.5 * f * f;
    let s = f / (2.0 + f);
    let (z, w) = (s * s, s * s * s * s);
    let odd = fma(w, fma(w, fma(w, LG[6], LG[4]), LG[2]), LG[0]);
    let even = fma(w, fma(w, LG[5], LG[3]), LG[1]);
    let r = fma(z, odd, w * even);
    (fma(s, half_f2 + r, fma(k, LN2_LO_F64, t)) - half_f2 + f, k)
}

/// `ln 2` in two parts for [`ln_parts_f64`]: `LN2_HI` has 32 significant bits, so `k·LN2_HI` is
/// exact for every exponent `k`.
const LN2_HI_F64: f64 = 6.931_471_803_691_238e-1;
const LN2_LO_F64: f64 = 1.908_214_929_270_587_7e-10;

impl sealed::Sealed for f32 {
    #[inline(always)]
    fn ln_plus<const FMA: bool>(u: f32, t: f32) -> f32 {
        const SQRT_HALF: u32 = 0x3f35_04f3; // √½, rounded
        const LN2_HI: f32 = 0.693_138_1;
        const LN2_LO: f32 = 9.058_001e-6;
        const LG: [f32; 4] = [0.666_666_6, 0.400_009_72, 0.284_987_87, 0.242_790_79];
        let fma = mul_add::<f32, FMA>;
        // Moves the exponent boundary from 1 to √½: `m` lands in [√½, √2), `k` counts the rest.
        let shifted = u.to_bits().wrapping_add(0x3f80_0000 - SQRT_HALF);
        // `2^23 + 127 + k` as a float (its low mantissa bits hold the biased exponent), minus the bias.
        let k = f32::from_bits(0x4b00_0000 | (shifted >> 23)) - 8_388_735.0;
        let f = f32::from_bits((shifted & 0x007f_ffff) + SQRT_HALF) - 1.0;
        let half_f2 = 0.5 * f * f;
        let s = f / (2.0 + f);
        let (z, w) = (s * s, s * s * s * s);
        let r = fma(z, fma(w, LG[2], LG[0]), w * fma(w, LG[3], LG[1]));
        fma(s, half_f2 + r, fma(k, LN2_LO, t)) - half_f2 + f + k * LN2_HI
    }

    #[inline(always)]
    fn pow_unit<const FMA: bool>(q: f32, gamma: f32) -> f32 {
        // Every f32 but 0 is a normal f64 (1 stands in for 0 in the logarithm).
        let q = f64::from(q);
        let ln_q = f64::ln_plus::<FMA>(if q > 0.0 { q } else { 1.0 }, 0.0);
        let m = exp_nonpos::<f64, FMA>(f64::from(gamma) * ln_q);
        (if q > 0.0 { m } else { 0.0 }) as f32
    }

    #[inline(always)]
    fn exp_nonpos<const FMA: bool>(x: f32) -> f32 {
        // `n = round(−88 / ln 2) = −127`: the biased exponent 0, `2^n` has the bits of `+0`.
        const FLUSH: f32 = -88.0;
        const SHIFTER: f32 = 12_583_039.0; // 1.5·2^23 + 127
        const LN2_HI: f32 = 0.693_359_4; // 355/512, exactly
        const LN2_LO: f32 = -2.121_944_4e-4;
        // q(r) = c6 r⁴ + … + c2 (`tests/golden/generate_exp_minimax.py`).
        const Q: [f32; 5] = [1.381_446_7e-3, 8.368_781e-3, 4.166_839_3e-2, 0.166_665_2, 0.499_999_94];
        let fma = mul_add::<f32, FMA>;
        let x = if x < FLUSH { FLUSH } else { x };
        let shifted = fma(x, core::f32::consts::LOG2_E, SHIFTER);
        let n = shifted - SHIFTER;
        let r = fma(n, -LN2_LO, fma(n, -LN2_HI, x));
        let q = Q[1..].iter().fold(Q[0], |q, &c| fma(q, r, c));
        let poly = fma(fma(q, r, 1.0), r, 1.0);
        // `(2^22 + 127 + n) << 23` keeps `127 + n` in the exponent field: `2^n`.
        poly * f32::from_bits(shifted.to_bits() << 23)
    }
}

impl sealed::Sealed for f64 {
    #[inline(always)]
    fn ln_plus<const FMA: bool>(u: f64, t: f64) -> f64 {
        let (a, k) = ln_parts_f64::<FMA>(u, t);
        a + k * LN2_HI_F64
    }

    #[inline(always)]
    fn pow_unit<const FMA: bool>(q: f64, gamma: f64) -> f64 {
        // A subnormal `q` is scaled into the normal range, its exponent taken back in `k` and `a`
        // (1 stands in for 0). Each select picks values computed before it: a computation inside
        // a branch leaves the lanes scalar.
        let (tiny, scaled) = (q < f64::MIN_POSITIVE, q * 18_446_744_073_709_551_616.0);
        let u = if tiny { scaled } else { q };
        let u = if q == 0.0 { 1.0 } else { u };
        let (a, k) = ln_parts_f64::<FMA>(u, 0.0);
        let offset = if tiny { 64.0 } else { 0.0 };
        let (a, b) = (a - offset * LN2_LO_F64, (k - offset) * LN2_HI_F64);
        // `ln q = hi + lo` exactly (Fast2Sum: `|a| < |b|` unless `b = 0`).
        let hi = a + b;
        let lo = (b - hi) + a;
        let y = gamma * hi;
        let y_lo = product_error::<FMA>(gamma, hi, y) + gamma * lo;
        let m = exp_nonpos::<f64, FMA>(y);
        let m = mul_add::<f64, FMA>(m, y_lo, m);
        if q > 0.0 { m } else { 0.0 }
    }

    #[inline(always)]
    fn exp_nonpos<const FMA: bool>(x: f64) -> f64 {
        // `n = round(−709 / ln 2) = −1023`: the biased exponent 0, `2^n` has the bits of `+0`.
        const FLUSH: f64 = -709.0;
        const SHIFTER: f64 = 6_755_399_441_056_767.0; // 1.5·2^52 + 1023
        const LN2_HI: f64 = 0.693_147_180_369_123_8;
        const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
        // q(r) = c11 r⁹ + … + c2 (`tests/golden/generate_exp_minimax.py`).
        const Q: [f64; 10] = [
            2.511_015_434_046_205e-8,
            2.763_279_158_266_233_4e-7,
            2.755_724_205_934_042_6e-6,
            2.480_148_696_535_089e-5,
            1.984_126_988_683_639_2e-4,
            1.388_888_894_814_000_6e-3,
            8.333_333_333_322_127e-3,
            4.166_666_666_652_095e-2,
            0.166_666_666_666_666_75,
            0.500_000_000_000_001,
        ];
        let fma = mul_add::<f64, FMA>;
        let x = if x < FLUSH { FLUSH } else { x };
        let shifted = fma(x, core::f64::consts::LOG2_E, SHIFTER);
        let n = shifted - SHIFTER;
        let r = fma(n, -LN2_LO, fma(n, -LN2_HI, x));
        let q = Q[1..].iter().fold(Q[0], |q, &c| fma(q, r, c));
        let poly = fma(fma(q, r, 1.0), r, 1.0);
        poly * f64::from_bits(shifted.to_bits() << 52)
    }
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
/// floats on its own (4 AVX2 registers of f32, so that additions do not wait on each other), and
/// keeps the rounding error of long rows down.
pub(crate) const LANES: usize = 32;

/// Sums of exponentials are kept in `F` lanes over blocks of this many elements (L1-sized), and the
/// block sums are added in `f64`: long f32 rows then sum as accurately as f64 ones, at no cost.
pub(crate) const BLOCK: usize = 4096;

/// `max x` (`-inf` for an empty slice), for NaN-free input.
#[inline(always)]
pub(crate) fn lane_max<F: Float>(x: &[F]) -> F {
    let greater = |a: F, b: F| if b > a { b } else { a };
    if x.len() < LANES {
        return x.iter().copied().fold(F::neg_infinity(), greater);
    }
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

/// `max (z + adjust)` (`-inf` for empty slices), for NaN-free input.
#[inline(always)]
pub(crate) fn lane_max_sum<F: Float>(z: &[F], adjust: &[F]) -> F {
    let greater = |a: F, b: F| if b > a { b } else { a };
    if z.len() < LANES {
        return z.iter().zip(adjust).map(|(&v, &a)| v + a).fold(F::neg_infinity(), greater);
    }
    let mut acc = [F::neg_infinity(); LANES];
    let (chunks, tail) = (z.chunks_exact(LANES), z.len() / LANES * LANES);
    for (chunk, a_chunk) in chunks.zip(adjust.chunks_exact(LANES)) {
        for ((a, &v), &w) in acc.iter_mut().zip(chunk).zip(a_chunk) {
            *a = greater(*a, v + w);
        }
    }
    let rest = z[tail..].iter().zip(&adjust[tail..]).map(|(&v, &w)| v + w);
    acc.into_iter().chain(rest).fold(F::neg_infinity(), greater)
}

/// `max |x|` (0 for an empty slice), for NaN-free input.
#[inline(always)]
pub(crate) fn lane_abs_max<F: Float>(x: &[F]) -> F {
    let greater = |a: F, b: F| if b.abs() > a { b.abs() } else { a };
    let mut acc = [F::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = greater(*a, v);
        }
    }
    acc.into_iter().chain(tail.iter().copied()).fold(F::zero(), greater)
}

/// `max |z + adjust|` (0 for empty slices), for NaN-free input.
#[inline(always)]
pub(crate) fn lane_abs_max_sum<F: Float>(z: &[F], adjust: &[F]) -> F {
    let greater = |a: F, b: F| if b.abs() > a { b.abs() } else { a };
    let mut acc = [F::zero(); LANES];
    let (chunks, tail) = (z.chunks_exact(LANES), z.len() / LANES * LANES);
    for (chunk, a_chunk) in chunks.zip(adjust.chunks_exact(LANES)) {
        for ((a, &v), &w) in acc.iter_mut().zip(chunk).zip(a_chunk) {
            *a = greater(*a, v + w);
        }
    }
    let rest = z[tail..].iter().zip(&adjust[tail..]).map(|(&v, &w)| v + w);
    acc.into_iter().chain(rest).fold(F::zero(), greater)
}

/// `max |x|` if every `x` is finite (0 for an empty slice), else `None`: [`all_finite`] and
/// [`lane_abs_max`] over each block of [`BLOCK`] values in turn, so that a long slice is read from
/// memory once (one loop that does both compiled into lane shuffles and stack stores; two tight
/// ones over a block in L1 do not).
#[inline(always)]
pub(crate) fn finite_abs_max<F: Float, const FMA: bool>(x: &[F]) -> Option<F> {
    let mut max = F::zero();
    for block in x.chunks(BLOCK) {
        if !all_finite::<F, FMA>(block) {
            return None;
        }
        let m = lane_abs_max(block);
        max = if m > max { m } else { max };
    }
    Some(max)
}

/// Whether every `x` is finite, without a branch per value: `v·0` is 0 for finite `v` and NaN for
/// `±inf` and NaN, and a NaN stays in its lane's sum (one fused multiply-add per value with `FMA`).
#[inline(always)]
pub(crate) fn all_finite<F: Float, const FMA: bool>(x: &[F]) -> bool {
    let add_zero_times = |s: &mut F, &v: &F| *s = mul_add::<F, FMA>(v, F::zero(), *s);
    let mut acc = [F::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        acc.iter_mut().zip(chunk).for_each(|(s, v)| add_zero_times(s, v));
    }
    acc.iter_mut().zip(tail).for_each(|(s, v)| add_zero_times(s, v));
    acc.iter().fold(F::zero(), |s, &a| s + a) == F::zero()
}

/// Where [`exp_sum`] reads its arguments `x_k` from.
#[derive(Clone, Copy)]
pub(crate) enum ExpArgs<'a, F> {
    /// The output row itself (in place).
    InPlace,
    /// Logits `z_k`.
    Logits(&'a [F]),
    /// Adjusted logits `z_k + a_k`.
    Adjusted(&'a [F], &'a [F]),
}

impl<'a, F> ExpArgs<'a, F> {
    /// The arguments of `range` only.
    #[inline(always)]
    pub(crate) fn range(self, range: core::ops::Range<usize>) -> Self {
        match self {
            Self::InPlace => Self::InPlace,
            Self::Logits(z) => Self::Logits(&z[range]),
            Self::Adjusted(z, adjust) => Self::Adjusted(&z[range.clone()], &adjust[range]),
        }
    }
}

/// Writes `out_k = e^{x_k − shift}` and returns `Σ_{k ≠ skip} out_k` (in `f64`, see [`BLOCK`]);
/// `x_skip − shift` must be 0 and every other `x_k − shift` `≤ 0` or `-inf`.
///
/// Each block is exponentiated by a plain element-wise loop (which the compiler vectorises), then
/// summed while it is in L1, `out_skip = 1` excluded exactly by a 0 in its place.
#[inline(always)]
pub(crate) fn exp_sum<F: Float, const FMA: bool>(
    out: &mut [F],
    args: ExpArgs<'_, F>,
    shift: F,
    skip: usize,
) -> f64 {
    let exp = |x: F| exp_nonpos::<F, FMA>(x - shift);
    let mut total = 0.0;
    for (b, out) in out.chunks_mut(BLOCK).enumerate() {
        let block = b * BLOCK..b * BLOCK + out.len();
        let skip = skip.wrapping_sub(block.start);
        match args.range(block) {
            ExpArgs::InPlace => out.iter_mut().for_each(|o| *o = exp(*o)),
            ExpArgs::Logits(z) => out.iter_mut().zip(z).for_each(|(o, &z)| *o = exp(z)),
            ExpArgs::Adjusted(z, adjust) => {
                out.iter_mut().zip(z).zip(adjust).for_each(|((o, &z), &a)| *o = exp(z + a));
            }
        }
        let skipped = out.get_mut(skip).map(|one| *one = F::zero()).is_some();
        total += lane_sum(out).as_f64();
        if skipped {
            out[skip] = F::one();
        }
    }
    total
}

/// `Σ x`, accumulated in [`LANES`] interleaved partial sums that are then added pairwise.
#[inline(always)]
pub(crate) fn lane_sum<F: Float>(x: &[F]) -> F {
    if x.len() < LANES {
        return x.iter().fold(F::zero(), |s, &v| s + v);
    }
    let mut acc = [F::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        acc.iter_mut().zip(chunk).for_each(|(a, &v)| *a += v);
    }
    acc.iter_mut().zip(tail).for_each(|(a, &v)| *a += v);
    // Opaque to the optimiser: LLVM would otherwise interleave the pairwise fold with the loop
    // above and split its accumulators into pieces (f64 ones spilled to the stack).
    let mut acc = core::hint::black_box(acc);
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        let (low, high) = acc.split_at_mut(width);
        low.iter_mut().zip(&*high).for_each(|(a, &b)| *a += b);
    }
    acc[0]
}

/// `⌊log₂ v⌋` of a positive finite `v` (subnormals included), from its bits; 0 for `v = 0`.
pub(crate) fn exponent_of(v: f64) -> i32 {
    if v == 0.0 || !v.is_finite() {
        return 0;
    }
    let v = v.abs();
    if v < f64::MIN_POSITIVE {
        return exponent_of(v * 2f64.powi(64)) - 64;
    }
    ((v.to_bits() >> 52) & 0x7ff) as i32 - 1023
}

/// `x·2^e`, exact unless the result overflows or is subnormal (then rounded once, as by a single
/// multiplication).
#[inline]
pub(crate) fn ldexp(mut x: f64, mut e: i32) -> f64 {
    if e == 0 {
        return x;
    }
    // `2^e` from its bits, for a normal `2^e`.
    let pow2 = |e: i32| f64::from_bits(((e + 1023) as u64) << 52);
    // Steps of at most 2^±1000 stay exact until the last.
    while e > 1000 {
        x *= pow2(1000);
        e -= 1000;
    }
    while e < -1000 {
        x *= pow2(-1000);
        e += 1000;
    }
    x * pow2(e)
}

/// The power of two `2^−e` by which weights whose largest is `max` are scaled (see
/// [`weight_exponent`]), clamped so that `2^−e` is a normal `F`; 0 when all are 0.
/// Scaling by `2^−e` is exact, so a weighted mean computed from the scaled values is that of the
/// values themselves, without their products overflowing or underflowing.
pub(crate) fn scale_exponent<F: Float>(max: f64) -> i32 {
    let min_exp = exponent_of(F::min_positive_value().as_f64());
    let max_exp = exponent_of(F::max_value().as_f64());
    weight_exponent::<F>(exponent_of(max)).clamp(-max_exp, -min_exp)
}

/// The scaling exponent of weights whose largest has binary exponent `e` (see
/// [`scale_exponent`]), unclamped: `e + 8`, so that the largest weight lands in `[2^−8, 2^−7)`,
/// leaving room for a batch's sum of losses near the float's maximum. In `f64`, weights below 1
/// are scaled up only as far as `[2^−60, 2^−59)` (`e + 60` below `2^−60`, else 0), which keeps
/// ordinary weights as they are; an `f32` weight times a loss always has `f64`'s range around it
/// in the sums, so every scale brings the largest to `2^−8`, and a small weight times a small
/// loss does not underflow.
pub(crate) fn weight_exponent<F: Float>(e: i32) -> i32 {
    const SMALL: i32 = 60;
    const HEADROOM: i32 = 8;
    let f32_range = F::max_value().as_f64() <= f32::MAX as f64;
    if e >= 0 || f32_range {
        e + HEADROOM
    } else if e < -SMALL {
        e + SMALL
    } else {
        0
    }
}

/// `2^e` as an `F`, for `e` within the normal exponents of `F` (see [`scale_exponent`]).
#[inline]
pub(crate) fn pow2<F: Float>(e: i32) -> F {
    F::from_f64(ldexp(1.0, e))
}

/// A gradient scale `inv_divisor·2^exp` as a factor for the kernel and a power of two `2^k` to
/// apply afterwards ([`apply_pow2`]): `k = 0` when the scale is a normal number up to `2^(e/2)`
/// (`e` the largest exponent of `F`), where the kernel's own factors (`γ`, `1 + ε·p`, LDAM's
/// scale) times the scale stay in range; otherwise the kernel gets a factor near 1 and the
/// gradient the rest, so that an entry that fits the range still comes out (a large weight times
/// a small gradient, a zero gradient times a huge weight).
pub(crate) fn split_scale<F: Float>(inv_divisor: f64, exp: i32) -> (F, i32) {
    let scale = ldexp(inv_divisor, exp);
    let bound = F::max_value().as_f64().sqrt();
    if (F::min_positive_value().as_f64()..=bound).contains(&scale) {
        return (F::from_f64(scale), 0);
    }
    let k = exponent_of(inv_divisor) + exp;
    (F::from_f64(ldexp(inv_divisor, exp - k)), k)
}

/// Multiplies every entry by `2^k` (nothing for `k = 0`); `false` if one leaves the range of `F`.
pub(crate) fn apply_pow2<F: Float, D: ndarray::Dimension>(
    values: &mut ndarray::ArrayRef<F, D>,
    k: i32,
) -> bool {
    if k == 0 {
        return true;
    }
    let mut finite = true;
    values.map_inplace(|v| {
        *v = F::from_f64(ldexp(v.as_f64(), k));
        finite &= v.is_finite();
    });
    finite
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded xorshift64 stream of uniform draws in `[0, 1)`: test inputs that never change.
    fn uniforms(mut state: u64) -> impl FnMut() -> f64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Distance in units in the last place between two finite floats of the same sign.
    fn ulps32(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    /// The f32 `exp` against `f64::exp` rounded to f32, over `[-88.5, 0]`: every 997th float, and
    /// 10^6 uniform draws; below the smallest normal result 0 is allowed too (the flush point).
    #[test]
    fn f32_exp_is_within_one_ulp_of_the_correctly_rounded_value() {
        let mut uniform = uniforms(0x2545_f491_4f6c_dd1d_u64);
        let sweep = (0x8000_0000_u32..=(-88.5_f32).to_bits()).step_by(997).map(f32::from_bits);
        let draws: Vec<f32> = (0..1_000_000).map(|_| (-88.5 * uniform()) as f32).collect();
        let edges = [0.0, -0.0, -1e-30, -87.336_54, -87.336_55, -87.68, -87.69, -88.0, f32::MIN];
        for x in sweep.chain(draws).chain(edges) {
            let expected = f64::from(x).exp() as f32;
            for got in [exp_nonpos::<f32, false>(x), exp_nonpos::<f32, true>(x)] {
                if expected < f32::MIN_POSITIVE {
                    assert!(
                        got == 0.0 || ulps32(got, expected) <= 1,
                        "exp({x:e}) = {got:e}, not {expected:e}"
                    );
                } else {
                    assert!(ulps32(got, expected) <= 1, "exp({x:e}) = {got:e}, not {expected:e}");
                }
            }
        }
        for x in [-88.0, -88.1, -1e30, f32::NEG_INFINITY] {
            assert_eq!(exp_nonpos::<f32, false>(x).to_bits(), 0);
            assert_eq!(exp_nonpos::<f32, true>(x).to_bits(), 0);
        }
        assert_eq!(exp_nonpos::<f32, true>(0.0), 1.0);
    }

    /// The f64 `exp` against the platform's (glibc's is within 0.52 ulp of the exact value) over
    /// `[-709.5, 0]` and near 0, where most softmax arguments fall; below the smallest normal
    /// result 0 is allowed too (the flush point).
    #[test]
    fn f64_exp_is_within_two_ulp_of_the_platform_exp() {
        let mut uniform = uniforms(0x9e37_79b9_7f4a_7c15_u64);
        for i in 0..1_000_000 {
            let scale = if i % 2 == 0 { 709.5 } else { 1.0 };
            let edges = [-708.396_418_532_264, -708.5, -709.0 + 1e-13];
            let x = if i < edges.len() { edges[i] } else { -scale * uniform() };
            let expected = x.exp();
            for got in [exp_nonpos::<f64, false>(x), exp_nonpos::<f64, true>(x)] {
                let flushed = got == 0.0 && expected < f64::MIN_POSITIVE;
                assert!(
                    flushed || got.to_bits().abs_diff(expected.to_bits()) <= 2,
                    "exp({x:e}) = {got:e}, not {expected:e}"
                );
            }
        }
        for x in [-709.0, -709.5, -1e300, f64::NEG_INFINITY] {
            assert_eq!(exp_nonpos::<f64, false>(x).to_bits(), 0);
            assert_eq!(exp_nonpos::<f64, true>(x).to_bits(), 0);
        }
        assert_eq!(exp_nonpos::<f64, true>(0.0), 1.0);
    }

    /// The f32 `ln_1p` against `f64::ln_1p` rounded to f32 over `[0, 1]` (every 499th float and
    /// 10^6 log-uniform draws down to 1e-30), and `ln` over the positive normals of `(0, 1]`.
    #[test]
    fn f32_ln_1p_is_within_one_ulp_of_the_correctly_rounded_value() {
        let mut uniform = uniforms(0x2545_f491_4f6c_dd1d_u64);
        let sweep = (0_u32..=1.0_f32.to_bits()).step_by(499).map(f32::from_bits);
        let draws: Vec<f32> = (0..1_000_000).map(|_| (1e-30_f64).powf(uniform()) as f32).collect();
        let mut worst = 0;
        for e in sweep.chain(draws).chain([0.0, f32::MIN_POSITIVE, 1e-45, f32::EPSILON / 2.0, 1.0]) {
            let expected = f64::from(e).ln_1p() as f32;
            let with_recip = [ln_1p_unit_recip::<f32, false>(e), ln_1p_unit_recip::<f32, true>(e)];
            assert!(with_recip.iter().all(|&(_, r)| r == (1.0 + e).recip()));
            let with_recip = with_recip.map(|(l, _)| l);
            for got in [ln_1p_unit::<f32, false>(e), ln_1p_unit::<f32, true>(e)].into_iter().chain(with_recip)
            {
                worst = worst.max(ulps32(got, expected));
                assert!(ulps32(got, expected) <= 1, "ln_1p({e:e}) = {got:e}, not {expected:e}");
            }
            let x = e.max(f32::MIN_POSITIVE);
            let expected = f64::from(x).ln() as f32;
            for got in [ln_normal::<f32, false>(x), ln_normal::<f32, true>(x)] {
                worst = worst.max(ulps32(got, expected));
                assert!(ulps32(got, expected) <= 1, "ln({x:e}) = {got:e}, not {expected:e}");
            }
        }
        assert_eq!(worst, 1);
        assert_eq!(ln_1p_unit::<f32, true>(0.0).to_bits(), 0);
    }

    /// `ln_1p` of `[−1/2, 0]` (`ln(1 − p)` of a probability `p ≤ 1/2`): f32 against `f64::ln_1p`
    /// rounded to f32 (every 499th float and 10^6 log-uniform draws down to −1e-30), f64 against
    /// the platform's (10^6 draws).
    #[test]
    fn ln_1p_of_minus_a_half_to_zero_is_within_one_ulp() {
        let mut uniform = uniforms(0x5851_f42d_4c95_7f2d_u64);
        let sweep = (0x8000_0001_u32..=(-0.5_f32).to_bits()).step_by(499).map(f32::from_bits);
        let draws: Vec<f32> = (0..1_000_000).map(|_| -(0.5 * 1e-30_f64.powf(uniform())) as f32).collect();
        for e in sweep.chain(draws).chain([-0.5, -f32::EPSILON / 4.0, -1e-45]) {
            let expected = f64::from(e).ln_1p() as f32;
            for got in [ln_1p_unit::<f32, false>(e), ln_1p_unit::<f32, true>(e)] {
                assert!(ulps32(got, expected) <= 1, "ln_1p({e:e}) = {got:e}, not {expected:e}");
            }
        }
        for _ in 0..1_000_000 {
            let e = -0.5 * uniform();
            for got in [ln_1p_unit::<f64, false>(e), ln_1p_unit::<f64, true>(e)] {
                let expected = e.ln_1p();
                assert!(got.to_bits().abs_diff(expected.to_bits()) <= 1, "{e:e}: {got:e}, not {expected:e}");
            }
        }
    }

    /// The f64 `ln_1p` against the platform's (glibc's is within 1 ulp of the exact value) over
    /// `[0, 1]` and log-uniform down to 1e-300, and `ln` likewise.
    #[test]
    fn f64_ln_1p_is_within_one_ulp_of_the_platform_ln_1p() {
        let mut uniform = uniforms(0x9e37_79b9_7f4a_7c15_u64);
        for i in 0..1_000_000 {
            let e = if i % 2 == 0 { uniform() } else { 1e-300_f64.powf(uniform()) };
            for (got, expected) in [
                (ln_1p_unit::<f64, false>(e), e.ln_1p()),
                (ln_1p_unit::<f64, true>(e), e.ln_1p()),
                (ln_1p_unit_recip::<f64, false>(e).0, e.ln_1p()),
                (ln_1p_unit_recip::<f64, true>(e).0, e.ln_1p()),
                (ln_normal::<f64, false>(e), e.ln()),
                (ln_normal::<f64, true>(e), e.ln()),
            ] {
                assert!(got.to_bits().abs_diff(expected.to_bits()) <= 1, "{e:e}: {got:e}, not {expected:e}");
            }
        }
        assert_eq!(ln_1p_unit::<f64, false>(0.0).to_bits(), 0);
        assert_eq!(ln_1p_unit::<f64, true>(1.0), core::f64::consts::LN_2);
    }

    /// `pow_unit` against the platform's `f64::powf` (glibc's is within 0.52 ulp of the exact
    /// value) over `q` log-uniform in `[1e-45, 1]` and `1 − q` log-uniform down to `ε`, for the
    /// `γ` of focal losses: f32 within 1 ulp of the f64 power rounded to f32 (and equal to it for
    /// all but a few draws), f64 within `2 + γ` ulp whatever the size of `ln q` (down to the
    /// subnormal `q`, where a result below the smallest normal number may also be flushed to 0).
    #[test]
    fn pow_unit_is_within_a_few_ulp_of_the_platform_power() {
        let mut uniform = uniforms(0x2545_f491_4f6c_dd1d_u64);
        for gamma in [0.25, 0.5, 1.0, 2.0, 3.7, 16.0] {
            let (mut f32_off, mut f64_worst) = (0, 0);
            for i in 0..200_000 {
                let q = match i % 3 {
                    0 => 1e-45_f64.powf(uniform()),
                    1 => 1.0 - f64::EPSILON.powf(uniform()),
                    _ => 1e-320_f64.powf(uniform()),
                };
                let q32 = q as f32;
                let gamma32 = gamma as f32;
                let expected = f64::from(q32).powf(f64::from(gamma32)) as f32;
                for got in [pow_unit::<f32, false>(q32, gamma32), pow_unit::<f32, true>(q32, gamma32)] {
                    assert!(ulps32(got, expected) <= 1, "{q32:e}^{gamma}: {got:e}, not {expected:e}");
                    f32_off += usize::from(got != expected);
                }
                let expected = q.powf(gamma);
                for got in [pow_unit::<f64, false>(q, gamma), pow_unit::<f64, true>(q, gamma)] {
                    if expected < f64::MIN_POSITIVE {
                        let near = (got - expected).abs() <= 4.0 * f64::from_bits(1);
                        assert!(got == 0.0 || near, "{q:e}^{gamma}: {got:e}, not {expected:e}");
                    } else {
                        let ulps = got.to_bits().abs_diff(expected.to_bits());
                        f64_worst = f64_worst.max(ulps);
                        assert!(ulps as f64 <= 2.0 + gamma, "{q:e}^{gamma}: {got:e}, not {expected:e}");
                    }
                }
            }
            assert!(f32_off <= 4, "γ {gamma}: {f32_off} f32 results off by an ulp");
            eprintln!("γ {gamma}: f32 off {f32_off}, f64 worst {f64_worst} ulp");
        }
        for q in [0.0, 1.0] {
            assert_eq!(pow_unit::<f32, true>(q as f32, 2.5), q as f32);
            assert_eq!(pow_unit::<f64, false>(q, 2.5), q);
        }
    }

    #[test]
    fn lane_reductions_match_sequential_ones_for_every_tail_length() {
        for n in 0..40 {
            let x: Vec<f64> = (0..n).map(|i| ((i * 7919) % 23) as f64 - 11.0).collect();
            let a: Vec<f64> = (0..n).map(|i| ((i * 31) % 5) as f64).collect();
            let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(lane_max(&x), max);
            let abs_max = x.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
            assert_eq!(finite_abs_max::<f64, true>(&x), Some(abs_max));
            assert!(all_finite::<f64, false>(&x));
            // A single non-finite value anywhere, of either sign, is found.
            for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                for k in 0..n {
                    let mut y = x.clone();
                    y[k] = bad;
                    assert!(!all_finite::<f64, true>(&y) && !all_finite::<f64, false>(&y));
                    assert_eq!(finite_abs_max::<f64, false>(&y), None);
                }
            }
            let shifted_max = x.iter().zip(&a).map(|(x, a)| x + a).fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(lane_max_sum(&x, &a), shifted_max);
            let shifted_abs = x.iter().zip(&a).fold(0.0_f64, |m, (x, a)| m.max((x + a).abs()));
            assert_eq!(lane_abs_max_sum(&x, &a), shifted_abs);
            let exact: Vec<f64> = x.iter().zip(&a).map(|(x, a)| (x + a - 20.0).exp()).collect();
            let mut out = vec![0.0; n];
            let sum = exp_sum::<f64, false>(&mut out, ExpArgs::Adjusted(&x, &a), 20.0, n);
            assert!((sum - exact.iter().sum::<f64>()).abs() <= 1e-15 * sum);
            assert!(out.iter().zip(&exact).all(|(o, e)| (o - e).abs() <= 4e-16 * e));
        }
    }
}
