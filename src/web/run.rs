//! What the page asks of a Generate (sampler settings) and what it keeps of one (the frames the
//! timestep slider shows).

use crate::model::UNetConfig;
use crate::sampler::{SamplerKind, SamplerOptions, Snapshot, SnapshotData, EPS_RANGE};
use crate::schedule::{SchedulerConfig, VarianceType};

/// Settings of one Generate, read from the page's controls.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Number of samples, 1..=64.
    pub n: usize,
    pub seed: u64,
    pub kind: SamplerKind,
    pub variance: VarianceType,
    /// Class-conditional models: the class of every image (`None`: one of each in turn).
    pub class: Option<usize>,
    /// Classifier-free guidance scale (1: plain conditional).
    pub guidance: f32,
    /// Denoise from this timestep (see [`SamplerOptions::start`]) instead of sampling from x_T.
    pub start: Option<usize>,
}

impl RunConfig {
    /// The sampler options for the batch starting at image `first_image` of this Generate under
    /// `scheduler` (clipping from the config). Noise is keyed by the image's index in the whole
    /// run, so the page and `ddpm sample` draw the same images for a seed, whatever the batching.
    pub fn options(&self, scheduler: &SchedulerConfig, first_image: usize) -> SamplerOptions {
        let mut o = SamplerOptions::new(scheduler, self.kind, self.seed);
        o.first_image = first_image as u64;
        o.variance = self.variance;
        o.start = self.start;
        o
    }

    /// `options` for `config`'s model: with guidance when it is class-conditional, has a null
    /// class and the scale is not 1.
    pub fn options_for(
        &self,
        config: &UNetConfig,
        scheduler: &SchedulerConfig,
        first_image: usize,
    ) -> SamplerOptions {
        let mut o = self.options(scheduler, first_image);
        if config.ddpm_null_class.is_some() && self.guidance != 1.0 {
            o.guidance = Some(self.guidance);
        }
        o
    }

    /// The class of each of images `first..first + count` (padding repeats the last image's),
    /// empty for an unconditional model.
    pub fn classes(&self, config: &UNetConfig, first: usize, count: usize) -> Vec<f32> {
        let classes = config.classes();
        if classes.is_empty() {
            return Vec::new();
        }
        (first..first + count)
            .map(|i| {
                let i = i.min(self.n.saturating_sub(1));
                self.class.unwrap_or(classes[i % classes.len()]) as f32
            })
            .collect()
    }

    /// The run compare mode puts beside this one (same seed, so the same x_T): `with` is
    /// `ddpm-small` | `ddpm-large` (σ² = β̃_t or β_t) | `ddim-0` | `ddim-1` (DDIM 50 steps, at
    /// most T, η = 0 or 1).
    pub fn compared(&self, with: &str, train_timesteps: usize) -> Option<RunConfig> {
        let ddim = |eta| SamplerKind::Ddim {
            steps: 50.min(train_timesteps.max(1)),
            eta,
        };
        let (kind, variance) = match with {
            "ddpm-small" => (SamplerKind::Ddpm, VarianceType::FixedSmall),
            "ddpm-large" => (SamplerKind::Ddpm, VarianceType::FixedLarge),
            "ddim-0" => (ddim(0.0), self.variance),
            "ddim-1" => (ddim(1.0), self.variance),
            _ => return None,
        };
        Some(RunConfig {
            kind,
            variance,
            ..self.clone()
        })
    }

    /// e.g. `DDIM · 50 steps · η = 0` or `DDPM · σ² = β̃_t`.
    pub fn describe(&self) -> String {
        match self.kind {
            SamplerKind::Ddpm => format!(
                "DDPM · σ² = {}",
                match self.variance {
                    VarianceType::FixedSmall => "β̃_t",
                    VarianceType::FixedLarge => "β_t",
                }
            ),
            SamplerKind::Ddim { steps, eta } => format!("DDIM · {steps} steps · η = {eta}"),
        }
    }
}

/// The frames kept for the slider, for all `n` images (filled batch by batch), quantized to a
/// byte per value.
///
/// Frame `j` (0 ≤ j < steps) pairs the input x_t of step j + 1 (x_T for j = 0) with the x̂0 and
/// ε̂ (bytes over ±[`EPS_RANGE`]) the model predicted from it; frame `steps` is the final sample
/// with the last step's x̂0 and ε̂. A snapshot after step s (see
/// [`Snapshot`]) completes frame s − 1 (its x̂0) and starts frame s (its x). To stay within the
/// byte budget only every `stride`-th frame is kept (always the last one).
#[derive(Clone)]
pub struct Frames {
    /// `[n, C, H, W]` of the whole grid.
    pub shape: [usize; 4],
    /// Images per batch (run).
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

    /// Starts batch `run` from its x_T (`[batch, C, H, W]`).
    pub fn begin_run(&mut self, run: usize, x_t: &[f32]) {
        self.run = run;
        self.complete = 0;
        self.write(0, Part::X, &SnapshotData::quantise(x_t));
    }

    /// Takes the snapshot after step `snap.step` of the current batch.
    pub fn push(&mut self, snap: &Snapshot) {
        let s = snap.step;
        if s == 0 || s > self.steps() {
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

    /// Slots that can be shown: all once a whole batch finished (after a Stop in a later batch,
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

    /// Quantized x_t of slot `i`, `[n, C, H, W]`.
    pub fn x(&self, i: usize) -> &[u8] {
        let n = self.shape.iter().product::<usize>();
        &self.xs[i * n..(i + 1) * n]
    }

    /// Quantized x̂0 of slot `i`.
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
}

/// The three stores of [`Frames`].
#[derive(Clone, Copy)]
enum Part {
    X,
    X0,
    Eps,
}
