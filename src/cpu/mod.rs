//! Plain-Rust f32 references of every kernel (`cpu::<op>` mirrors `shaders/<op>.wgsl` and
//! `ops::<op>`), used by tests and by the CPU U-Net. A reference takes slices with their shapes
//! (grouped as `…Inputs` / `…Args` structs where there are several) and the same option type
//! of [`crate::options`] as its GPU op; it depends on nothing of [`crate::ops`].

pub mod attention;
pub mod attention_backward;
pub mod concat;
pub mod concat_backward;
pub mod conv2d;
pub mod conv2d_backward;
pub mod elementwise;
pub mod embedding;
pub mod grad_utils;
pub mod group_norm;
pub mod group_norm_backward;
pub mod linear;
pub mod linear_backward;
pub mod loss;
pub mod optim;
pub mod sampling;
pub mod timestep;

pub use elementwise::axpby;
