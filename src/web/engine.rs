//! The engine as the page drives it: a loaded [`Model`] (validated files, config, scheduler) and,
//! on one GPU device, its [`Engine`]: the U-Net's weights and the [`Generator`] whose forward
//! pass and sampler are reused across Generates while the model, device, batch and sampler
//! settings stay the same (so repeated Generates do not grow memory).

use safetensors::SafeTensors;

use super::files::{mb, ModelFiles};
use crate::error::{Error, Result};
use crate::generation::Generator;
use crate::gpu::Gpu;
use crate::model::{gpu_weight_bytes, GpuWeights, UNet, UNetConfig, WeightBytes, Weights};
use crate::schedule::SchedulerConfig;

/// The page's line for the weights' GPU memory (what [`Engine`] uploads, [`GpuWeights::Auto`]),
/// e.g. `0.9 MB of weights (0.8 MB of them f16)` or `1.7 MB of f32 weights`.
fn gpu_weights_fact(b: &WeightBytes) -> String {
    if b.f16 == 0 {
        format!("{} of f32 weights", mb(b.total))
    } else {
        format!("{} of weights ({} of them f16)", mb(b.total), mb(b.f16))
    }
}

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
                    Error::format("JSON", "scheduler_config.json", "not UTF-8 text")
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
                    "{}; {:.2} GFLOP per image and step",
                    gpu_weights_fact(&gpu_weight_bytes(&config, &weights, GpuWeights::Auto)?),
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
        .map_err(|_| Error::format("JSON", "config.json", "not UTF-8 text"))?;
    Weights::load_bytes(
        config,
        &files.weights,
        "diffusion_pytorch_model.safetensors",
    )
}

/// A model on one GPU device: its weights uploaded, with the [`Generator`] that keeps the
/// current forward-pass plan and sampler.
pub struct Engine {
    /// The device generation it was built on (see `GPU_GENERATION` in the page).
    pub generation: u32,
    pub model_id: u64,
    pub generator: Generator,
}

impl Engine {
    /// Uploads `weights` of `model` to `gpu`.
    pub fn new(gpu: &Gpu, generation: u32, model: &Model, weights: &Weights) -> Result<Self> {
        Ok(Engine {
            generation,
            model_id: model.id,
            generator: Generator::new(UNet::new(gpu, model.config.clone(), weights)?),
        })
    }

    /// L_simple per timestep of the model (see [`crate::loss_curve`]); the sampling plan is
    /// dropped first so its memory is free for the curve's batches.
    pub async fn loss_curve(
        &mut self,
        gpu: &Gpu,
        alphas_cumprod: &[f32],
        setup: &crate::loss_curve::LossSetup<'_>,
    ) -> Result<crate::loss_curve::LossCurve> {
        self.generator.release();
        let unet = self.generator.unet();
        crate::loss_curve::loss_per_timestep(gpu, unet, alphas_cumprod, setup).await
    }
}
