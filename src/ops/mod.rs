//! GPU ops: each module dispatches one WGSL kernel family from `shaders/` and is tested against
//! its reference in [`crate::cpu`] (same module name).

pub mod attention;
pub mod attention_backward;
pub mod concat;
pub mod conv2d;
pub mod conv2d_backward;
pub mod conv_pack;
pub mod elementwise;
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

use crate::error::{Error, Result};

/// Errors unless `got == expected`.
pub(crate) fn same_shape(what: &str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::Shape {
            what: what.to_string(),
            expected: expected.to_vec(),
            got: got.to_vec(),
        })
    }
}
