//! `ddpm forward`: ε̂ = UNet(x, t) for an .npy batch — the tool to check a port against diffusers.

use std::path::PathBuf;

use anyhow::Context;
use ddpm::model::{cpu_unet, UNet};

use super::{display, GpuWeightsArg, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    gpu_weights: GpuWeightsArg,
    /// Input x_t: NCHW float32 .npy, [N, in_channels, H, W].
    #[arg(long)]
    input: PathBuf,
    /// Timesteps, one per sample or one for all (comma-separated, e.g. 500 or 0,999).
    #[arg(long, value_delimiter = ',', required = true)]
    timesteps: Vec<f32>,
    /// Output ε̂ .npy (NCHW float32).
    #[arg(long)]
    out: PathBuf,
    /// Class labels of a class-conditional model, one per sample or one for all
    /// (comma-separated, e.g. 3 or 3,7).
    #[arg(long, value_delimiter = ',')]
    class_labels: Vec<f32>,
    /// Use the plain-Rust CPU reference instead of the GPU.
    #[arg(long)]
    cpu: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (cfg, weights) = args.model.load()?;
    let (shape, x) = ddpm::npy::read(&args.input)?;
    if shape.len() != 4 || shape.contains(&0) {
        anyhow::bail!(
            "{}: the input must be a non-empty NCHW array, got shape {shape:?}",
            display(&args.input)
        );
    }
    let n = shape[0];
    let t = match args.timesteps.len() {
        1 => vec![args.timesteps[0]; n],
        k if k == n => args.timesteps.clone(),
        k => anyhow::bail!("{k} timesteps given for {n} samples: give 1 or {n}"),
    };
    if let Some(bad) = t.iter().find(|t| !t.is_finite() || **t < 0.0) {
        anyhow::bail!("timestep {bad} is not a non-negative number");
    }
    let labels = match args.class_labels.len() {
        0 => None,
        1 => Some(vec![args.class_labels[0]; n]),
        k if k == n => Some(args.class_labels.clone()),
        k => anyhow::bail!("{k} class labels given for {n} samples: give 1 or {n}"),
    };
    let (eps, out_shape) = if args.cpu {
        let x = cpu_unet::HostTensor { shape, data: x };
        let eps = cpu_unet::forward_with_labels(&cfg, &weights, &x, &t, labels.as_deref())?;
        (eps.data, eps.shape)
    } else {
        let gpu = super::gpu()?;
        let unet = UNet::with_weights(&gpu, cfg.clone(), &weights, args.gpu_weights.storage)?;
        eprintln!("GPU weights: {}", unet.weight_bytes().describe());
        let (eps, batch) =
            pollster::block_on(unet.forward(&gpu, &shape, &x, &t, labels.as_deref()))?;
        if batch < n {
            eprintln!(
                "ran {n} samples in {} batches of {batch} (device limits)",
                n.div_ceil(batch)
            );
        }
        let mut out_shape = shape.clone();
        out_shape[1] = cfg.out_channels;
        (eps, out_shape)
    };
    ddpm::npy::write(&args.out, &out_shape, &eps)
        .with_context(|| format!("writing {}", display(&args.out)))?;
    eprintln!("wrote {} {:?}", display(&args.out), out_shape);
    Ok(())
}
