// The adapter's FMA peak, for benchmarks: every invocation runs `p.iters` rounds over 8
// independent vec4 accumulators, four dependent FMAs each (128 scalar FMAs = 256 FLOPs a round,
// `FMA_FLOPS_PER_ROUND` in src/bench/kernels.rs), and stores one sum so that nothing is optimised
// away. No memory traffic in the loop. On lavapipe each scalar is one 8-lane register, so the 32
// scalars fill the 32 AVX-512VL registers, and a round is long enough that the loop's own
// overhead (exec mask, naga's loop bound) is small: the previous 24-FMA round reported 20–40 %
// less on the same cores.

struct Params {
    iters: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn fma_peak(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let s = vec4<f32>(f32(i & 255u) * 1e-3);
    var a0 = s + 0.00;
    var a1 = s + 0.05;
    var a2 = s + 0.10;
    var a3 = s + 0.15;
    var a4 = s + 0.20;
    var a5 = s + 0.25;
    var a6 = s + 0.30;
    var a7 = s + 0.35;
    let m = vec4<f32>(0.9999);
    let c = vec4<f32>(1e-4);
    for (var k = 0u; k < p.iters; k++) {
        a0 = fma(fma(fma(fma(a0, m, c), m, c), m, c), m, c);
        a1 = fma(fma(fma(fma(a1, m, c), m, c), m, c), m, c);
        a2 = fma(fma(fma(fma(a2, m, c), m, c), m, c), m, c);
        a3 = fma(fma(fma(fma(a3, m, c), m, c), m, c), m, c);
        a4 = fma(fma(fma(fma(a4, m, c), m, c), m, c), m, c);
        a5 = fma(fma(fma(fma(a5, m, c), m, c), m, c), m, c);
        a6 = fma(fma(fma(fma(a6, m, c), m, c), m, c), m, c);
        a7 = fma(fma(fma(fma(a7, m, c), m, c), m, c), m, c);
    }
    let t = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    out[i] = t.x + t.y + t.z + t.w;
}
