//! Runtime choice of the instruction set: a default build targets baseline x86-64 (SSE2), so the
//! kernels are compiled a second time with AVX2 and FMA enabled and picked when the CPU has them.
//!
//! A [`Kernel`] is written once, generic over `FMA`, from `#[inline(always)]` pieces; [`dispatch`]
//! runs it inside a `#[target_feature]` function, where it is inlined and compiled for AVX2+FMA, or
//! as the portable build. Both follow the same code path; they differ only in whether `a·b + c` is
//! fused, which changes results by rounding within the documented accuracy of
//! [`exp_nonpos`](crate::float::exp_nonpos).
//!
//! The row kernels have a third build, for AVX-512 ([`dispatch_wide`]), which runs rows of at
//! least 128 classes (some 10 % faster than the AVX2 build on rows of 1000 classes and more) and
//! short rows of 8 to 16 classes, grouped eight rows at a time (some 5–15 % faster), and two
//! classes of hard labels in closed form (30–45 %). Rows in between stay on AVX2, where 16-lane
//! vectors would leave them to the scalar tail, and so do the other short rows, which measured
//! slower on AVX-512.
#![allow(unsafe_code)]

/// A computation compiled once per instruction set.
pub(crate) trait Kernel {
    /// What the computation returns.
    type Output;
    /// Runs it; `FMA` says whether fused multiply-adds are hardware instructions here. Must be
    /// `#[inline(always)]`, and so must everything it calls in its hot loops.
    fn run<const FMA: bool>(self) -> Self::Output;
}

/// Runs `kernel` with the best instruction set this CPU supports. The CPU is probed once per
/// process (`std` caches the answer; later calls are an atomic load).
#[inline]
pub(crate) fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(test)]
    if tests::PORTABLE.get() {
        return kernel.run::<false>();
    }
    #[cfg(all(target_arch = "x86_64", not(all(target_feature = "avx2", target_feature = "fma"))))]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA, the features `avx2_fma` is compiled with.
            return unsafe { avx2_fma(kernel) };
        }
    }
    kernel.run::<{ cfg!(target_feature = "fma") }>()
}

/// [`dispatch`], or with `wide` and a CPU that has AVX-512 (F, DQ, BW, VL), `kernel` compiled for
/// AVX-512: kernels over long rows, where its 16-lane vectors pay.
#[inline]
pub(crate) fn dispatch_wide<K: Kernel>(kernel: K, wide: bool) -> K::Output {
    #[cfg(test)]
    if tests::PORTABLE.get() || tests::NARROW.get() {
        return dispatch(kernel);
    }
    #[cfg(target_arch = "x86_64")]
    if wide
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("fma")
    {
        // SAFETY: the CPU supports the features `avx512` is compiled with.
        return unsafe { avx512(kernel) };
    }
    dispatch(kernel)
}

/// `kernel` compiled with AVX-512 (F, DQ, BW, VL), AVX2 and FMA.
///
/// # Safety
///
/// The CPU must support those features.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")]
unsafe fn avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<true>()
}

/// `kernel` compiled with AVX2 and FMA.
///
/// # Safety
///
/// The CPU must support AVX2 and FMA.
#[cfg(all(target_arch = "x86_64", not(all(target_feature = "avx2", target_feature = "fma"))))]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_fma<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<true>()
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use ndarray::Array2;

    use crate::{
        AsymmetricLoss, BinarySmoothF1Loss, BinaryTargets, EqlV2Loss, LdamLoss, Loss, PairwiseMarginLoss,
        SigmoidLoss, SmoothF1Loss, SoftmaxLoss, Targets, ZlprLoss, softmax,
    };

    thread_local! {
        /// Makes [`dispatch`](super::dispatch) run the portable build on this thread.
        pub(super) static PORTABLE: Cell<bool> = const { Cell::new(false) };
        /// Makes [`dispatch_wide`](super::dispatch_wide) leave AVX-512 out on this thread.
        pub(super) static NARROW: Cell<bool> = const { Cell::new(false) };
    }

    /// `f` on the dispatched build (AVX2 + FMA here, if the CPU has them) and on the portable one.
    fn both<T>(f: impl Fn() -> T) -> (T, T) {
        let fast = f();
        PORTABLE.set(true);
        let portable = f();
        PORTABLE.set(false);
        (fast, portable)
    }

    fn close(a: &Array2<f64>, b: &Array2<f64>, tol: f64) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + x.abs()))
    }

    /// `f` on the three builds: AVX-512 (where the CPU has it and the kernel takes it), AVX2 and
    /// portable.
    fn three<T>(f: impl Fn() -> T) -> (T, T, T) {
        let wide = f();
        NARROW.set(true);
        let (avx2, portable) = both(f);
        NARROW.set(false);
        (wide, avx2, portable)
    }

    /// The AVX-512 build of the softmax family's kernel (where the CPU has AVX-512), the AVX2 one
    /// and the portable one agree to a few ulp: one-hot, dense with and without factors, labels
    /// and probabilities, rows of 300 classes, short rows of 12 (in groups, the last partial),
    /// of 5 (hard labels a block of rows at a time, as `FewClassRows`) and of 2 (hard labels in
    /// closed form).
    #[test]
    fn the_three_builds_of_the_row_kernel_agree() {
        for (b, k) in [(5, 300), (21, 12), (21, 5), (21, 2)] {
            three_builds_agree(b, k);
        }
    }

    fn three_builds_agree(b: usize, k: usize) {
        let logits = Array2::from_shape_fn((b, k), |(i, j)| ((i * 31 + j * 17) % 23) as f64 / 3.0 - 3.5);
        let labels: Vec<usize> = (0..b).map(|i| (i * 57) % k).collect();
        let probs = Array2::from_shape_fn((b, k), |(i, j)| ((i + j) % 4) as f64 / (1.5 * k as f64));
        let probs = &probs / &probs.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
        let prior: Vec<f64> = (0..k).map(|j| 1.0 + j as f64).collect();
        let losses = [
            SoftmaxLoss::cross_entropy(),
            SoftmaxLoss::logit_adjusted(&prior).unwrap(),
            SoftmaxLoss::cross_entropy().with_label_smoothing(0.1).unwrap(),
            SoftmaxLoss::focal(2.0).unwrap().with_class_weights(&prior).unwrap(),
        ];
        for loss in &losses {
            for targets in [Targets::labels(&labels), Targets::probs(&probs)] {
                let (wide, avx2, portable) = three(|| loss.loss_and_grad(&logits, targets.clone()).unwrap());
                for other in [&avx2, &portable] {
                    assert!((wide.0 - other.0).abs() <= 1e-14 * wide.0, "{} vs {}", wide.0, other.0);
                    assert!(close(&wide.1, &other.1, 1e-14));
                }
            }
        }
    }

    /// The portable build (what a CPU without AVX2 runs) agrees with the dispatched one to a few
    /// ulp, for every kernel: one-hot, dense with and without factors, and the softmax module.
    #[test]
    fn the_portable_build_agrees_with_the_dispatched_one() {
        let (b, k) = (7, 37);
        let logits = Array2::from_shape_fn((b, k), |(i, j)| ((i * 31 + j * 17) % 23) as f64 / 3.0 - 3.5);
        let labels: Vec<usize> = (0..b).map(|i| (i * 5) % k).collect();
        let probs = Array2::from_elem((b, k), 1.0 / k as f64);
        let prior: Vec<f64> = (0..k).map(|j| 1.0 + j as f64).collect();
        let losses = [
            SoftmaxLoss::logit_adjusted(&prior).unwrap(),
            SoftmaxLoss::cross_entropy().with_label_smoothing(0.1).unwrap(),
            SoftmaxLoss::focal(0.5).unwrap().with_class_weights(&prior).unwrap(),
        ];
        for loss in &losses {
            for targets in [Targets::labels(&labels), Targets::probs(&probs)] {
                let (fast, portable) = both(|| loss.loss_and_grad(&logits, targets.clone()).unwrap());
                assert!((fast.0 - portable.0).abs() <= 1e-14 * fast.0, "{} vs {}", fast.0, portable.0);
                assert!(close(&fast.1, &portable.1, 1e-14));
            }
        }
        let (fast, portable) = both(|| softmax::log_softmax(&logits).unwrap());
        assert!(close(&fast, &portable, 1e-14));
        let (fast, portable) = both(|| softmax::softmax(&logits).unwrap());
        assert!(close(&fast, &portable, 1e-14));
    }

    /// The same for smooth macro- and micro-F1, on labels and on probability targets.
    #[test]
    fn the_portable_smooth_f1_kernels_agree_with_the_dispatched_ones() {
        let (b, k) = (9, 37);
        let logits = Array2::from_shape_fn((b, k), |(i, j)| ((i * 31 + j * 17) % 23) as f64 / 3.0 - 3.5);
        let labels: Vec<usize> = (0..b).map(|i| (i * 5) % k).collect();
        let probs = Array2::from_shape_fn((b, k), |(i, j)| ((i + j) % 4) as f64 / (1.5 * k as f64));
        let probs = &probs / &probs.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
        for loss in [SmoothF1Loss::macro_f1(), SmoothF1Loss::micro_f1()] {
            for targets in [Targets::labels(&labels), Targets::probs(&probs)] {
                let (fast, portable) = both(|| loss.loss_and_grad(&logits, targets.clone()).unwrap());
                assert!((fast.0 - portable.0).abs() <= 1e-14 * fast.0, "{} vs {}", fast.0, portable.0);
                assert!(close(&fast.1, &portable.1, 1e-14));
            }
        }
    }

    /// The same for the margin losses, LDAM and pairwise (logit-adjustment margins).
    #[test]
    fn the_portable_margin_losses_agree_with_the_dispatched_ones() {
        let (b, k) = (7, 37);
        let logits = Array2::from_shape_fn((b, k), |(i, j)| ((i * 31 + j * 17) % 23) as f64 / 3.0 - 3.5);
        let labels: Vec<usize> = (0..b).map(|i| (i * 5) % k).collect();
        let counts: Vec<f64> = (0..k).map(|j| 1000.0 / (1.0 + j as f64)).collect();
        let ldam = LdamLoss::new(&counts).unwrap();
        let (fast, portable) = both(|| ldam.loss_and_grad(&logits, &labels).unwrap());
        assert!((fast.0 - portable.0).abs() <= 1e-14 * fast.0, "{} vs {}", fast.0, portable.0);
        assert!(close(&fast.1, &portable.1, 1e-14));
        let pairwise = PairwiseMarginLoss::from_prior(&counts, 1.0).unwrap();
        let (fast, portable) = both(|| pairwise.loss_and_grad(&logits, &labels).unwrap());
        assert!((fast.0 - portable.0).abs() <= 1e-14 * fast.0, "{} vs {}", fast.0, portable.0);
        assert!(close(&fast.1, &portable.1, 1e-14));
    }

    /// The margin losses' grouped short rows (12 classes; AVX-512 for f32 where the CPU has it)
    /// and two-class rows (closed form, AVX-512) agree on the three builds: LDAM, VS, Poly-1 and
    /// pairwise, in f32 and f64.
    #[test]
    fn the_three_builds_of_the_grouped_margin_rows_agree() {
        fn check<F: crate::Float>(k: usize, tol: f64) {
            let b = 21;
            let f = F::from_f64;
            let logits =
                Array2::from_shape_fn((b, k), |(i, j)| f(((i * 31 + j * 17) % 23) as f64 / 3.0 - 3.5));
            let labels: Vec<usize> = (0..b).map(|i| (i * 5) % k).collect();
            let counts: Vec<F> = (0..k).map(|j| f(1000.0 / (1.0 + j as f64))).collect();
            let losses: [Box<dyn Loss<F>>; 4] = [
                Box::new(LdamLoss::new(&counts).unwrap()),
                Box::new(crate::VsLoss::new(&counts).unwrap()),
                Box::new(
                    crate::Poly1Loss::new(F::one())
                        .unwrap()
                        .with_logit_adjustment(&counts, F::one())
                        .unwrap(),
                ),
                Box::new(PairwiseMarginLoss::from_prior(&counts, F::one()).unwrap()),
            ];
            for loss in &losses {
                let (wide, avx2, portable) =
                    three(|| loss.loss_and_grad(&logits, Targets::labels(&labels)).unwrap());
                for other in [&avx2, &portable] {
                    let (a, b) = (wide.0.as_f64(), other.0.as_f64());
                    assert!((a - b).abs() <= tol * a, "{a} vs {b}");
                    assert!(close(&wide.1.mapv(F::as_f64), &other.1.mapv(F::as_f64), tol));
                }
            }
        }
        for k in [2, 12] {
            check::<f32>(k, 1e-5);
            check::<f64>(k, 1e-14);
        }
    }

    /// The same for ZLPR on all three builds (AVX-512 where the CPU has it, for rows of 128
    /// classes and more), with an adjustment, a masked negative and an ignored row, on short rows
    /// (in groups of rows), on rows whose last classes the passes pad and on longer ones.
    #[test]
    fn the_portable_zlpr_kernel_agrees_with_the_dispatched_one() {
        for k in [5, 37, 1031] {
            let b = 5;
            let mut logits =
                Array2::from_shape_fn((b, k), |(i, j)| ((i * 31 + j * 17) % 23) as f64 / 2.0 - 5.5);
            logits[[2, 3]] = f64::NEG_INFINITY;
            let multi_hot = Array2::from_shape_fn((b, k), |(i, j)| f64::from(u8::from((i + j * 7) % 5 == 0)));
            let weights = ndarray::Array1::from_shape_fn(b, |i| (i % 3) as f64);
            let prior: Vec<f64> = (0..k).map(|j| 0.9 / (1.0 + j as f64)).collect();
            let loss = ZlprLoss::new().with_label_prior(&prior, 1.0).unwrap();
            let targets = Targets::multi_hot(&multi_hot).with_sample_weights(&weights);
            let call = || loss.loss_and_grad(&logits, targets.clone()).unwrap();
            let wide = call();
            NARROW.set(true);
            let (avx2, portable) = both(call);
            NARROW.set(false);
            for other in [&avx2, &portable] {
                assert!((wide.0 - other.0).abs() <= 1e-14 * wide.0, "{} vs {}", wide.0, other.0);
                assert!(close(&wide.1, &other.1, 1e-14));
            }
            // f32, whose passes run 16 classes at a time.
            let (logits, multi_hot, weights) =
                (logits.mapv(|v| v as f32), multi_hot.mapv(|v| v as f32), weights.mapv(|v| v as f32));
            let prior: Vec<f32> = prior.iter().map(|&p| p as f32).collect();
            let loss = ZlprLoss::new().with_label_prior(&prior, 1.0).unwrap();
            let targets = Targets::multi_hot(&multi_hot).with_sample_weights(&weights);
            let call = || {
                let (l, g) = loss.loss_and_grad(&logits, targets.clone()).unwrap();
                (f64::from(l), g.mapv(f64::from))
            };
            let wide = call();
            NARROW.set(true);
            let (avx2, portable) = both(call);
            NARROW.set(false);
            for other in [&avx2, &portable] {
                assert!((wide.0 - other.0).abs() <= 1e-6 * wide.0, "{} vs {}", wide.0, other.0);
                assert!(close(&wide.1, &other.1, 1e-6));
            }
        }
    }

    /// The same for the binary losses, on all three builds (AVX-512 where the CPU has it, 300
    /// decisions being enough for it): BCE with and without a positive weight, focal with soft and
    /// hard targets, binary smooth F1, the asymmetric loss with and without its margin, EQL v2,
    /// over logits from −100 to 100 (both sides of where `e^{−|s|}` flushes to 0 in f32), in f32.
    #[test]
    fn the_portable_binary_kernels_agree_with_the_dispatched_ones() {
        let n = 300;
        let logits = ndarray::Array1::from_shape_fn(n, |i| (i as f32 - 150.0) * 0.67);
        let soft = ndarray::Array1::from_shape_fn(n, |i| ((i * 37) % 11) as f32 / 10.0);
        let hard = soft.mapv(|y| if y > 0.5 { 1.0 } else { 0.0 });
        let weights = ndarray::Array1::from_shape_fn(n, |i| (i % 3) as f32);
        let near =
            |a: f32, b: f32| (a - b).abs() <= 4.0 * f32::EPSILON * (a.abs() + b.abs()) + f32::MIN_POSITIVE;
        let agree = |call: &dyn Fn() -> (f32, ndarray::Array1<f32>)| {
            let wide = call();
            NARROW.set(true);
            let (avx2, portable) = both(call);
            NARROW.set(false);
            for other in [avx2, portable] {
                assert!(near(wide.0, other.0), "{} vs {}", wide.0, other.0);
                assert!(wide.1.iter().zip(&other.1).all(|(&a, &b)| near(a, b)));
            }
        };
        let focal = SigmoidLoss::focal(2.0).unwrap().with_alpha(0.25).unwrap();
        let sigmoid = [
            SigmoidLoss::bce(),
            SigmoidLoss::bce().with_pos_weight(&[3.0]).unwrap(),
            focal.clone(),
            focal.with_focal(0.5).unwrap(),
        ];
        for y in [&soft, &hard] {
            let targets = BinaryTargets::new(y).with_sample_weights(&weights);
            for loss in &sigmoid {
                agree(&|| loss.binary_loss_and_grad(&logits, targets.clone()).unwrap());
            }
            agree(&|| BinarySmoothF1Loss::new().binary_loss_and_grad(&logits, targets.clone()).unwrap());
        }
        // The one-vs-rest losses on `[B, K]` multi-hot targets.
        let logits = logits.into_shape_with_order((20, 15)).unwrap();
        let multi_hot = hard.into_shape_with_order((20, 15)).unwrap();
        let flat = |(v, g): (f32, Array2<f32>)| (v, g.into_shape_with_order(n).unwrap());
        let state = crate::loss::EqlV2State::from_parts(vec![3.0; 15], vec![1.0; 15], 1).unwrap();
        let losses: [Box<dyn Loss<f32>>; 4] = [
            Box::new(AsymmetricLoss::new()),
            Box::new(AsymmetricLoss::new().with_clip(0.0).unwrap().with_gammas(1.0, 2.0).unwrap()),
            Box::new(EqlV2Loss::new(&state)),
            Box::new(SigmoidLoss::bce().with_pos_weight(&[0.5; 15][..]).unwrap()),
        ];
        for loss in &losses {
            agree(&|| flat(loss.loss_and_grad(&logits, Targets::multi_hot(&multi_hot)).unwrap()));
        }
    }
}
