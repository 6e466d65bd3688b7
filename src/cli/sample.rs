//! `ddpm sample`: the reverse process on the GPU, written out as a PNG grid (and optionally the
//! raw samples as .npy and the trajectory as an animated GIF).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use ddpm::generation::{Generation, Generator, Request};
use ddpm::gpu::Gpu;
use ddpm::image::{grid, grid_columns, to_byte, Rgba};
use ddpm::model::{UNet, UNetConfig};
use ddpm::sampler::{SamplerKind, SamplerOptions, SamplerPlan};
use ddpm::schedule::VarianceType;
use indicatif::{ProgressBar, ProgressStyle};

use super::{display, GpuWeightsArg, ModelArgs};

/// More samples than this in one call is almost certainly a typo.
const MAX_SAMPLES: usize = 100_000;
/// Bytes of trajectory frames kept for `--gif` (x_t, x̂0 and ε̂ of all images per frame; the
/// stride over the steps follows, as in the page).
const GIF_BUDGET: usize = 64 << 20;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    gpu_weights: GpuWeightsArg,
    /// Number of samples.
    #[arg(long, default_value_t = 16)]
    n: usize,
    /// Seed of the starting noise and of every step's noise (same seed, same images).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// ddpm (all T steps) or ddim (--steps, --eta).
    #[arg(long, default_value = "ddpm")]
    sampler: String,
    /// DDIM steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// DDIM η: 0 deterministic, 1 DDPM-like noise.
    #[arg(long, default_value_t = 0.0)]
    eta: f32,
    /// σ_t²: fixed_small (β̃_t) or fixed_large (β_t); default from the scheduler config.
    #[arg(long)]
    variance: Option<String>,
    /// Clip x̂0 to [-1, 1]: true/false; default from the scheduler config.
    #[arg(long)]
    clip: Option<bool>,
    /// DDIM with clipping: true to re-derive the direction term's ε̂ from the clipped x̂0
    /// (diffusers' use_clipped_model_output); default: on with guidance, off without (as
    /// diffusers).
    #[arg(long)]
    clipped_model_output: Option<bool>,
    /// diffusers scheduler_config.json (default: next to the model, else DDPM's linear schedule).
    #[arg(long)]
    scheduler: Option<PathBuf>,
    /// Samples per GPU batch (larger n runs in several batches).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Output PNG grid.
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
    /// Also write the samples as NCHW float32 .npy.
    #[arg(long)]
    npy: Option<PathBuf>,
    /// Also write the trajectory x_T → x_0 as an animated GIF (first batch).
    #[arg(long)]
    gif: Option<PathBuf>,
    /// Class-conditional models: the class to draw, or `all` (a grid with one row per class).
    /// Default: one of each class in turn.
    #[arg(long)]
    class: Option<String>,
    /// Classifier-free guidance scale w (ε̂_u + w·(ε̂_c − ε̂_u); 1: plain conditional, 0:
    /// unconditional); needs a model with a `ddpm_null_class`. Default: the model's
    /// `ddpm_guidance_scale`, else 1.
    #[arg(long)]
    guidance: Option<f32>,
}

/// The class of each of `n` images and the grid's columns, from `--class` and the model.
fn class_labels(
    cfg: &UNetConfig,
    class: Option<&str>,
    n: usize,
) -> anyhow::Result<(Option<Vec<f32>>, usize)> {
    let classes = cfg.classes();
    if classes.is_empty() {
        if class.is_some() {
            bail!("--class: the model is not class-conditional (it has no num_class_embeds)");
        }
        return Ok((None, grid_columns(n)));
    }
    Ok(match class {
        Some("all") => {
            // One row per class: image i is in row i / columns.
            let cols = n.div_ceil(classes.len());
            let labels = (0..n)
                .map(|i| classes[(i / cols) % classes.len()] as f32)
                .collect();
            (Some(labels), cols)
        }
        Some(c) => {
            let names = cfg.ddpm_class_names.as_deref().unwrap_or(&[]);
            let k = match names.iter().position(|name| name == c) {
                Some(i) => classes[i],
                None => c
                    .parse::<usize>()
                    .ok()
                    .filter(|k| classes.contains(k))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--class {c}: the model's classes are {}{}",
                            describe_classes(&classes),
                            if names.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", names.join(", "))
                            }
                        )
                    })?,
            };
            (Some(vec![k as f32; n]), grid_columns(n))
        }
        None => {
            let labels = (0..n).map(|i| classes[i % classes.len()] as f32).collect();
            (Some(labels), grid_columns(n))
        }
    })
}

/// `0..=9` for contiguous classes, else the list.
fn describe_classes(classes: &[usize]) -> String {
    let contiguous = classes.windows(2).all(|w| w[1] == w[0] + 1);
    match (classes.first(), classes.last()) {
        (Some(a), Some(b)) if contiguous => format!("{a}..={b}"),
        _ => format!("{classes:?}"),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.n == 0 || args.n > MAX_SAMPLES {
        bail!("--n must be between 1 and {MAX_SAMPLES}, got {}", args.n);
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let (cfg, weights) = args.model.load()?;
    let sched = args.model.scheduler(args.scheduler.as_deref())?;
    let kind = SamplerKind::parse(&args.sampler, args.steps, args.eta)?;
    let mut opts = SamplerOptions::new(&sched, kind, args.seed);
    if let Some(v) = &args.variance {
        opts.variance = VarianceType::parse(v)?;
    }
    if let Some(c) = args.clip {
        opts.clip = c.then_some(sched.clip_sample_range as f32);
    }
    opts.clipped_model_output = args.clipped_model_output;
    let (labels, columns) = class_labels(&cfg, args.class.as_deref(), args.n)?;
    let guidance = args
        .guidance
        .or(cfg.ddpm_guidance_scale.map(|w| w as f32))
        .unwrap_or(1.0);
    let null_class = match (guidance == 1.0, labels.is_some(), cfg.ddpm_null_class) {
        (true, _, _) => None,
        (false, false, _) => bail!("--guidance: the model is not class-conditional"),
        (false, true, None) => bail!(
            "--guidance {guidance}: the model has no unconditional class (config.json key \
             ddpm_null_class), so only guidance 1 (plain conditional) is possible"
        ),
        (false, true, Some(null)) => Some(null),
    };
    opts.guidance = null_class.map(|_| guidance);
    // Validate the whole plan (steps, η, schedule) before touching the GPU.
    let plan = SamplerPlan::new(&sched, &opts)?;
    let total_steps = plan.steps().len();

    let gpu = super::gpu()?;
    let unet = UNet::with_weights(&gpu, cfg.clone(), &weights, args.gpu_weights.storage)?;
    eprintln!("GPU weights: {}", unet.weight_bytes().describe());
    let mut generator = Generator::new(unet);
    let request = Request {
        n: args.n,
        sampler: plan,
        classes: labels,
        batch_cap: args.batch,
        initial: None,
        frames_budget: args.gif.is_some().then_some(GIF_BUDGET),
    };
    let mut generation = Generation::new(&mut generator, &gpu, request)?;
    let [_, c, h, w] = generation.shape();
    let batch = generation.batch();
    let runs = args.n.div_ceil(batch);
    if let Some(memory) = generator.memory() {
        eprintln!("{} (batch {batch})", memory.describe());
    }
    eprintln!(
        "sampling {} images {c}×{h}×{w} from {} in {runs} batch(es) of {batch}: {kind:?}, {total_steps} steps, seed {}",
        args.n,
        weights.source(),
        args.seed
    );

    let bar = ProgressBar::new((runs * total_steps) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}")
            .expect("valid template"),
    );
    let start = Instant::now();
    generation.run_blocking(&mut generator, &gpu, 10, |s| {
        bar.set_position(s.steps_done() as u64);
        bar.set_message(format!(
            "batch {}/{runs}, t={}",
            (s.run + 1).min(runs),
            s.progress.next_timestep.unwrap_or(0)
        ));
    })?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{} steps × {runs} batch(es) in {secs:.1} s: {:.1} steps/s ({:.1} images/s)",
        total_steps,
        (runs * total_steps) as f64 / secs,
        args.n as f64 / secs
    );
    let (samples, frames) = generation.into_parts();
    let shape = [0, c, h, w];

    let n = args.n;
    let img = grid(
        &samples,
        [n, shape[1], shape[2], shape[3]],
        columns,
        2,
        to_byte,
    );
    write_png(&args.out, &img)?;
    eprintln!("wrote {}", display(&args.out));
    if let Some(path) = &args.npy {
        ddpm::npy::write(path, &[n, shape[1], shape[2], shape[3]], &samples)?;
        eprintln!("wrote {}", display(path));
    }
    if let (Some(path), Some(frames)) = (&args.gif, &frames) {
        std::fs::write(path, frames.gif()?)
            .with_context(|| format!("writing {}", display(path)))?;
        eprintln!("wrote {} ({} frames)", display(path), frames.len());
    }
    check_gpu(&gpu)
}

fn check_gpu(gpu: &Gpu) -> anyhow::Result<()> {
    Ok(gpu.check()?)
}

/// Writes an RGBA image as PNG.
pub fn write_png(path: &Path, img: &Rgba) -> anyhow::Result<()> {
    std::fs::write(path, ddpm::image::png_bytes(img)?)
        .with_context(|| format!("writing {}", display(path)))
}
