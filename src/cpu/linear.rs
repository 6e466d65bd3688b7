//! Reference for `shaders/linear.wgsl`: torch.nn.Linear with optional SiLU on input and output.

use crate::options::LinearOptions;

/// SiLU (swish): v·σ(v) = v / (1 + e^(−v)).
pub fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

/// The operands of a Linear with their sizes: `x [n, in_f]`, `w [out_f, in_f]`, `b [out_f]`
/// (also what [`crate::cpu::linear_backward`] differentiates).
#[derive(Clone, Copy, Debug)]
pub struct LinearInputs<'a> {
    pub x: &'a [f32],
    pub n: usize,
    pub in_f: usize,
    pub w: &'a [f32],
    pub out_f: usize,
    pub b: &'a [f32],
}

/// y [n, out_f] = f(x) · wᵀ + b; f = SiLU when `opts.silu_in` (else identity), and SiLU applied
/// to y when `opts.silu_out`. Dots accumulate in f64.
pub fn linear(inputs: LinearInputs, opts: LinearOptions) -> Vec<f32> {
    let LinearInputs {
        x,
        n,
        in_f,
        w,
        out_f,
        b,
    } = inputs;
    let LinearOptions { silu_in, silu_out } = opts;
    assert_eq!(x.len(), n * in_f, "linear: x length");
    assert_eq!(w.len(), out_f * in_f, "linear: w length");
    assert_eq!(b.len(), out_f, "linear: b length");
    let mut y = Vec::with_capacity(n * out_f);
    for row in 0..n {
        let xr: Vec<f32> = x[row * in_f..(row + 1) * in_f]
            .iter()
            .map(|&v| if silu_in { silu(v) } else { v })
            .collect();
        for o in 0..out_f {
            let wr = &w[o * in_f..(o + 1) * in_f];
            let dot: f64 = xr.iter().zip(wr).map(|(&a, &c)| a as f64 * c as f64).sum();
            let v = (dot + b[o] as f64) as f32;
            y.push(if silu_out { silu(v) } else { v });
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked() {
        // x = [[1, 2, 3]], W = [[1, 0, -1], [2, 1, 0]], b = [0.5, -1]:
        // y = [1 - 3 + 0.5, 2 + 2 - 1] = [-1.5, 3].
        let w = [1.0, 0.0, -1.0, 2.0, 1.0, 0.0];
        let inputs = LinearInputs {
            x: &[1.0, 2.0, 3.0],
            n: 1,
            in_f: 3,
            w: &w,
            out_f: 2,
            b: &[0.5, -1.0],
        };
        let y = linear(inputs, LinearOptions::default());
        assert_eq!(y, vec![-1.5, 3.0]);
        let silu_out = LinearOptions {
            silu_in: false,
            silu_out: true,
        };
        let y = linear(inputs, silu_out);
        assert!((y[0] - silu(-1.5)).abs() < 1e-7 && (y[1] - silu(3.0)).abs() < 1e-7);
        // SiLU on the input: silu(0) = 0, silu(2) = 2/(1+e^-2) ≈ 1.761594.
        let inputs = LinearInputs {
            x: &[0.0, 2.0],
            n: 1,
            in_f: 2,
            w: &[1.0, 1.0],
            out_f: 1,
            b: &[0.0],
        };
        let silu_in = LinearOptions {
            silu_in: true,
            silu_out: false,
        };
        let y = linear(inputs, silu_in);
        assert!((y[0] - 1.761_594_2).abs() < 1e-6, "{y:?}");
        assert_eq!(silu(0.0), 0.0);
    }
}
