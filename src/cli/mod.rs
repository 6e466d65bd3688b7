//! Subcommands of the `ddpm` binary.

mod bench;
mod bundled;
mod forward;
mod info;
mod loss;
mod plot;
mod sample;
mod train;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ddpm::hub::{Hub, HubId};
use ddpm::model::{presets, UNetConfig, Weights};
use ddpm::schedule::SchedulerConfig;

#[derive(Parser)]
#[command(
    name = "ddpm",
    version,
    about = "DDPM U-Net in hand-written WGSL on WebGPU/Vulkan/Metal/DX12"
)]
struct Cli {
    /// How to pick among kernel variants: `auto` (time each candidate once per layer shape and
    /// keep the fastest), `heuristic` (by adapter class, no timing) or a variant name to force
    /// where it applies (`reg`, `subgroup`, `unrolled`, `tiled`, …). Default: the DDPM_KERNELS environment
    /// variable, else auto.
    #[arg(long, global = true, value_name = "POLICY")]
    kernels: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's config, parameter count and FLOPs per forward pass.
    Info(info::Args),
    /// Run the U-Net once: ε̂ = UNet(x, t) for an .npy input.
    Forward(forward::Args),
    /// Measure a model's L_simple at each timestep (where it is sure of the noise, where not).
    Loss(loss::Args),
    /// Benchmark the U-Net forward pass and its kernels on this machine's GPU.
    Bench(bench::Args),
    /// Generate images with the reverse process (DDPM or DDIM) on the GPU.
    Sample(sample::Args),
    /// Train a U-Net on a dataset with the same WGSL kernels (forward, backward, AdamW).
    Train(train::Args),
}

/// Runs the CLI; errors are printed with their causes and give exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(policy) = &cli.kernels {
        let known = ddpm::ops::variant_names();
        let ok =
            matches!(policy.as_str(), "auto" | "heuristic") || known.contains(&policy.as_str());
        if !ok {
            eprintln!(
                "error: --kernels {policy}: expected auto, heuristic or one of {}",
                known.join(", ")
            );
            return ExitCode::FAILURE;
        }
        // Read by `Gpu::new` (through KernelPolicy::from_env), like a user's own setting.
        std::env::set_var(ddpm::gpu::KERNELS_ENV, policy);
    }
    let result = match cli.command {
        Command::Info(a) => info::run(a),
        Command::Forward(a) => forward::run(a),
        Command::Loss(a) => loss::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Train(a) => train::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where a model comes from: a diffusers model directory or Hub id, a named preset with random
/// weights, or (neither given) the trained MNIST model bundled from `assets/mnist/`.
#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// diffusers model directory (config.json + diffusion_pytorch_model.safetensors or .bin, or
    /// a pipeline folder with unet/), or a Hugging Face Hub id `hf:owner/name[@revision]`
    /// (e.g. hf:google/ddpm-cifar10-32; endpoint from HF_ENDPOINT, cached in ~/.cache/ddpm/hub);
    /// default: the bundled MNIST model (assets/mnist).
    #[arg(long, conflicts_with = "preset")]
    model: Option<PathBuf>,
    /// A named config with random weights instead of --model (cifar10, mnist, emoji).
    #[arg(long)]
    preset: Option<String>,
    /// `--model` as a local folder (a Hub id resolved to its cache folder once).
    #[arg(skip)]
    resolved: std::cell::OnceCell<PathBuf>,
}

impl ModelArgs {
    /// True when neither `--model` nor `--preset` is given: the bundled model is used.
    fn is_bundled(&self) -> bool {
        self.model.is_none() && self.preset.is_none()
    }

    /// Loads the config and weights (random weights with seed 0 for a preset; the bundled MNIST
    /// model when neither is given).
    fn load(&self) -> anyhow::Result<(UNetConfig, Weights)> {
        match (self.dir()?, &self.preset) {
            (Some(dir), _) => Ok(ddpm::model::load_dir(dir)?),
            (None, Some(name)) => {
                let cfg = presets::preset(name)?;
                let w = Weights::init(&cfg, 0)?;
                Ok((cfg, w))
            }
            (None, None) => bundled::model(),
        }
    }

    /// The `--model` folder: the path itself, or for a Hub id its cache folder, downloading
    /// (with a progress bar) what is not cached yet.
    fn dir(&self) -> anyhow::Result<Option<&Path>> {
        let Some(model) = &self.model else {
            return Ok(None);
        };
        if let Some(dir) = self.resolved.get() {
            return Ok(Some(dir));
        }
        let dir = match HubId::parse(&model.to_string_lossy()) {
            None => model.clone(),
            Some(id) => {
                let id = id?;
                let hub = Hub::from_env()?;
                let bar = indicatif::ProgressBar::hidden();
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg:>40} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .expect("valid template"),
                );
                let mut progress = |file: &str, done: u64, total: Option<u64>| {
                    if done == 0 {
                        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                        bar.reset();
                        bar.set_length(total.unwrap_or(0));
                        bar.set_message(file.to_string());
                    }
                    bar.set_position(done);
                };
                let dir = hub.fetch_model(&id, &mut progress)?;
                bar.finish_and_clear();
                eprintln!("{id}: {}", display(&dir));
                dir
            }
        };
        Ok(Some(self.resolved.get_or_init(|| dir)))
    }

    /// The model's noise schedule: `explicit` (a `--scheduler` file), else
    /// `scheduler_config.json` beside the model (or in a pipeline's `scheduler/` folder, or the
    /// bundled model's), else diffusers' DDPMScheduler defaults.
    fn scheduler(&self, explicit: Option<&Path>) -> anyhow::Result<SchedulerConfig> {
        if let Some(path) = explicit {
            return Ok(SchedulerConfig::from_file(path)?);
        }
        if self.is_bundled() {
            return bundled::scheduler();
        }
        if let Some(dir) = self.dir()? {
            for candidate in [
                dir.join("scheduler_config.json"),
                dir.join("../scheduler/scheduler_config.json"),
            ] {
                if candidate.exists() {
                    return Ok(SchedulerConfig::from_file(&candidate)?);
                }
            }
        }
        Ok(SchedulerConfig::default())
    }
}

/// `--gpu-weights`: how the GPU U-Net stores its conv weights.
#[derive(clap::Args, Clone, Copy)]
pub struct GpuWeightsArg {
    /// How the GPU keeps the conv weights (the bulk of the parameters): `auto` (f16 where the
    /// weights file stored them as f16/bf16 and no precision is lost, else f32), `f32`, or `f16`
    /// (half the memory; f32 weights are rounded). The arithmetic is f32 either way.
    #[arg(long = "gpu-weights", value_name = "auto|f32|f16", default_value = "auto",
          value_parser = parse_gpu_weights)]
    pub storage: ddpm::model::GpuWeights,
}

fn parse_gpu_weights(s: &str) -> Result<ddpm::model::GpuWeights, String> {
    ddpm::model::GpuWeights::parse(s).map_err(|e| e.to_string())
}

/// Creates the GPU device, with the adapter named on stderr.
fn gpu() -> anyhow::Result<ddpm::gpu::Gpu> {
    let gpu = ddpm::gpu::Gpu::new_blocking()?;
    if let Some(dir) = ddpm::gpu::default_kernel_cache_dir() {
        gpu.use_kernel_cache(&dir, ddpm::ops::kernel_sources_digest());
    }
    eprintln!("GPU: {}", gpu.describe());
    Ok(gpu)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
