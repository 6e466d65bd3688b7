//! ddpm: a DDPM U-Net (diffusers `UNet2DModel`) in hand-written WGSL compute shaders.
//!
//! Layout: [`gpu`] (device, kernels, tensors) → [`ops`] (one module per WGSL kernel family,
//! each beside its plain-Rust reference in [`cpu`]) → [`model`] (config, weights, U-Net).

pub mod cpu;
pub mod error;
pub mod gpu;
pub mod ops;
#[doc(hidden)]
pub mod testing;

pub use error::{Error, Result};
