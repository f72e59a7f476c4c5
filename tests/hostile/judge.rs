//! The survey: failures counted per entry point instead of stopping at the first.

use super::*;

pub(crate) static CALLS: AtomicUsize = AtomicUsize::new(0);
pub(crate) static FAILURES: Mutex<Vec<(&'static str, String)>> = Mutex::new(Vec::new());

pub(crate) fn survey() -> bool {
    std::env::var_os("HOSTILE_SURVEY").is_some()
}

thread_local! {
    /// The failed checks of the generator run on this thread.
    pub(crate) static RUN_FAILURES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records a failed check; the run goes on, and [`run`] judges the count at its end.
pub(crate) fn fail(entry: &'static str, msg: String) -> std::result::Result<(), TestCaseError> {
    if let Some(path) = std::env::var_os("HOSTILE_LOG") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        writeln!(file, "{entry}: {}", msg.replace('\n', " ")).unwrap();
    }
    RUN_FAILURES.with(|f| f.borrow_mut().push(format!("{entry}: {msg}")));
    if survey() {
        FAILURES.lock().unwrap().push((entry, msg));
    }
    Ok(())
}

pub(crate) fn report(name: &str) {
    if survey() {
        let failures = FAILURES.lock().unwrap();
        let mut by_entry: std::collections::BTreeMap<&str, (usize, &str)> = Default::default();
        for (entry, msg) in failures.iter() {
            let slot = by_entry.entry(entry).or_insert((0, msg));
            slot.0 += 1;
        }
        println!("[{name}] calls so far: {}, failing: {}", CALLS.load(Ordering::Relaxed), failures.len());
        for (entry, (n, first)) in by_entry {
            println!("  {entry}: {n} failing, e.g. {first}");
        }
    }
}

/// What the reference expects of a call.
pub(crate) enum Expect<T> {
    /// The input is outside the documented domain, or a transform of a finite input overflows.
    Invalid,
    /// The exact result.
    Value(T),
}

/// Tolerances by float type.
pub(crate) trait Hostile: Float + proptest::arbitrary::Arbitrary + std::fmt::Debug {
    const RTOL: f64;
    fn max_f64() -> f64;
    /// Any bit pattern, or an ordinary value, or one of the extremes.
    fn values() -> BoxedStrategy<Self>;
}

pub(crate) fn extremes(max: f64, tiny: f64) -> Vec<f64> {
    vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        max,
        -max,
        max / 2.0,
        -max / 2.0,
        0.88 * max,
        -0.88 * max,
        tiny,
        -tiny,
        tiny * 3.0,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NAN,
        1e-20,
        40.0,
        -40.0,
        88.0,
        -750.0,
        1e10,
        -1e10,
    ]
}

impl Hostile for f32 {
    const RTOL: f64 = 1e-4;
    fn max_f64() -> f64 {
        f32::MAX as f64
    }
    fn values() -> BoxedStrategy<f32> {
        let ext: Vec<f32> = extremes(f32::MAX as f64, 1e-45).into_iter().map(|v| v as f32).collect();
        prop_oneof![
            3 => any::<u32>().prop_map(f32::from_bits),
            4 => -20.0f32..20.0,
            3 => proptest::sample::select(ext),
        ]
        .boxed()
    }
}

impl Hostile for f64 {
    const RTOL: f64 = 1e-11;
    fn max_f64() -> f64 {
        f64::MAX
    }
    fn values() -> BoxedStrategy<f64> {
        prop_oneof![
            3 => any::<u64>().prop_map(f64::from_bits),
            4 => -20.0f64..20.0,
            3 => proptest::sample::select(extremes(f64::MAX, 5e-324)),
        ]
        .boxed()
    }
}

pub(crate) fn min_normal<F: Float>() -> f64 {
    F::min_positive_value().as_f64()
}

/// Whether `got` (of type `F`) matches the exact `want` within `rtol·bound + 4·min_normal·coef`.
///
/// `coef` (at least 1) is the largest weight that multiplies a term of the output: the crate's
/// vectorised `exp` flushes results below the smallest normal number to 0 (documented), so a term
/// `w·e^x` with `e^x` below it is lost, an error of up to `w·min_normal`.
pub(crate) fn close<F: Hostile>(got: F, want: X, bound: X, coef: X) -> bool {
    let got = got.as_f64();
    if !got.is_finite() {
        return false;
    }
    let err = X::new(got).sub(want).abs();
    let coef = if coef.gt(X::new(1.0)) { coef } else { X::new(1.0) };
    let tol = X::new(F::RTOL).mul(bound.abs()).add(X::new(4.0 * min_normal::<F>()).mul(coef));
    !err.gt(tol)
}

/// The largest product of one entry of each weight vector (sample weights, class weights, α),
/// for [`close`].
pub(crate) fn weight_coef<F: Hostile>(weights: &[Option<&Vec<F>>]) -> X {
    weights.iter().flatten().fold(X::new(1.0), |c, w| {
        let max =
            w.iter().fold(0.0_f64, |m, v| if v.as_f64().is_finite() { m.max(v.as_f64().abs()) } else { m });
        c.mul(X::new(max.max(1.0)))
    })
}

/// Whether `v` fits `F` with room to spare (so an error would refuse a representable result), or
/// lies beyond it (so `Ok` would be wrong); neither when within `2·rtol` of the edge.
pub(crate) fn fits<F: Hostile>(v: X) -> Option<bool> {
    let limit = X::new(F::max_f64());
    let a = v.abs();
    if a.gt(limit.mul(X::new(1.0 + 2.0 * F::RTOL))) {
        Some(false)
    } else if limit.mul(X::new(1.0 - 2.0 * F::RTOL)).gt(a) {
        Some(true)
    } else {
        None
    }
}

thread_local! {
    /// Set by a reference whose batch sum `Σ_i ℓ_i` (the sum reduction's value, weights
    /// included) is beyond `f64`: the crate sums row losses in `f64`, so for `f64` logits such a
    /// batch may report an overflow even where its mean is representable (documented).
    pub(crate) static SUM_BEYOND_F64: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(crate) fn note_sum(total: X) {
    if !total.f64().is_finite() {
        SUM_BEYOND_F64.with(|s| s.set(true));
    }
}

/// For `f64`, an unweighted intermediate (a positive weight times a logit's softplus, `γ` times
/// it) beyond `f64` is computed before the sample weight that would bring it back multiplies: an
/// overflow is then accepted as for [`SUM_BEYOND_F64`] (a known limit; `f32` rows are recomputed
/// in `f64`, where every such product fits).
pub(crate) fn note_intermediate<F: Hostile>(v: X) {
    if F::max_f64() == f64::MAX {
        note_sum(v);
    }
}

/// Checks the outcome of a call against the reference: `values` pairs each output with its exact
/// value and bound.
pub(crate) fn judge<F: Hostile>(
    entry: &'static str,
    case: &dyn std::fmt::Debug,
    got: &Result<Vec<F>, Error>,
    expect: &Expect<Vec<(X, X)>>,
    coef: X,
) -> std::result::Result<(), TestCaseError> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    match (got, expect) {
        (Err(_), Expect::Invalid) => Ok(()),
        (Ok(v), Expect::Invalid) => fail(entry, format!("Ok({v:?}) for invalid input {case:?}")),
        (got, Expect::Value(want)) => {
            let representable = want.iter().map(|(v, _)| fits::<F>(*v)).collect::<Vec<_>>();
            let all_fit = representable.iter().all(|f| *f == Some(true));
            let some_overflow = representable.contains(&Some(false));
            match got {
                Err(e) if all_fit && !SUM_BEYOND_F64.with(|s| s.get()) => {
                    fail(entry, format!("Err({e}) for a representable result on {case:?}"))
                }
                Err(_) => Ok(()),
                Ok(_) if some_overflow => {
                    fail(entry, format!("Ok for a result beyond the range on {case:?}"))
                }
                Ok(v) => {
                    if v.len() != want.len() {
                        return fail(entry, format!("{} outputs, expected {}", v.len(), want.len()));
                    }
                    for (i, (&g, &(w, b))) in v.iter().zip(want).enumerate() {
                        if !close::<F>(g, w, b, coef) {
                            return fail(
                                entry,
                                format!(
                                    "output {i} is {g:?}, reference {:e} (bound {:e}) on {case:?}",
                                    w.f64(),
                                    b.f64()
                                ),
                            );
                        }
                    }
                    Ok(())
                }
            }
        }
    }
}
