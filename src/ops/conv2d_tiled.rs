//! `shaders/conv2d_tiled.wgsl`: the 2-D convolution of [`crate::ops::conv2d`] (same arguments,
//! same result) as a tiled implicit GEMM, `C[co, pix] = Σ W[co, (ci, ky, kx)] · X[(ci, ky, kx),
//! pix]` with pixels flattened over `N·Ho·Wo`.
//!
//! A workgroup of 16 × 16 invocations computes a 64 channel × 64 pixel output tile; per K-step of
//! 16 it loads a weight tile and an im2col input tile (gathered on the fly: padding, stride and
//! upsampling resolved, zeros outside) into workgroup memory with coalesced loads, synchronises,
//! and every invocation accumulates a 4 × 4 register micro-tile. This is meant to win on real
//! GPUs, where workgroup memory and barriers are cheap and global loads are what costs; on CPU
//! drivers (lavapipe) barriers are expensive and the register-blocked [`crate::ops::conv2d`]
//! kernels are faster. Check [`tiled_fits`] before using it on an unknown device.

use crate::error::Result;
use crate::gpu::{
    grid, uniform_params, Access, DType, Dispatch, Gpu, KernelSpec, Tensor, MAX_WORKGROUPS_PER_DIM,
};
use crate::ops::conv2d_operands::{with_weights, Conv2dInputs, ConvShape, Epilogue};
use crate::options::Conv2dGeom;

const BINDINGS: &[Access] = &[
    Access::Uniform,
    Access::Read,      // x
    Access::Read,      // w (packed)
    Access::Read,      // bias
    Access::Read,      // temb (or dummy)
    Access::Read,      // residual (or dummy)
    Access::ReadWrite, // out
];

const fn spec(name: &'static str, source: &'static str, entry: &'static str) -> KernelSpec {
    KernelSpec {
        name,
        source,
        entry,
        bindings: BINDINGS,
        params: &Params::LAYOUT,
    }
}

const SOURCE: &str = with_weights!("f32", "conv2d_tiled.wgsl");
const SOURCE_F16: &str = with_weights!("f16", "conv2d_tiled.wgsl");
const K1: KernelSpec = spec("conv2d_tiled", SOURCE, "conv_tiled_k1");
const K3: KernelSpec = spec("conv2d_tiled", SOURCE, "conv_tiled_k3");
/// The same kernels reading f16 weights.
const K1_F16: KernelSpec = spec("conv2d_tiled_f16", SOURCE_F16, "conv_tiled_k1");
const K3_F16: KernelSpec = spec("conv2d_tiled_f16", SOURCE_F16, "conv_tiled_k3");

/// Workgroup shape (`TX × TY` invocations), output tile (`BM` channels × `BN` pixels) and K-step
/// `BK`: the shader's constants of those names (`gpu::check` compares them).
const TX: u32 = 16;
const TY: u32 = 16;
const BM: usize = 64;
const BN: usize = 64;
const BK: usize = 16;
/// Workgroup memory of the shader: the weight tile `BK × (BM/4 + 1)` vec4 (one quad of padding
/// per row) and the input tile `BK × BN` f32.
const WORKGROUP_BYTES: u32 = ((BK * (BM / 4 + 1) * 4 + BK * BN) * 4) as u32;

uniform_params! {
    struct Params {
        n: u32,
        cin: u32,
        h: u32,
        w: u32,
        cout: u32,
        ho: u32,
        wo: u32,
        upsample: u32,
        pad_top: u32,
        pad_left: u32,
        stride: u32,
        kdim: u32,
        pixels: u32,
        quads: u32,
        co_tiles: u32,
        tiles: u32,
        has_temb: u32,
        has_residual: u32,
        out_scale: f32,
        accumulate: u32,
    }
}

/// Whether a device with `limits` can run the tiled kernel (workgroup memory, invocations per
/// workgroup, workgroup size and the workgroup count per dimension [`grid`] assumes). True for
/// WebGPU's default limits.
pub fn tiled_fits(limits: &wgpu::Limits) -> bool {
    limits.max_compute_workgroup_storage_size >= WORKGROUP_BYTES
        && limits.max_compute_invocations_per_workgroup >= TX * TY
        && limits.max_compute_workgroup_size_x >= TX
        && limits.max_compute_workgroup_size_y >= TY
        && limits.max_compute_workgroups_per_dimension >= MAX_WORKGROUPS_PER_DIM
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("conv2d_tiled", what, v)
}

/// Exactly [`crate::ops::conv2d::conv2d`] (same arguments, checks and result:
/// `out = (conv(x, w) + bias + temb + residual) * out_scale`, `w` packed by
/// [`crate::ops::conv_pack::pack_weight`] and stored as f32 or f16, k ∈ {1, 3}, stride ∈ {1, 2}, any padding, optional
/// upsampling), computed by the workgroup-tiled implicit-GEMM kernel. `out` must not be any of
/// the inputs. The device must satisfy [`tiled_fits`].
pub fn conv2d_tiled(
    gpu: &Gpu,
    inputs: Conv2dInputs,
    geom: Conv2dGeom,
    epi: &Epilogue,
    out: &Tensor,
) -> Result<Dispatch> {
    let conv = ConvShape::new(gpu, "conv2d_tiled", inputs, geom, epi, out)?;
    dispatch(gpu, &conv, inputs, epi, out)
}

/// [`conv2d_tiled`] of operands already checked as `conv`.
pub(crate) fn dispatch(
    gpu: &Gpu,
    conv: &ConvShape,
    inputs: Conv2dInputs,
    epi: &Epilogue,
    out: &Tensor,
) -> Result<Dispatch> {
    let Conv2dInputs { x, w, bias } = inputs;
    let [n, cin, h, wd] = conv.x_shape;
    let [_, cout, ho, wo] = conv.out_shape;
    let (k, cq, geom) = (conv.k, conv.quads(), conv.geom);
    // The shader indexes every tensor with u32.
    to_u32("input elements", x.numel())?;
    to_u32("packed weight elements", w.numel())?;
    to_u32("output elements", out.numel())?;

    let kdim = cin * k * k;
    let pixels = n * ho * wo;
    let co_tiles = cout.div_ceil(BM);
    let tiles = co_tiles * pixels.div_ceil(BN);
    let params = Params {
        n: to_u32("N", n)?,
        cin: to_u32("Cin", cin)?,
        h: to_u32("H", h)?,
        w: to_u32("W", wd)?,
        cout: to_u32("Cout", cout)?,
        ho: to_u32("Ho", ho)?,
        wo: to_u32("Wo", wo)?,
        upsample: geom.upsample as u32,
        pad_top: to_u32("pad", geom.pad[0])?,
        pad_left: to_u32("pad", geom.pad[1])?,
        stride: to_u32("stride", geom.stride)?,
        kdim: to_u32("Cin·k·k", kdim)?,
        pixels: to_u32("N·Ho·Wo", pixels)?,
        quads: to_u32("channel quads", cq)?,
        co_tiles: to_u32("channel tiles", co_tiles)?,
        tiles: to_u32("tiles", tiles)?,
        has_temb: epi.temb.is_some() as u32,
        has_residual: epi.residual.is_some() as u32,
        out_scale: epi.out_scale,
        accumulate: epi.accumulate as u32,
    };
    let temb = epi.temb.unwrap_or(bias);
    let residual = epi.residual.unwrap_or(bias);
    let spec = match (k, conv.dtype) {
        (1, DType::F32) => &K1,
        (_, DType::F32) => &K3,
        (1, DType::F16) => &K1_F16,
        (_, DType::F16) => &K3_F16,
    };
    Ok(gpu.dispatch(
        spec,
        &params,
        &[
            &x.buffer,
            &w.buffer,
            &bias.buffer,
            &temb.buffer,
            &residual.buffer,
            &out.buffer,
        ],
        grid(params.tiles),
    ))
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    [
        kernel_check!(K1),
        kernel_check!(K3),
        kernel_check!(K1_F16),
        kernel_check!(K3_F16),
    ]
    .into_iter()
    .map(|k| {
        k.workgroup_size([TX, TY])
            .shader_const("TX", TX)
            .shader_const("TY", TY)
            .shader_const("BM", BM)
            .shader_const("BN", BN)
            .shader_const("BK", BK)
            .workgroup_bytes(WORKGROUP_BYTES)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::error::Error;
    use crate::ops::conv2d_operands::cases::{case, f16_rounded, Case};
    use crate::ops::conv2d_operands::upload_weight_as;
    use crate::testing::{assert_close, gpu, Rng};

    /// Runs one case through the tiled kernel (weights stored as `dtype`) and the CPU reference
    /// (on the same, for f16 f16-rounded, weights) and compares them. Accumulation is tested
    /// with the other variants (`ops::conv2d`'s epilogue cases).
    fn check(c: &Case, seed: u64, dtype: DType) {
        assert!(!c.accumulate, "the tiled cases start from a NaN output");
        let gpu = gpu();
        let mut rng = Rng::new(seed);
        let x_shape = [c.n, c.cin, c.h, c.w];
        let w_shape = [c.cout, c.cin, c.k, c.k];
        let x = rng.normals(x_shape.iter().product(), 1.0);
        let w = rng.normals(
            w_shape.iter().product(),
            1.0 / ((c.cin * c.k * c.k) as f32).sqrt(),
        );
        let b = rng.normals(c.cout, 0.5);
        let out_shape = c.geom.output_shape(&x_shape, &w_shape).unwrap();
        let temb = c.temb.then(|| rng.normals(c.n * c.cout, 1.0));
        let res = c
            .residual
            .then(|| rng.normals(out_shape.iter().product(), 1.0));
        let w_ref: Vec<f32> = match dtype {
            DType::F32 => w.clone(),
            DType::F16 => f16_rounded(&w),
        };
        let inputs = cpu::conv2d::Conv2dInputs {
            x: &x,
            x_shape,
            w: &w_ref,
            w_shape,
            bias: &b,
        };
        let cpu_epi = cpu::conv2d::Epilogue {
            temb: temb.as_deref(),
            residual: res.as_deref(),
            out_scale: c.out_scale,
        };
        let (want, shape) = cpu::conv2d::conv2d(inputs, c.geom, &cpu_epi).unwrap();
        assert_eq!(shape, out_shape);

        let tx = Tensor::from_slice(gpu, &x_shape, &x, "x").unwrap();
        let tw = upload_weight_as(gpu, &w, w_shape, dtype, "w").unwrap();
        assert_eq!(tw.dtype, dtype);
        let tb = Tensor::from_slice(gpu, &[c.cout], &b, "b").unwrap();
        let tt = temb
            .as_ref()
            .map(|t| Tensor::from_slice(gpu, &[c.n, c.cout], t, "temb").unwrap());
        let tr = res
            .as_ref()
            .map(|r| Tensor::from_slice(gpu, &out_shape, r, "res").unwrap());
        // NaN-filled output, so that an element the kernel fails to write shows up.
        let nan = vec![f32::NAN; out_shape.iter().product()];
        let out = Tensor::from_slice(gpu, &out_shape, &nan, "out").unwrap();
        let epi = Epilogue {
            temb: tt.as_ref(),
            residual: tr.as_ref(),
            out_scale: c.out_scale,
            accumulate: false,
        };
        let inputs = Conv2dInputs {
            x: &tx,
            w: &tw,
            bias: &tb,
        };
        let d = conv2d_tiled(gpu, inputs, c.geom, &epi, &out).unwrap();
        pollster::block_on(gpu.run(&[d])).unwrap();
        let got = out.read_blocking(gpu).unwrap();
        let what = format!("conv2d_tiled[{}] {c}", dtype.name());
        assert_close(&got, &want, 1e-4, 1e-4, &what);
    }

    fn check_all(cases: &[Case], seed: u64, dtype: DType) {
        for (i, c) in cases.iter().enumerate() {
            check(c, seed + i as u64, dtype);
        }
    }

    // The basic geometries (3×3, 1×1, stride 2, upsampling, epilogue) run for every variant,
    // this one included, in `ops::conv2d`'s tests; these are the tiled kernel's own edge cases.

    #[test]
    fn tiled_multi_tile_matches_cpu() {
        check_all(&multi_tile_cases(), 160, DType::F32);
    }

    #[test]
    fn tiled_f16_multi_tile_matches_cpu() {
        check_all(&multi_tile_cases(), 160, DType::F16);
    }

    fn multi_tile_cases() -> Vec<Case> {
        vec![
            case(3, 33, 131, 13, 6, 3, Conv2dGeom::same(3)),
            case(2, 5, 65, 17, 19, 3, Conv2dGeom::same(3)),
            case(2, 20, 129, 11, 13, 1, Conv2dGeom::same(1)),
            case(1, 17, 67, 19, 17, 3, Conv2dGeom::downsample(1)),
            case(2, 13, 66, 7, 9, 3, Conv2dGeom::upsample()),
        ]
    }

    /// More than 65535 workgroups, so the grid folds into y (65536 + 64 pixel tiles).
    #[test]
    fn tiled_folded_grid_matches_cpu() {
        check(
            &case(1, 1, 3, 2049, 2048, 1, Conv2dGeom::same(1)),
            170,
            DType::F32,
        );
    }

    #[test]
    fn tiled_fits_webgpu_defaults() {
        assert!(tiled_fits(&wgpu::Limits::default()));
        assert!(tiled_fits(&gpu().limits));
        let small = wgpu::Limits {
            max_compute_workgroup_storage_size: WORKGROUP_BYTES - 4,
            ..wgpu::Limits::default()
        };
        assert!(!tiled_fits(&small));
    }

    #[test]
    fn tiled_rejects_bad_shapes() {
        let gpu = gpu();
        let z = |shape: &[usize]| Tensor::zeros(gpu, shape, "t").unwrap();
        let x = z(&[1, 4, 8, 8]);
        let w = z(&[2, 4, 3, 3, 4]);
        let b = z(&[6]);
        let out = z(&[1, 6, 8, 8]);
        let same = Conv2dGeom::same(3);
        let none = Epilogue::default();
        let run = |x: &Tensor, w: &Tensor, b: &Tensor, g: Conv2dGeom, e: &Epilogue, o: &Tensor| {
            conv2d_tiled(gpu, Conv2dInputs { x, w, bias: b }, g, e, o)
        };
        let shape_err = |r: Result<Dispatch>| matches!(r, Err(Error::Shape { .. }));
        let invalid = |r: Result<Dispatch>| {
            matches!(
                r,
                Err(Error::Operand { .. } | Error::Unsupported { .. } | Error::Alias { .. })
            )
        };
        assert!(run(&x, &w, &b, same, &none, &out).is_ok());
        let w_cin = z(&[2, 3, 3, 3, 4]);
        assert!(shape_err(run(&x, &w_cin, &b, same, &none, &out)));
        let w_quads = z(&[1, 4, 3, 3, 4]);
        assert!(shape_err(run(&x, &w_quads, &b, same, &none, &out)));
        assert!(invalid(run(&x, &z(&[6, 4, 3, 3]), &b, same, &none, &out)));
        let w5 = z(&[2, 4, 5, 5, 4]);
        assert!(invalid(run(&x, &w5, &b, Conv2dGeom::same(5), &none, &out)));
        assert!(shape_err(run(&x, &w, &b, same, &none, &z(&[1, 6, 7, 8]))));
        let t = z(&[2, 6]);
        let e = Epilogue {
            temb: Some(&t),
            ..none
        };
        assert!(shape_err(run(&x, &w, &b, same, &e, &out)));
        let s3 = Conv2dGeom { stride: 3, ..same };
        assert!(invalid(run(&x, &w, &b, s3, &none, &z(&[1, 6, 3, 3]))));
        let e = Epilogue {
            residual: Some(&out),
            ..none
        };
        assert!(invalid(run(&x, &w, &b, same, &e, &out)));
    }
}
