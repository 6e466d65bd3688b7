//! `shaders/concat.wgsl`: concatenation along channels (diffusers up blocks'
//! `torch.cat([h, skip], dim=1)`).

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};

const CONCAT: KernelSpec = KernelSpec {
    name: "concat",
    source: include_str!("../../shaders/concat.wgsl"),
    entry: "concat_channels",
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
/// Consecutive output elements per invocation (`PER` in the shader).
const PER: u32 = 4;

uniform_params! {
    struct Params {
        numel: u32,
        a_len: u32,
        b_len: u32,
        _pad: u32,
    }
}

/// out [N, Ca + Cb, ...] = a [N, Ca, ...] ‖ b [N, Cb, ...] along dim 1 (e.g. [N, C, H, W]);
/// a and b must agree on N and the trailing dims.
pub fn concat_channels(gpu: &Gpu, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Dispatch> {
    if a.shape.len() < 2 {
        return Err(Error::operand(
            "concat_channels",
            "a",
            format!("must be [N, C, ...], got shape {:?}", a.shape),
        ));
    }
    let ca = a.shape[1];
    let cb = b.shape.get(1).copied().unwrap_or(0);
    let mut b_want = a.shape.clone();
    b_want[1] = cb;
    crate::ops::same_shape(
        "concat_channels b (N and trailing dims of a)",
        &b_want,
        &b.shape,
    )?;
    let mut out_want = a.shape.clone();
    out_want[1] = ca + cb;
    crate::ops::same_shape("concat_channels out", &out_want, &out.shape)?;
    let spatial: usize = a.shape[2..].iter().product();
    let numel = to_u32("elements", out.numel())?;
    let params = Params {
        numel,
        a_len: to_u32("Ca·spatial", ca * spatial)?,
        b_len: to_u32("Cb·spatial", cb * spatial)?,
        _pad: 0,
    };
    Ok(gpu.dispatch(
        &CONCAT,
        &params,
        &[&a.buffer, &b.buffer, &out.buffer],
        grid(numel.div_ceil(PER * WG)),
    ))
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("concat_channels", what, v)
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![kernel_check!(CONCAT)
        .workgroup_size([WG])
        .shader_const("PER", PER)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{err_text, gpu, operand_err_text, Rng};

    fn run(a: &[f32], b: &[f32], n: usize, ca: usize, cb: usize, hw: [usize; 2]) -> Vec<f32> {
        let gpu = gpu();
        let [h, w] = hw;
        let ta = Tensor::from_slice(gpu, &[n, ca, h, w], a, "a").unwrap();
        let tb = Tensor::from_slice(gpu, &[n, cb, h, w], b, "b").unwrap();
        let out = Tensor::zeros(gpu, &[n, ca + cb, h, w], "out").unwrap();
        let d = concat_channels(gpu, &ta, &tb, &out).unwrap();
        pollster::block_on(gpu.run(&[d])).unwrap();
        out.read_blocking(gpu).unwrap()
    }

    #[test]
    fn concat_matches_cpu() {
        let mut rng = Rng::new(9);
        for (n, ca, cb, hw) in [
            (1, 1, 1, [1, 1]),
            (2, 3, 5, [4, 4]),
            (3, 1, 7, [5, 3]),
            (1, 64, 32, [16, 16]),
            (2, 13, 11, [9, 17]),
            (4, 128, 128, [8, 8]),
        ] {
            let s = hw[0] * hw[1];
            let a = rng.normals(n * ca * s, 1.0);
            let b = rng.normals(n * cb * s, 1.0);
            assert_eq!(
                run(&a, &b, n, ca, cb, hw),
                cpu::concat::concat_channels(&a, &b, n, ca, cb, s),
                "concat n {n} ca {ca} cb {cb} hw {hw:?}"
            );
        }
    }

    #[test]
    fn concat_hand_checked() {
        let a = [1.0, 2.0, 10.0, 20.0];
        let b = [3.0, 4.0, 5.0, 6.0, 30.0, 40.0, 50.0, 60.0];
        let want = [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0,
        ];
        assert_eq!(run(&a, &b, 2, 1, 2, [1, 2]), want);
    }

    #[test]
    fn concat_rejects_bad_shapes() {
        let gpu = gpu();
        let a = Tensor::zeros(gpu, &[2, 3, 4, 4], "a").unwrap();
        let b = Tensor::zeros(gpu, &[2, 5, 4, 4], "b").unwrap();
        let out = Tensor::zeros(gpu, &[2, 8, 4, 4], "out").unwrap();
        assert!(concat_channels(gpu, &a, &b, &out).is_ok());
        let b_hw = Tensor::zeros(gpu, &[2, 5, 4, 3], "b").unwrap();
        let e = err_text(concat_channels(gpu, &a, &b_hw, &out), "b of another W");
        assert!(
            e.contains("shape mismatch for concat_channels b (N and trailing dims of a)"),
            "{e}"
        );
        let b_n = Tensor::zeros(gpu, &[1, 5, 4, 4], "b").unwrap();
        let e = err_text(concat_channels(gpu, &a, &b_n, &out), "b of another N");
        assert!(
            e.contains("shape mismatch for concat_channels b (N and trailing dims of a)"),
            "{e}"
        );
        let out_bad = Tensor::zeros(gpu, &[2, 7, 4, 4], "o").unwrap();
        let e = err_text(concat_channels(gpu, &a, &b, &out_bad), "out of 7 channels");
        assert!(e.contains("shape mismatch for concat_channels out"), "{e}");
        let flat = Tensor::zeros(gpu, &[4], "flat").unwrap();
        let e = operand_err_text(concat_channels(gpu, &flat, &b, &out), "a of rank 1", "a");
        assert!(e.contains("concat_channels: a: must be [N, C, ...]"), "{e}");
    }
}
