//! A dense LU solve with partial pivoting for the small `K × K` systems of label-shift estimation.
//!
//! `K` is the number of classes (tens to a few thousand), solved once per estimate: Doolittle
//! elimination in `O(K³)` is enough, and a linear-algebra crate would cost more compile time (and a
//! BLAS) than it saves.

use crate::{Error, Result};

/// The largest error bound `n·κ∞(A)·ε` (relative to `‖x‖∞`) of a solution [`solve`] returns: a
/// system beyond it is refused as numerically singular.
pub(crate) const MAX_ERROR_BOUND: f64 = 1e-6;

/// Solves `A x = b` for a row-major `n × n` matrix `a` by Gaussian elimination with partial
/// pivoting.
///
/// # Errors
///
/// [`Error::SingularMatrix`] (`name`, the column) when a column has no pivot larger than
/// `n·ε·max|a_ij|` (a zero matrix is singular in column 0), or (the column of the smallest pivot)
/// when `A` is so ill-conditioned that the solution's error bound `n·κ∞(A)·ε` exceeds
/// [`MAX_ERROR_BOUND`]: an exactly singular matrix whose elimination leaves a rounding residue as
/// its last pivot is one.
pub(crate) fn solve(name: &'static str, a: Vec<f64>, b: Vec<f64>) -> Result<Vec<f64>> {
    let n = b.len();
    debug_assert_eq!(a.len(), n * n);
    let norm = (0..n).map(|i| a[i * n..(i + 1) * n].iter().map(|v| v.abs()).sum::<f64>()).fold(0.0, f64::max);
    let lu = Lu::factor(name, a)?;
    // ‖A⁻¹‖∞ from its columns, A⁻¹ e_j: O(n³), as the factorisation.
    let mut row_sums = vec![0.0_f64; n];
    let mut unit = vec![0.0; n];
    for j in 0..n {
        unit.fill(0.0);
        unit[j] = 1.0;
        lu.solve(&mut unit).iter().zip(&mut row_sums).for_each(|(v, s)| *s += v.abs());
    }
    let condition = norm * row_sums.iter().fold(0.0_f64, |m, &v| m.max(v));
    let bound = n as f64 * condition * f64::EPSILON;
    if bound.is_nan() || bound > MAX_ERROR_BOUND {
        return Err(Error::SingularMatrix { name, column: lu.smallest_pivot() });
    }
    let mut x = b;
    lu.solve(&mut x);
    Ok(x)
}

/// `P·A = L·U` in place: `U` on and above the diagonal, `L`'s multipliers below it.
struct Lu {
    a: Vec<f64>,
    n: usize,
    /// The row swapped into each column's pivot position, in order.
    swaps: Vec<usize>,
}

impl Lu {
    fn factor(name: &'static str, mut a: Vec<f64>) -> Result<Self> {
        let n = (a.len() as f64).sqrt() as usize;
        let scale = a.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
        let tolerance = n as f64 * f64::EPSILON * scale;
        let mut swaps = Vec::with_capacity(n);
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
                .filter(|&i| a[i * n + col].abs() > tolerance)
                .ok_or(Error::SingularMatrix { name, column: col })?;
            if pivot != col {
                for j in 0..n {
                    a.swap(pivot * n + j, col * n + j);
                }
            }
            swaps.push(pivot);
            let diagonal = a[col * n + col];
            for row in col + 1..n {
                let factor = a[row * n + col] / diagonal;
                a[row * n + col] = factor;
                if factor != 0.0 {
                    for j in col + 1..n {
                        a[row * n + j] -= factor * a[col * n + j];
                    }
                }
            }
        }
        Ok(Self { a, n, swaps })
    }

    /// Overwrites `b` with `A⁻¹ b`.
    fn solve<'b>(&self, b: &'b mut [f64]) -> &'b mut [f64] {
        let (a, n) = (&self.a, self.n);
        // P·b, then L's forward substitution (the swaps moved whole rows, multipliers too).
        self.swaps.iter().enumerate().for_each(|(col, &pivot)| b.swap(pivot, col));
        for col in 0..n {
            for row in col + 1..n {
                b[row] -= a[row * n + col] * b[col];
            }
        }
        // Back substitution on the upper triangle.
        for row in (0..n).rev() {
            let tail: f64 = (row + 1..n).map(|j| a[row * n + j] * b[j]).sum();
            b[row] = (b[row] - tail) / a[row * n + row];
        }
        b
    }

    fn smallest_pivot(&self) -> usize {
        (0..self.n)
            .min_by(|&i, &j| self.a[i * self.n + i].abs().total_cmp(&self.a[j * self.n + j].abs()))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_system_that_needs_a_row_swap() {
        // The leading 0 forces a pivot; A·[1, 2, 3] = b.
        let a = vec![0.0, 2.0, 1.0, 1.0, 1.0, 1.0, 4.0, -1.0, 2.0];
        let b = vec![7.0, 6.0, 8.0];
        let x = solve("m", a, b).unwrap();
        for (xi, expected) in x.iter().zip([1.0, 2.0, 3.0]) {
            assert!((xi - expected).abs() < 1e-14, "{x:?}");
        }
    }

    #[test]
    fn an_ill_conditioned_matrix_is_refused() {
        // det = 1 with entries near 1e5: the last pivot 1e-5 is usable, but κ∞ = 4e10 leaves
        // the solution about five digits.
        let a = vec![1e5, 1e5 - 1.0, 1e5 + 1.0, 1e5];
        assert_eq!(solve("m", a, vec![1.0, 1.0]), Err(Error::SingularMatrix { name: "m", column: 1 }));
    }

    #[test]
    fn a_rank_deficient_matrix_is_singular_in_its_dependent_column() {
        let a = vec![1.0, 2.0, 2.0, 4.0];
        assert_eq!(solve("m", a, vec![1.0, 2.0]), Err(Error::SingularMatrix { name: "m", column: 1 }));
        assert_eq!(
            solve("m", vec![0.0; 4], vec![0.0; 2]),
            Err(Error::SingularMatrix { name: "m", column: 0 })
        );
    }
}
