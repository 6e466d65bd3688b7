// Counter-based RNG, prepended to kernels that draw noise (`// requires: rng.wgsl`).
// Philox4x32-10 (Salmon et al. 2011; Random123's philox4x32), key = 64-bit seed as (lo, hi),
// counter = (index lo, stream, index hi, 0) for a 64-bit element index (the element's position in
// the whole run, so batching never changes a draw). Mirrored bit-exactly by `cpu::sampling`.
// WGSL has no mulhi: the 32x32 -> 64-bit products are assembled from 16-bit halves.

// (hi, lo) words of the 64-bit product a * b.
fn rng_mulhilo(a: u32, b: u32) -> vec2<u32> {
    let al = a & 0xffffu;
    let ah = a >> 16u;
    let bl = b & 0xffffu;
    let bh = b >> 16u;
    let ll = al * bl;
    let lh = al * bh;
    let hl = ah * bl;
    let hh = ah * bh;
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn rng_philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if round > 0u {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let p0 = rng_mulhilo(0xD2511F53u, c.x);
        let p1 = rng_mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// Uniform in (0, 1]: (x >> 8 + 1) / 2^24, exact in f32.
fn rng_uniform(x: u32) -> f32 {
    return (f32(x >> 8u) + 1.0) * (1.0 / 16777216.0);
}

// ln(u) for normal positive u, to a few ulp relative (WGSL's `log` only promises an absolute
// 2^-21 near 1, where Box-Muller's radius is small): u = m 2^e with m in [sqrt(1/2), sqrt(2)),
// ln m = 2 atanh(s), s = (m - 1) / (m + 1), by its series to s^11.
fn rng_ln(u: f32) -> f32 {
    let bits = bitcast<u32>(u);
    var e = i32((bits >> 23u) & 0xffu) - 127;
    var m = bitcast<f32>((bits & 0x7fffffu) | 0x3f800000u);
    if m > 1.4142135 {
        m = m * 0.5;
        e = e + 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = 1.0 + s2 * (0.33333334 + s2 * (0.2 + s2 * (0.14285715 + s2 * (0.11111111 + s2 * 0.09090909))));
    let fe = f32(e);
    return fe * 0.69314575 + (fe * 1.4286068e-6 + 2.0 * s * series);
}

// cos(2*pi*r) for r in [-0.5, 0.5] to ~1e-7: quadrant reduction, then Taylor polynomials on
// |x| <= pi/4. WGSL's built-in cos may be off by ~5e-4 (SwiftShader), too much for a noise
// stream that must match across devices; cpu::sampling::rng_cos_turns mirrors this exactly.
fn rng_cos_turns(r: f32) -> f32 {
    let q = round(4.0 * r);
    let x = (r - 0.25 * q) * 6.2831855;
    let x2 = x * x;
    let s = x * (1.0 + x2 * (-0.16666667 + x2 * (0.008333334 + x2 * (-0.0001984127 + x2 * 2.7557319e-6))));
    let c = 1.0 + x2 * (-0.5 + x2 * (0.041666668 + x2 * (-0.0013888889 + x2 * (2.4801588e-5 - x2 * 2.755732e-7))));
    switch (i32(q) + 4) % 4 {
        case 1: { return -s; }
        case 2: { return -c; }
        case 3: { return s; }
        default: { return c; }
    }
}

// The 64-bit element index (lo, hi) = first + i.
fn rng_index(first: vec2<u32>, i: u32) -> vec2<u32> {
    let lo = first.x + i;
    return vec2<u32>(lo, first.y + select(0u, 1u, lo < i));
}

// Standard normal for (seed, stream, 64-bit index (lo, hi)): Box-Muller r * cos(theta),
// theta in [-pi, pi].
fn rng_normal(seed: vec2<u32>, stream: u32, index: vec2<u32>) -> f32 {
    let r = rng_philox(vec4<u32>(index.x, stream, index.y, 0u), seed);
    let u1 = rng_uniform(r.x);
    let u2 = rng_uniform(r.y);
    let radius = sqrt(-2.0 * rng_ln(u1));
    return radius * rng_cos_turns(u2 - 0.5);
}
