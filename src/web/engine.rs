//! The engine as the page drives it: a loaded [`Model`] (validated files, config, scheduler) and,
//! on one GPU device, its [`Engine`]: the U-Net's weights, one recorded forward pass for the
//! batch size in use and one sampler, both reused across Generates while the model, device,
//! batch and sampler settings stay the same (so repeated Generates do not grow memory).

use safetensors::SafeTensors;

use super::files::{mb, ModelFiles};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{EpsModel, UNet, UNetConfig, UNetPlan, Weights};
use crate::sampler::{Sampler, SamplerOptions};
use crate::schedule::SchedulerConfig;

/// A model the page has loaded: validated files, ready to be put on a GPU.
pub struct Model {
    /// Distinguishes loads; an [`Engine`] belongs to one.
    pub id: u64,
    pub files: ModelFiles,
    pub config: UNetConfig,
    pub scheduler: SchedulerConfig,
    /// `[C, H, W]` of a sample.
    pub sample: [usize; 3],
    /// (label, value) rows describing the model.
    pub facts: Vec<(String, String)>,
}

impl Model {
    /// Parses and validates `files` (config, weights against it, scheduler); returns the model
    /// and its weights (to build the first [`Engine`] without parsing them again).
    pub fn load(id: u64, files: ModelFiles) -> Result<(Model, Weights)> {
        let (config, weights) = parse_weights(&files)?;
        let scheduler = match &files.scheduler {
            Some(bytes) => {
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    Error::Invalid("scheduler_config.json is not UTF-8 text".into())
                })?;
                SchedulerConfig::from_json(text)?
            }
            None => SchedulerConfig::default(),
        };
        let (h, w) = config.sample_hw().ok_or_else(|| Error::Config {
            key: "sample_size".into(),
            value: "null".into(),
            reason: "the page needs the sample size to generate".into(),
        })?;
        let sample = [config.in_channels, h, w];
        let mut dtypes: Vec<String> = Vec::new();
        if let Ok(st) = SafeTensors::deserialize(&files.weights) {
            for (_, view) in st.tensors() {
                let d = format!("{:?}", view.dtype());
                if !dtypes.contains(&d) {
                    dtypes.push(d);
                }
            }
        }
        let blocks: Vec<String> = config
            .block_out_channels
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let attn = if config.down_has_attention(i) {
                    "+attn"
                } else {
                    ""
                };
                format!("{c}{attn}")
            })
            .collect();
        if dtypes.is_empty() && files.weights.starts_with(b"PK") {
            dtypes.push("PyTorch .bin".into());
        }
        let facts = vec![
            ("source".into(), files.source.clone()),
            ("sample".into(), format!("{}×{h}×{w}", config.in_channels)),
            ("levels (channels)".into(), blocks.join(" · ")),
            (
                "parameters".into(),
                format!("{:.2} M", weights.num_params() as f64 / 1e6),
            ),
            (
                "weights".into(),
                format!("{} ({})", mb(files.weights.len() as u64), dtypes.join(", ")),
            ),
            (
                "on the GPU".into(),
                format!(
                    "{} of f32 weights; {:.2} GFLOP per image and step",
                    mb(weights.num_params() as u64 * 4),
                    config.forward_flops(1) as f64 / 1e9
                ),
            ),
            (
                "scheduler".into(),
                if files.scheduler.is_some() {
                    "scheduler_config.json".into()
                } else {
                    "none given: DDPM defaults".into()
                },
            ),
        ];
        let model = Model {
            id,
            files,
            config,
            scheduler,
            sample,
            facts,
        };
        Ok((model, weights))
    }

    /// The weights parsed again (to rebuild the U-Net on a new device).
    pub fn weights(&self) -> Result<Weights> {
        Ok(parse_weights(&self.files)?.1)
    }

    /// One line for the page, e.g. `1×16×16 · 0.27 M parameters`.
    pub fn summary(&self) -> String {
        let [c, h, w] = self.sample;
        let params = self
            .facts
            .iter()
            .find(|(k, _)| k == "parameters")
            .map_or(String::new(), |(_, v)| format!(" · {v} parameters"));
        format!("{c}×{h}×{w}{params}")
    }
}

fn parse_weights(files: &ModelFiles) -> Result<(UNetConfig, Weights)> {
    let config = std::str::from_utf8(&files.config)
        .map_err(|_| Error::Invalid("config.json is not UTF-8 text".into()))?;
    Weights::load_bytes(
        config,
        &files.weights,
        "diffusion_pytorch_model.safetensors",
    )
}

/// A model on one GPU device: weights uploaded, plus the current forward-pass plan and sampler.
pub struct Engine {
    /// The device generation it was built on (see `GPU_GENERATION` in the page).
    pub generation: u32,
    pub model_id: u64,
    unet: UNet,
    plan: Option<UNetPlan>,
    sampler: Option<Sampler>,
    /// The largest batch known to fit the device's limits (learned from failed plans).
    max_batch: usize,
    /// Forward passes recorded and samplers created so far (reuse shows as small counts).
    pub plans_recorded: usize,
    pub samplers_created: usize,
}

impl Engine {
    /// Uploads `weights` of `model` to `gpu`.
    pub fn new(gpu: &Gpu, generation: u32, model: &Model, weights: &Weights) -> Result<Self> {
        Ok(Engine {
            generation,
            model_id: model.id,
            unet: UNet::new(gpu, model.config.clone(), weights)?,
            plan: None,
            sampler: None,
            max_batch: usize::MAX,
            plans_recorded: 0,
            samplers_created: 0,
        })
    }

    /// Readies a sampler for `n` samples with `opts` and returns its batch size: the forward
    /// pass is recorded for min(n, `cap`, what fits), halving the batch while the device's
    /// limits refuse it ([`Error::Limit`]); the current plan and sampler are reused when they
    /// match.
    pub fn prepare(
        &mut self,
        gpu: &Gpu,
        scheduler: &SchedulerConfig,
        n: usize,
        cap: usize,
        opts: &SamplerOptions,
    ) -> Result<usize> {
        let copies = opts.copies_per_image();
        let want = copies * n.min(cap).clamp(1, self.max_batch);
        if self.plan_batch() != Some(want) {
            // Free the old plan (and the sampler over it) before recording a new one.
            self.sampler = None;
            self.plan = None;
            let plan = self
                .unet
                .plan_fitting(gpu, &self.unet.sample_shape(want)?)?;
            let batch = plan.x().shape[0];
            if batch < copies {
                return Err(Error::Invalid(
                    "the device cannot hold the two halves of a guided batch of one image".into(),
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
            (o.kind, o.variance, o.clip, o.guidance, o.start)
                == (
                    opts.kind,
                    opts.variance,
                    opts.clip,
                    opts.guidance,
                    opts.start,
                )
        });
        if reuse {
            let s = self.sampler.as_mut().expect("checked above");
            s.restart(gpu, opts.seed, opts.first_image)?;
        } else {
            self.sampler = None;
            let plan = self.plan.as_ref().expect("planned above");
            self.sampler = Some(Sampler::new(gpu, plan, scheduler, opts)?);
            self.samplers_created += 1;
        }
        Ok(self.plan_batch().expect("planned above") / copies)
    }

    /// The batch size of the recorded forward pass (twice the images when guided).
    fn plan_batch(&self) -> Option<usize> {
        self.plan.as_ref().map(|p| p.x().shape[0])
    }

    /// Writes the class labels of the recorded forward pass (see
    /// [`crate::sampler::batch_labels`]).
    pub fn set_labels(&self, gpu: &Gpu, labels: &[f32]) -> Result<()> {
        let plan = self
            .plan
            .as_ref()
            .ok_or_else(|| Error::Invalid("no forward pass is recorded".into()))?;
        plan.set_labels(gpu, Some(labels))
    }

    /// L_simple per timestep of the model (see [`crate::loss_curve`]); the sampling plan is
    /// dropped first so its memory is free for the curve's batches.
    pub async fn loss_curve(
        &mut self,
        gpu: &Gpu,
        alphas_cumprod: &[f32],
        setup: &crate::loss_curve::LossSetup<'_>,
    ) -> Result<crate::loss_curve::LossCurve> {
        self.sampler = None;
        self.plan = None;
        crate::loss_curve::loss_per_timestep(gpu, &self.unet, alphas_cumprod, setup).await
    }

    /// The sampler readied by [`Engine::prepare`].
    pub fn sampler(&mut self) -> Option<&mut Sampler> {
        self.sampler.as_mut()
    }
}
