//! Cross-entropy forward + backward on candle's CPU device, f32, ns per logit element: the
//! crate's loss through the adapter, candle's own `candle_nn::loss::cross_entropy`, the bare core
//! call on the same memory (the adapter's overhead is the difference), and the copy floor (read
//! the logits once, write the gradient once), in one run. Two more columns split the overhead:
//! the adapter's forward alone (the kernel into a new gradient buffer), and candle's own floor
//! for any op with a `[B, K]` gradient, `logits.sum_all()` then `backward()` (candle accumulates
//! each gradient into a new zeroed tensor).
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release -p longtail-candle --example bench_candle
//! RAYON_NUM_THREADS=1 cargo run --release -p longtail-candle --example bench_candle -- --quick
//! ```
//!
//! Run from the workspace root, it also writes candle's and the adapter's figures to
//! `target/peers/candle.tsv`, where the core crate's `bench_table` prints them beside its own.
//!
//! Each cell is the median of its samples; a sample repeats the call until it lasts 2 ms. The
//! forward + backward of both candle paths is `loss(logits)` then `backward()` on a `Var`,
//! reading the logits' gradient out of the `GradStore`, as a training step does.

use std::hint::black_box;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor, Var};
use longtail::ndarray::{Array2, ArrayView2};
use longtail::{Loss, SoftmaxLoss};
use longtail_candle::CandleLoss;

const SHAPES: [(usize, usize); 4] = [(64, 10), (1024, 1000), (256, 32000), (32, 262144)];
const MIN_SAMPLE: Duration = Duration::from_millis(2);
const CELL_BUDGET: Duration = Duration::from_millis(1500);

/// Median ns per element of `call` over samples of at least [`MIN_SAMPLE`].
fn time(elements: usize, reps: usize, mut call: impl FnMut()) -> f64 {
    call(); // warm up: page in the buffers
    let start = Instant::now();
    call();
    let once = start.elapsed().max(Duration::from_nanos(1));
    let inner = (MIN_SAMPLE.as_nanos() / once.as_nanos()).max(1) as u32;
    let reps = reps.min((CELL_BUDGET.as_nanos() / (once.as_nanos() * u128::from(inner))).max(5) as usize);
    let mut samples: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..inner {
                call();
            }
            start.elapsed().as_nanos() as f64 / f64::from(inner) / elements as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Deterministic logits in `[-4, 4)` and labels.
fn batch(rows: usize, classes: usize) -> (Vec<f32>, Vec<u32>) {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let logits =
        (0..rows * classes).map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 * 8.0 - 4.0).collect();
    let labels = (0..rows).map(|_| (next() % classes as u64) as u32).collect();
    (logits, labels)
}

fn main() -> candle_core::Result<()> {
    let reps = if std::env::args().any(|a| a == "--quick") { 7 } else { 21 };
    let dev = Device::Cpu;
    println!(
        "cross-entropy forward + backward, f32, candle CPU, {} thread(s) (RAYON_NUM_THREADS), ns per logit element (median)\n",
        candle_core::utils::get_num_threads()
    );
    println!(
        "| B × K | longtail via candle op | candle_nn::loss::cross_entropy | candle / ours | bare core call | \
         adapter overhead | adapter forward alone | candle floor (sum_all + backward) | copy floor |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let loss = SoftmaxLoss::<f32>::cross_entropy();
    let mut peers = String::from("# candle 0.11, CPU device, RAYON_NUM_THREADS as set\n");
    for (rows, classes) in SHAPES {
        let n = rows * classes;
        let (values, labels) = batch(rows, classes);
        let logits = Var::from_tensor(&Tensor::from_vec(values.clone(), (rows, classes), &dev)?)?;
        let label_tensor = Tensor::new(labels.as_slice(), &dev)?;

        // The two candle paths must agree before they are timed.
        let ours_value = loss.forward(logits.as_tensor(), &label_tensor)?;
        let theirs_value = candle_nn::loss::cross_entropy(logits.as_tensor(), &label_tensor)?;
        let (a, b) = (ours_value.to_scalar::<f32>()?, theirs_value.to_scalar::<f32>()?);
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "loss {a} vs candle's {b}");
        let ours_grad = ours_value.backward()?.remove(logits.as_tensor()).expect("a gradient");
        let theirs_grad = theirs_value.backward()?.remove(logits.as_tensor()).expect("a gradient");
        let gap = (ours_grad - theirs_grad)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(gap <= 1e-6, "gradients differ by {gap}");

        let ours = time(n, reps, || {
            let value = loss.forward(logits.as_tensor(), &label_tensor).unwrap();
            black_box(value.backward().unwrap().remove(logits.as_tensor()).unwrap());
        });
        let theirs = time(n, reps, || {
            let value = candle_nn::loss::cross_entropy(logits.as_tensor(), &label_tensor).unwrap();
            black_box(value.backward().unwrap().remove(logits.as_tensor()).unwrap());
        });
        let forward = time(n, reps, || {
            black_box(loss.forward(logits.as_tensor(), &label_tensor).unwrap());
        });
        let candle_floor = time(n, reps, || {
            let value = logits.as_tensor().sum_all().unwrap();
            black_box(value.backward().unwrap().remove(logits.as_tensor()).unwrap());
        });
        let view = ArrayView2::from_shape((rows, classes), &values[..]).expect("rows × classes values");
        let core_labels: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        let mut grad = Array2::<f32>::zeros((rows, classes));
        let bare = time(n, reps, || {
            black_box(loss.loss_and_grad_into(&view, &core_labels, &mut grad).unwrap());
        });
        let mut out = vec![0.0_f32; n];
        let floor = time(n, reps, || {
            out.copy_from_slice(black_box(&values));
            black_box(&mut out);
        });
        println!(
            "| {rows} × {classes} | {ours:.2} | {theirs:.2} | {:.1}× | {bare:.2} | {:+.2} | {forward:.2} | \
             {candle_floor:.2} | {floor:.2} |",
            theirs / ours,
            ours - bare,
        );
        for (peer, ns) in [("candle 0.11", theirs), ("longtail-candle", ours)] {
            peers.push_str(&format!("{peer}\tf32\t{rows}\t{classes}\tcross_entropy\t{ns:.4}\n"));
        }
    }
    write_peers("candle", &peers);
    Ok(())
}

/// Writes `lines` to `target/peers/<name>.tsv`, the peer file `bench_table` reads.
fn write_peers(name: &str, lines: &str) {
    let path = format!("target/peers/{name}.tsv");
    match std::fs::create_dir_all("target/peers").and_then(|()| std::fs::write(&path, lines)) {
        Ok(()) => println!("wrote {path}"),
        Err(e) => eprintln!("could not write {path}: {e}"),
    }
}
