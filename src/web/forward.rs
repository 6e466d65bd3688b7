//! The forward process view: a data image x_0 and q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I),
//! drawn as x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε for a fixed ε (on the GPU when there is one).

use super::draw::quantize;
use super::run::Frames;
use crate::gpu::{Gpu, Tensor};
use crate::ops::elementwise::axpby;

/// At most this many generated samples are offered as x_0.
const MAX_GENERATED: usize = 8;

/// Images to noise, all `[1, C, H, W]` in [-1, 1], and one fixed ε.
#[derive(Clone)]
pub struct Forward {
    pub sample: [usize; 3],
    /// (name, pixels) for the `#fwd-image` menu.
    pub images: Vec<(String, Vec<f32>)>,
    eps: Vec<f32>,
}

impl Forward {
    /// The bundled images at the model's sample shape.
    pub fn new(sample: [usize; 3]) -> Self {
        let numel = sample.iter().product();
        Forward {
            sample,
            images: bundled_images(sample),
            eps: crate::testing::Rng::new(7).normals(numel, 1.0),
        }
    }

    /// Offers the final samples of a finished run (up to [`MAX_GENERATED`]) as x_0.
    pub fn add_generated(&mut self, frames: &Frames) {
        let [n, c, h, w] = frames.shape;
        if [c, h, w] != self.sample || frames.is_empty() || frames.t(frames.len() - 1) != 0 {
            return;
        }
        self.images
            .retain(|(name, _)| !name.starts_with("Generated"));
        let x = frames.x(frames.len() - 1);
        let per = c * h * w;
        for i in 0..n.min(MAX_GENERATED) {
            let img = x[i * per..(i + 1) * per]
                .iter()
                .map(|&q| q as f32 / 127.5 - 1.0)
                .collect();
            self.images.push((format!("Generated #{}", i + 1), img));
        }
    }

    /// Shape of one image as a batch of one.
    pub fn shape(&self) -> [usize; 4] {
        let [c, h, w] = self.sample;
        [1, c, h, w]
    }

    /// Quantized x_0 of image `i`.
    pub fn x0(&self, i: usize) -> Vec<u8> {
        quantize(&self.images[i].1)
    }

    /// Quantized x_t of image `i` for ᾱ_t = `abar`: on `gpu` if given (falling back to the CPU
    /// reference if the GPU fails), else on the CPU.
    pub async fn xt(&self, gpu: Option<&Gpu>, i: usize, abar: f32) -> Vec<u8> {
        let (a, b) = (abar.sqrt(), (1.0 - abar).max(0.0).sqrt());
        let x0 = &self.images[i].1;
        if let Some(gpu) = gpu {
            match self.xt_gpu(gpu, x0, a, b).await {
                Ok(v) => return quantize(&v),
                Err(e) => web_sys::console::warn_1(&format!("forward view on CPU: {e}").into()),
            }
        }
        quantize(&crate::cpu::axpby(a, x0, b, &self.eps))
    }

    async fn xt_gpu(&self, gpu: &Gpu, x0: &[f32], a: f32, b: f32) -> crate::Result<Vec<f32>> {
        let shape = self.shape();
        let tx0 = Tensor::from_slice(gpu, &shape, x0, "fwd x0")?;
        let teps = Tensor::from_slice(gpu, &shape, &self.eps, "fwd eps")?;
        let out = Tensor::zeros(gpu, &shape, "fwd xt")?;
        gpu.run(&[axpby(gpu, a, &tx0, b, &teps, &out)?]).await?;
        out.read(gpu).await
    }
}

/// Stand-in "data" until real dataset samples are bundled: a few recognisable test images.
fn bundled_images([c, h, w]: [usize; 3]) -> Vec<(String, Vec<f32>)> {
    type Pixel = fn(f32, f32, usize) -> f32;
    let makers: [(&str, Pixel); 4] = [
        ("Disc", |u, v, ch| {
            let r = ((u - 0.5).powi(2) + (v - 0.5).powi(2)).sqrt();
            let inside = if r < 0.32 { 1.0 } else { -1.0 };
            inside * [0.9, 0.4, -0.2][ch % 3]
        }),
        ("Checkerboard", |u, v, ch| {
            let on = ((u * 4.0) as i32 + (v * 4.0) as i32) % 2 == 0;
            let base = if on { 0.85 } else { -0.85 };
            base * [1.0, 0.8, 0.6][ch % 3]
        }),
        ("Gradient", |u, v, ch| {
            [2.0 * u - 1.0, 2.0 * v - 1.0, 1.0 - u - v][ch % 3]
        }),
        ("Rings", |u, v, ch| {
            let r = ((u - 0.5).powi(2) + (v - 0.5).powi(2)).sqrt();
            (r * 18.0 + ch as f32).cos() * 0.9
        }),
    ];
    makers
        .iter()
        .map(|(name, f)| {
            let mut img = Vec::with_capacity(c * h * w);
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let (u, v) = ((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
                        img.push(f(u, v, if c == 1 { 0 } else { ch }).clamp(-1.0, 1.0));
                    }
                }
            }
            (name.to_string(), img)
        })
        .collect()
}
