//! Reference for `shaders/optim.wgsl`: global gradient norm, AdamW (torch.optim.AdamW with
//! clip_grad_norm_ folded in), EMA of the weights.

use crate::options::AdamWParams;

/// Σ over all tensors of Σ g² (f64 sums).
pub fn grad_norm_sq(grads: &[&[f32]]) -> f32 {
    grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&v| v as f64 * v as f64)
        .sum::<f64>() as f32
}

/// One AdamW step on `param` with moments `m`, `v` (all updated in place), given the global
/// squared gradient norm `norm_sq`. Returns false (and changes nothing) when `norm_sq` is inf or
/// NaN. Mirrors torch's f32 arithmetic: clip, `param *= 1 − lr·wd`, `m.lerp_(g, 1 − β1)`,
/// `v = β2·v + (1 − β2)·g²`, `param −= (lr/bc1)·m/(√v/√bc2 + eps)`.
pub fn adamw_step(
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    norm_sq: f32,
    hp: &AdamWParams,
) -> bool {
    assert!(
        grad.len() == param.len() && m.len() == param.len() && v.len() == param.len(),
        "adamw_step: lengths"
    );
    if !norm_sq.is_finite() {
        return false;
    }
    let k = hp.coefficients();
    let clip = if k.max_grad_norm > 0.0 {
        (k.max_grad_norm / (norm_sq.sqrt() + 1e-6)).min(1.0)
    } else {
        1.0
    };
    for i in 0..param.len() {
        let g = grad[i] * clip;
        m[i] += k.one_minus_b1 * (g - m[i]);
        v[i] = v[i] * k.beta2 + k.one_minus_b2 * g * g;
        let denom = v[i].sqrt() / k.bc2_sqrt + k.eps;
        param[i] = param[i] * k.wd_mul - k.step_size * (m[i] / denom);
    }
    true
}

/// ema −= (1 − decay)·(ema − param).
pub fn ema_update(ema: &mut [f32], param: &[f32], decay: f32) {
    assert_eq!(ema.len(), param.len(), "ema_update: lengths");
    for (e, &p) in ema.iter_mut().zip(param) {
        *e -= (1.0 - decay) * (*e - p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grad_norm_and_ema_hand_checked() {
        assert_eq!(grad_norm_sq(&[&[3.0], &[], &[4.0, 0.0]]), 25.0);
        let mut e = [1.0, 2.0];
        ema_update(&mut e, &[3.0, 2.0], 0.75);
        assert_eq!(e, [1.5, 2.0]);
    }
}
