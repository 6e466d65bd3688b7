//! `shaders/conv_pack.wgsl`: PyTorch conv weights → the conv kernel's packed layout, on the GPU
//! (training refreshes the packed copies after every optimizer step). Reference:
//! [`crate::cpu::conv2d::pack_weight`].

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};

const fn spec(entry: &'static str) -> KernelSpec {
    KernelSpec {
        name: "conv_pack",
        source: include_str!("../../shaders/conv_pack.wgsl"),
        entry,
        bindings: &[Access::Uniform, Access::Read, Access::ReadWrite],
        params: &Params::LAYOUT,
    }
}

const PACK: KernelSpec = spec("pack");
const PACK_FLIPPED_T: KernelSpec = spec("pack_flipped_transposed");

/// Invocations per workgroup of the shader's entry points (its `@workgroup_size`).
const WG: u32 = 256;

uniform_params! {
    struct Params {
        cout: u32,
        inner: u32,
        total: u32,
        k: u32,
    }
}

/// Packs `w` (`[Cout, Cin, k, k]`, or a Linear `[Cout, Cin]` as 1×1) into `packed`
/// (`[ceil(Cout/4), Cin, k, k, 4]`).
pub fn pack(gpu: &Gpu, w: &Tensor, packed: &Tensor) -> Result<Dispatch> {
    let (cout, inner) = match w.shape[..] {
        [o, i] => (o, i),
        [o, i, kh, kw] => (o, i * kh * kw),
        _ => {
            return Err(Error::Invalid(format!(
                "conv_pack: weight must be [Cout, Cin, k, k] or [Cout, Cin], got {:?}",
                w.shape
            )))
        }
    };
    let total = cout.div_ceil(4) * inner * 4;
    if packed.numel() != total {
        return Err(Error::Shape {
            what: "conv_pack packed weight".into(),
            expected: vec![cout.div_ceil(4), inner, 4],
            got: packed.shape.clone(),
        });
    }
    let params = Params {
        cout: cout as u32,
        inner: inner as u32,
        total: total as u32,
        k: 0,
    };
    Ok(gpu.dispatch(
        &PACK,
        &params,
        &[&w.buffer, &packed.buffer],
        grid((total as u32).div_ceil(WG)),
    ))
}

/// Packs the weight of the convolution that computes a stride-1 conv's input gradient:
/// `w' [Cin, Cout, k, k]`, `w'[ci, co, ky, kx] = w[co, ci, k-1-ky, k-1-kx]`, from `w`
/// (`[Cout, Cin, k, k]`) into `packed` (`[ceil(Cin/4), Cout, k, k, 4]`). Reference:
/// [`crate::cpu::conv2d::flip_transpose`] then [`crate::cpu::conv2d::pack_weight`].
pub fn pack_flipped_transposed(gpu: &Gpu, w: &Tensor, packed: &Tensor) -> Result<Dispatch> {
    let &[cout, cin, k, k2] = &w.shape[..] else {
        return Err(Error::Invalid(format!(
            "conv_pack: weight must be [Cout, Cin, k, k], got {:?}",
            w.shape
        )));
    };
    let inner = cout * k * k;
    let total = cin.div_ceil(4) * inner * 4;
    if k != k2 || packed.numel() != total {
        return Err(Error::Shape {
            what: "conv_pack flipped transposed weight".into(),
            expected: vec![cin.div_ceil(4), cout, k, k, 4],
            got: packed.shape.clone(),
        });
    }
    let params = Params {
        cout: crate::ops::to_u32("conv_pack", "Cin", cin)?,
        inner: crate::ops::to_u32("conv_pack", "Cout·k²", inner)?,
        total: crate::ops::to_u32("conv_pack", "packed size", total)?,
        k: k as u32,
    };
    Ok(gpu.dispatch(
        &PACK_FLIPPED_T,
        &params,
        &[&w.buffer, &packed.buffer],
        grid((total as u32).div_ceil(WG)),
    ))
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![
        kernel_check!(PACK).workgroup_size([WG]),
        kernel_check!(PACK_FLIPPED_T).workgroup_size([WG]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::conv2d::pack_weight;
    use crate::testing::{gpu, Rng};

    #[test]
    fn pack_matches_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(3);
        for shape in [[1, 1, 1, 1], [5, 3, 3, 3], [8, 7, 1, 1], [13, 2, 3, 3]] {
            let w = rng.normals(shape.iter().product(), 1.0);
            let (want, packed_shape) = pack_weight(&w, shape).unwrap();
            let wt = Tensor::from_slice(gpu, &shape, &w, "w").unwrap();
            let out =
                Tensor::from_slice(gpu, &packed_shape, &vec![f32::NAN; want.len()], "p").unwrap();
            pollster::block_on(gpu.run(&[pack(gpu, &wt, &out).unwrap()])).unwrap();
            assert_eq!(out.read_blocking(gpu).unwrap(), want, "{shape:?}");
        }
    }

    #[test]
    fn pack_flipped_transposed_matches_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(4);
        for shape in [
            [1, 1, 1, 1],
            [5, 3, 3, 3],
            [8, 7, 1, 1],
            [13, 2, 3, 3],
            [3, 9, 3, 3],
        ] {
            let w = rng.normals(shape.iter().product(), 1.0);
            let (wt_ref, t_shape) = crate::cpu::conv2d::flip_transpose(&w, shape).unwrap();
            let (want, packed_shape) = pack_weight(&wt_ref, t_shape).unwrap();
            let wt = Tensor::from_slice(gpu, &shape, &w, "w").unwrap();
            let out =
                Tensor::from_slice(gpu, &packed_shape, &vec![f32::NAN; want.len()], "p").unwrap();
            let d = pack_flipped_transposed(gpu, &wt, &out).unwrap();
            pollster::block_on(gpu.run(&[d])).unwrap();
            assert_eq!(out.read_blocking(gpu).unwrap(), want, "{shape:?}");
        }
    }

    #[test]
    fn pack_rejects_wrong_sizes() {
        let gpu = gpu();
        let w = Tensor::zeros(gpu, &[5, 3, 3, 3], "w").unwrap();
        let p = Tensor::zeros(gpu, &[1, 3, 3, 3, 4], "p").unwrap();
        assert!(pack(gpu, &w, &p).is_err());
    }
}
