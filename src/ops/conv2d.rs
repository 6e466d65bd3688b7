//! `shaders/conv2d*.wgsl`: 2-D convolution (NCHW f32, weights `[Cout, Cin, k, k]`, k = 1 or 3,
//! stride 1 or 2) with fused nearest ×2 upsampling of the input and a fused epilogue
//! `out = (conv(x, w) + bias[co] + temb[n, co] + residual) * out_scale`.
//!
//! Several kernels compute it ([`ConvVariant`]); [`conv2d`] lets the device pick one per shape
//! (see `gpu::tuning`), [`conv2d_variant`] runs a given one.
//!
//! The packed weight may be stored as f32 or as f16 ([`DType`], see [`upload_weight_as`]): every
//! variant exists in both storages, its shader composed with `shaders/conv2d_weights_f32.wgsl` or
//! `shaders/conv2d_weights_f16.wgsl` (the only code that reads binding 2); the arithmetic is f32
//! either way.

use crate::error::{Error, Result};
use crate::gpu::{
    grid, uniform_params, Access, Candidate, DType, Dispatch, Gpu, KernelSpec, Tensor,
    MAX_WORKGROUPS_PER_DIM,
};
pub use crate::ops::conv2d_operands::{upload_weight, upload_weight_as, Conv2dInputs, Epilogue};
use crate::ops::conv2d_operands::{with_weights, ConvShape};
use crate::ops::conv2d_tiled;
use crate::ops::conv2d_winograd::{self, Winograd};
use crate::options::Conv2dGeom;

const BINDINGS: &[Access] = &[
    Access::Uniform,
    Access::Read,      // x
    Access::Read,      // w
    Access::Read,      // bias
    Access::Read,      // temb (or dummy)
    Access::Read,      // residual (or dummy)
    Access::ReadWrite, // out
];

/// Every source of the conv2d forward variants (their digest keys the on-disk choice cache).
pub(crate) const SOURCES: &str = concat!(
    include_str!("../../shaders/conv2d_weights_f32.wgsl"),
    include_str!("../../shaders/conv2d_weights_f16.wgsl"),
    include_str!("../../shaders/conv2d_common.wgsl"),
    include_str!("../../shaders/conv2d_flat.wgsl"),
    include_str!("../../shaders/conv2d.wgsl"),
    include_str!("../../shaders/conv2d_subgroup.wgsl"),
    include_str!("../../shaders/conv2d_subgroup_c8.wgsl"),
    include_str!("../../shaders/conv2d_subgroup_c16.wgsl"),
    include_str!("../../shaders/conv2d_tiled.wgsl"),
    include_str!("../../shaders/conv2d_unrolled.wgsl"),
    include_str!("../../shaders/conv2d_winograd.wgsl"),
    include_str!("../../shaders/conv2d_winograd_weights.wgsl"),
);

const fn spec(name: &'static str, source: &'static str, entry: &'static str) -> KernelSpec {
    KernelSpec {
        name,
        source,
        entry,
        bindings: BINDINGS,
        params: &Params::LAYOUT,
    }
}

/// The entry points of one register-blocked variant's shader, by geometry, and its tile:
/// `TILE_R` rows × `cols` columns × `4·quads` channels (`TC`, `TQ` in its shader).
struct Entries {
    cols: usize,
    quads: usize,
    k3s1: KernelSpec,
    k3s2: KernelSpec,
    k1: KernelSpec,
    up3: KernelSpec,
}

/// The entry points of the shader `source` (pipeline-cache name `name`), tile `cols` × `quads`.
const fn entries(name: &'static str, source: &'static str, cols: usize, quads: usize) -> Entries {
    Entries {
        cols,
        quads,
        k3s1: spec(name, source, "conv_k3s1"),
        k3s2: spec(name, source, "conv_k3s2"),
        k1: spec(name, source, "conv_k1"),
        up3: spec(name, source, "conv_up3"),
    }
}

const REG: Entries = entries(
    "conv2d",
    with_weights!(
        "f32",
        "conv2d_common.wgsl",
        "conv2d_flat.wgsl",
        "conv2d.wgsl"
    ),
    8,
    2,
);
const REG_F16: Entries = entries(
    "conv2d_f16",
    with_weights!(
        "f16",
        "conv2d_common.wgsl",
        "conv2d_flat.wgsl",
        "conv2d.wgsl"
    ),
    8,
    2,
);

const UNROLLED: Entries = entries(
    "conv2d_unrolled",
    with_weights!(
        "f32",
        "conv2d_common.wgsl",
        "conv2d_flat.wgsl",
        "conv2d_unrolled.wgsl"
    ),
    4,
    2,
);
const UNROLLED_F16: Entries = entries(
    "conv2d_unrolled_f16",
    with_weights!(
        "f16",
        "conv2d_common.wgsl",
        "conv2d_flat.wgsl",
        "conv2d_unrolled.wgsl"
    ),
    4,
    2,
);

const SUBGROUP: Entries = entries(
    "conv2d_subgroup",
    with_weights!(
        "f32",
        "conv2d_common.wgsl",
        "conv2d_subgroup.wgsl",
        "conv2d_subgroup_c8.wgsl"
    ),
    8,
    2,
);
const SUBGROUP_F16: Entries = entries(
    "conv2d_subgroup_f16",
    with_weights!(
        "f16",
        "conv2d_common.wgsl",
        "conv2d_subgroup.wgsl",
        "conv2d_subgroup_c8.wgsl"
    ),
    8,
    2,
);

const SUBGROUP16: Entries = entries(
    "conv2d_subgroup16",
    with_weights!(
        "f32",
        "conv2d_common.wgsl",
        "conv2d_subgroup.wgsl",
        "conv2d_subgroup_c16.wgsl"
    ),
    4,
    4,
);
const SUBGROUP16_F16: Entries = entries(
    "conv2d_subgroup16_f16",
    with_weights!(
        "f16",
        "conv2d_common.wgsl",
        "conv2d_subgroup.wgsl",
        "conv2d_subgroup_c16.wgsl"
    ),
    4,
    4,
);

/// Output rows of one invocation's tile in the register-blocked kernels (`TR` in
/// conv2d_common.wgsl; columns and channels per variant, see [`Entries`]).
const TILE_R: usize = 4;
/// Invocations per workgroup of the `reg` and `subgroup` shaders (`WG` in each).
const REG_WG: usize = 64;
const SUBGROUP_WG: usize = 8;

/// A conv2d forward kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvVariant {
    /// Register-blocked 4 × 8 pixel × 8 channel tiles, every invocation loading its own weights,
    /// 64 invocations per workgroup over a flat job (`shaders/conv2d.wgsl`). Runs everywhere.
    Reg,
    /// The same tiles, with each subgroup of 8 sharing one channel block and loading its weights
    /// once, handed out by `subgroupBroadcast` (`shaders/conv2d_subgroup.wgsl`). For CPU drivers
    /// with 8-wide subgroups (lavapipe on AVX2); needs the `SUBGROUP` feature.
    Subgroup,
    /// `Subgroup` with 4 × 4 pixel × 16 channel tiles: fewer input loads per FMA and less
    /// padding waste on narrow images (MNIST's 28, 14, 7).
    Subgroup16,
    /// 4 × 4 pixel × 8 channel tiles whose per-channel work is straight-line code over named
    /// values (`shaders/conv2d_unrolled.wgsl`): for JITs that neither unroll loops nor keep
    /// private arrays in registers (SwiftShader's Subzero, the browser's software adapter).
    Unrolled,
    /// Implicit GEMM in workgroup-shared 64 × 64 tiles with barriers and coalesced loads
    /// (`shaders/conv2d_tiled.wgsl`, [`super::conv2d_tiled`]): the family for real GPUs.
    Tiled,
    /// Winograd F(2×2, 3×3) for stride-1 3×3 convs ([`super::conv2d_winograd`]): 16 instead of
    /// 36 multiplies per 2×2 tile and channel pair, its GEMM on the `reg` 1×1 kernel.
    Winograd,
    /// `Winograd` with its GEMM on the `subgroup16` 1×1 kernel (needs 8-wide subgroups).
    Winograd16,
}

impl ConvVariant {
    /// Every variant, in the order they are tried.
    pub const ALL: [ConvVariant; 7] = [
        ConvVariant::Reg,
        ConvVariant::Subgroup,
        ConvVariant::Subgroup16,
        ConvVariant::Unrolled,
        ConvVariant::Tiled,
        ConvVariant::Winograd,
        ConvVariant::Winograd16,
    ];

    /// The name used by `DDPM_KERNELS`, `--kernels`, benchmarks and checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            ConvVariant::Reg => "reg",
            ConvVariant::Subgroup => "subgroup",
            ConvVariant::Subgroup16 => "subgroup16",
            ConvVariant::Unrolled => "unrolled",
            ConvVariant::Tiled => "tiled",
            ConvVariant::Winograd => "winograd",
            ConvVariant::Winograd16 => "winograd16",
        }
    }

    /// Whether this variant can run on `gpu` (device features and limits).
    pub fn available(self, gpu: &Gpu) -> bool {
        match self {
            ConvVariant::Reg | ConvVariant::Unrolled | ConvVariant::Winograd => true,
            ConvVariant::Subgroup | ConvVariant::Subgroup16 | ConvVariant::Winograd16 => {
                gpu.has_subgroups_of(SUBGROUP_WG as u32)
            }
            ConvVariant::Tiled => conv2d_tiled::tiled_fits(&gpu.limits),
        }
    }

    /// Whether this variant computes convolutions of kernel size `k` and geometry `geom` (the
    /// Winograd variants: stride-1 3×3 without upsampling; the others: all).
    pub fn applies_to(self, k: usize, geom: Conv2dGeom) -> bool {
        match self {
            ConvVariant::Winograd | ConvVariant::Winograd16 => conv2d_winograd::applies(k, geom),
            _ => true,
        }
    }

    /// [`ConvVariant::applies_to`] `shape`, within `gpu`'s limits (Winograd's transformed tiles
    /// must fit a storage binding).
    fn applies(self, gpu: &Gpu, shape: &ConvShape) -> bool {
        self.applies_to(shape.k, shape.geom)
            && (self.winograd_gemm().is_none() || self.winograd(shape).fits(gpu))
    }

    /// A Winograd variant's tiling of `shape`: planes aligned to whole GEMM tiles, and for the
    /// subgroup GEMM to whole subgroups of them (its lanes share one weight group).
    fn winograd(self, shape: &ConvShape) -> Winograd {
        let align = match self {
            ConvVariant::Winograd16 => TILE_R * SUBGROUP16.cols * SUBGROUP_WG,
            _ => TILE_R * REG.cols,
        };
        Winograd::new(shape, align)
    }

    /// The register-blocked shader's entry points for weights stored as `dtype` (`None` for
    /// `Tiled` and the Winograd variants, which have their own ops).
    fn entries(self, dtype: DType) -> Option<&'static Entries> {
        let f16 = dtype == DType::F16;
        match self {
            ConvVariant::Reg => Some(if f16 { &REG_F16 } else { &REG }),
            ConvVariant::Subgroup => Some(if f16 { &SUBGROUP_F16 } else { &SUBGROUP }),
            ConvVariant::Subgroup16 => Some(if f16 { &SUBGROUP16_F16 } else { &SUBGROUP16 }),
            ConvVariant::Unrolled => Some(if f16 { &UNROLLED_F16 } else { &UNROLLED }),
            ConvVariant::Tiled | ConvVariant::Winograd | ConvVariant::Winograd16 => None,
        }
    }

    /// The variant whose 1×1 kernel runs a Winograd variant's GEMM (on its f32 weights).
    fn winograd_gemm(self) -> Option<ConvVariant> {
        match self {
            ConvVariant::Winograd => Some(ConvVariant::Reg),
            ConvVariant::Winograd16 => Some(ConvVariant::Subgroup16),
            _ => None,
        }
    }
}

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
        tiles_x: u32,
        tiles_img: u32,
        co_blocks: u32,
        total: u32,
        has_temb: u32,
        has_residual: u32,
        out_scale: f32,
        accumulate: u32,
        group_stride: u32,
    }
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("conv2d", what, v)
}

/// `out [N, Cout, Ho, Wo] = (conv(x [N, Cin, H, W], w) + bias [Cout] + temb [N, Cout] +
/// residual [N, Cout, Ho, Wo]) * out_scale` (see [`Conv2dInputs`] and [`Epilogue`]), where
/// `geom` gives stride, padding and upsampling (see [`Conv2dGeom::out_hw`]). k must be 1 or 3,
/// stride 1 or 2. `out` must not be any of the inputs.
///
/// The kernel variant is the device's choice for this shape (see [`ConvVariant`] and
/// `gpu::tuning`). The Upsample2D case (`Conv2dGeom::upsample()`: nearest ×2, 3×3, padding 1)
/// runs a dedicated entry point doing 4/9 of the FLOPs; other upsampling/padding combinations go
/// through the general ones.
pub fn conv2d(
    gpu: &Gpu,
    inputs: Conv2dInputs,
    geom: Conv2dGeom,
    epi: &Epilogue,
    out: &Tensor,
) -> Result<Dispatch> {
    let conv = Conv::new(gpu, inputs, geom, epi, out)?;
    let variant = choose(gpu, &conv)?;
    conv.dispatch(gpu, variant, inputs, epi, out)
}

/// [`conv2d`] with the given kernel variant (an error if it is not available on `gpu`).
pub fn conv2d_variant(
    gpu: &Gpu,
    variant: ConvVariant,
    inputs: Conv2dInputs,
    geom: Conv2dGeom,
    epi: &Epilogue,
    out: &Tensor,
) -> Result<Dispatch> {
    if !variant.available(gpu) {
        return Err(Error::unsupported(
            "conv2d",
            format!(
                "variant {} is not available on {}",
                variant.name(),
                gpu.describe()
            ),
        ));
    }
    let conv = Conv::new(gpu, inputs, geom, epi, out)?;
    if !variant.applies(gpu, &conv.shape) {
        return Err(Error::unsupported(
            "conv2d",
            format!(
                "variant {} does not compute {} (it needs a stride-1 3×3 conv without \
                 upsampling whose transformed tiles fit the device's limits)",
                variant.name(),
                conv.key()
            ),
        ));
    }
    conv.dispatch(gpu, variant, inputs, epi, out)
}

/// A checked convolution: its shapes and the register-blocked kernels' parameters.
struct Conv {
    shape: ConvShape,
    params: Params,
}

impl Conv {
    fn new(
        gpu: &Gpu,
        inputs: Conv2dInputs,
        geom: Conv2dGeom,
        epi: &Epilogue,
        out: &Tensor,
    ) -> Result<Self> {
        let shape = ConvShape::new(gpu, "conv2d", inputs, geom, epi, out)?;
        let [n, cin, h, wd] = shape.x_shape;
        let [_, cout, ho, wo] = shape.out_shape;
        // Tile counts for the `reg` tile; `params_for` redoes them for other tiles.
        let tiles_x = wo.div_ceil(REG.cols);
        let tiles_img = ho.div_ceil(TILE_R) * tiles_x;
        let co_blocks = cout.div_ceil(4 * REG.quads);
        let total = n * co_blocks * tiles_img;
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
            tiles_x: to_u32("tiles", tiles_x)?,
            tiles_img: to_u32("tiles", tiles_img)?,
            co_blocks: to_u32("channel blocks", co_blocks)?,
            total: to_u32("tiles × channel blocks", total)?,
            has_temb: epi.temb.is_some() as u32,
            has_residual: epi.residual.is_some() as u32,
            out_scale: epi.out_scale,
            accumulate: epi.accumulate as u32,
            group_stride: 0,
        };
        Ok(Conv { shape, params })
    }

    /// The key of this shape for variant choices: every dimension the kernels depend on, and
    /// the weight storage (f32 keys carry none, as before f16 storage existed, so that choices
    /// pinned in checkpoints still apply).
    fn key(&self) -> String {
        let s = &self.shape;
        let g = s.geom;
        format!(
            "conv2d {:?} -> {:?} k{} s{} pad{:?}{}{}",
            s.x_shape,
            s.out_shape,
            s.k,
            g.stride,
            g.pad,
            if g.upsample { " up" } else { "" },
            match s.dtype {
                DType::F32 => "",
                DType::F16 => " w:f16",
            }
        )
    }

    /// The entry point of a register-blocked variant for this geometry.
    fn spec(&self, e: &'static Entries) -> &'static KernelSpec {
        let g = self.shape.geom;
        match (self.shape.k, g.stride) {
            // diffusers Upsample2D: nearest ×2 then 3×3 padding 1, as 2×2 convs per output parity.
            (3, 1) if g.upsample && g.pad == [1; 4] => &e.up3,
            (3, 1) => &e.k3s1,
            (3, _) => &e.k3s2,
            _ => &e.k1,
        }
    }

    /// The kernel parameters for a tile of `cols` columns × `quads` channel quads.
    fn params_for(&self, cols: usize, quads: usize) -> Result<Params> {
        tiled_params(self.params, cols, quads)
    }

    /// The Winograd GEMM: `m = u · v`, 16 images each with its weight group (see
    /// [`Winograd::gemm_image`]), on the 1×1 kernel of `gemm_variant`.
    fn winograd_gemm(
        &self,
        gpu: &Gpu,
        wg: &Winograd,
        gemm_variant: ConvVariant,
        [v, u, zero_bias, m]: [&Tensor; 4],
    ) -> Result<Dispatch> {
        let e = gemm_variant
            .entries(DType::F32)
            .expect("a register-blocked GEMM variant");
        let (rows, cols) = wg.gemm_image();
        let [_, cin, _, _] = self.shape.x_shape;
        let base = Params {
            n: to_u32("N", conv2d_winograd::COMPONENTS)?,
            cin: to_u32("Cin", cin)?,
            h: to_u32("H", rows)?,
            w: to_u32("W", cols)?,
            cout: to_u32("Cout", self.shape.cout)?,
            ho: to_u32("Ho", rows)?,
            wo: to_u32("Wo", cols)?,
            upsample: 0,
            pad_top: 0,
            pad_left: 0,
            stride: 1,
            has_temb: 0,
            has_residual: 0,
            out_scale: 1.0,
            accumulate: 0,
            group_stride: to_u32("weight group", wg.group_stride())?,
            ..self.params
        };
        let params = tiled_params(base, e.cols, e.quads)?;
        Ok(gpu.dispatch(
            &e.k1,
            &params,
            &[
                &v.buffer,
                &u.buffer,
                &zero_bias.buffer,
                &zero_bias.buffer,
                &zero_bias.buffer,
                &m.buffer,
            ],
            Self::workgroups(gemm_variant, &params)?,
        ))
    }

    /// Workgroup counts of a register-blocked variant with parameters `p`.
    fn workgroups(variant: ConvVariant, p: &Params) -> Result<[u32; 3]> {
        if matches!(
            variant,
            ConvVariant::Reg | ConvVariant::Unrolled | ConvVariant::Tiled
        ) {
            return Ok(grid(to_u32(
                "workgroups",
                (p.total as usize).div_ceil(REG_WG),
            )?));
        }
        // Subgroup variants. x (folded into z when large): groups of 8 (image, tile) pairs;
        // y: channel block.
        let groups = (p.n as usize * p.tiles_img as usize).div_ceil(SUBGROUP_WG);
        let [x, z, _] = grid(to_u32("workgroups", groups)?);
        if p.co_blocks > MAX_WORKGROUPS_PER_DIM {
            return Err(Error::unsupported(
                "conv2d",
                format!(
                    "{} channel blocks exceed {MAX_WORKGROUPS_PER_DIM}",
                    p.co_blocks
                ),
            ));
        }
        Ok([x, p.co_blocks, z])
    }

    fn dispatch(
        &self,
        gpu: &Gpu,
        variant: ConvVariant,
        inputs: Conv2dInputs,
        epi: &Epilogue,
        out: &Tensor,
    ) -> Result<Dispatch> {
        if let Some(gemm_variant) = variant.winograd_gemm() {
            let wg = variant.winograd(&self.shape);
            return wg.dispatch(gpu, inputs, epi, out, |v, u, zero_bias, m| {
                self.winograd_gemm(gpu, &wg, gemm_variant, [v, u, zero_bias, m])
            });
        }
        let Some(entries) = variant.entries(self.shape.dtype) else {
            return conv2d_tiled::dispatch(gpu, &self.shape, inputs, epi, out);
        };
        let Conv2dInputs { x, w, bias } = inputs;
        let temb = epi.temb.unwrap_or(bias);
        let residual = epi.residual.unwrap_or(bias);
        let params = self.params_for(entries.cols, entries.quads)?;
        Ok(gpu.dispatch(
            self.spec(entries),
            &params,
            &[
                &x.buffer,
                &w.buffer,
                &bias.buffer,
                &temb.buffer,
                &residual.buffer,
                &out.buffer,
            ],
            Self::workgroups(variant, &params)?,
        ))
    }
}

/// `p` with the tile counts of a tile of `cols` columns × `quads` channel quads.
fn tiled_params(mut p: Params, cols: usize, quads: usize) -> Result<Params> {
    let tiles_x = (p.wo as usize).div_ceil(cols);
    let tiles_img = (p.ho as usize).div_ceil(TILE_R) * tiles_x;
    let co_blocks = (p.cout as usize).div_ceil(4 * quads);
    p.tiles_x = to_u32("tiles", tiles_x)?;
    p.tiles_img = to_u32("tiles", tiles_img)?;
    p.co_blocks = to_u32("channel blocks", co_blocks)?;
    p.total = to_u32(
        "tiles × channel blocks",
        p.n as usize * co_blocks * tiles_img,
    )?;
    Ok(p)
}

/// The variants available on `gpu`; `Auto` times those of the adapter's class (`reg` and
/// `subgroup` on CPU drivers, `reg` and `tiled` on GPUs).
fn candidates(gpu: &Gpu, conv: &Conv) -> Vec<Candidate<ConvVariant>> {
    ConvVariant::ALL
        .into_iter()
        .filter(|v| v.available(gpu) && v.applies(gpu, &conv.shape))
        .map(|v| Candidate {
            variant: v,
            name: v.name(),
            timed: match v {
                ConvVariant::Reg | ConvVariant::Unrolled | ConvVariant::Winograd => true,
                ConvVariant::Subgroup | ConvVariant::Subgroup16 | ConvVariant::Winograd16 => {
                    gpu.is_cpu()
                }
                ConvVariant::Tiled => !gpu.is_cpu(),
            },
        })
        .collect()
}

/// The rule of thumb: on real GPUs the tiled variant. On CPU drivers with 8-wide subgroups
/// (lavapipe, whose LLVM JIT unrolls the register-blocked loops) the subgroup variant once there
/// are enough tiles to fill its subgroups (fewer leave most of its lanes computing clamped
/// copies), else `reg`; on other CPU drivers (SwiftShader — the browser's software WebGPU —,
/// WARP) `unrolled`, 5–8× faster than `reg` per layer on SwiftShader's Subzero JIT.
fn heuristic(gpu: &Gpu, conv: &Conv) -> ConvVariant {
    let tiles = conv.params.n as usize * conv.params.tiles_img as usize;
    let subgroups = ConvVariant::Subgroup.available(gpu);
    if !gpu.is_cpu() && ConvVariant::Tiled.available(gpu) {
        ConvVariant::Tiled
    } else if gpu.is_cpu() && !subgroups {
        ConvVariant::Unrolled
    } else if gpu.is_cpu() && tiles >= 4 * SUBGROUP_WG {
        ConvVariant::Subgroup
    } else {
        ConvVariant::Reg
    }
}

fn choose(gpu: &Gpu, conv: &Conv) -> Result<ConvVariant> {
    gpu.choose_variant(
        &conv.key(),
        &candidates(gpu, conv),
        heuristic(gpu, conv),
        |v| time_variant(gpu, conv, v),
    )
}

/// Seconds of one run of `variant` on scratch tensors of `conv`'s shapes (the best of three,
/// after a run that compiles the pipeline).
#[cfg(not(target_arch = "wasm32"))]
fn time_variant(gpu: &Gpu, conv: &Conv, variant: ConvVariant) -> Result<f64> {
    let s = &conv.shape;
    let wave = crate::gpu::tuning_data;
    let x = Tensor::from_slice(gpu, &s.x_shape, &wave(s.x_shape.iter().product()), "tune x")?;
    let w_shape = [s.quads(), s.x_shape[1], s.k, s.k, 4];
    let values = wave(w_shape.iter().product());
    let w = match s.dtype {
        DType::F32 => Tensor::from_slice(gpu, &w_shape, &values, "tune w")?,
        DType::F16 => {
            let halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
            Tensor::from_f16(gpu, &w_shape, &halves, "tune w")?
        }
    };
    let b = Tensor::zeros(gpu, &[s.cout], "tune b")?;
    let out = Tensor::zeros(gpu, &s.out_shape, "tune out")?;
    let inputs = Conv2dInputs {
        x: &x,
        w: &w,
        bias: &b,
    };
    let d = conv.dispatch(gpu, variant, inputs, &Epilogue::default(), &out)?;
    crate::gpu::time_dispatches(gpu, std::slice::from_ref(&d))
}

#[cfg(target_arch = "wasm32")]
fn time_variant(_: &Gpu, _: &Conv, _: ConvVariant) -> Result<f64> {
    Err(Error::unsupported(
        "conv2d",
        "no kernel timing in the browser",
    ))
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`): every entry
/// point of each register-blocked variant, with its workgroup size and tile.
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    let mut out = Vec::new();
    for (variant, e, wg) in [
        ("REG", &REG, REG_WG),
        ("REG_F16", &REG_F16, REG_WG),
        ("SUBGROUP", &SUBGROUP, SUBGROUP_WG),
        ("SUBGROUP_F16", &SUBGROUP_F16, SUBGROUP_WG),
        ("SUBGROUP16", &SUBGROUP16, SUBGROUP_WG),
        ("SUBGROUP16_F16", &SUBGROUP16_F16, SUBGROUP_WG),
        ("UNROLLED", &UNROLLED, REG_WG),
        ("UNROLLED_F16", &UNROLLED_F16, REG_WG),
    ] {
        for (field, spec) in [
            ("k3s1", &e.k3s1),
            ("k3s2", &e.k3s2),
            ("k1", &e.k1),
            ("up3", &e.up3),
        ] {
            out.push(
                crate::gpu::KernelCheck::new(file!(), format!("{variant}.{field}"), spec)
                    .workgroup_size([wg])
                    .shader_const("WG", wg)
                    .shader_const("TR", TILE_R)
                    .shader_const("TC", e.cols)
                    .shader_const("TQ", e.quads),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::ops::conv2d_operands::cases::{case, f16_rounded, Case};
    use crate::ops::conv_pack::{pack_weight, unpack_weight};
    use crate::testing::{assert_close, err_text, gpu, Rng};

    /// Runs case `c` through every available variant with the weight stored as `dtype`, against
    /// the CPU reference on the same (for f16: f16-rounded) weights.
    fn check(c: &Case, seed: u64, dtype: DType) {
        let gpu = gpu();
        let mut rng = Rng::new(seed);
        let x_shape = [c.n, c.cin, c.h, c.w];
        let w_shape = [c.cout, c.cin, c.k, c.k];
        let x = rng.normals(x_shape.iter().product(), 1.0);
        let w = rng.normals(
            w_shape.iter().product(),
            1.0 / ((c.cin * c.k * c.k) as f32).sqrt(),
        );
        // The GPU gets the f32 values (upload_weight_as rounds them), the reference the halves.
        let w_ref = match dtype {
            DType::F32 => w.clone(),
            DType::F16 => f16_rounded(&w),
        };
        let b = rng.normals(c.cout, 0.5);
        let out_shape = c.geom.output_shape(&x_shape, &w_shape).unwrap();
        let temb = c.temb.then(|| rng.normals(c.n * c.cout, 1.0));
        let res = c
            .residual
            .then(|| rng.normals(out_shape.iter().product(), 1.0));
        let init = rng.normals(out_shape.iter().product(), 1.0);
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
        let (mut want, shape) = cpu::conv2d::conv2d(inputs, c.geom, &cpu_epi).unwrap();
        assert_eq!(shape, out_shape);
        if c.accumulate {
            for (w, i) in want.iter_mut().zip(&init) {
                *w += i;
            }
        }

        let tx = Tensor::from_slice(gpu, &x_shape, &x, "x").unwrap();
        let tw = upload_weight_as(gpu, &w, w_shape, dtype, "w").unwrap();
        assert_eq!(tw.dtype, dtype);
        let packed = c.cout.div_ceil(4) * 4 * c.cin * c.k * c.k;
        assert_eq!(tw.bytes(), dtype.bytes_of(packed));
        let tb = Tensor::from_slice(gpu, &[c.cout], &b, "b").unwrap();
        let tt = temb
            .as_ref()
            .map(|t| Tensor::from_slice(gpu, &[c.n, c.cout], t, "temb").unwrap());
        let tr = res
            .as_ref()
            .map(|r| Tensor::from_slice(gpu, &out_shape, r, "res").unwrap());
        let out = Tensor::from_slice(gpu, &out_shape, &init, "out").unwrap();
        let epi = Epilogue {
            temb: tt.as_ref(),
            residual: tr.as_ref(),
            out_scale: c.out_scale,
            accumulate: c.accumulate,
        };
        let variants: Vec<ConvVariant> = ConvVariant::ALL
            .into_iter()
            .filter(|v| v.available(gpu))
            .collect();
        assert!(variants.contains(&ConvVariant::Reg));
        for v in variants {
            // Winograd covers the stride-1 3×3 convs without upsampling (all fit here).
            let winograd = matches!(v, ConvVariant::Winograd | ConvVariant::Winograd16);
            assert_eq!(
                v.applies_to(c.k, c.geom),
                !winograd || (c.k == 3 && c.geom.stride == 1 && !c.geom.upsample)
            );
            if !v.applies_to(c.k, c.geom) {
                let inputs = Conv2dInputs {
                    x: &tx,
                    w: &tw,
                    bias: &tb,
                };
                let e = err_text(
                    conv2d_variant(gpu, v, inputs, c.geom, &epi, &out),
                    "winograd off its shapes",
                );
                assert!(e.contains("does not compute"), "{e}");
                continue;
            }
            let inputs = Conv2dInputs {
                x: &tx,
                w: &tw,
                bias: &tb,
            };
            let d = conv2d_variant(gpu, v, inputs, c.geom, &epi, &out).unwrap();
            pollster::block_on(gpu.run(&[d])).unwrap();
            let got = out.read_blocking(gpu).unwrap();
            let what = format!("conv2d[{} {}] {c}", v.name(), dtype.name());
            assert_close(&got, &want, 1e-4, 1e-4, &what);
            // The next variant must write every element itself (or add to `init`).
            let next = if c.accumulate {
                init.clone()
            } else {
                vec![f32::NAN; got.len()]
            };
            out.write(gpu, &next).unwrap();
        }
    }

    /// Geometry shorthand for the case tables.
    fn g(stride: usize, pad: [usize; 4], upsample: bool) -> Conv2dGeom {
        Conv2dGeom {
            stride,
            pad,
            upsample,
        }
    }

    fn check_all(cases: &[Case], seed: u64, dtype: DType) {
        for (i, c) in cases.iter().enumerate() {
            check(c, seed + i as u64, dtype);
        }
    }

    #[test]
    fn conv2d_3x3_matches_cpu() {
        check_all(&cases_3x3(), 10, DType::F32);
    }

    #[test]
    fn conv2d_f16_3x3_matches_cpu() {
        check_all(&cases_3x3(), 10, DType::F16);
    }

    #[test]
    fn conv2d_1x1_matches_cpu() {
        check_all(&cases_1x1(), 20, DType::F32);
    }

    #[test]
    fn conv2d_f16_1x1_matches_cpu() {
        check_all(&cases_1x1(), 20, DType::F16);
    }

    #[test]
    fn conv2d_stride2_matches_cpu() {
        check_all(&cases_stride2(), 30, DType::F32);
    }

    #[test]
    fn conv2d_f16_stride2_matches_cpu() {
        check_all(&cases_stride2(), 30, DType::F16);
    }

    #[test]
    fn conv2d_upsample_matches_cpu() {
        check_all(&cases_upsample(), 40, DType::F32);
    }

    #[test]
    fn conv2d_f16_upsample_matches_cpu() {
        check_all(&cases_upsample(), 40, DType::F16);
    }

    #[test]
    fn conv2d_epilogue_matches_cpu() {
        epilogue_cases(DType::F32);
    }

    #[test]
    fn conv2d_f16_epilogue_matches_cpu() {
        epilogue_cases(DType::F16);
    }

    fn cases_3x3() -> Vec<Case> {
        let same = Conv2dGeom::same(3);
        vec![
            case(1, 1, 1, 1, 1, 3, same),
            case(1, 3, 5, 7, 9, 3, same),
            case(2, 4, 8, 8, 8, 3, same),
            case(3, 5, 13, 5, 11, 3, same),
            case(1, 17, 9, 13, 6, 3, same),
            case(1, 20, 17, 17, 19, 3, same),
            case(1, 8, 16, 4, 4, 3, g(1, [0; 4], false)),
            case(2, 3, 6, 6, 7, 3, g(1, [2, 0, 1, 2], false)),
            // Many tiles (whole and partial subgroups), several channel blocks, Cout % 8 ≠ 0.
            case(3, 7, 21, 29, 35, 3, same),
        ]
    }

    fn cases_1x1() -> Vec<Case> {
        let same = Conv2dGeom::same(1);
        vec![
            case(1, 1, 1, 1, 1, 1, same),
            case(2, 6, 10, 5, 7, 1, same),
            case(1, 12, 3, 9, 9, 1, same),
            case(1, 33, 20, 6, 17, 1, same),
            case(2, 5, 6, 7, 5, 1, g(2, [0; 4], false)),
            case(1, 3, 4, 3, 5, 1, g(1, [1, 2, 0, 1], false)),
        ]
    }

    fn cases_stride2() -> Vec<Case> {
        vec![
            case(1, 4, 4, 8, 8, 3, Conv2dGeom::downsample(1)),
            case(2, 3, 6, 7, 9, 3, Conv2dGeom::downsample(1)),
            case(1, 4, 4, 8, 8, 3, Conv2dGeom::downsample(0)),
            case(2, 5, 7, 9, 6, 3, Conv2dGeom::downsample(0)),
            case(1, 9, 10, 19, 21, 3, Conv2dGeom::downsample(0)),
            case(1, 2, 3, 1, 1, 3, Conv2dGeom::downsample(1)),
        ]
    }

    fn cases_upsample() -> Vec<Case> {
        let up = Conv2dGeom::upsample();
        vec![
            case(1, 4, 4, 4, 4, 3, up),
            case(2, 3, 5, 3, 5, 3, up),
            case(1, 6, 9, 1, 1, 3, up),
            case(1, 9, 12, 5, 3, 3, up),
            // Not the Upsample2D fast path: other padding, stride 2, 1×1.
            case(1, 3, 4, 3, 4, 3, g(1, [0, 1, 2, 0], true)),
            case(2, 3, 5, 3, 5, 3, g(2, [1; 4], true)),
            case(1, 5, 6, 3, 2, 1, g(1, [0; 4], true)),
        ]
    }

    fn epilogue_cases(dtype: DType) {
        let mut cases = [
            case(2, 5, 7, 6, 9, 3, Conv2dGeom::same(3)),
            case(3, 4, 9, 5, 5, 1, Conv2dGeom::same(1)),
            case(2, 3, 6, 5, 7, 3, Conv2dGeom::upsample()),
            case(2, 6, 5, 9, 8, 3, Conv2dGeom::downsample(0)),
        ];
        for (i, c) in cases.iter_mut().enumerate() {
            c.temb = i != 1;
            c.residual = i != 2;
            c.out_scale = [0.5, std::f32::consts::FRAC_1_SQRT_2, 2.0, -1.5][i];
        }
        check_all(&cases, 50, dtype);
        for c in cases.iter_mut() {
            c.accumulate = true;
        }
        check_all(&cases, 60, dtype);
    }

    #[test]
    fn cpu_reference_hand_computed() {
        // x = [[1, 2], [3, 4]], one channel; 3×3 kernel of ones except w[1][1] = 2; pad 1.
        // out[y][x] = sum of the 3×3 neighbourhood (zero padded) + the centre again.
        let x = [1.0, 2.0, 3.0, 4.0];
        let mut w = [1.0f32; 9];
        w[4] = 2.0;
        let inputs = cpu::conv2d::Conv2dInputs {
            x: &x,
            x_shape: [1, 1, 2, 2],
            w: &w,
            w_shape: [1, 1, 3, 3],
            bias: &[0.5],
        };
        let epi = cpu::conv2d::Epilogue {
            temb: Some(&[1.0]),
            residual: Some(&[0.0, 1.0, 2.0, 3.0]),
            out_scale: 2.0,
        };
        let (out, shape) = cpu::conv2d::conv2d(inputs, Conv2dGeom::same(3), &epi).unwrap();
        assert_eq!(shape, [1, 1, 2, 2]);
        // conv = 10 + centre: [11, 12, 13, 14]; + 0.5 + 1 + residual; × 2.
        assert_eq!(out, vec![25.0, 29.0, 33.0, 37.0]);

        // Downsample with pad (0,1,0,1) on a 3×3 input: Ho = (3 + 1 - 3) / 2 + 1 = 1.
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let inputs = cpu::conv2d::Conv2dInputs {
            x: &x,
            x_shape: [1, 1, 3, 3],
            w: &[1.0; 9],
            w_shape: [1, 1, 3, 3],
            bias: &[0.0],
        };
        let none = cpu::conv2d::Epilogue::default();
        let (out, shape) = cpu::conv2d::conv2d(inputs, Conv2dGeom::downsample(0), &none).unwrap();
        assert_eq!((out, shape), (vec![45.0], [1, 1, 1, 1]));

        // Upsample a 1×1 input of 3 with a 1×1 kernel of 2, pad 0: a 2×2 output of 6.
        let geom = Conv2dGeom {
            stride: 1,
            pad: [0; 4],
            upsample: true,
        };
        let inputs = cpu::conv2d::Conv2dInputs {
            x: &[3.0],
            x_shape: [1, 1, 1, 1],
            w: &[2.0],
            w_shape: [1, 1, 1, 1],
            bias: &[0.0],
        };
        let (out, shape) = cpu::conv2d::conv2d(inputs, geom, &none).unwrap();
        assert_eq!((out, shape), (vec![6.0; 4], [1, 1, 2, 2]));
    }

    #[test]
    fn conv2d_rejects_bad_shapes() {
        let gpu = gpu();
        let z = |shape: &[usize]| Tensor::zeros(gpu, shape, "t").unwrap();
        let x = z(&[1, 4, 8, 8]);
        let w = z(&[2, 4, 3, 3, 4]); // packed, Cout = 5..=8
        let b = z(&[6]);
        let out = z(&[1, 6, 8, 8]);
        let same = Conv2dGeom::same(3);
        let none = Epilogue::default();
        let run = |x: &Tensor, w: &Tensor, b: &Tensor, g: Conv2dGeom, e: &Epilogue, o: &Tensor| {
            conv2d(gpu, Conv2dInputs { x, w, bias: b }, g, e, o)
        };
        let shape_err = |r: Result<Dispatch>| matches!(r, Err(Error::Shape { .. }));
        let invalid = |r: Result<Dispatch>| {
            matches!(
                r,
                Err(Error::Operand { .. } | Error::Unsupported { .. } | Error::Alias { .. })
            )
        };
        assert!(run(&x, &w, &b, same, &none, &out).is_ok());

        // Weight: Cin, quad count, unpacked layout, non-square, unsupported k.
        assert!(shape_err(run(
            &x,
            &z(&[2, 3, 3, 3, 4]),
            &b,
            same,
            &none,
            &out
        )));
        assert!(shape_err(run(
            &x,
            &z(&[1, 4, 3, 3, 4]),
            &b,
            same,
            &none,
            &out
        )));
        assert!(invalid(run(&x, &z(&[6, 4, 3, 3]), &b, same, &none, &out)));
        assert!(shape_err(run(
            &x,
            &z(&[2, 4, 3, 1, 4]),
            &b,
            same,
            &none,
            &out
        )));
        let w5 = z(&[2, 4, 5, 5, 4]);
        assert!(invalid(run(&x, &w5, &b, Conv2dGeom::same(5), &none, &out)));
        // Bias, input, output, temb, residual.
        assert!(invalid(run(&x, &w, &z(&[1, 6]), same, &none, &out)));
        assert!(invalid(run(&z(&[4, 8, 8]), &w, &b, same, &none, &out)));
        assert!(shape_err(run(&x, &w, &b, same, &none, &z(&[1, 6, 7, 8]))));
        let t = z(&[2, 6]);
        let e = Epilogue {
            temb: Some(&t),
            ..none
        };
        assert!(shape_err(run(&x, &w, &b, same, &e, &out)));
        let r = z(&[1, 6, 8, 9]);
        let e = Epilogue {
            residual: Some(&r),
            ..none
        };
        assert!(shape_err(run(&x, &w, &b, same, &e, &out)));
        // Stride 3 and 0, input smaller than the kernel.
        let s3 = Conv2dGeom { stride: 3, ..same };
        assert!(invalid(run(&x, &w, &b, s3, &none, &z(&[1, 6, 3, 3]))));
        let s0 = Conv2dGeom { stride: 0, ..same };
        assert!(invalid(run(&x, &w, &b, s0, &none, &out)));
        let nopad = Conv2dGeom {
            pad: [0; 4],
            ..same
        };
        assert!(invalid(run(&z(&[1, 4, 1, 1]), &w, &b, nopad, &none, &out)));
        // The output aliasing an input.
        let e = Epilogue {
            residual: Some(&out),
            ..none
        };
        assert!(invalid(run(&x, &w, &b, same, &e, &out)));
        assert!(invalid(run(
            &out,
            &z(&[2, 6, 3, 3, 4]),
            &b,
            same,
            &none,
            &out
        )));

        // CPU side: data lengths and packing.
        let one = Conv2dGeom::same(1);
        let inputs = cpu::conv2d::Conv2dInputs {
            x: &[0.0; 3],
            x_shape: [1, 1, 2, 2],
            w: &[0.0],
            w_shape: [1, 1, 1, 1],
            bias: &[0.0],
        };
        let bad = cpu::conv2d::conv2d(inputs, one, &cpu::conv2d::Epilogue::default());
        assert!(matches!(bad, Err(Error::Shape { .. })));
        let e = err_text(pack_weight(&[0.0; 5], [1, 1, 3, 3]), "5 values for 9");
        assert!(e.contains("shape mismatch for conv2d weight data"), "{e}");
        let e = err_text(
            unpack_weight(&[0.0; 36], [1, 1, 3, 3, 4], 5),
            "1 group of 4 for 5 channels",
        );
        assert!(
            e.contains("shape mismatch for packed conv2d weight: expected [2, 1, 3, 3, 4]"),
            "{e}"
        );
    }

    /// f16 tensors where f32 ones belong, f16 weights of the wrong shape and values f16 cannot
    /// hold are clear errors, in both the register-blocked and the tiled op.
    #[test]
    fn conv2d_rejects_wrong_storage() {
        let gpu = gpu();
        let z = |shape: &[usize]| Tensor::zeros(gpu, shape, "t").unwrap();
        let h = |shape: &[usize]| {
            let n = shape.iter().product();
            Tensor::from_f16(gpu, shape, &vec![half::f16::ZERO; n], "h").unwrap()
        };
        let x = z(&[1, 4, 8, 8]);
        let w = h(&[2, 4, 3, 3, 4]);
        let b = z(&[6]);
        let out = z(&[1, 6, 8, 8]);
        let same = Conv2dGeom::same(3);
        let none = Epilogue::default();
        let run = |x: &Tensor, w: &Tensor, b: &Tensor, e: &Epilogue, o: &Tensor| {
            conv2d(gpu, Conv2dInputs { x, w, bias: b }, same, e, o)
        };
        let tiled = |x: &Tensor, w: &Tensor, b: &Tensor, e: &Epilogue, o: &Tensor| {
            let inputs = Conv2dInputs { x, w, bias: b };
            crate::ops::conv2d_tiled::conv2d_tiled(gpu, inputs, same, e, o)
        };
        assert!(run(&x, &w, &b, &none, &out).is_ok());
        assert!(tiled(&x, &w, &b, &none, &out).is_ok());

        let e = err_text(run(&h(&[1, 4, 8, 8]), &w, &b, &none, &out), "f16 x");
        assert!(
            e.contains("conv2d: x: must be an f32 tensor, got f16 [1, 4, 8, 8]"),
            "{e}"
        );
        let e = err_text(run(&x, &w, &h(&[6]), &none, &out), "f16 bias");
        assert!(e.contains("conv2d: bias: must be an f32 tensor"), "{e}");
        let e = err_text(run(&x, &w, &b, &none, &h(&[1, 6, 8, 8])), "f16 out");
        assert!(e.contains("conv2d: output: must be an f32 tensor"), "{e}");
        let r = h(&[1, 6, 8, 8]);
        let with_res = Epilogue {
            residual: Some(&r),
            ..none
        };
        let e = err_text(tiled(&x, &w, &b, &with_res, &out), "f16 residual (tiled)");
        assert!(
            e.contains("conv2d_tiled: residual: must be an f32 tensor"),
            "{e}"
        );
        // f16 weights of the wrong shape name their storage.
        let e = err_text(run(&x, &h(&[1, 4, 3, 3, 4]), &b, &none, &out), "quads");
        assert!(
            e.contains("packed f16 conv2d weight for Cout = 6 (bias): expected [2, 4, 3, 3, 4]"),
            "{e}"
        );
        let e = err_text(tiled(&x, &h(&[6, 4, 3, 3]), &b, &none, &out), "unpacked");
        assert!(
            e.contains("must be packed") && e.contains("got f16 [6, 4, 3, 3]"),
            "{e}"
        );
        // Uploads: values beyond f16's range, and f32 writes into an f16 tensor.
        let e = err_text(
            upload_weight_as(gpu, &[1.0, 7e4], [2, 1, 1, 1], DType::F16, "big"),
            "7e4 in f16",
        );
        assert!(
            e.contains("conv2d: weight: big: 70000 is beyond f16's range"),
            "{e}"
        );
        let e = err_text(w.write(gpu, &vec![0.0; w.numel()]), "f32 write into f16");
        assert!(
            e.contains("write: tensor: must be an f32 tensor, got f16"),
            "{e}"
        );
    }

    /// User + system CPU seconds of this process so far (Linux; 0 elsewhere).
    fn cpu_seconds() -> f64 {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return 0.0;
        };
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let f: Vec<f64> = rest.split(' ').map(|v| v.parse().unwrap_or(0.0)).collect();
        (f[11] + f[12]) / 100.0
    }

    /// GFLOP/s on representative U-Net shapes (FLOPs = 2·N·Cout·Ho·Wo·Cin·k², also for the
    /// Upsample2D path, which does 4/9 of them):
    /// `cargo test --release --lib ops::conv2d -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn conv2d_bench() {
        let gpu = gpu();
        println!("conv2d on {}", gpu.describe());
        let mut rng = Rng::new(7);
        let same = Conv2dGeom::same(3);
        for (n, cin, cout, hw, k, geom) in [
            (1, 128, 128, 32, 3, same),
            (16, 32, 32, 32, 3, same),
            (1, 256, 256, 8, 3, same),
            (1, 256, 256, 16, 3, same),
            (4, 128, 128, 32, 3, same),
            (1, 128, 128, 32, 3, Conv2dGeom::downsample(0)),
            (1, 256, 256, 16, 3, Conv2dGeom::upsample()),
            (1, 384, 128, 32, 1, Conv2dGeom::same(1)),
        ] {
            let x_shape = [n, cin, hw, hw];
            let w_shape = [cout, cin, k, k];
            let out_shape = geom.output_shape(&x_shape, &w_shape).unwrap();
            let tx = Tensor::from_slice(gpu, &x_shape, &rng.normals(n * cin * hw * hw, 1.0), "x")
                .unwrap();
            let tw =
                upload_weight(gpu, &rng.normals(cout * cin * k * k, 0.1), w_shape, "w").unwrap();
            let tb = Tensor::from_slice(gpu, &[cout], &rng.normals(cout, 0.1), "b").unwrap();
            let out = Tensor::zeros(gpu, &out_shape, "out").unwrap();
            let inputs = Conv2dInputs {
                x: &tx,
                w: &tw,
                bias: &tb,
            };
            let d = conv2d(gpu, inputs, geom, &Epilogue::default(), &out).unwrap();
            pollster::block_on(gpu.run(std::slice::from_ref(&d))).unwrap();
            // Best of 10 wall-clock runs (the machine is shared), and the mean process CPU time
            // per run (lavapipe runs in our threads; needs /proc, else 0).
            let runs = 10;
            let cpu0 = cpu_seconds();
            let mut best = f64::INFINITY;
            for _ in 0..runs {
                let t0 = std::time::Instant::now();
                pollster::block_on(gpu.run(std::slice::from_ref(&d))).unwrap();
                best = best.min(t0.elapsed().as_secs_f64());
            }
            let cpu = (cpu_seconds() - cpu0) / runs as f64;
            let gflop = 2.0 * (out_shape.iter().product::<usize>() * cin * k * k) as f64 / 1e9;
            println!(
                "N={n:2} {cin:3}→{cout:3} {hw:2}×{hw:2} k={k} s={} up={}: best {:7.2} ms {:6.2} GFLOP/s | cpu {:7.2} ms/run {:6.2} GFLOP/cpu-s",
                geom.stride,
                geom.upsample as u8,
                best * 1e3,
                gflop / best,
                cpu * 1e3,
                gflop / cpu
            );
        }
    }

    /// Wall-clock time of one [`conv2d_tiled::conv2d_tiled`] forward (best of 5) next to [`conv2d`]:
    /// `cargo test --release --lib ops::conv2d::tests::tiled_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn tiled_timing() {
        let gpu = gpu();
        println!("conv2d_tiled on {}", gpu.describe());
        let mut rng = Rng::new(7);
        let (n, cin, cout, hw, k) = (16, 32, 32, 28, 3);
        let geom = Conv2dGeom::same(k);
        let x_shape = [n, cin, hw, hw];
        let w_shape = [cout, cin, k, k];
        let out_shape = geom.output_shape(&x_shape, &w_shape).unwrap();
        let tx =
            Tensor::from_slice(gpu, &x_shape, &rng.normals(n * cin * hw * hw, 1.0), "x").unwrap();
        let tw = upload_weight(gpu, &rng.normals(cout * cin * k * k, 0.1), w_shape, "w").unwrap();
        let tb = Tensor::from_slice(gpu, &[cout], &rng.normals(cout, 0.1), "b").unwrap();
        let out = Tensor::zeros(gpu, &out_shape, "out").unwrap();
        let epi = Epilogue::default();
        let inputs = Conv2dInputs {
            x: &tx,
            w: &tw,
            bias: &tb,
        };
        let tiled = conv2d_tiled::conv2d_tiled(gpu, inputs, geom, &epi, &out).unwrap();
        let plain = conv2d(gpu, inputs, geom, &epi, &out).unwrap();
        let gflop = 2.0 * (out_shape.iter().product::<usize>() * cin * k * k) as f64 / 1e9;
        for (name, d) in [("conv2d_tiled", &tiled), ("conv2d", &plain)] {
            pollster::block_on(gpu.run(std::slice::from_ref(d))).unwrap();
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                let t0 = std::time::Instant::now();
                pollster::block_on(gpu.run(std::slice::from_ref(d))).unwrap();
                best = best.min(t0.elapsed().as_secs_f64());
            }
            println!(
                "{name:12} N={n} {cin}→{cout} {hw}×{hw} k={k}: best {:8.2} ms {:6.2} GFLOP/s",
                best * 1e3,
                gflop / best
            );
        }
    }
}
