//! One generation path for `ddpm sample` and the page: `n` images in batches as large as the
//! device allows (noise keyed by seed and image index, so the batching never changes the
//! images), class labels per batch, x_T drawn on the GPU (or given), and one store of
//! trajectory frames over all the batches with one thinning policy and one quantiser.
//!
//! [`Generator`] keeps a U-Net's recorded forward pass and sampler and reuses them while the
//! batch and the sampler settings stay the same; a [`Generation`] runs one request over it, a
//! chunk of steps at a time, so a caller can draw, yield or stop between chunks.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{EpsModel, UNet, UNetPlan};
use crate::sampler::{
    batch_labels, Progress, Sampler, SamplerOptions, SamplerPlan, Snapshot, EPS_RANGE,
};

/// The most bytes of snapshots one chunk of a [`Generation`] reads back before they are folded
/// into its [`Frames`].
const CHUNK_SNAPSHOT_BUDGET: usize = 64 << 20;

/// A U-Net on one device with the forward pass and sampler of the batch in use.
pub struct Generator {
    unet: UNet,
    plan: Option<UNetPlan>,
    sampler: Option<Sampler>,
    /// The largest batch known to fit the device's limits (learned from refused plans).
    max_batch: usize,
    /// Forward passes recorded and samplers created so far (reuse keeps them small).
    pub plans_recorded: usize,
    pub samplers_created: usize,
}

impl Generator {
    pub fn new(unet: UNet) -> Self {
        Generator {
            unet,
            plan: None,
            sampler: None,
            max_batch: usize::MAX,
            plans_recorded: 0,
            samplers_created: 0,
        }
    }

    /// The U-Net (for other uses of its weights, e.g. the loss curve; see
    /// [`Generator::release`]).
    pub fn unet(&self) -> &UNet {
        &self.unet
    }

    /// Frees the recorded forward pass and sampler (their memory goes back to the device).
    pub fn release(&mut self) {
        self.sampler = None;
        self.plan = None;
    }

    /// Readies a sampler of `plan` for `n` images and returns its batch: the forward pass is
    /// recorded for min(n, `cap`, what fits), halving the batch while the device's limits
    /// refuse it ([`UNet::plan_fitting`]); the current plan and sampler are reused when they
    /// match.
    pub fn prepare(
        &mut self,
        gpu: &Gpu,
        n: usize,
        cap: usize,
        plan: &SamplerPlan,
    ) -> Result<usize> {
        let opts = plan.options();
        let copies = opts.copies_per_image();
        let want = copies * n.min(cap).clamp(1, self.max_batch);
        if self.plan_batch() != Some(want) {
            // Free the old plan (and the sampler over it) before recording a new one.
            self.release();
            let plan = self
                .unet
                .plan_fitting(gpu, &self.unet.sample_shape(want)?)?;
            let batch = plan.x().shape[0];
            if batch < copies {
                return Err(Error::setting(
                    "guidance",
                    "the device cannot hold the two halves of a guided batch of one image",
                ));
            }
            if batch < want {
                self.max_batch = batch / copies;
            }
            self.plan = Some(plan);
            self.plans_recorded += 1;
        }
        let reuse = self.sampler.as_ref().is_some_and(|s| {
            let o = s.options();
            let settings = |o: &SamplerOptions| {
                (
                    o.kind,
                    o.variance,
                    o.clip,
                    o.guidance,
                    o.clipped_model_output,
                    o.start,
                )
            };
            settings(o) == settings(opts)
        });
        if reuse {
            let s = self.sampler.as_mut().expect("checked above");
            s.restart(gpu, opts.seed, opts.first_image)?;
        } else {
            self.sampler = None;
            let unet_plan = self.plan.as_ref().expect("planned above");
            self.sampler = Some(Sampler::planned(gpu, unet_plan, plan.clone())?);
            self.samplers_created += 1;
        }
        Ok(self.plan_batch().expect("planned above") / copies)
    }

    /// GPU memory the prepared run holds in weights and forward-pass activations (after buffer
    /// reuse), for a memory estimate; `None` before [`Generator::prepare`].
    pub fn memory(&self) -> Option<GpuMemory> {
        self.plan.as_ref().map(|p| GpuMemory {
            weights: self.unet.weight_bytes().total,
            activations: p.activation_bytes,
        })
    }

    /// The batch of the recorded forward pass (twice the images when guided).
    fn plan_batch(&self) -> Option<usize> {
        self.plan.as_ref().map(|p| p.x().shape[0])
    }

    fn prepared(&mut self) -> Result<(&UNetPlan, &mut Sampler)> {
        match (&self.plan, &mut self.sampler) {
            (Some(p), Some(s)) => Ok((p, s)),
            _ => Err(Error::Invalid("no sampler was prepared".into())),
        }
    }
}

/// Bytes of GPU memory a prepared generation holds (see [`Generator::memory`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuMemory {
    pub weights: u64,
    pub activations: u64,
}

impl GpuMemory {
    /// E.g. `GPU memory ≈ 143.0 MB weights + 25.2 MB activations`.
    pub fn describe(&self) -> String {
        let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
        format!(
            "GPU memory ≈ {} weights + {} activations",
            mb(self.weights),
            mb(self.activations)
        )
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Request {
    /// Images.
    pub n: usize,
    /// The sampler settings, planned (`first_image` is set per batch).
    pub sampler: SamplerPlan,
    /// Class-conditional models: the class of every image (`n` of them).
    pub classes: Option<Vec<f32>>,
    /// The most images per batch (the device may allow fewer).
    pub batch_cap: usize,
    /// x_T of every image (`n · C · H · W` values) instead of drawn noise.
    pub initial: Option<Vec<f32>>,
    /// Keep the trajectory of all images within this many bytes ([`Frames`]).
    pub frames_budget: Option<usize>,
}

/// Where a [`Generation`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The batch being run (== `runs` when all are done).
    pub run: usize,
    pub runs: usize,
    /// The current batch's sampler progress (of the last batch when done).
    pub progress: Progress,
}

impl Status {
    /// Steps done over all batches.
    pub fn steps_done(&self) -> usize {
        self.run.min(self.runs) * self.progress.total
            + if self.done() { 0 } else { self.progress.step }
    }

    /// Steps of all batches.
    pub fn steps_total(&self) -> usize {
        self.runs * self.progress.total
    }

    pub fn done(&self) -> bool {
        self.run >= self.runs
    }
}

/// One request running over a [`Generator`].
pub struct Generation {
    request: Request,
    /// Null class of a guided conditional run.
    null_class: Option<usize>,
    batch: usize,
    runs: usize,
    run: usize,
    /// `[n, C, H, W]`.
    shape: [usize; 4],
    samples: Vec<f32>,
    frames: Option<Frames>,
    latest: Option<Latest>,
    progress: Progress,
}

/// The newest snapshot of a batch: `snapshot` holds `[batch, C, H, W]` values, of which the
/// first `count` are images `first..first + count` (the rest pad the last batch).
#[derive(Clone, Debug)]
pub struct Latest {
    pub first: usize,
    pub count: usize,
    pub snapshot: Snapshot,
}

impl Generation {
    /// Checks `request` against the model, readies `generator` and starts the first batch.
    pub fn new(generator: &mut Generator, gpu: &Gpu, request: Request) -> Result<Self> {
        let null_of_model = generator.unet.config.ddpm_null_class;
        let n = request.n;
        if n == 0 {
            return Err(Error::setting(
                "images",
                "a generation needs at least one image",
            ));
        }
        let [_, c, h, w] = generator.unet.sample_shape(1)?;
        let per_image = c * h * w;
        let null_class = match (request.sampler.options().guidance, &request.classes) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(Error::setting(
                    "guidance",
                    "guidance needs the class of every image (a class-conditional model)",
                ))
            }
            (Some(w), Some(_)) => Some(null_of_model.ok_or_else(|| {
                Error::setting(
                    "guidance",
                    format!(
                        "guidance {w}: the model has no unconditional class (config.json key \
                         ddpm_null_class), so only guidance 1 (plain conditional) is possible"
                    ),
                )
            })?),
        };
        if let Some(classes) = &request.classes {
            if classes.len() != n {
                return Err(Error::setting(
                    "class labels",
                    format!("{} class labels for {n} images", classes.len()),
                ));
            }
        }
        if let Some(x) = &request.initial {
            if x.len() != n * per_image {
                return Err(Error::setting(
                    "initial x",
                    format!(
                        "an initial x of {} values for {n} images of {c}×{h}×{w}",
                        x.len()
                    ),
                ));
            }
        }
        let batch = generator.prepare(gpu, n, request.batch_cap, &request.sampler)?;
        let progress = generator.prepared()?.1.progress();
        let timesteps: Vec<usize> = request.sampler.steps().iter().map(|p| p.t).collect();
        let shape = [n, c, h, w];
        let frames = request
            .frames_budget
            .map(|budget| Frames::new(shape, batch, timesteps, budget));
        let mut g = Generation {
            request,
            null_class,
            batch,
            runs: n.div_ceil(batch),
            run: 0,
            shape,
            samples: vec![0.0; n * per_image],
            frames,
            latest: None,
            progress,
        };
        g.start_batch(generator, gpu)?;
        Ok(g)
    }

    /// Images per batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// `[n, C, H, W]`.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// The first image of the current batch and how many of its images are real (the last
    /// batch is padded).
    pub fn batch_images(&self) -> (usize, usize) {
        let first = self.run.min(self.runs.saturating_sub(1)) * self.batch;
        (first, self.batch.min(self.request.n - first))
    }

    pub fn status(&self) -> Status {
        Status {
            run: self.run,
            runs: self.runs,
            progress: self.progress,
        }
    }

    /// The newest snapshot taken (when frames are kept).
    pub fn latest(&self) -> Option<&Latest> {
        self.latest.as_ref()
    }

    /// The trajectory frames, when asked for.
    pub fn frames(&self) -> Option<&Frames> {
        self.frames.as_ref()
    }

    /// The samples, `[n, C, H, W]` (the batches done so far; zeros after them).
    pub fn samples(&self) -> &[f32] {
        &self.samples
    }

    /// The samples and the frames.
    pub fn into_parts(self) -> (Vec<f32>, Option<Frames>) {
        (self.samples, self.frames)
    }

    /// Points the sampler at batch `self.run`: its noise (seed, first image), labels and x_T.
    fn start_batch(&mut self, generator: &mut Generator, gpu: &Gpu) -> Result<()> {
        let (first, _) = self.batch_images();
        let n = self.request.n;
        let per_image: usize = self.shape[1..].iter().product();
        let (plan, sampler) = generator.prepared()?;
        if let Some(all) = &self.request.classes {
            // The padding of the last batch repeats its last image's class.
            let classes: Vec<f32> = (first..first + self.batch)
                .map(|i| all[i.min(n - 1)])
                .collect();
            plan.set_labels(gpu, Some(&batch_labels(&classes, self.null_class)))?;
        }
        sampler.restart(gpu, self.request.sampler.options().seed, first as u64)?;
        if let Some(x) = &self.request.initial {
            let mut x_t = vec![0.0; self.batch * per_image];
            for (i, dst) in x_t.chunks_mut(per_image).enumerate() {
                let src = (first + i).min(n - 1) * per_image;
                dst.copy_from_slice(&x[src..src + per_image]);
            }
            sampler.set_initial(gpu, &x_t)?;
        }
        if let Some(f) = &mut self.frames {
            f.begin_run(self.run);
        }
        self.progress = sampler.progress();
        Ok(())
    }

    /// Runs up to `k` more steps of the current batch; a batch that finishes has its samples
    /// read back and the next one started.
    pub async fn advance(
        &mut self,
        generator: &mut Generator,
        gpu: &Gpu,
        k: usize,
    ) -> Result<Status> {
        if self.run >= self.runs {
            return Ok(self.status());
        }
        let (_, sampler) = generator.prepared()?;
        if self.frames.is_some() {
            sampler.capture(1, CHUNK_SNAPSHOT_BUDGET)?;
        }
        let p = sampler.run_steps(gpu, k).await?;
        self.progress = p;
        if let (Some(frames), Some(tr)) = (&mut self.frames, sampler.trajectory()) {
            for s in tr.snapshots() {
                frames.push(s);
            }
            if let Some(snapshot) = tr.snapshots().last() {
                let (first, count) = self.batch_images();
                self.latest = Some(Latest {
                    first,
                    count,
                    snapshot: snapshot.clone(),
                });
            }
        }
        if p.done() {
            let x = sampler.read_sample(gpu).await?;
            let (first, count) = self.batch_images();
            let per_image: usize = self.shape[1..].iter().product();
            self.samples[first * per_image..(first + count) * per_image]
                .copy_from_slice(&x[..count * per_image]);
            self.run += 1;
            if self.run < self.runs {
                self.start_batch(generator, gpu)?;
            }
        }
        Ok(self.status())
    }

    /// Runs every remaining step in chunks of `chunk` (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_blocking(
        &mut self,
        generator: &mut Generator,
        gpu: &Gpu,
        chunk: usize,
        mut on_chunk: impl FnMut(Status),
    ) -> Result<()> {
        while !self.status().done() {
            let s = pollster::block_on(self.advance(generator, gpu, chunk.max(1)))?;
            on_chunk(s);
        }
        Ok(())
    }
}

/// The frames of a generation for all `n` images (filled batch by batch), quantised to a byte
/// per value (images over ±1, ε̂ over ±[`EPS_RANGE`]).
///
/// Frame `j` (0 ≤ j < steps) pairs the input x_t of step j + 1 (x_T for j = 0) with the x̂0 and
/// ε̂ the model predicted from it; frame `steps` is the final sample with the last step's x̂0
/// and ε̂. The snapshot after step s ([`Snapshot`]; s = 0: x_T) completes frame s − 1 (its x̂0)
/// and starts frame s (its x). To stay within the byte budget only every `stride`-th frame is
/// kept (always the last one).
#[derive(Clone, Debug)]
pub struct Frames {
    /// `[n, C, H, W]` of the whole grid.
    pub shape: [usize; 4],
    /// Images per batch.
    batch: usize,
    /// Timestep of each step, in order.
    timesteps: Vec<usize>,
    stride: usize,
    /// The frame index j held in each slot.
    slots: Vec<usize>,
    xs: Vec<u8>,
    x0s: Vec<u8>,
    epss: Vec<u8>,
    /// Batch being filled.
    run: usize,
    /// Frames 0..complete of the current batch are filled (x and x̂0).
    complete: usize,
    /// Whether a batch has completed all its frames.
    any_full: bool,
}

/// The three stores of [`Frames`].
#[derive(Clone, Copy)]
enum Part {
    X,
    X0,
    Eps,
}

impl Frames {
    /// Room for the frames of `shape` = `[n, C, H, W]` sampled in batches of `batch` over
    /// `timesteps` within `budget` bytes.
    pub fn new(shape: [usize; 4], batch: usize, timesteps: Vec<usize>, budget: usize) -> Self {
        let steps = timesteps.len();
        let per_frame = 3 * shape.iter().product::<usize>();
        let stride = ((steps + 1) * per_frame).div_ceil(budget.max(1)).max(1);
        let mut slots: Vec<usize> = (0..steps).step_by(stride).collect();
        slots.push(steps);
        let bytes = slots.len() * per_frame / 3;
        Frames {
            shape,
            batch: batch.max(1),
            timesteps,
            stride,
            slots,
            xs: vec![0; bytes],
            x0s: vec![0; bytes],
            epss: vec![0; bytes],
            run: 0,
            complete: 0,
            any_full: false,
        }
    }

    /// Steps per batch.
    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// Frames kept per frame (1 = every step).
    pub fn stride(&self) -> usize {
        self.stride
    }

    fn slot(&self, j: usize) -> Option<usize> {
        if j == self.steps() {
            Some(self.slots.len() - 1)
        } else {
            j.is_multiple_of(self.stride).then(|| j / self.stride)
        }
    }

    fn image_len(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// Copies the images of the current batch (`[batch, C, H, W]` bytes) into slot `slot` of
    /// the store of `part`.
    fn write(&mut self, slot: usize, part: Part, batch_bytes: &[u8]) {
        let per = self.image_len();
        let frame = self.shape[0] * per;
        let first = self.run * self.batch;
        let count = self.batch.min(self.shape[0].saturating_sub(first));
        let src = &batch_bytes[..(count * per).min(batch_bytes.len())];
        let at = slot * frame + first * per;
        let dst = match part {
            Part::X => &mut self.xs,
            Part::X0 => &mut self.x0s,
            Part::Eps => &mut self.epss,
        };
        dst[at..at + src.len()].copy_from_slice(src);
    }

    /// Starts filling batch `run` (its snapshot of step 0, x_T, comes first).
    pub fn begin_run(&mut self, run: usize) {
        self.run = run;
        self.complete = 0;
    }

    /// Takes the snapshot after step `snap.step` of the current batch.
    pub fn push(&mut self, snap: &Snapshot) {
        let s = snap.step;
        if s > self.steps() {
            return;
        }
        if s == 0 {
            self.write(0, Part::X, &snap.x.to_u8(1.0));
            return;
        }
        let (x, x0, eps) = (
            snap.x.to_u8(1.0),
            snap.x0.to_u8(1.0),
            snap.eps.to_u8(EPS_RANGE),
        );
        let predictions = |frames: &mut Self, slot| {
            frames.write(slot, Part::X0, &x0);
            frames.write(slot, Part::Eps, &eps);
        };
        if let Some(slot) = self.slot(s - 1) {
            predictions(self, slot);
        }
        if let Some(slot) = self.slot(s) {
            self.write(slot, Part::X, &x);
            if s == self.steps() {
                predictions(self, slot);
            }
        }
        self.complete = s;
        if s == self.steps() {
            self.complete = s + 1;
            self.any_full = true;
        }
    }

    /// Slots that can be shown: all once a whole batch finished (after a stop in a later batch,
    /// its images stay dark in the frames it did not reach), else those the batch completed.
    pub fn len(&self) -> usize {
        if self.any_full {
            return self.slots.len();
        }
        self.slots.iter().filter(|&&j| j < self.complete).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label of slot `i`: `t = 999`, or `x₀ (sample)` for the final frame.
    pub fn label(&self, i: usize) -> String {
        match self.timestep(i) {
            Some(t) => format!("t = {t}"),
            None => "x₀ (sample)".into(),
        }
    }

    /// Quantised x_t of slot `i`, `[n, C, H, W]`.
    pub fn x(&self, i: usize) -> &[u8] {
        let n = self.shape.iter().product::<usize>();
        &self.xs[i * n..(i + 1) * n]
    }

    /// Quantised x̂0 of slot `i`.
    pub fn x0(&self, i: usize) -> &[u8] {
        let n = self.shape.iter().product::<usize>();
        &self.x0s[i * n..(i + 1) * n]
    }

    /// ε̂ of slot `i`, bytes over ±[`EPS_RANGE`].
    pub fn eps(&self, i: usize) -> &[u8] {
        let n = self.shape.iter().product::<usize>();
        &self.epss[i * n..(i + 1) * n]
    }

    /// The timestep of slot `i` (`None` for the final sample).
    pub fn timestep(&self, i: usize) -> Option<usize> {
        self.timesteps.get(self.slots[i]).copied()
    }

    /// The shown slot whose timestep is nearest to `t` (`None`, the final sample: the last slot),
    /// to line up two runs with different steps.
    pub fn nearest(&self, t: Option<usize>) -> Option<usize> {
        let last = self.len().checked_sub(1)?;
        let Some(t) = t else {
            return Some(last);
        };
        (0..=last)
            .filter_map(|i| self.timestep(i).map(|ti| (ti.abs_diff(t), i)))
            .min()
            .map(|(_, i)| i)
    }

    /// Every kept x_t frame as an animated GIF of all images on one grid
    /// ([`crate::image::trajectory_gif`]).
    pub fn gif(&self) -> Result<Vec<u8>> {
        let views: Vec<&[u8]> = (0..self.len()).map(|i| self.x(i)).collect();
        let cols = crate::image::grid_columns(self.shape[0]);
        crate::image::trajectory_gif(&views, self.shape, cols)
    }
}
