//! `ddpm train`: trains a U-Net on the GPU with the same WGSL kernels as inference and writes a
//! diffusers model folder, with checkpoints that `--resume` continues exactly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use ddpm::data::{Batcher, BatcherState, Dataset, Source};
use ddpm::gpu::Gpu;
use ddpm::image::{grid, grid_columns, to_byte};
use ddpm::model::weights::{StoreDtype, CONFIG_FILE, WEIGHTS_FILE};
use ddpm::model::{presets, UNet, UNetConfig, Weights};
use ddpm::sampler::{Sampler, SamplerKind, SamplerOptions};
use ddpm::schedule::{BetaSchedule, SchedulerConfig};
use ddpm::train::{checkpoint, TrainOptions, Trainer, MAX_STEPS};
use indicatif::{ProgressBar, ProgressStyle};

use super::display;

const CHECKPOINT: &str = "checkpoint.safetensors";
const SCHEDULER_FILE: &str = "scheduler_config.json";
const LOSS_LOG: &str = "loss.csv";
/// The files written atomically ([`save`], [`truncate_loss_log`]): a kill can leave their
/// temporaries behind.
const ATOMIC_OUTPUTS: [&str; 5] = [
    CHECKPOINT,
    WEIGHTS_FILE,
    CONFIG_FILE,
    SCHEDULER_FILE,
    LOSS_LOG,
];

#[derive(clap::Args)]
pub struct Args {
    /// Dataset: mnist, fashion or emoji (fetch with `bash scripts/fetch_data.sh`).
    #[arg(long, default_value = "mnist")]
    data: String,
    /// Where scripts/fetch_data.sh put the datasets.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Model: `small` (the preset for the dataset: mnist for mnist/fashion, emoji for emoji), a
    /// preset name (mnist, emoji, cifar10) or a diffusers config.json.
    #[arg(long, default_value = "small")]
    config: String,
    /// β schedule: linear (1e-4 → 0.02, Ho et al.), cosine (Nichol & Dhariwal's
    /// squaredcos_cap_v2) or scaled_linear [default: linear]; kept in the checkpoint and
    /// scheduler_config.json.
    #[arg(long)]
    beta_schedule: Option<String>,
    /// T, the number of diffusion timesteps [default: 1000].
    #[arg(long)]
    timesteps: Option<usize>,
    /// Total optimisation steps (a resumed run continues up to this).
    #[arg(long, default_value_t = 10_000)]
    steps: u64,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Linear learning-rate warm-up steps.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Learning rate after the warm-up: `cosine` (down to 0 at --steps) or `constant`
    /// [default: cosine, or constant when the warm-up lasts the whole run; a resumed run keeps
    /// its checkpoint's unless this is given, and a decay added on resume starts at the resumed
    /// step].
    #[arg(long)]
    lr_decay: Option<String>,
    #[arg(long, default_value_t = 0.999)]
    ema: f32,
    /// Global gradient-norm clip (0: off).
    #[arg(long, default_value_t = 1.0)]
    clip: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder: diffusers model (config.json, diffusion_pytorch_model.safetensors,
    /// scheduler_config.json), checkpoint, loss.csv, loss.png, sample grids.
    #[arg(long)]
    out: PathBuf,
    /// Continue from OUT/checkpoint.safetensors.
    #[arg(long, conflicts_with = "init")]
    resume: bool,
    /// Start from the weights of a diffusers model folder or Hub id `hf:owner/name` (e.g. a
    /// shipped model in assets/) instead of random ones: its config and noise schedule (unless
    /// --beta-schedule/--timesteps are given), a fresh optimiser, learning-rate schedule and data
    /// order. A conditional model continues as conditional with --conditional, else as an
    /// unconditional model that starts from its null-class prediction.
    #[arg(long, conflicts_with = "config")]
    init: Option<PathBuf>,
    /// Steps between checkpoints (and model exports).
    #[arg(long, default_value_t = 250)]
    checkpoint_every: u64,
    /// Steps between sample grids (0: only at the end).
    #[arg(long, default_value_t = 2000)]
    sample_every: u64,
    /// Steps between loss readings (each one waits for the GPU).
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Store the exported weights as f16.
    #[arg(long)]
    f16: bool,
    /// Train a class-conditional model on the dataset's labels (MNIST, Fashion-MNIST): one
    /// class embedding per class plus a null class for classifier-free guidance.
    #[arg(long)]
    conditional: bool,
    /// With --conditional: the probability of replacing a label by the null class.
    #[arg(long, default_value_t = 0.1)]
    label_dropout: f32,
}

/// Guidance scale written into conditional models' config.json (`ddpm_guidance_scale`):
/// moderate guidance, sharper class adherence than w = 1 (plain conditional) without the
/// over-saturated strokes of large w; `ddpm sample --guidance` overrides it.
const DEFAULT_GUIDANCE: f64 = 2.0;

/// The decay `--lr-decay` names (None: not given, and a resumed run keeps its own): cosine
/// from `start` to `steps`, or constant.
fn lr_decay(
    name: Option<&str>,
    start: u64,
    steps: u64,
) -> anyhow::Result<Option<ddpm::train::LrDecay>> {
    use ddpm::train::LrDecay;
    Ok(match name {
        None => None,
        Some("constant") => Some(LrDecay::Constant),
        Some("cosine") if start < steps => Some(LrDecay::Cosine { start, end: steps }),
        Some("cosine") => bail!(
            "--lr-decay cosine: the decay would start at step {start}, not before --steps {steps}"
        ),
        Some(other) => bail!("--lr-decay: unknown decay {other:?} (cosine or constant)"),
    })
}

/// Whether two decays are the same schedule: a cosine given again on resume keeps its start.
fn same_decay(a: ddpm::train::LrDecay, b: ddpm::train::LrDecay) -> bool {
    use ddpm::train::LrDecay::*;
    match (a, b) {
        (Cosine { end: x, .. }, Cosine { end: y, .. }) => x == y,
        (a, b) => a == b,
    }
}

/// Makes `config` class-conditional over `classes` data classes (+ the null class last).
fn make_conditional(config: &mut UNetConfig, classes: usize, source: Source) -> anyhow::Result<()> {
    config.num_class_embeds = Some(classes + 1);
    config.ddpm_null_class = Some(classes);
    config.ddpm_guidance_scale = Some(DEFAULT_GUIDANCE);
    config.ddpm_class_names = Some(class_names(source, classes));
    Ok(config.validate()?)
}

/// The names of `source`'s classes 0..classes−1 (digits by default).
fn class_names(source: Source, classes: usize) -> Vec<String> {
    match source {
        Source::Fashion => ddpm::data::fashion::CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        _ => (0..classes).map(|c| c.to_string()).collect(),
    }
}

/// `base` (diffusers' DDPMScheduler for a new run: β 1e-4 → 0.02, fixed_small variance,
/// clipping; the `--init` model's schedule) with `--beta-schedule` and `--timesteps` applied.
fn scheduler_config(args: &Args, base: SchedulerConfig) -> anyhow::Result<SchedulerConfig> {
    let mut config = base;
    if let Some(name) = &args.beta_schedule {
        let name = if name == "cosine" {
            "squaredcos_cap_v2"
        } else {
            name
        };
        config.beta_schedule = BetaSchedule::parse(name)
            .context("--beta-schedule: use linear, cosine or scaled_linear")?;
    }
    if let Some(t) = args.timesteps {
        if t < 2 {
            bail!("--timesteps must be at least 2, got {t}");
        }
        config.num_train_timesteps = t;
    }
    config.schedule()?;
    Ok(config)
}

/// The training options of a new run (or one started from `--init`).
fn new_options(args: &Args) -> TrainOptions {
    TrainOptions {
        batch: args.batch,
        lr: args.lr,
        warmup: args.warmup,
        max_grad_norm: args.clip,
        ema_decay: args.ema,
        seed: args.seed,
        label_dropout: if args.conditional {
            args.label_dropout
        } else {
            0.0
        },
        ..TrainOptions::default()
    }
}

/// The model config `--config` names; `small` picks the small preset for `source`.
fn load_config(spec: &str, source: Source) -> anyhow::Result<UNetConfig> {
    if spec == "small" {
        let name = if source.channels() == 1 {
            "mnist"
        } else {
            "emoji"
        };
        return Ok(presets::preset(name)?);
    }
    let path = Path::new(spec);
    if path.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {spec}"))?;
        return UNetConfig::from_json(&text).with_context(|| format!("in {spec}"));
    }
    Ok(presets::preset(spec)?)
}

/// Where a run's weights, config, schedule and options come from.
enum Start {
    /// Random weights, `--config` and the flags' schedule.
    Fresh,
    /// `--resume`: everything from the checkpoint in OUT.
    Resume(Box<checkpoint::Checkpoint>),
    /// `--init`: a model folder's config, weights and schedule (flags applied onto it).
    Init(Box<InitModel>),
}

/// The starting point `--init` names.
struct InitModel {
    config: UNetConfig,
    weights: Weights,
    schedule: SchedulerConfig,
}

impl Start {
    fn checkpoint(&self) -> Option<&checkpoint::Checkpoint> {
        match self {
            Start::Resume(c) => Some(c),
            _ => None,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.steps == 0 || args.log_every == 0 || args.checkpoint_every == 0 {
        bail!("--steps, --log-every and --checkpoint-every must be at least 1");
    }
    if args.steps > MAX_STEPS {
        bail!("--steps must be at most {MAX_STEPS}, got {}", args.steps);
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", display(&args.out)))?;
    // A run killed while saving leaves temporaries: none of them is needed.
    let outputs: Vec<PathBuf> = ATOMIC_OUTPUTS.iter().map(|f| args.out.join(f)).collect();
    for tmp in checkpoint::remove_stale_temps(&outputs)? {
        eprintln!("removed {} (left by an interrupted save)", display(&tmp));
    }
    let ckpt_path = args.out.join(CHECKPOINT);
    let source: Source = args.data.parse()?;
    let new_schedule = scheduler_config(&args, SchedulerConfig::default())?;

    let start = if args.resume {
        if !ckpt_path.exists() {
            bail!("--resume: no checkpoint at {}", display(&ckpt_path));
        }
        Start::Resume(Box::new(checkpoint::load(&ckpt_path)?))
    } else {
        if ckpt_path.exists() {
            bail!(
                "{} already holds a checkpoint: pass --resume to continue it, or choose another --out",
                display(&args.out)
            );
        }
        match &args.init {
            Some(path) => {
                let model = super::ModelArgs {
                    model: Some(path.clone()),
                    preset: None,
                    resolved: Default::default(),
                };
                let (mut config, mut weights) = model.load()?;
                if config.num_class_embeds.is_some() && !args.conditional {
                    // Continue the conditional model's null-class prediction, unconditionally.
                    (config, weights) =
                        ddpm::model::unconditional::fold_null_class(&config, &weights)?;
                    eprintln!(
                        "--init: continuing the class-conditional model as an unconditional one \
                         (its null class folded into time_embedding.linear_2.bias)"
                    );
                }
                // The model's schedule, with the flags applied onto it.
                let schedule = scheduler_config(&args, model.scheduler(None)?)?;
                Start::Init(Box::new(InitModel {
                    config,
                    weights,
                    schedule,
                }))
            }
            None => Start::Fresh,
        }
    };
    let resumed = start.checkpoint();
    let (mut config, scheduler, mut options) = match &start {
        Start::Resume(c) => (c.config()?, c.scheduler()?, c.state.options),
        Start::Init(m) => (m.config.clone(), m.schedule.clone(), new_options(&args)),
        Start::Fresh => (
            load_config(&args.config, source)?,
            new_schedule.clone(),
            new_options(&args),
        ),
    };
    let started_from = match &start {
        Start::Resume(_) => Some("the checkpoint"),
        Start::Init(_) => Some("the --init model"),
        Start::Fresh => None,
    };
    if let Some(what) = started_from {
        let conditional = config.num_class_embeds.is_some();
        if args.conditional != conditional {
            bail!(
                "{what} is {}: --conditional cannot change on --resume or --init ({} it)",
                if conditional {
                    "class-conditional"
                } else {
                    "unconditional"
                },
                if conditional { "pass" } else { "leave out" }
            );
        }
    }

    let decay_start = match &resumed {
        Some(c) => c.state.step.max(options.warmup as u64),
        None => options.warmup as u64,
    };
    // A new run decays by default, unless its warm-up fills it (then there is nothing to decay).
    let default = (resumed.is_none() && decay_start < args.steps).then_some("cosine");
    let decay = lr_decay(
        args.lr_decay.as_deref().or(default),
        decay_start,
        args.steps,
    )?;
    match (decay, &resumed) {
        (Some(d), None) => options.lr_decay = d,
        (Some(d), Some(_)) if !same_decay(d, options.lr_decay) => {
            eprintln!(
                "--lr-decay: the learning rate now follows {d:?} (the checkpoint had {:?})",
                options.lr_decay
            );
            options.lr_decay = d;
        }
        _ => {}
    }
    if let ddpm::train::LrDecay::Cosine { end, .. } = options.lr_decay {
        if end < args.steps {
            eprintln!(
                "note: the learning rate decays to 0 at step {end}, before --steps {}; pass \
                 --lr-decay cosine to decay over the new length from here",
                args.steps
            );
        }
    }
    options.validate()?;

    let changed = (args.beta_schedule.is_some()
        && scheduler.beta_schedule != new_schedule.beta_schedule)
        || (args.timesteps.is_some()
            && scheduler.num_train_timesteps != new_schedule.num_train_timesteps);
    if resumed.is_some() && changed {
        bail!(
            "the checkpoint was trained with a {} schedule over T = {}: --beta-schedule and \
             --timesteps cannot change on --resume",
            scheduler.beta_schedule.name(),
            scheduler.num_train_timesteps
        );
    }

    // Data, shaped as the model wants it.
    let (h, w) = config
        .sample_hw()
        .context("the config needs a sample_size")?;
    let mut data = source.load(&args.data_dir)?;
    if data.channels() != config.in_channels {
        bail!(
            "{} images have {} channel(s) but the model's in_channels is {}",
            source.name(),
            data.channels(),
            config.in_channels
        );
    }
    if h != w || h < data.size() {
        bail!(
            "the model's sample size {h}×{w} cannot hold {0}×{0} {1} images",
            data.size(),
            source.name()
        );
    }
    if h > data.size() {
        data = data.pad_to(h)?;
    }
    if source == Source::Emoji {
        data = data.with_flips(true);
    }
    // The data labels of a conditional run (classes 0..C−1).
    let labels: Option<Vec<u8>> = if args.conditional {
        let labels = data.labels().with_context(|| {
            format!(
                "--conditional: the {} data in {} has no labels (fetch them with \
                 scripts/fetch_data.sh: train-labels-idx1-ubyte beside the images)",
                source.name(),
                display(&args.data_dir)
            )
        })?;
        let classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
        match &start {
            Start::Fresh => make_conditional(&mut config, classes, source)?,
            Start::Init(_) if config.num_class_embeds != Some(classes + 1) => bail!(
                "--init: the model has {} class embeddings but the {} data has {classes} classes \
                 (a conditional model needs one per class plus the null class)",
                config.num_class_embeds.unwrap_or(0),
                source.name()
            ),
            // The data names the classes (an --init model may come from another dataset).
            Start::Init(_) => config.ddpm_class_names = Some(class_names(source, classes)),
            Start::Resume(_) => {}
        }
        Some(labels.to_vec())
    } else {
        None
    };
    if config.ddpm_dataset.is_none() || matches!(start, Start::Init(_)) {
        config.ddpm_dataset = Some(source.name().into());
    }
    let config = config;
    let mut batcher = match &resumed {
        Some(c) => {
            let state: BatcherState = serde_json::from_value(c.state.extra["batcher"].clone())
                .context("checkpoint lacks the data position")?;
            Batcher::resume(state, data.len())?
        }
        None => Batcher::new(data.len(), options.seed)?,
    };

    let gpu = super::gpu()?;
    if let Some(c) = &resumed {
        // The kernels the run used, so that it continues bit for bit.
        gpu.pin_kernel_choices(&c.state.kernels);
    }
    let owned;
    let weights = match &start {
        Start::Init(m) => &m.weights,
        Start::Resume(c) => {
            owned = c.weights()?;
            &owned
        }
        Start::Fresh => {
            owned = Weights::init(&config, options.seed)?;
            &owned
        }
    };
    let mut trainer = match Trainer::new(&gpu, config.clone(), scheduler.clone(), weights, options)
    {
        Err(e @ ddpm::Error::Limit { .. }) => {
            eprintln!("{e}; looking for the largest batch that fits…");
            match Trainer::largest_fitting_batch(&gpu, &config, &scheduler, weights, options)? {
                Some(fit) => bail!(
                    "--batch {} does not fit this device ({e}); the largest batch that fits is \
                     {fit}: run with --batch {fit} or smaller",
                    options.batch
                ),
                None => bail!("this model cannot train on this device even at batch 1: {e}"),
            }
        }
        r => r?,
    };
    if let Some(c) = &resumed {
        trainer.restore(&gpu, c)?;
        eprintln!("resumed at step {}", trainer.step);
    }
    eprintln!(
        "training {} parameters on {} {} images ({}×{}), batch {}, lr {}, {} β over T = {}, to step {}",
        config.num_params(),
        data.len(),
        source.name(),
        h,
        w,
        options.batch,
        options.lr,
        scheduler.beta_schedule.name(),
        scheduler.num_train_timesteps,
        args.steps
    );

    // Rows after the checkpoint's step belong to steps that are about to be redone.
    let log_path = args.out.join(LOSS_LOG);
    truncate_loss_log(&log_path, trainer.step)?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .context("opening loss.csv")?;
    if log.metadata()?.len() == 0 {
        writeln!(log, "step,loss,lr,seconds")?;
    }
    let interrupted = interrupt_flag()?;
    let bar = ProgressBar::new(args.steps);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} eta {eta} {msg}")
            .expect("valid template"),
    );
    bar.set_position(trainer.step);
    let start = Instant::now();
    let first_step = trainer.step;
    let per_image = data.image_len();
    let mut x0 = vec![0f32; options.batch * per_image];
    let mut smoothed: Option<f32> = None;
    while trainer.step < args.steps {
        let batch = batcher.next_batch(options.batch);
        data.batch_with(&batch.indices, Some(batch.seed), &mut x0)?;
        match &labels {
            Some(l) => {
                let classes: Vec<u8> = batch.indices.iter().map(|&i| l[i]).collect();
                trainer.step_with_labels(&gpu, &x0, &classes)?
            }
            None => trainer.step(&gpu, &x0)?,
        }
        let step = trainer.step;
        if step % args.log_every == 0 || step == args.steps {
            // A non-finite loss stops here, before the checkpoint below could be overwritten.
            let loss = trainer.read_loss_blocking(&gpu)?;
            let s = smoothed.map_or(loss, |s| 0.9 * s + 0.1 * loss);
            smoothed = Some(s);
            writeln!(
                log,
                "{step},{loss},{},{:.2}",
                trainer.lr(step - 1),
                start.elapsed().as_secs_f64()
            )?;
            let rate = (step - first_step) as f64 / start.elapsed().as_secs_f64();
            bar.set_message(format!("loss {s:.4}  {rate:.2} it/s"));
            bar.set_position(step);
        }
        let stop = interrupted.load(Ordering::Relaxed);
        if step % args.checkpoint_every == 0 || step == args.steps || stop {
            save(&gpu, &trainer, &batcher, &args, &ckpt_path)?;
        }
        if stop {
            bar.abandon();
            super::plot::loss_curve(&log_path, &args.out.join("loss.png"))?;
            bail!(
                "interrupted at step {step}: checkpoint and model saved in {}; continue with --resume",
                display(&args.out)
            );
        }
        if (args.sample_every > 0 && step % args.sample_every == 0) || step == args.steps {
            let png = args.out.join(format!("samples_{step:06}.png"));
            sample_grid(&gpu, &trainer, &png)?;
            bar.println(format!("step {step}: wrote {}", display(&png)));
        }
    }
    bar.finish();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{} steps in {secs:.0} s ({:.2} it/s); model in {}",
        trainer.step - first_step,
        (trainer.step - first_step) as f64 / secs,
        display(&args.out)
    );
    super::plot::loss_curve(&log_path, &args.out.join("loss.png"))?;
    Ok(())
}

/// Keeps only the header and the complete rows up to step `step` of the loss log at `path` (if
/// it exists): a resumed run redoes the steps after its checkpoint, and a fresh run starts
/// from 0, so their rows must not appear twice. A torn last line (a kill mid-write) is dropped.
fn truncate_loss_log(path: &Path, step: u64) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", display(path))),
    };
    let mut kept = String::new();
    let mut changed = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let complete = line.ends_with('\n');
        let keep = complete
            && (i == 0
                || line
                    .split(',')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|s| s <= step));
        if keep {
            kept.push_str(line);
        } else {
            changed = true;
        }
    }
    if changed {
        checkpoint::write_atomic(path, kept.as_bytes())
            .with_context(|| format!("truncating {} to step {step}", display(path)))?;
    }
    Ok(())
}

/// Set by the first Ctrl-C (SIGINT) or SIGTERM: the loop finishes its step, saves a checkpoint
/// and stops. A second signal terminates at once (the last checkpoint stays intact).
fn interrupt_flag() -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone())?;
        signal_hook::flag::register(signal, flag.clone())?;
    }
    Ok(flag)
}

/// Checkpoint, then the diffusers export (EMA weights), each written atomically.
fn save(
    gpu: &Gpu,
    trainer: &Trainer,
    batcher: &Batcher,
    args: &Args,
    ckpt: &Path,
) -> anyhow::Result<()> {
    let extra = serde_json::json!({ "batcher": batcher.state() });
    pollster::block_on(trainer.save_checkpoint(gpu, ckpt, extra))
        .context("writing the checkpoint (the previous one is kept)")?;
    let weights = pollster::block_on(trainer.weights(gpu, true))?;
    let dtype = if args.f16 {
        StoreDtype::F16
    } else {
        StoreDtype::F32
    };
    let bytes = weights.to_safetensors_bytes(dtype)?;
    checkpoint::write_atomic(&args.out.join(WEIGHTS_FILE), &bytes)?;
    checkpoint::write_atomic(
        &args.out.join(CONFIG_FILE),
        trainer.config.to_json().as_bytes(),
    )?;
    checkpoint::write_atomic(
        &args.out.join(SCHEDULER_FILE),
        trainer.scheduler.to_json().as_bytes(),
    )?;
    Ok(())
}

/// Samples of the EMA model with DDIM (50 steps, η = 0, seed 0) as a PNG grid: 16, or for a
/// class-conditional model two per class, one row per class, at its default guidance.
fn sample_grid(gpu: &Gpu, trainer: &Trainer, png: &Path) -> anyhow::Result<()> {
    let weights = pollster::block_on(trainer.weights(gpu, true))?;
    let config = &trainer.config;
    let unet = UNet::new(gpu, config.clone(), &weights)?;
    let mut opts = SamplerOptions::new(
        &trainer.scheduler,
        SamplerKind::Ddim {
            steps: 50,
            eta: 0.0,
        },
        0,
    );
    let classes = config.classes();
    let (n, columns) = if classes.is_empty() {
        (16, grid_columns(16))
    } else {
        (2 * classes.len(), 2)
    };
    let null = config.ddpm_null_class.filter(|_| !classes.is_empty());
    opts.guidance = null.map(|_| config.ddpm_guidance_scale.unwrap_or(1.0) as f32);
    let plan = unet.plan(gpu, opts.copies_per_image() * n)?;
    if !classes.is_empty() {
        let per_image: Vec<f32> = (0..n).map(|i| classes[i / 2] as f32).collect();
        plan.set_labels(gpu, Some(&ddpm::sampler::batch_labels(&per_image, null)))?;
    }
    let mut sampler = Sampler::new(gpu, &plan, &trainer.scheduler, &opts)?;
    let x = sampler.run_to_end_blocking(gpu, 10)?;
    let s = &ddpm::model::EpsModel::x(&plan).shape;
    let img = grid(&x, [n, s[1], s[2], s[3]], columns, 2, to_byte);
    super::sample::write_png(png, &img)
}
