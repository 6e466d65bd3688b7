//! Reference for `shaders/conv2d.wgsl`: 2-D convolution, NCHW f32, PyTorch weight layout
//! `[Cout, Cin, k, k]`, with optional fused nearest ×2 upsampling of the input and a fused
//! epilogue `out = (conv(x, w) + bias[co] + temb[n, co] + residual[n, co, y, x]) * out_scale`.

use crate::error::{Error, Result};

/// Geometry of a convolution: stride, zero padding per side and optional nearest ×2 upsampling
/// of the input (the conv then sees a virtual `2H×2W` input with `v[y][x] = x[y/2][x/2]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeom {
    /// 1 or 2 on the GPU (any ≥ 1 on the CPU).
    pub stride: usize,
    /// Zero padding `[top, left, bottom, right]`, applied to the (virtual) input.
    pub pad: [usize; 4],
    /// Fused nearest-neighbour ×2 upsampling of the input.
    pub upsample: bool,
}

impl Conv2dGeom {
    /// Stride 1, padding `k/2` on every side: output size = input size (odd `k`).
    pub fn same(k: usize) -> Self {
        Conv2dGeom {
            stride: 1,
            pad: [k / 2; 4],
            upsample: false,
        }
    }

    /// diffusers `Downsample2D` (3×3, stride 2): `padding` on every side, or, when it is 0,
    /// diffusers' explicit pad of the right and bottom by 1.
    pub fn downsample(padding: usize) -> Self {
        Conv2dGeom {
            stride: 2,
            pad: if padding == 0 {
                [0, 0, 1, 1]
            } else {
                [padding; 4]
            },
            upsample: false,
        }
    }

    /// diffusers `Upsample2D`: nearest ×2, then a 3×3 conv with padding 1.
    pub fn upsample() -> Self {
        Conv2dGeom {
            stride: 1,
            pad: [1; 4],
            upsample: true,
        }
    }

    /// Output `(Ho, Wo)` for an `h×w` input and a `k×k` kernel:
    /// `Ho = (H' + top + bottom - k) / stride + 1` with `H' = 2h` if upsampling else `h`.
    /// `(0, 0)` when the (padded) input is smaller than the kernel or the stride is 0.
    pub fn out_hw(&self, h: usize, w: usize, k: usize) -> (usize, usize) {
        let up = if self.upsample { 2 } else { 1 };
        let [t, l, b, r] = self.pad;
        let dim = |n: usize, p0: usize, p1: usize| -> Option<usize> {
            let span = (n * up + p0 + p1).checked_sub(k)?;
            Some(span.checked_div(self.stride)? + 1)
        };
        match (dim(h, t, b), dim(w, l, r)) {
            (Some(ho), Some(wo)) if k > 0 => (ho, wo),
            _ => (0, 0),
        }
    }
}

fn shape_err(what: &str, expected: &[usize], got: &[usize]) -> Error {
    Error::Shape {
        what: what.to_string(),
        expected: expected.to_vec(),
        got: got.to_vec(),
    }
}

/// Checks `x [N, Cin, H, W]` against `w [Cout, Cin, k, k]` and `geom`; returns the output shape
/// `[N, Cout, Ho, Wo]`. Shared by the CPU reference and the GPU op.
pub fn output_shape(x: &[usize], w: &[usize], geom: Conv2dGeom) -> Result<[usize; 4]> {
    let &[n, cin, h, wd] = x else {
        return Err(Error::Invalid(format!(
            "conv2d input must be 4-D [N, Cin, H, W], got {x:?}"
        )));
    };
    let &[cout, wcin, kh, kw] = w else {
        return Err(Error::Invalid(format!(
            "conv2d weight must be 4-D [Cout, Cin, k, k], got {w:?}"
        )));
    };
    if x.contains(&0) || w.contains(&0) {
        return Err(Error::Invalid(format!(
            "conv2d: empty tensor (input {x:?}, weight {w:?})"
        )));
    }
    if wcin != cin || kh != kw {
        return Err(shape_err("conv2d weight", &[cout, cin, kh, kh], w));
    }
    if geom.stride == 0 {
        return Err(Error::Invalid("conv2d: stride must be ≥ 1".into()));
    }
    let (ho, wo) = geom.out_hw(h, wd, kh);
    if ho == 0 || wo == 0 {
        return Err(Error::Invalid(format!(
            "conv2d: input {h}×{wd} (upsample {}) padded by {:?} is smaller than the {kh}×{kh} kernel",
            geom.upsample, geom.pad
        )));
    }
    Ok([n, cout, ho, wo])
}

/// Conv2d + bias (+ temb `[N, Cout]`) (+ residual, same shape as the output), times
/// `out_scale`. `x [N, Cin, H, W]`, `w [Cout, Cin, k, k]`, `bias [Cout]`; returns the output
/// and its shape `[N, Cout, Ho, Wo]`. Plain loops, f32 accumulation.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &[f32],
    x_shape: [usize; 4],
    w: &[f32],
    w_shape: [usize; 4],
    bias: &[f32],
    geom: Conv2dGeom,
    temb: Option<&[f32]>,
    residual: Option<&[f32]>,
    out_scale: f32,
) -> Result<(Vec<f32>, [usize; 4])> {
    let out_shape = output_shape(&x_shape, &w_shape, geom)?;
    let [n, cin, h, wd] = x_shape;
    let [_, cout, ho, wo] = out_shape;
    let k = w_shape[2];
    let check = |what: &str, len: usize, shape: &[usize]| {
        if len == shape.iter().product::<usize>() {
            Ok(())
        } else {
            Err(shape_err(what, shape, &[len]))
        }
    };
    check("conv2d input data", x.len(), &x_shape)?;
    check("conv2d weight data", w.len(), &w_shape)?;
    check("conv2d bias", bias.len(), &[cout])?;
    if let Some(t) = temb {
        check("conv2d temb", t.len(), &[n, cout])?;
    }
    if let Some(r) = residual {
        check("conv2d residual", r.len(), &out_shape)?;
    }

    let up = if geom.upsample { 2 } else { 1 };
    let [pt, pl, _, _] = geom.pad;
    // For kernel tap t: the (output, input) index pairs along one axis that are not padding.
    let taps = |n_out: usize, n_in: usize, pad: usize| -> Vec<Vec<(usize, usize)>> {
        (0..k)
            .map(|t| {
                (0..n_out)
                    .filter_map(|o| {
                        let v = (o * geom.stride + t).checked_sub(pad)?;
                        (v < n_in * up).then_some((o, v / up))
                    })
                    .collect()
            })
            .collect()
    };
    let rows = taps(ho, h, pt);
    let cols = taps(wo, wd, pl);

    let mut out = vec![0f32; out_shape.iter().product()];
    for b in 0..n {
        for co in 0..cout {
            let o = &mut out[(b * cout + co) * ho * wo..][..ho * wo];
            for ci in 0..cin {
                let xp = &x[(b * cin + ci) * h * wd..][..h * wd];
                for (ky, row_pairs) in rows.iter().enumerate() {
                    for (kx, col_pairs) in cols.iter().enumerate() {
                        let wv = w[((co * cin + ci) * k + ky) * k + kx];
                        for &(oy, iy) in row_pairs {
                            let orow = &mut o[oy * wo..][..wo];
                            let xrow = &xp[iy * wd..][..wd];
                            for &(ox, ix) in col_pairs {
                                orow[ox] += wv * xrow[ix];
                            }
                        }
                    }
                }
            }
            let add = bias[co] + temb.map_or(0.0, |t| t[b * cout + co]);
            let base = (b * cout + co) * ho * wo;
            for (i, v) in o.iter_mut().enumerate() {
                let r = residual.map_or(0.0, |r| r[base + i]);
                *v = (*v + add + r) * out_scale;
            }
        }
    }
    Ok((out, out_shape))
}

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

/// The weight of the convolution that computes a stride-1 conv's input gradient:
/// `[Cout, Cin, k, k]` → `[Cin, Cout, k, k]` with both taps flipped,
/// `out[ci, co, ky, kx] = w[co, ci, k-1-ky, k-1-kx]`.
pub fn flip_transpose(w: &[f32], w_shape: [usize; 4]) -> Result<(Vec<f32>, [usize; 4])> {
    let [cout, cin, kh, kw] = w_shape;
    if w.len() != w_shape.iter().product::<usize>() || kh != kw {
        return Err(shape_err("conv2d weight data", &w_shape, &[w.len()]));
    }
    let k = kh;
    let mut out = vec![0f32; w.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for ky in 0..k {
                for kx in 0..k {
                    out[((ci * cout + co) * k + ky) * k + kx] =
                        w[((co * cin + ci) * k + (k - 1 - ky)) * k + (k - 1 - kx)];
                }
            }
        }
    }
    Ok((out, [cin, cout, k, k]))
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
