//! `shaders/grad_utils.wgsl`: small gradient kernels for the training tape (scaled residual
//! gradients, per-(n, c) broadcast), reference [`crate::cpu::grad_utils`].
//! Every output is overwritten, or added to when its `accumulate` flag is set.

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};
use crate::ops::{check_no_alias, same_shape, to_u32};

const SOURCE: &str = include_str!("../../shaders/grad_utils.wgsl");

const SCALE_INTO: KernelSpec = KernelSpec {
    name: "grad_utils",
    source: SOURCE,
    entry: "scale_into",
    bindings: &[Access::Uniform, Access::Read, Access::ReadWrite],
    params: &Params::LAYOUT,
};

const REDUCE_SPATIAL: KernelSpec = KernelSpec {
    name: "grad_utils",
    source: SOURCE,
    entry: "reduce_spatial",
    bindings: &[Access::Uniform, Access::Read, Access::ReadWrite],
    params: &Params::LAYOUT,
};

/// Invocations per workgroup of `scale_into` (its `@workgroup_size`).
const WG: u32 = 256;
/// Invocations per workgroup of `reduce_spatial` (its `@workgroup_size`).
const REDUCE_WG: u32 = 64;

uniform_params! {
    struct Params {
        numel: u32,
        len_a: u32,
        len_b: u32,
        flags: u32,
        scale: f32,
        _pad: [u32; 3],
    }
}

/// dst (+)= scale·src (same shapes; overwrite unless `accumulate`).
pub fn scale_into(
    gpu: &Gpu,
    src: &Tensor,
    scale: f32,
    accumulate: bool,
    dst: &Tensor,
) -> Result<Dispatch> {
    same_shape("scale_into dst", &src.shape, &dst.shape)?;
    check_no_alias("scale_into", &[("dst", dst)], &[("src", src)])?;
    let numel = to_u32("scale_into", "elements", src.numel())?;
    let params = Params {
        numel,
        len_a: 0,
        len_b: 0,
        flags: accumulate as u32,
        scale,
        _pad: [0; 3],
    };
    Ok(gpu.dispatch(
        &SCALE_INTO,
        &params,
        &[&src.buffer, &dst.buffer],
        grid(numel.div_ceil(WG)),
    ))
}

/// out [N, C] (+)= scale·Σ_spatial dy [N, C, ...]: the gradient of a [N, C] term broadcast over
/// the spatial positions (e.g. the conv epilogue's temb[n, c]).
pub fn reduce_spatial(
    gpu: &Gpu,
    dy: &Tensor,
    scale: f32,
    accumulate: bool,
    out: &Tensor,
) -> Result<Dispatch> {
    if dy.shape.len() < 2 {
        return Err(Error::operand(
            "reduce_spatial",
            "dy",
            format!("must be [N, C, ...], got shape {:?}", dy.shape),
        ));
    }
    same_shape("reduce_spatial out", &dy.shape[..2], &out.shape)?;
    check_no_alias("reduce_spatial", &[("out", out)], &[("dy", dy)])?;
    let nc = to_u32("reduce_spatial", "N·C", dy.shape[0] * dy.shape[1])?;
    let spatial = dy.shape[2..].iter().product::<usize>();
    let params = Params {
        numel: nc,
        len_a: to_u32("reduce_spatial", "spatial size", spatial)?,
        len_b: 0,
        flags: accumulate as u32,
        scale,
        _pad: [0; 3],
    };
    Ok(gpu.dispatch(
        &REDUCE_SPATIAL,
        &params,
        &[&dy.buffer, &out.buffer],
        grid(nc.div_ceil(REDUCE_WG)),
    ))
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![
        kernel_check!(SCALE_INTO).workgroup_size([WG]),
        kernel_check!(REDUCE_SPATIAL).workgroup_size([REDUCE_WG]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{
        accumulated as plus, assert_close, err_text, gpu, initial_output as init, operand_err_text,
        Rng,
    };

    #[test]
    fn scale_into_matches_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(52);
        for (i, n) in [1, 255, 257, 70_001].into_iter().enumerate() {
            let acc = i % 2 == 1;
            let src = rng.normals(n, 1.0);
            let d0 = init(&mut rng, n, acc);
            let ts = Tensor::from_slice(gpu, &[n], &src, "src").unwrap();
            let td = Tensor::from_slice(gpu, &[n], &d0, "dst").unwrap();
            let d = scale_into(gpu, &ts, -0.7, acc, &td).unwrap();
            pollster::block_on(gpu.run(&[d])).unwrap();
            let want = plus(&d0, &cpu::grad_utils::scale(&src, -0.7), acc);
            assert_close(
                &td.read_blocking(gpu).unwrap(),
                &want,
                1e-6,
                1e-6,
                "scale_into",
            );
        }
    }

    #[test]
    fn reduce_spatial_matches_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(53);
        for (i, shape) in [
            vec![1, 1, 1, 1],
            vec![2, 3, 5, 7],
            vec![3, 65, 4, 4],
            vec![1, 8, 33, 31],
            vec![2, 5],
        ]
        .into_iter()
        .enumerate()
        {
            let acc = i % 2 == 0;
            let nc = shape[0] * shape[1];
            let s: usize = shape[2..].iter().product();
            let dy = rng.normals(nc * s, 1.0);
            let o0 = init(&mut rng, nc, acc);
            let tdy = Tensor::from_slice(gpu, &shape, &dy, "dy").unwrap();
            let to = Tensor::from_slice(gpu, &shape[..2], &o0, "out").unwrap();
            let d = reduce_spatial(gpu, &tdy, 0.5, acc, &to).unwrap();
            pollster::block_on(gpu.run(&[d])).unwrap();
            let want = plus(&o0, &cpu::grad_utils::reduce_spatial(&dy, nc, s, 0.5), acc);
            let what = format!("reduce_spatial {shape:?}");
            assert_close(&to.read_blocking(gpu).unwrap(), &want, 1e-5, 1e-5, &what);
        }
    }

    #[test]
    fn grad_utils_reject_bad_args() {
        let gpu = gpu();
        let dy = Tensor::zeros(gpu, &[2, 5, 3, 3], "dy").unwrap();
        let big = Tensor::zeros(gpu, &[2, 6, 3, 3], "big").unwrap();
        let e = err_text(scale_into(gpu, &dy, 1.0, true, &dy), "dst = src");
        assert!(
            e.contains("scale_into: dst and src are the same buffer"),
            "{e}"
        );
        let e = err_text(
            scale_into(gpu, &dy, 1.0, true, &big),
            "dst of the wrong shape",
        );
        assert!(e.contains("shape mismatch for scale_into dst"), "{e}");

        let out = Tensor::zeros(gpu, &[2, 5], "out").unwrap();
        assert!(reduce_spatial(gpu, &dy, 1.0, false, &out).is_ok());
        let out_bad = Tensor::zeros(gpu, &[2, 5, 1], "out").unwrap();
        let e = err_text(
            reduce_spatial(gpu, &dy, 1.0, false, &out_bad),
            "out of rank 3",
        );
        assert!(e.contains("shape mismatch for reduce_spatial out"), "{e}");
        let flat = Tensor::zeros(gpu, &[5], "flat").unwrap();
        let e = operand_err_text(
            reduce_spatial(gpu, &flat, 1.0, false, &out),
            "dy of rank 1",
            "dy",
        );
        assert!(e.contains("reduce_spatial: dy: must be [N, C, ...]"), "{e}");
    }
}
