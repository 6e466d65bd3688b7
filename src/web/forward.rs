//! The forward process view: a data image x_0 and a draw from q(x_t | x_0) =
//! N(√ᾱ_t x_0, (1 − ᾱ_t) I), computed by the `q_sample` kernel (its CPU twin without a GPU) with
//! a fixed ε, so scrubbing t shows the same noise growing.

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use crate::cpu::sampling as cpu;
use crate::data::{examples, fashion, Dataset, Source};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::ops::sampling::q_sample;

/// At most this many generated samples are offered as x_0.
const MAX_GENERATED: usize = 8;
/// The menu name of the drawing pad's image.
const DRAWING: &str = "Your drawing";
/// RNG seed (stream 0) of the view's ε.
const EPS_SEED: u64 = 7;

/// One image to noise.
#[derive(Clone)]
pub struct Image {
    /// For the `#fwd-image` menu.
    pub name: String,
    /// `[1, C, H, W]`.
    pub shape: [usize; 4],
    /// Values in [−1, 1].
    pub x0: Vec<f32>,
    /// Its class, when known (a data example's label).
    pub label: Option<usize>,
}

/// The images offered in the forward view.
#[derive(Clone)]
pub struct Forward {
    pub images: Vec<Image>,
}

impl Forward {
    /// The bundled MNIST digits.
    pub fn new() -> Self {
        Self::with_examples(Source::Mnist)
    }

    /// The bundled examples of `source` (the loaded model's dataset), and nothing generated.
    pub fn with_examples(source: Source) -> Self {
        let images = examples_of(source).unwrap_or_else(|e| {
            web_sys::console::error_1(&format!("bundled {source} examples: {e}").into());
            Vec::new()
        });
        Forward { images }
    }

    /// Offers (up to [`MAX_GENERATED`] of) the `[n, C, H, W]` samples `x` as x_0, replacing
    /// earlier generated ones.
    pub fn add_generated(&mut self, x: &[f32], [n, c, h, w]: [usize; 4]) {
        self.images.retain(|im| !im.name.starts_with("Generated"));
        let per = c * h * w;
        for i in 0..n.min(MAX_GENERATED) {
            self.images.push(Image {
                name: format!("Generated #{}", i + 1),
                shape: [1, c, h, w],
                x0: x[i * per..(i + 1) * per].to_vec(),
                label: None,
            });
        }
    }

    /// Offers a drawing (`[1, C, H, W]`) as x_0, replacing an earlier one; its index.
    pub fn add_drawing(&mut self, x: Vec<f32>, shape: [usize; 4]) -> usize {
        self.images.retain(|im| im.name != DRAWING);
        self.images.push(Image {
            name: DRAWING.into(),
            shape,
            x0: x,
            label: None,
        });
        self.images.len() - 1
    }

    /// x_t of image `i` at timestep `t` (0-based, as the schedule's `alphas_cumprod` table):
    /// on `gpu` if given (falling back to the CPU twin if the GPU fails), else on the CPU.
    pub async fn xt(&self, gpu: Option<&Gpu>, i: usize, t: usize, abar: &[f32]) -> Vec<f32> {
        let im = &self.images[i];
        if let Some(gpu) = gpu {
            match xt_gpu(gpu, im, t, abar).await {
                Ok(v) => return v,
                Err(e) => web_sys::console::warn_1(&format!("forward view on CPU: {e}").into()),
            }
        }
        cpu::q_sample(&im.x0, &[t as f32], abar, None, Some((EPS_SEED, 0))).0
    }
}

/// The view's GPU buffers and recorded q_sample, for one image, schedule and device; a slider
/// move only rewrites t and re-runs the dispatch.
struct GpuView {
    generation: u32,
    x0: Vec<f32>,
    abar: Vec<f32>,
    t: Tensor,
    out: Tensor,
    dispatch: Dispatch,
}

thread_local! {
    static GPU_VIEW: RefCell<Option<GpuView>> = const { RefCell::new(None) };
}

async fn xt_gpu(gpu: &Gpu, im: &Image, t: usize, abar: &[f32]) -> Result<Vec<f32>> {
    let generation = super::GPU_GENERATION.load(Ordering::SeqCst);
    let current = GPU_VIEW.with_borrow(|v| {
        v.as_ref()
            .is_some_and(|v| v.generation == generation && v.x0 == im.x0 && v.abar == abar)
    });
    if !current {
        let x0 = Tensor::from_slice(gpu, &im.shape, &im.x0, "fwd x0")?;
        let tt = Tensor::zeros(gpu, &[1], "fwd t")?;
        let ab = Tensor::from_slice(gpu, &[abar.len()], abar, "fwd alphas_cumprod")?;
        let eps = Tensor::zeros(gpu, &im.shape, "fwd eps")?;
        let out = Tensor::zeros(gpu, &im.shape, "fwd x_t")?;
        // The dispatch keeps its buffers alive.
        let dispatch = q_sample(gpu, &x0, &tt, &ab, &eps, Some((EPS_SEED, 0)), &out)?;
        GPU_VIEW.with_borrow_mut(|v| {
            *v = Some(GpuView {
                generation,
                x0: im.x0.clone(),
                abar: abar.to_vec(),
                t: tt,
                out,
                dispatch,
            })
        });
    }
    let out = GPU_VIEW.with_borrow(|v| -> Result<Tensor> {
        let v = v.as_ref().expect("built above");
        v.t.write(gpu, &[t as f32])?;
        gpu.submit(std::slice::from_ref(&v.dispatch));
        Ok(v.out.clone())
    })?;
    gpu.wait().await?;
    out.read(gpu).await
}

/// The bundled examples of `source` at their native 28×28, named for the menu.
fn examples_of(source: Source) -> Result<Vec<Image>> {
    let Some(ds) = examples::of(source).transpose()? else {
        return Ok(Vec::new());
    };
    let labels = ds.labels().map(<[u8]>::to_vec).unwrap_or_default();
    (0..ds.len())
        .map(|i| {
            let mut x0 = vec![0.0; ds.image_len()];
            ds.batch(&[i], &mut x0)?;
            let label = labels.get(i).map(|&l| l as usize);
            Ok(Image {
                name: match (source, label) {
                    (Source::Fashion, Some(l)) => {
                        format!("Fashion-MNIST: {}", fashion::CLASSES[l.min(9)])
                    }
                    (_, Some(l)) => format!("MNIST digit {l}"),
                    (_, None) => format!("Example #{}", i + 1),
                },
                shape: [1, ds.channels(), ds.size(), ds.size()],
                x0,
                label,
            })
        })
        .collect()
}
