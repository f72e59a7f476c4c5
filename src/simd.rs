//! Runtime choice of the instruction set: a default build targets baseline x86-64 (SSE2), so the
//! kernels are compiled a second time with AVX2 and FMA enabled and picked when the CPU has them.
//!
//! A [`Kernel`] is written once, generic over `FMA`, from `#[inline(always)]` pieces; [`dispatch`]
//! runs it inside a `#[target_feature]` function, where it is inlined and compiled for AVX2+FMA, or
//! as the portable build. Both follow the same code path; they differ only in whether `a·b + c` is
//! fused, which changes results by rounding within the documented accuracy of
//! [`exp_nonpos`](crate::float::exp_nonpos).
//!
//! AVX-512 is left out. Its `target_feature` needs Rust 1.89 (above the MSRV, 1.85), and a trial
//! build gained nothing measurable at large shapes (memory-bound by then) while rows of 10 classes
//! ran slower (16 lanes leave them to the scalar tail).
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
    #[cfg(all(target_arch = "x86_64", not(all(target_feature = "avx2", target_feature = "fma"))))]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA, the features `avx2_fma` is compiled with.
            return unsafe { avx2_fma(kernel) };
        }
    }
    kernel.run::<{ cfg!(target_feature = "fma") }>()
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
