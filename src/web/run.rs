//! What the page asks of a run (sampler settings) and what it keeps of one (frames for the slider).

use super::draw::quantize;

/// Which reverse process to run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerKind {
    /// Ancestral DDPM sampling over every training timestep.
    Ddpm,
    /// DDIM over `steps` evenly spaced timesteps; `eta` = 0 is deterministic.
    Ddim { steps: usize, eta: f32 },
}

/// The reverse-process variance σ_t² (DDPM sampling).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Variance {
    /// β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) (diffusers `fixed_small`).
    FixedSmall,
    /// β_t (diffusers `fixed_large`).
    FixedLarge,
}

/// Settings of one Generate.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Number of samples, 1..=64.
    pub n: usize,
    pub seed: u64,
    pub sampler: SamplerKind,
    pub variance: Variance,
}

impl RunConfig {
    /// e.g. `DDIM · 50 steps · η = 0 · σ² = β̃_t`.
    pub fn describe(&self) -> String {
        let var = match self.variance {
            Variance::FixedSmall => "σ² = β̃_t",
            Variance::FixedLarge => "σ² = β_t",
        };
        match self.sampler {
            SamplerKind::Ddpm => format!("DDPM · {var}"),
            SamplerKind::Ddim { steps, eta } => format!("DDIM · {steps} steps · η = {eta}"),
        }
    }
}

/// One step's view of the reverse process, `[N, C, H, W]` each.
pub struct Frame {
    /// Index of the frame in its run: 0 (x_T) … total steps (the final sample).
    pub step: usize,
    /// Timestep in the paper's notation: T (pure noise) … 1, and 0 for the final sample.
    pub t: usize,
    /// x_t, the model's input at this step (the final sample when t = 0).
    pub x: Vec<f32>,
    /// x̂_0 predicted from x_t (equal to x when t = 0).
    pub x0: Vec<f32>,
}

/// The frames kept for the timestep slider, quantized to a byte per value. Keeps every
/// `stride`-th frame (always the first and the final one) so that a run fits `budget` bytes.
pub struct Frames {
    pub shape: [usize; 4],
    stride: usize,
    ts: Vec<usize>,
    xs: Vec<u8>,
    x0s: Vec<u8>,
}

impl Frames {
    /// Room for a run of `total` frames of `shape` within `budget` bytes.
    pub fn new(shape: [usize; 4], total: usize, budget: usize) -> Self {
        let per_frame = 2 * shape.iter().product::<usize>();
        let stride = (total * per_frame).div_ceil(budget.max(1)).max(1);
        Frames {
            shape,
            stride,
            ts: Vec::new(),
            xs: Vec::new(),
            x0s: Vec::new(),
        }
    }

    /// Keeps `f` if it falls on the stride (or is the final frame, t = 0).
    pub fn push(&mut self, f: &Frame) {
        if f.step.is_multiple_of(self.stride) || f.t == 0 {
            self.ts.push(f.t);
            self.xs.extend(quantize(&f.x));
            self.x0s.extend(quantize(&f.x0));
        }
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Frames kept per frame seen (1 = every step).
    pub fn stride(&self) -> usize {
        self.stride
    }

    pub fn t(&self, i: usize) -> usize {
        self.ts[i]
    }

    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Quantized x_t of frame `i`.
    pub fn x(&self, i: usize) -> &[u8] {
        let n = self.numel();
        &self.xs[i * n..(i + 1) * n]
    }

    /// Quantized x̂_0 of frame `i`.
    pub fn x0(&self, i: usize) -> &[u8] {
        let n = self.numel();
        &self.x0s[i * n..(i + 1) * n]
    }
}
