//! The kernel-development bench (`ddpm bench --kernels`), in the habit of llm.c's dev/cuda and
//! burn's autotune: for every distinct conv layer of a model at a batch size, each kernel
//! variant of conv2d forward, its input gradient (dx) and its weight gradient (dW) is first
//! checked against the CPU reference and then timed, and printed with its GFLOP/s and the
//! fraction of the adapter's FMA peak measured in the same run by a pure-FMA shader.

use std::time::Instant;

use crate::cpu;
use crate::error::Result;
use crate::gpu::{grid, uniform_params, Access, DType, Dispatch, Gpu, KernelSpec, Tensor};
pub use crate::model::gpu_unet::ConvLayer;
use crate::model::{UNet, UNetConfig, Weights};
use crate::ops::conv2d::{self, Conv2dInputs, ConvVariant, Epilogue};
use crate::ops::conv2d_backward::{self, DxVariant};
use crate::options::Conv2dGradOptions;
use crate::testing::Rng;

/// The distinct conv layers of the U-Net `cfg` at `batch`, in the order they first run.
pub fn conv_layers(gpu: &Gpu, cfg: &UNetConfig, batch: usize) -> Result<Vec<ConvLayer>> {
    let unet = UNet::new(gpu, cfg.clone(), &Weights::init(cfg, 0)?)?;
    let plan = unet.plan(gpu, batch)?;
    let mut layers: Vec<ConvLayer> = Vec::new();
    for c in &plan.convs {
        match layers
            .iter_mut()
            .find(|l| (l.x, l.cout, l.k, l.geom) == (c.x, c.cout, c.k, c.geom))
        {
            Some(l) => l.count += 1,
            None => layers.push(ConvLayer { count: 1, ..*c }),
        }
    }
    Ok(layers)
}

/// One measured kernel on one layer.
#[derive(Clone, Debug)]
pub struct KernelRow {
    /// `conv2d`, `conv2d f16` (f16 weights), `conv2d dx` or `conv2d dW`.
    pub op: &'static str,
    pub layer: ConvLayer,
    pub variant: &'static str,
    /// Best wall-clock seconds of one dispatch (a submission each).
    pub seconds: f64,
    /// Largest |GPU − CPU reference| over the reference's largest magnitude, on a batch of
    /// at most 2.
    pub rel_err: f32,
}

impl KernelRow {
    pub fn gflops(&self) -> f64 {
        self.layer.flops() as f64 / self.seconds / 1e9
    }
}

const FMA_PEAK: KernelSpec = KernelSpec {
    name: "fma_peak",
    source: include_str!("../../shaders/fma_peak.wgsl"),
    entry: "fma_peak",
    bindings: &[Access::Uniform, Access::ReadWrite],
    params: &FmaParams::LAYOUT,
};

uniform_params! {
    /// Mirrors `Params` in `shaders/fma_peak.wgsl`.
    struct FmaParams {
        iters: u32,
        _pad: [u32; 3],
    }
}

/// Invocations per workgroup of `fma_peak.wgsl`.
const FMA_WG: usize = 64;
/// FLOPs one invocation of `fma_peak.wgsl` runs per loop round (8 vec4 accumulators × 4 FMAs).
const FMA_FLOPS_PER_ROUND: f64 = 256.0;

/// One dispatch of `fma_peak.wgsl` over `invocations` invocations of `rounds` rounds each.
fn fma_dispatch(gpu: &Gpu, invocations: usize, rounds: u32) -> Result<(Tensor, Dispatch)> {
    let out = Tensor::zeros(gpu, &[invocations], "fma peak")?;
    let d = gpu.dispatch(
        &FMA_PEAK,
        &FmaParams {
            iters: rounds,
            _pad: [0; 3],
        },
        &[&out.buffer],
        grid(invocations.div_ceil(FMA_WG) as u32),
    );
    Ok((out, d))
}

/// The adapter's FMA throughput in GFLOP/s: the best of `iters` runs of a pure-FMA shader over
/// 64 Ki invocations.
pub fn fma_peak(gpu: &Gpu, iters: usize) -> Result<f64> {
    const INVOCATIONS: usize = 1 << 16;
    const ROUNDS: u32 = 2000;
    let (_out, d) = fma_dispatch(gpu, INVOCATIONS, ROUNDS)?;
    let t = best_time(gpu, std::slice::from_ref(&d), iters)?;
    Ok(INVOCATIONS as f64 * ROUNDS as f64 * FMA_FLOPS_PER_ROUND / t / 1e9)
}

/// Best wall-clock seconds of `iters` submissions of `dispatches` (after one warm-up run).
fn best_time(gpu: &Gpu, dispatches: &[Dispatch], iters: usize) -> Result<f64> {
    pollster::block_on(gpu.run(dispatches))?;
    let mut best = f64::INFINITY;
    for _ in 0..iters.max(1) {
        let t0 = Instant::now();
        pollster::block_on(gpu.run(dispatches))?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let err = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    if got.iter().any(|v| !v.is_finite()) {
        f32::INFINITY
    } else {
        err / scale
    }
}

/// Random operands of one layer: x, PyTorch-layout weight, bias, dy.
struct Operands {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    dy: Vec<f32>,
    w_shape: [usize; 4],
    out_shape: [usize; 4],
}

impl Operands {
    fn new(layer: &ConvLayer, seed: u64) -> Result<Self> {
        let mut rng = Rng::new(seed);
        let cin = layer.x[1];
        let w_shape = [layer.cout, cin, layer.k, layer.k];
        let out_shape = layer.geom.output_shape(&layer.x, &w_shape)?;
        let fan_in = (cin * layer.k * layer.k) as f32;
        Ok(Operands {
            x: rng.normals(layer.x.iter().product(), 1.0),
            w: rng.normals(w_shape.iter().product(), fan_in.sqrt().recip()),
            b: rng.normals(layer.cout, 0.1),
            dy: rng.normals(out_shape.iter().product(), 1.0),
            w_shape,
            out_shape,
        })
    }
}

/// The conv2d forward of `variant` on `ops` (the packed weight uploaded here, stored as
/// `dtype`), and its output.
fn forward_dispatch(
    gpu: &Gpu,
    layer: &ConvLayer,
    ops: &Operands,
    variant: ConvVariant,
    dtype: DType,
) -> Result<(Dispatch, Tensor)> {
    let x = Tensor::from_slice(gpu, &layer.x, &ops.x, "bench x")?;
    let w = conv2d::upload_weight_as(gpu, &ops.w, ops.w_shape, dtype, "bench w")?;
    let b = Tensor::from_slice(gpu, &[layer.cout], &ops.b, "bench b")?;
    let out = Tensor::zeros(gpu, &ops.out_shape, "bench out")?;
    let inputs = Conv2dInputs {
        x: &x,
        w: &w,
        bias: &b,
    };
    let d = conv2d::conv2d_variant(gpu, variant, inputs, layer.geom, &Epilogue::default(), &out)?;
    Ok((d, out))
}

/// The gradient options the bench checks and times: `layer`'s geometry, scale 1, overwriting.
fn grad_opts(layer: &ConvLayer) -> Conv2dGradOptions {
    Conv2dGradOptions {
        geom: layer.geom,
        out_scale: 1.0,
        accumulate: false,
    }
}

fn dx_dispatch(
    gpu: &Gpu,
    layer: &ConvLayer,
    ops: &Operands,
    variant: DxVariant,
) -> Result<(Vec<Dispatch>, Tensor)> {
    let dy = Tensor::from_slice(gpu, &ops.out_shape, &ops.dy, "bench dy")?;
    let w = Tensor::from_slice(gpu, &ops.w_shape, &ops.w, "bench w")?;
    let dx = Tensor::zeros(gpu, &layer.x, "bench dx")?;
    let d = conv2d_backward::conv2d_backward_input_variant(
        gpu,
        variant,
        &dy,
        &w,
        grad_opts(layer),
        &dx,
    )?;
    Ok((d, dx))
}

fn dw_dispatch(gpu: &Gpu, layer: &ConvLayer, ops: &Operands) -> Result<(Vec<Dispatch>, Tensor)> {
    let dy = Tensor::from_slice(gpu, &ops.out_shape, &ops.dy, "bench dy")?;
    let x = Tensor::from_slice(gpu, &layer.x, &ops.x, "bench x")?;
    let dw = Tensor::zeros(gpu, &ops.w_shape, "bench dw")?;
    let db = Tensor::zeros(gpu, &[layer.cout], "bench db")?;
    let d = conv2d_backward::conv2d_backward_weight(gpu, &dy, &x, grad_opts(layer), &dw, &db)?;
    Ok((d, dw))
}

/// Checks and times every kernel variant on every layer of `layers` (`iters` timed runs each).
pub fn bench_kernels(gpu: &Gpu, layers: &[ConvLayer], iters: usize) -> Result<Vec<KernelRow>> {
    let mut rows = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        // Correctness on a small batch against the CPU reference, then timing at full size.
        let small = layer.with_batch(layer.x[0].min(2));
        let so = Operands::new(&small, 100 + i as u64)?;
        let fo = Operands::new(layer, 200 + i as u64)?;
        let inputs = cpu::conv2d::Conv2dInputs {
            x: &so.x,
            x_shape: small.x,
            w: &so.w,
            w_shape: so.w_shape,
            bias: &so.b,
        };
        let none = cpu::conv2d::Epilogue::default();
        let (want, _) = cpu::conv2d::conv2d(inputs, small.geom, &none)?;
        // f16 weights: checked against the reference on the f16-rounded weights.
        let w16: Vec<f32> =
            so.w.iter()
                .map(|&v| half::f16::from_f32(v).to_f32())
                .collect();
        let (want16, _) = cpu::conv2d::conv2d(
            cpu::conv2d::Conv2dInputs { w: &w16, ..inputs },
            small.geom,
            &none,
        )?;
        let storages: &[(DType, &'static str, &[f32])] = if gpu.reads_f16() {
            &[
                (DType::F32, "conv2d", &want),
                (DType::F16, "conv2d f16", &want16),
            ]
        } else {
            &[(DType::F32, "conv2d", &want)]
        };
        for &(dtype, op, want) in storages {
            for v in ConvVariant::ALL
                .into_iter()
                .filter(|v| v.available(gpu) && v.applies_to(layer.k, layer.geom))
            {
                let (d, out) = forward_dispatch(gpu, &small, &so, v, dtype)?;
                pollster::block_on(gpu.run(std::slice::from_ref(&d)))?;
                let rel = rel_err(&out.read_blocking(gpu)?, want);
                let (d, _) = forward_dispatch(gpu, layer, &fo, v, dtype)?;
                rows.push(KernelRow {
                    op,
                    layer: *layer,
                    variant: v.name(),
                    seconds: best_time(gpu, std::slice::from_ref(&d), iters)?,
                    rel_err: rel,
                });
            }
        }
        // dx
        let mut want = vec![0f32; small.x.iter().product()];
        let args = cpu::conv2d_backward::BackwardInputArgs {
            dy: &so.dy,
            dy_shape: so.out_shape,
            w: &so.w,
            w_shape: so.w_shape,
            dx: &mut want,
            dx_shape: small.x,
        };
        cpu::conv2d_backward::conv2d_backward_input(args, grad_opts(&small))?;
        let k = layer.k;
        for v in DxVariant::ALL
            .into_iter()
            .filter(|v| v.applies(k, layer.geom))
        {
            let (d, dx) = dx_dispatch(gpu, &small, &so, v)?;
            pollster::block_on(gpu.run(&d))?;
            let rel = rel_err(&dx.read_blocking(gpu)?, &want);
            let (d, _) = dx_dispatch(gpu, layer, &fo, v)?;
            rows.push(KernelRow {
                op: "conv2d dx",
                layer: *layer,
                variant: v.name(),
                seconds: best_time(gpu, &d, iters)?,
                rel_err: rel,
            });
        }
        // dW
        let mut want = vec![0f32; so.w.len()];
        let mut want_b = vec![0f32; layer.cout];
        let args = cpu::conv2d_backward::BackwardWeightArgs {
            dy: &so.dy,
            dy_shape: so.out_shape,
            x: &so.x,
            x_shape: small.x,
            dw: &mut want,
            dw_shape: so.w_shape,
            db: &mut want_b,
        };
        cpu::conv2d_backward::conv2d_backward_weight(args, grad_opts(&small))?;
        let (d, dw) = dw_dispatch(gpu, &small, &so)?;
        pollster::block_on(gpu.run(&d))?;
        let rel = rel_err(&dw.read_blocking(gpu)?, &want);
        let (d, _) = dw_dispatch(gpu, layer, &fo)?;
        rows.push(KernelRow {
            op: "conv2d dW",
            layer: *layer,
            variant: "direct",
            seconds: best_time(gpu, &d, iters)?,
            rel_err: rel,
        });
    }
    Ok(rows)
}

/// Prints the rows of [`bench_kernels`] as a table: per layer and op, every variant with ms,
/// GFLOP/s, % of `peak` and the error check; `*` marks the fastest variant.
pub fn print_kernels(title: &str, peak: f64, rows: &[KernelRow]) {
    println!("{title}: FMA peak {peak:.1} GFLOP/s");
    println!(
        "    {:<28} {:>5} {:<10} {:<9} {:>9} {:>9} {:>7} {:>9}",
        "layer", "count", "op", "variant", "ms", "GFLOP/s", "% peak", "rel err"
    );
    for r in rows {
        let best = rows
            .iter()
            .filter(|o| o.op == r.op && o.layer == r.layer)
            .all(|o| o.seconds >= r.seconds);
        let many = rows
            .iter()
            .filter(|o| o.op == r.op && o.layer == r.layer)
            .count()
            > 1;
        println!(
            "    {:<28} {:>5} {:<10} {:<9} {:>9.3} {:>9.2} {:>6.1}% {:>9.1e}{}",
            r.layer.describe(),
            r.layer.count,
            r.op,
            r.variant,
            r.seconds * 1e3,
            r.gflops(),
            100.0 * r.gflops() / peak,
            r.rel_err,
            if best && many { " *" } else { "" }
        );
    }
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![kernel_check!(FMA_PEAK).workgroup_size([FMA_WG])]
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::gpu;

    /// What invocation `i` of `fma_peak.wgsl` stores after `rounds` rounds: 8 accumulators
    /// starting 0.05 apart, each a vec4 of equal lanes.
    fn fma_reference(i: usize, rounds: u32) -> f32 {
        let (m, c) = (0.9999f32, 1e-4f32);
        let s = (i & 255) as f32 * 1e-3;
        let total: f32 = (0..8)
            .map(|a| {
                let mut v = s + a as f32 * 0.05;
                for _ in 0..rounds {
                    v = (0..4).fold(v, |v, _| v.mul_add(m, c));
                }
                v
            })
            .sum();
        4.0 * total
    }

    /// The peak shader runs the FMA chains it is credited with: its sums equal the CPU
    /// recurrence (to 1e-5; a round more or fewer is 5e-4 off), after enough rounds to move
    /// every accumulator well away from its start.
    #[test]
    fn fma_peak_shader_computes_its_recurrence() {
        let gpu = gpu();
        let (invocations, rounds) = (300, 37);
        let (out, d) = fma_dispatch(gpu, invocations, rounds).unwrap();
        pollster::block_on(gpu.run(&[d])).unwrap();
        let got = out.read_blocking(gpu).unwrap();
        for (i, g) in got.iter().enumerate() {
            let want = fma_reference(i, rounds);
            assert!(
                (g - want).abs() <= 1e-5 * want.abs(),
                "invocation {i}: shader {g}, reference {want}"
            );
        }
        assert!((fma_reference(0, rounds) - fma_reference(0, 0)).abs() > 0.05);
    }
}
