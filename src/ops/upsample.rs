//! `shaders/upsample.wgsl`: nearest-neighbour ×2 upsampling.

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};

const UPSAMPLE: KernelSpec = KernelSpec {
    name: "upsample",
    source: include_str!("../../shaders/upsample.wgsl"),
    entry: "upsample_nearest2x",
    bindings: &[Access::Uniform, Access::Read, Access::ReadWrite],
    params: &Params::LAYOUT,
};

/// Invocations per workgroup of the shader's entry points (its `@workgroup_size`).
const WG: u32 = 256;

uniform_params! {
    struct Params {
        numel: u32,
        w: u32,
        _pad: [u32; 2],
    }
}

/// out [N, C, 2H, 2W] = x [N, C, H, W] with every pixel repeated in a 2×2 block.
pub fn upsample_nearest2x(gpu: &Gpu, x: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let [n, c, h, w] = x.shape[..] else {
        return Err(Error::Invalid(format!(
            "upsample_nearest2x: x must be [N, C, H, W], got shape {:?}",
            x.shape
        )));
    };
    crate::ops::same_shape("upsample_nearest2x out", &[n, c, 2 * h, 2 * w], &out.shape)?;
    let numel = x.numel() as u32;
    let params = Params {
        numel,
        w: w as u32,
        _pad: [0; 2],
    };
    Ok(gpu.dispatch(
        &UPSAMPLE,
        &params,
        &[&x.buffer, &out.buffer],
        grid(numel.div_ceil(WG)),
    ))
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![kernel_check!(UPSAMPLE).workgroup_size([WG])]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{gpu, Rng};

    fn run(x: &[f32], shape: [usize; 4]) -> Vec<f32> {
        let gpu = gpu();
        let [n, c, h, w] = shape;
        let tx = Tensor::from_slice(gpu, &shape, x, "x").unwrap();
        let out = Tensor::zeros(gpu, &[n, c, 2 * h, 2 * w], "out").unwrap();
        let d = upsample_nearest2x(gpu, &tx, &out).unwrap();
        pollster::block_on(gpu.run(&[d])).unwrap();
        out.read_blocking(gpu).unwrap()
    }

    #[test]
    fn upsample_matches_cpu() {
        let mut rng = Rng::new(5);
        for shape in [
            [1, 1, 1, 1],
            [2, 3, 4, 4],
            [1, 5, 3, 7],
            [3, 2, 1, 9],
            [2, 16, 8, 8],
            [1, 7, 17, 13],
            [1, 64, 32, 32],
        ] {
            let [n, c, h, w] = shape;
            let x = rng.normals(n * c * h * w, 1.0);
            // A copy must be exact.
            assert_eq!(
                run(&x, shape),
                cpu::upsample::upsample_nearest2x(&x, n, c, h, w),
                "upsample {shape:?}"
            );
        }
    }

    #[test]
    fn upsample_hand_checked() {
        let got = run(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1, 1, 2, 3]);
        #[rustfmt::skip]
        let want = vec![
            1.0, 1.0, 2.0, 2.0, 3.0, 3.0,
            1.0, 1.0, 2.0, 2.0, 3.0, 3.0,
            4.0, 4.0, 5.0, 5.0, 6.0, 6.0,
            4.0, 4.0, 5.0, 5.0, 6.0, 6.0,
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn upsample_rejects_bad_shapes() {
        let gpu = gpu();
        let x = Tensor::zeros(gpu, &[1, 2, 3, 4], "x").unwrap();
        let bad = Tensor::zeros(gpu, &[1, 2, 6, 7], "bad").unwrap();
        assert!(upsample_nearest2x(gpu, &x, &bad).is_err());
        let x3 = Tensor::zeros(gpu, &[2, 3, 4], "x3").unwrap();
        let out3 = Tensor::zeros(gpu, &[2, 6, 8], "out3").unwrap();
        assert!(upsample_nearest2x(gpu, &x3, &out3).is_err());
    }
}
