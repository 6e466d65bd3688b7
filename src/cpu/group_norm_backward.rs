//! Reference for `shaders/group_norm_backward.wgsl`: the gradient of
//! [`crate::cpu::group_norm::group_norm`] (affine, optional SiLU after the affine).

use crate::cpu::group_norm::GroupNormInputs;
use crate::options::GroupNormOptions;

/// Gradients of a GroupNorm: dx `[n, c, spatial]`, dgamma `[c]`, dbeta `[c]`.
#[derive(Clone, Debug)]
pub struct GroupNormGrads {
    pub dx: Vec<f32>,
    pub dgamma: Vec<f32>,
    pub dbeta: Vec<f32>,
}

/// d(Σ dy·y)/d(x, gamma, beta) for y = group_norm(inputs, opts); `dy` has x's shape. Fresh
/// gradients (callers add them for accumulation). f64 inside.
pub fn group_norm_backward(
    inputs: GroupNormInputs,
    dy: &[f32],
    opts: GroupNormOptions,
) -> GroupNormGrads {
    let GroupNormInputs {
        x,
        c,
        spatial,
        gamma,
        beta,
        ..
    } = inputs;
    let GroupNormOptions { groups, eps, silu } = opts;
    inputs.check(groups, "group_norm_backward");
    assert_eq!(dy.len(), x.len(), "group_norm_backward: dy length");
    let cpg = c / groups;
    let len = cpg * spatial;
    let mut dx = vec![0f32; x.len()];
    let mut dgamma = vec![0f64; c];
    let mut dbeta = vec![0f64; c];
    if len > 0 {
        for (gi, ((xs, dys), dxs)) in x
            .chunks(len)
            .zip(dy.chunks(len))
            .zip(dx.chunks_mut(len))
            .enumerate()
        {
            let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
            let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
            let rstd = 1.0 / (var + eps as f64).sqrt();
            let c0 = (gi % groups) * cpg;
            // g = dL/dx̂ = γ·dz; the group means of g and g·x̂.
            let mut xh = vec![0f64; len];
            let mut g = vec![0f64; len];
            let (mut mg, mut mgx) = (0f64, 0f64);
            for i in 0..len {
                let ch = c0 + i / spatial;
                let h = (xs[i] as f64 - mean) * rstd;
                let (ga, be) = (gamma[ch] as f64, beta[ch] as f64);
                let mut dz = dys[i] as f64;
                if silu {
                    let z = ga * h + be;
                    let s = 1.0 / (1.0 + (-z).exp());
                    dz *= s * (1.0 + z * (1.0 - s));
                }
                dgamma[ch] += dz * h;
                dbeta[ch] += dz;
                xh[i] = h;
                g[i] = ga * dz;
                mg += g[i];
                mgx += g[i] * h;
            }
            mg /= len as f64;
            mgx /= len as f64;
            for i in 0..len {
                dxs[i] = (rstd * (g[i] - mg - xh[i] * mgx)) as f32;
            }
        }
    }
    GroupNormGrads {
        dx,
        dgamma: dgamma.iter().map(|&v| v as f32).collect(),
        dbeta: dbeta.iter().map(|&v| v as f32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::group_norm::group_norm;
    use crate::testing::Rng;

    /// Σ r·group_norm(...) in f64.
    fn projected(r: &[f32], inputs: GroupNormInputs, opts: GroupNormOptions) -> f64 {
        let y = group_norm(inputs, opts);
        y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
    }

    /// Analytic gradients vs central finite differences of the forward, on a projection.
    #[test]
    fn matches_finite_differences() {
        let mut rng = Rng::new(21);
        for (n, c, s, groups, silu) in [(2, 4, 3, 2, false), (1, 6, 5, 3, true), (2, 3, 1, 1, true)]
        {
            let eps = 1e-5;
            let x = rng.normals(n * c * s, 1.5);
            let gamma = rng.normals(c, 1.0);
            let beta = rng.normals(c, 1.0);
            let r = rng.normals(n * c * s, 1.0);
            let opts = GroupNormOptions { groups, eps, silu };
            let inputs = GroupNormInputs {
                x: &x,
                n,
                c,
                spatial: s,
                gamma: &gamma,
                beta: &beta,
            };
            let grads = group_norm_backward(inputs, &r, opts);
            let h = 1e-2f32;
            let f = |x: &[f32], gamma: &[f32], beta: &[f32]| {
                let inputs = GroupNormInputs {
                    x,
                    gamma,
                    beta,
                    ..inputs
                };
                projected(&r, inputs, opts)
            };
            let fd = |plus: f64, minus: f64| ((plus - minus) / (2.0 * h as f64)) as f32;
            let check = |what: &str, i: usize, got: f32, want: f32| {
                assert!(
                    (got - want).abs() <= 3e-3 + 1e-2 * want.abs(),
                    "{what}[{i}] n {n} c {c} s {s} silu {silu}: analytic {got}, fd {want}"
                );
            };
            for i in 0..x.len() {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += h;
                xm[i] -= h;
                let want = fd(f(&xp, &gamma, &beta), f(&xm, &gamma, &beta));
                check("dx", i, grads.dx[i], want);
            }
            for i in 0..c {
                let (mut gp, mut gm) = (gamma.clone(), gamma.clone());
                gp[i] += h;
                gm[i] -= h;
                check(
                    "dgamma",
                    i,
                    grads.dgamma[i],
                    fd(f(&x, &gp, &beta), f(&x, &gm, &beta)),
                );
                let (mut bp, mut bm) = (beta.clone(), beta.clone());
                bp[i] += h;
                bm[i] -= h;
                check(
                    "dbeta",
                    i,
                    grads.dbeta[i],
                    fd(f(&x, &gamma, &bp), f(&x, &gamma, &bm)),
                );
            }
        }
    }

    #[test]
    fn hand_checked() {
        // A group of two values normalizes to (−1, 1) whatever x is (eps 0), so dx = 0.
        let inputs = GroupNormInputs {
            x: &[1.0, 3.0],
            n: 1,
            c: 1,
            spatial: 2,
            gamma: &[1.0],
            beta: &[0.0],
        };
        let opts = GroupNormOptions {
            groups: 1,
            eps: 0.0,
            silu: false,
        };
        let g = group_norm_backward(inputs, &[0.7, -0.2], opts);
        assert!(g.dx.iter().all(|v| v.abs() < 1e-7), "{:?}", g.dx);
        // dγ = Σ dy·x̂ = 0.7·(−1) + (−0.2)·1, dβ = Σ dy.
        assert!((g.dgamma[0] - -0.9).abs() < 1e-6 && (g.dbeta[0] - 0.5).abs() < 1e-6);
    }
}
