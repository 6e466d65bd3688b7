//! The trained unconditional MNIST model shipped in `assets/mnist/`, compiled into the
//! binary so `ddpm sample` works out of the box from any directory.

use ddpm::model::{UNetConfig, Weights};
use ddpm::schedule::SchedulerConfig;

/// Where the bundled files live in the repository (for messages).
pub const SOURCE: &str = "assets/mnist (bundled)";

const CONFIG: &str = include_str!("../../assets/mnist/config.json");
const WEIGHTS: &[u8] = include_bytes!("../../assets/mnist/diffusion_pytorch_model.safetensors");
const SCHEDULER: &str = include_str!("../../assets/mnist/scheduler_config.json");

/// The bundled model's config and weights.
pub fn model() -> anyhow::Result<(UNetConfig, Weights)> {
    Ok(Weights::load_bytes(CONFIG, WEIGHTS, SOURCE)?)
}

/// The bundled model's scheduler (linear β 1e-4 → 0.02, T = 1000, as it was trained).
pub fn scheduler() -> anyhow::Result<SchedulerConfig> {
    Ok(SchedulerConfig::from_json(SCHEDULER)?)
}
