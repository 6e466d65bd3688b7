//! The option and geometry types of the ops, shared by the GPU ops ([`crate::ops`]) and their
//! CPU references ([`crate::cpu`]): a GPU op and its CPU twin take the same type, so a reader
//! sees the pair, and neither layer imports the other. Also what both must compute identically
//! (a convolution's output shape, the timestep embedding's frequencies).
//!
//! The tensors of an op call are grouped beside the op (`ops::<op>::…Inputs` with GPU tensors,
//! `cpu::<op>::…Inputs` with slices and their shapes); what configures the call lives here.

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

    /// Checks `x [N, Cin, H, W]` against `w [Cout, Cin, k, k]` and this geometry; returns the
    /// output shape `[N, Cout, Ho, Wo]`. Shared by the CPU reference and the GPU ops.
    pub fn output_shape(self, x: &[usize], w: &[usize]) -> Result<[usize; 4]> {
        let &[n, cin, h, wd] = x else {
            return Err(Error::operand(
                "conv2d",
                "x",
                format!("must be 4-D [N, Cin, H, W], got {x:?}"),
            ));
        };
        let &[cout, wcin, kh, kw] = w else {
            return Err(Error::operand(
                "conv2d",
                "weight",
                format!("must be 4-D [Cout, Cin, k, k], got {w:?}"),
            ));
        };
        if x.contains(&0) || w.contains(&0) {
            return Err(Error::operand(
                "conv2d",
                "x",
                format!("empty tensor (input {x:?}, weight {w:?})"),
            ));
        }
        if wcin != cin || kh != kw {
            return Err(Error::Shape {
                what: "conv2d weight".to_string(),
                expected: vec![cout, cin, kh, kh],
                got: w.to_vec(),
            });
        }
        if self.stride == 0 {
            return Err(Error::operand("conv2d", "stride", "must be ≥ 1"));
        }
        let (ho, wo) = self.out_hw(h, wd, kh);
        if ho == 0 || wo == 0 {
            return Err(Error::unsupported(
                "conv2d",
                format!(
                    "input {h}×{wd} (upsample {}) padded by {:?} is smaller than the {kh}×{kh} kernel",
                    self.upsample, self.pad
                ),
            ));
        }
        Ok([n, cout, ho, wo])
    }
}

/// How a convolution's gradients are formed (`conv2d_backward_input` / `_weight`, GPU and
/// CPU): the forward's geometry and output scale, and whether the result is added to the
/// gradient buffers instead of overwriting them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dGradOptions {
    pub geom: Conv2dGeom,
    /// The forward epilogue's `out_scale` (the gradients are scaled by it).
    pub out_scale: f32,
    /// Add to the gradients instead of overwriting them.
    pub accumulate: bool,
}

/// A GroupNorm (torch.nn.GroupNorm: affine, biased variance) and the SiLU fused after it, for
/// the forward and its gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormOptions {
    /// Number of groups; must divide the channel count.
    pub groups: usize,
    /// Added to the variance (≥ 0).
    pub eps: f32,
    /// SiLU after the affine.
    pub silu: bool,
}

/// The SiLUs fused around a Linear `y = g(f(x)·wᵀ + b)`, for the forward and its gradient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinearOptions {
    /// f = SiLU (else identity) on the input.
    pub silu_in: bool,
    /// g = SiLU (else identity) on the output.
    pub silu_out: bool,
}

/// AdamW hyper-parameters for one step (torch.optim.AdamW names; `max_grad_norm` as in
/// torch.nn.utils.clip_grad_norm_, 0 = no clipping).
/// f64 like torch's Python floats, so that e.g. 1 − β2 is formed exactly as torch forms it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWParams {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// 1-based step number (bias correction uses β^step).
    pub step: u32,
    pub max_grad_norm: f64,
}

/// The per-step constants of an AdamW update, formed in f64 as torch does, used as f32.
#[derive(Clone, Copy, Debug)]
pub struct AdamWCoefficients {
    /// 1 − lr·weight_decay.
    pub wd_mul: f32,
    pub one_minus_b1: f32,
    pub beta2: f32,
    pub one_minus_b2: f32,
    pub eps: f32,
    pub max_grad_norm: f32,
    /// lr / (1 − β1^step).
    pub step_size: f32,
    /// √(1 − β2^step).
    pub bc2_sqrt: f32,
}

impl AdamWParams {
    /// Errors on values torch would reject (or that make no sense).
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, what: &str| {
            Err(Error::setting(name, format!("AdamW: {what} ({self:?})")))
        };
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return bad("lr", "lr must be finite and ≥ 0");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("betas", "betas must be in [0, 1)");
        }
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            return bad("eps", "eps must be finite and ≥ 0");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("weight_decay", "weight_decay must be finite and ≥ 0");
        }
        if self.step == 0 {
            return bad("step", "step is 1-based");
        }
        if !(self.max_grad_norm >= 0.0 && self.max_grad_norm.is_finite()) {
            return bad(
                "max_grad_norm",
                "max_grad_norm must be finite and ≥ 0 (0 = no clipping)",
            );
        }
        Ok(())
    }

    /// The step's constants (bias corrections in f64, as torch computes them in Python floats).
    pub fn coefficients(&self) -> AdamWCoefficients {
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2 = 1.0 - b2.powi(self.step as i32);
        AdamWCoefficients {
            wd_mul: (1.0 - self.lr * self.weight_decay) as f32,
            one_minus_b1: (1.0 - b1) as f32,
            beta2: b2 as f32,
            one_minus_b2: (1.0 - b2) as f32,
            eps: self.eps as f32,
            max_grad_norm: self.max_grad_norm as f32,
            step_size: (self.lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
        }
    }
}

/// Frequency of column `i` of the `half` sinusoid pairs of the timestep embedding (diffusers
/// `get_timestep_embedding`, max_period 10000): exp(−ln(10000)·i / (half − shift)). The CPU
/// reference evaluates it directly, the GPU op tabulates it.
pub fn timestep_frequency(i: usize, half: usize, freq_shift: f32) -> f64 {
    (-(10000f64.ln()) * i as f64 / (half as f64 - freq_shift as f64)).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geom_out_hw() {
        assert_eq!(Conv2dGeom::same(3).out_hw(32, 17, 3), (32, 17));
        assert_eq!(Conv2dGeom::downsample(1).out_hw(32, 17, 3), (16, 9));
        assert_eq!(Conv2dGeom::downsample(0).out_hw(32, 17, 3), (16, 8));
        assert_eq!(Conv2dGeom::upsample().out_hw(8, 5, 3), (16, 10));
        assert_eq!(Conv2dGeom::same(1).out_hw(4, 4, 1), (4, 4));
        let tight = Conv2dGeom {
            pad: [0; 4],
            ..Conv2dGeom::same(3)
        };
        assert_eq!(tight.out_hw(2, 5, 3), (0, 0));
    }
}
