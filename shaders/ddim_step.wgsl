// requires: rng.wgsl
// One fused DDIM step (Song et al. 2021; diffusers' DDIMScheduler.step), in place on x
// (coefficients from `Schedule::ddim_coefs`):
//   x0 = clamp((x - sqrt_1m_ab * eps) / sqrt_ab, -clip_range, clip_range)   (clamp if clip)
//   eps = (x - sqrt_ab * x0) / sqrt_1m_ab   (if clip and clipped_eps: the ε̂ of the clipped x0)
//   x  = sqrt_ab_prev * x0 + c_dir * eps + sigma * z
// z: none (noise_mode 0, eta = 0), RNG (seed, stream = t, element index first + i) (1), or the
// `z` buffer (2).
// Classifier-free guidance (guided = 1): x, eps, x0_out hold 2n values, the conditional half
// first and the unconditional one after it; e = eps_u + guidance * (eps_c - eps_u) and both
// halves get the same update (so they stay equal), with the noise of the first half's indices;
// the combined e is written over the conditional half of eps, so eps[0..n] holds the ε̂ the
// update used in both modes (the page shows it).

struct Params {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    sqrt_ab: f32,
    sqrt_1m_ab: f32,
    clip_range: f32,
    clip: u32,
    sqrt_ab_prev: f32,
    c_dir: f32,
    sigma: f32,
    noise_mode: u32,
    first_lo: u32,
    first_hi: u32,
    guided: u32,
    guidance: f32,
    clipped_eps: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> eps: array<f32>;
@group(0) @binding(3) var<storage, read> z: array<f32>;
@group(0) @binding(4) var<storage, read_write> x0_out: array<f32>;

@compute @workgroup_size(256)
fn ddim_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n {
        return;
    }
    let xt = x[i];
    var e = eps[i];
    if p.guided != 0u {
        let eu = eps[i + p.n];
        e = eu + p.guidance * (e - eu);
        eps[i] = e;
    }
    var x0 = (xt - p.sqrt_1m_ab * e) / p.sqrt_ab;
    if p.clip != 0u {
        x0 = clamp(x0, -p.clip_range, p.clip_range);
        if p.clipped_eps != 0u {
            e = (xt - p.sqrt_ab * x0) / p.sqrt_1m_ab;
        }
    }
    var xp = p.sqrt_ab_prev * x0 + p.c_dir * e;
    if p.noise_mode == 1u {
        xp += p.sigma * rng_normal(vec2<u32>(p.seed_lo, p.seed_hi), p.stream, rng_index(vec2<u32>(p.first_lo, p.first_hi), i));
    } else if p.noise_mode == 2u {
        xp += p.sigma * z[i];
    }
    x[i] = xp;
    x0_out[i] = x0;
    if p.guided != 0u {
        x[i + p.n] = xp;
        x0_out[i + p.n] = x0;
    }
}
