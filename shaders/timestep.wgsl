// Sinusoidal timestep embedding (diffusers `get_timestep_embedding`):
// out[n, i] = sin(t[n]·f_i), out[n, half + i] = cos(t[n]·f_i) ([cos ‖ sin] when flipped), and a
// zero last column when dim is odd. t: [N], out: [N, dim].
//
// t reaches ~1000, so t·f_i is up to ~1000 rad and the hardware sin/cos (Vulkan only promises
// 2^-11 absolute, and only on [−π, π]) would be useless. Instead the argument is reduced exactly
// in *turns*: the host passes f_i / 2π split into three parts (f1, f2: 12 significant bits each;
// f3: the f32 rest), t is split by masking into th (12 bits) + tl (≤ 12 bits), so th·f1, th·f2
// and tl·f1 are exact f32 products whose whole turns are dropped exactly. The remaining fraction
// (|r| ≤ 1/2 turn) goes through our own polynomials on [−π/4, π/4] plus a quadrant swap.

struct Params {
    n: u32,
    dim: u32,
    half: u32,
    flip: u32, // 1: [cos ‖ sin]
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read> freq: array<vec4<f32>>; // [half] (f1, f2, f3, 0) in turns
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const TAU: f32 = 6.283185307179586;

// v minus its nearest integer, in [−1/2, 1/2] (exact).
fn frac_turns(v: f32) -> f32 {
    return v - round(v);
}

// (sin, cos) of 2π·r for |r| ≤ 1/2 (plus rounding), absolute error ~1e-7.
fn sincos_turns(r: f32) -> vec2<f32> {
    let q = round(4.0 * r); // quadrant in −2..2
    let x = (r - 0.25 * q) * TAU; // |x| ≤ π/4
    let x2 = x * x;
    let s = x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362880.0)))));
    let c = 1.0 + x2 * (-0.5 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0 + x2 * (-1.0 / 3628800.0)))));
    switch (i32(q) + 4) % 4 {
        case 1: { return vec2(c, -s); }
        case 2: { return vec2(-s, -c); }
        case 3: { return vec2(-c, s); }
        default: { return vec2(s, c); }
    }
}

@compute @workgroup_size(64)
fn timestep_embedding(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    // One invocation per (n, i), i in 0..cols; i == half is the zero pad of an odd dim.
    let cols = p.dim - p.half;
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= p.n * cols {
        return;
    }
    let row = idx / cols;
    let i = idx - row * cols;
    let base = row * p.dim;
    if i == p.half {
        out[base + p.dim - 1u] = 0.0;
        return;
    }
    let tv = t[row];
    let th = bitcast<f32>(bitcast<u32>(tv) & 0xFFFFF000u);
    let tl = tv - th;
    let f = freq[i];
    let r = frac_turns(th * f.x) + frac_turns(th * f.y) + frac_turns(tl * f.x)
        + (th * f.z + tl * f.y + tl * f.z);
    let sc = sincos_turns(frac_turns(r));
    var first = sc.x;
    var second = sc.y;
    if p.flip != 0u {
        first = sc.y;
        second = sc.x;
    }
    out[base + i] = first;
    out[base + p.half + i] = second;
}
