//! `ddpm info`: what a model is and what it costs.

use ddpm::model::{gpu_weight_bytes, GpuWeights};

use super::{GpuWeightsArg, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    gpu_weights: GpuWeightsArg,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (cfg, weights) = args.model.load()?;
    println!("{}", cfg.to_json());
    let params = cfg.num_params();
    println!("parameters: {params} ({:.2} M)", params as f64 / 1e6);
    let stored: usize = weights.iter().map(|(_, t)| t.data.len()).sum();
    if stored != params {
        println!("warning: the weights hold {stored} values");
    }
    let storage = args.gpu_weights.storage;
    let bytes = gpu_weight_bytes(&cfg, &weights, storage)?;
    let all_f32 = gpu_weight_bytes(&cfg, &weights, GpuWeights::F32)?;
    println!(
        "GPU weights ({}): {}; all f32: {:.1} MB",
        storage.name(),
        bytes.describe(),
        all_f32.total as f64 / 1e6
    );
    if let Some((h, w)) = cfg.sample_hw() {
        println!(
            "forward pass at 1×{}×{h}×{w}: {:.3} GFLOP per sample",
            cfg.in_channels,
            cfg.forward_flops(1) as f64 / 1e9
        );
    }
    Ok(())
}
