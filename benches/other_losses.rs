//! Loss + gradient (`_into`) of the crate's other losses against the same memory floor as
//! `softmax_loss`: a copy of the logits into the gradient buffer, measured in the same run. Every
//! cell has `B·K` elements; the one-vs-rest and multi-label losses (sigmoid, binary smooth F1,
//! ZLPR, ASL, EQL v2, multilabel Tversky) take multi-hot targets with a few positives per row, the
//! others labels. The pairwise margin loss runs only up to 1000 classes (it stores `K × K`
//! margins).
//!
//! `cargo bench --bench other_losses` (add `-- --warm-up-time 1 --measurement-time 2` for a quicker
//! run, `RAYON_NUM_THREADS=1` for one thread); throughput is reported per logit element.
//! `cargo run --release --example bench_table` prints the same comparison as one table.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use longtail::Float;
use ndarray::Array2;

mod common;
use common::{Batch, SHAPES, other_losses};

fn bench_type<F: Float>(c: &mut Criterion, type_name: &str) {
    for (rows, classes) in SHAPES {
        let batch = Batch::<F>::new(rows, classes);
        let mut grad = Array2::<F>::zeros((rows, classes));
        let mut group = c.benchmark_group(format!("other_losses/{type_name}/{rows}x{classes}"));
        group.throughput(Throughput::Elements((rows * classes) as u64));
        if rows * classes > 1 << 20 {
            // Flat sampling: the binary losses take ~0.2 s a call here, too long for linear.
            group.sample_size(20).measurement_time(Duration::from_secs(3)).sampling_mode(SamplingMode::Flat);
        }
        group.bench_function("copy_floor", |b| b.iter(|| grad.assign(black_box(&batch.logits))));
        for (name, loss) in other_losses::<F>(classes) {
            group.bench_function(BenchmarkId::new(name, "into"), |b| {
                b.iter(|| loss.loss_and_grad_into(black_box(&batch), &mut grad))
            });
        }
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    bench_type::<f32>(c, "f32");
    bench_type::<f64>(c, "f64");
}

criterion_group!(other_loss_benches, benches);
criterion_main!(other_loss_benches);
