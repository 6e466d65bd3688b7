// requires: rng.wgsl
// Forward process q(x_t | x_0): out = sqrt(ab[t[s]]) * x0 + sqrt(1 - ab[t[s]]) * eps, per sample s.
// x0, eps, out: [N, ...] (per_sample elements each); t: [N] timesteps as f32; ab: [T] alphas_cumprod.
// draw = 1: eps is drawn from (seed, stream, element index) and written to `eps`.

struct Params {
    n: u32,
    per_sample: u32,
    n_t: u32,
    draw: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read> ab: array<f32>;
@group(0) @binding(4) var<storage, read_write> eps: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn q_sample(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n {
        return;
    }
    let ti = min(u32(max(round(t[i / p.per_sample]), 0.0)), p.n_t - 1u);
    let a = ab[ti];
    var e: f32;
    if p.draw != 0u {
        e = rng_normal(vec2<u32>(p.seed_lo, p.seed_hi), p.stream, vec2<u32>(i, 0u));
        eps[i] = e;
    } else {
        e = eps[i];
    }
    out[i] = sqrt(a) * x0[i] + sqrt(1.0 - a) * e;
}
