//! `ddpm bench`: U-Net forward latency and per-kernel GFLOP/s on this machine's GPU, the time
//! per training step (`--train`), or every conv kernel variant on every layer shape, checked
//! against the CPU reference and timed against the adapter's FMA peak (`--variants`).

use ddpm::bench::kernels::{bench_kernels, conv_layers, fma_peak, print_kernels};
use ddpm::bench::{bench_forward_with, bench_train, print_forward, print_train};
use ddpm::model::presets;

use super::GpuWeightsArg;

#[derive(clap::Args)]
pub struct Args {
    /// Model presets to benchmark (random weights).
    #[arg(long, value_delimiter = ',', default_value = "mnist,cifar10")]
    presets: Vec<String>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    batches: Vec<usize>,
    /// Timed repetitions (median reported).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Skip the per-kernel breakdown.
    #[arg(long)]
    no_kernels: bool,
    /// Benchmark training steps (forward, backward, AdamW) instead of the forward pass.
    #[arg(long)]
    train: bool,
    /// The kernel-development bench: conv2d forward, dx and dW of every variant at every
    /// distinct layer shape of the presets (checked against the CPU reference, then timed).
    #[arg(long, conflicts_with = "train")]
    variants: bool,
    /// With `--variants`: only the layers whose description (as printed, e.g. `k1 s1`,
    /// `16×64×7×7→192`) contains one of these strings.
    #[arg(long, value_delimiter = ',', requires = "variants")]
    layers: Vec<String>,
    /// The forward bench's weight storage (random weights are f32, so `auto` is f32; `f16`
    /// rounds them). `--variants` times every variant in both storages.
    #[command(flatten)]
    gpu_weights: GpuWeightsArg,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let gpu = super::gpu()?;
    if args.variants {
        let peak = fma_peak(&gpu, args.iters)?;
        for name in &args.presets {
            let cfg = presets::preset(name)?;
            for &batch in &args.batches {
                let mut layers = conv_layers(&gpu, &cfg, batch)?;
                if !args.layers.is_empty() {
                    layers.retain(|l| args.layers.iter().any(|f| l.describe().contains(f)));
                }
                let rows = bench_kernels(&gpu, &layers, args.iters)?;
                print_kernels(&format!("{name} batch {batch}"), peak, &rows);
            }
        }
        return Ok(());
    }
    for name in &args.presets {
        let cfg = presets::preset(name)?;
        for &batch in &args.batches {
            if args.train {
                let b = bench_train(&gpu, &cfg, batch, args.iters, !args.no_kernels)?;
                print_train(name, &b);
            } else {
                let storage = args.gpu_weights.storage;
                let b =
                    bench_forward_with(&gpu, &cfg, batch, args.iters, !args.no_kernels, storage)?;
                print_forward(name, &b);
            }
        }
    }
    Ok(())
}
