// requires: rng.wgsl
// The raw Philox4x32-10 block for (seed, stream, element index first + i), i < n: out[4i .. 4i+4]
// (tests the RNG).

struct Params {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    first_lo: u32,
    first_hi: u32,
    period: u32, // noise.wgsl's (the Rust side shares one struct, RngParams); unused here
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn rng_bits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n {
        return;
    }
    let idx = rng_index(vec2<u32>(p.first_lo, p.first_hi), i);
    let r = rng_philox(vec4<u32>(idx.x, p.stream, idx.y, 0u), vec2<u32>(p.seed_lo, p.seed_hi));
    out[4u * i] = r.x;
    out[4u * i + 1u] = r.y;
    out[4u * i + 2u] = r.z;
    out[4u * i + 3u] = r.w;
}
