//! `shaders/attention.wgsl`: multi-head self-attention core (softmax(q·kᵀ/√d)·v) on a fused,
//! channel-major qkv projection, as used by diffusers' `Attention` in the U-Net's attention
//! blocks (the q, k, v projections are one 1×1 conv; `to_out` and the residual follow).

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};

/// Invocations per workgroup (`WG` in the shader); each owns a tile of 8 queries.
const WG: usize = 16;
/// Queries per invocation.
const TILE: usize = 8;

const BINDINGS: &[Access] = &[Access::Uniform, Access::Read, Access::ReadWrite];

/// Any L, scalar loads.
const ATTENTION: KernelSpec = KernelSpec {
    name: "attention",
    source: include_str!("../../shaders/attention.wgsl"),
    entry: "attention",
    bindings: BINDINGS,
    params: &Params::LAYOUT,
};

/// L % 4 == 0, vec4 loads (same shader file).
const ATTENTION_VEC4: KernelSpec = KernelSpec {
    name: "attention",
    source: include_str!("../../shaders/attention.wgsl"),
    entry: "attention_vec4",
    bindings: BINDINGS,
    params: &Params::LAYOUT,
};

uniform_params! {
    /// Mirrors `Params` in `shaders/attention.wgsl`.
    struct Params {
        l: u32,
        d: u32,
        c: u32,
        heads: u32,
        tiles: u32,
        total: u32,
        scale: f32,
        _pad: u32,
    }
}

/// Self-attention over the L positions of each image, per head (diffusers `Attention` core,
/// softmax in f32).
///
/// `qkv: [N, 3C, L]` (q = channels `0..C`, k = `C..2C`, v = `2C..3C`; head `h` owns channels
/// `h·d..(h+1)·d` of each, `d = C / heads`), `out: [N, C, L]`:
/// Checks that `qkv` is `[N, 3C, L]` (N, C, L ≥ 1) with `heads` dividing C; returns (N, C, L).
pub(crate) fn check_qkv(op: &str, qkv: &Tensor, heads: usize) -> Result<(usize, usize, usize)> {
    let [n, c3, l] = qkv.shape[..] else {
        return Err(Error::operand(
            op,
            "qkv",
            format!("must be [N, 3C, L], got {:?}", qkv.shape),
        ));
    };
    if c3 == 0 || !c3.is_multiple_of(3) {
        return Err(Error::operand(
            op,
            "qkv",
            format!("{:?} has {c3} channels, not 3·C for some C ≥ 1", qkv.shape),
        ));
    }
    let c = c3 / 3;
    if heads == 0 || !c.is_multiple_of(heads) {
        return Err(Error::operand(
            op,
            "heads",
            format!(
                "{heads} do not divide C = {c} channels (qkv {:?})",
                qkv.shape
            ),
        ));
    }
    if n == 0 || l == 0 {
        return Err(Error::operand(
            op,
            "qkv",
            format!("empty {:?} (need N ≥ 1 and L ≥ 1)", qkv.shape),
        ));
    }
    Ok((n, c, l))
}

/// `out[n, h·d+e, i] = Σ_j softmax_j(q_i·k_j / √d) · v[n, h·d+e, j]` with
/// `q_i·k_j = Σ_{c<d} q[n, h·d+c, i]·k[n, h·d+c, j]`. `out` must be a different buffer from `qkv`
/// (it doubles as the kernel's accumulator).
pub fn attention(gpu: &Gpu, qkv: &Tensor, heads: usize, out: &Tensor) -> Result<Dispatch> {
    let (n, c, l) = check_qkv("attention", qkv, heads)?;
    crate::ops::same_shape("attention out [N, C, L]", &[n, c, l], &out.shape)?;
    let d = c / heads;
    let tiles = l.div_ceil(TILE);
    let total = n * heads * tiles;
    if qkv.numel() > u32::MAX as usize {
        return Err(Error::unsupported(
            "attention",
            format!("qkv {:?} too large to index with u32", qkv.shape),
        ));
    }
    let params = Params {
        l: to_u32("L", l)?,
        d: to_u32("head dim", d)?,
        c: to_u32("C", c)?,
        heads: to_u32("heads", heads)?,
        tiles: to_u32("tiles", tiles)?,
        total: to_u32("N·heads·tiles", total)?,
        scale: 1.0 / (d as f32).sqrt(),
        _pad: 0,
    };
    let spec = if l.is_multiple_of(4) {
        &ATTENTION_VEC4
    } else {
        &ATTENTION
    };
    Ok(gpu.dispatch(
        spec,
        &params,
        &[&qkv.buffer, &out.buffer],
        grid(to_u32("workgroups", total.div_ceil(WG))?),
    ))
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("attention", what, v)
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![
        kernel_check!(ATTENTION)
            .workgroup_size([WG])
            .shader_const("WG", WG),
        kernel_check!(ATTENTION_VEC4)
            .workgroup_size([WG])
            .shader_const("WG", WG),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{assert_close, err_text, gpu, operand_err_text, Rng};

    /// Runs GPU and CPU on `data` and compares.
    fn check_data(n: usize, c: usize, l: usize, heads: usize, data: &[f32], what: &str) {
        let gpu = gpu();
        let qkv = Tensor::from_slice(gpu, &[n, 3 * c, l], data, "qkv").unwrap();
        // `out` doubles as the accumulator: stale contents (here NaN) must not leak through.
        let stale = vec![f32::NAN; n * c * l];
        let out = Tensor::from_slice(gpu, &[n, c, l], &stale, "out").unwrap();
        let d = attention(gpu, &qkv, heads, &out).unwrap();
        pollster::block_on(gpu.run(&[d])).unwrap();
        let got = out.read_blocking(gpu).unwrap();
        let want = cpu::attention::attention(data, n, c, l, heads);
        assert!(
            want.iter().all(|x| x.is_finite()),
            "{what}: reference not finite"
        );
        let what = format!("{what}: attention n={n} c={c} l={l} heads={heads}");
        assert_close(&got, &want, 1e-4, 1e-4, &what);
    }

    /// GPU vs CPU on standard normal data.
    fn check(n: usize, c: usize, l: usize, heads: usize, seed: u64) {
        let data = Rng::new(seed).normals(n * 3 * c * l, 1.0);
        check_data(n, c, l, heads, &data, "normal");
    }

    #[test]
    fn attention_matches_cpu() {
        // (n, c, l, heads): awkward L (1, odd, not a multiple of 8 or 32), d = 1, d not a
        // multiple of 4, several heads, N > 1.
        for (seed, &(n, c, l, heads)) in [
            // L % 4 != 0: scalar-load kernel.
            (1, 4, 1, 1),
            (1, 1, 1, 1),
            (1, 3, 5, 1),
            (2, 6, 7, 3),
            (1, 5, 33, 5),
            (1, 16, 70, 4),
            (2, 12, 31, 2),
            (1, 8, 49, 1),
            // L % 4 == 0: vec4 kernel (including a tile half past L: L = 4, 12, 36).
            (1, 4, 4, 1),
            (2, 3, 12, 1),
            (3, 8, 64, 2),
            (1, 10, 36, 5),
            (2, 12, 20, 3),
            (1, 32, 100, 1),
            (1, 8, 8, 8),
            (1, 10, 16, 2),
            (1, 96, 20, 1),
        ]
        .iter()
        .enumerate()
        {
            check(n, c, l, heads, seed as u64 + 10);
        }
    }

    /// Scores in the thousands (exp() overflows f32 past 88 without the running max). q and k
    /// are integers and d is a power of 4, so the scores are exact on both sides and the
    /// comparison measures the softmax, not the rounding of huge dot products.
    #[test]
    fn attention_large_magnitude_is_stable() {
        for (seed, &(n, c, l, heads)) in
            [(2, 8, 37, 2), (1, 4, 9, 1), (1, 32, 40, 2), (2, 3, 20, 3)]
                .iter()
                .enumerate()
        {
            let mut rng = Rng::new(seed as u64 + 100);
            let mut data = rng.normals(n * 3 * c * l, 1.0);
            for b in 0..n {
                // q and k: integers in [-40, 40] → |q·k| up to 1600·d.
                for x in &mut data[b * 3 * c * l..(b * 3 + 2) * c * l] {
                    *x = rng.range(0, 80) as f32 - 40.0;
                }
            }
            check_data(n, c, l, heads, &data, "large");
        }
    }

    #[test]
    fn attention_rejects_bad_shapes() {
        let gpu = gpu();
        let qkv = Tensor::zeros(gpu, &[1, 12, 5], "qkv").unwrap();
        let out = Tensor::zeros(gpu, &[1, 4, 5], "out").unwrap();
        assert!(attention(gpu, &qkv, 1, &out).is_ok());
        let e = operand_err_text(
            attention(gpu, &qkv, 3, &out),
            "3 heads do not divide 4",
            "heads",
        );
        assert!(
            e.contains("attention: heads: 3 do not divide C = 4 channels"),
            "{e}"
        );
        let e = operand_err_text(attention(gpu, &qkv, 0, &out), "zero heads", "heads");
        assert!(
            e.contains("attention: heads: 0 do not divide C = 4 channels"),
            "{e}"
        );
        let wrong_out = Tensor::zeros(gpu, &[1, 4, 6], "out").unwrap();
        let e = err_text(attention(gpu, &qkv, 2, &wrong_out), "out L differs");
        assert!(
            e.contains("shape mismatch for attention out [N, C, L]"),
            "{e}"
        );
        let not3 = Tensor::zeros(gpu, &[1, 10, 5], "qkv").unwrap();
        let out10 = Tensor::zeros(gpu, &[1, 10, 5], "out").unwrap();
        let e = operand_err_text(attention(gpu, &not3, 1, &out10), "10 is not 3·C", "qkv");
        assert!(
            e.contains("attention: qkv: [1, 10, 5] has 10 channels, not 3·C"),
            "{e}"
        );
        let flat = Tensor::zeros(gpu, &[60], "qkv").unwrap();
        let e = operand_err_text(attention(gpu, &flat, 1, &out), "not 3-D", "qkv");
        assert!(e.contains("attention: qkv: must be [N, 3C, L]"), "{e}");
    }

    /// Timing on the local device: `cargo test --release --lib ops::attention -- --ignored
    /// --nocapture`. Prints the best wall time of several runs (submit + wait) and, on Linux, the
    /// CPU time the process spent per run (what a CPU driver like lavapipe really costs when the
    /// machine is shared).
    #[test]
    #[ignore]
    fn attention_timing() {
        let gpu = gpu();
        println!("device: {}", gpu.describe());
        for &(n, c, heads, l) in &[
            (1, 256, 1, 256),
            (16, 64, 8, 64),
            (1, 256, 1, 255),
            (16, 64, 8, 63),
        ] {
            let mut rng = Rng::new(7);
            let data = rng.normals(n * 3 * c * l, 1.0);
            let qkv = Tensor::from_slice(gpu, &[n, 3 * c, l], &data, "qkv").unwrap();
            let out = Tensor::zeros(gpu, &[n, c, l], "out").unwrap();
            let t = std::time::Instant::now();
            let d = attention(gpu, &qkv, heads, &out).unwrap();
            pollster::block_on(gpu.run(std::slice::from_ref(&d))).unwrap();
            // Includes compiling the pipeline unless the driver's shader cache already has it.
            let first_ms = t.elapsed().as_secs_f64() * 1e3;
            let reps = 20;
            let mut best = f64::MAX;
            let cpu0 = process_cpu_ns();
            for _ in 0..reps {
                let t = std::time::Instant::now();
                pollster::block_on(gpu.run(std::slice::from_ref(&d))).unwrap();
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            let cpu_ms = cpu0
                .zip(process_cpu_ns())
                .map(|(c0, c1)| (c1 - c0) as f64 / 1e6 / reps as f64);
            // q·kᵀ and p·v: L²·d multiply-adds each per (n, head).
            let flops = 4.0 * (n * heads * l * l * (c / heads)) as f64;
            let kernel = if l.is_multiple_of(4) {
                "vec4"
            } else {
                "scalar"
            };
            print!(
                "attention N={n} C={c} heads={heads} L={l} ({kernel}): {best:.2} ms, {:.1} GFLOP/s",
                flops / best / 1e6
            );
            if let Some(ms) = cpu_ms {
                print!(
                    "; CPU {ms:.2} ms/run, {:.1} GFLOP per CPU-second",
                    flops / ms / 1e6
                );
            }
            println!("; first run {first_ms:.0} ms");
        }
    }

    /// Total CPU time of this process's threads (Linux), for timing CPU drivers.
    fn process_cpu_ns() -> Option<u64> {
        let mut total = 0;
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(total)
    }
}
