//! Training (Ho et al. 2020, Algorithm 1) with the same WGSL kernels as inference: x0 from the
//! data, t ~ U{0..T−1}, ε ~ N(0, I), one AdamW step on ‖ε − ε_θ(√ᾱ_t x0 + √(1−ᾱ_t) ε, t)‖².
//!
//! Everything that varies per step is derived from `(seed, step)` (timesteps on the CPU, noise
//! by the GPU's counter-based RNG), so a run resumed from a checkpoint continues exactly.

pub mod checkpoint;
pub mod tape;

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::{unet, UNetConfig, Weights};
use crate::ops;
use crate::options::AdamWParams;
use crate::schedule::SchedulerConfig;
use tape::{Params, Tape};

/// Optimisation settings.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    pub batch: usize,
    /// Peak learning rate (reached after `warmup` steps, linearly).
    pub lr: f32,
    pub warmup: usize,
    /// What the learning rate does after the warm-up.
    #[serde(default)]
    pub lr_decay: LrDecay,
    pub beta1: f32,
    pub beta2: f32,
    pub adam_eps: f32,
    pub weight_decay: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    pub max_grad_norm: f32,
    /// EMA of the weights (the exported model), e.g. 0.999.
    pub ema_decay: f32,
    /// Seed of the timesteps and noise of every step.
    pub seed: u64,
    /// Class-conditional models: the probability that a sample's label is replaced by the
    /// model's null class (classifier-free guidance training; 0 for none).
    #[serde(default)]
    pub label_dropout: f32,
}

/// The learning rate after the warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LrDecay {
    /// The peak rate until the end.
    #[default]
    Constant,
    /// Half a cosine from the peak rate at step `start` down to 0 at step `end` (0-based
    /// steps; 0 after `end`). `start` is usually the warm-up's end; a resumed run that adds a
    /// decay starts it where it resumed.
    Cosine { start: u64, end: u64 },
}

impl LrDecay {
    /// The factor applied to the peak rate at step `step`.
    pub fn factor(&self, step: u64) -> f32 {
        match *self {
            LrDecay::Constant => 1.0,
            LrDecay::Cosine { start, end } => {
                if step <= start {
                    1.0
                } else if step >= end {
                    0.0
                } else {
                    let progress = (step - start) as f64 / (end - start) as f64;
                    (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())) as f32
                }
            }
        }
    }
}

/// Largest training batch accepted ([`TrainOptions::validate`]).
pub const MAX_BATCH: usize = 4096;
/// Most optimisation steps a run (or a checkpoint) may count: AdamW's step counter is a u32.
pub const MAX_STEPS: u64 = 1 << 31;

impl TrainOptions {
    /// Checks every option against its documented range (batch 1..=[`MAX_BATCH`], warm-up at
    /// most [`MAX_STEPS`], rates and factors finite and in range); errors name the option.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, reason: &str| {
            Err(Error::Config {
                key: key.into(),
                value,
                reason: format!("training option {reason}"),
            })
        };
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return bad(
                "batch",
                self.batch.to_string(),
                &format!("must be between 1 and {MAX_BATCH}"),
            );
        }
        if self.warmup as u64 > MAX_STEPS {
            return bad(
                "warmup",
                self.warmup.to_string(),
                &format!("must be at most {MAX_STEPS} steps"),
            );
        }
        if let LrDecay::Cosine { start, end } = self.lr_decay {
            if start >= end || end > MAX_STEPS {
                return bad(
                    "lr_decay",
                    format!("cosine from step {start} to {end}"),
                    &format!("needs start < end ≤ {MAX_STEPS}"),
                );
            }
        }
        let unit = |x: f32| (0.0..1.0).contains(&x);
        let non_negative = |x: f32| x.is_finite() && x >= 0.0;
        let checks: [(&str, f32, bool, &str); 8] = [
            (
                "lr",
                self.lr,
                non_negative(self.lr),
                "must be finite and ≥ 0",
            ),
            ("beta1", self.beta1, unit(self.beta1), "must lie in [0, 1)"),
            ("beta2", self.beta2, unit(self.beta2), "must lie in [0, 1)"),
            (
                "adam_eps",
                self.adam_eps,
                self.adam_eps.is_finite() && self.adam_eps > 0.0,
                "must be finite and > 0",
            ),
            (
                "weight_decay",
                self.weight_decay,
                non_negative(self.weight_decay),
                "must be finite and ≥ 0",
            ),
            (
                "max_grad_norm",
                self.max_grad_norm,
                non_negative(self.max_grad_norm),
                "must be finite and ≥ 0 (0: no clipping)",
            ),
            (
                "ema_decay",
                self.ema_decay,
                (0.0..=1.0).contains(&self.ema_decay),
                "must lie in [0, 1]",
            ),
            (
                "label_dropout",
                self.label_dropout,
                (0.0..=1.0).contains(&self.label_dropout),
                "must lie in [0, 1]",
            ),
        ];
        for (key, value, ok, reason) in checks {
            if !ok {
                return bad(key, value.to_string(), reason);
            }
        }
        Ok(())
    }
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            batch: 32,
            lr: 1e-3,
            warmup: 100,
            lr_decay: LrDecay::Constant,
            beta1: 0.9,
            beta2: 0.999,
            adam_eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            ema_decay: 0.999,
            seed: 0,
            label_dropout: 0.0,
        }
    }
}

/// A U-Net being trained on the GPU.
pub struct Trainer {
    pub config: UNetConfig,
    pub scheduler: SchedulerConfig,
    pub options: TrainOptions,
    /// Steps done.
    pub step: u64,
    params: Params,
    /// Parameter names in a fixed order (master names: q/k/v stacked as `to_qkv`).
    names: Vec<String>,
    grads: HashMap<String, Tensor>,
    adam_m: HashMap<String, Tensor>,
    adam_v: HashMap<String, Tensor>,
    ema: HashMap<String, Tensor>,
    x0: Tensor,
    t: Tensor,
    /// Class labels `[N]` of a class-conditional model.
    labels: Option<Tensor>,
    noise: Tensor,
    xt: Tensor,
    alphas_cumprod: Tensor,
    loss: Tensor,
    norm_sq: Tensor,
    /// Forward, loss, backward and gradient norm, recorded once.
    graph: Vec<Dispatch>,
    /// Re-pack the conv weights after an update.
    repack: Vec<Dispatch>,
}

/// The stacked attention projection name for a `…to_q.weight`-style name, if it is one.
fn qkv_parts(name: &str) -> Option<(&str, &str)> {
    for p in ["to_q", "to_k", "to_v"] {
        for suffix in ["weight", "bias"] {
            if let Some(prefix) = name.strip_suffix(&format!(".{p}.{suffix}")) {
                return Some((prefix, suffix));
            }
        }
    }
    None
}

/// A named host tensor: (name, shape, data).
type Named = (String, Vec<usize>, Vec<f32>);

/// diffusers weights → master tensors (q/k/v stacked into `to_qkv`).
fn to_master(weights: &Weights) -> Result<Vec<Named>> {
    let mut out = Vec::new();
    for (name, t) in weights.iter() {
        match qkv_parts(name) {
            Some((prefix, suffix)) if name.contains(".to_q.") => {
                let mut data = Vec::new();
                for p in ["to_q", "to_k", "to_v"] {
                    data.extend_from_slice(
                        &weights.tensor(&format!("{prefix}.{p}.{suffix}"))?.data,
                    );
                }
                let mut shape = t.shape.clone();
                match shape.first_mut() {
                    Some(rows) => *rows *= 3,
                    None => {
                        return Err(Error::Weights(format!(
                            "{}: `{name}` is a scalar, expected a projection",
                            weights.source()
                        )))
                    }
                }
                out.push((format!("{prefix}.to_qkv.{suffix}"), shape, data));
            }
            Some(_) => {}
            None => out.push((name.to_string(), t.shape.clone(), t.data.clone())),
        }
    }
    Ok(out)
}

/// Master tensors → diffusers weights (`to_qkv` split back into q/k/v).
fn from_master(source: &str, master: Vec<Named>) -> Result<Weights> {
    let mut w = Weights::new(source);
    for (name, shape, data) in master {
        if let Some(prefix) = name
            .strip_suffix(".to_qkv.weight")
            .or_else(|| name.strip_suffix(".to_qkv.bias"))
        {
            let suffix = if name.ends_with("weight") {
                "weight"
            } else {
                "bias"
            };
            let rows = shape.first().copied().unwrap_or(0);
            if rows == 0 || !rows.is_multiple_of(3) || !data.len().is_multiple_of(3) {
                return Err(Error::Weights(format!(
                    "{source}: `{name}` has shape {shape:?}; a stacked q/k/v tensor needs a \
                     first dimension that is a positive multiple of 3"
                )));
            }
            let mut part_shape = shape.clone();
            part_shape[0] = rows / 3;
            let len = data.len() / 3;
            for (i, p) in ["to_q", "to_k", "to_v"].iter().enumerate() {
                w.insert(
                    format!("{prefix}.{p}.{suffix}"),
                    part_shape.clone(),
                    data[i * len..(i + 1) * len].to_vec(),
                )?;
            }
        } else {
            w.insert(name, shape, data)?;
        }
    }
    Ok(w)
}

/// The master tensors (name, shape) a trainer of `config` holds, in name order: diffusers'
/// parameters with each attention block's q/k/v stacked into `to_qkv` (`[3C, C]`, `[3C]`).
pub fn master_params(config: &UNetConfig) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = crate::model::weights::expected_params(config)
        .into_iter()
        .filter_map(|(name, mut shape)| match qkv_parts(&name) {
            Some((prefix, suffix)) if name.contains(".to_q.") => {
                shape[0] *= 3;
                Some((format!("{prefix}.to_qkv.{suffix}"), shape))
            }
            Some(_) => None,
            None => Some((name, shape)),
        })
        .collect();
    out.sort();
    out
}

/// Whether the forward pass applies this master tensor as a convolution (and so needs a
/// packed copy).
fn is_conv(name: &str, shape: &[usize]) -> bool {
    shape.len() == 4 || name.ends_with(".to_out.0.weight") || name.ends_with(".to_qkv.weight")
}

impl Trainer {
    /// Uploads `weights` (initial or resumed) and records the training step for
    /// `options.batch` images of the config's sample size.
    pub fn new(
        gpu: &Gpu,
        config: UNetConfig,
        scheduler: SchedulerConfig,
        weights: &Weights,
        options: TrainOptions,
    ) -> Result<Self> {
        config.validate()?;
        if options.label_dropout > 0.0 && config.ddpm_null_class.is_none() {
            return Err(Error::Config {
                key: "label_dropout".into(),
                value: options.label_dropout.to_string(),
                reason: "needs a class-conditional model with a ddpm_null_class to drop labels to"
                    .into(),
            });
        }
        weights.validate(&config)?;
        options.validate()?;
        let (h, w) = config.sample_hw().ok_or_else(|| Error::Config {
            key: "sample_size".into(),
            value: "null".into(),
            reason: "training needs the sample size".into(),
        })?;
        let mut master = HashMap::new();
        let mut packed = HashMap::new();
        let mut names = Vec::new();
        let mut repack = Vec::new();
        for (name, shape, data) in to_master(weights)? {
            let t = Tensor::from_slice(gpu, &shape, &data, &name)?;
            if is_conv(&name, &shape) {
                let c = crate::model::cpu_unet::conv_weight_shape(&shape);
                let p = ops::conv2d::upload_weight(gpu, &data, c, &name)?;
                repack.push(ops::conv_pack::pack(gpu, &t, &p)?);
                packed.insert(name.clone(), p);
            }
            master.insert(name.clone(), t);
            names.push(name);
        }
        names.sort();
        let params = Params { master, packed };

        let shape = [options.batch, config.in_channels, h, w];
        let x0 = Tensor::zeros(gpu, &shape, "x0")?;
        let noise = Tensor::zeros(gpu, &shape, "noise")?;
        let xt = Tensor::zeros(gpu, &shape, "x_t")?;
        let t = Tensor::zeros(gpu, &[options.batch], "t")?;
        let labels = match config.num_class_embeds {
            Some(_) => Some(Tensor::zeros(gpu, &[options.batch], "class labels")?),
            None => None,
        };
        let schedule = scheduler.schedule()?;
        let ac = schedule.alphas_cumprod();
        let alphas_cumprod = Tensor::from_slice(gpu, &[ac.len()], &ac, "alphas_cumprod")?;
        let loss = Tensor::zeros(gpu, &[1], "loss")?;
        let d_eps = Tensor::zeros(gpu, &shape, "dL/deps")?;

        // Forward on the tape, L_simple, backward.
        let mut tape = Tape::new(gpu, &params);
        let (xn, tn) = (tape.input(&xt), tape.input(&t));
        let ln = labels.as_ref().map(|l| tape.input(l));
        let eps = unet::forward(&mut tape, &config, &xn, &tn, ln.as_ref())?;
        let mut graph = std::mem::take(&mut tape.forward);
        graph.extend(ops::loss::mse_loss(
            gpu,
            &eps.tensor,
            &noise,
            &d_eps,
            &loss,
        )?);
        let (backward, grads) = tape.backward(&eps, &d_eps)?;
        graph.extend(backward);
        let grad_list: Vec<&Tensor> = names.iter().map(|n| &grads[n]).collect();
        let norm_sq = Tensor::zeros(
            gpu,
            &[ops::optim::grad_norm_partials_len(&grad_list)],
            "grad norm",
        )?;
        graph.extend(ops::optim::grad_norm_sq(gpu, &grad_list, &norm_sq)?);

        let zeros_like = |name: &String, what: &str| -> Result<(String, Tensor)> {
            Ok((
                name.clone(),
                Tensor::zeros(gpu, &params.master[name].shape, what)?,
            ))
        };
        let adam_m = names
            .iter()
            .map(|n| zeros_like(n, "adam m"))
            .collect::<Result<_>>()?;
        let adam_v = names
            .iter()
            .map(|n| zeros_like(n, "adam v"))
            .collect::<Result<_>>()?;
        let ema = names
            .iter()
            .map(|n| {
                let t = &params.master[n];
                let e = Tensor::zeros(gpu, &t.shape, "ema")?;
                Ok((n.clone(), e))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        let trainer = Trainer {
            config,
            scheduler,
            options,
            step: 0,
            params,
            names,
            grads,
            adam_m,
            adam_v,
            ema,
            x0,
            t,
            labels,
            noise,
            xt,
            alphas_cumprod,
            loss,
            norm_sq,
            graph,
            repack,
        };
        trainer.copy_params_to_ema(gpu);
        Ok(trainer)
    }

    /// The largest batch ≤ `options.batch` whose training step fits the device's limits
    /// (`None`: not even batch 1), found by bisection over trial trainers built with
    /// heuristic kernel choices (no timing).
    pub fn largest_fitting_batch(
        gpu: &Gpu,
        config: &UNetConfig,
        scheduler: &SchedulerConfig,
        weights: &Weights,
        options: TrainOptions,
    ) -> Result<Option<usize>> {
        let policy = gpu.kernel_policy();
        gpu.set_kernel_policy(crate::gpu::KernelPolicy::Heuristic);
        let fits = |batch: usize| -> Result<bool> {
            let o = TrainOptions { batch, ..options };
            match Trainer::new(gpu, config.clone(), scheduler.clone(), weights, o) {
                Ok(_) => Ok(true),
                Err(Error::Limit { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        };
        let found = (|| {
            let (mut lo, mut hi) = (0, options.batch + 1); // fits(lo) (0 trivially), !fits(hi)
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if fits(mid)? {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            Ok((lo > 0).then_some(lo))
        })();
        gpu.set_kernel_policy(policy);
        found
    }

    fn copy_params_to_ema(&self, gpu: &Gpu) {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for n in &self.names {
            let p = &self.params.master[n];
            enc.copy_buffer_to_buffer(&p.buffer, 0, &self.ema[n].buffer, 0, p.bytes());
        }
        gpu.queue.submit([enc.finish()]);
    }

    /// The recorded forward, loss, backward and gradient-norm dispatches (for profiling).
    pub fn graph(&self) -> &[Dispatch] {
        &self.graph
    }

    /// The `[N, C, H, W]` shape of a training batch.
    pub fn batch_shape(&self) -> &[usize] {
        &self.x0.shape
    }

    /// The timesteps of step `step` (uniform over 0..T, from the seed).
    pub fn timesteps(&self, step: u64) -> Vec<f32> {
        let t_max = self.scheduler.num_train_timesteps as u32;
        (0..self.options.batch as u32)
            .map(|i| {
                let r = crate::cpu::sampling::rng_u32x4(
                    self.options.seed ^ TIMESTEP_SEED,
                    step as u32,
                    i as u64,
                );
                (((r[0] as u64) << 32 | r[1] as u64) % t_max as u64) as f32
            })
            .collect()
    }

    /// The EMA decay of step `step` (0-based; what [`Trainer::step`] applies), warmed up as
    /// diffusers' `EMAModel` does: min(decay, (1 + step) / (10 + step)), so the average soon
    /// forgets the random start. It depends on the step alone, so a resumed run matches.
    pub fn ema_decay(&self, step: u64) -> f32 {
        let warm = step.saturating_add(1) as f32 / step.saturating_add(10) as f32;
        self.options.ema_decay.min(warm)
    }

    /// The learning rate of step `step` (0-based): linear warm-up, then
    /// [`TrainOptions::lr_decay`].
    pub fn lr(&self, step: u64) -> f32 {
        let w = self.options.warmup as f32;
        let warm = if w == 0.0 {
            1.0
        } else {
            ((step + 1) as f32 / w).min(1.0)
        };
        self.options.lr * warm * self.options.lr_decay.factor(step)
    }

    /// The class labels step `step` trains on: the samples' `classes`, each replaced by the null
    /// class with probability `label_dropout` (from the seed, so a resumed run drops the same).
    pub fn step_labels(&self, step: u64, classes: &[u8]) -> Result<Vec<f32>> {
        let model_classes = self.config.classes();
        if classes.len() != self.options.batch {
            return Err(Error::setting(
                "class labels",
                format!(
                    "{} class labels for a batch of {}",
                    classes.len(),
                    self.options.batch
                ),
            ));
        }
        if let Some(bad) = classes
            .iter()
            .find(|&&c| !model_classes.contains(&(c as usize)))
        {
            return Err(Error::setting(
                "class labels",
                format!(
                    "data label {bad} is not one of the model's {} classes",
                    model_classes.len()
                ),
            ));
        }
        let p = self.options.label_dropout as f64;
        Ok(classes
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let r = crate::cpu::sampling::rng_u32x4(
                    self.options.seed ^ LABEL_DROPOUT_SEED,
                    step as u32,
                    i as u64,
                );
                let u = r[0] as f64 / 4_294_967_296.0;
                match self.config.ddpm_null_class {
                    Some(null) if u < p => null as f32,
                    _ => c as f32,
                }
            })
            .collect())
    }

    /// [`Trainer::step`] for a class-conditional model: `classes` are the samples' data labels
    /// (see [`Trainer::step_labels`]).
    pub fn step_with_labels(&mut self, gpu: &Gpu, x0: &[f32], classes: &[u8]) -> Result<()> {
        crate::model::check_conditioning(&self.config, true)?;
        let labels = self.step_labels(self.step, classes)?;
        if let Some(t) = &self.labels {
            t.write(gpu, &labels)?;
        }
        self.submit_step(gpu, x0)
    }

    /// Records and submits one training step on `x0` (`[N, C, H, W]` flattened, in [−1, 1]).
    /// Does not wait; read the loss with [`Trainer::read_loss`].
    pub fn step(&mut self, gpu: &Gpu, x0: &[f32]) -> Result<()> {
        if let Some(n) = self.config.num_class_embeds {
            return Err(Error::setting(
                "class labels",
                format!(
                    "the model is class-conditional ({n} class embeddings): train with \
                     step_with_labels"
                ),
            ));
        }
        self.submit_step(gpu, x0)
    }

    fn submit_step(&mut self, gpu: &Gpu, x0: &[f32]) -> Result<()> {
        if self.step >= MAX_STEPS {
            return Err(Error::setting(
                "steps",
                format!("training stops at {MAX_STEPS} steps (AdamW counts steps in 32 bits)"),
            ));
        }
        self.x0.write(gpu, x0)?;
        self.t.write(gpu, &self.timesteps(self.step))?;
        let mut d = vec![self.q_sample(gpu, self.step)?];
        d.extend(self.graph.iter().cloned());
        let hp = AdamWParams {
            lr: self.lr(self.step) as f64,
            beta1: self.options.beta1 as f64,
            beta2: self.options.beta2 as f64,
            eps: self.options.adam_eps as f64,
            weight_decay: self.options.weight_decay as f64,
            step: (self.step + 1) as u32,
            max_grad_norm: self.options.max_grad_norm as f64,
        };
        for n in &self.names {
            d.push(ops::optim::adamw_step(
                gpu,
                &self.params.master[n],
                &self.grads[n],
                &self.adam_m[n],
                &self.adam_v[n],
                &self.norm_sq,
                &hp,
            )?);
        }
        for n in &self.names {
            d.push(ops::optim::ema_update(
                gpu,
                &self.ema[n],
                &self.params.master[n],
                self.ema_decay(self.step),
            )?);
        }
        d.extend(self.repack.iter().cloned());
        gpu.submit(&d);
        self.step += 1;
        Ok(())
    }

    /// The loss of the last step (waits for it). Errors if it is not finite.
    pub async fn read_loss(&self, gpu: &Gpu) -> Result<f32> {
        let loss = self.loss.read(gpu).await?[0];
        if !loss.is_finite() {
            return Err(Error::Diverged {
                step: self.step,
                loss,
            });
        }
        Ok(loss)
    }

    /// [`Trainer::read_loss`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_loss_blocking(&self, gpu: &Gpu) -> Result<f32> {
        pollster::block_on(self.read_loss(gpu))
    }

    async fn read_set(&self, gpu: &Gpu, set: &HashMap<String, Tensor>) -> Result<Vec<Named>> {
        let mut out = Vec::with_capacity(self.names.len());
        for n in &self.names {
            let t = &set[n];
            out.push((n.clone(), t.shape.clone(), t.read(gpu).await?));
        }
        Ok(out)
    }

    /// Runs only the forward pass, loss and backward of step `step` on `x0` (no update) and
    /// returns (loss, gradients in diffusers' naming, x_t, ε): what a gradient check needs
    /// (`classes`: the data labels of a class-conditional model).
    pub async fn gradients(
        &self,
        gpu: &Gpu,
        x0: &[f32],
        step: u64,
        classes: Option<&[u8]>,
    ) -> Result<(f32, Weights, Vec<f32>, Vec<f32>)> {
        if let (Some(t), Some(c)) = (&self.labels, classes) {
            t.write(gpu, &self.step_labels(step, c)?)?;
        }
        self.x0.write(gpu, x0)?;
        self.t.write(gpu, &self.timesteps(step))?;
        let mut d = vec![self.q_sample(gpu, step)?];
        d.extend(self.graph.iter().cloned());
        gpu.run(&d).await?;
        let loss = self.read_loss(gpu).await?;
        let grads = from_master("gradients", self.read_set(gpu, &self.grads).await?)?;
        Ok((
            loss,
            grads,
            self.xt.read(gpu).await?,
            self.noise.read(gpu).await?,
        ))
    }

    /// x_t = q_sample(x0, t) with the noise of step `step`.
    fn q_sample(&self, gpu: &Gpu, step: u64) -> Result<Dispatch> {
        ops::sampling::q_sample(
            gpu,
            &self.x0,
            &self.t,
            &self.alphas_cumprod,
            &self.noise,
            Some((
                self.options.seed,
                NOISE_STREAM_BASE.wrapping_add(step as u32),
            )),
            &self.xt,
        )
    }

    /// The current weights (`ema`: the EMA copy) in diffusers' naming.
    pub async fn weights(&self, gpu: &Gpu, ema: bool) -> Result<Weights> {
        let set = if ema { &self.ema } else { &self.params.master };
        from_master("trained", self.read_set(gpu, set).await?)
    }
}

/// Mixed into the seed for the per-step timesteps (CPU side; stream = step, index = sample).
const TIMESTEP_SEED: u64 = 0x7157_5EED_0000_0001;
/// Seed offset of the label dropout draws.
const LABEL_DROPOUT_SEED: u64 = 0x7157_5EED_0000_0002;
/// RNG streams of the per-step training noise start here (one stream per step).
const NOISE_STREAM_BASE: u32 = 0x4000_0000;
