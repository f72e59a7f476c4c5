//! Row access for any 2-D array or view: contiguous slices, copied only when a row is strided.

use ndarray::{ArrayRef2, ArrayView1};

use crate::Float;

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
    // Scratch is allocated only when a row needs it (no output, or a strided one).
    let mut in_buf = Vec::new();
    let mut out_buf = Vec::new();
    match output {
        Some(output) => {
            for (i, (z, mut out)) in input.rows().into_iter().zip(output.rows_mut()).enumerate() {
                let z = row_slice(z, &mut in_buf);
                match out.as_slice_mut() {
                    Some(out) => f(i, z, out),
                    None => {
                        out_buf.resize(input.ncols(), F::zero());
                        f(i, z, &mut out_buf);
                        out.iter_mut().zip(&out_buf).for_each(|(dst, &src)| *dst = src);
                    }
                }
            }
        }
        None => {
            out_buf.resize(input.ncols(), F::zero());
            for (i, z) in input.rows().into_iter().enumerate() {
                f(i, row_slice(z, &mut in_buf), &mut out_buf);
            }
        }
    }
}
