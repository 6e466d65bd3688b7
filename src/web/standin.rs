//! TEMPORARY STAND-INS for engine pieces that are being written elsewhere. Everything the page
//! needs from the engine goes through this file, so wiring in the real thing is local:
//!
//! - [`Schedule`] → `ddpm::schedule` (β_t, ᾱ_t from a diffusers `scheduler_config.json`);
//! - [`load_model`] → `ddpm::model` (config + safetensors → a U-Net on the GPU); today it only
//!   validates the files and reads the sample shape;
//! - [`Run`] + [`run_chunk`] → `ddpm::sampler`. Today a run blends seeded noise towards a
//!   procedural pattern along the real ᾱ_t (x_t = √ᾱ_t·p + √(1−ᾱ_t)·ε, one `axpby` dispatch per
//!   image per step) — it exercises the GPU, the chunked run loop and every view, but it is not
//!   a diffusion model.

use safetensors::SafeTensors;
use serde_json::Value;

use super::run::{Frame, RunConfig, SamplerKind};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::ops::elementwise::axpby;

/// Sample shape `[C, H, W]` used until a model is loaded (CIFAR-10's).
pub const DEFAULT_SAMPLE: [usize; 3] = [3, 32, 32];

/// A β schedule over T training timesteps (index t − 1 holds β_t, t = 1..=T).
#[derive(Clone, Debug)]
pub struct Schedule {
    pub betas: Vec<f32>,
    /// e.g. `linear β 1e-4 → 0.02`.
    pub kind: String,
}

impl Schedule {
    /// DDPM's schedule: β linear from `start` to `end` over `t_max` steps.
    pub fn linear(t_max: usize, start: f64, end: f64) -> Self {
        let betas = (0..t_max)
            .map(|i| (start + (end - start) * i as f64 / (t_max.max(2) - 1) as f64) as f32)
            .collect();
        Schedule {
            betas,
            kind: format!("linear β {start:e} → {end}"),
        }
    }

    /// Reads diffusers' `scheduler_config.json` (`num_train_timesteps`, `beta_start`,
    /// `beta_end`, `beta_schedule` ∈ linear | scaled_linear | squaredcos_cap_v2).
    pub fn from_scheduler_config(json: &[u8]) -> Result<Self> {
        let v: Value = serde_json::from_slice(json)
            .map_err(|e| Error::Invalid(format!("scheduler_config.json: {e}")))?;
        let num = |key: &str, default: f64| v.get(key).and_then(Value::as_f64).unwrap_or(default);
        let t_max = num("num_train_timesteps", 1000.0) as usize;
        if !(2..=100_000).contains(&t_max) {
            return Err(cfg_err("num_train_timesteps", t_max, "expected 2..=100000"));
        }
        let (start, end) = (num("beta_start", 1e-4), num("beta_end", 0.02));
        let kind = v
            .get("beta_schedule")
            .and_then(Value::as_str)
            .unwrap_or("linear");
        let s = match kind {
            "linear" => Self::linear(t_max, start, end),
            "scaled_linear" => {
                let (a, b) = (start.sqrt(), end.sqrt());
                let betas = (0..t_max)
                    .map(|i| {
                        let r = a + (b - a) * i as f64 / (t_max - 1) as f64;
                        (r * r) as f32
                    })
                    .collect();
                Schedule {
                    betas,
                    kind: format!("scaled_linear β {start:e} → {end}"),
                }
            }
            "squaredcos_cap_v2" => {
                let f = |t: f64| {
                    ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                let betas = (0..t_max)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / t_max as f64, (i + 1) as f64 / t_max as f64);
                        (1.0 - f(t2) / f(t1)).min(0.999) as f32
                    })
                    .collect();
                Schedule {
                    betas,
                    kind: "cosine (squaredcos_cap_v2)".into(),
                }
            }
            other => {
                return Err(cfg_err(
                    "beta_schedule",
                    other,
                    "expected linear, scaled_linear or squaredcos_cap_v2",
                ))
            }
        };
        Ok(s)
    }

    /// T, the number of training timesteps.
    pub fn t_max(&self) -> usize {
        self.betas.len()
    }

    /// ᾱ_t for t = 0..=T (ᾱ_0 = 1).
    pub fn alphas_cumprod(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.betas.len() + 1);
        let mut acc = 1.0f64;
        out.push(1.0);
        for &b in &self.betas {
            acc *= 1.0 - b as f64;
            out.push(acc as f32);
        }
        out
    }
}

fn cfg_err(key: &str, value: impl ToString, reason: &str) -> Error {
    Error::Config {
        key: key.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The files of a diffusers model as the page received them.
pub struct ModelFiles {
    /// Where they came from (a URL or "your files").
    pub source: String,
    pub config: Vec<u8>,
    pub weights: Vec<u8>,
    pub scheduler: Option<Vec<u8>>,
}

/// A loaded model (stand-in: what the files say, checked; no U-Net yet).
pub struct Model {
    /// Sample shape `[C, H, W]`.
    pub sample: [usize; 3],
    pub schedule: Schedule,
    /// Human-readable facts: (label, value) rows.
    pub facts: Vec<(String, String)>,
}

/// Checks a diffusers `UNet2DModel` config + safetensors and reads the sample shape.
/// STAND-IN for `ddpm::model`: swap in the real loader, which builds the U-Net on `gpu`.
pub fn load_model(_gpu: Option<&Gpu>, files: &ModelFiles) -> Result<Model> {
    let cfg: Value = serde_json::from_slice(&files.config)
        .map_err(|e| Error::Invalid(format!("config.json is not valid JSON: {e}")))?;
    if !cfg.is_object() {
        return Err(Error::Invalid("config.json must be a JSON object".into()));
    }
    if let Some(class) = cfg.get("_class_name").and_then(Value::as_str) {
        if class != "UNet2DModel" {
            return Err(cfg_err("_class_name", class, "expected UNet2DModel"));
        }
    }
    let uint = |key: &str| -> Result<usize> {
        cfg.get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| {
                cfg_err(
                    key,
                    cfg.get(key).map_or("missing".into(), |v| v.to_string()),
                    "expected a positive integer",
                )
            })
    };
    let in_ch = uint("in_channels")?;
    let (h, w) = match cfg.get("sample_size") {
        Some(Value::Array(a)) if a.len() == 2 => match (a[0].as_u64(), a[1].as_u64()) {
            (Some(h), Some(w)) => (h as usize, w as usize),
            _ => {
                return Err(cfg_err(
                    "sample_size",
                    &cfg["sample_size"],
                    "expected an integer or [h, w]",
                ))
            }
        },
        _ => {
            let s = uint("sample_size")?;
            (s, s)
        }
    };
    if !(1..=4).contains(&in_ch) || !(1..=1024).contains(&h) || !(1..=1024).contains(&w) {
        return Err(cfg_err(
            "in_channels/sample_size",
            format!("{in_ch}/{h}x{w}"),
            "expected 1..=4 channels of at most 1024×1024",
        ));
    }
    let blocks: Vec<u64> = cfg
        .get("block_out_channels")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();

    let st = SafeTensors::deserialize(&files.weights)
        .map_err(|e| Error::Weights(format!("diffusion_pytorch_model.safetensors: {e}")))?;
    let mut params = 0usize;
    let mut dtypes: Vec<String> = Vec::new();
    for (_, view) in st.tensors() {
        params += view.shape().iter().product::<usize>();
        let d = format!("{:?}", view.dtype());
        if !dtypes.contains(&d) {
            dtypes.push(d);
        }
    }
    let conv_in = st.tensor("conv_in.weight").map_err(|_| {
        Error::Weights("no tensor `conv_in.weight`: not a diffusers UNet2DModel checkpoint".into())
    })?;
    if conv_in.shape().len() != 4 || conv_in.shape()[1] != in_ch {
        return Err(Error::Shape {
            what: "conv_in.weight (in_channels from config.json)".into(),
            expected: vec![blocks.first().copied().unwrap_or(0) as usize, in_ch, 3, 3],
            got: conv_in.shape().to_vec(),
        });
    }
    let schedule = match &files.scheduler {
        Some(bytes) => Schedule::from_scheduler_config(bytes)?,
        None => Schedule::linear(1000, 1e-4, 0.02),
    };
    let facts = vec![
        ("source".into(), files.source.clone()),
        ("sample".into(), format!("{in_ch}×{h}×{w}")),
        ("block_out_channels".into(), format!("{blocks:?}")),
        ("tensors".into(), st.len().to_string()),
        ("parameters".into(), format!("{:.2} M", params as f64 / 1e6)),
        ("dtype".into(), dtypes.join(", ")),
    ];
    Ok(Model {
        sample: [in_ch, h, w],
        schedule,
        facts,
    })
}

/// The state of one reverse process run (stand-in).
pub struct Run {
    shape: [usize; 4],
    /// Timesteps (paper notation, T..1) of the steps, in sampling order.
    ts: Vec<usize>,
    next: usize,
    abar: Vec<f32>,
    pattern: Tensor,
    noise: Tensor,
    x: Tensor,
    x0: Tensor,
    /// GPU buffer collecting each step's x_t and x̂_0 for one readback per chunk.
    history: Option<(wgpu::Buffer, usize)>,
    /// Return frames only for steps that are multiples of this (see [`run_chunk`]).
    pub keep_every: usize,
}

impl Run {
    /// Prepares a run of `cfg.n` samples with `model` (its sample shape; [`DEFAULT_SAMPLE`]
    /// without one).
    pub fn new(
        gpu: &Gpu,
        model: Option<&Model>,
        schedule: &Schedule,
        cfg: &RunConfig,
    ) -> Result<Self> {
        let sample = model.map_or(DEFAULT_SAMPLE, |m| m.sample);
        let [c, h, w] = sample;
        let shape = [cfg.n, c, h, w];
        let numel = shape.iter().product();
        let t_max = schedule.t_max();
        let ts: Vec<usize> = match cfg.sampler {
            SamplerKind::Ddpm => (1..=t_max).rev().collect(),
            SamplerKind::Ddim { steps, .. } => {
                let steps = steps.clamp(1, t_max);
                let ratio = t_max / steps;
                (0..steps).rev().map(|i| i * ratio + 1).collect()
            }
        };
        let mut rng = crate::testing::Rng::new(cfg.seed);
        let noise = rng.normals(numel, 1.0);
        let pattern = patterns(cfg.n, sample, cfg.seed);
        Ok(Run {
            shape,
            ts,
            next: 0,
            abar: schedule.alphas_cumprod(),
            pattern: Tensor::from_slice(gpu, &shape, &pattern, "pattern")?,
            noise: Tensor::from_slice(gpu, &shape, &noise, "noise")?,
            x: Tensor::zeros(gpu, &shape, "x_t")?,
            x0: Tensor::zeros(gpu, &shape, "x0_hat")?,
            history: None,
            keep_every: 1,
        })
    }

    /// `[N, C, H, W]`.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// Steps in the whole run.
    pub fn total_steps(&self) -> usize {
        self.ts.len()
    }

    /// Steps done so far.
    pub fn steps_done(&self) -> usize {
        self.next
    }

    pub fn is_done(&self) -> bool {
        self.next >= self.ts.len()
    }
}

/// THE SEAM: runs up to `max_steps` more steps of `run` on the GPU and returns the [`Frame`]s
/// (a step's input x_t and the x̂_0 predicted there) of the steps whose index is a multiple of
/// `run.keep_every`, of the chunk's last step (for the live view), and the final frame (t = 0)
/// when the run finishes. One submission and one readback per call. The page's run loop only
/// calls this, [`Run::new`] and [`Run`]'s getters, so `ddpm::sampler` can replace the body.
pub async fn run_chunk(gpu: &Gpu, run: &mut Run, max_steps: usize) -> Result<Vec<Frame>> {
    let bytes = run.x.bytes();
    let max_frames = (gpu.limits.max_buffer_size / (2 * bytes)) as usize;
    if max_frames < 2 {
        return Err(Error::Limit {
            what: format!("frame history of {:?}", run.shape),
            needed: 4 * bytes,
            limit: gpu.limits.max_buffer_size,
            limit_name: "maxBufferSize",
        });
    }
    let k = max_steps.max(1).min(run.ts.len() - run.next);
    let finishing = run.next + k == run.ts.len();
    let every = run.keep_every.max(1);
    // Steps of this chunk whose frames are returned, and where each goes in the history buffer.
    let mut kept: Vec<usize> = (run.next..run.next + k)
        .filter(|&s| s % every == 0 || s + 1 == run.next + k)
        .collect();
    kept.truncate(max_frames - 1);
    let k = kept.last().map_or(k, |&s| s + 1 - run.next);
    let finishing = finishing && run.next + k == run.ts.len();
    let frames_out = kept.len() + finishing as usize;
    if run
        .history
        .as_ref()
        .is_none_or(|(_, cap)| *cap < frames_out)
    {
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("frame history"),
            size: frames_out as u64 * 2 * bytes,
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        run.history = Some((buffer, frames_out));
    }
    let hist = &run.history.as_ref().expect("history buffer").0;

    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    let mut out = Vec::with_capacity(frames_out);
    for s in run.next..run.next + k {
        let t = run.ts[s];
        let abar = run.abar[t];
        let (a, b) = (abar.sqrt(), (1.0 - abar).sqrt());
        let step = [
            axpby(gpu, a, &run.pattern, b, &run.noise, &run.x)?,
            axpby(
                gpu,
                abar.sqrt().sqrt(),
                &run.pattern,
                0.3 * b,
                &run.noise,
                &run.x0,
            )?,
        ];
        gpu.encode(&mut encoder, &step);
        if kept.contains(&s) {
            let slot = out.len() as u64;
            encoder.copy_buffer_to_buffer(&run.x.buffer, 0, hist, 2 * slot * bytes, bytes);
            encoder.copy_buffer_to_buffer(&run.x0.buffer, 0, hist, (2 * slot + 1) * bytes, bytes);
            out.push((s, t));
        }
    }
    if finishing {
        let slot = out.len() as u64;
        for i in 0..2 {
            encoder.copy_buffer_to_buffer(
                &run.pattern.buffer,
                0,
                hist,
                (2 * slot + i) * bytes,
                bytes,
            );
        }
        out.push((run.ts.len(), 0));
    }
    gpu.queue.submit([encoder.finish()]);
    let data = gpu
        .read_bytes(hist, 0, out.len() as u64 * 2 * bytes)
        .await?;
    run.next += k;

    let vals: &[f32] = bytemuck::cast_slice(&data);
    let n = bytes as usize / 4;
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(i, (step, t))| Frame {
            step,
            t,
            x: vals[2 * i * n..(2 * i + 1) * n].to_vec(),
            x0: vals[(2 * i + 1) * n..(2 * i + 2) * n].to_vec(),
        })
        .collect())
}

/// `n` seeded procedural images of `[C, H, W]` in [-1, 1] (the stand-in's "samples").
fn patterns(n: usize, [c, h, w]: [usize; 3], seed: u64) -> Vec<f32> {
    let mut rng = crate::testing::Rng::new(seed ^ 0xDD_9A);
    let mut out = Vec::with_capacity(n * c * h * w);
    for _ in 0..n {
        let (cx, cy) = (0.3 + 0.4 * rng.uniform(), 0.3 + 0.4 * rng.uniform());
        let freq = 2.0 + 4.0 * rng.uniform();
        for _ in 0..c {
            let hue = rng.uniform() * 2.0 - 1.0;
            for y in 0..h {
                for x in 0..w {
                    let (u, v) = (x as f32 / w as f32 - cx, y as f32 / h as f32 - cy);
                    let r = (u * u + v * v).sqrt();
                    let ring = (r * freq * std::f32::consts::TAU).cos();
                    out.push((0.6 * ring * (1.0 - r) + 0.4 * hue).clamp(-1.0, 1.0));
                }
            }
        }
    }
    out
}
