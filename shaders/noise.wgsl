// requires: rng.wgsl
// out[i] = N(0, 1) drawn for (seed, stream, element index first + i % period): the starting
// noise x_T (period < n repeats it: both halves of a classifier-free-guided batch start equal).

struct Params {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    first_lo: u32,
    first_hi: u32,
    period: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn noise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n {
        return;
    }
    out[i] = rng_normal(vec2<u32>(p.seed_lo, p.seed_hi), p.stream, rng_index(vec2<u32>(p.first_lo, p.first_hi), i % p.period));
}
