//! `shaders/elementwise.wgsl`: out = α·a + β·b + γ (residual adds, scaling, input centring).

use crate::error::Result;
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};

const AXPBY: KernelSpec = KernelSpec {
    name: "elementwise",
    source: include_str!("../../shaders/elementwise.wgsl"),
    entry: "axpby",
    bindings: &[
        Access::Uniform,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
    ],
    params: &Params::LAYOUT,
};

/// Invocations per workgroup of the shader's entry points (its `@workgroup_size`).
const WG: u32 = 256;

uniform_params! {
    struct Params {
        n: u32,
        alpha: f32,
        beta: f32,
        gamma: f32,
    }
}

/// out = alpha·a + beta·b + gamma; all three tensors have the same shape.
pub fn axpby(
    gpu: &Gpu,
    alpha: f32,
    a: &Tensor,
    beta: f32,
    b: &Tensor,
    gamma: f32,
    out: &Tensor,
) -> Result<Dispatch> {
    crate::ops::same_shape("axpby b", &a.shape, &b.shape)?;
    crate::ops::same_shape("axpby out", &a.shape, &out.shape)?;
    let n = crate::ops::to_u32("axpby", "elements", a.numel())?;
    let params = Params {
        n,
        alpha,
        beta,
        gamma,
    };
    Ok(gpu.dispatch(
        &AXPBY,
        &params,
        &[&a.buffer, &b.buffer, &out.buffer],
        grid(n.div_ceil(WG)),
    ))
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![kernel_check!(AXPBY).workgroup_size([WG])]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{assert_close, err_text, gpu, Rng};

    #[test]
    fn axpby_matches_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(1);
        for n in [1, 255, 257, 1000, 70_001] {
            let a = rng.normals(n, 1.0);
            let b = rng.normals(n, 1.0);
            let ta = Tensor::from_slice(gpu, &[n], &a, "a").unwrap();
            let tb = Tensor::from_slice(gpu, &[n], &b, "b").unwrap();
            let out = Tensor::zeros(gpu, &[n], "out").unwrap();
            let d = axpby(gpu, 0.5, &ta, -2.0, &tb, 0.25, &out).unwrap();
            pollster::block_on(gpu.run(&[d])).unwrap();
            let got = out.read_blocking(gpu).unwrap();
            let want = cpu::axpby(0.5, &a, -2.0, &b, 0.25);
            assert_close(&got, &want, 1e-6, 1e-6, "axpby");
        }
    }

    #[test]
    fn axpby_rejects_mismatched_shapes() {
        let gpu = gpu();
        let a = Tensor::zeros(gpu, &[4], "a").unwrap();
        let b = Tensor::zeros(gpu, &[5], "b").unwrap();
        let e = err_text(axpby(gpu, 1.0, &a, 1.0, &b, 0.0, &a), "b of 5 for a of 4");
        assert!(e.contains("shape mismatch for axpby b"), "{e}");
    }
}
