//! The diffusers `UNet2DModel`: config, weights, and the U-Net itself — its graph written once
//! ([`unet`]) and run on the GPU ([`gpu_unet`]) or the CPU reference ([`cpu_unet`]).

pub mod config;
pub mod cpu_unet;
pub mod gpu_unet;
pub mod presets;
pub mod record;
pub mod shapes;
pub mod torch_bin;
pub mod unconditional;
pub mod unet;
mod validate;
pub mod weights;

pub use config::{BlockType, UNetConfig};
pub use gpu_unet::{gpu_weight_bytes, GpuWeights, UNet, UNetPlan, WeightBytes};
pub use weights::Weights;

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Tensor};

/// A noise predictor with its forward pass recorded once for a fixed batch: the sampler writes
/// `x` and `t`, records [`EpsModel::dispatches`], and reads ε̂ from `eps`.
pub trait EpsModel {
    /// Input x_t, `[N, C, H, W]`.
    fn x(&self) -> &Tensor;
    /// Timesteps as f32, `[N]`.
    fn t(&self) -> &Tensor;
    /// Output ε̂, `[N, C, H, W]`.
    fn eps(&self) -> &Tensor;
    /// The recorded forward pass (reads `x`, `t`; writes `eps`).
    fn dispatches(&self) -> &[Dispatch];
}

/// Checks that `x_shape` is `[N, in_channels, H, W]` with H, W divisible by the total
/// downsampling factor, and that there is one timestep per sample.
/// Checks that a weight tensor has the size the graph ([`unet::forward`]) declares for its
/// layer: a model whose tensors disagree with its config is an error naming the layer, never a
/// silently different network.
pub(crate) fn check_declared(layer: &str, what: &str, declared: usize, found: usize) -> Result<()> {
    if declared == found {
        Ok(())
    } else {
        Err(Error::Weights(format!(
            "`{layer}`: the config gives it {declared} {what}, its weights have {found}"
        )))
    }
}

/// Checks that class labels are given exactly when the model is class-conditional.
pub fn check_conditioning(cfg: &UNetConfig, labels_given: bool) -> Result<()> {
    match (cfg.num_class_embeds, labels_given) {
        (Some(n), false) => Err(Error::setting(
            "class labels",
            format!("the model is class-conditional ({n} class embeddings): give class labels"),
        )),
        (None, true) => Err(Error::setting(
            "class labels",
            "class labels given, but the model has no class embedding (num_class_embeds is null)",
        )),
        _ => Ok(()),
    }
}

/// Checks class `labels` for `n` samples: one per sample, each an integer class of the model
/// (`0..num_class_embeds`), and only for a class-conditional model.
pub fn check_labels(cfg: &UNetConfig, labels: &[f32], n: usize) -> Result<()> {
    check_conditioning(cfg, true)?;
    let classes = cfg.num_class_embeds.unwrap_or(0);
    if labels.len() != n {
        return Err(Error::setting(
            "class labels",
            format!(
                "need one class label per sample: {n} samples, {} labels",
                labels.len()
            ),
        ));
    }
    if let Some(bad) = labels
        .iter()
        .find(|&&l| !(l >= 0.0 && l.fract() == 0.0 && (l as usize) < classes))
    {
        return Err(Error::setting(
            "class labels",
            format!(
                "class label {bad} is not one of the model's classes 0..={}",
                classes - 1
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_input(cfg: &UNetConfig, x_shape: &[usize], timesteps: usize) -> Result<()> {
    let shift = cfg.block_out_channels.len().saturating_sub(1);
    let factor = u32::try_from(shift)
        .ok()
        .and_then(|s| 1usize.checked_shl(s))
        .filter(|&f| f != 0)
        .ok_or_else(|| {
            Error::unsupported("U-Net", format!("the model has too many levels ({shift})"))
        })?;
    let ok = x_shape.len() == 4
        && x_shape[0] > 0
        && x_shape[1] == cfg.in_channels
        && x_shape[2] > 0
        && x_shape[3] > 0
        && x_shape[2].is_multiple_of(factor)
        && x_shape[3].is_multiple_of(factor);
    if !ok {
        return Err(Error::operand(
            "U-Net",
            "x",
            format!(
                "must be [N, {}, H, W] with N ≥ 1 and H, W positive multiples of {factor} \
                 (the model downsamples {} times); got {x_shape:?}",
                cfg.in_channels,
                cfg.block_out_channels.len().saturating_sub(1)
            ),
        ));
    }
    if timesteps != x_shape[0] {
        return Err(Error::operand(
            "U-Net",
            "timesteps",
            format!(
                "need one timestep per sample: {} samples, {timesteps} timesteps",
                x_shape[0]
            ),
        ));
    }
    Ok(())
}

/// Loads a diffusers model directory (`config.json` + safetensors or PyTorch `.bin` weights; see
/// [`Weights::load_dir`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(dir: impl AsRef<std::path::Path>) -> Result<(UNetConfig, Weights)> {
    Weights::load_dir(dir)
}
