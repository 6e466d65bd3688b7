//! Reference for `shaders/loss.wgsl`.

/// (L, dL/dpred, per-sample mean losses) for L = mean((pred − target)²) over all elements, pred
/// and target holding `n` samples of equal size. f64 sums.
pub fn mse_loss(pred: &[f32], target: &[f32], n: usize) -> (f32, Vec<f32>, Vec<f32>) {
    assert_eq!(pred.len(), target.len(), "mse_loss: pred/target length");
    assert!(
        n > 0 && pred.len().is_multiple_of(n),
        "mse_loss: {} elements do not split into {n} samples",
        pred.len()
    );
    let numel = pred.len();
    let per = numel / n;
    let grad = pred
        .iter()
        .zip(target)
        .map(|(&a, &b)| 2.0 * (a - b) / numel as f32)
        .collect();
    let sq: Vec<f64> = pred
        .iter()
        .zip(target)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .collect();
    let per_sample = sq
        .chunks(per.max(1))
        .map(|c| (c.iter().sum::<f64>() / per as f64) as f32)
        .collect();
    let loss = (sq.iter().sum::<f64>() / numel as f64) as f32;
    (loss, grad, per_sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    #[test]
    fn hand_checked() {
        // Two samples: squared errors (1, 4) and (0, 9): L = 14/4, per sample 2.5 and 4.5.
        let (l, g, s) = mse_loss(&[1.0, 2.0, 3.0, 4.0], &[0.0, 0.0, 3.0, 7.0], 2);
        assert_eq!(l, 3.5);
        assert_eq!(s, vec![2.5, 4.5]);
        assert_eq!(g, vec![0.5, 1.0, 0.0, -1.5]);
    }

    #[test]
    fn matches_finite_differences() {
        let mut rng = Rng::new(81);
        let pred = rng.normals(12, 1.0);
        let target = rng.normals(12, 1.0);
        let (_, g, _) = mse_loss(&pred, &target, 3);
        let h = 1e-2f32;
        for i in 0..pred.len() {
            let (mut p, mut m) = (pred.clone(), pred.clone());
            p[i] += h;
            m[i] -= h;
            let fd = (mse_loss(&p, &target, 3).0 - mse_loss(&m, &target, 3).0) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-4,
                "d[{i}]: analytic {}, fd {fd}",
                g[i]
            );
        }
    }
}
