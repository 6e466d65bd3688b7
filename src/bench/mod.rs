//! Benchmarks of the U-Net forward pass and training step: whole-pass latency and time per
//! kernel family, with achieved GFLOP/s, and the per-variant kernel bench ([`kernels`]). Used
//! by `ddpm bench` and `cargo bench`.

pub mod kernels;

use std::collections::BTreeMap;
use std::time::Instant;

use crate::error::Result;
use crate::gpu::{Dispatch, Gpu};
use crate::model::{EpsModel, GpuWeights, UNet, UNetConfig, WeightBytes, Weights};

/// Timing of one kernel family within a forward pass.
#[derive(Debug, Clone)]
pub struct KernelTiming {
    pub name: &'static str,
    pub dispatches: usize,
    /// Seconds per forward pass spent in this family (each dispatch timed alone).
    pub seconds: f64,
    pub flops: u64,
}

/// Result of [`bench_forward`].
#[derive(Debug, Clone)]
pub struct ForwardBench {
    pub batch: usize,
    /// Median seconds per forward pass (whole pass in one submission).
    pub seconds: f64,
    pub flops: u64,
    pub activation_bytes: u64,
    /// GPU memory of the parameters.
    pub weight_bytes: WeightBytes,
    pub kernels: Vec<KernelTiming>,
}

impl ForwardBench {
    /// Achieved GFLOP/s of the whole pass.
    pub fn gflops(&self) -> f64 {
        self.flops as f64 / self.seconds / 1e9
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `iters` runs of dispatch `d` alone.
fn time_dispatch(gpu: &Gpu, d: &Dispatch, iters: usize) -> Result<f64> {
    let mut ts = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        pollster::block_on(gpu.run(std::slice::from_ref(d)))?;
        ts.push(start.elapsed().as_secs_f64());
    }
    Ok(median(ts))
}

/// Times each dispatch alone (median of `iters`) and sums them by kernel family, slowest first;
/// `flops[i]` belongs to `dispatches[i]` (missing: 0).
fn kernel_timings(
    gpu: &Gpu,
    dispatches: &[Dispatch],
    flops: &[u64],
    iters: usize,
) -> Result<Vec<KernelTiming>> {
    let mut kernels: BTreeMap<&'static str, KernelTiming> = BTreeMap::new();
    for (i, d) in dispatches.iter().enumerate() {
        let seconds = time_dispatch(gpu, d, iters)?;
        let k = kernels.entry(d.name).or_insert(KernelTiming {
            name: d.name,
            dispatches: 0,
            seconds: 0.0,
            flops: 0,
        });
        k.dispatches += 1;
        k.seconds += seconds;
        k.flops += flops.get(i).copied().unwrap_or(0);
    }
    let mut kernels: Vec<KernelTiming> = kernels.into_values().collect();
    kernels.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    Ok(kernels)
}

/// Times `iters` forward passes of a random-weight U-Net (`seed`) at `batch`, and, when
/// `per_kernel`, each dispatch alone (`iters` times) grouped by kernel family.
pub fn bench_forward(
    gpu: &Gpu,
    cfg: &UNetConfig,
    batch: usize,
    iters: usize,
    per_kernel: bool,
) -> Result<ForwardBench> {
    bench_forward_with(gpu, cfg, batch, iters, per_kernel, GpuWeights::Auto)
}

/// [`bench_forward`] with the conv weights stored as `storage` says (random weights are f32:
/// `Auto` keeps them f32, `F16` rounds them).
pub fn bench_forward_with(
    gpu: &Gpu,
    cfg: &UNetConfig,
    batch: usize,
    iters: usize,
    per_kernel: bool,
    storage: GpuWeights,
) -> Result<ForwardBench> {
    let weights = Weights::init(cfg, 0)?;
    let unet = UNet::with_weights(gpu, cfg.clone(), &weights, storage)?;
    let plan = unet.plan(gpu, batch)?;
    let x = crate::testing::Rng::new(1).normals(plan.x().numel(), 1.0);
    let t: Vec<f32> = (0..batch).map(|i| (i * 997 % 1000) as f32).collect();
    // Warm-up (pipeline compilation, first-touch allocation).
    pollster::block_on(plan.run(gpu, &x, &t))?;
    let iters = iters.max(1);
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        pollster::block_on(gpu.run(plan.dispatches()))?;
        times.push(start.elapsed().as_secs_f64());
    }
    let kernels = if per_kernel {
        kernel_timings(gpu, plan.dispatches(), &plan.flops, iters)?
    } else {
        Vec::new()
    };
    Ok(ForwardBench {
        batch,
        seconds: median(times),
        flops: plan.flops.iter().sum(),
        activation_bytes: plan.activation_bytes,
        weight_bytes: unet.weight_bytes(),
        kernels,
    })
}

/// Prints a [`ForwardBench`] as a small table.
pub fn print_forward(name: &str, b: &ForwardBench) {
    println!(
        "{name} batch {:>3}: {:>9.2} ms/forward  {:>7.2} GFLOP/s  ({:.2} GFLOP, activations {:.1} MiB, weights {})",
        b.batch,
        b.seconds * 1e3,
        b.gflops(),
        b.flops as f64 / 1e9,
        b.activation_bytes as f64 / (1 << 20) as f64,
        b.weight_bytes.describe()
    );
    for k in &b.kernels {
        let gf = if k.flops > 0 {
            format!("{:>7.2} GFLOP/s", k.flops as f64 / k.seconds / 1e9)
        } else {
            String::from("              -")
        };
        println!(
            "    {:<18} {:>4} dispatches {:>9.2} ms {gf}",
            k.name,
            k.dispatches,
            k.seconds * 1e3
        );
    }
}

/// Result of [`bench_train`].
#[derive(Debug, Clone)]
pub struct TrainBench {
    pub batch: usize,
    /// Median seconds per training step (forward, loss, backward, AdamW, EMA).
    pub seconds: f64,
    /// Per kernel family over the forward+backward graph (each dispatch timed alone).
    pub kernels: Vec<KernelTiming>,
}

/// Times training steps of a random-weight model at `batch` on random data.
pub fn bench_train(
    gpu: &Gpu,
    cfg: &UNetConfig,
    batch: usize,
    iters: usize,
    per_kernel: bool,
) -> Result<TrainBench> {
    use crate::train::{TrainOptions, Trainer};
    let weights = Weights::init(cfg, 0)?;
    let options = TrainOptions {
        batch,
        ..TrainOptions::default()
    };
    let sched = crate::schedule::SchedulerConfig::default();
    let mut trainer = Trainer::new(gpu, cfg.clone(), sched, &weights, options)?;
    let n: usize = trainer.batch_shape().iter().product();
    let x0 = crate::testing::Rng::new(1).normals(n, 0.5);
    trainer.step(gpu, &x0)?;
    trainer.read_loss_blocking(gpu)?;
    let iters = iters.max(1);
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        trainer.step(gpu, &x0)?;
        trainer.read_loss_blocking(gpu)?;
        times.push(start.elapsed().as_secs_f64());
    }
    let kernels = if per_kernel {
        // Each dispatch once: the training graph is long.
        kernel_timings(gpu, trainer.graph(), &[], 1)?
    } else {
        Vec::new()
    };
    Ok(TrainBench {
        batch,
        seconds: median(times),
        kernels,
    })
}

/// Prints a [`TrainBench`].
pub fn print_train(name: &str, b: &TrainBench) {
    println!(
        "{name} train batch {:>3}: {:>9.1} ms/step ({:.2} steps/s, {:.1} images/s)",
        b.batch,
        b.seconds * 1e3,
        1.0 / b.seconds,
        b.batch as f64 / b.seconds
    );
    for k in &b.kernels {
        println!(
            "    {:<24} {:>4} dispatches {:>9.2} ms",
            k.name,
            k.dispatches,
            k.seconds * 1e3
        );
    }
}
