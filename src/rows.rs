//! Row access for any 2-D array or view: contiguous slices, copied only when a row is strided.

use ndarray::{ArrayRef2, ArrayView1};

use crate::simd::{Kernel, dispatch_wide};
use crate::{Float, Result};

/// A contiguous slice of `row`, borrowed when the row is contiguous, else copied into `buf`.
fn row_slice<'a, F: Float>(row: ArrayView1<'a, F>, buf: &'a mut Vec<F>) -> &'a [F] {
    match row.to_slice() {
        Some(slice) => slice,
        None => {
            buf.clear();
            buf.extend(row.iter().copied());
            buf
        }
    }
}

/// Calls `f(i, input_row_i, output_row_i)` for every row. Without `output`, `f` gets a scratch
/// row to write into. Rows are visited in order, so `f` may accumulate across rows.
pub(crate) fn for_each_row<F: Float>(
    input: &ArrayRef2<F>,
    output: Option<&mut ArrayRef2<F>>,
    mut f: impl FnMut(usize, &[F], &mut [F]),
) {
    visit_rows(input, output, &mut f);
}

/// What [`visit_rows`] calls for each row. A kernel implements it with an `#[inline(always)]`
/// method: a closure would not reliably be inlined into a [`Kernel`], and would then run without
/// the kernel's instruction set.
pub(crate) trait RowVisitor<F> {
    /// Visits row `i`: its input `z` and its output (or scratch) row `out`.
    fn visit(&mut self, i: usize, z: &[F], out: &mut [F]);

    /// Whether the visit is over: [`visit_rows`] visits no more rows (a kernel that met an
    /// error). Asked before each row.
    #[inline(always)]
    fn done(&self) -> bool {
        false
    }
}

impl<F, G: FnMut(usize, &[F], &mut [F])> RowVisitor<F> for G {
    #[inline(always)]
    fn visit(&mut self, i: usize, z: &[F], out: &mut [F]) {
        self(i, z, out);
    }
}

/// [`for_each_row`] with a [`RowVisitor`].
#[inline(always)]
pub(crate) fn visit_rows<F: Float>(
    input: &ArrayRef2<F>,
    mut output: Option<&mut ArrayRef2<F>>,
    visitor: &mut impl RowVisitor<F>,
) {
    // Scratch is allocated only when a row needs it (no output, or a strided one).
    let mut in_buf = Vec::new();
    let mut out_buf = Vec::new();
    let contiguous = output.as_deref().is_some_and(|out| out.ncols() <= 1 || out.strides()[1] == 1);
    if !contiguous {
        out_buf.resize(input.ncols(), F::zero());
    }
    for (i, z) in input.rows().into_iter().enumerate() {
        if visitor.done() {
            break;
        }
        let z = row_slice(z, &mut in_buf);
        let mut out_row = output.as_deref_mut().map(|out| out.row_mut(i));
        let out = match out_row.as_mut().and_then(|row| row.as_slice_mut()) {
            Some(out) => out,
            None => &mut out_buf[..],
        };
        visitor.visit(i, z, out);
        if let (false, Some(out_row)) = (contiguous, out_row) {
            out_row.into_iter().zip(&out_buf).for_each(|(dst, &src)| *dst = src);
        }
    }
}

/// Values per chunk of parallel work (some 256 KiB of f32): chunk boundaries depend on the shape
/// alone, never on the number of threads.
pub(crate) const CHUNK: usize = 1 << 16;

/// The fewest values for which the `rayon` feature runs a batch's chunks in parallel.
pub(crate) const PARALLEL_MIN: usize = 1 << 18;

/// Whether work runs on rayon's pool: with the `rayon` feature, a pool of more than one thread,
/// and `large` work. A pool of one thread would only move the work off the calling thread (and
/// its core's caches): it runs serially, as without the feature.
#[cfg(feature = "rayon")]
fn on_pool(large: bool) -> bool {
    large && rayon::current_num_threads() > 1
}

/// Whether `test(chunk)` holds for every chunk of [`CHUNK`] values of `values` (for an empty slice
/// too); on rayon's pool from [`PARALLEL_MIN`] values on (see [`on_pool`]).
pub(crate) fn all_chunks<F: Float>(values: &[F], test: impl Fn(&[F]) -> bool + Sync) -> bool {
    #[cfg(feature = "rayon")]
    if on_pool(values.len() >= PARALLEL_MIN) {
        use rayon::prelude::*;
        return values.par_chunks(CHUNK).all(&test);
    }
    values.chunks(CHUNK).all(test)
}

/// `Σ` of the kernels' results, added in order from 0, or the error of the first kernel (in
/// order) that fails. With `parallel` (see [`on_pool`]) the kernels run on rayon's pool; the sum
/// and the error are the same, bit for bit.
#[cfg(feature = "rayon")]
pub(crate) fn sum_chunks<K: Kernel<Output = Result<f64>> + Send>(
    chunks: impl Iterator<Item = K>,
    parallel: bool,
    wide: bool,
) -> Result<f64> {
    fold_chunks(chunks, parallel, wide, 0.0, |total, sum| total + sum)
}

/// `Σ` of the kernels' results, added in order from 0, or the error of the first that fails.
#[cfg(not(feature = "rayon"))]
pub(crate) fn sum_chunks<K: Kernel<Output = Result<f64>>>(
    chunks: impl Iterator<Item = K>,
    parallel: bool,
    wide: bool,
) -> Result<f64> {
    fold_chunks(chunks, parallel, wide, 0.0, |total, sum| total + sum)
}

/// The kernels' results folded in order into `init` by `fold`, or the error of the first kernel
/// (in order) that fails. With `parallel` (see [`on_pool`]) the kernels run on rayon's pool; the
/// result and the error are the same, bit for bit.
#[cfg(feature = "rayon")]
pub(crate) fn fold_chunks<T: Send, A, K: Kernel<Output = Result<T>> + Send>(
    chunks: impl Iterator<Item = K>,
    parallel: bool,
    wide: bool,
    init: A,
    mut fold: impl FnMut(A, T) -> A,
) -> Result<A> {
    use rayon::prelude::*;
    let run = |chunk| dispatch_wide(chunk, wide);
    if !on_pool(parallel) {
        return chunks.map(run).try_fold(init, |acc, value| Ok(fold(acc, value?)));
    }
    let chunks: Vec<K> = chunks.collect();
    let values: Vec<Result<T>> = chunks.into_par_iter().map(run).collect();
    values.into_iter().try_fold(init, |acc, value| Ok(fold(acc, value?)))
}

/// The kernels' results folded in order into `init` by `fold`, or the error of the first that
/// fails.
#[cfg(not(feature = "rayon"))]
pub(crate) fn fold_chunks<T, A, K: Kernel<Output = Result<T>>>(
    chunks: impl Iterator<Item = K>,
    _parallel: bool,
    wide: bool,
    init: A,
    mut fold: impl FnMut(A, T) -> A,
) -> Result<A> {
    chunks.map(|chunk| dispatch_wide(chunk, wide)).try_fold(init, |acc, value| Ok(fold(acc, value?)))
}
