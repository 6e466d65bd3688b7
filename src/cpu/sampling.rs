//! Reference for `shaders/rng.wgsl`, `noise.wgsl`, `fill.wgsl`, `q_sample.wgsl`,
//! `ddpm_step.wgsl` and `ddim_step.wgsl`.
//!
//! The RNG is Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3";
//! Random123's `philox4x32`), keyed by the 64-bit seed, with counter (index lo, stream, index hi, 0)
//! for a 64-bit element index (the element's position in the whole run, so batching never changes
//! a draw). The
//! u32 outputs match the shader bit for bit; normals (Box–Muller on f32) to a few ulp.

use crate::schedule::{DdimCoefs, DdpmCoefs};

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// 32×32 → 64-bit product as (hi, lo), computed from 16-bit halves exactly as the shader does.
pub fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let (al, ah) = (a & 0xffff, a >> 16);
    let (bl, bh) = (b & 0xffff, b >> 16);
    let ll = al * bl;
    let lh = al * bh;
    let hl = ah * bl;
    let hh = ah * bh;
    let mid = (ll >> 16) + (lh & 0xffff) + (hl & 0xffff);
    let hi = hh + (lh >> 16) + (hl >> 16) + (mid >> 16);
    (hi, a.wrapping_mul(b))
}

/// Philox4x32 with 10 rounds: the block of 4 u32 for `counter` under `key`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        let (hi0, lo0) = mulhilo(PHILOX_M0, c[0]);
        let (hi1, lo1) = mulhilo(PHILOX_M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// The Philox key of a 64-bit seed: (low word, high word).
pub fn seed_key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// The 4 raw u32 drawn for (`seed`, `stream`, `index`).
pub fn rng_u32x4(seed: u64, stream: u32, index: u64) -> [u32; 4] {
    philox4x32_10(
        [index as u32, stream, (index >> 32) as u32, 0],
        seed_key(seed),
    )
}

/// A u32 mapped to a uniform in (0, 1]: (⌊x / 2⁸⌋ + 1) / 2²⁴, exact in f32.
pub fn rng_uniform(x: u32) -> f32 {
    ((x >> 8) as f32 + 1.0) * (1.0 / 16_777_216.0)
}

/// ln(u) for normal positive `u` as `rng.wgsl` computes it (WGSL's `log` is only accurate to
/// 2⁻²¹ absolute near 1): u = m·2ᵉ, m ∈ [√½, √2), ln m = 2·atanh(s), s = (m−1)/(m+1), series to s¹¹.
pub fn rng_ln(u: f32) -> f32 {
    let bits = u.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x7f_ffff) | 0x3f80_0000);
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = 1.0
        + s2 * (0.333_333_34
            + s2 * (0.2 + s2 * (0.142_857_15 + s2 * (0.111_111_11 + s2 * 0.090_909_09))));
    let fe = e as f32;
    // ln 2 split into an exactly-multipliable high part and a correction.
    fe * 0.693_145_75 + (fe * 1.428_606_8e-6 + 2.0 * s * series)
}

/// The standard normal drawn for (`seed`, `stream`, `index`): Box–Muller on the block's first
/// two words, r·cos θ with r = √(−2 ln u₁), θ = 2π·u₂ − π (kept in [−π, π] where WGSL's `cos`
/// is accurate).
pub fn rng_normal(seed: u64, stream: u32, index: u64) -> f32 {
    let r = rng_u32x4(seed, stream, index);
    let u1 = rng_uniform(r[0]);
    let u2 = rng_uniform(r[1]);
    let radius = (-2.0 * rng_ln(u1)).sqrt();
    radius * rng_cos_turns(u2 - 0.5)
}

/// `rng.wgsl`'s `rng_cos_turns`: cos(2π·r) for r ∈ [−0.5, 0.5], the same f32 operations.
pub fn rng_cos_turns(r: f32) -> f32 {
    let q = (4.0 * r).round_ties_even();
    let x = (r - 0.25 * q) * 6.283_185_5;
    let x2 = x * x;
    let s = x
        * (1.0
            + x2 * (-0.166_666_67
                + x2 * (0.008_333_334 + x2 * (-0.000_198_412_7 + x2 * 2.755_731_9e-6))));
    let c = 1.0
        + x2 * (-0.5
            + x2 * (0.041_666_668
                + x2 * (-0.001_388_888_9 + x2 * (2.480_158_8e-5 - x2 * 2.755_732e-7))));
    match (q as i32 + 4) % 4 {
        1 => -s,
        2 => -c,
        3 => s,
        _ => c,
    }
}

#[cfg(test)]
mod cos_tests {
    #[test]
    fn cos_turns_is_accurate() {
        for i in 0..=20_000 {
            let r = i as f32 / 20_000.0 - 0.5;
            let want = (std::f64::consts::TAU * r as f64).cos();
            let got = super::rng_cos_turns(r) as f64;
            assert!((got - want).abs() < 3e-7, "r {r}: {got} vs {want}");
        }
    }
}

/// `noise.wgsl`: `n` normals of (`seed`, `stream`) for element indices `first..first + n`.
pub fn noise(n: usize, seed: u64, stream: u32, first: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| rng_normal(seed, stream, first + i))
        .collect()
}

/// `fill.wgsl`: `n` copies of `value`.
pub fn fill(n: usize, value: f32) -> Vec<f32> {
    vec![value; n]
}

/// `q_sample.wgsl`: x_t = √ᾱ_{t[s]}·x0 + √(1−ᾱ_{t[s]})·ε per sample s (x0 `[N, …]`, `t` `[N]`
/// timesteps as f32, `alphas_cumprod` `[T]`). ε is `eps`, or drawn from (`seed`, `stream`,
/// element index) when `draw` is given. Returns (x_t, ε used).
pub fn q_sample(
    x0: &[f32],
    t: &[f32],
    alphas_cumprod: &[f32],
    eps: Option<&[f32]>,
    draw: Option<(u64, u32)>,
) -> (Vec<f32>, Vec<f32>) {
    let n = x0.len();
    let per_sample = if t.is_empty() { 0 } else { n / t.len() };
    let mut out = Vec::with_capacity(n);
    let mut used = Vec::with_capacity(n);
    for (i, &x) in x0.iter().enumerate() {
        let ab = alphas_cumprod[timestep_index(t[i / per_sample], alphas_cumprod.len())];
        let e = match draw {
            Some((seed, stream)) => rng_normal(seed, stream, i as u64),
            None => eps.expect("q_sample: eps or draw")[i],
        };
        out.push(ab.sqrt() * x + (1.0 - ab).sqrt() * e);
        used.push(e);
    }
    (out, used)
}

/// The table index of an f32 timestep, as the shader computes it: round, clamp to [0, T−1].
pub fn timestep_index(t: f32, len: usize) -> usize {
    (t.round().max(0.0) as usize).min(len.saturating_sub(1))
}

/// `ddpm_step.wgsl`: returns (x_prev, x̂0) for x_t `x`, ε̂ `eps` and noise `z` (ignored where
/// σ = 0, may then be empty).
pub fn ddpm_step(x: &[f32], eps: &[f32], c: &DdpmCoefs, z: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut prev = Vec::with_capacity(x.len());
    let mut x0s = Vec::with_capacity(x.len());
    for (i, (&xt, &e)) in x.iter().zip(eps).enumerate() {
        let x0 = pred_x0(xt, e, c.sqrt_ab, c.sqrt_1m_ab, c.clip);
        let mut xp = c.c_x0 * x0 + c.c_xt * xt + c.c_eps * e;
        if c.sigma != 0.0 {
            xp += c.sigma * z[i];
        }
        prev.push(xp);
        x0s.push(x0);
    }
    (prev, x0s)
}

/// `ddim_step.wgsl`: returns (x_prev, x̂0); `z` as for [`ddpm_step`].
pub fn ddim_step(x: &[f32], eps: &[f32], c: &DdimCoefs, z: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut prev = Vec::with_capacity(x.len());
    let mut x0s = Vec::with_capacity(x.len());
    for (i, (&xt, &e)) in x.iter().zip(eps).enumerate() {
        let x0 = pred_x0(xt, e, c.sqrt_ab, c.sqrt_1m_ab, c.clip);
        let e = match (c.clipped_eps, c.clip) {
            (true, Some(_)) => (xt - c.sqrt_ab * x0) / c.sqrt_1m_ab,
            _ => e,
        };
        let mut xp = c.sqrt_ab_prev * x0 + c.c_dir * e;
        if c.sigma != 0.0 {
            xp += c.sigma * z[i];
        }
        prev.push(xp);
        x0s.push(x0);
    }
    (prev, x0s)
}

/// x̂0 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ, clamped to ±clip.
fn pred_x0(xt: f32, e: f32, sqrt_ab: f32, sqrt_1m_ab: f32, clip: Option<f32>) -> f32 {
    let x0 = (xt - sqrt_1m_ab * e) / sqrt_ab;
    match clip {
        Some(r) => x0.clamp(-r, r),
        None => x0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With clipping, the direction term uses ε̂ re-derived from the clipped x̂0 when asked.
    #[test]
    fn ddim_direction_uses_the_clipped_eps_when_asked() {
        let mut c = DdimCoefs {
            t: 500,
            sqrt_ab: 0.6,
            sqrt_1m_ab: 0.8,
            clip: Some(1.0),
            sqrt_ab_prev: 0.8,
            c_dir: 0.6,
            sigma: 0.0,
            clipped_eps: false,
        };
        // x̂0 = (1.0 − 0.8·(−2))/0.6 = 4.33 → clipped to 1.
        let (x, eps) = ([1.0f32], [-2.0f32]);
        let (plain, x0) = ddim_step(&x, &eps, &c, &[0.0]);
        assert_eq!(x0, vec![1.0]);
        assert!((plain[0] - (0.8 * 1.0 + 0.6 * -2.0)).abs() < 1e-6);
        c.clipped_eps = true;
        let (clipped, _) = ddim_step(&x, &eps, &c, &[0.0]);
        // ε̂ of the clipped x̂0: (1 − 0.6·1)/0.8 = 0.5.
        assert!(
            (clipped[0] - (0.8 * 1.0 + 0.6 * 0.5)).abs() < 1e-6,
            "{clipped:?}"
        );
        // Without clipping there is nothing to re-derive.
        c.clip = None;
        let (a, _) = ddim_step(&x, &eps, &c, &[0.0]);
        c.clipped_eps = false;
        assert_eq!(ddim_step(&x, &eps, &c, &[0.0]).0, a);
    }

    #[test]
    fn mulhilo_is_the_64_bit_product() {
        let mut rng = crate::testing::Rng::new(3);
        for _ in 0..10_000 {
            let a = rng.next_u64() as u32;
            let b = rng.next_u64() as u32;
            let p = a as u64 * b as u64;
            assert_eq!(mulhilo(a, b), ((p >> 32) as u32, p as u32));
        }
        assert_eq!(mulhilo(u32::MAX, u32::MAX), (0xFFFF_FFFE, 1));
    }

    /// Random123's known-answer vectors (`kat_vectors`, philox4x32 with 10 rounds).
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn rng_ln_is_accurate() {
        let mut worst = 0f64;
        for x in (0..(1u32 << 24))
            .step_by(997)
            .chain([0, 1, (1 << 24) - 2, (1 << 24) - 1])
        {
            let u = (x as f32 + 1.0) / 16_777_216.0;
            let want = (u as f64).ln();
            let got = rng_ln(u) as f64;
            let err = if want == 0.0 {
                got.abs()
            } else {
                ((got - want) / want).abs()
            };
            worst = worst.max(err);
        }
        assert!(
            worst < 4.0 * f32::EPSILON as f64,
            "relative error {worst:e}"
        );
    }

    #[test]
    fn uniform_range() {
        assert_eq!(rng_uniform(0), 1.0 / 16_777_216.0);
        assert_eq!(rng_uniform(u32::MAX), 1.0);
    }
}
