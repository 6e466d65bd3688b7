//! Winograd F(2×2, 3×3) for stride-1 3×3 convolutions (`shaders/conv2d_winograd.wgsl`,
//! `shaders/conv2d_winograd_weights.wgsl`): the conv2d variants `winograd` and `winograd16`
//! ([`super::conv2d::ConvVariant`]). Per 2×2 output tile and channel pair it multiplies 16
//! transformed values where the direct convolution multiplies 36, in four launches:
//! the weight transform `U = G g Gᵀ` (16 packed 1×1 weights), the input transform
//! `V = Bᵀ d B` of every tile's 4×4 patch, 16 GEMMs `M = U · V` run as one batched 1×1 conv by
//! a register-blocked `conv_k1` kernel (`reg` or `subgroup16`, built by [`super::conv2d`]), and
//! the output transform `Aᵀ M A` with the conv epilogue. Its reference is the convolution's
//! (`cpu::conv2d`): the transforms are exact in real arithmetic.
//!
//! V, M and U live in the device's shared scratch buffers ([`Gpu::scratch`]): V and M take 4×
//! the input and output (16 values per 4 pixels), which must fit the storage-binding limit, else
//! the variant does not apply ([`Winograd::fits`]).

use crate::error::Result;
use crate::gpu::{grid, uniform_params, Access, DType, Dispatch, Gpu, KernelSpec, Tensor};
use crate::ops::conv2d_operands::{with_weights, Conv2dInputs, ConvShape, Epilogue};
use crate::options::Conv2dGeom;

/// Components of a transformed tile (4 × 4).
pub(crate) const COMPONENTS: usize = 16;
/// Rows of the image the GEMM sees: a plane of V or M is a 4 × plane/4 image (the register tile's
/// height, so no rows are wasted).
pub(crate) const GEMM_ROWS: usize = 4;
/// Invocations per workgroup of every entry point here (`WG` / `@workgroup_size`).
const WG: usize = 64;

const TRANSFORM_BINDINGS: &[Access] = &[
    Access::Uniform,
    Access::Read,      // src: x or M
    Access::Read,      // bias (output pass)
    Access::Read,      // temb (output pass)
    Access::Read,      // residual (output pass)
    Access::ReadWrite, // dst: V or out
];

const fn transform_spec(entry: &'static str) -> KernelSpec {
    KernelSpec {
        name: "conv2d_winograd",
        source: include_str!("../../shaders/conv2d_winograd.wgsl"),
        entry,
        bindings: TRANSFORM_BINDINGS,
        params: &Params::LAYOUT,
    }
}

const INPUT: KernelSpec = transform_spec("input_tiles");
const OUTPUT: KernelSpec = transform_spec("output_tiles");

const fn weights_spec(name: &'static str, source: &'static str) -> KernelSpec {
    KernelSpec {
        name,
        source,
        entry: "transform",
        bindings: &[Access::Uniform, Access::ReadWrite, Access::Read],
        params: &WeightParams::LAYOUT,
    }
}

const WEIGHTS: KernelSpec = weights_spec(
    "conv2d_winograd_weights",
    with_weights!("f32", "conv2d_winograd_weights.wgsl"),
);
const WEIGHTS_F16: KernelSpec = weights_spec(
    "conv2d_winograd_weights_f16",
    with_weights!("f16", "conv2d_winograd_weights.wgsl"),
);

uniform_params! {
    struct Params {
        n: u32,
        c: u32,
        h: u32,
        w: u32,
        ho: u32,
        wo: u32,
        th: u32,
        tw: u32,
        pad_top: u32,
        pad_left: u32,
        plane: u32,
        total: u32,
        has_temb: u32,
        has_residual: u32,
        out_scale: f32,
        accumulate: u32,
    }
}

uniform_params! {
    struct WeightParams {
        kq: u32,
        cin: u32,
        total: u32,
        _pad: u32,
    }
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("conv2d winograd", what, v)
}

/// Whether Winograd computes convolutions of kernel size `k` and geometry `geom`: 3×3, stride 1,
/// no upsampling (any padding).
pub(crate) fn applies(k: usize, geom: Conv2dGeom) -> bool {
    k == 3 && geom.stride == 1 && !geom.upsample
}

/// The tiling of one Winograd convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Winograd {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    /// Tiles per output column and row.
    th: usize,
    tw: usize,
    /// Elements of one (component, channel) plane of V and M: n · th · tw tiles, padded to a
    /// multiple of the GEMM's alignment.
    plane: usize,
    pad_top: usize,
    pad_left: usize,
}

impl Winograd {
    /// The tiling of `shape`, which must satisfy [`applies`], with planes padded to a multiple of
    /// `align` (itself a multiple of [`GEMM_ROWS`]): the GEMM kernel's tile, times its subgroup
    /// size where a subgroup shares one weight group (all its lanes must then be in one image).
    pub(crate) fn new(shape: &ConvShape, align: usize) -> Self {
        debug_assert!(applies(shape.k, shape.geom) && align.is_multiple_of(GEMM_ROWS));
        let [n, cin, h, w] = shape.x_shape;
        let [_, cout, ho, wo] = shape.out_shape;
        let (th, tw) = (ho.div_ceil(2), wo.div_ceil(2));
        let plane = (n * th * tw).next_multiple_of(align);
        Winograd {
            n,
            cin,
            cout,
            h,
            w,
            ho,
            wo,
            th,
            tw,
            plane,
            pad_top: shape.geom.pad[0],
            pad_left: shape.geom.pad[1],
        }
    }

    /// Elements of V, M and U.
    fn sizes(&self) -> [usize; 3] {
        [
            COMPONENTS * self.cin * self.plane,
            COMPONENTS * self.cout * self.plane,
            COMPONENTS * self.cout.div_ceil(4) * self.cin * 4,
        ]
    }

    /// Whether V, M and U fit `gpu`'s buffer and storage-binding limits.
    pub(crate) fn fits(&self, gpu: &Gpu) -> bool {
        let limit = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        self.sizes().iter().all(|&n| 4 * n as u64 <= limit)
    }

    /// The GEMM's view of V (input) and M (output): 16 images (one per component, each with its
    /// own weight group) of `[Cin or Cout, GEMM_ROWS, plane / GEMM_ROWS]`.
    pub(crate) fn gemm_image(&self) -> (usize, usize) {
        (GEMM_ROWS, self.plane / GEMM_ROWS)
    }

    /// Packed-weight positions (vec4) of one component's weight in U.
    pub(crate) fn group_stride(&self) -> usize {
        self.cout.div_ceil(4) * self.cin
    }

    fn params(&self, c: usize, epi: &Epilogue) -> Result<Params> {
        let tiles = self.n * self.th * self.tw;
        Ok(Params {
            n: to_u32("N", self.n)?,
            c: to_u32("channels", c)?,
            h: to_u32("H", self.h)?,
            w: to_u32("W", self.w)?,
            ho: to_u32("Ho", self.ho)?,
            wo: to_u32("Wo", self.wo)?,
            th: to_u32("tile rows", self.th)?,
            tw: to_u32("tile columns", self.tw)?,
            pad_top: to_u32("pad", self.pad_top)?,
            pad_left: to_u32("pad", self.pad_left)?,
            plane: to_u32("plane", self.plane)?,
            total: to_u32("channels × tiles", c * tiles)?,
            has_temb: epi.temb.is_some() as u32,
            has_residual: epi.residual.is_some() as u32,
            out_scale: epi.out_scale,
            accumulate: epi.accumulate as u32,
        })
    }

    /// The four launches of the convolution into `out`; `gemm(v, u, zero_bias, m)` builds the
    /// batched 1×1 conv `m = u · v` (see [`Winograd::gemm_image`], [`Winograd::group_stride`]).
    pub(crate) fn dispatch(
        &self,
        gpu: &Gpu,
        inputs: Conv2dInputs,
        epi: &Epilogue,
        out: &Tensor,
        gemm: impl FnOnce(&Tensor, &Tensor, &Tensor, &Tensor) -> Result<Dispatch>,
    ) -> Result<Dispatch> {
        let [v, m, u] = self.scratch(gpu)?;
        let zero_bias = Tensor::zeros(gpu, &[self.cout], "winograd zero bias")?;
        let weights = self.weights(gpu, inputs.w, &u)?;
        let input = self.input(gpu, inputs.x, &v)?;
        let product = gemm(&v, &u, &zero_bias, &m)?;
        let output = self.output(gpu, &m, inputs.bias, epi, out)?;
        let mut all = weights.then(input).then(product).then(output);
        all.name = "conv2d_winograd";
        Ok(all)
    }

    /// V, M and U in the device's scratch buffers.
    fn scratch(&self, gpu: &Gpu) -> Result<[Tensor; 3]> {
        let [v_len, m_len, u_len] = self.sizes();
        Ok([
            gpu.scratch("winograd V", v_len)?,
            gpu.scratch("winograd M", m_len)?,
            gpu.scratch("winograd U", u_len)?,
        ])
    }

    /// `u = G w Gᵀ` for the packed weight `w` (f32 or f16).
    fn weights(&self, gpu: &Gpu, w: &Tensor, u: &Tensor) -> Result<Dispatch> {
        let kq = self.cout.div_ceil(4);
        let wp = WeightParams {
            kq: to_u32("channel quads", kq)?,
            cin: to_u32("Cin", self.cin)?,
            total: to_u32("weight positions", kq * self.cin)?,
            _pad: 0,
        };
        let spec = match w.dtype {
            DType::F32 => &WEIGHTS,
            DType::F16 => &WEIGHTS_F16,
        };
        Ok(gpu.dispatch(
            spec,
            &wp,
            &[&u.buffer, &w.buffer],
            grid(to_u32("workgroups", (kq * self.cin).div_ceil(WG))?),
        ))
    }

    /// `v = Bᵀ d B` for every tile of `x`.
    fn input(&self, gpu: &Gpu, x: &Tensor, v: &Tensor) -> Result<Dispatch> {
        let unused = gpu.placeholder()?;
        let p = self.params(self.cin, &Epilogue::default())?;
        Ok(gpu.dispatch(
            &INPUT,
            &p,
            &[
                &x.buffer,
                &unused.buffer,
                &unused.buffer,
                &unused.buffer,
                &v.buffer,
            ],
            grid(to_u32("workgroups", (p.total as usize).div_ceil(WG))?),
        ))
    }

    /// `out (+)= (Aᵀ m A + bias + temb + residual) · out_scale`.
    fn output(
        &self,
        gpu: &Gpu,
        m: &Tensor,
        bias: &Tensor,
        epi: &Epilogue,
        out: &Tensor,
    ) -> Result<Dispatch> {
        let p = self.params(self.cout, epi)?;
        Ok(gpu.dispatch(
            &OUTPUT,
            &p,
            &[
                &m.buffer,
                &bias.buffer,
                &epi.temb.unwrap_or(bias).buffer,
                &epi.residual.unwrap_or(bias).buffer,
                &out.buffer,
            ],
            grid(to_u32("workgroups", (p.total as usize).div_ceil(WG))?),
        ))
    }
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![
        kernel_check!(INPUT)
            .workgroup_size([WG])
            .shader_const("WG", WG),
        kernel_check!(OUTPUT)
            .workgroup_size([WG])
            .shader_const("WG", WG),
        kernel_check!(WEIGHTS).workgroup_size([WG]),
        kernel_check!(WEIGHTS_F16).workgroup_size([WG]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gpu;

    /// Wall time of each launch of one Winograd convolution (best of 5):
    /// `cargo test --release --lib conv2d_winograd -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn launch_timing() {
        let gpu = gpu();
        for (n, cin, cout, hw) in [
            (16usize, 16usize, 16usize, 28usize),
            (16, 64, 64, 7),
            (1, 128, 128, 32),
        ] {
            let x = Tensor::zeros(gpu, &[n, cin, hw, hw], "x").unwrap();
            let w = Tensor::zeros(gpu, &[cout.div_ceil(4), cin, 3, 3, 4], "w").unwrap();
            let b = Tensor::zeros(gpu, &[cout], "b").unwrap();
            let out = Tensor::zeros(gpu, &[n, cout, hw, hw], "out").unwrap();
            let inputs = Conv2dInputs {
                x: &x,
                w: &w,
                bias: &b,
            };
            let none = Epilogue::default();
            let shape = ConvShape::new(gpu, "t", inputs, Conv2dGeom::same(3), &none, &out).unwrap();
            let wg = Winograd::new(&shape, 4);
            let [v, m, u] = wg.scratch(gpu).unwrap();
            for (name, d) in [
                ("weights", wg.weights(gpu, &w, &u).unwrap()),
                ("input", wg.input(gpu, &x, &v).unwrap()),
                ("output", wg.output(gpu, &m, &b, &none, &out).unwrap()),
            ] {
                let t = crate::gpu::time_dispatches(gpu, std::slice::from_ref(&d)).unwrap();
                println!("{n}×{cin}×{hw}×{hw}→{cout}: {name:8} {:8.3} ms", t * 1e3);
            }
        }
    }
}
