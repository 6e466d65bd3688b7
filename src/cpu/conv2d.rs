//! Reference for `shaders/conv2d.wgsl`: 2-D convolution, NCHW f32, PyTorch weight layout
//! `[Cout, Cin, k, k]`, with optional fused nearest ×2 upsampling of the input and a fused
//! epilogue `out = (conv(x, w) + bias[co] + temb[n, co] + residual[n, co, y, x]) * out_scale`.

use crate::error::{Error, Result};
use crate::options::Conv2dGeom;

fn shape_err(what: &str, expected: &[usize], got: &[usize]) -> Error {
    Error::Shape {
        what: what.to_string(),
        expected: expected.to_vec(),
        got: got.to_vec(),
    }
}

/// The operands of [`conv2d`] with their shapes: `x [N, Cin, H, W]`, `w [Cout, Cin, k, k]`
/// (PyTorch layout), `bias [Cout]`.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dInputs<'a> {
    pub x: &'a [f32],
    pub x_shape: [usize; 4],
    pub w: &'a [f32],
    pub w_shape: [usize; 4],
    pub bias: &'a [f32],
}

/// The fused additions and final scale of [`conv2d`]'s output (the CPU twin of
/// `ops::conv2d::Epilogue`, without accumulation).
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// `[N, Cout]`, added per (image, output channel).
    pub temb: Option<&'a [f32]>,
    /// Same shape as the output, added before scaling.
    pub residual: Option<&'a [f32]>,
    /// Multiplies the result last.
    pub out_scale: f32,
}

impl Default for Epilogue<'_> {
    /// No temb, no residual, scale 1.
    fn default() -> Self {
        Epilogue {
            temb: None,
            residual: None,
            out_scale: 1.0,
        }
    }
}

/// Conv2d + bias (+ temb `[N, Cout]`) (+ residual, same shape as the output), times
/// `out_scale` (see [`Epilogue`]); returns the output and its shape `[N, Cout, Ho, Wo]`.
/// Plain loops, f32 accumulation.
pub fn conv2d(
    inputs: Conv2dInputs,
    geom: Conv2dGeom,
    epi: &Epilogue,
) -> Result<(Vec<f32>, [usize; 4])> {
    let Conv2dInputs {
        x,
        x_shape,
        w,
        w_shape,
        bias,
    } = inputs;
    let Epilogue {
        temb,
        residual,
        out_scale,
    } = *epi;
    let out_shape = geom.output_shape(&x_shape, &w_shape)?;
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
