//! Reference for `shaders/attention.wgsl`: multi-head self-attention over L positions.

/// Multi-head self-attention on a fused, channel-major projection.
///
/// `qkv: [N, 3C, L]` (channels `0..C` are q, `C..2C` k, `2C..3C` v; head `h` owns channels
/// `h·d..(h+1)·d` of each, `d = C / heads`). Returns `out: [N, C, L]` with
/// `out[n, h·d + e, i] = Σ_j softmax_j(scale · q_i·k_j) · v[n, h·d + e, j]`, `scale = 1/√d`.
/// The softmax subtracts the row maximum. Panics if `heads` does not divide `c` or `qkv` has the
/// wrong length (a reference, not a user-facing API).
pub fn attention(qkv: &[f32], n: usize, c: usize, l: usize, heads: usize) -> Vec<f32> {
    assert!(
        heads > 0 && c.is_multiple_of(heads),
        "heads {heads} must divide C {c}"
    );
    assert_eq!(qkv.len(), n * 3 * c * l, "qkv length");
    let d = c / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0f32; n * c * l];
    let mut s = vec![0f32; l];
    for b in 0..n {
        let base = b * 3 * c * l;
        let q = &qkv[base..base + c * l];
        let k = &qkv[base + c * l..base + 2 * c * l];
        let v = &qkv[base + 2 * c * l..base + 3 * c * l];
        let o = &mut out[b * c * l..(b + 1) * c * l];
        for h in 0..heads {
            let ch = h * d..(h + 1) * d;
            for i in 0..l {
                for (j, sj) in s.iter_mut().enumerate() {
                    *sj = ch
                        .clone()
                        .map(|ci| q[ci * l + i] * k[ci * l + j])
                        .sum::<f32>()
                        * scale;
                }
                let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for sj in s.iter_mut() {
                    *sj = (*sj - max).exp();
                    sum += *sj;
                }
                for ci in ch.clone() {
                    let acc: f32 = s.iter().enumerate().map(|(j, p)| p * v[ci * l + j]).sum();
                    o[ci * l + i] = acc / sum;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// N=1, C=1 (one head, d=1), L=2: scale 1, scores s_ij = q_i·k_j, worked by hand.
    #[test]
    fn tiny_case_by_hand() {
        // q = [1, 2], k = [0, ln 3], v = [10, 20].
        let ln3 = 3f32.ln();
        let qkv = [1.0, 2.0, 0.0, ln3, 10.0, 20.0];
        let out = attention(&qkv, 1, 1, 2, 1);
        // i=0: s = [0, ln3] → p = [1/4, 3/4] → 2.5 + 15 = 17.5.
        // i=1: s = [0, 2 ln3] → p = [1/10, 9/10] → 1 + 18 = 19.
        assert!((out[0] - 17.5).abs() < 1e-4, "{out:?}");
        assert!((out[1] - 19.0).abs() < 1e-4, "{out:?}");
    }

    /// Two heads of d=2 (scale 1/√2) over L=2, each hand-checked; heads must not mix.
    #[test]
    fn two_heads_by_hand() {
        let l = 2;
        let r2 = 2f32.sqrt();
        let ln2 = 2f32.ln();
        // Channel-major rows of length L. Head 0 uses channels 0,1; head 1 channels 2,3.
        #[rustfmt::skip]
        let qkv = [
            // q
            r2, 0.0,   // c0: q0 = (√2, 0)
            0.0, 0.0,  // c1
            0.0, 0.0,  // c2: head 1 q = 0 → uniform attention
            0.0, 0.0,  // c3
            // k
            0.0, ln2,  // c0: k0·q0 = 0, k1·q0 = √2·ln2 → scaled: 0, ln2
            0.0, 0.0,  // c1
            5.0, -7.0, // c2 (irrelevant: q = 0)
            1.0, 3.0,  // c3
            // v
            1.0, 4.0,  // c0
            -3.0, 0.0, // c1
            2.0, 6.0,  // c2
            8.0, 0.0,  // c3
        ];
        let out = attention(&qkv, 1, 4, l, 2);
        // Head 0, i=0: p = [1/3, 2/3]; i=1: q = 0 → p = [1/2, 1/2].
        // Head 1: p = [1/2, 1/2] for both queries.
        let want = [
            1.0 / 3.0 + 8.0 / 3.0,
            2.5, // c0
            -1.0,
            -1.5, // c1
            4.0,
            4.0, // c2
            4.0,
            4.0, // c3
        ];
        for (g, w) in out.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{out:?} vs {want:?}");
        }
    }

    /// Huge scores must not overflow: the softmax subtracts the max.
    #[test]
    fn large_scores_are_stable() {
        // q = [100, 100], k = [100, 99] → s = [10000, 9900]: p ≈ [1, e^-100].
        let qkv = [100.0, 100.0, 100.0, 99.0, 1.0, 2.0];
        let out = attention(&qkv, 1, 1, 2, 1);
        assert!(out.iter().all(|x| (x - 1.0).abs() < 1e-6), "{out:?}");
    }
}
