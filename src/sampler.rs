//! The reverse process: DDPM (Ho et al. 2020, Algorithm 2) and DDIM (Song et al. 2021) sampling
//! with diffusers' scheduler semantics, driven from Rust over a recorded [`EpsModel`].
//!
//! Every step is `[fill t → model forward → fused step kernel]`, all recorded once up front;
//! [`Sampler::run_steps`] submits a chunk of k steps as one command buffer (the browser calls it
//! between animation frames), reading back only the trajectory snapshots asked for.
//! [`sample_cpu`] runs the same plan on the CPU for tests.

use crate::cpu::sampling as cpu;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::EpsModel;
use crate::ops::sampling::{self as ops, StepNoise};
use crate::schedule::{DdimCoefs, DdpmCoefs, SchedulerConfig, VarianceType};

/// RNG stream of the starting noise x_T (step noise uses stream = timestep t < T).
pub const INIT_STREAM: u32 = u32::MAX;

/// Which reverse process to run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerKind {
    /// Ancestral DDPM over all T training timesteps.
    Ddpm,
    /// DDIM over `steps` timesteps (config's `timestep_spacing`/`steps_offset`); `eta` ∈ [0, 1]
    /// (0: deterministic, 1: DDPM-like variance).
    Ddim { steps: usize, eta: f32 },
}

impl SamplerKind {
    /// `"ddpm"` or `"ddim"` (case-insensitive); `steps`/`eta` are used by DDIM only.
    pub fn parse(name: &str, steps: usize, eta: f32) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "ddpm" => Ok(SamplerKind::Ddpm),
            "ddim" => Ok(SamplerKind::Ddim { steps, eta }),
            _ => Err(Error::setting(
                "sampler",
                format!("unknown sampler {name:?}: expected \"ddpm\" or \"ddim\""),
            )),
        }
    }
}

/// Sampler settings; [`SamplerOptions::new`] takes variance and clipping from the config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerOptions {
    pub kind: SamplerKind,
    /// Seed of x_T and of every step's noise z.
    pub seed: u64,
    /// Index in the whole run of this batch's first image: noise is keyed by (seed, stream,
    /// element index in the run), so a seed draws the same images whatever the batching.
    pub first_image: u64,
    /// DDPM σ_t² (DDIM ignores it).
    pub variance: VarianceType,
    /// Clamp x̂0 to ±this (diffusers' `clip_sample` / `clip_sample_range`).
    pub clip: Option<f32>,
    /// Classifier-free guidance scale w: the model's batch holds the conditional images, then
    /// the same images unconditioned, and every step uses ε̂_u + w·(ε̂_c − ε̂_u). `None`: one
    /// plain forward per step.
    pub guidance: Option<f32>,
    /// DDIM with clipping: re-derive the direction term's ε̂ from the clipped x̂0 (see
    /// [`crate::schedule::DdimCoefs::clipped_eps`]). `None`: exactly for guided runs, whose
    /// extrapolated ε̂ pushes x̂0 far past the clip range (without it, guided DDIM samples of the
    /// shipped conditional MNIST model degrade from w = 1.5 up); unguided runs keep diffusers'
    /// default (off).
    pub clipped_model_output: Option<bool>,
    /// Denoise from an intermediate timestep instead of T − 1: only the planned steps with
    /// t ≤ `start` run, from an x given by [`Sampler::set_initial`] at the noise level of the
    /// first kept step (`plan[0].t`; DDIM keeps its own spacing, as diffusers' img2img does).
    pub start: Option<usize>,
}

impl SamplerOptions {
    /// Model-batch entries per drawn image: 2 with guidance (the conditional and unconditional
    /// halves), else 1.
    pub fn copies_per_image(&self) -> usize {
        if self.guidance.is_some() {
            2
        } else {
            1
        }
    }

    /// Options following `config` (`variance_type`, `clip_sample`, `clip_sample_range`).
    pub fn new(config: &SchedulerConfig, kind: SamplerKind, seed: u64) -> Self {
        SamplerOptions {
            kind,
            seed,
            first_image: 0,
            guidance: None,
            clipped_model_output: None,
            start: None,
            variance: config.variance_type,
            clip: config.clip(),
        }
    }
}

/// The coefficients of one planned step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepCoefs {
    Ddpm(DdpmCoefs),
    Ddim(DdimCoefs),
}

/// One step of the reverse process: from timestep `t` to `prev` (`None`: the end).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlannedStep {
    pub t: usize,
    pub prev: Option<usize>,
    pub coefs: StepCoefs,
}

/// The steps `opts` runs under `config`, in order (coefficients in f64, stored f32).
pub fn plan(config: &SchedulerConfig, opts: &SamplerOptions) -> Result<Vec<PlannedStep>> {
    let schedule = config.schedule()?;
    if let Some(r) = opts.clip {
        if r.is_nan() || r <= 0.0 {
            return Err(Error::setting(
                "clip",
                format!("clip range must be positive, got {r}"),
            ));
        }
    }
    let steps: Vec<PlannedStep> = match opts.kind {
        SamplerKind::Ddpm => (0..schedule.len())
            .rev()
            .map(|t| {
                let prev = t.checked_sub(1);
                let c = schedule.ddpm_coefs(t, prev, opts.variance, opts.clip)?;
                Ok(PlannedStep {
                    t,
                    prev,
                    coefs: StepCoefs::Ddpm(c),
                })
            })
            .collect::<Result<_>>()?,
        SamplerKind::Ddim { steps, eta } => {
            if !(0.0..=1.0).contains(&eta) {
                return Err(Error::setting(
                    "eta",
                    format!("DDIM eta must lie in [0, 1], got {eta}"),
                ));
            }
            let ts = config.ddim_timesteps(steps)?;
            let ratio = config.num_train_timesteps / steps;
            let final_ab = if config.set_alpha_to_one {
                1.0
            } else {
                schedule.alpha_cumprod(Some(0))
            };
            ts.into_iter()
                .map(|t| {
                    // diffusers: prev = t − T // steps, whatever the spacing.
                    let prev = t.checked_sub(ratio);
                    let mut c = schedule.ddim_coefs(t, prev, final_ab, eta, opts.clip)?;
                    c.clipped_eps = opts.clipped_model_output.unwrap_or(opts.guidance.is_some());
                    Ok(PlannedStep {
                        t,
                        prev,
                        coefs: StepCoefs::Ddim(c),
                    })
                })
                .collect::<Result<_>>()?
        }
    };
    let Some(start) = opts.start else {
        return Ok(steps);
    };
    let kept: Vec<PlannedStep> = steps.into_iter().filter(|p| p.t <= start).collect();
    if start >= schedule.len() || kept.is_empty() {
        return Err(Error::setting(
            "start",
            format!(
                "start timestep {start}: expected 0..={} with at least one planned step at or \
                 below it",
                schedule.len() - 1
            ),
        ));
    }
    Ok(kept)
}

/// Sampler options checked against a scheduler config, with the steps they run ([`plan`]):
/// planned once, then handed to the [`Sampler`] (e.g. after a caller read its timesteps).
#[derive(Clone, Debug)]
pub struct SamplerPlan {
    options: SamplerOptions,
    steps: Vec<PlannedStep>,
}

impl SamplerPlan {
    /// Plans `options` under `config` (its errors are [`plan`]'s).
    pub fn new(config: &SchedulerConfig, options: &SamplerOptions) -> Result<Self> {
        Ok(SamplerPlan {
            options: *options,
            steps: plan(config, options)?,
        })
    }

    pub fn options(&self) -> &SamplerOptions {
        &self.options
    }

    /// The planned steps, in order.
    pub fn steps(&self) -> &[PlannedStep] {
        &self.steps
    }
}

/// CPU reference of the whole reverse process: runs `plan` from `x_t` (e.g.
/// `cpu::sampling::noise(n, seed, INIT_STREAM, first)`) with ε̂ = `eps(x, t)`, noise from `seed`
/// at element indices `first..`. Returns (x_0, last x̂0).
pub fn sample_cpu(
    plan: &[PlannedStep],
    x_t: Vec<f32>,
    seed: u64,
    first: u64,
    eps: &mut dyn FnMut(&[f32], usize) -> Vec<f32>,
) -> (Vec<f32>, Vec<f32>) {
    let mut x = x_t;
    let mut x0 = vec![0.0; x.len()];
    for step in plan {
        let e = eps(&x, step.t);
        let (sigma, stream) = match &step.coefs {
            StepCoefs::Ddpm(c) => (c.sigma, c.t),
            StepCoefs::Ddim(c) => (c.sigma, c.t),
        };
        let z = if sigma != 0.0 {
            cpu::noise(x.len(), seed, stream, first)
        } else {
            Vec::new()
        };
        (x, x0) = match &step.coefs {
            StepCoefs::Ddpm(c) => cpu::ddpm_step(&x, &e, c, &z),
            StepCoefs::Ddim(c) => cpu::ddim_step(&x, &e, c, &z),
        };
    }
    (x, x0)
}

/// Where a sampler stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Steps completed.
    pub step: usize,
    /// Steps in the plan.
    pub total: usize,
    /// Timestep of the last completed step (`None` before the first).
    pub timestep: Option<usize>,
    /// Timestep of the next step (`None` when done).
    pub next_timestep: Option<usize>,
}

impl Progress {
    /// All steps done: x holds x_0.
    pub fn done(&self) -> bool {
        self.step == self.total
    }
}

/// The display range of ε̂ in snapshots and on the page: ±3σ of the unit Gaussian it estimates
/// (images use ±1).
pub const EPS_RANGE: f32 = 3.0;

/// A snapshot tensor: f32, or u8 once over the byte budget, with [−range, range] ↦ [0, 255].
#[derive(Clone, Debug, PartialEq)]
pub enum SnapshotData {
    F32(Vec<f32>),
    U8 { bytes: Vec<u8>, range: f32 },
}

impl SnapshotData {
    /// Quantises image values: round((clamp(v, −1, 1) + 1)·127.5).
    pub fn quantise(values: &[f32]) -> Vec<u8> {
        Self::quantise_range(values, 1.0)
    }

    /// Quantises values over [−range, range]: round((clamp(v / range, −1, 1) + 1)·127.5).
    pub fn quantise_range(values: &[f32], range: f32) -> Vec<u8> {
        values
            .iter()
            .map(|v| (((v / range).clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8)
            .collect()
    }

    /// The values as f32 (u8 mapped back onto its range).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            SnapshotData::F32(v) => v.clone(),
            SnapshotData::U8 { bytes, range } => bytes
                .iter()
                .map(|&b| (b as f32 / 127.5 - 1.0) * range)
                .collect(),
        }
    }

    /// Display bytes, [−range, range] ↦ [0, 255].
    pub fn to_u8(&self, range: f32) -> Vec<u8> {
        match self {
            SnapshotData::U8 { bytes, range: r } if *r == range => bytes.clone(),
            SnapshotData::U8 { .. } => Self::quantise_range(&self.to_f32(), range),
            SnapshotData::F32(v) => Self::quantise_range(v, range),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            SnapshotData::F32(v) => v.len() * 4,
            SnapshotData::U8 { bytes, .. } => bytes.len(),
        }
    }

    fn quantise_in_place(&mut self, range: f32) {
        if let SnapshotData::F32(v) = self {
            *self = SnapshotData::U8 {
                bytes: Self::quantise_range(v, range),
                range,
            };
        }
    }
}

/// x_t, x̂0 and ε̂ after a step (each `[N, C, H, W]` flattened); step 0 is the start, x_T (or
/// the given initial x), with x̂0 and ε̂ zero as nothing was predicted yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Steps completed when taken (0: none, the initial x).
    pub step: usize,
    /// The timestep of that step (x̂0 and ε̂ were predicted at it; `x` is x at the next
    /// timestep); for step 0, the first step's timestep (`x` is its input).
    pub timestep: usize,
    pub x: SnapshotData,
    pub x0: SnapshotData,
    /// The ε̂ the step used (with guidance, the combination); quantised over ±[`EPS_RANGE`].
    pub eps: SnapshotData,
}

impl Snapshot {
    fn bytes(&self) -> usize {
        self.x.bytes() + self.x0.bytes() + self.eps.bytes()
    }

    fn quantise(&mut self) {
        self.x.quantise_in_place(1.0);
        self.x0.quantise_in_place(1.0);
        self.eps.quantise_in_place(EPS_RANGE);
    }
}

/// Snapshots every `every` steps (and after the last) within a byte budget.
///
/// Policy when a new snapshot would exceed the budget: first every snapshot (held and future)
/// is quantised to u8 (4× smaller); if still over, the stride doubles and snapshots off the new
/// stride are dropped (repeatedly), so the kept ones stay evenly spaced. The newest snapshot is
/// always kept, even if it alone exceeds the budget.
#[derive(Clone, Debug)]
pub struct Trajectory {
    requested: usize,
    every: usize,
    budget: usize,
    bytes: usize,
    quantised: bool,
    snapshots: Vec<Snapshot>,
}

impl Trajectory {
    /// Captures every `every` (≥ 1) steps within `budget_bytes`.
    pub fn new(every: usize, budget_bytes: usize) -> Result<Self> {
        if every == 0 {
            return Err(Error::setting(
                "trajectory stride",
                "trajectory stride must be at least 1 step",
            ));
        }
        Ok(Trajectory {
            requested: every,
            every,
            budget: budget_bytes,
            bytes: 0,
            quantised: false,
            snapshots: Vec::new(),
        })
    }

    /// The snapshots kept, oldest first.
    pub fn snapshots(&self) -> &[Snapshot] {
        &self.snapshots
    }

    /// The current stride (the requested one, doubled each time the budget forced thinning).
    pub fn every(&self) -> usize {
        self.every
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether snapshots are stored as u8.
    pub fn is_quantised(&self) -> bool {
        self.quantised
    }

    /// Drops all snapshots and restores the requested stride (same budget).
    pub fn clear(&mut self) {
        self.every = self.requested;
        self.bytes = 0;
        self.quantised = false;
        self.snapshots.clear();
    }

    /// Whether the snapshot after completed step `step` of `total` is wanted (step 0, the
    /// initial x, always is).
    pub fn wants(&self, step: usize, total: usize) -> bool {
        step.is_multiple_of(self.every) || step == total
    }

    /// Adds the snapshot of a run of `total` steps, enforcing the budget (see the type's docs);
    /// it is dropped if thinning moved it off the stride (unless it is the last step).
    pub fn push(&mut self, mut snap: Snapshot, total: usize) {
        if self.quantised {
            snap.quantise();
        }
        while self.bytes + snap.bytes() > self.budget && !self.snapshots.is_empty() {
            if !self.quantised {
                self.quantised = true;
                self.snapshots.iter_mut().for_each(Snapshot::quantise);
                snap.quantise();
            } else {
                self.every *= 2;
                let before = self.snapshots.len();
                let every = self.every;
                self.snapshots.retain(|s| s.step.is_multiple_of(every));
                if self.snapshots.len() == before {
                    self.snapshots.remove(0);
                }
            }
            self.bytes = self.snapshots.iter().map(Snapshot::bytes).sum();
        }
        if !self.wants(snap.step, total) {
            return;
        }
        self.bytes += snap.bytes();
        self.snapshots.push(snap);
    }
}

/// The labels of a model batch for `classes` (one per image): as they are, or for
/// classifier-free guidance (`null` given) followed by as many `null`s for the unconditional half.
pub fn batch_labels(classes: &[f32], null: Option<usize>) -> Vec<f32> {
    let mut l = classes.to_vec();
    if let Some(null) = null {
        l.extend(std::iter::repeat_n(null as f32, classes.len()));
    }
    l
}

/// The run-wide element index of the first element of `x` (`[N, …]`) under `opts`.
fn first_element(x: &Tensor, opts: &SamplerOptions) -> Result<u64> {
    let per_image = x.shape.get(1..).unwrap_or(&[]).iter().product::<usize>() as u64;
    opts.first_image.checked_mul(per_image).ok_or_else(|| {
        Error::setting(
            "first image",
            format!(
                "first image {} × {per_image} elements overflows the RNG's 64-bit index",
                opts.first_image
            ),
        )
    })
}

/// The most bytes of snapshots one chunk stages for readback.
const MAX_STAGING: u64 = 256 << 20;

/// Runs the reverse process on the GPU over a recorded [`EpsModel`].
pub struct Sampler {
    plan: Vec<PlannedStep>,
    opts: SamplerOptions,
    x: Tensor,
    eps: Tensor,
    t: Tensor,
    x0: Tensor,
    model: Vec<Dispatch>,
    init: Dispatch,
    /// Per step: [fill t, step kernel].
    steps: Vec<[Dispatch; 2]>,
    next: usize,
    pending_init: bool,
    trajectory: Option<Trajectory>,
}

impl Sampler {
    /// Plans the run and records every step's dispatches (x_T is drawn on the first chunk).
    pub fn new(
        gpu: &Gpu,
        model: &dyn EpsModel,
        config: &SchedulerConfig,
        opts: &SamplerOptions,
    ) -> Result<Self> {
        Self::planned(gpu, model, SamplerPlan::new(config, opts)?)
    }

    /// [`Sampler::new`] for a run already planned.
    pub fn planned(gpu: &Gpu, model: &dyn EpsModel, plan: SamplerPlan) -> Result<Self> {
        let SamplerPlan {
            options: opts,
            steps: plan,
        } = plan;
        let (x, eps, t) = (model.x(), model.eps(), model.t());
        let batch = *x
            .shape
            .first()
            .ok_or_else(|| Error::operand("sampler", "x", "model input must be [N, C, H, W]"))?;
        crate::ops::same_shape("model eps", &x.shape, &eps.shape)?;
        crate::ops::same_shape("model t", &[batch], &t.shape)?;
        if let Some(w) = opts.guidance {
            if !w.is_finite() || !batch.is_multiple_of(2) {
                return Err(Error::setting(
                    "guidance",
                    format!(
                        "guidance {w} needs a finite scale and an even model batch (conditional \
                         and unconditional halves), got batch {batch}"
                    ),
                ));
            }
        }
        let x0 = Tensor::zeros(gpu, &x.shape, "x0 prediction")?;
        let mut s = Sampler {
            init: init_noise(gpu, x, &opts)?,
            steps: Vec::new(),
            plan,
            opts,
            x: x.clone(),
            eps: eps.clone(),
            t: t.clone(),
            x0,
            model: model.dispatches().to_vec(),
            next: 0,
            pending_init: true,
            trajectory: None,
        };
        s.record(gpu)?;
        Ok(s)
    }

    /// Records every step's [fill t, step kernel] for the current seed and first image.
    fn record(&mut self, gpu: &Gpu) -> Result<()> {
        let noise = StepNoise::Rng {
            seed: self.opts.seed,
            first: first_element(&self.x, &self.opts)?,
        };
        self.steps = self
            .plan
            .iter()
            .map(|p| {
                let fill = ops::fill(gpu, &self.t, p.t as f32)?;
                let step = match &p.coefs {
                    StepCoefs::Ddpm(c) => ops::ddpm_step(
                        gpu,
                        &self.x,
                        &self.eps,
                        &self.x0,
                        c,
                        noise,
                        self.opts.guidance,
                    )?,
                    StepCoefs::Ddim(c) => ops::ddim_step(
                        gpu,
                        &self.x,
                        &self.eps,
                        &self.x0,
                        c,
                        noise,
                        self.opts.guidance,
                    )?,
                };
                Ok([fill, step])
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// Starts over with a new seed and/or first image (see [`SamplerOptions::first_image`];
    /// re-records the steps when either changed); x_T is redrawn on the next chunk and the
    /// trajectory is cleared.
    pub fn restart(&mut self, gpu: &Gpu, seed: u64, first_image: u64) -> Result<()> {
        if (seed, first_image) != (self.opts.seed, self.opts.first_image) {
            self.opts.seed = seed;
            self.opts.first_image = first_image;
            self.init = init_noise(gpu, &self.x, &self.opts)?;
            self.record(gpu)?;
        }
        self.next = 0;
        self.pending_init = true;
        if let Some(tr) = &mut self.trajectory {
            tr.clear();
        }
        Ok(())
    }

    /// Starts over from the given x_T (`[N, C, H, W]` flattened) instead of drawn noise.
    pub fn set_initial(&mut self, gpu: &Gpu, x_t: &[f32]) -> Result<()> {
        if self.opts.guidance.is_some() {
            // Both halves of a guided batch start from the same x_T.
            self.x.write(gpu, &[x_t, x_t].concat())?;
        } else {
            self.x.write(gpu, x_t)?;
        }
        self.next = 0;
        self.pending_init = false;
        if let Some(tr) = &mut self.trajectory {
            tr.clear();
        }
        Ok(())
    }

    /// Captures x_t and x̂0 every `every` steps (and after the last) within `budget_bytes`
    /// (see [`Trajectory`]). Replaces any previous trajectory.
    pub fn capture(&mut self, every: usize, budget_bytes: usize) -> Result<()> {
        self.trajectory = Some(Trajectory::new(every, budget_bytes)?);
        Ok(())
    }

    /// The captured trajectory, if [`Sampler::capture`] was called.
    pub fn trajectory(&self) -> Option<&Trajectory> {
        self.trajectory.as_ref()
    }

    /// The planned steps.
    pub fn plan(&self) -> &[PlannedStep] {
        &self.plan
    }

    /// The options in force.
    pub fn options(&self) -> &SamplerOptions {
        &self.opts
    }

    /// Where the run stands.
    pub fn progress(&self) -> Progress {
        Progress {
            step: self.next,
            total: self.plan.len(),
            timestep: self.next.checked_sub(1).map(|i| self.plan[i].t),
            next_timestep: self.plan.get(self.next).map(|p| p.t),
        }
    }

    /// The current sample x (x_0 when done), `[N, C, H, W]`: the model's input tensor.
    pub fn sample_tensor(&self) -> &Tensor {
        &self.x
    }

    /// The latest x̂0 prediction, `[N, C, H, W]`.
    pub fn x0_tensor(&self) -> &Tensor {
        &self.x0
    }

    /// Submits the next `k` steps (fewer at the end, or if the chunk's snapshots would exceed
    /// the staging limit) as one command buffer and waits for them; reads back only the
    /// trajectory snapshots due in the chunk.
    pub async fn run_steps(&mut self, gpu: &Gpu, k: usize) -> Result<Progress> {
        let total = self.plan.len();
        if k == 0 || self.next == total {
            return Ok(self.progress());
        }
        let snap_bytes = 3 * self.out_bytes();
        let staging_limit = MAX_STAGING.min(gpu.limits.max_buffer_size).max(snap_bytes);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let mut pass_list: Vec<&Dispatch> = Vec::new();
        if self.pending_init {
            pass_list.push(&self.init);
        }
        // (steps completed, staging offset)
        let mut snaps: Vec<(usize, u64)> = Vec::new();
        let mut pending_copies: Vec<(Vec<&Dispatch>, Option<u64>)> = Vec::new();
        let mut offset = 0u64;
        if self.next == 0
            && self
                .trajectory
                .as_ref()
                .is_some_and(|tr| tr.wants(0, total))
        {
            // The initial x, once drawn (or as given).
            pending_copies.push((std::mem::take(&mut pass_list), Some(offset)));
            snaps.push((0, offset));
            offset += snap_bytes;
        }
        let end = (self.next + k).min(total);
        let mut i = self.next;
        while i < end {
            let wants = self
                .trajectory
                .as_ref()
                .is_some_and(|tr| tr.wants(i + 1, total));
            if wants && offset + snap_bytes > staging_limit {
                break;
            }
            let [fill, step] = &self.steps[i];
            pass_list.push(fill);
            pass_list.extend(self.model.iter());
            pass_list.push(step);
            if wants {
                pending_copies.push((std::mem::take(&mut pass_list), Some(offset)));
                snaps.push((i + 1, offset));
                offset += snap_bytes;
            }
            i += 1;
        }
        pending_copies.push((pass_list, None));
        let staging = (offset > 0).then(|| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("trajectory staging"),
                size: offset,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        for (dispatches, copy) in &pending_copies {
            if !dispatches.is_empty() {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("sampler"),
                    timestamp_writes: None,
                });
                for d in dispatches {
                    d.record(&mut pass);
                }
            }
            if let (Some(off), Some(staging)) = (copy, &staging) {
                let n = self.out_bytes();
                encoder.copy_buffer_to_buffer(&self.x.buffer, 0, staging, *off, n);
                encoder.copy_buffer_to_buffer(&self.x0.buffer, 0, staging, *off + n, n);
                encoder.copy_buffer_to_buffer(&self.eps.buffer, 0, staging, *off + 2 * n, n);
            }
        }
        gpu.queue.submit([encoder.finish()]);
        self.pending_init = false;
        self.next = i;
        match staging {
            None => gpu.wait().await?,
            Some(staging) => {
                let bytes = map_read(gpu, &staging).await?;
                let floats: &[f32] = bytemuck::cast_slice(&bytes);
                let n = self.out_bytes() as usize / 4;
                let tr = self
                    .trajectory
                    .as_mut()
                    .expect("snapshots imply a trajectory");
                for (step, off) in snaps {
                    let at = off as usize / 4;
                    let part = |k: usize| match step {
                        // Before the first step x̂0 and ε̂ hold nothing of this run.
                        0 if k > 0 => SnapshotData::F32(vec![0.0; n]),
                        _ => SnapshotData::F32(floats[at + k * n..at + (k + 1) * n].to_vec()),
                    };
                    tr.push(
                        Snapshot {
                            step,
                            timestep: self.plan[step.saturating_sub(1)].t,
                            x: part(0),
                            x0: part(1),
                            eps: part(2),
                        },
                        total,
                    );
                }
            }
        }
        Ok(self.progress())
    }

    /// [`Sampler::run_steps`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_steps_blocking(&mut self, gpu: &Gpu, k: usize) -> Result<Progress> {
        pollster::block_on(self.run_steps(gpu, k))
    }

    /// Runs all remaining steps in chunks of `chunk` and reads back x_0.
    pub async fn run_to_end(&mut self, gpu: &Gpu, chunk: usize) -> Result<Vec<f32>> {
        while !self.progress().done() {
            self.run_steps(gpu, chunk.max(1)).await?;
        }
        self.read_sample(gpu).await
    }

    /// [`Sampler::run_to_end`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_to_end_blocking(&mut self, gpu: &Gpu, chunk: usize) -> Result<Vec<f32>> {
        pollster::block_on(self.run_to_end(gpu, chunk))
    }

    /// Reads the current sample (x_0 when done) as f32.
    pub async fn read_sample(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let mut x = self.x.read(gpu).await?;
        x.truncate(self.out_bytes() as usize / 4);
        Ok(x)
    }

    /// Reads the latest x̂0 prediction as f32.
    pub async fn read_x0(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let mut x0 = self.x0.read(gpu).await?;
        x0.truncate(self.out_bytes() as usize / 4);
        Ok(x0)
    }

    /// Bytes of the images the run draws: all of x, or its conditional half when guided.
    fn out_bytes(&self) -> u64 {
        self.x.bytes() / self.opts.copies_per_image() as u64
    }
}

/// The x_T draw of `opts` into `x` (for a guided batch both halves get the first half's draw).
fn init_noise(gpu: &Gpu, x: &Tensor, opts: &SamplerOptions) -> Result<Dispatch> {
    let first = first_element(x, opts)?;
    let period = x.numel() / opts.copies_per_image();
    ops::noise_repeated(gpu, x, opts.seed, INIT_STREAM, first, period)
}

/// Maps a MAP_READ buffer after the submitted work and copies its bytes out.
async fn map_read(gpu: &Gpu, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
    let (tx, rx) = futures_channel::oneshot::channel();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    gpu.poll_wait();
    rx.await
        .map_err(|_| Error::Gpu("device lost during trajectory readback".into()))?
        .map_err(|e| Error::Gpu(format!("trajectory readback failed: {e}")))?;
    gpu.check()?;
    let bytes = staging
        .slice(..)
        .get_mapped_range()
        .map_err(|e| Error::Gpu(format!("trajectory map failed: {e}")))?
        .to_vec();
    staging.unmap();
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::err_text;

    fn snap(step: usize, n: usize) -> Snapshot {
        Snapshot {
            step,
            timestep: 100 - step,
            x: SnapshotData::F32(vec![0.5; n]),
            x0: SnapshotData::F32(vec![-0.5; n]),
            eps: SnapshotData::F32(vec![2.0; n]),
        }
    }

    #[test]
    fn trajectory_keeps_f32_within_budget() {
        let mut tr = Trajectory::new(1, 10 * 120).unwrap();
        for s in 1..=10 {
            tr.push(snap(s, 10), 40);
        }
        assert!(!tr.is_quantised());
        assert_eq!(tr.snapshots().len(), 10);
        assert_eq!(tr.bytes(), 1200);
    }

    #[test]
    fn trajectory_quantises_then_thins() {
        // 120 bytes f32 / 30 bytes u8 per snapshot; budget 300 bytes.
        let mut tr = Trajectory::new(1, 300).unwrap();
        for s in 1..=2 {
            tr.push(snap(s, 10), 40);
        }
        assert!(!tr.is_quantised());
        tr.push(snap(3, 10), 40);
        assert!(tr.is_quantised());
        assert_eq!(tr.snapshots().len(), 3);
        let x = tr.snapshots()[0].x.to_f32();
        assert!((x[0] - 0.5).abs() < 1.0 / 255.0, "{x:?}");
        let eps = tr.snapshots()[0].eps.to_f32();
        assert!((eps[0] - 2.0).abs() <= EPS_RANGE / 255.0 + 1e-6, "{eps:?}");
        for s in 4..=40 {
            if tr.wants(s, 40) {
                tr.push(snap(s, 10), 40);
            }
            assert!(tr.bytes() <= 300, "over budget at step {s}: {}", tr.bytes());
        }
        let steps: Vec<usize> = tr.snapshots().iter().map(|s| s.step).collect();
        assert!(tr.every() > 1);
        assert_eq!(*steps.last().unwrap(), 40);
        assert!(steps.iter().all(|s| s % tr.every() == 0), "{steps:?}");
        assert!(steps.len() >= 5, "{steps:?}");
        tr.clear();
        assert_eq!((tr.every(), tr.bytes(), tr.is_quantised()), (1, 0, false));
        assert!(tr.snapshots().is_empty());
    }

    #[test]
    fn trajectory_rejects_zero_stride() {
        let e = err_text(Trajectory::new(0, 1), "stride 0");
        assert!(
            e.contains("trajectory stride must be at least 1 step"),
            "{e}"
        );
    }

    #[test]
    fn quantise_maps_display_range() {
        assert_eq!(
            SnapshotData::quantise(&[-2.0, -1.0, 0.0, 1.0, 3.0]),
            vec![0, 0, 128, 255, 255]
        );
        let eps = SnapshotData::F32(vec![-4.0, -3.0, 0.0, 1.5, 3.0]);
        assert_eq!(eps.to_u8(EPS_RANGE), vec![0, 0, 128, 191, 255]);
        let mut q = eps.clone();
        q.quantise_in_place(EPS_RANGE);
        assert_eq!(q.to_u8(EPS_RANGE), eps.to_u8(EPS_RANGE));
        assert_eq!(q.to_u8(1.0), SnapshotData::quantise(&q.to_f32()));
    }
}
