//! The GPU layer: device setup, kernels (WGSL pipelines), tensors and recorded dispatches.
//!
//! Works identically natively (Vulkan/Metal/DX12) and in the browser (WebGPU); only the
//! waiting for a buffer map differs (native polls the device, the browser drives it).

#[cfg(test)]
mod check;
mod context;
mod kernel;
mod params;
mod tensor;
mod tuning;

#[cfg(test)]
pub(crate) use check::{kernel_check, KernelCheck};
pub use context::Gpu;
pub use kernel::{grid, Access, Dispatch, KernelSpec, MAX_WORKGROUPS_PER_DIM};
pub(crate) use params::uniform_params;
pub use params::{ParamsField, ParamsLayout, UniformParams};
pub use tensor::{DType, Tensor};
pub use tuning::{default_kernel_cache_dir, KernelPolicy, KERNELS_ENV, KERNEL_CACHE_ENV};
pub(crate) use tuning::{fnv1a, Candidate};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use tuning::{time_dispatches, tuning_data};
