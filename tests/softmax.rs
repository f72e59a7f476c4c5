//! `log_sum_exp`, `log_softmax`, `softmax` and their `_into` forms: agreement with the textbook
//! formula, extreme rows, masks, accuracy near certainty, strided inputs and outputs, overwriting,
//! shift invariance and empty batches.

mod common;

use common::{Rng, mat};
use longtail::Float;
use longtail::softmax::{
    log_softmax, log_softmax_into, log_sum_exp, log_sum_exp_into, softmax, softmax_into,
};
use ndarray::{Array1, Array2, ArrayView2, s};

const NEG_INF: f64 = f64::NEG_INFINITY;

fn cast<F: Float>(a: &Array2<f64>) -> Array2<F> {
    a.mapv(F::from_f64)
}

/// The textbook formulas in f64, without any shift: fine for moderate logits.
fn naive_lse(row: &[f64]) -> f64 {
    row.iter().map(|z| z.exp()).sum::<f64>().ln()
}

fn naive_softmax(row: &[f64]) -> Vec<f64> {
    let total: f64 = row.iter().map(|z| z.exp()).sum();
    row.iter().map(|z| z.exp() / total).collect()
}

/// Bitwise equality of two arrays (NaN-free), with a message.
fn assert_same<F: Float>(a: &ArrayView2<'_, F>, b: &ArrayView2<'_, F>, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    for ((idx, x), y) in a.indexed_iter().zip(b.iter()) {
        assert_eq!(x.as_f64().to_bits(), y.as_f64().to_bits(), "{what}: entry {idx:?} differs: {x} vs {y}");
    }
}

/// `|a − b| ≤ tol·scale`, with a message.
fn assert_close(a: f64, b: f64, tol: f64, scale: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol * scale,
        "{what}: {a:e} vs {b:e} (|diff| {:e} > {:e})",
        (a - b).abs(),
        tol * scale
    );
}

/// The ulp distance between two f32 numbers of the same sign.
fn ulps32(a: f32, b: f32) -> u32 {
    assert_eq!(a.is_sign_negative(), b.is_sign_negative(), "{a} vs {b}");
    a.to_bits().abs_diff(b.to_bits())
}

// ---------------------------------------------------------------------------------------------
// Agreement with the textbook formula
// ---------------------------------------------------------------------------------------------

/// Random batches of every width 1..=40 (crossing the 8-lane reductions), logits ~ N(0, 3²).
fn random_batches(seed: u64) -> Vec<Array2<f64>> {
    let mut rng = Rng::new(seed);
    (1..=40)
        .map(|k| {
            let batch = 1 + rng.below(6);
            rng.logits(batch, k, 3.0)
        })
        .collect()
}

#[test]
fn log_sum_exp_matches_the_naive_f64_formula_on_moderate_logits() {
    for logits in random_batches(1) {
        let lse = log_sum_exp(&logits).unwrap();
        for (i, row) in logits.rows().into_iter().enumerate() {
            let expected = naive_lse(row.as_slice().unwrap());
            assert_close(lse[i], expected, 4.0 * f64::EPSILON, 1.0 + expected.abs(), "lse");
        }
    }
}

#[test]
fn log_softmax_matches_the_naive_f64_formula_on_moderate_logits() {
    for logits in random_batches(2) {
        let lp = log_softmax(&logits).unwrap();
        for (i, row) in logits.rows().into_iter().enumerate() {
            let lse = naive_lse(row.as_slice().unwrap());
            for (k, &z) in row.iter().enumerate() {
                let what = format!("log_softmax[{i}, {k}] of {row}");
                assert_close(lp[[i, k]], z - lse, 4.0 * f64::EPSILON, 1.0 + z.abs() + lse.abs(), &what);
            }
        }
    }
}

#[test]
fn softmax_matches_the_naive_f64_formula_on_moderate_logits() {
    for logits in random_batches(3) {
        let p = softmax(&logits).unwrap();
        for (i, row) in logits.rows().into_iter().enumerate() {
            let max = row.fold(NEG_INF, |m, &v| v.max(m));
            for (k, expected) in naive_softmax(row.as_slice().unwrap()).into_iter().enumerate() {
                // exp amplifies the rounding of z − max: relative error ≈ ε·|z − max|, plus a few ε.
                let tol = f64::EPSILON * (4.0 + (row[k] - max).abs());
                assert_close(p[[i, k]], expected, tol, expected, &format!("softmax[{i}, {k}]"));
            }
        }
    }
}

#[test]
fn f32_results_match_the_f64_formula_within_a_few_f32_ulps() {
    let eps = f64::from(f32::EPSILON);
    for logits in random_batches(4) {
        let logits = logits.mapv(|v| f64::from(v as f32)); // the values f32 sees
        let z32 = cast::<f32>(&logits);
        let lse = log_sum_exp(&z32).unwrap();
        let lp = log_softmax(&z32).unwrap();
        let p = softmax(&z32).unwrap();
        for (i, row) in logits.rows().into_iter().enumerate() {
            let row = row.as_slice().unwrap();
            let expected = naive_lse(row);
            let max = row.iter().fold(NEG_INF, |m, &v| v.max(m));
            assert_close(f64::from(lse[i]), expected, 4.0 * eps, 1.0 + expected.abs(), "f32 lse");
            for (k, (&z, pk)) in row.iter().zip(naive_softmax(row)).enumerate() {
                let scale = 1.0 + z.abs() + expected.abs();
                assert_close(f64::from(lp[[i, k]]), z - expected, 4.0 * eps, scale, "f32 log_softmax");
                let tol = eps * (4.0 + (z - max).abs());
                assert_close(f64::from(p[[i, k]]), pk, tol, pk, &format!("f32 softmax[{i}, {k}]"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Extreme rows
// ---------------------------------------------------------------------------------------------

#[test]
fn rows_near_plus_minus_1e30_in_f64_give_exact_finite_results() {
    let ln2 = std::f64::consts::LN_2;
    // 1e30 + ln 2 rounds to 1e30: the ulp of 1e30 is 2^47 ≈ 1.4e14.
    assert_eq!(1e30 + ln2, 1e30);
    let logits = mat::<f64>(&[
        &[1e30, 1e30],
        &[-1e30, -1e30],
        &[1e30, -1e30],
        &[-1e30, 1e30],
        &[1e30, 1e30 * (1.0 - f64::EPSILON)],
    ]);
    let lse = log_sum_exp(&logits).unwrap();
    assert_eq!(lse.to_vec(), vec![1e30, -1e30, 1e30, 1e30, 1e30]);
    let p = softmax(&logits).unwrap();
    assert_eq!(p, mat::<f64>(&[&[0.5, 0.5], &[0.5, 0.5], &[1.0, 0.0], &[0.0, 1.0], &[1.0, 0.0]]));
    let lp = log_softmax(&logits).unwrap();
    assert_eq!(lp.row(0).to_vec(), vec![-ln2, -ln2]);
    assert_eq!(lp.row(1).to_vec(), vec![-ln2, -ln2]);
    assert_eq!(lp.row(2).to_vec(), vec![0.0, -2e30]);
    assert_eq!(lp.row(3).to_vec(), vec![-2e30, 0.0]);
    assert_eq!(lp[[4, 0]], 0.0);
    assert_eq!(lp[[4, 1]], 1e30 * (1.0 - f64::EPSILON) - 1e30);
}

#[test]
fn three_equal_rows_near_1e30_give_thirds() {
    let logits = mat::<f64>(&[&[1e30, 1e30, 1e30, NEG_INF], &[-1e30, -1e30, -1e30, NEG_INF]]);
    let p = softmax(&logits).unwrap();
    let lp = log_softmax(&logits).unwrap();
    let lse = log_sum_exp(&logits).unwrap();
    assert_eq!(lse.to_vec(), vec![1e30, -1e30]);
    for i in 0..2 {
        for k in 0..3 {
            assert_close(p[[i, k]], 1.0 / 3.0, f64::EPSILON, 1.0 / 3.0, "p = 1/3");
            assert_close(lp[[i, k]], -(3f64.ln()), f64::EPSILON, 3f64.ln(), "log p = −ln 3");
        }
        assert_eq!(p[[i, 3]], 0.0);
        assert_eq!(lp[[i, 3]], NEG_INF);
    }
}

#[test]
fn rows_near_plus_minus_1e4_in_f32_give_finite_correctly_rounded_results() {
    // e^1e4 overflows f32 (and f64): only the max shift makes these finite.
    let logits = mat::<f32>(&[&[1e4, 1e4], &[-1e4, -1e4], &[1e4, 9999.0], &[-1e4, -10001.0], &[1e4, -1e4]]);
    let lse = log_sum_exp(&logits).unwrap();
    let lp = log_softmax(&logits).unwrap();
    let p = softmax(&logits).unwrap();
    let l1 = (-1f64).exp().ln_1p(); // ln(1 + e^−1)
    let expected_lse = [1e4 + 2f64.ln(), -1e4 + 2f64.ln(), 1e4 + l1, -1e4 + l1, 1e4];
    for (i, &e) in expected_lse.iter().enumerate() {
        assert!(ulps32(lse[i], e as f32) <= 1, "lse row {i}: {} vs {}", lse[i], e as f32);
    }
    let sigma = 1.0 / (1.0 + (-1f64).exp()); // σ(1)
    let expected_p = [[0.5, 0.5], [0.5, 0.5], [sigma, 1.0 - sigma], [sigma, 1.0 - sigma], [1.0, 0.0]];
    let expected_lp = [[-2f64.ln(); 2], [-2f64.ln(); 2], [-l1, -1.0 - l1], [-l1, -1.0 - l1], [0.0, -2e4]];
    for i in 0..5 {
        for k in 0..2 {
            let (pe, lpe) = (expected_p[i][k] as f32, expected_lp[i][k] as f32);
            if pe == 0.0 {
                assert_eq!(p[[i, k]], 0.0);
            } else {
                assert!(ulps32(p[[i, k]], pe) <= 2, "p[{i}, {k}]: {} vs {pe}", p[[i, k]]);
            }
            if lpe == 0.0 {
                assert_eq!(lp[[i, k]], 0.0);
            } else {
                assert!(ulps32(lp[[i, k]], lpe) <= 2, "log p[{i}, {k}]: {} vs {lpe}", lp[[i, k]]);
            }
        }
    }
    assert_eq!(p.row(0).to_vec(), vec![0.5, 0.5]);
}

#[test]
fn a_single_class_has_probability_one_and_log_sum_exp_equal_to_its_logit() {
    let logits = mat::<f64>(&[&[3.5], &[-1e300], &[1e300], &[0.0]]);
    assert_eq!(softmax(&logits).unwrap(), Array2::ones((4, 1)));
    assert_eq!(log_softmax(&logits).unwrap(), Array2::zeros((4, 1)));
    assert_eq!(log_sum_exp(&logits).unwrap().to_vec(), vec![3.5, -1e300, 1e300, 0.0]);
}

#[test]
fn f64_max_logits_do_not_overflow() {
    let logits = mat::<f64>(&[&[f64::MAX, f64::MAX], &[f64::MAX, -f64::MAX], &[f64::MIN_POSITIVE, 0.0]]);
    let lse = log_sum_exp(&logits).unwrap();
    assert_eq!(lse[0], f64::MAX);
    assert_eq!(lse[1], f64::MAX);
    assert_close(lse[2], 2f64.ln(), f64::EPSILON, 1.0, "lse of tiny logits");
    let p = softmax(&logits).unwrap();
    assert_eq!(p.row(0).to_vec(), vec![0.5, 0.5]);
    assert_eq!(p.row(1).to_vec(), vec![1.0, 0.0]);
    // Row 1's second log-probability is −MAX − MAX, beyond the range: an error, not −inf.
    let err = log_softmax(&logits).unwrap_err();
    assert_eq!(
        err,
        longtail::Error::Overflow {
            what: "log_softmax",
            row: Some(1),
            class: Some(1),
            value: Some(-f64::MAX)
        }
    );
    let lp = log_softmax(&logits.slice(s![0..1, ..])).unwrap();
    assert_eq!(lp.row(0).to_vec(), vec![-2f64.ln(), -2f64.ln()]);
    let lp = log_softmax(&mat::<f64>(&[&[f64::MAX, f64::MAX / 2.0]])).unwrap();
    assert_eq!(lp.row(0).to_vec(), vec![0.0, -f64::MAX / 2.0]);
}

// ---------------------------------------------------------------------------------------------
// Masks
// ---------------------------------------------------------------------------------------------

/// Returns the row without the masked (`-inf`) columns, and their positions.
fn live_columns(row: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let live: Vec<usize> = (0..row.len()).filter(|&k| row[k] != NEG_INF).collect();
    (live.iter().map(|&k| row[k]).collect(), live)
}

fn masked_rows_case<F: Float>(seed: u64) {
    let mut rng = Rng::new(seed);
    let tol = 4.0 * F::epsilon().as_f64();
    for k in 2..=20 {
        let mut logits = rng.logits(4, k, 2.0);
        // Mask a random number of entries per row, keeping at least one live.
        for mut row in logits.rows_mut() {
            let masks = rng.below(k);
            for _ in 0..masks {
                row[rng.below(k)] = NEG_INF;
            }
            if row.iter().all(|&v| v == NEG_INF) {
                row[rng.below(k)] = rng.normal();
            }
        }
        let z = cast::<F>(&logits);
        let (lse, lp, p) = (log_sum_exp(&z).unwrap(), log_softmax(&z).unwrap(), softmax(&z).unwrap());
        for (i, row) in z.rows().into_iter().enumerate() {
            let row: Vec<f64> = row.iter().map(|v| v.as_f64()).collect();
            let (kept, live) = live_columns(&row);
            let dropped =
                Array2::from_shape_vec((1, kept.len()), kept.iter().map(|&v| F::from_f64(v)).collect())
                    .unwrap();
            let (dlse, dlp, dp) =
                (log_sum_exp(&dropped).unwrap(), log_softmax(&dropped).unwrap(), softmax(&dropped).unwrap());
            let what = format!("K = {k}, row {i} = {row:?}");
            assert_close(lse[i].as_f64(), dlse[0].as_f64(), tol, 1.0 + dlse[0].as_f64().abs(), &what);
            for c in 0..k {
                match live.iter().position(|&l| l == c) {
                    None => {
                        assert_eq!(p[[i, c]].as_f64().to_bits(), 0.0_f64.to_bits(), "{what}: p at mask {c}");
                        assert_eq!(lp[[i, c]].as_f64(), NEG_INF, "{what}: log p at mask {c}");
                    }
                    Some(j) => {
                        let (pe, lpe) = (dp[[0, j]].as_f64(), dlp[[0, j]].as_f64());
                        assert_close(p[[i, c]].as_f64(), pe, tol, pe, &what);
                        assert_close(lp[[i, c]].as_f64(), lpe, tol, 1.0 + lpe.abs(), &what);
                    }
                }
            }
        }
    }
}

#[test]
fn masked_entries_get_probability_exactly_zero_and_the_rest_equals_the_row_without_them_f64() {
    masked_rows_case::<f64>(5);
}

#[test]
fn masked_entries_get_probability_exactly_zero_and_the_rest_equals_the_row_without_them_f32() {
    masked_rows_case::<f32>(6);
}

#[test]
fn a_mask_at_the_first_or_last_column_or_next_to_the_max_is_exactly_zero() {
    let logits = mat::<f64>(&[&[NEG_INF, 1.0, 2.0], &[1.0, 2.0, NEG_INF], &[NEG_INF, 5.0, NEG_INF]]);
    let p = softmax(&logits).unwrap();
    let e = 1.0 / (1.0 + (-1f64).exp());
    assert_eq!(p[[0, 0]], 0.0);
    assert_close(p[[0, 2]], e, 2.0 * f64::EPSILON, 1.0, "p");
    assert_eq!(p[[1, 2]], 0.0);
    assert_close(p[[1, 1]], e, 2.0 * f64::EPSILON, 1.0, "p");
    assert_eq!(p.row(2).to_vec(), vec![0.0, 1.0, 0.0]);
    assert_eq!(log_softmax(&logits).unwrap().row(2).to_vec(), vec![NEG_INF, 0.0, NEG_INF]);
    assert_eq!(log_sum_exp(&logits).unwrap()[2], 5.0);
}

// ---------------------------------------------------------------------------------------------
// Accuracy near certainty
// ---------------------------------------------------------------------------------------------

#[test]
fn log_softmax_of_a_near_certain_class_keeps_relative_accuracy_f64() {
    let e40 = (-40f64).exp();
    let logits = mat::<f64>(&[&[0.0, -40.0], &[-40.0, 0.0], &[0.0, -700.0]]);
    let lp = log_softmax(&logits).unwrap();
    let lse = log_sum_exp(&logits).unwrap();
    let p = softmax(&logits).unwrap();
    // log p_0 = −ln(1 + e^−40) ≈ −4.25e−18, not 0.
    let expected = -e40.ln_1p();
    assert!(expected < 0.0 && expected > -5e-18);
    assert_close(lp[[0, 0]], expected, 1e-14, expected.abs(), "log p_0 of [0, −40]");
    assert_close(lp[[1, 1]], expected, 1e-14, expected.abs(), "log p_1 of [−40, 0]");
    assert_close(lse[0], -expected, 1e-14, expected.abs(), "lse of [0, −40]");
    assert_close(lp[[0, 1]], -40.0 + expected, 1e-16, 40.0, "log p_1 of [0, −40]");
    assert_close(p[[0, 1]], e40 / (1.0 + e40), 1e-14, e40, "p_1 of [0, −40]");
    let e700 = (-700f64).exp();
    assert_close(lp[[2, 0]], -e700, 1e-14, e700, "log p_0 of [0, −700]");
    assert_close(p[[2, 1]], e700, 1e-14, e700, "p_1 of [0, −700]");
}

#[test]
fn log_softmax_of_a_near_certain_class_among_many_small_ones_is_accurate() {
    let mut row = vec![0.0];
    row.extend((0..100).map(|j| -40.0 - f64::from(j) / 10.0));
    let logits = Array2::from_shape_vec((1, row.len()), row.clone()).unwrap();
    let r: f64 = row[1..].iter().map(|z| z.exp()).sum();
    let expected = -r.ln_1p();
    let lp = log_softmax(&logits).unwrap();
    assert_close(lp[[0, 0]], expected, 1e-13, expected.abs(), "log p_0 with 100 small classes");
    // The same with the dominant class last: the split around the argmax does not depend on its place.
    let mut reversed = row.clone();
    reversed.reverse();
    let logits = Array2::from_shape_vec((1, reversed.len()), reversed).unwrap();
    let lp = log_softmax(&logits).unwrap();
    assert_close(lp[[0, 100]], expected, 1e-13, expected.abs(), "log p_last with 100 small classes");
}

#[test]
fn log_softmax_of_a_near_certain_class_keeps_relative_accuracy_f32() {
    let logits = mat::<f32>(&[&[0.0, -20.0], &[-20.0, 0.0]]);
    let lp = log_softmax(&logits).unwrap();
    let lse = log_sum_exp(&logits).unwrap();
    // log p_0 = −ln(1 + e^−20) ≈ −2.06e−9, far below f32's ε: a naive 1 + r would round it to 0.
    let expected = -(-20f64).exp().ln_1p();
    let tol = 4.0 * f64::from(f32::EPSILON);
    assert!(lp[[0, 0]] < 0.0);
    assert_close(f64::from(lp[[0, 0]]), expected, tol, expected.abs(), "f32 log p_0 of [0, −20]");
    assert_close(f64::from(lp[[1, 1]]), expected, tol, expected.abs(), "f32 log p_1 of [−20, 0]");
    assert_close(f64::from(lse[0]), -expected, tol, expected.abs(), "f32 lse of [0, −20]");
    assert_eq!(lp[[0, 1]], -20.0);
}

// ---------------------------------------------------------------------------------------------
// Rows sum to one
// ---------------------------------------------------------------------------------------------

fn rows_sum_to_one_case<F: Float>(seed: u64, ulps: f64) {
    let mut rng = Rng::new(seed);
    let eps = F::epsilon().as_f64();
    for k in [1, 2, 3, 7, 8, 9, 16, 17, 33, 64] {
        for scale in [0.1, 1.0, 5.0, 30.0] {
            let z = cast::<F>(&rng.logits(20, k, scale));
            let p = softmax(&z).unwrap();
            for row in p.rows() {
                // Summed in f64 so the check adds no rounding of its own.
                let sum: f64 = row.iter().map(|v| v.as_f64()).sum();
                assert!(
                    (sum - 1.0).abs() <= ulps * eps,
                    "K = {k}, scale {scale}: row sums to 1 + {:e}",
                    sum - 1.0
                );
                assert!(row.iter().all(|&v| v >= F::zero() && v <= F::one()));
            }
        }
    }
}

#[test]
fn softmax_rows_sum_to_one_within_a_few_ulp_f64() {
    rows_sum_to_one_case::<f64>(7, 3.0);
}

#[test]
fn softmax_rows_sum_to_one_within_a_few_ulp_f32() {
    rows_sum_to_one_case::<f32>(8, 3.0);
}

// ---------------------------------------------------------------------------------------------
// Strided inputs and outputs
// ---------------------------------------------------------------------------------------------

/// log_softmax, softmax and log_sum_exp of a strided view equal those of its contiguous copy.
fn assert_all_agree<F: Float>(view: ndarray::ArrayView2<F>, contiguous: &Array2<F>, what: &str) {
    assert_same(&log_softmax(&view).unwrap().view(), &log_softmax(contiguous).unwrap().view(), what);
    assert_same(&softmax(&view).unwrap().view(), &softmax(contiguous).unwrap().view(), what);
    let (a, c) = (log_sum_exp(&view).unwrap(), log_sum_exp(contiguous).unwrap());
    assert_same(&a.insert_axis(ndarray::Axis(0)).view(), &c.insert_axis(ndarray::Axis(0)).view(), what);
}

fn strided_case<F: Float>(seed: u64) {
    let mut rng = Rng::new(seed);
    for (b, k) in [(1, 1), (3, 5), (6, 9), (4, 17)] {
        // A transposed view: rows of the [B, K] view are columns of the stored [K, B] array.
        let stored = cast::<F>(&rng.logits(k, b, 3.0));
        let transposed = stored.t();
        let contiguous = transposed.to_owned();
        assert!(b == 1 || k == 1 || transposed.row(0).as_slice().is_none());
        assert_all_agree(transposed, &contiguous, "t()");

        // Every other column of a wider array.
        let wide = cast::<F>(&rng.logits(b, 2 * k, 3.0));
        let stepped = wide.slice(s![.., ..;2]);
        let contiguous = stepped.to_owned();
        assert_all_agree(stepped, &contiguous, "step");

        // Writing into a transposed output view, and into every other column of a wider output.
        let expected_p = softmax(&contiguous).unwrap();
        let expected_lp = log_softmax(&contiguous).unwrap();
        let mut out_storage = Array2::from_elem((k, b), F::nan());
        softmax_into(&stepped, &mut out_storage.view_mut().reversed_axes()).unwrap();
        assert_same(&out_storage.t(), &expected_p.view(), "softmax into a transposed view");
        log_softmax_into(&transposed, &mut out_storage.view_mut().reversed_axes()).unwrap();
        assert_same(&out_storage.t(), &log_softmax(&transposed.to_owned()).unwrap().view(), "lsm into t()");

        let sentinel = F::from_f64(7.0);
        let mut wide_out = Array2::from_elem((b, 2 * k), sentinel);
        log_softmax_into(&stepped, &mut wide_out.slice_mut(s![.., ..;2])).unwrap();
        assert_same(&wide_out.slice(s![.., ..;2]), &expected_lp.view(), "lsm into a stepped view");
        assert!(wide_out.slice(s![.., 1..;2]).iter().all(|&v| v == sentinel), "wrote between the strides");

        let mut lse_out = Array1::from_elem(2 * b, sentinel);
        log_sum_exp_into(&transposed, &mut lse_out.slice_mut(s![..;2])).unwrap();
        let expected = log_sum_exp(&transposed.to_owned()).unwrap();
        assert!(
            lse_out
                .slice(s![..;2])
                .iter()
                .zip(&expected)
                .all(|(x, y)| x.as_f64().to_bits() == y.as_f64().to_bits())
        );
        assert!(lse_out.slice(s![1..;2]).iter().all(|&v| v == sentinel), "lse wrote between the strides");
    }
}

#[test]
fn strided_inputs_and_outputs_give_the_same_bits_as_contiguous_ones_f64() {
    strided_case::<f64>(9);
}

#[test]
fn strided_inputs_and_outputs_give_the_same_bits_as_contiguous_ones_f32() {
    strided_case::<f32>(10);
}

#[test]
fn a_reversed_column_order_permutes_the_results() {
    let mut rng = Rng::new(11);
    let logits = rng.logits(5, 6, 2.0);
    let reversed = logits.slice(s![.., ..;-1]);
    let p = softmax(&logits).unwrap();
    let pr = softmax(&reversed).unwrap();
    let lse = log_sum_exp(&logits).unwrap();
    let lser = log_sum_exp(&reversed).unwrap();
    for i in 0..5 {
        assert_close(lse[i], lser[i], 2.0 * f64::EPSILON, 1.0 + lse[i].abs(), "lse of reversed row");
        for k in 0..6 {
            assert_close(
                pr[[i, k]],
                p[[i, 5 - k]],
                4.0 * f64::EPSILON,
                p[[i, 5 - k]],
                "softmax of reversed row",
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `_into` overwrites
// ---------------------------------------------------------------------------------------------

fn into_overwrites_case<F: Float>(seed: u64) {
    let mut rng = Rng::new(seed);
    for (b, k) in [(1, 1), (2, 3), (5, 8), (7, 19)] {
        let mut logits = cast::<F>(&rng.logits(b, k, 4.0));
        if k > 1 {
            logits[[0, 0]] = F::neg_infinity();
        }
        for fill in [F::nan(), F::infinity(), F::from_f64(7.0)] {
            let mut lse = Array1::from_elem(b, fill);
            log_sum_exp_into(&logits, &mut lse).unwrap();
            assert_same(
                &lse.view().insert_axis(ndarray::Axis(0)),
                &log_sum_exp(&logits).unwrap().view().insert_axis(ndarray::Axis(0)),
                "log_sum_exp_into",
            );
            let mut p = Array2::from_elem((b, k), fill);
            softmax_into(&logits, &mut p).unwrap();
            assert_same(&p.view(), &softmax(&logits).unwrap().view(), "softmax_into");
            let mut lp = Array2::from_elem((b, k), fill);
            log_softmax_into(&logits, &mut lp).unwrap();
            assert_same(&lp.view(), &log_softmax(&logits).unwrap().view(), "log_softmax_into");
        }
    }
}

#[test]
fn into_forms_overwrite_a_prefilled_buffer_and_equal_the_allocating_calls_f64() {
    into_overwrites_case::<f64>(12);
}

#[test]
fn into_forms_overwrite_a_prefilled_buffer_and_equal_the_allocating_calls_f32() {
    into_overwrites_case::<f32>(13);
}

// ---------------------------------------------------------------------------------------------
// Shift invariance
// ---------------------------------------------------------------------------------------------

fn exact_shift_case<F: Float>(seed: u64) {
    // Logits on a grid of 1/64 in [−8, 8]: adding 1000 is exact in f32 and f64, and so is every
    // difference z − max, so log_softmax and softmax must not change by a single bit.
    let mut rng = Rng::new(seed);
    let grid = Array2::from_shape_simple_fn((6, 11), || (rng.below(1025) as f64 - 512.0) / 64.0);
    let z = cast::<F>(&grid);
    for c in [1000.0, -1000.0, 0.5] {
        let shifted = z.mapv(|v| v + F::from_f64(c));
        assert_same(
            &log_softmax(&shifted).unwrap().view(),
            &log_softmax(&z).unwrap().view(),
            "exact shift lsm",
        );
        assert_same(&softmax(&shifted).unwrap().view(), &softmax(&z).unwrap().view(), "exact shift softmax");
        let (a, b) = (log_sum_exp(&shifted).unwrap(), log_sum_exp(&z).unwrap());
        for (x, y) in a.iter().zip(&b) {
            let expected = y.as_f64() + c;
            // Only the final sum max + ln(1 + r) rounds differently.
            let ulp = 2.0 * F::epsilon().as_f64() * expected.abs().max(1.0);
            assert_close(x.as_f64(), expected, 1.0, ulp, "lse shifts by c");
        }
    }
}

#[test]
fn an_exactly_representable_shift_leaves_log_softmax_bitwise_unchanged_f64() {
    exact_shift_case::<f64>(14);
}

#[test]
fn an_exactly_representable_shift_leaves_log_softmax_bitwise_unchanged_f32() {
    exact_shift_case::<f32>(15);
}

#[test]
fn shifting_a_row_by_a_constant_leaves_log_softmax_unchanged_within_rounding() {
    let mut rng = Rng::new(16);
    let logits = rng.logits(8, 13, 3.0);
    let lp = log_softmax(&logits).unwrap();
    for c in [1e-3, 1.0, -37.5, 1e3, 1e6, -1e8] {
        let shifted = logits.mapv(|v| v + c);
        let lps = log_softmax(&shifted).unwrap();
        for ((idx, &a), &b) in lps.indexed_iter().zip(&lp) {
            // Each z + c rounds by half an ulp of |c|; two such roundings enter each difference.
            let tol = 2.0 * f64::EPSILON * (c.abs() + 16.0) + 4.0 * f64::EPSILON * (1.0 + b.abs());
            assert!((a - b).abs() <= tol, "c = {c}, {idx:?}: {a} vs {b}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Empty batches and zero classes
// ---------------------------------------------------------------------------------------------

fn empty_case<F: Float>() {
    for k in [0, 1, 5] {
        let logits = Array2::<F>::zeros((0, k));
        assert_eq!(log_sum_exp(&logits).unwrap().len(), 0);
        assert_eq!(softmax(&logits).unwrap().dim(), (0, k));
        assert_eq!(log_softmax(&logits).unwrap().dim(), (0, k));
        let mut lse = Array1::<F>::zeros(0);
        log_sum_exp_into(&logits, &mut lse).unwrap();
        let mut out = Array2::<F>::zeros((0, k));
        softmax_into(&logits, &mut out).unwrap();
        log_softmax_into(&logits, &mut out).unwrap();
    }
}

#[test]
fn zero_rows_give_empty_outputs_f64() {
    empty_case::<f64>();
}

#[test]
fn zero_rows_give_empty_outputs_f32() {
    empty_case::<f32>();
}

#[test]
fn zero_classes_give_neg_inf_log_sum_exp_and_empty_rows() {
    // Documented: the log of the empty sum is −inf.
    let logits = Array2::<f64>::zeros((3, 0));
    assert_eq!(log_sum_exp(&logits).unwrap().to_vec(), vec![NEG_INF; 3]);
    assert_eq!(softmax(&logits).unwrap().dim(), (3, 0));
    assert_eq!(log_softmax(&logits).unwrap().dim(), (3, 0));
}
