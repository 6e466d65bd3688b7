//! Reference for `shaders/grad_utils.wgsl`: gradients of scaling and a per-(n, c) broadcast. Each returns the fresh contribution (callers add it to accumulate).

/// scale·src.
pub fn scale(src: &[f32], scale: f32) -> Vec<f32> {
    src.iter().map(|&v| scale * v).collect()
}

/// out [n·c] = scale·Σ_s dy [n·c, spatial] (f64 sums): the gradient of broadcasting a [n, c]
/// tensor over the spatial positions.
pub fn reduce_spatial(dy: &[f32], nc: usize, spatial: usize, scale: f32) -> Vec<f32> {
    assert_eq!(dy.len(), nc * spatial, "reduce_spatial: dy length");
    (0..nc)
        .map(|i| {
            let s: f64 = dy[i * spatial..(i + 1) * spatial]
                .iter()
                .map(|&v| v as f64)
                .sum();
            (scale as f64 * s) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::concat::concat_channels;
    use crate::cpu::concat_backward::concat_backward;
    use crate::testing::Rng;

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&u, &v)| u as f64 * v as f64).sum()
    }

    /// Both are linear maps: the backward is the adjoint, ⟨dy, f(a)⟩ = ⟨f*(dy), a⟩.
    #[test]
    fn adjoint_identities() {
        let mut rng = Rng::new(41);
        let (n, ca, cb, s) = (2, 3, 5, 7);
        let a = rng.normals(n * ca * s, 1.0);
        let b = rng.normals(n * cb * s, 1.0);
        let dy = rng.normals(n * (ca + cb) * s, 1.0);
        let (da, db) = concat_backward(&dy, n, ca, cb, s);
        let lhs = dot(&dy, &concat_channels(&a, &b, n, ca, cb, s));
        assert!((lhs - dot(&da, &a) - dot(&db, &b)).abs() < 1e-9);

        // Broadcast t [n·c] over s positions, scaled: y[i, k] = scale·t[i].
        let t = rng.normals(n * ca, 1.0);
        let dy = rng.normals(n * ca * s, 1.0);
        let y: Vec<f32> = (0..n * ca * s).map(|j| 0.5 * t[j / s]).collect();
        let dt = reduce_spatial(&dy, n * ca, s, 0.5);
        assert!((dot(&dy, &y) - dot(&dt, &t)).abs() < 1e-5);
    }

    #[test]
    fn hand_checked() {
        let (da, db) = concat_backward(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 1, 2, 1);
        assert_eq!((da, db), (vec![1.0, 4.0], vec![2.0, 3.0, 5.0, 6.0]));
        assert_eq!(
            reduce_spatial(&[1.0, 2.0, 3.0, 4.0], 2, 2, 2.0),
            vec![6.0, 14.0]
        );
        assert_eq!(scale(&[1.0, -2.0], 0.5), vec![0.5, -1.0]);
    }
}
