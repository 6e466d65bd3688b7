//! The conv kernels' packed weight layout `[ceil(Cout/4), Cin, k, k, 4]`, made on the host
//! ([`pack_weight`], which weight uploads go through, and its inverse [`unpack_weight`]) or on
//! the GPU by `shaders/conv_pack.wgsl` (training refreshes the packed copies after every
//! optimizer step; tested against [`pack_weight`]). A layout of the GPU path only: the CPU
//! reference convolves PyTorch-layout weights, so packing lives here, not in [`crate::cpu`].

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};

/// Packs PyTorch weights `[Cout, Cin, k, k]` into the GPU kernel's layout
/// `[ceil(Cout/4), Cin, k, k, 4]`: weight `(co, ci, ky, kx)` sits at
/// `(((co/4 · Cin + ci) · k + ky) · k + kx) · 4 + co % 4`, channels past `Cout` are zero.
/// Returns the packed data and its shape.
pub fn pack_weight(w: &[f32], w_shape: [usize; 4]) -> Result<(Vec<f32>, [usize; 5])> {
    let [cout, cin, kh, kw] = w_shape;
    if w.len() != w_shape.iter().product::<usize>() {
        return Err(shape_err("conv2d weight data", &w_shape, &[w.len()]));
    }
    let inner = cin * kh * kw;
    let shape = [cout.div_ceil(4), cin, kh, kw, 4];
    let mut packed = vec![0f32; shape.iter().product()];
    for co in 0..cout {
        for i in 0..inner {
            packed[((co / 4) * inner + i) * 4 + co % 4] = w[co * inner + i];
        }
    }
    Ok((packed, shape))
}

/// Inverse of [`pack_weight`]: `[ceil(Cout/4), Cin, k, k, 4]` back to `[Cout, Cin, k, k]`.
pub fn unpack_weight(
    packed: &[f32],
    packed_shape: [usize; 5],
    cout: usize,
) -> Result<(Vec<f32>, [usize; 4])> {
    let [cq, cin, kh, kw, four] = packed_shape;
    if four != 4 || cq != cout.div_ceil(4) {
        return Err(shape_err(
            "packed conv2d weight",
            &[cout.div_ceil(4), cin, kh, kw, 4],
            &packed_shape,
        ));
    }
    if packed.len() != packed_shape.iter().product::<usize>() {
        return Err(shape_err(
            "packed conv2d weight data",
            &packed_shape,
            &[packed.len()],
        ));
    }
    let inner = cin * kh * kw;
    let w = (0..cout * inner)
        .map(|e| {
            let (co, i) = (e / inner, e % inner);
            packed[((co / 4) * inner + i) * 4 + co % 4]
        })
        .collect();
    Ok((w, [cout, cin, kh, kw]))
}

fn shape_err(what: &str, expected: &[usize], got: &[usize]) -> Error {
    Error::Shape {
        what: what.to_string(),
        expected: expected.to_vec(),
        got: got.to_vec(),
    }
}

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
            return Err(Error::operand(
                "conv_pack",
                "weight",
                format!(
                    "must be [Cout, Cin, k, k] or [Cout, Cin], got {:?}",
                    w.shape
                ),
            ))
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
    let total = to_u32("packed size", total)?;
    let params = Params {
        cout: to_u32("Cout", cout)?,
        inner: to_u32("Cin·k²", inner)?,
        total,
        k: 0,
    };
    Ok(gpu.dispatch(
        &PACK,
        &params,
        &[&w.buffer, &packed.buffer],
        grid(total.div_ceil(WG)),
    ))
}

/// Packs the weight of the convolution that computes a stride-1 conv's input gradient:
/// `w' [Cin, Cout, k, k]`, `w'[ci, co, ky, kx] = w[co, ci, k-1-ky, k-1-kx]`, from `w`
/// (`[Cout, Cin, k, k]`) into `packed` (`[ceil(Cin/4), Cout, k, k, 4]`). Reference:
/// [`crate::cpu::conv2d::flip_transpose`] then [`pack_weight`].
pub fn pack_flipped_transposed(gpu: &Gpu, w: &Tensor, packed: &Tensor) -> Result<Dispatch> {
    let &[cout, cin, k, k2] = &w.shape[..] else {
        return Err(Error::operand(
            "conv_pack",
            "weight",
            format!("must be [Cout, Cin, k, k], got {:?}", w.shape),
        ));
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
    let total = to_u32("packed size", total)?;
    let params = Params {
        cout: to_u32("Cin", cin)?,
        inner: to_u32("Cout·k²", inner)?,
        total,
        k: to_u32("k", k)?,
    };
    Ok(gpu.dispatch(
        &PACK_FLIPPED_T,
        &params,
        &[&w.buffer, &packed.buffer],
        grid(total.div_ceil(WG)),
    ))
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("conv_pack", what, v)
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
    use crate::testing::{err_text, gpu, Rng};

    #[test]
    fn pack_weight_layout_and_roundtrip() {
        let w_shape = [6, 2, 3, 3];
        let w: Vec<f32> = (0..108).map(|v| v as f32).collect();
        let (packed, shape) = pack_weight(&w, w_shape).unwrap();
        assert_eq!(shape, [2, 2, 3, 3, 4]);
        // (co 5, ci 1, ky 2, kx 0) = w[((5·2 + 1)·3 + 2)·3] = w[105] → quad 1, lane 1.
        assert_eq!(packed[(((2 + 1) * 3 + 2) * 3) * 4 + 1], 105.0);
        // Channels 6 and 7 are zero padding.
        assert!(packed[72..].chunks(4).all(|q| q[2] == 0.0 && q[3] == 0.0));
        assert_eq!(unpack_weight(&packed, shape, 6).unwrap(), (w, w_shape));
    }

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
        let e = err_text(pack(gpu, &w, &p), "packed for 4 of 5 channels");
        assert!(
            e.contains("shape mismatch for conv_pack packed weight"),
            "{e}"
        );
    }
}
