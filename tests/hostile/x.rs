//! Extended-range arithmetic for the references.

/// `m·2^e` with `m = 0` or `0.5 ≤ |m| < 1` (or `m` infinite or NaN, `e = 0`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct X {
    pub(crate) m: f64,
    pub(crate) e: i64,
}

pub(crate) fn frexp(v: f64) -> (f64, i64) {
    if v == 0.0 || !v.is_finite() {
        return (v, 0);
    }
    let (v, bias) = if v.abs() < f64::MIN_POSITIVE { (v * 2f64.powi(64), -64) } else { (v, 0) };
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1022;
    let m = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (m, exp + bias)
}

/// `m·2^e`, rounded once for a mantissa `0.5 ≤ |m| < 1` (NaN and `±inf` pass through).
pub(crate) fn ldexp(m: f64, e: i64) -> f64 {
    if m == 0.0 || !m.is_finite() {
        return m;
    }
    // Beyond `±2200` every finite nonzero `m·2^e` is out of range; within, three steps of at
    // most `2^734` keep the partial products normal until the last.
    let e = e.clamp(-2200, 2200) as i32;
    let third = e / 3;
    m * 2f64.powi(third) * 2f64.powi(third) * 2f64.powi(e - 2 * third)
}

impl X {
    pub(crate) const ZERO: X = X { m: 0.0, e: 0 };
    pub(crate) fn new(v: f64) -> X {
        let (m, e) = frexp(v);
        X { m, e }
    }
    pub(crate) fn f64(self) -> f64 {
        ldexp(self.m, self.e)
    }
    pub(crate) fn is_zero(self) -> bool {
        self.m == 0.0
    }
    pub(crate) fn mul(self, o: X) -> X {
        if self.is_zero() || o.is_zero() {
            return X::ZERO;
        }
        let (m, e) = frexp(self.m * o.m);
        X { m, e: e + self.e + o.e }
    }
    pub(crate) fn div(self, o: X) -> X {
        if self.is_zero() {
            return X::ZERO;
        }
        let (m, e) = frexp(self.m / o.m);
        X { m, e: e + self.e - o.e }
    }
    pub(crate) fn add(self, o: X) -> X {
        if self.is_zero() {
            return o;
        }
        if o.is_zero() {
            return self;
        }
        let (big, small) = if self.e >= o.e { (self, o) } else { (o, self) };
        let (m, e) = frexp(big.m + ldexp(small.m, small.e - big.e));
        if m == 0.0 { X::ZERO } else { X { m, e: e + big.e } }
    }
    pub(crate) fn neg(self) -> X {
        X { m: -self.m, e: self.e }
    }
    pub(crate) fn sub(self, o: X) -> X {
        self.add(o.neg())
    }
    pub(crate) fn abs(self) -> X {
        X { m: self.m.abs(), e: self.e }
    }
    /// `ln |self|`, as an f64 (finite for any nonzero X).
    pub(crate) fn ln(self) -> f64 {
        self.m.abs().ln() + self.e as f64 * std::f64::consts::LN_2
    }
    /// `e^self`.
    pub(crate) fn exp(self) -> X {
        let v = self.f64();
        if v.abs() < 700.0 {
            return X::new(v.exp());
        }
        if v.is_nan() {
            return X { m: f64::NAN, e: 0 };
        }
        // e^v = 2^(v / ln 2); beyond 2^±(2^62) even X does not reach.
        let t = v / std::f64::consts::LN_2;
        if t > 4e18 {
            return X { m: f64::INFINITY, e: 0 };
        }
        if t < -4e18 {
            return X::ZERO;
        }
        let k = t.floor();
        let (m, e) = frexp(((t - k) * std::f64::consts::LN_2).exp());
        X { m, e: e + k as i64 }
    }
    pub(crate) fn gt(self, o: X) -> bool {
        self.sub(o).m > 0.0
    }
}

/// `a − b` of two f64 without overflow.
pub(crate) fn diff(a: f64, b: f64) -> X {
    if a == f64::NEG_INFINITY {
        return X { m: f64::NEG_INFINITY, e: 0 };
    }
    X::new(a / 2.0 - b / 2.0).mul(X::new(2.0))
}

pub(crate) fn ln_1p(x: f64) -> f64 {
    x.ln_1p()
}

/// `softplus(x) = ln(1 + e^x)` of an X.
pub(crate) fn softplus(x: X) -> X {
    let v = x.f64();
    if v > 40.0 {
        return x.add(X::new((-v).exp().ln_1p()));
    }
    X::new(v.exp().ln_1p())
}

/// `log Σ e^{v_k}` of X values (`-inf` entries skipped); `None` if all are `-inf`.
pub(crate) fn lse_x(v: &[X]) -> Option<X> {
    lse_parts(v).map(|(max, rest)| max.add(X::new(rest)))
}

/// [`lse_x`] as its parts `(max, ln Σ e^{v − max})`, for differences `v − lse` that the sum of
/// the parts would round away.
pub(crate) fn lse_parts(v: &[X]) -> Option<(X, f64)> {
    let finite = v.iter().copied().filter(|x| x.m != f64::NEG_INFINITY);
    let max = finite.fold(None, |m: Option<X>, x| match m {
        Some(m) if !x.gt(m) => Some(m),
        _ => Some(x),
    })?;
    let mut skipped = false;
    let rest: f64 = v
        .iter()
        .filter(|x| x.m != f64::NEG_INFINITY)
        .filter(|&&x| {
            let is_max = !skipped && !x.gt(max) && !max.gt(x);
            skipped |= is_max;
            !is_max
        })
        .map(|&x| x.sub(max).f64().exp())
        .sum();
    Some((max, rest.ln_1p()))
}
