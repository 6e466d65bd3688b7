//! What the page asks of a Generate: the sampler settings read from its controls (the frames it
//! keeps are [`crate::generation::Frames`]).

use crate::error::Result;
use crate::model::UNetConfig;
use crate::sampler::{SamplerKind, SamplerOptions, SamplerPlan};
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

    /// The checked plan of this Generate for `config`'s model ([`RunConfig::options_for`]).
    pub fn plan(&self, config: &UNetConfig, scheduler: &SchedulerConfig) -> Result<SamplerPlan> {
        SamplerPlan::new(scheduler, &self.options_for(config, scheduler, 0))
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
