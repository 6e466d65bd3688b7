//! `shaders/timestep.wgsl`: sinusoidal timestep embedding (diffusers `get_timestep_embedding`).

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};

const TIMESTEP: KernelSpec = KernelSpec {
    name: "timestep",
    source: include_str!("../../shaders/timestep.wgsl"),
    entry: "timestep_embedding",
    bindings: &[
        Access::Uniform,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
    ],
    params: &Params::LAYOUT,
};

/// Invocations per workgroup of the shader (its `@workgroup_size`).
const WG: u32 = 64;

uniform_params! {
    struct Params {
        n: u32,
        dim: u32,
        half: u32,
        flip: u32,
    }
}

/// `v` truncated to its 12 leading significant bits (so that products of two such values, or
/// of one with a 12-bit value, are exact in f32).
fn top12(v: f64) -> f32 {
    f32::from_bits((v as f32).to_bits() & 0xFFFF_F000)
}

/// The shader's frequency table: per column i, f_i / 2π (turns per unit t) as f1 + f2 + f3
/// (f1, f2 of 12 significant bits, f3 the f32 rest), padded to a vec4. At least one row.
fn frequency_table(half: usize, freq_shift: f32) -> Vec<f32> {
    let mut table = vec![0f32; 4 * half.max(1)];
    for (i, row) in table.chunks_mut(4).take(half).enumerate() {
        let turns = crate::options::timestep_frequency(i, half, freq_shift) / std::f64::consts::TAU;
        let f1 = top12(turns);
        let r1 = turns - f1 as f64;
        let f2 = top12(r1);
        row[..3].copy_from_slice(&[f1, f2, (r1 - f2 as f64) as f32]);
    }
    table
}

/// out [N, dim] = diffusers' sinusoidal embedding of t [N] (f32 timesteps, any real value):
/// [sin(t·f) ‖ cos(t·f)] ([cos ‖ sin] when `flip_sin_to_cos`), f_i = exp(−ln(10000)·i /
/// (dim/2 − freq_shift)), zero last column for odd dim. Accurate to ~2e-6 for |t| ≤ 1000.
pub fn timestep_embedding(
    gpu: &Gpu,
    t: &Tensor,
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f32,
    out: &Tensor,
) -> Result<Dispatch> {
    let [n] = t.shape[..] else {
        return Err(Error::operand(
            "timestep_embedding",
            "t",
            format!("must be [N], got shape {:?}", t.shape),
        ));
    };
    let half = dim / 2;
    if dim == 0 {
        return Err(Error::operand("timestep_embedding", "dim", "must be ≥ 1"));
    }
    if half > 0 && (!(half as f32 - freq_shift).is_finite() || half as f32 == freq_shift) {
        return Err(Error::operand(
            "timestep_embedding",
            "freq_shift",
            format!(
                "dim/2 − freq_shift must be a finite non-zero number \
                 (dim {dim}, freq_shift {freq_shift})"
            ),
        ));
    }
    crate::ops::same_shape("timestep_embedding out", &[n, dim], &out.shape)?;
    let params = Params {
        n: to_u32("N", n)?,
        dim: to_u32("dim", dim)?,
        half: to_u32("dim/2", half)?,
        flip: flip_sin_to_cos as u32,
    };
    let invocations = to_u32("N·(dim − dim/2)", n * (dim - half))?;
    let table = Tensor::from_slice(
        gpu,
        &[half.max(1), 4],
        &frequency_table(half, freq_shift),
        "timestep frequencies",
    )?;
    Ok(gpu.dispatch(
        &TIMESTEP,
        &params,
        &[&t.buffer, &table.buffer, &out.buffer],
        grid(invocations.div_ceil(WG)),
    ))
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("timestep_embedding", what, v)
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![kernel_check!(TIMESTEP).workgroup_size([WG])]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{assert_close, err_text, gpu, operand_err_text, Rng};

    fn run(t: &[f32], dim: usize, flip: bool, shift: f32) -> Vec<f32> {
        let gpu = gpu();
        let tt = Tensor::from_slice(gpu, &[t.len()], t, "t").unwrap();
        let out = Tensor::zeros(gpu, &[t.len(), dim], "out").unwrap();
        let d = timestep_embedding(gpu, &tt, dim, flip, shift, &out).unwrap();
        pollster::block_on(gpu.run(&[d])).unwrap();
        out.read_blocking(gpu).unwrap()
    }

    #[test]
    fn timestep_matches_f64_reference() {
        let mut rng = Rng::new(3);
        // All integer timesteps of a 1000-step schedule, then random real ones in [0, 1000).
        let ints: Vec<f32> = (0..1000).map(|v| v as f32).collect();
        let reals: Vec<f32> = (0..300).map(|_| rng.uniform() * 1000.0).collect();
        for (t, dim, flip, shift) in [
            (&ints[..], 32, true, 0.0),
            (&ints[..], 128, false, 1.0),
            (&reals[..], 33, false, 1.0),
            (&reals[..], 7, true, 0.0),
            (&reals[..], 2, true, 0.0),
            (&[999.0, 998.5, 0.001, 1e-3, 123.456][..], 320, true, 1.0),
        ] {
            let got = run(t, dim, flip, shift);
            let want = cpu::timestep::timestep_embedding(t, dim, flip, shift);
            let what = format!("timestep dim {dim} flip {flip} shift {shift}");
            assert_close(&got, &want, 2e-6, 0.0, &what);
        }
    }

    #[test]
    fn timestep_hand_checked() {
        // t = 999, dim 2 (one frequency, 1): [sin 999, cos 999]; dim 1: only the zero pad.
        let got = run(&[999.0], 2, false, 0.0);
        assert_close(&got, &[-0.026_460_753, 0.999_65], 2e-6, 0.0, "t 999");
        assert_eq!(run(&[5.0, 6.0], 1, false, 0.0), vec![0.0, 0.0]);
        let got = run(&[1.0], 5, true, 1.0);
        assert_close(
            &got,
            &[0.540_302_3, 1.0, 0.841_471, 1e-4, 0.0],
            1e-6,
            0.0,
            "t 1",
        );
    }

    #[test]
    fn timestep_rejects_bad_args() {
        let gpu = gpu();
        let t = Tensor::zeros(gpu, &[3], "t").unwrap();
        let out = Tensor::zeros(gpu, &[3, 8], "out").unwrap();
        assert!(timestep_embedding(gpu, &t, 8, false, 1.0, &out).is_ok());
        let e = operand_err_text(
            timestep_embedding(gpu, &t, 8, false, 4.0, &out),
            "freq_shift = dim/2",
            "freq_shift",
        );
        assert!(
            e.contains(
                "timestep_embedding: freq_shift: dim/2 − freq_shift must be a finite non-zero \
                 number"
            ),
            "{e}"
        );
        let e = err_text(
            timestep_embedding(gpu, &t, 6, false, 0.0, &out),
            "dim 6 into out [3, 8]",
        );
        assert!(
            e.contains("shape mismatch for timestep_embedding out"),
            "{e}"
        );
        let e = operand_err_text(
            timestep_embedding(gpu, &t, 0, false, 0.0, &out),
            "dim 0",
            "dim",
        );
        assert!(e.contains("timestep_embedding: dim: must be ≥ 1"), "{e}");
        let t2 = Tensor::zeros(gpu, &[3, 1], "t2").unwrap();
        let e = operand_err_text(
            timestep_embedding(gpu, &t2, 8, false, 0.0, &out),
            "t of rank 2",
            "t",
        );
        assert!(e.contains("timestep_embedding: t: must be [N]"), "{e}");
    }
}
