//! The diffusers `UNet2DModel`: config, weights, and the U-Net itself (GPU and CPU reference).

pub mod config;
pub mod weights;


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
