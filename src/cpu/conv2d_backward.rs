//! Reference for `shaders/conv2d_backward_{input,weight}.wgsl`: gradients of
//! [`crate::cpu::conv2d::conv2d`] with respect to its input, weight and bias, given
//! `dy = ∂L/∂out`. The epilogue's scale enters as `out_scale`; temb and residual gradients are
//! not computed here (∂L/∂temb = Σ_hw dy·s, ∂L/∂residual = dy·s).
//!
//! Gradient convention: with `accumulate` the result is added to the gradient buffer, otherwise
//! it overwrites it. Plain loops; contributions are summed in f64.

use crate::error::{Error, Result};
use crate::options::{Conv2dGeom, Conv2dGradOptions};

fn check_len(what: &str, len: usize, shape: &[usize]) -> Result<()> {
    if len == shape.iter().product::<usize>() {
        Ok(())
    } else {
        Err(Error::Shape {
            what: what.to_string(),
            expected: shape.to_vec(),
            got: vec![len],
        })
    }
}

/// Checks that `dy_shape` is the output shape of a conv of `x_shape` by `w_shape`.
fn check_dy(
    x_shape: [usize; 4],
    w_shape: [usize; 4],
    geom: Conv2dGeom,
    dy: [usize; 4],
) -> Result<()> {
    let want = geom.output_shape(&x_shape, &w_shape)?;
    if want != dy {
        return Err(Error::Shape {
            what: "conv2d backward dy (conv output)".into(),
            expected: want.to_vec(),
            got: dy.to_vec(),
        });
    }
    Ok(())
}

/// Visits every (output pixel, kernel tap) pair of a conv with input `h×w`, calling
/// `f(oy, ox, ky, kx, iy, ix)` where `(iy, ix)` is the real input pixel the tap reads (through
/// the upsampling), skipping taps in the zero padding.
fn for_each_tap(
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    k: usize,
    geom: Conv2dGeom,
    mut f: impl FnMut(usize, usize, usize, usize, usize, usize),
) {
    let up = if geom.upsample { 2 } else { 1 };
    let [pt, pl, _, _] = geom.pad;
    let s = geom.stride;
    let src = |o: usize, t: usize, pad: usize, vn: usize| -> Option<usize> {
        let v = (o * s + t).checked_sub(pad)?;
        (v < vn).then_some(v / up)
    };
    for oy in 0..ho {
        for ky in 0..k {
            let Some(iy) = src(oy, ky, pt, h * up) else {
                continue;
            };
            for ox in 0..wo {
                for kx in 0..k {
                    if let Some(ix) = src(ox, kx, pl, w * up) {
                        f(oy, ox, ky, kx, iy, ix);
                    }
                }
            }
        }
    }
}

/// The arrays of [`conv2d_backward_input`] with their shapes: reads `dy [N, Cout, Ho, Wo]`
/// (the gradient of the conv's output) and the conv's weight `w [Cout, Cin, k, k]`, writes
/// `dx [N, Cin, H, W]`.
#[derive(Debug)]
pub struct BackwardInputArgs<'a> {
    pub dy: &'a [f32],
    pub dy_shape: [usize; 4],
    pub w: &'a [f32],
    pub w_shape: [usize; 4],
    pub dx: &'a mut [f32],
    pub dx_shape: [usize; 4],
}

/// The arrays of [`conv2d_backward_weight`] with their shapes: reads `dy [N, Cout, Ho, Wo]` and
/// the conv's input `x [N, Cin, H, W]`, writes `dw [Cout, Cin, k, k]` and `db [Cout]`.
#[derive(Debug)]
pub struct BackwardWeightArgs<'a> {
    pub dy: &'a [f32],
    pub dy_shape: [usize; 4],
    pub x: &'a [f32],
    pub x_shape: [usize; 4],
    pub dw: &'a mut [f32],
    pub dw_shape: [usize; 4],
    pub db: &'a mut [f32],
}

/// `dx [N, Cin, H, W] (+)= out_scale · convᵀ(dy [N, Cout, Ho, Wo], w [Cout, Cin, k, k])`:
/// the gradient of the conv's output with respect to its input. With upsampling, each input
/// pixel gathers the gradients of its 2×2 virtual pixels.
pub fn conv2d_backward_input(args: BackwardInputArgs, opts: Conv2dGradOptions) -> Result<()> {
    let BackwardInputArgs {
        dy,
        dy_shape,
        w,
        w_shape,
        dx,
        dx_shape,
    } = args;
    let Conv2dGradOptions {
        geom,
        out_scale,
        accumulate,
    } = opts;
    check_dy(dx_shape, w_shape, geom, dy_shape)?;
    check_len("conv2d backward dy data", dy.len(), &dy_shape)?;
    check_len("conv2d backward weight data", w.len(), &w_shape)?;
    check_len("conv2d backward dx data", dx.len(), &dx_shape)?;
    let [n, cin, h, wd] = dx_shape;
    let [_, cout, ho, wo] = dy_shape;
    let k = w_shape[2];
    let mut acc = vec![0f64; dx.len()];
    for b in 0..n {
        for co in 0..cout {
            let g = &dy[(b * cout + co) * ho * wo..][..ho * wo];
            for ci in 0..cin {
                let a = &mut acc[(b * cin + ci) * h * wd..][..h * wd];
                let wk = &w[(co * cin + ci) * k * k..][..k * k];
                for_each_tap(h, wd, ho, wo, k, geom, |oy, ox, ky, kx, iy, ix| {
                    a[iy * wd + ix] += wk[ky * k + kx] as f64 * g[oy * wo + ox] as f64;
                });
            }
        }
    }
    for (d, a) in dx.iter_mut().zip(acc) {
        let prev = if accumulate { *d } else { 0.0 };
        *d = prev + (a * out_scale as f64) as f32;
    }
    Ok(())
}

/// `dw [Cout, Cin, k, k] (+)= out_scale · Σ_{n, oy, ox} dy ⊗ x_patch` and
/// `db [Cout] (+)= out_scale · Σ_{n, oy, ox} dy`: the gradients of the conv's output with respect
/// to its weight and bias.
pub fn conv2d_backward_weight(args: BackwardWeightArgs, opts: Conv2dGradOptions) -> Result<()> {
    let BackwardWeightArgs {
        dy,
        dy_shape,
        x,
        x_shape,
        dw,
        dw_shape,
        db,
    } = args;
    let Conv2dGradOptions {
        geom,
        out_scale,
        accumulate,
    } = opts;
    check_dy(x_shape, dw_shape, geom, dy_shape)?;
    check_len("conv2d backward dy data", dy.len(), &dy_shape)?;
    check_len("conv2d backward input data", x.len(), &x_shape)?;
    check_len("conv2d backward dw data", dw.len(), &dw_shape)?;
    let [n, cin, h, wd] = x_shape;
    let [_, cout, ho, wo] = dy_shape;
    check_len("conv2d backward db data", db.len(), &[cout])?;
    let k = dw_shape[2];
    let mut aw = vec![0f64; dw.len()];
    let mut ab = vec![0f64; cout];
    for b in 0..n {
        for co in 0..cout {
            let g = &dy[(b * cout + co) * ho * wo..][..ho * wo];
            ab[co] += g.iter().map(|&v| v as f64).sum::<f64>();
            for ci in 0..cin {
                let xp = &x[(b * cin + ci) * h * wd..][..h * wd];
                let a = &mut aw[(co * cin + ci) * k * k..][..k * k];
                for_each_tap(h, wd, ho, wo, k, geom, |oy, ox, ky, kx, iy, ix| {
                    a[ky * k + kx] += g[oy * wo + ox] as f64 * xp[iy * wd + ix] as f64;
                });
            }
        }
    }
    let s = out_scale as f64;
    for (d, a) in dw.iter_mut().zip(aw).chain(db.iter_mut().zip(ab)) {
        let prev = if accumulate { *d } else { 0.0 };
        *d = prev + (a * s) as f32;
    }
    Ok(())
}
