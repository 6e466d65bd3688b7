//! Reference for `shaders/attention_backward.wgsl`: gradients of [`super::attention::attention`].

/// Backward of multi-head self-attention on a fused, channel-major projection.
///
/// `qkv: [N, 3C, L]` as in [`super::attention::attention`], `d_out: [N, C, L]` (the gradient of
/// its output). Returns `d_qkv: [N, 3C, L]` (dq, dk, dv in the channel ranges of q, k, v). Per
/// image and head, with `S = scale·QᵀK`, `P = softmax_j(S)`, `dP_ij = dO_i·v_j`,
/// `D_i = Σ_j P_ij dP_ij` (= dO_i·O_i) and `dS = P ∘ (dP − D)`:
/// `dv_j = Σ_i P_ij dO_i`, `dq_i = scale·Σ_j dS_ij k_j`, `dk_j = scale·Σ_i dS_ij q_i`.
/// Panics if `heads` does not divide `c` or a slice has the wrong length (a reference, not a
/// user-facing API).
pub fn attention_backward(
    qkv: &[f32],
    d_out: &[f32],
    n: usize,
    c: usize,
    l: usize,
    heads: usize,
) -> Vec<f32> {
    assert!(
        heads > 0 && c.is_multiple_of(heads),
        "heads {heads} must divide C {c}"
    );
    assert_eq!(qkv.len(), n * 3 * c * l, "qkv length");
    assert_eq!(d_out.len(), n * c * l, "d_out length");
    let d = c / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let mut grad = vec![0f32; n * 3 * c * l];
    // One query row at a time: probabilities, dP and dS over the keys.
    let mut prob = vec![0f32; l];
    let mut dp = vec![0f32; l];
    for b in 0..n {
        let base = b * 3 * c * l;
        let q = &qkv[base..base + c * l];
        let k = &qkv[base + c * l..base + 2 * c * l];
        let v = &qkv[base + 2 * c * l..base + 3 * c * l];
        let dout = &d_out[b * c * l..(b + 1) * c * l];
        let (dq, dkv) = grad[base..base + 3 * c * l].split_at_mut(c * l);
        let (dk, dv) = dkv.split_at_mut(c * l);
        for h in 0..heads {
            let ch = h * d..(h + 1) * d;
            for i in 0..l {
                for (j, pj) in prob.iter_mut().enumerate() {
                    *pj = ch
                        .clone()
                        .map(|ci| q[ci * l + i] * k[ci * l + j])
                        .sum::<f32>()
                        * scale;
                }
                let max = prob.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for pj in prob.iter_mut() {
                    *pj = (*pj - max).exp();
                    sum += *pj;
                }
                for pj in prob.iter_mut() {
                    *pj /= sum;
                }
                for (j, dpj) in dp.iter_mut().enumerate() {
                    *dpj = ch
                        .clone()
                        .map(|e| dout[e * l + i] * v[e * l + j])
                        .sum::<f32>();
                }
                let dd: f32 = prob.iter().zip(&dp).map(|(p, g)| p * g).sum();
                for j in 0..l {
                    let pj = prob[j];
                    // dS_ij · scale
                    let ds = pj * (dp[j] - dd) * scale;
                    for ci in ch.clone() {
                        dq[ci * l + i] += ds * k[ci * l + j];
                        dk[ci * l + j] += ds * q[ci * l + i];
                        dv[ci * l + j] += pj * dout[ci * l + i];
                    }
                }
            }
        }
    }
    grad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    /// f64 copy of [`super::super::attention::attention`], for finite differences.
    fn attention_f64(qkv: &[f64], n: usize, c: usize, l: usize, heads: usize) -> Vec<f64> {
        let d = c / heads;
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![0f64; n * c * l];
        for b in 0..n {
            let x = &qkv[b * 3 * c * l..(b + 1) * 3 * c * l];
            let (q, k, v) = (&x[..c * l], &x[c * l..2 * c * l], &x[2 * c * l..]);
            for h in 0..heads {
                for i in 0..l {
                    let s: Vec<f64> = (0..l)
                        .map(|j| {
                            (h * d..(h + 1) * d)
                                .map(|ci| q[ci * l + i] * k[ci * l + j])
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for ci in h * d..(h + 1) * d {
                        out[b * c * l + ci * l + i] =
                            (0..l).map(|j| e[j] * v[ci * l + j]).sum::<f64>() / sum;
                    }
                }
            }
        }
        out
    }

    /// The f64 copy agrees with the real f32 forward (so its derivative is the one we want).
    #[test]
    fn f64_forward_matches_f32_forward() {
        let (n, c, l, heads) = (2, 6, 5, 3);
        let qkv = Rng::new(3).normals(n * 3 * c * l, 1.0);
        let want = super::super::attention::attention(&qkv, n, c, l, heads);
        let x: Vec<f64> = qkv.iter().map(|&v| v as f64).collect();
        let got = attention_f64(&x, n, c, l, heads);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - *w as f64).abs() < 1e-5, "{g} vs {w}");
        }
    }

    /// Analytic gradient of loss = Σ r·attention(qkv) vs central differences (f64, h = 1e-5) at
    /// every input, on shapes with L = 1, odd L, d = 1, d = 3, several heads and N > 1.
    #[test]
    fn matches_finite_differences() {
        for (seed, &(n, c, l, heads)) in [
            (1, 2, 3, 1),
            (2, 4, 5, 2),
            (1, 3, 7, 1),
            (1, 6, 4, 2),
            (2, 2, 1, 2),
            (1, 5, 6, 5),
        ]
        .iter()
        .enumerate()
        {
            let mut rng = Rng::new(seed as u64 + 40);
            let qkv = rng.normals(n * 3 * c * l, 1.0);
            let r = rng.normals(n * c * l, 1.0);
            let got = attention_backward(&qkv, &r, n, c, l, heads);
            let x: Vec<f64> = qkv.iter().map(|&v| v as f64).collect();
            let loss = |x: &[f64]| -> f64 {
                attention_f64(x, n, c, l, heads)
                    .iter()
                    .zip(&r)
                    .map(|(o, &ri)| o * ri as f64)
                    .sum()
            };
            let h = 1e-5;
            let mut largest = 0f64;
            for idx in 0..x.len() {
                let mut xp = x.clone();
                xp[idx] += h;
                let mut xm = x.clone();
                xm[idx] -= h;
                let fd = (loss(&xp) - loss(&xm)) / (2.0 * h);
                largest = largest.max(fd.abs());
                assert!(
                    (got[idx] as f64 - fd).abs() <= 2e-6 + 1e-4 * fd.abs(),
                    "n={n} c={c} l={l} heads={heads}: d_qkv[{idx}] = {} vs finite difference {fd}",
                    got[idx]
                );
            }
            assert!(largest > 0.1, "degenerate case: largest gradient {largest}");
        }
    }

    /// L = 1: softmax of one key is 1 whatever q·k, so dq = dk = 0 and dv = dO.
    #[test]
    fn single_position() {
        let (n, c) = (2, 4);
        let qkv = Rng::new(5).normals(n * 3 * c, 1.0);
        let dout = Rng::new(6).normals(n * c, 1.0);
        let g = attention_backward(&qkv, &dout, n, c, 1, 2);
        for b in 0..n {
            let img = &g[b * 3 * c..(b + 1) * 3 * c];
            assert!(img[..2 * c].iter().all(|&x| x.abs() < 1e-6), "{img:?}");
            assert_eq!(&img[2 * c..], &dout[b * c..(b + 1) * c]);
        }
    }
}
