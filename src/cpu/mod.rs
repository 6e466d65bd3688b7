//! Plain-Rust f32 references of every kernel (`cpu::<op>` mirrors `shaders/<op>.wgsl` and
//! `ops::<op>`), used by tests and by the CPU U-Net.

pub mod attention;
pub mod attention_backward;
pub mod concat;
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
pub mod upsample;

pub use elementwise::axpby;
