//! Loss + gradient of every softmax-family loss against the memory floor: a copy of the same
//! bytes (read the logits once, write the gradient once), measured in the same run.
//!
//! `cargo bench --bench softmax_loss` (add `-- --warm-up-time 1 --measurement-time 2` for a quicker
//! run, `RAYON_NUM_THREADS=1` for one thread); throughput is reported per logit element.
//! `cargo run --release --example bench_table` prints the same comparison as one table.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use longtail::{Float, SoftmaxLoss, Targets};
use ndarray::Array2;

const SHAPES: [(usize, usize); 4] = [(64, 10), (1024, 1000), (256, 32000), (32, 262_144)];

/// Deterministic logits in about [-4, 4], labels and uniform probability targets, without a
/// random-number crate.
fn batch<F: Float>(rows: usize, classes: usize) -> (Array2<F>, Vec<usize>, Array2<F>) {
    let logits = Array2::from_shape_fn((rows, classes), |(i, k)| {
        F::from_f64(((i * 7919 + k * 104_729) % 8192) as f64 / 1024.0 - 4.0)
    });
    let labels = (0..rows).map(|i| (i * 31) % classes).collect();
    let probs = Array2::from_elem((rows, classes), F::from_f64(1.0 / classes as f64));
    (logits, labels, probs)
}

/// The losses by name, and whether they take the probability targets.
fn losses<F: Float>(classes: usize) -> Vec<(&'static str, SoftmaxLoss<F>, bool)> {
    let prior: Vec<F> = (0..classes).map(|k| F::from_f64(1000.0 / (1.0 + k as f64))).collect();
    let ce = SoftmaxLoss::cross_entropy();
    vec![
        ("cross_entropy", ce.clone(), false),
        ("logit_adjusted", SoftmaxLoss::logit_adjusted(&prior).unwrap(), false),
        ("class_weighted", SoftmaxLoss::class_weighted(&prior).unwrap(), false),
        ("focal_2", SoftmaxLoss::focal(F::from_f64(2.0)).unwrap(), false),
        ("label_smoothing_0.1", ce.clone().with_label_smoothing(F::from_f64(0.1)).unwrap(), false),
        ("soft_targets", ce, true),
    ]
}

fn bench_type<F: Float>(c: &mut Criterion, type_name: &str) {
    for (rows, classes) in SHAPES {
        let (logits, labels, probs) = batch::<F>(rows, classes);
        let mut grad = Array2::<F>::zeros((rows, classes));
        let mut group = c.benchmark_group(format!("{type_name}/{rows}x{classes}"));
        group.throughput(Throughput::Elements((rows * classes) as u64));
        if rows * classes > 1 << 20 {
            group.sample_size(20).measurement_time(Duration::from_secs(3));
        }
        group.bench_function("copy_floor", |b| b.iter(|| grad.assign(black_box(&logits))));
        for (name, loss, soft) in losses::<F>(classes) {
            let targets = || if soft { Targets::probs(&probs) } else { Targets::labels(&labels) };
            group.bench_function(BenchmarkId::new(name, "into"), |b| {
                b.iter(|| loss.loss_and_grad_into(black_box(&logits), targets(), &mut grad).unwrap())
            });
            group.bench_function(BenchmarkId::new(name, "allocating"), |b| {
                b.iter(|| loss.loss_and_grad(black_box(&logits), targets()).unwrap())
            });
        }
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    bench_type::<f32>(c, "f32");
    bench_type::<f64>(c, "f64");
}

criterion_group!(softmax_loss, benches);
criterion_main!(softmax_loss);
