// The adapter's FMA peak, for benchmarks: every invocation runs `p.iters` rounds of 6
// independent vec4 FMA chains in registers (24 scalar FMAs = 48 FLOPs a round; on lavapipe
// each scalar is one 8-lane register, and 24 of them fit the 32 AVX-512VL registers) and stores one
// sum so that nothing is optimised away. No memory traffic in the loop.

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
    let s = f32(i & 255u) * 1e-3;
    var a0 = vec4<f32>(s);
    var a1 = a0 + 0.1;
    var a2 = a0 + 0.2;
    var a3 = a0 + 0.3;
    var a4 = a0 + 0.4;
    var a5 = a0 + 0.5;
    let m = vec4<f32>(0.9999);
    let c = vec4<f32>(1e-4);
    for (var k = 0u; k < p.iters; k++) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
    }
    let t = a0 + a1 + a2 + a3 + a4 + a5;
    out[i] = t.x + t.y + t.z + t.w;
}
