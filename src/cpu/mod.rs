//! Plain-Rust f32 references of every kernel (`cpu::<op>` mirrors `shaders/<op>.wgsl`), used by
//! tests and by the CPU U-Net.

mod elementwise;

pub use elementwise::axpby;
