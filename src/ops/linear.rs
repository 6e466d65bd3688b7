//! `shaders/linear.wgsl`: torch.nn.Linear with optional SiLU on input and/or output
//! (TimestepEmbedding's linear_1 → SiLU → linear_2, ResnetBlock2D's time_emb_proj(SiLU(temb))).

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};
use crate::options::LinearOptions;

const LINEAR: KernelSpec = KernelSpec {
    name: "linear",
    source: include_str!("../../shaders/linear.wgsl"),
    entry: "linear",
    bindings: &[
        Access::Uniform,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
    ],
    params: &Params::LAYOUT,
};

/// Invocations per workgroup of `linear.wgsl` and `linear_backward.wgsl` (their `@workgroup_size`).
pub(crate) const WG: u32 = 64;

uniform_params! {
    /// Uniform of `linear.wgsl` and `linear_backward.wgsl`.
    pub(crate) struct Params {
        pub n: u32,
        pub in_f: u32,
        pub out_f: u32,
        /// Bit 0: SiLU on the input; bit 1: SiLU on the output (backward: more bits, see there).
        pub flags: u32,
    }
}

/// The operands of a Linear: `x [N, In]`, `w [Out, In]`, `b [Out]` (also what
/// [`crate::ops::linear_backward`] differentiates). CPU twin: `cpu::linear::LinearInputs`.
#[derive(Clone, Copy, Debug)]
pub struct LinearInputs<'a> {
    pub x: &'a Tensor,
    pub w: &'a Tensor,
    pub b: &'a Tensor,
}

/// Checks x `[N, In]`, w `[Out, In]` and b `[Out]` for `op`; returns (N, In, Out).
pub(crate) fn check_operands(op: &str, inputs: LinearInputs) -> Result<(usize, usize, usize)> {
    let LinearInputs { x, w, b } = inputs;
    let &[n, in_f] = &x.shape[..] else {
        return Err(Error::operand(
            op,
            "x",
            format!("must be [N, In], got shape {:?}", x.shape),
        ));
    };
    let out_f = match w.shape[..] {
        [out_f, wi] if wi == in_f => out_f,
        _ => {
            return Err(Error::Shape {
                what: format!("{op} weight (x has {in_f} features)"),
                expected: vec![w.shape.first().copied().unwrap_or(0), in_f],
                got: w.shape.clone(),
            })
        }
    };
    crate::ops::same_shape(&format!("{op} bias"), &[out_f], &b.shape)?;
    Ok((n, in_f, out_f))
}

/// `out [N, Out] = g(f(x [N, In]) · wᵀ + b)`, `w [Out, In]`, `b [Out]`; f = SiLU when
/// `opts.silu_in`, g = SiLU when `opts.silu_out` (identity otherwise).
pub fn linear(
    gpu: &Gpu,
    inputs: LinearInputs,
    opts: LinearOptions,
    out: &Tensor,
) -> Result<Dispatch> {
    let (n, in_f, out_f) = check_operands("linear", inputs)?;
    let LinearInputs { x, w, b } = inputs;
    let LinearOptions { silu_in, silu_out } = opts;
    crate::ops::same_shape("linear out", &[n, out_f], &out.shape)?;
    let total = to_u32("N·Out", n * out_f)?;
    let params = Params {
        n: to_u32("N", n)?,
        in_f: to_u32("In", in_f)?,
        out_f: to_u32("Out", out_f)?,
        flags: silu_in as u32 | (silu_out as u32) << 1,
    };
    Ok(gpu.dispatch(
        &LINEAR,
        &params,
        &[&x.buffer, &w.buffer, &b.buffer, &out.buffer],
        grid(total.div_ceil(WG)),
    ))
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("linear", what, v)
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![kernel_check!(LINEAR).workgroup_size([WG])]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{assert_close, err_text, gpu, operand_err_text, Rng};

    /// The GPU op on the CPU reference's operands.
    fn run(inputs: cpu::linear::LinearInputs, opts: LinearOptions) -> Vec<f32> {
        let gpu = gpu();
        let cpu::linear::LinearInputs {
            x,
            n,
            in_f,
            w,
            out_f,
            b,
        } = inputs;
        let tx = Tensor::from_slice(gpu, &[n, in_f], x, "x").unwrap();
        let tw = Tensor::from_slice(gpu, &[out_f, in_f], w, "w").unwrap();
        let tb = Tensor::from_slice(gpu, &[out_f], b, "b").unwrap();
        let out = Tensor::zeros(gpu, &[n, out_f], "out").unwrap();
        let inputs = LinearInputs {
            x: &tx,
            w: &tw,
            b: &tb,
        };
        let d = linear(gpu, inputs, opts, &out).unwrap();
        pollster::block_on(gpu.run(&[d])).unwrap();
        out.read_blocking(gpu).unwrap()
    }

    #[test]
    fn linear_matches_cpu() {
        let mut rng = Rng::new(11);
        let cases = [
            (1, 1, 1),
            (1, 32, 128),
            (2, 128, 128),
            (3, 7, 65),
            (5, 129, 33),
            (4, 512, 256),
            (1, 3, 1000),
        ];
        for (i, &(n, in_f, out_f)) in cases.iter().enumerate() {
            let x = rng.normals(n * in_f, 2.0);
            let w = rng.normals(out_f * in_f, 1.0 / (in_f as f32).sqrt());
            let b = rng.normals(out_f, 0.5);
            let (si, so) = (i % 2 == 1, i % 3 == 1);
            let inputs = cpu::linear::LinearInputs {
                x: &x,
                n,
                in_f,
                w: &w,
                out_f,
                b: &b,
            };
            let opts = LinearOptions {
                silu_in: si,
                silu_out: so,
            };
            let got = run(inputs, opts);
            let want = cpu::linear::linear(inputs, opts);
            let what = format!("linear n {n} in {in_f} out {out_f} silu {si}/{so}");
            assert_close(&got, &want, 1e-5, 1e-5, &what);
        }
    }

    #[test]
    fn linear_hand_checked() {
        let w = [1.0, 0.0, -1.0, 2.0, 1.0, 0.0];
        let inputs = cpu::linear::LinearInputs {
            x: &[1.0, 2.0, 3.0, 0.0, 0.0, 1.0],
            n: 2,
            in_f: 3,
            w: &w,
            out_f: 2,
            b: &[0.5, -1.0],
        };
        let got = run(inputs, LinearOptions::default());
        assert_close(&got, &[-1.5, 3.0, -0.5, -1.0], 1e-6, 0.0, "linear hand");
        // SiLU(2) = 2 / (1 + e^-2) ≈ 1.7615942 on the input; SiLU of the output after.
        let inputs = cpu::linear::LinearInputs {
            x: &[0.0, 2.0],
            n: 1,
            in_f: 2,
            w: &[1.0, 1.0],
            out_f: 1,
            b: &[0.0],
        };
        let both = LinearOptions {
            silu_in: true,
            silu_out: true,
        };
        let got = run(inputs, both);
        let s = 1.761_594_2f32;
        assert_close(&got, &[s / (1.0 + (-s).exp())], 1e-6, 1e-6, "linear silu");
    }

    #[test]
    fn linear_rejects_bad_shapes() {
        let gpu = gpu();
        let x = Tensor::zeros(gpu, &[2, 3], "x").unwrap();
        let w = Tensor::zeros(gpu, &[4, 3], "w").unwrap();
        let b = Tensor::zeros(gpu, &[4], "b").unwrap();
        let out = Tensor::zeros(gpu, &[2, 4], "out").unwrap();
        let run = |x: &Tensor, w: &Tensor, b: &Tensor, out: &Tensor| {
            linear(gpu, LinearInputs { x, w, b }, LinearOptions::default(), out)
        };
        assert!(run(&x, &w, &b, &out).is_ok());
        let w_bad = Tensor::zeros(gpu, &[4, 2], "w").unwrap();
        let e = err_text(run(&x, &w_bad, &b, &out), "w of the wrong in-features");
        assert!(
            e.contains("shape mismatch for linear weight (x has 3 features)"),
            "{e}"
        );
        let b_bad = Tensor::zeros(gpu, &[3], "b").unwrap();
        let e = err_text(run(&x, &w, &b_bad, &out), "b of the wrong size");
        assert!(e.contains("shape mismatch for linear bias"), "{e}");
        let out_bad = Tensor::zeros(gpu, &[2, 3], "o").unwrap();
        let e = err_text(run(&x, &w, &b, &out_bad), "out of the wrong shape");
        assert!(e.contains("shape mismatch for linear out"), "{e}");
        let x3 = Tensor::zeros(gpu, &[1, 2, 3], "x3").unwrap();
        let e = operand_err_text(run(&x3, &w, &b, &out), "x of rank 3", "x");
        assert!(e.contains("linear: x: must be [N, In]"), "{e}");
    }
}
