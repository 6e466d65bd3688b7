//! ddpm: a DDPM U-Net (diffusers `UNet2DModel`) in hand-written WGSL compute shaders.
//!
//! Layout: [`gpu`] (device, kernels, tensors) → [`ops`] (one module per WGSL kernel family,
//! each beside its plain-Rust reference in [`cpu`]; the option types both take are in
//! [`options`]) → [`model`] (config, weights, U-Net) → [`schedule`] + [`sampler`] (the reverse
//! process).

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod cpu;
pub mod data;
pub mod error;
pub mod generation;
pub mod gpu;
pub mod hub;
pub mod image;
pub mod loss_curve;
pub mod model;
pub mod npy;
pub mod ops;
pub mod options;
pub mod sampler;
pub mod schedule;
#[doc(hidden)]
pub mod testing;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
