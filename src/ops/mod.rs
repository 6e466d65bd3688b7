//! GPU ops: each module dispatches one WGSL kernel family from `shaders/` and is tested against
//! its reference in [`crate::cpu`] (same module name). An op takes its tensors (grouped as
//! `…Inputs` / `…Grads` structs where there are several) and an option type of
//! [`crate::options`] that its CPU reference takes too.

pub mod attention;
pub mod attention_backward;
pub mod concat;
pub mod concat_backward;
pub mod conv2d;
pub mod conv2d_backward;
pub(crate) mod conv2d_operands;
pub mod conv2d_tiled;
pub(crate) mod conv2d_winograd;
pub mod conv_pack;
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

use crate::error::{Error, Result};
use crate::gpu::Tensor;

/// Which gradients a backward op adds to instead of overwriting (the training graph's first
/// contribution to a gradient overwrites it, later ones add): `dx` for the input's gradient,
/// `params` for the parameters' (weight and bias, or γ and β). The default overwrites both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accumulate {
    pub dx: bool,
    pub params: bool,
}

/// A digest of the sources of every kernel that has variants (part of the key of the on-disk
/// cache of timed choices, so that a changed kernel is timed again).
pub fn kernel_sources_digest() -> u64 {
    crate::gpu::fnv1a(&format!("{}{}", conv2d::SOURCES, conv2d_backward::SOURCES))
}

/// Every kernel of every op, for the naga check of Rust against WGSL (`gpu::check`, which also
/// checks that no `const …: KernelSpec` and no shader entry point is missing here).
#[cfg(test)]
pub(crate) fn all_kernels() -> Vec<crate::gpu::KernelCheck> {
    [
        attention::kernels(),
        attention_backward::kernels(),
        concat::kernels(),
        concat_backward::kernels(),
        conv2d::kernels(),
        conv2d_backward::kernels(),
        conv2d_tiled::kernels(),
        conv2d_winograd::kernels(),
        conv_pack::kernels(),
        elementwise::kernels(),
        embedding::kernels(),
        grad_utils::kernels(),
        group_norm::kernels(),
        group_norm_backward::kernels(),
        linear::kernels(),
        linear_backward::kernels(),
        loss::kernels(),
        optim::kernels(),
        sampling::kernels(),
        timestep::kernels(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The names of every kernel variant of every op that has several (what `--kernels` and
/// `DDPM_KERNELS` may force), without duplicates.
pub fn variant_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = conv2d::ConvVariant::ALL.iter().map(|v| v.name()).collect();
    for v in conv2d_backward::DxVariant::ALL {
        if !names.contains(&v.name()) {
            names.push(v.name());
        }
    }
    names
}

/// `v` as the u32 a kernel's params take, or an error naming `op` and `what`.
pub(crate) fn to_u32(op: &str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::unsupported(op, format!("{what} = {v} exceeds u32")))
}

/// Errors, naming the pair, if an output (`outs`, written by `op`) shares its buffer with an
/// input or with another output: a dispatch must not bind an output also as another binding.
pub(crate) fn check_no_alias(
    op: &str,
    outs: &[(&str, &Tensor)],
    ins: &[(&str, &Tensor)],
) -> Result<()> {
    for (i, (name, out)) in outs.iter().enumerate() {
        for (other, t) in ins.iter().chain(&outs[i + 1..]) {
            if out.buffer == t.buffer {
                return Err(Error::Alias {
                    op: op.to_string(),
                    output: name.to_string(),
                    other: other.to_string(),
                });
            }
        }
    }
    Ok(())
}

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
