//! Long-tailed training sets with balanced validation and test sets, as CIFAR-10-LT is built.

use longtail::{Error, Prior};
use ndarray::Array2;

use crate::rng::Rng;

/// Samples and their labels.
pub struct Split {
    pub x: Array2<f32>,
    pub y: Vec<usize>,
}

impl Split {
    /// The rows `indices` of `x`, with their labels.
    pub fn select(x: &Array2<f32>, y: &[usize], indices: &[usize]) -> Self {
        Self { x: x.select(ndarray::Axis(0), indices), y: indices.iter().map(|&i| y[i]).collect() }
    }
}

/// One draw of a long-tailed problem: a long-tailed training split, balanced validation and test
/// splits, and which class got which place in the tail.
pub struct Dataset {
    pub train: Split,
    pub val: Split,
    pub test: Split,
    /// The training prior (class counts).
    pub prior: Prior,
    /// `ranks[class]`: the class's place in the tail, 0 for the most frequent.
    pub ranks: Vec<usize>,
}

/// Training samples of the class at `rank`: `n_max·ρ^(−rank/(K−1))`, rounded (at least 1).
pub fn long_tail_counts(n_max: usize, classes: usize, imbalance: f64) -> Vec<usize> {
    (0..classes)
        .map(|rank| {
            let exponent = -(rank as f64) / (classes - 1) as f64;
            ((n_max as f64 * imbalance.powf(exponent)).round() as usize).max(1)
        })
        .collect()
}

/// Splits a pool of labelled samples: per class (in a seeded random order) `test` then `val`
/// samples for the balanced splits, then the class's long-tailed share for training. The class at
/// each rank of the tail is drawn at random too, so that seeds average over which class is rare.
pub fn split_long_tail(
    x: &Array2<f32>,
    y: &[usize],
    classes: usize,
    counts: &[usize],
    (test, val): (usize, usize),
    seed: u64,
) -> Result<Dataset, Error> {
    let mut order: Vec<usize> = (0..classes).collect();
    Rng::stream(seed, 1).shuffle(&mut order);
    let mut ranks = vec![0; classes];
    for (rank, &class) in order.iter().enumerate() {
        ranks[class] = rank;
    }
    let mut rng = Rng::stream(seed, 2);
    let (mut test_rows, mut val_rows, mut train_rows) = (vec![], vec![], vec![]);
    for class in 0..classes {
        let mut rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        rng.shuffle(&mut rows);
        let train = counts[ranks[class]];
        assert!(rows.len() >= test + val + train, "class {class} has only {} samples", rows.len());
        test_rows.extend_from_slice(&rows[..test]);
        val_rows.extend_from_slice(&rows[test..test + val]);
        train_rows.extend_from_slice(&rows[test + val..test + val + train]);
    }
    let train = Split::select(x, y, &train_rows);
    let prior = Prior::from_labels(&train.y, classes)?;
    Ok(Dataset {
        train,
        val: Split::select(x, y, &val_rows),
        test: Split::select(x, y, &test_rows),
        prior,
        ranks,
    })
}
