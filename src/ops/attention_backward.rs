//! `shaders/attention_backward.wgsl`: gradients of the self-attention core
//! ([`crate::ops::attention::attention`]) with respect to its fused qkv input, flash-attention
//! style (probabilities recomputed, never stored; no atomics).

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};

/// Invocations per workgroup (`WG` in the shader); each owns a tile of 8 positions.
const WG: usize = 16;
/// Positions per invocation.
const TILE: usize = 8;
/// Invocations per workgroup of the repacking kernels.
const PACK_WG: usize = 256;

const SOURCE: &str = include_str!("../../shaders/attention_backward.wgsl");
const PACK_SOURCE: &str = include_str!("../../shaders/attention_backward_pack.wgsl");

/// Per query: log-sum-exp of the scores and D = dO·O → stats.
const STATS: KernelSpec = KernelSpec {
    name: "attention_backward",
    source: SOURCE,
    entry: "attn_bwd_stats",
    bindings: &[
        Access::Uniform,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
    ],
    params: &Params::LAYOUT,
};

const GRAD_BINDINGS: &[Access] = &[
    Access::Uniform,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
];

/// dq, one tile of queries per invocation.
const DQ: KernelSpec = KernelSpec {
    name: "attention_backward",
    source: SOURCE,
    entry: "attn_bwd_dq",
    bindings: GRAD_BINDINGS,
    params: &Params::LAYOUT,
};

/// dk and dv, one tile of keys per invocation.
const DKV: KernelSpec = KernelSpec {
    name: "attention_backward",
    source: SOURCE,
    entry: "attn_bwd_dkv",
    bindings: GRAD_BINDINGS,
    params: &Params::LAYOUT,
};

/// Two `[R, L]` tensors → zero-padded `[R, Lp]` copies.
const PACK: KernelSpec = KernelSpec {
    name: "attention_backward_pack",
    source: PACK_SOURCE,
    entry: "pack",
    bindings: &[
        Access::Uniform,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    params: &PackParams::LAYOUT,
};

/// `[R, Lp]` → `[R, L]`, overwriting or adding.
const UNPACK: KernelSpec = KernelSpec {
    name: "attention_backward_pack",
    source: PACK_SOURCE,
    entry: "unpack",
    bindings: &[Access::Uniform, Access::Read, Access::ReadWrite],
    params: &PackParams::LAYOUT,
};

uniform_params! {
    /// Mirrors `Params` in `shaders/attention_backward.wgsl`.
    struct Params {
        l: u32,
        l4: u32,
        d: u32,
        c: u32,
        heads: u32,
        tiles: u32,
        total: u32,
        accumulate: u32,
        scale: f32,
        _pad: [u32; 3],
    }
}

uniform_params! {
    /// Mirrors `Params` in `shaders/attention_backward_pack.wgsl`.
    struct PackParams {
        groups_a: u32,
        total: u32,
        l: u32,
        l4: u32,
        accumulate: u32,
        _pad: [u32; 3],
    }
}

/// Backward of [`crate::ops::attention::attention`]: `d_qkv = (accumulate ? d_qkv : 0) +
/// ∂⟨d_out, attention(qkv)⟩/∂qkv`.
///
/// `qkv: [N, 3C, L]` (the forward's input: q = channels `0..C`, k = `C..2C`, v = `2C..3C`; head
/// `h` owns channels `h·d..(h+1)·d` of each), `d_out: [N, C, L]` (gradient of the forward's
/// output), `d_qkv: [N, 3C, L]` receives dq, dk, dv in the matching channel ranges; it must be a
/// different buffer from `qkv` and `d_out`. With `P = softmax(scale·QᵀK)`, `scale = 1/√d`:
/// `dV = Pᵀ·dO`, `dS = P ∘ (dP − rowsum(dO ∘ O))` with `dP = dO·Vᵀ`, `dQ = scale·dS·K`,
/// `dK = scale·dSᵀ·Q`.
///
/// Returns the dispatches to run in order: a stats pass (per query log-sum-exp and `dO·O`,
/// recomputed from qkv, so the forward's output is not needed), a dq pass and a dk/dv pass; when
/// `L % 4 != 0` they are preceded by a repacking pass (qkv and d_out into rows of `Lp = L`
/// rounded up to 4) and followed by one unpacking `d_qkv`. Scratch is allocated here and kept
/// alive by the returned dispatches: stats `[N, heads, 2, Lp]` (8·N·heads·Lp bytes), plus, when
/// `L % 4 != 0`, padded copies of qkv, d_out and d_qkv (4·N·7C·Lp bytes). Build once, run often.
pub fn attention_backward(
    gpu: &Gpu,
    qkv: &Tensor,
    d_out: &Tensor,
    heads: usize,
    accumulate: bool,
    d_qkv: &Tensor,
) -> Result<Vec<Dispatch>> {
    let (n, c, l) = crate::ops::attention::check_qkv("attention_backward", qkv, heads)?;
    crate::ops::same_shape(
        "attention_backward d_out [N, C, L]",
        &[n, c, l],
        &d_out.shape,
    )?;
    crate::ops::same_shape(
        "attention_backward d_qkv [N, 3C, L]",
        &[n, 3 * c, l],
        &d_qkv.shape,
    )?;
    crate::ops::check_no_alias(
        "attention_backward",
        &[("d_qkv", d_qkv)],
        &[("qkv", qkv), ("d_out", d_out)],
    )?;
    let d = c / heads;
    let lp = l.next_multiple_of(4);
    if n * 3 * c * lp > u32::MAX as usize {
        return Err(Error::unsupported(
            "attention_backward",
            format!("qkv {:?} too large to index with u32", qkv.shape),
        ));
    }
    let tiles = l.div_ceil(TILE);
    let total = n * heads * tiles;
    let (l_u32, l4) = (to_u32("L", l)?, to_u32("Lp/4", lp / 4)?);
    let params = Params {
        l: l_u32,
        l4,
        d: to_u32("head dim", d)?,
        c: to_u32("C", c)?,
        heads: to_u32("heads", heads)?,
        tiles: to_u32("tiles", tiles)?,
        total: to_u32("N·heads·tiles", total)?,
        accumulate: 0,
        scale: 1.0 / (d as f32).sqrt(),
        _pad: [0; 3],
    };
    let params = |accumulate: bool| Params {
        accumulate: accumulate as u32,
        ..params
    };
    let workgroups = grid(to_u32("workgroups", total.div_ceil(WG))?);
    let stats = Tensor::zeros(gpu, &[n, heads, 2, lp], "attention_backward stats")?;
    let mut dispatches = Vec::new();
    // The kernels' inputs and output, rows padded to Lp where L % 4 != 0.
    let (qkv_p, d_out_p, d_qkv_p);
    let (src, dsrc, dst, acc) = if lp == l {
        (qkv, d_out, d_qkv, accumulate)
    } else {
        qkv_p = Tensor::zeros(gpu, &[n, 3 * c, lp], "attention_backward qkv (padded)")?;
        d_out_p = Tensor::zeros(gpu, &[n, c, lp], "attention_backward d_out (padded)")?;
        d_qkv_p = Tensor::zeros(gpu, &[n, 3 * c, lp], "attention_backward d_qkv (padded)")?;
        let groups_a = n * 3 * c * lp / 4;
        let total = groups_a + n * c * lp / 4;
        let params = PackParams {
            groups_a: to_u32("qkv groups", groups_a)?,
            total: to_u32("groups", total)?,
            l: l_u32,
            l4,
            accumulate: 0,
            _pad: [0; 3],
        };
        dispatches.push(gpu.dispatch(
            &PACK,
            &params,
            &[&qkv.buffer, &d_out.buffer, &qkv_p.buffer, &d_out_p.buffer],
            grid(to_u32("workgroups", total.div_ceil(PACK_WG))?),
        ));
        (&qkv_p, &d_out_p, &d_qkv_p, false)
    };
    dispatches.push(gpu.dispatch(
        &STATS,
        &params(false),
        &[&src.buffer, &dsrc.buffer, &stats.buffer],
        workgroups,
    ));
    for spec in [&DQ, &DKV] {
        dispatches.push(gpu.dispatch(
            spec,
            &params(acc),
            &[&src.buffer, &dsrc.buffer, &stats.buffer, &dst.buffer],
            workgroups,
        ));
    }
    if lp != l {
        let total = n * 3 * c * lp / 4;
        let params = PackParams {
            groups_a: 0,
            total: to_u32("groups", total)?,
            l: l_u32,
            l4,
            accumulate: accumulate as u32,
            _pad: [0; 3],
        };
        dispatches.push(gpu.dispatch(
            &UNPACK,
            &params,
            &[&dst.buffer, &d_qkv.buffer],
            grid(to_u32("workgroups", total.div_ceil(PACK_WG))?),
        ));
    }
    Ok(dispatches)
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("attention_backward", what, v)
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![
        kernel_check!(STATS)
            .workgroup_size([WG])
            .shader_const("WG", WG),
        kernel_check!(DQ)
            .workgroup_size([WG])
            .shader_const("WG", WG),
        kernel_check!(DKV)
            .workgroup_size([WG])
            .shader_const("WG", WG),
        kernel_check!(PACK)
            .workgroup_size([PACK_WG])
            .shader_const("WG", PACK_WG),
        kernel_check!(UNPACK)
            .workgroup_size([PACK_WG])
            .shader_const("WG", PACK_WG),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{assert_close, err_text, gpu, operand_err_text, Rng};

    /// Runs GPU and CPU on `qkv`, `d_out` with `d_qkv` pre-filled with `init` and compares;
    /// `dims` = (n, c, l, heads), as in the case tables.
    fn check_data(
        dims: (usize, usize, usize, usize),
        qkv: &[f32],
        d_out: &[f32],
        init: &[f32],
        accumulate: bool,
        what: &str,
    ) {
        let (n, c, l, heads) = dims;
        let gpu = gpu();
        let t_qkv = Tensor::from_slice(gpu, &[n, 3 * c, l], qkv, "qkv").unwrap();
        let t_dout = Tensor::from_slice(gpu, &[n, c, l], d_out, "d_out").unwrap();
        let t_grad = Tensor::from_slice(gpu, &[n, 3 * c, l], init, "d_qkv").unwrap();
        let ds = attention_backward(gpu, &t_qkv, &t_dout, heads, accumulate, &t_grad).unwrap();
        pollster::block_on(gpu.run(&ds)).unwrap();
        let got = t_grad.read_blocking(gpu).unwrap();
        let mut want = cpu::attention_backward::attention_backward(qkv, d_out, n, c, l, heads);
        assert!(
            want.iter().all(|x| x.is_finite()),
            "{what}: reference not finite"
        );
        if accumulate {
            for (w, i) in want.iter_mut().zip(init) {
                *w += i;
            }
        }
        let what =
            format!("{what}: attention_backward n={n} c={c} l={l} heads={heads} acc={accumulate}");
        assert_close(&got, &want, 1e-4, 1e-4, &what);
    }

    /// GPU vs CPU on standard normal data; the output is pre-filled with NaN when overwriting
    /// (stale contents must not leak through) and with random values when accumulating.
    fn check(n: usize, c: usize, l: usize, heads: usize, accumulate: bool, seed: u64) {
        let mut rng = Rng::new(seed);
        let qkv = rng.normals(n * 3 * c * l, 1.0);
        let d_out = rng.normals(n * c * l, 1.0);
        let init = if accumulate {
            rng.normals(n * 3 * c * l, 1.0)
        } else {
            vec![f32::NAN; n * 3 * c * l]
        };
        check_data((n, c, l, heads), &qkv, &d_out, &init, accumulate, "normal");
    }

    #[test]
    fn attention_backward_matches_cpu() {
        // (n, c, l, heads): L = 1, odd, not a multiple of 4 (repacked), multiples of 4 but not
        // of 8 or 16 (tile halves and key blocks clamped), d = 1, d not a multiple of 4, several
        // heads, N > 1; each with overwrite and accumulate.
        for (seed, &(n, c, l, heads)) in [
            (1, 4, 1, 1),
            (1, 1, 1, 1),
            (2, 3, 5, 1),
            (2, 6, 7, 3),
            (1, 5, 33, 5),
            (1, 16, 70, 4),
            (2, 12, 31, 2),
            (1, 8, 49, 2),
            (1, 4, 4, 1),
            (2, 3, 12, 1),
            (3, 8, 64, 2),
            (1, 10, 36, 5),
            (2, 12, 20, 3),
            (1, 8, 8, 8),
            (1, 10, 16, 2),
            (1, 24, 100, 1),
            // Trainer-like: d = 32 over 13 blocks; d = 8 over 16 blocks.
            (2, 64, 196, 2),
            (1, 16, 256, 2),
        ]
        .iter()
        .enumerate()
        {
            for accumulate in [false, true] {
                check(
                    n,
                    c,
                    l,
                    heads,
                    accumulate,
                    seed as u64 * 2 + accumulate as u64,
                );
            }
        }
    }

    /// Peaked softmax (scores in the hundreds): exp() overflows f32 unless the log-sum-exp is
    /// subtracted. Integer q, k and d a power of 4 keep the scores exact on both sides.
    #[test]
    fn attention_backward_large_magnitude_is_stable() {
        for (seed, &(n, c, l, heads)) in [(2, 8, 37, 2), (1, 4, 9, 1), (1, 16, 40, 1)]
            .iter()
            .enumerate()
        {
            let mut rng = Rng::new(seed as u64 + 100);
            let mut qkv = rng.normals(n * 3 * c * l, 1.0);
            for b in 0..n {
                for x in &mut qkv[b * 3 * c * l..(b * 3 + 2) * c * l] {
                    *x = rng.range(0, 16) as f32 - 8.0;
                }
            }
            let d_out = rng.normals(n * c * l, 1.0);
            let init = vec![0.0; n * 3 * c * l];
            check_data((n, c, l, heads), &qkv, &d_out, &init, false, "large");
        }
    }

    /// Running the same dispatches twice with accumulate adds the gradient twice (the scratch
    /// stays valid across runs).
    #[test]
    fn attention_backward_reruns_accumulate() {
        let gpu = gpu();
        for &(n, c, l, heads) in &[(2, 6, 9, 2), (1, 8, 16, 2)] {
            let mut rng = Rng::new(77);
            let qkv = rng.normals(n * 3 * c * l, 1.0);
            let d_out = rng.normals(n * c * l, 1.0);
            let t_qkv = Tensor::from_slice(gpu, &[n, 3 * c, l], &qkv, "qkv").unwrap();
            let t_dout = Tensor::from_slice(gpu, &[n, c, l], &d_out, "d_out").unwrap();
            let t_grad = Tensor::zeros(gpu, &[n, 3 * c, l], "d_qkv").unwrap();
            let ds = attention_backward(gpu, &t_qkv, &t_dout, heads, true, &t_grad).unwrap();
            drop((t_qkv, t_dout));
            pollster::block_on(gpu.run(&ds)).unwrap();
            pollster::block_on(gpu.run(&ds)).unwrap();
            let got = t_grad.read_blocking(gpu).unwrap();
            let want: Vec<f32> =
                cpu::attention_backward::attention_backward(&qkv, &d_out, n, c, l, heads)
                    .iter()
                    .map(|x| 2.0 * x)
                    .collect();
            assert_close(&got, &want, 1e-4, 1e-4, "twice");
        }
    }

    #[test]
    fn attention_backward_rejects_bad_shapes() {
        let gpu = gpu();
        let qkv = Tensor::zeros(gpu, &[1, 12, 5], "qkv").unwrap();
        let d_out = Tensor::zeros(gpu, &[1, 4, 5], "d_out").unwrap();
        let grad = Tensor::zeros(gpu, &[1, 12, 5], "d_qkv").unwrap();
        assert!(attention_backward(gpu, &qkv, &d_out, 2, false, &grad).is_ok());
        let e = operand_err_text(
            attention_backward(gpu, &qkv, &d_out, 3, false, &grad),
            "3 heads do not divide 4",
            "heads",
        );
        assert!(
            e.contains("attention_backward: heads: 3 do not divide C = 4 channels"),
            "{e}"
        );
        let e = operand_err_text(
            attention_backward(gpu, &qkv, &d_out, 0, false, &grad),
            "zero heads",
            "heads",
        );
        assert!(
            e.contains("attention_backward: heads: 0 do not divide C = 4 channels"),
            "{e}"
        );
        let wrong = Tensor::zeros(gpu, &[1, 4, 6], "d_out").unwrap();
        let e = err_text(
            attention_backward(gpu, &qkv, &wrong, 1, false, &grad),
            "d_out L differs",
        );
        assert!(
            e.contains("shape mismatch for attention_backward d_out [N, C, L]"),
            "{e}"
        );
        let wrong = Tensor::zeros(gpu, &[1, 12, 6], "d_qkv").unwrap();
        let e = err_text(
            attention_backward(gpu, &qkv, &d_out, 1, false, &wrong),
            "d_qkv L differs",
        );
        assert!(
            e.contains("shape mismatch for attention_backward d_qkv [N, 3C, L]"),
            "{e}"
        );
        let e = err_text(
            attention_backward(gpu, &qkv, &d_out, 1, true, &qkv),
            "d_qkv aliases qkv",
        );
        assert!(
            e.contains("attention_backward: d_qkv and qkv are the same buffer"),
            "{e}"
        );
        let not3 = Tensor::zeros(gpu, &[1, 10, 5], "qkv").unwrap();
        let e = operand_err_text(
            attention_backward(gpu, &not3, &d_out, 1, false, &grad),
            "10 is not 3·C",
            "qkv",
        );
        assert!(
            e.contains("attention_backward: qkv: [1, 10, 5] has 10 channels, not 3·C"),
            "{e}"
        );
        let flat = Tensor::zeros(gpu, &[60], "qkv").unwrap();
        let e = operand_err_text(
            attention_backward(gpu, &flat, &d_out, 1, false, &grad),
            "not 3-D",
            "qkv",
        );
        assert!(
            e.contains("attention_backward: qkv: must be [N, 3C, L]"),
            "{e}"
        );
    }

    /// Timing on the local device: `cargo test --release --lib ops::attention_backward --
    /// --ignored --nocapture`. Best wall time of 10 runs of all the backward's dispatches (one
    /// submission) next to the forward's for the same shape, and, on Linux, the CPU time the
    /// process spent per run (steadier than wall time when a CPU driver shares the machine).
    #[test]
    #[ignore]
    fn attention_backward_timing() {
        let gpu = gpu();
        println!("device: {}", gpu.describe());
        let time = |ds: &[Dispatch]| {
            pollster::block_on(gpu.run(ds)).unwrap();
            let reps = 10;
            let mut best = f64::MAX;
            let cpu0 = process_cpu_ns();
            for _ in 0..reps {
                let t = std::time::Instant::now();
                pollster::block_on(gpu.run(ds)).unwrap();
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            let cpu = cpu0
                .zip(process_cpu_ns())
                .map_or(f64::NAN, |(c0, c1)| (c1 - c0) as f64 / 1e6 / reps as f64);
            (best, cpu)
        };
        for &(n, c, heads, l) in &[
            (16, 64, 2, 49),
            (16, 64, 2, 196),
            (16, 64, 8, 49),
            (16, 64, 8, 196),
            (16, 128, 4, 256),
        ] {
            let mut rng = Rng::new(7);
            let qkv = rng.normals(n * 3 * c * l, 1.0);
            let d_out = rng.normals(n * c * l, 1.0);
            let t_qkv = Tensor::from_slice(gpu, &[n, 3 * c, l], &qkv, "qkv").unwrap();
            let t_dout = Tensor::from_slice(gpu, &[n, c, l], &d_out, "d_out").unwrap();
            let t_grad = Tensor::zeros(gpu, &[n, 3 * c, l], "d_qkv").unwrap();
            let out = Tensor::zeros(gpu, &[n, c, l], "out").unwrap();
            let fwd = vec![crate::ops::attention::attention(gpu, &t_qkv, heads, &out).unwrap()];
            let bwd = attention_backward(gpu, &t_qkv, &t_dout, heads, false, &t_grad).unwrap();
            let ((f_ms, f_cpu), (b_ms, b_cpu)) = (time(&fwd), time(&bwd));
            // Multiply-adds: forward 2·L²d per (n, head); the backward recomputes S and dP, so
            // 2 (stats) + 3 (dq) + 4 (dk, dv).
            let fma = (n * heads * l * l * (c / heads)) as f64;
            println!(
                "attention_backward N={n} C={c} heads={heads} L={l}: {b_ms:.2} ms \
                 ({:.1} GFLOP/s, CPU {b_cpu:.2} ms/run); forward {f_ms:.2} ms \
                 ({:.1} GFLOP/s, CPU {f_cpu:.2} ms/run)",
                18.0 * fma / b_ms / 1e6,
                4.0 * fma / f_ms / 1e6
            );
            // Per pass, each submitted alone.
            let mut names = vec!["stats", "dq", "dkv"];
            if !l.is_multiple_of(4) {
                names.insert(0, "pack");
                names.push("unpack");
            }
            for (d, name) in bwd.iter().zip(names) {
                let (ms, cpu) = time(std::slice::from_ref(d));
                println!("  {name}: {ms:.2} ms (CPU {cpu:.2} ms/run)");
            }
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
