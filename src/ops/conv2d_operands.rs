//! The operands of the forward convolution kernels, shared by [`super::conv2d`] (which picks a
//! variant) and [`super::conv2d_tiled`] (one of them): their types, the packed weight's upload
//! and the weights fragment its shaders read it through, and [`ConvShape`], the operands checked
//! once.

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};
use crate::ops::conv_pack::pack_weight;
use crate::options::Conv2dGeom;

/// A conv2d forward kernel's source: the weights fragment of `storage` (`"f32"` or `"f16"`,
/// `shaders/conv2d_weights_{storage}.wgsl`) followed by the given files of `shaders/`, as the
/// shader's `// requires:` header lists them (the f16 fragment `// replaces:` the f32 one).
macro_rules! with_weights {
    ($storage:literal $(, $file:literal)+ $(,)?) => {
        concat!(
            include_str!(concat!("../../shaders/conv2d_weights_", $storage, ".wgsl")),
            $(include_str!(concat!("../../shaders/", $file))),+
        )
    };
}
pub(crate) use with_weights;

/// The operands of a convolution: `x [N, Cin, H, W]`, the weight `w` packed by
/// [`pack_weight`] (`[ceil(Cout/4), Cin, k, k, 4]`, f32 or f16, see [`upload_weight_as`]) and
/// `bias [Cout]`; all but `w` f32. The CPU twin is `cpu::conv2d::Conv2dInputs` (PyTorch-layout
/// weight).
#[derive(Clone, Copy, Debug)]
pub struct Conv2dInputs<'a> {
    pub x: &'a Tensor,
    pub w: &'a Tensor,
    pub bias: &'a Tensor,
}

/// Optional fused additions and the final scale of a convolution's output.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// `[N, Cout]`, added per (image, output channel).
    pub temb: Option<&'a Tensor>,
    /// Same shape as the output, added before scaling.
    pub residual: Option<&'a Tensor>,
    /// Multiplies the result last.
    pub out_scale: f32,
    /// Add the result to `out` instead of overwriting it (a gradient's later contributions).
    pub accumulate: bool,
}

impl Default for Epilogue<'_> {
    /// No temb, no residual, scale 1.
    fn default() -> Self {
        Epilogue {
            temb: None,
            residual: None,
            out_scale: 1.0,
            accumulate: false,
        }
    }
}

/// Errors unless the GPU kernels cover kernel size `k` and `stride` (k ∈ {1, 3}, stride ∈ {1, 2}).
pub(crate) fn check_supported(op: &str, k: usize, stride: usize) -> Result<()> {
    if matches!(k, 1 | 3) && matches!(stride, 1 | 2) {
        Ok(())
    } else {
        Err(Error::unsupported(
            op,
            format!("GPU kernel supports k ∈ {{1, 3}} and stride ∈ {{1, 2}}, got k = {k}, stride = {stride}"),
        ))
    }
}

/// Errors, naming `what`, unless `gpu` can run the f16-weight kernels ([`Gpu::reads_f16`]).
pub(crate) fn check_reads_f16(gpu: &Gpu, what: &str) -> Result<()> {
    if gpu.reads_f16() {
        Ok(())
    } else {
        Err(Error::unsupported(
            what,
            format!(
                "f16 weights need WGSL unpack2x16float, which {} does not offer \
                 (wgpu's SHADER_F16_IN_F32); keep them f32",
                gpu.describe()
            ),
        ))
    }
}

/// Packs PyTorch weights `[Cout, Cin, k, k]` with [`pack_weight`] and uploads them as f32: the
/// weight tensor the convolutions take, shape `[ceil(Cout/4), Cin, k, k, 4]`.
pub fn upload_weight(gpu: &Gpu, w: &[f32], w_shape: [usize; 4], label: &str) -> Result<Tensor> {
    upload_weight_as(gpu, w, w_shape, DType::F32, label)
}

/// [`upload_weight`] with the packed weight stored as `dtype`: f16 rounds every value to the
/// nearest half (exact for weights that came from f16) and halves the buffer. A finite value
/// beyond f16's range (±65504) is refused, naming the tensor.
pub fn upload_weight_as(
    gpu: &Gpu,
    w: &[f32],
    w_shape: [usize; 4],
    dtype: DType,
    label: &str,
) -> Result<Tensor> {
    let (packed, shape) = pack_weight(w, w_shape)?;
    match dtype {
        DType::F32 => Tensor::from_slice(gpu, &shape, &packed, label),
        DType::F16 => {
            check_reads_f16(gpu, &format!("conv2d weight {label}"))?;
            if let Some(v) = w
                .iter()
                .find(|v| v.is_finite() && v.abs() > half::f16::MAX.to_f32())
            {
                return Err(Error::operand(
                    "conv2d",
                    "weight",
                    format!("{label}: {v} is beyond f16's range (±65504); keep it in f32"),
                ));
            }
            let halves: Vec<half::f16> = packed.iter().map(|&v| half::f16::from_f32(v)).collect();
            Tensor::from_f16(gpu, &shape, &halves, label)
        }
    }
}

/// Errors unless every tensor of a conv but the packed weight is f32 (the weight may be f32 or
/// f16).
fn check_dtypes(op: &str, inputs: Conv2dInputs, epi: &Epilogue, out: &Tensor) -> Result<()> {
    let tensors = [
        ("x", Some(inputs.x)),
        ("bias", Some(inputs.bias)),
        ("temb", epi.temb),
        ("residual", epi.residual),
        ("output", Some(out)),
    ];
    for (name, t) in tensors {
        if let Some(t) = t {
            t.expect_f32(op, name)?;
        }
    }
    Ok(())
}

/// A checked convolution: the shapes, geometry and weight storage of its operands, which every
/// kernel variant shares.
#[derive(Clone, Debug)]
pub(crate) struct ConvShape {
    /// `[N, Cin, H, W]`.
    pub x_shape: [usize; 4],
    pub cout: usize,
    /// Kernel size (1 or 3).
    pub k: usize,
    /// `[N, Cout, Ho, Wo]`.
    pub out_shape: [usize; 4],
    pub geom: Conv2dGeom,
    /// The packed weight's storage.
    pub dtype: DType,
}

impl ConvShape {
    /// Checks the operands of convolution `op` (the name its errors give) on `gpu`: dtypes, the
    /// bias and packed weight, the geometry, the output, temb and residual shapes, that `out`
    /// is none of the inputs, and f16 reads for an f16 weight.
    pub fn new(
        gpu: &Gpu,
        op: &str,
        inputs: Conv2dInputs,
        geom: Conv2dGeom,
        epi: &Epilogue,
        out: &Tensor,
    ) -> Result<Self> {
        check_dtypes(op, inputs, epi, out)?;
        let Conv2dInputs { x, w, bias } = inputs;
        let &[cout] = &bias.shape[..] else {
            return Err(Error::operand(
                op,
                "bias",
                format!("must be 1-D [Cout], got {:?}", bias.shape),
            ));
        };
        let &[cq, wcin, kh, kw, 4] = &w.shape[..] else {
            return Err(Error::operand(
                op,
                "weight",
                format!(
                    "must be packed [ceil(Cout/4), Cin, k, k, 4] (see pack_weight), got {} {:?}",
                    w.dtype.name(),
                    w.shape
                ),
            ));
        };
        if cq != cout.div_ceil(4) {
            return Err(Error::Shape {
                what: format!(
                    "packed {} {op} weight for Cout = {cout} (bias)",
                    w.dtype.name()
                ),
                expected: vec![cout.div_ceil(4), wcin, kh, kw, 4],
                got: w.shape.clone(),
            });
        }
        let out_shape = geom.output_shape(&x.shape, &[cout, wcin, kh, kw])?;
        let k = kh;
        check_supported(op, k, geom.stride)?;
        crate::ops::same_shape(&format!("{op} output"), &out_shape, &out.shape)?;
        if let Some(t) = epi.temb {
            crate::ops::same_shape(&format!("{op} temb"), &[out_shape[0], cout], &t.shape)?;
        }
        if let Some(r) = epi.residual {
            crate::ops::same_shape(&format!("{op} residual"), &out_shape, &r.shape)?;
        }
        let inputs: Vec<(&str, &Tensor)> = [
            ("x", Some(x)),
            ("w", Some(w)),
            ("bias", Some(bias)),
            ("temb", epi.temb),
            ("residual", epi.residual),
        ]
        .into_iter()
        .filter_map(|(name, t)| Some((name, t?)))
        .collect();
        crate::ops::check_no_alias(op, &[("out", out)], &inputs)?;
        if w.dtype == DType::F16 {
            check_reads_f16(gpu, op)?;
        }
        Ok(ConvShape {
            // 4-D: `output_shape` checked it.
            x_shape: [x.shape[0], x.shape[1], x.shape[2], x.shape[3]],
            cout,
            k,
            out_shape,
            geom,
            dtype: w.dtype,
        })
    }

    /// Channel quads of the packed weight (`ceil(Cout/4)`).
    pub fn quads(&self) -> usize {
        self.cout.div_ceil(4)
    }
}

/// The convolution cases of `conv2d`'s and `conv2d_tiled`'s tests.
#[cfg(test)]
pub(crate) mod cases {
    use crate::options::Conv2dGeom;

    /// One test convolution: `x [n, cin, h, w]`, a `k × k` weight to `cout` channels, the
    /// geometry and the epilogue.
    pub struct Case {
        pub n: usize,
        pub cin: usize,
        pub cout: usize,
        pub h: usize,
        pub w: usize,
        pub k: usize,
        pub geom: Conv2dGeom,
        pub temb: bool,
        pub residual: bool,
        pub out_scale: f32,
        /// Start from random `out` values and add to them.
        pub accumulate: bool,
    }

    /// A case without temb, residual or accumulation, scale 1.
    pub fn case(
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
            temb: false,
            residual: false,
            out_scale: 1.0,
            accumulate: false,
        }
    }

    impl std::fmt::Display for Case {
        /// The case as assertion messages name it.
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(
                f,
                "N={} {}→{} {}×{} k={} {:?} temb={} res={} scale={} acc={}",
                self.n,
                self.cin,
                self.cout,
                self.h,
                self.w,
                self.k,
                self.geom,
                self.temb,
                self.residual,
                self.out_scale,
                self.accumulate
            )
        }
    }

    /// `v` rounded to f16 and back (what an f16 weight holds).
    pub fn f16_rounded(v: &[f32]) -> Vec<f32> {
        v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
    }
}
