//! Reference for `shaders/group_norm.wgsl`: torch.nn.GroupNorm (affine, biased variance),
//! optionally followed by SiLU.

use crate::options::GroupNormOptions;

/// The operands of a GroupNorm with their sizes: `x [n, c, spatial]`, the per-channel affine
/// `gamma`, `beta [c]` (also what [`crate::cpu::group_norm_backward`] differentiates).
#[derive(Clone, Copy, Debug)]
pub struct GroupNormInputs<'a> {
    pub x: &'a [f32],
    pub n: usize,
    pub c: usize,
    pub spatial: usize,
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
}

impl GroupNormInputs<'_> {
    /// Asserts the sizes agree and `c` splits into `groups` groups (`op` names the caller).
    pub fn check(&self, groups: usize, op: &str) {
        let c = self.c;
        assert!(
            groups > 0 && c.is_multiple_of(groups),
            "{op}: {c} channels do not split into {groups} groups"
        );
        assert_eq!(self.x.len(), self.n * c * self.spatial, "{op}: x length");
        assert!(
            self.gamma.len() == c && self.beta.len() == c,
            "{op}: gamma/beta length"
        );
    }
}

/// GroupNorm of `x` with `opts.groups` groups (c.is_multiple_of(groups), checked by the caller
/// or asserted here), then the affine, then SiLU when `opts.silu`. Mean and variance (two
/// passes, mean of squared deviations) are accumulated in f64.
pub fn group_norm(inputs: GroupNormInputs, opts: GroupNormOptions) -> Vec<f32> {
    let GroupNormInputs {
        x,
        c,
        spatial,
        gamma,
        beta,
        ..
    } = inputs;
    let GroupNormOptions { groups, eps, silu } = opts;
    inputs.check(groups, "group_norm");
    let cpg = c / groups;
    let len = cpg * spatial;
    let mut out = vec![0f32; x.len()];
    if len == 0 {
        return out;
    }
    for (gi, (xs, ys)) in x.chunks(len).zip(out.chunks_mut(len)).enumerate() {
        let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
        let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        let c0 = (gi % groups) * cpg;
        for (i, (&v, y)) in xs.iter().zip(ys.iter_mut()).enumerate() {
            let ch = c0 + i / spatial;
            let mut r = ((v as f64 - mean) * rstd) as f32 * gamma[ch] + beta[ch];
            if silu {
                r = crate::cpu::linear::silu(r);
            }
            *y = r;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked() {
        // One group of [1, 2, 3, 6]: mean 3, biased variance (4+1+0+9)/4 = 3.5.
        let x = [1.0, 2.0, 3.0, 6.0];
        let inputs = GroupNormInputs {
            x: &x,
            n: 1,
            c: 2,
            spatial: 2,
            gamma: &[1.0, 2.0],
            beta: &[0.0, 1.0],
        };
        let opts = GroupNormOptions {
            groups: 1,
            eps: 0.0,
            silu: false,
        };
        let y = group_norm(inputs, opts);
        let s = 3.5f32.sqrt();
        let want = [-2.0 / s, -1.0 / s, 2.0 * 0.0 + 1.0, 2.0 * 3.0 / s + 1.0];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{y:?} vs {want:?}");
        }
        // Two groups, eps matters for a constant group; SiLU(0) = 0, SiLU(b) = b·σ(b).
        let inputs = GroupNormInputs {
            x: &[5.0, 5.0, 1.0, 3.0],
            gamma: &[1.0, 1.0],
            beta: &[0.0, 2.0],
            ..inputs
        };
        let opts = GroupNormOptions {
            groups: 2,
            eps: 1e-5,
            silu: true,
        };
        let y = group_norm(inputs, opts);
        assert_eq!(y[0], 0.0);
        assert_eq!(y[1], 0.0);
        let r = 1.0 / (1.0f32 + 1e-5).sqrt();
        let silu = |v: f32| v / (1.0 + (-v).exp());
        assert!((y[2] - silu(2.0 - r)).abs() < 1e-6);
        assert!((y[3] - silu(2.0 + r)).abs() < 1e-6);
    }
}
