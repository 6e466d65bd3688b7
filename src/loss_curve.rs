//! L_simple per timestep: how well a model predicts the noise at each t,
//! E‖ε − ε̂(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)‖² / D over given images and noise draws (Ho et al. 2020,
//! eq. 14). Where the curve is high the model is unsure. `ddpm loss` prints it; the page plots
//! it under the schedule.
//!
//! Every (t, image, draw) is one item of one batched forward pass ([`UNet::forward`] splits it
//! to fit the device). The noise of image j's draw d is the RNG's (seed, stream d, element
//! index j·D …), the same at every t, so the curve shows one noise growing, and it does not
//! depend on the batching.

use crate::cpu::sampling::{noise, q_sample};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::UNet;

/// What to measure the loss on.
#[derive(Clone, Debug)]
pub struct LossSetup<'a> {
    /// `[N, C, H, W]` images in [−1, 1].
    pub images: &'a [f32],
    pub shape: [usize; 4],
    /// Class-conditional models: each image's class (else `None`).
    pub labels: Option<&'a [f32]>,
    /// The timesteps to measure at (0..T−1).
    pub timesteps: &'a [usize],
    /// Noise draws per image and timestep.
    pub draws: usize,
    pub seed: u64,
}

/// The loss at each timestep, averaged over the images and draws.
#[derive(Clone, Debug, PartialEq)]
pub struct LossCurve {
    pub timesteps: Vec<usize>,
    pub loss: Vec<f64>,
}

/// `count` timesteps spread evenly over 0..T−1 (bucket midpoints: T = 1000, count = 10 gives
/// 50, 150, …, 950).
pub fn even_timesteps(count: usize, train_timesteps: usize) -> Vec<usize> {
    let count = count.clamp(1, train_timesteps.max(1));
    (0..count)
        .map(|i| ((2 * i + 1) * train_timesteps / (2 * count)).min(train_timesteps - 1))
        .collect()
}

/// Every item's inputs and target, t-major (then draw, then image).
#[derive(Debug)]
struct Items {
    x_t: Vec<f32>,
    t: Vec<f32>,
    /// Empty for an unconditional model.
    labels: Vec<f32>,
    eps: Vec<f32>,
}

impl LossSetup<'_> {
    fn items(&self, alphas_cumprod: &[f32]) -> Result<Items> {
        let [n, c, h, w] = self.shape;
        let per = c * h * w;
        if self.images.len() != n * per || n == 0 {
            return Err(Error::Shape {
                what: "loss images".into(),
                expected: self.shape.to_vec(),
                got: vec![self.images.len()],
            });
        }
        if self.draws == 0 || self.timesteps.is_empty() {
            let name = if self.draws == 0 {
                "draws"
            } else {
                "timesteps"
            };
            return Err(Error::setting(
                name,
                "the loss needs at least one timestep and one noise draw",
            ));
        }
        if let Some(&t) = self.timesteps.iter().find(|&&t| t >= alphas_cumprod.len()) {
            return Err(Error::setting(
                "timesteps",
                format!(
                    "timestep {t} is outside the schedule's 0..={}",
                    alphas_cumprod.len() - 1
                ),
            ));
        }
        if let Some(l) = self.labels {
            if l.len() != n {
                return Err(Error::setting(
                    "class labels",
                    format!("{} labels for {n} images", l.len()),
                ));
            }
        }
        // ε of (draw d, image j), shared by every t.
        let eps_of_draw: Vec<Vec<f32>> = (0..self.draws)
            .map(|d| noise(n * per, self.seed, d as u32, 0))
            .collect();
        let count = self.timesteps.len() * self.draws * n;
        let (mut x0, mut ts, mut labels, mut eps) = (
            Vec::with_capacity(count * per),
            Vec::with_capacity(count),
            Vec::new(),
            Vec::with_capacity(count * per),
        );
        for &t in self.timesteps {
            for e in &eps_of_draw {
                x0.extend_from_slice(self.images);
                eps.extend_from_slice(e);
                ts.extend(std::iter::repeat_n(t as f32, n));
                if let Some(l) = self.labels {
                    labels.extend_from_slice(l);
                }
            }
        }
        let (x_t, _) = q_sample(&x0, &ts, alphas_cumprod, Some(&eps), None);
        Ok(Items {
            x_t,
            t: ts,
            labels,
            eps,
        })
    }
}

/// Measures the curve of `unet` on `setup` (`alphas_cumprod`: the schedule's ᾱ table).
pub async fn loss_per_timestep(
    gpu: &Gpu,
    unet: &UNet,
    alphas_cumprod: &[f32],
    setup: &LossSetup<'_>,
) -> Result<LossCurve> {
    let items = setup.items(alphas_cumprod)?;
    let [_, c, h, w] = setup.shape;
    let labels = setup.labels.map(|_| items.labels.as_slice());
    let shape = [items.t.len(), c, h, w];
    let (eps_hat, _) = unet
        .forward(gpu, &shape, &items.x_t, &items.t, labels)
        .await?;
    Ok(curve(setup, &items.eps, &eps_hat))
}

/// Averages the squared error of each timestep's items.
fn curve(setup: &LossSetup<'_>, eps: &[f32], eps_hat: &[f32]) -> LossCurve {
    let per_t = eps.len() / setup.timesteps.len();
    let loss = eps
        .chunks(per_t)
        .zip(eps_hat.chunks(per_t))
        .map(|(e, p)| {
            e.iter()
                .zip(p)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                / per_t as f64
        })
        .collect();
    LossCurve {
        timesteps: setup.timesteps.to_vec(),
        loss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_timesteps_are_bucket_midpoints() {
        assert_eq!(even_timesteps(10, 1000)[..3], [50, 150, 250]);
        assert_eq!(even_timesteps(10, 1000)[9], 950);
        assert_eq!(even_timesteps(1, 1000), vec![500]);
        assert_eq!(even_timesteps(5000, 20).len(), 20);
        assert_eq!(even_timesteps(20, 20), (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn items_share_noise_across_timesteps_and_check_input() {
        let images = [0.5f32, -0.5, 0.25, 0.0]; // two 1×1×2 images
        let abar = [0.9f32, 0.5, 0.1];
        let setup = LossSetup {
            images: &images,
            shape: [2, 1, 1, 2],
            labels: Some(&[3.0, 7.0]),
            timesteps: &[0, 2],
            draws: 2,
            seed: 1,
        };
        let Items {
            x_t,
            t: ts,
            labels,
            eps,
        } = setup.items(&abar).unwrap();
        assert_eq!(ts, [0., 0., 0., 0., 2., 2., 2., 2.]);
        assert_eq!(labels, [3., 7., 3., 7., 3., 7., 3., 7.]);
        assert_eq!(eps[..8], eps[8..], "the same noise at every t");
        assert_ne!(eps[..4], eps[4..8], "draws differ");
        let want = 0.1f32.sqrt() * 0.5 + 0.9f32.sqrt() * eps[8];
        assert!((x_t[8] - want).abs() < 1e-6);
        // A perfect prediction has zero loss; ε̂ = 0 has loss E[ε²].
        let c = curve(&setup, &eps, &eps);
        assert_eq!(c.loss, vec![0.0, 0.0]);
        let zero = curve(&setup, &eps, &vec![0.0; eps.len()]);
        let mean_sq = eps[..8].iter().map(|v| (v * v) as f64).sum::<f64>() / 8.0;
        assert!((zero.loss[0] - mean_sq).abs() < 1e-6);

        let bad = |s: LossSetup| s.items(&abar).unwrap_err().to_string();
        assert!(bad(LossSetup {
            timesteps: &[3],
            ..setup.clone()
        })
        .contains("outside"));
        assert!(bad(LossSetup {
            draws: 0,
            ..setup.clone()
        })
        .contains("at least one"));
        assert!(bad(LossSetup {
            labels: Some(&[1.0]),
            ..setup.clone()
        })
        .contains("1 labels"));
        assert!(bad(LossSetup {
            images: &images[..3],
            ..setup
        })
        .contains("loss images"));
    }
}
