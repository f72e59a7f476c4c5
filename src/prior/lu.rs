//! A dense LU solve with partial pivoting for the small `K × K` systems of label-shift estimation.
//!
//! `K` is the number of classes (tens to a few thousand), solved once per estimate: Doolittle
//! elimination in `O(K³)` is enough, and a linear-algebra crate would cost more compile time (and a
//! BLAS) than it saves.

use crate::{Error, Result};

/// Solves `A x = b` for a row-major `n × n` matrix `a` by Gaussian elimination with partial
/// pivoting.
///
/// # Errors
///
/// [`Error::SingularMatrix`] (`name`, the column) when a column has no pivot larger than
/// `n·ε·max|a_ij|` (a zero matrix is singular in column 0).
pub(crate) fn solve(name: &'static str, mut a: Vec<f64>, mut b: Vec<f64>) -> Result<Vec<f64>> {
    let n = b.len();
    debug_assert_eq!(a.len(), n * n);
    let scale = a.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    let tolerance = n as f64 * f64::EPSILON * scale;
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .filter(|&i| a[i * n + col].abs() > tolerance)
            .ok_or(Error::SingularMatrix { name, column: col })?;
        if pivot != col {
            for j in 0..n {
                a.swap(pivot * n + j, col * n + j);
            }
            b.swap(pivot, col);
        }
        let diagonal = a[col * n + col];
        for row in col + 1..n {
            let factor = a[row * n + col] / diagonal;
            if factor != 0.0 {
                for j in col..n {
                    a[row * n + j] -= factor * a[col * n + j];
                }
                b[row] -= factor * b[col];
            }
        }
    }
    // Back substitution on the upper triangle.
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|j| a[row * n + j] * x[j]).sum();
        x[row] = (b[row] - tail) / a[row * n + row];
    }
    Ok(x)
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
    fn a_rank_deficient_matrix_is_singular_in_its_dependent_column() {
        let a = vec![1.0, 2.0, 2.0, 4.0];
        assert_eq!(solve("m", a, vec![1.0, 2.0]), Err(Error::SingularMatrix { name: "m", column: 1 }));
        assert_eq!(
            solve("m", vec![0.0; 4], vec![0.0; 2]),
            Err(Error::SingularMatrix { name: "m", column: 0 })
        );
    }
}
