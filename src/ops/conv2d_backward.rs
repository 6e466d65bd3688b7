//! `shaders/conv2d_backward_input.wgsl` and `shaders/conv2d_backward_weight.wgsl`: gradients of
//! [`crate::ops::conv2d::conv2d`] (NCHW f32, k ∈ {1, 3}, stride ∈ {1, 2}, any padding, fused
//! nearest ×2 upsampling) with respect to its input, weight and bias, given `dy = ∂L/∂out`.
//! The epilogue's `out_scale` is applied here; temb / residual gradients are left to the caller.
//!
//! Gradient convention: `accumulate = false` overwrites the gradient tensors, `true` adds to them.

use crate::error::{Error, Result};
use crate::gpu::{
    grid, uniform_params, Access, Candidate, Dispatch, Gpu, KernelSpec, Tensor,
    MAX_WORKGROUPS_PER_DIM,
};
use crate::ops::conv2d::{self, Conv2dInputs, Epilogue};
use crate::options::{Conv2dGeom, Conv2dGradOptions};

/// The sources of the dx kernels and of the packing the forward dx variant uses (their digest
/// keys the on-disk choice cache).
pub(crate) const SOURCES: &str = concat!(
    include_str!("../../shaders/conv2d_backward_input.wgsl"),
    include_str!("../../shaders/conv_pack.wgsl"),
);

const IN_BINDINGS: &[Access] = &[
    Access::Uniform,
    Access::Read,      // dy
    Access::Read,      // w
    Access::ReadWrite, // dx
];

const fn in_spec(entry: &'static str) -> KernelSpec {
    KernelSpec {
        name: "conv2d_backward_input",
        source: include_str!("../../shaders/conv2d_backward_input.wgsl"),
        entry,
        bindings: IN_BINDINGS,
        params: &InParams::LAYOUT,
    }
}

const DX_K3S1: KernelSpec = in_spec("dx_k3s1");
const DX_K1S1: KernelSpec = in_spec("dx_k1s1");
const DX_K3S1_UP: KernelSpec = in_spec("dx_k3s1_up");
const DX_K1S1_UP: KernelSpec = in_spec("dx_k1s1_up");
const DX_K3S2: KernelSpec = in_spec("dx_k3s2");
const DX_K1S2: KernelSpec = in_spec("dx_k1s2");
const DX_K3S2_UP: KernelSpec = in_spec("dx_k3s2_up");
const DX_K1S2_UP: KernelSpec = in_spec("dx_k1s2_up");

/// conv2d_backward_input.wgsl's `WG` (invocations per workgroup), `PX` (dx pixels along a row
/// per invocation of the row kernels) and `CI` (input channels per invocation), which
/// `gpu::check` compares; and the side of the square dx tile of the k = 3 stride-1 tile kernels,
/// which that shader writes out as 4 × 4.
const DX_WG: usize = 64;
const DX_PX: usize = 4;
const DX_CI: usize = 8;
const DX_T3: usize = 4;

const W_BINDINGS: &[Access] = &[
    Access::Uniform,
    Access::Read,      // dy
    Access::Read,      // x
    Access::ReadWrite, // partial sums [chunks, Cout·Cin·k² + Cout]
    Access::ReadWrite, // dw
    Access::ReadWrite, // db
];

const fn w_spec(entry: &'static str) -> KernelSpec {
    KernelSpec {
        name: "conv2d_backward_weight",
        source: include_str!("../../shaders/conv2d_backward_weight.wgsl"),
        entry,
        bindings: W_BINDINGS,
        params: &WParams::LAYOUT,
    }
}

const DW_TILE_K3S1: KernelSpec = w_spec("dw_tile_k3s1");
const DW_TILE_K3S2: KernelSpec = w_spec("dw_tile_k3s2");
const DW_TILE_K1S1: KernelSpec = w_spec("dw_tile_k1s1");
const DW_TILE_K1S2: KernelSpec = w_spec("dw_tile_k1s2");
const DW_REDUCE: KernelSpec = w_spec("dw_reduce");

/// conv2d_backward_weight.wgsl's output and input channels per invocation of `dw_tile3`
/// (k = 3) and `dw_tile1` (k = 1), their workgroup size and the reduce workgroup size, which
/// `gpu::check` compares.
const DW_T3_CO: usize = 16;
const DW_T3_CI: usize = 8;
const DW_T1_CO: usize = 16;
const DW_T1_CI: usize = 16;
const DW_TILE_WG: usize = 8;
const DW_REDUCE_WG: usize = 64;

uniform_params! {
    struct InParams {
        n: u32,
        cin: u32,
        h: u32,
        w: u32,
        cout: u32,
        ho: u32,
        wo: u32,
        pad_top: u32,
        pad_left: u32,
        row_blocks: u32,
        rows: u32,
        blocks: u32,
        accumulate: u32,
        out_scale: f32,
        _pad0: u32,
        _pad1: u32,
    }
}

uniform_params! {
    struct WParams {
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
        per_chunk: u32,
        chunks: u32,
        nw: u32,
        total: u32,
        accumulate: u32,
        out_scale: f32,
        tiles_x: u32,
        tiles_y: u32,
        co_blocks: u32,
        ci_blocks: u32,
    }
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("conv2d backward", what, v)
}

fn check_dims(what: &str, dims: &[(&str, usize)]) -> Result<()> {
    for &(name, v) in dims {
        if v > MAX_WORKGROUPS_PER_DIM as usize {
            return Err(Error::unsupported(
                format!("conv2d backward {what}"),
                format!("{name} = {v} exceeds {MAX_WORKGROUPS_PER_DIM} workgroups"),
            ));
        }
    }
    Ok(())
}

/// Checks kernel size and stride for the GPU kernels; returns k.
fn check_geom(what: &str, w_shape: &[usize], geom: Conv2dGeom) -> Result<usize> {
    let k = w_shape[2];
    crate::ops::conv2d_operands::check_supported(what, k, geom.stride)?;
    Ok(k)
}

/// A kernel for conv2d's input gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DxVariant {
    /// The transposed-conv kernels of `shaders/conv2d_backward_input.wgsl` (every geometry).
    Direct,
    /// For stride 1 without upsampling: dx is the forward convolution of dy with the
    /// flipped, transposed weight (padding k-1-p), so it runs on the forward kernels
    /// (whichever variant the device picks for that shape), after a pack of that weight
    /// (`ops::conv_pack::pack_flipped_transposed`).
    Forward,
}

impl DxVariant {
    /// Every variant, in the order they are tried.
    pub const ALL: [DxVariant; 2] = [DxVariant::Direct, DxVariant::Forward];

    /// The name used by `DDPM_KERNELS`, `--kernels`, benchmarks and checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            DxVariant::Direct => "direct",
            DxVariant::Forward => "forward",
        }
    }

    /// Whether this variant computes the input gradient of a conv with kernel size `k` and
    /// geometry `geom`.
    pub fn applies(self, k: usize, geom: Conv2dGeom) -> bool {
        match self {
            DxVariant::Direct => true,
            DxVariant::Forward => {
                geom.stride == 1 && !geom.upsample && geom.pad.iter().all(|&p| p < k)
            }
        }
    }
}

/// `dx [N, Cin, H, W] (+)= out_scale · ∂(conv(x, w))/∂x ᵀ dy`: the gradient of
/// [`crate::ops::conv2d::conv2d`]'s output `dy [N, Cout, Ho, Wo]` propagated to its input, for
/// weight `w [Cout, Cin, k, k]` and geometry `opts.geom` (with upsampling, each input pixel sums
/// the gradients of its 2×2 virtual pixels). `opts.accumulate`: add to `dx` instead of
/// overwriting it.
pub fn conv2d_backward_input(
    gpu: &Gpu,
    dy: &Tensor,
    w: &Tensor,
    opts: Conv2dGradOptions,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    let geom = opts.geom;
    let k = check_geom("conv2d_backward_input", &w.shape, geom)?;
    let key = format!(
        "conv2d dx {:?} -> {:?} k{k} s{} pad{:?}{}",
        dy.shape,
        dx.shape,
        geom.stride,
        geom.pad,
        if geom.upsample { " up" } else { "" }
    );
    let candidates: Vec<Candidate<DxVariant>> = DxVariant::ALL
        .into_iter()
        .filter(|v| v.applies(k, geom))
        .map(|v| Candidate {
            variant: v,
            name: v.name(),
            timed: true,
        })
        .collect();
    // The forward kernels are faster than the direct ones wherever they apply (lavapipe).
    let rule = if DxVariant::Forward.applies(k, geom) {
        DxVariant::Forward
    } else {
        DxVariant::Direct
    };
    let variant = gpu.choose_variant(&key, &candidates, rule, |v| {
        time_dx(gpu, v, dy, w, geom, &dx.shape)
    })?;
    conv2d_backward_input_variant(gpu, variant, dy, w, opts, dx)
}

/// Seconds of one run of the dx `variant` on scratch tensors of these shapes (the best of three,
/// after one that compiles the pipelines).
#[cfg(not(target_arch = "wasm32"))]
fn time_dx(
    gpu: &Gpu,
    variant: DxVariant,
    dy: &Tensor,
    w: &Tensor,
    geom: Conv2dGeom,
    dx_shape: &[usize],
) -> Result<f64> {
    let wave = crate::gpu::tuning_data;
    let dy = Tensor::from_slice(gpu, &dy.shape, &wave(dy.numel()), "tune dy")?;
    let w = Tensor::from_slice(gpu, &w.shape, &wave(w.numel()), "tune w")?;
    let dx = Tensor::zeros(gpu, dx_shape, "tune dx")?;
    let opts = Conv2dGradOptions {
        geom,
        out_scale: 1.0,
        accumulate: false,
    };
    let d = conv2d_backward_input_variant(gpu, variant, &dy, &w, opts, &dx)?;
    crate::gpu::time_dispatches(gpu, &d)
}

#[cfg(target_arch = "wasm32")]
fn time_dx(
    _: &Gpu,
    _: DxVariant,
    _: &Tensor,
    _: &Tensor,
    _: Conv2dGeom,
    _: &[usize],
) -> Result<f64> {
    Err(Error::unsupported(
        "conv2d dx",
        "no kernel timing in the browser",
    ))
}

/// [`conv2d_backward_input`] with the given variant (an error where it does not apply).
pub fn conv2d_backward_input_variant(
    gpu: &Gpu,
    variant: DxVariant,
    dy: &Tensor,
    w: &Tensor,
    opts: Conv2dGradOptions,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    let Conv2dGradOptions {
        geom,
        out_scale,
        accumulate,
    } = opts;
    let dy_shape = geom.output_shape(&dx.shape, &w.shape)?;
    crate::ops::same_shape("conv2d backward dy", &dy_shape, &dy.shape)?;
    let k = check_geom("conv2d_backward_input", &w.shape, geom)?;
    crate::ops::check_no_alias(
        "conv2d_backward_input",
        &[("dx", dx)],
        &[("dy", dy), ("w", w)],
    )?;
    if variant == DxVariant::Forward {
        return dx_by_forward(gpu, dy, w, k, opts, dx);
    }
    let [n, cout, ho, wo] = dy_shape;
    let (cin, h, wd) = (dx.shape[1], dx.shape[2], dx.shape[3]);
    let up = geom.upsample;
    let spec = match (k, geom.stride, up) {
        (3, 1, false) => &DX_K3S1,
        (1, 1, false) => &DX_K1S1,
        (3, 1, true) => &DX_K3S1_UP,
        (1, 1, true) => &DX_K1S1_UP,
        (3, 2, false) => &DX_K3S2,
        (1, 2, false) => &DX_K1S2,
        (3, 2, true) => &DX_K3S2_UP,
        _ => &DX_K1S2_UP,
    };
    // k = 3 stride 1: T3 × T3 tiles. Otherwise PX pixels along a row; stride 2 without
    // upsampling: of one parity, with four parity classes in workgroup id y.
    let (rows, row_blocks, phases) = match (k, geom.stride, up) {
        (3, 1, _) => (h.div_ceil(DX_T3), wd.div_ceil(DX_T3), 1),
        (_, 2, false) => (h.div_ceil(2), wd.div_ceil(2).div_ceil(DX_PX), 4),
        _ => (h, wd.div_ceil(DX_PX), 1),
    };
    let blocks = n * rows * row_blocks;
    let params = InParams {
        n: to_u32("N", n)?,
        cin: to_u32("Cin", cin)?,
        h: to_u32("H", h)?,
        w: to_u32("W", wd)?,
        cout: to_u32("Cout", cout)?,
        ho: to_u32("Ho", ho)?,
        wo: to_u32("Wo", wo)?,
        pad_top: to_u32("pad", geom.pad[0])?,
        pad_left: to_u32("pad", geom.pad[1])?,
        row_blocks: to_u32("row blocks", row_blocks)?,
        rows: to_u32("rows", rows)?,
        blocks: to_u32("pixel blocks", blocks)?,
        accumulate: accumulate as u32,
        out_scale,
        _pad0: 0,
        _pad1: 0,
    };
    let [gx, gz, _] = grid(to_u32("workgroups", blocks.div_ceil(DX_WG))?);
    let gy = cin.div_ceil(DX_CI) * phases;
    check_dims("input", &[("channel blocks", gy)])?;
    Ok(vec![gpu.dispatch(
        spec,
        &params,
        &[&dy.buffer, &w.buffer, &dx.buffer],
        [gx, gy as u32, gz],
    )])
}

/// [`DxVariant::Forward`]: packs the flipped, transposed weight into a buffer owned by the
/// returned dispatches, then convolves dy with it.
fn dx_by_forward(
    gpu: &Gpu,
    dy: &Tensor,
    w: &Tensor,
    k: usize,
    opts: Conv2dGradOptions,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    let geom = opts.geom;
    if !DxVariant::Forward.applies(k, geom) {
        return Err(Error::unsupported(
            "conv2d_backward_input",
            format!(
                "the forward variant needs stride 1, no upsampling and padding < k, got {geom:?}"
            ),
        ));
    }
    let (cout, cin) = (w.shape[0], w.shape[1]);
    let packed = Tensor::zeros(gpu, &[cin.div_ceil(4), cout, k, k, 4], "dx weight")?;
    let zero_bias = Tensor::zeros(gpu, &[cin], "dx bias")?;
    let pack = crate::ops::conv_pack::pack_flipped_transposed(gpu, w, &packed)?;
    let [t, l, b, r] = geom.pad;
    let g = Conv2dGeom {
        stride: 1,
        pad: [k - 1 - t, k - 1 - l, k - 1 - b, k - 1 - r],
        upsample: false,
    };
    let epi = Epilogue {
        temb: None,
        residual: None,
        out_scale: opts.out_scale,
        accumulate: opts.accumulate,
    };
    let inputs = Conv2dInputs {
        x: dy,
        w: &packed,
        bias: &zero_bias,
    };
    let conv = conv2d::conv2d(gpu, inputs, g, &epi, dx)?;
    Ok(vec![pack, conv])
}

/// Number of reduction chunks for the weight gradient: enough invocations to fill the device
/// (few on a CPU adapter, many on a GPU), at most one chunk per reduction unit and a bounded
/// scratch buffer.
fn dw_chunks(gpu: &Gpu, units: usize, lanes_per_chunk: usize, total: usize) -> usize {
    let target: usize = if gpu.is_cpu() {
        // About 8 workgroups of 8 invocations per CPU thread.
        #[cfg(not(target_arch = "wasm32"))]
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        #[cfg(target_arch = "wasm32")]
        let threads = 4;
        64 * threads
    } else {
        1 << 16
    };
    let max_bytes = (gpu.limits.max_storage_buffer_binding_size as usize).min(64 << 20);
    let by_mem = (max_bytes / (4 * total)).max(1);
    target
        .div_ceil(lanes_per_chunk)
        .min(by_mem)
        .min(units)
        .max(1)
}

/// `dw [Cout, Cin, k, k] (+)= out_scale · Σ_{n, oy, ox} dy ⊗ x_patch` and
/// `db [Cout] (+)= out_scale · Σ_{n, oy, ox} dy`: the gradients of
/// [`crate::ops::conv2d::conv2d`]'s weight and bias given `dy [N, Cout, Ho, Wo]` and the conv's
/// input `x [N, Cin, H, W]`, for geometry `opts.geom`. `opts.accumulate`: add to `dw` / `db`
/// instead of overwriting them.
///
/// Returns two dispatches to run in order: partial sums over chunks of 4 × 4 dy tiles into a
/// scratch buffer allocated here (`[chunks, Cout·Cin·k² + Cout]` f32, at most 64 MiB, kept
/// alive by the dispatches' bind groups; each returned pair owns its own), then their reduction
/// into `dw` and `db`. The chunk count adapts to the adapter: few on a CPU driver (where the
/// partials cost), many on a GPU.
pub fn conv2d_backward_weight(
    gpu: &Gpu,
    dy: &Tensor,
    x: &Tensor,
    opts: Conv2dGradOptions,
    dw: &Tensor,
    db: &Tensor,
) -> Result<Vec<Dispatch>> {
    let Conv2dGradOptions {
        geom,
        out_scale,
        accumulate,
    } = opts;
    let dy_shape = geom.output_shape(&x.shape, &dw.shape)?;
    crate::ops::same_shape("conv2d backward dy", &dy_shape, &dy.shape)?;
    let k = check_geom("conv2d_backward_weight", &dw.shape, geom)?;
    let [n, cout, ho, wo] = dy_shape;
    crate::ops::same_shape("conv2d backward db", &[cout], &db.shape)?;
    crate::ops::check_no_alias(
        "conv2d_backward_weight",
        &[("dw", dw), ("db", db)],
        &[("dy", dy), ("x", x)],
    )?;
    let (cin, h, wd) = (x.shape[1], x.shape[2], x.shape[3]);
    let nw = cout * cin * k * k;
    let total = nw + cout;
    // The reduction runs over 4 × 4 dy tiles, one invocation per (output, input) channel block
    // and chunk.
    let (tiles_x, tiles_y) = (wo.div_ceil(4), ho.div_ceil(4));
    let (spec, co_per, ci_per) = match (k, geom.stride) {
        (3, 1) => (&DW_TILE_K3S1, DW_T3_CO, DW_T3_CI),
        (3, _) => (&DW_TILE_K3S2, DW_T3_CO, DW_T3_CI),
        (_, 1) => (&DW_TILE_K1S1, DW_T1_CO, DW_T1_CI),
        _ => (&DW_TILE_K1S2, DW_T1_CO, DW_T1_CI),
    };
    let (co_blocks, ci_blocks) = (cout.div_ceil(co_per), cin.div_ceil(ci_per));
    let units = n * tiles_x * tiles_y;
    let lanes = co_blocks * ci_blocks;
    let chunks = dw_chunks(gpu, units, lanes, total);
    let per_chunk = units.div_ceil(chunks);
    let chunks = units.div_ceil(per_chunk);
    let part = Tensor::zeros(gpu, &[chunks, total], "conv2d_backward_weight partial sums")?;
    let params = WParams {
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
        per_chunk: to_u32("units per chunk", per_chunk)?,
        chunks: to_u32("chunks", chunks)?,
        nw: to_u32("Cout·Cin·k²", nw)?,
        total: to_u32("Cout·Cin·k² + Cout", total)?,
        accumulate: accumulate as u32,
        out_scale,
        tiles_x: to_u32("tiles", tiles_x)?,
        tiles_y: to_u32("tiles", tiles_y)?,
        co_blocks: to_u32("channel blocks", co_blocks)?,
        ci_blocks: to_u32("channel blocks", ci_blocks)?,
    };
    let buffers = [&dy.buffer, &x.buffer, &part.buffer, &dw.buffer, &db.buffer];
    let wgs = to_u32("workgroups", (chunks * lanes).div_ceil(DW_TILE_WG))?;
    let partial = gpu.dispatch(spec, &params, &buffers, grid(wgs));
    let reduce = gpu.dispatch(
        &DW_REDUCE,
        &params,
        &buffers,
        grid(to_u32("workgroups", total.div_ceil(DW_REDUCE_WG))?),
    );
    Ok(vec![partial, reduce])
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::{kernel_check, KernelCheck};
    let dx = |k: KernelCheck| {
        k.workgroup_size([DX_WG])
            .shader_const("WG", DX_WG)
            .shader_const("PX", DX_PX)
            .shader_const("CI", DX_CI)
    };
    let dw3 = |k: KernelCheck| {
        k.workgroup_size([DW_TILE_WG])
            .shader_const("T3_WG", DW_TILE_WG)
            .shader_const("T3_CO", DW_T3_CO)
            .shader_const("T3_CI", DW_T3_CI)
    };
    let dw1 = |k: KernelCheck| {
        k.workgroup_size([DW_TILE_WG])
            .shader_const("T1_CO", DW_T1_CO)
            .shader_const("T1_CI", DW_T1_CI)
    };
    vec![
        dx(kernel_check!(DX_K3S1)),
        dx(kernel_check!(DX_K1S1)),
        dx(kernel_check!(DX_K3S1_UP)),
        dx(kernel_check!(DX_K1S1_UP)),
        dx(kernel_check!(DX_K3S2)),
        dx(kernel_check!(DX_K1S2)),
        dx(kernel_check!(DX_K3S2_UP)),
        dx(kernel_check!(DX_K1S2_UP)),
        dw3(kernel_check!(DW_TILE_K3S1)),
        dw3(kernel_check!(DW_TILE_K3S2)),
        dw1(kernel_check!(DW_TILE_K1S1)),
        dw1(kernel_check!(DW_TILE_K1S2)),
        kernel_check!(DW_REDUCE).workgroup_size([DW_REDUCE_WG]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::cpu::conv2d_backward as cpu_bwd;
    use crate::testing::{assert_close, gpu, Rng};

    #[derive(Clone, Copy, Debug)]
    struct Case {
        n: usize,
        cin: usize,
        cout: usize,
        h: usize,
        w: usize,
        k: usize,
        geom: Conv2dGeom,
        out_scale: f32,
        accumulate: bool,
    }

    /// A case with scale 1, overwriting (see [`Case::with`]).
    fn case(
        n: usize,
        cin: usize,
        cout: usize,
        h: usize,
        w: usize,
        k: usize,
        geom: Conv2dGeom,
    ) -> Case {
        Case {
            n,
            cin,
            cout,
            h,
            w,
            k,
            geom,
            out_scale: 1.0,
            accumulate: false,
        }
    }

    impl Case {
        /// This case with output scale `out_scale`, accumulating when `accumulate`.
        fn with(self, out_scale: f32, accumulate: bool) -> Case {
            Case {
                out_scale,
                accumulate,
                ..self
            }
        }

        /// Its gradient options.
        fn opts(&self) -> Conv2dGradOptions {
            Conv2dGradOptions {
                geom: self.geom,
                out_scale: self.out_scale,
                accumulate: self.accumulate,
            }
        }
    }

    /// Runs both GPU backward ops on random data (gradients pre-filled with random values) and
    /// compares them with the CPU reference.
    fn check(c: &Case, seed: u64) {
        let gpu = gpu();
        let mut rng = Rng::new(seed);
        let x_shape = [c.n, c.cin, c.h, c.w];
        let w_shape = [c.cout, c.cin, c.k, c.k];
        let dy_shape = c.geom.output_shape(&x_shape, &w_shape).unwrap();
        let numel = |s: &[usize]| s.iter().product::<usize>();
        let x = rng.normals(numel(&x_shape), 1.0);
        let w = rng.normals(numel(&w_shape), 1.0 / ((c.cin * c.k * c.k) as f32).sqrt());
        let g = rng.normals(numel(&dy_shape), 1.0);
        let dx0 = rng.normals(numel(&x_shape), 1.0);
        let dw0 = rng.normals(numel(&w_shape), 1.0);
        let db0 = rng.normals(c.cout, 1.0);

        let (mut dx, mut dw, mut db) = (dx0.clone(), dw0.clone(), db0.clone());
        let args = cpu_bwd::BackwardInputArgs {
            dy: &g,
            dy_shape,
            w: &w,
            w_shape,
            dx: &mut dx,
            dx_shape: x_shape,
        };
        cpu_bwd::conv2d_backward_input(args, c.opts()).unwrap();
        let args = cpu_bwd::BackwardWeightArgs {
            dy: &g,
            dy_shape,
            x: &x,
            x_shape,
            dw: &mut dw,
            dw_shape: w_shape,
            db: &mut db,
        };
        cpu_bwd::conv2d_backward_weight(args, c.opts()).unwrap();

        let t = |shape: &[usize], data: &[f32], label: &str| {
            Tensor::from_slice(gpu, shape, data, label).unwrap()
        };
        let (tx, tw, tg) = (
            t(&x_shape, &x, "x"),
            t(&w_shape, &w, "w"),
            t(&dy_shape, &g, "dy"),
        );
        let (tdx, tdw, tdb) = (
            t(&x_shape, &dx0, "dx"),
            t(&w_shape, &dw0, "dw"),
            t(&[c.cout], &db0, "db"),
        );
        let ds = conv2d_backward_weight(gpu, &tg, &tx, c.opts(), &tdw, &tdb).unwrap();
        pollster::block_on(gpu.run(&ds)).unwrap();
        let what = format!("{c:?}");
        // Sums of up to N·Ho·Wo unit-variance products: allow for f32 rounding of their size.
        let terms = (c.n * dy_shape[2] * dy_shape[3]) as f32;
        let tol = 1e-5 * terms.sqrt() * c.out_scale.abs().max(1.0);
        for v in DxVariant::ALL
            .into_iter()
            .filter(|v| v.applies(c.k, c.geom))
        {
            tdx.write(gpu, &dx0).unwrap();
            let d = conv2d_backward_input_variant(gpu, v, &tg, &tw, c.opts(), &tdx).unwrap();
            pollster::block_on(gpu.run(&d)).unwrap();
            assert_close(
                &tdx.read_blocking(gpu).unwrap(),
                &dx,
                1e-4,
                1e-4,
                &format!("dx[{}] {what}", v.name()),
            );
        }
        assert_close(
            &tdw.read_blocking(gpu).unwrap(),
            &dw,
            tol,
            1e-4,
            &format!("dw {what}"),
        );
        assert_close(
            &tdb.read_blocking(gpu).unwrap(),
            &db,
            tol,
            1e-4,
            &format!("db {what}"),
        );
    }

    fn run(cases: &[Case], seed: u64) {
        for (i, c) in cases.iter().enumerate() {
            check(c, seed + i as u64);
        }
    }

    fn pad(pad: [usize; 4], stride: usize) -> Conv2dGeom {
        Conv2dGeom {
            stride,
            pad,
            upsample: false,
        }
    }

    #[test]
    fn backward_3x3_stride1_matches_cpu() {
        let same = Conv2dGeom::same(3);
        run(
            &[
                case(1, 1, 1, 1, 1, 3, same).with(1.0, false),
                case(2, 3, 5, 7, 9, 3, same).with(1.0, false),
                case(3, 5, 13, 5, 11, 3, same).with(0.7, true),
                case(1, 17, 9, 13, 6, 3, same).with(-1.5, false),
                case(2, 9, 33, 6, 5, 3, same).with(1.0, true),
                case(2, 4, 6, 4, 7, 3, pad([0; 4], 1)).with(2.0, false),
                case(2, 5, 3, 6, 5, 3, pad([0, 1, 0, 1], 1)).with(1.0, true),
                case(1, 3, 4, 5, 6, 3, pad([2, 0, 1, 2], 1)).with(0.5, false),
            ],
            100,
        );
    }

    #[test]
    fn backward_3x3_stride2_matches_cpu() {
        run(
            &[
                case(1, 4, 4, 8, 8, 3, Conv2dGeom::downsample(1)).with(1.0, false),
                case(2, 3, 6, 7, 9, 3, Conv2dGeom::downsample(1)).with(0.7, true),
                case(1, 4, 4, 8, 8, 3, Conv2dGeom::downsample(0)).with(1.0, false),
                case(2, 5, 7, 9, 6, 3, Conv2dGeom::downsample(0)).with(-1.5, true),
                case(3, 9, 5, 11, 13, 3, Conv2dGeom::downsample(0)).with(1.0, false),
                case(1, 2, 3, 1, 1, 3, Conv2dGeom::downsample(1)).with(1.0, false),
                case(2, 3, 5, 6, 7, 3, pad([0, 1, 0, 1], 2)).with(1.0, true),
                case(1, 10, 3, 10, 9, 3, pad([1, 0, 2, 1], 2)).with(2.0, false),
            ],
            200,
        );
    }

    #[test]
    fn backward_1x1_matches_cpu() {
        let g = Conv2dGeom::same(1);
        run(
            &[
                case(1, 1, 1, 1, 1, 1, g).with(1.0, false),
                case(2, 6, 10, 5, 7, 1, g).with(1.0, true),
                case(1, 19, 3, 9, 9, 1, g).with(0.5, false),
                case(3, 33, 35, 3, 2, 1, g).with(1.0, false),
                case(2, 5, 6, 7, 5, 1, pad([0; 4], 2)).with(1.0, false),
                case(2, 5, 6, 8, 6, 1, pad([1; 4], 2)).with(-2.0, true),
                case(1, 3, 4, 3, 5, 1, pad([1, 2, 0, 1], 1)).with(1.0, true),
                case(2, 3, 4, 5, 6, 1, pad([0, 1, 0, 1], 2)).with(1.0, false),
            ],
            300,
        );
    }

    #[test]
    fn backward_upsample_matches_cpu() {
        let up = Conv2dGeom::upsample();
        let up_s = |stride: usize, pad: [usize; 4]| Conv2dGeom {
            stride,
            pad,
            upsample: true,
        };
        run(
            &[
                case(1, 4, 4, 4, 4, 3, up).with(1.0, false),
                case(2, 3, 5, 3, 5, 3, up).with(0.7, true),
                case(1, 9, 6, 1, 1, 3, up).with(1.0, false),
                case(2, 5, 3, 3, 4, 1, up_s(1, [0; 4])).with(1.0, true),
                case(1, 3, 4, 4, 3, 3, up_s(1, [0, 1, 0, 1])).with(-1.5, false),
                case(2, 3, 5, 5, 3, 3, up_s(2, [1; 4])).with(1.0, false),
                case(1, 4, 3, 3, 5, 3, up_s(2, [0, 0, 1, 1])).with(2.0, true),
                case(2, 3, 4, 3, 3, 1, up_s(2, [0, 1, 0, 1])).with(1.0, false),
            ],
            400,
        );
    }

    #[test]
    fn backward_long_reduction_matches_cpu() {
        // Several 4 × 4 dy tiles per reduction chunk (on machines with few CPU threads) and
        // several channel blocks per invocation grid.
        run(
            &[
                case(4, 20, 40, 20, 18, 3, Conv2dGeom::same(3)).with(1.0, true),
                case(3, 24, 20, 17, 20, 3, Conv2dGeom::downsample(1)).with(0.5, false),
                case(4, 36, 34, 15, 16, 1, Conv2dGeom::same(1)).with(1.0, true),
                case(2, 17, 20, 9, 8, 3, Conv2dGeom::upsample()).with(-1.0, false),
            ],
            600,
        );
    }

    /// CPU backward vs central differences of the CPU forward: loss = Σ r · conv(x, w, b)·s,
    /// so ∂loss/∂out = r and the analytic gradients are the backward ops applied to dy = r.
    /// The conv is linear in each argument, so the differences are exact up to f32 rounding.
    fn finite_differences(c: &Case, seed: u64) {
        let mut rng = Rng::new(seed);
        let x_shape = [c.n, c.cin, c.h, c.w];
        let w_shape = [c.cout, c.cin, c.k, c.k];
        let dy_shape = c.geom.output_shape(&x_shape, &w_shape).unwrap();
        let x = rng.normals(x_shape.iter().product(), 1.0);
        let w = rng.normals(w_shape.iter().product(), 0.5);
        let b = rng.normals(c.cout, 0.5);
        let r = rng.normals(dy_shape.iter().product(), 1.0);
        let epi = cpu::conv2d::Epilogue {
            out_scale: c.out_scale,
            ..Default::default()
        };
        let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
            let inputs = cpu::conv2d::Conv2dInputs {
                x,
                x_shape,
                w,
                w_shape,
                bias: b,
            };
            let (out, _) = cpu::conv2d::conv2d(inputs, c.geom, &epi).unwrap();
            out.iter().zip(&r).map(|(&o, &r)| o as f64 * r as f64).sum()
        };
        let h = 0.05f32;
        // ∂loss/∂v[i] for every element of v, where `f` evaluates the loss with v replaced.
        let numeric = |v: &[f32], f: &dyn Fn(&[f32]) -> f64| -> Vec<f32> {
            (0..v.len())
                .map(|i| {
                    let mut p = v.to_vec();
                    p[i] += h;
                    let lp = f(&p);
                    p[i] = v[i] - h;
                    let lm = f(&p);
                    ((lp - lm) / (2.0 * h as f64)) as f32
                })
                .collect()
        };
        let mut dx = vec![0f32; x.len()];
        let mut dw = vec![0f32; w.len()];
        let mut db = vec![0f32; c.cout];
        let opts = Conv2dGradOptions {
            accumulate: false,
            ..c.opts()
        };
        let args = cpu_bwd::BackwardInputArgs {
            dy: &r,
            dy_shape,
            w: &w,
            w_shape,
            dx: &mut dx,
            dx_shape: x_shape,
        };
        cpu_bwd::conv2d_backward_input(args, opts).unwrap();
        let args = cpu_bwd::BackwardWeightArgs {
            dy: &r,
            dy_shape,
            x: &x,
            x_shape,
            dw: &mut dw,
            dw_shape: w_shape,
            db: &mut db,
        };
        cpu_bwd::conv2d_backward_weight(args, opts).unwrap();
        let what = format!("finite differences {c:?}");
        let nx = numeric(&x, &|p| loss(p, &w, &b));
        let nw = numeric(&w, &|p| loss(&x, p, &b));
        let nb = numeric(&b, &|p| loss(&x, &w, p));
        assert_close(&dx, &nx, 1e-3, 1e-2, &format!("dx {what}"));
        assert_close(&dw, &nw, 1e-3, 1e-2, &format!("dw {what}"));
        assert_close(&db, &nb, 1e-3, 1e-2, &format!("db {what}"));
        // Something was actually checked: the gradients are not all zero.
        assert!(dx.iter().any(|v| v.abs() > 1e-2) && dw.iter().any(|v| v.abs() > 1e-2));
    }

    #[test]
    fn cpu_backward_matches_finite_differences() {
        let up_s = |stride: usize, pad: [usize; 4]| Conv2dGeom {
            stride,
            pad,
            upsample: true,
        };
        for (i, c) in [
            case(2, 3, 2, 5, 4, 3, Conv2dGeom::same(3)).with(1.0, false),
            case(1, 2, 3, 4, 5, 3, pad([0; 4], 1)).with(0.7, false),
            case(2, 2, 3, 5, 6, 3, Conv2dGeom::downsample(1)).with(1.0, false),
            case(1, 3, 2, 5, 5, 3, Conv2dGeom::downsample(0)).with(-1.5, false),
            case(1, 2, 3, 3, 4, 3, Conv2dGeom::upsample()).with(1.0, false),
            case(1, 2, 2, 3, 3, 3, up_s(2, [0, 1, 0, 1])).with(1.0, false),
            case(2, 3, 2, 3, 4, 1, Conv2dGeom::same(1)).with(2.0, false),
            case(1, 2, 3, 5, 4, 1, pad([1, 2, 0, 1], 2)).with(1.0, false),
            case(1, 2, 2, 2, 3, 1, up_s(1, [0; 4])).with(1.0, false),
        ]
        .iter()
        .enumerate()
        {
            finite_differences(c, 500 + i as u64);
        }
    }

    #[test]
    fn cpu_backward_hand_computed() {
        // Upsampled 1×1 input of one channel, 1×1 kernel w = 2, two output channels (w = 2, -1):
        // each of the 2×2 output pixels reads the input, so dx = Σ_pixels Σ_co dy · w.
        let geom = Conv2dGeom {
            stride: 1,
            pad: [0; 4],
            upsample: true,
        };
        let opts = |geom, out_scale, accumulate| Conv2dGradOptions {
            geom,
            out_scale,
            accumulate,
        };
        let dy = [1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5];
        let mut dx = [10.0];
        let args = cpu_bwd::BackwardInputArgs {
            dy: &dy,
            dy_shape: [1, 2, 2, 2],
            w: &[2.0, -1.0],
            w_shape: [2, 1, 1, 1],
            dx: &mut dx,
            dx_shape: [1, 1, 1, 1],
        };
        cpu_bwd::conv2d_backward_input(args, opts(geom, 1.0, true)).unwrap();
        // 10 + 2·(1+2+3+4) - 1·2 = 28.
        assert_eq!(dx, [28.0]);
        let (mut dw, mut db) = ([0.0; 2], [7.0; 2]);
        let args = cpu_bwd::BackwardWeightArgs {
            dy: &dy,
            dy_shape: [1, 2, 2, 2],
            x: &[3.0],
            x_shape: [1, 1, 1, 1],
            dw: &mut dw,
            dw_shape: [2, 1, 1, 1],
            db: &mut db,
        };
        cpu_bwd::conv2d_backward_weight(args, opts(geom, 0.5, false)).unwrap();
        // dw = 0.5 · 3 · Σ dy per channel, db = 0.5 · Σ dy (overwriting the 7s).
        assert_eq!((dw, db), ([15.0, 3.0], [5.0, 1.0]));

        // 3×3 "same" conv of a 2×2 input with ones: every output pixel sees every input pixel,
        // so dx = Σ dy everywhere; stride 2 with pad (0,1,0,1) on 3×3 sees x[0..3, 0..3].
        let mut dx = [0.0; 4];
        let args = cpu_bwd::BackwardInputArgs {
            dy: &[1.0, 2.0, 3.0, 4.0],
            dy_shape: [1, 1, 2, 2],
            w: &[1.0; 9],
            w_shape: [1, 1, 3, 3],
            dx: &mut dx,
            dx_shape: [1, 1, 2, 2],
        };
        cpu_bwd::conv2d_backward_input(args, opts(Conv2dGeom::same(3), 1.0, false)).unwrap();
        assert_eq!(dx, [10.0; 4]);
        let (mut dw, mut db) = ([0.0; 9], [0.0]);
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let args = cpu_bwd::BackwardWeightArgs {
            dy: &[2.0],
            dy_shape: [1, 1, 1, 1],
            x: &x,
            x_shape: [1, 1, 3, 3],
            dw: &mut dw,
            dw_shape: [1, 1, 3, 3],
            db: &mut db,
        };
        let down = opts(Conv2dGeom::downsample(0), 1.0, false);
        cpu_bwd::conv2d_backward_weight(args, down).unwrap();
        let want: Vec<f32> = x.iter().map(|v| 2.0 * v).collect();
        assert_eq!((dw.to_vec(), db), (want, [2.0]));
    }

    #[test]
    fn backward_rejects_bad_arguments() {
        let gpu = gpu();
        let z = |shape: &[usize]| Tensor::zeros(gpu, shape, "t").unwrap();
        let same = Conv2dGeom::same(3);
        let (x, w, dy) = (z(&[2, 4, 8, 8]), z(&[6, 4, 3, 3]), z(&[2, 6, 8, 8]));
        let (dx, dw, db) = (z(&[2, 4, 8, 8]), z(&[6, 4, 3, 3]), z(&[6]));
        let opts = |geom, accumulate| Conv2dGradOptions {
            geom,
            out_scale: 1.0,
            accumulate,
        };
        let input = |dy: &Tensor, w: &Tensor, geom, dx: &Tensor| {
            conv2d_backward_input(gpu, dy, w, opts(geom, false), dx)
        };
        let weight = |dy: &Tensor, x: &Tensor, geom, dw: &Tensor, db: &Tensor| {
            conv2d_backward_weight(gpu, dy, x, opts(geom, true), dw, db)
        };
        assert!(input(&dy, &w, same, &dx).is_ok());
        assert!(weight(&dy, &x, same, &dw, &db).is_ok());
        fn shape_err<T>(r: Result<T>) -> bool {
            matches!(r, Err(Error::Shape { .. }))
        }
        fn invalid<T>(r: Result<T>) -> bool {
            matches!(
                r,
                Err(Error::Operand { .. } | Error::Unsupported { .. } | Error::Alias { .. })
            )
        }
        // dy not the conv output shape; wrong Cin; wrong db.
        assert!(shape_err(input(&z(&[2, 6, 8, 7]), &w, same, &dx)));
        assert!(shape_err(input(&dy, &z(&[6, 3, 3, 3]), same, &dx)));
        assert!(shape_err(weight(&z(&[2, 5, 8, 8]), &x, same, &dw, &db)));
        assert!(shape_err(weight(&dy, &x, same, &dw, &z(&[5]))));
        assert!(shape_err(weight(&dy, &x, same, &z(&[6, 4, 3, 1]), &db)));
        // Unsupported kernel or stride, 3-D input, input smaller than the kernel.
        let w5 = z(&[6, 4, 5, 5]);
        assert!(invalid(input(&dy, &w5, Conv2dGeom::same(5), &dx)));
        let s3 = Conv2dGeom { stride: 3, ..same };
        let dy3 = z(&[2, 6, 3, 3]);
        assert!(invalid(input(&dy3, &w, s3, &dx)));
        assert!(invalid(weight(&dy3, &x, s3, &dw, &db)));
        assert!(invalid(input(&dy, &w, same, &z(&[4, 8, 8]))));
        let nopad = Conv2dGeom {
            pad: [0; 4],
            ..same
        };
        let tiny = z(&[2, 4, 1, 1]);
        assert!(invalid(weight(&dy, &tiny, nopad, &dw, &db)));
        // Aliasing: gradient outputs must be distinct from the inputs and from each other.
        let sq = z(&[1, 1, 3, 3]);
        let sq_w = z(&[1, 1, 3, 3]);
        assert!(invalid(input(&sq, &sq_w, same, &sq)));
        let b1 = z(&[1]);
        assert!(invalid(weight(&sq, &sq_w, same, &sq_w, &b1)));
        assert!(invalid(weight(&sq_w, &sq, same, &sq_w, &b1)));
        // CPU reference: data lengths are checked too.
        let mut small = [0.0; 3];
        let args = cpu_bwd::BackwardInputArgs {
            dy: &[0.0; 4],
            dy_shape: [1, 1, 2, 2],
            w: &[0.0],
            w_shape: [1, 1, 1, 1],
            dx: &mut small,
            dx_shape: [1, 1, 2, 2],
        };
        let bad = cpu_bwd::conv2d_backward_input(args, opts(Conv2dGeom::same(1), false));
        assert!(matches!(bad, Err(Error::Shape { .. })));
    }

    /// GFLOP/s of the backward ops (2·N·Cout·Ho·Wo·Cin·k² each) next to the forward:
    /// `cargo test --release --lib ops::conv2d_backward -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn conv2d_backward_bench() {
        use crate::ops::conv2d::{conv2d, Epilogue};
        let gpu = gpu();
        println!("conv2d backward on {}", gpu.describe());
        let mut rng = Rng::new(7);
        let same = Conv2dGeom::same(3);
        for (n, cin, cout, hw, k, geom) in [
            (16, 32, 32, 28, 3, same),
            (16, 64, 64, 7, 3, same),
            (16, 64, 64, 14, 3, same),
            (16, 32, 32, 28, 3, Conv2dGeom::downsample(1)),
            (16, 64, 64, 7, 3, Conv2dGeom::upsample()),
            (16, 64, 32, 14, 1, Conv2dGeom::same(1)),
        ] {
            let x_shape = [n, cin, hw, hw];
            let w_shape = [cout, cin, k, k];
            let dy_shape = geom.output_shape(&x_shape, &w_shape).unwrap();
            let numel = |s: &[usize]| s.iter().product::<usize>();
            let mut t = |shape: &[usize], scale: f32| {
                Tensor::from_slice(gpu, shape, &rng.normals(numel(shape), scale), "t").unwrap()
            };
            let (x, w, b, dy) = (
                t(&x_shape, 1.0),
                t(&w_shape, 0.1),
                t(&[cout], 0.1),
                t(&dy_shape, 1.0),
            );
            let (out, dx, dw, db) = (
                t(&dy_shape, 0.0),
                t(&x_shape, 0.0),
                t(&w_shape, 0.0),
                t(&[cout], 0.0),
            );
            let flops = 2.0 * (numel(&dy_shape) * cin * k * k) as f64;
            // Best of 5 trials of 3 runs (the machine is shared: the minimum is the least
            // disturbed).
            let time = |ds: Vec<Dispatch>| {
                pollster::block_on(gpu.run(&ds)).unwrap();
                let runs = 3;
                let all: Vec<Dispatch> = (0..runs).flat_map(|_| ds.clone()).collect();
                (0..5)
                    .map(|_| {
                        let t0 = std::time::Instant::now();
                        pollster::block_on(gpu.run(&all)).unwrap();
                        t0.elapsed().as_secs_f64() / runs as f64
                    })
                    .fold(f64::INFINITY, f64::min)
            };
            let inputs = Conv2dInputs {
                x: &x,
                w: &w,
                bias: &b,
            };
            let fwd = time(vec![
                conv2d(gpu, inputs, geom, &Epilogue::default(), &out).unwrap()
            ]);
            let opts = Conv2dGradOptions {
                geom,
                out_scale: 1.0,
                accumulate: true,
            };
            let bin = time(conv2d_backward_input(gpu, &dy, &w, opts, &dx).unwrap());
            let bw = time(conv2d_backward_weight(gpu, &dy, &x, opts, &dw, &db).unwrap());
            let rate = |dt: f64| flops / dt / 1e9;
            println!(
                "N={n:2} {cin:3}→{cout:3} {hw:2}×{hw:2} k={k} s={} up={}: GFLOP/s forward {:6.2} | \
                 dx {:6.2} | dw+db {:6.2}   ({:.1} / {:.1} / {:.1} ms)",
                geom.stride,
                geom.upsample as u8,
                rate(fwd),
                rate(bin),
                rate(bw),
                fwd * 1e3,
                bin * 1e3,
                bw * 1e3,
            );
        }
    }
}
