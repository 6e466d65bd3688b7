//! The GPU U-Net: weights uploaded once ([`UNet`]), the forward pass recorded once per batch
//! size into a list of dispatches ([`UNetPlan`]) that sampling and training replay.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Deref;
use std::rc::Rc;

use super::cpu_unet::conv_weight_shape;
use super::record::{Recorded, Recorder};
use super::unet;
use super::{EpsModel, UNetConfig, Weights};
use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::model::weights::HostTensor;
use crate::ops;
use crate::options::Conv2dGeom;

/// How the GPU U-Net stores the weights that run through the conv kernel: every conv kernel,
/// each attention block's stacked q/k/v projection (`to_qkv`) and its output projection (the
/// bulk of a model's parameters). Everything else stays f32, and all arithmetic is f32. f16
/// needs a device that [`Gpu::reads_f16`] (every browser, most native drivers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GpuWeights {
    /// f16 where the weights file stored the tensor as f16 or bf16 (see
    /// [`Weights::stored_as_half`]), f16 holds every one of its values exactly (no precision
    /// lost) and the device reads f16; f32 otherwise.
    #[default]
    Auto,
    /// Every weight f32.
    F32,
    /// Every conv weight f16 (values rounded to the nearest half); an error on a device that
    /// cannot read f16.
    F16,
}

impl GpuWeights {
    /// The names [`GpuWeights::parse`] takes.
    pub const NAMES: [&'static str; 3] = ["auto", "f32", "f16"];

    /// `auto`, `f32` or `f16`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "auto" => Ok(GpuWeights::Auto),
            "f32" => Ok(GpuWeights::F32),
            "f16" => Ok(GpuWeights::F16),
            other => Err(Error::Setting {
                name: "gpu weights",
                reason: format!(
                    "GPU weight storage `{other}`: expected one of {}",
                    Self::NAMES.join(", ")
                ),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GpuWeights::Auto => "auto",
            GpuWeights::F32 => "f32",
            GpuWeights::F16 => "f16",
        }
    }

    /// The storage of a conv weight made of the tensors `parts` of `weights` (one, or the
    /// stacked q, k and v); `reads_f16`: whether the device can read f16 weights.
    fn storage(self, weights: &Weights, parts: &[(&str, &HostTensor)], reads_f16: bool) -> DType {
        let exact = |v: &f32| half::f16::from_f32(*v).to_f32() == *v;
        match self {
            GpuWeights::F32 => DType::F32,
            GpuWeights::F16 => DType::F16,
            GpuWeights::Auto if !reads_f16 => DType::F32,
            GpuWeights::Auto => {
                let half = parts
                    .iter()
                    .all(|(name, t)| weights.stored_as_half(name) && t.data.iter().all(exact));
                if half {
                    DType::F16
                } else {
                    DType::F32
                }
            }
        }
    }
}

/// What the GPU U-Net's parameters take in GPU memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightBytes {
    /// Bytes of all parameter tensors (conv weights packed: output channels padded to 4).
    pub total: u64,
    /// Bytes of those stored as f16.
    pub f16: u64,
    /// Conv weights (after stacking q/k/v) and how many of them are f16.
    pub conv_tensors: usize,
    pub f16_tensors: usize,
}

impl WeightBytes {
    /// E.g. `228.4 MB (113 of 113 conv weights f16)`.
    pub fn describe(&self) -> String {
        format!(
            "{:.1} MB ({} of {} conv weights f16)",
            self.total as f64 / 1e6,
            self.f16_tensors,
            self.conv_tensors
        )
    }
}

/// One parameter as the GPU U-Net holds it.
struct GpuParam<'a> {
    name: String,
    /// PyTorch layout (`[Cout, Cin, k, k]` for a conv weight).
    shape: Vec<usize>,
    data: Cow<'a, [f32]>,
    /// For a conv weight (packed for the conv kernel): its storage.
    conv: Option<DType>,
}

impl GpuParam<'_> {
    fn bytes(&self) -> u64 {
        match self.conv {
            Some(dtype) => {
                let s = &self.shape;
                dtype.bytes_of(s[0].div_ceil(4) * 4 * s[1..].iter().product::<usize>())
            }
            None => DType::F32.bytes_of(self.data.len()),
        }
    }
}

/// The parameters [`UNet::with_weights`] uploads: every tensor of `weights` (already validated)
/// but q/k/v, which are stacked per attention block into one `{prefix}.to_qkv` conv
/// (`[3C, C, 1, 1]`); conv weights (and the attention projections, which act as 1×1 convs) with
/// the storage `storage` gives them on a device that can (`reads_f16`) or cannot read f16.
fn gpu_params(
    weights: &Weights,
    storage: GpuWeights,
    reads_f16: bool,
) -> Result<Vec<GpuParam<'_>>> {
    let mut params = Vec::new();
    for (name, t) in weights.iter() {
        if is_qkv_part(name) {
            continue; // stacked, below
        }
        let conv = is_conv_weight(name, &t.shape);
        params.push(GpuParam {
            name: name.to_string(),
            shape: if conv {
                conv_weight_shape(&t.shape).to_vec()
            } else {
                t.shape.clone()
            },
            data: Cow::Borrowed(&t.data),
            conv: conv.then(|| storage.storage(weights, &[(name, t)], reads_f16)),
        });
    }
    let prefixes: Vec<&str> = weights
        .iter()
        .filter_map(|(name, _)| name.strip_suffix(".to_q.weight"))
        .collect();
    for prefix in prefixes {
        let (mut w, mut b, mut parts) = (Vec::new(), Vec::new(), Vec::new());
        let names: Vec<String> = ["to_q", "to_k", "to_v"]
            .iter()
            .map(|p| format!("{prefix}.{p}.weight"))
            .collect();
        for (p, wname) in ["to_q", "to_k", "to_v"].iter().zip(&names) {
            let wt = weights.tensor(wname)?;
            w.extend_from_slice(&wt.data);
            b.extend_from_slice(&weights.tensor(&format!("{prefix}.{p}.bias"))?.data);
            parts.push((wname.as_str(), wt));
        }
        let name = format!("{prefix}.to_qkv");
        let c = b.len() / 3;
        params.push(GpuParam {
            name: format!("{name}.weight"),
            shape: vec![3 * c, c, 1, 1],
            data: Cow::Owned(w),
            conv: Some(storage.storage(weights, &parts, reads_f16)),
        });
        params.push(GpuParam {
            name: format!("{name}.bias"),
            shape: vec![3 * c],
            data: Cow::Owned(b),
            conv: None,
        });
    }
    Ok(params)
}

fn weight_bytes(params: &[GpuParam]) -> WeightBytes {
    let mut b = WeightBytes::default();
    for p in params {
        let bytes = p.bytes();
        b.total += bytes;
        if let Some(dtype) = p.conv {
            b.conv_tensors += 1;
            if dtype == DType::F16 {
                b.f16_tensors += 1;
                b.f16 += bytes;
            }
        }
    }
    b
}

/// What [`UNet::with_weights`] would put on the GPU for `weights` with `storage` (no device
/// needed), on a device that reads f16 (see [`Gpu::reads_f16`]; every browser): validates the
/// weights against `config` like it.
pub fn gpu_weight_bytes(
    config: &UNetConfig,
    weights: &Weights,
    storage: GpuWeights,
) -> Result<WeightBytes> {
    config.validate()?;
    weights.validate(config)?;
    Ok(weight_bytes(&gpu_params(weights, storage, true)?))
}

/// A U-Net whose parameters live on the GPU.
pub struct UNet {
    pub config: UNetConfig,
    params: HashMap<String, Tensor>,
    weight_bytes: WeightBytes,
}

impl UNet {
    /// [`UNet::with_weights`] with [`GpuWeights::Auto`]: conv weights that came from f16 or
    /// bf16 stay f16 on the GPU, the rest is f32.
    pub fn new(gpu: &Gpu, config: UNetConfig, weights: &Weights) -> Result<Self> {
        Self::with_weights(gpu, config, weights, GpuWeights::Auto)
    }

    /// Validates `weights` against `config` and uploads them: conv weights (and the attention
    /// projections, which act as 1×1 convs) packed for the conv kernel and stored as `storage`
    /// says, each attention block's q, k, v projections stacked into one `{prefix}.to_qkv` conv
    /// (`[3C, C, 1, 1]`); everything else f32.
    pub fn with_weights(
        gpu: &Gpu,
        config: UNetConfig,
        weights: &Weights,
        storage: GpuWeights,
    ) -> Result<Self> {
        config.validate()?;
        weights.validate(&config)?;
        if storage == GpuWeights::F16 {
            ops::conv2d_operands::check_reads_f16(gpu, "GPU weight storage f16")?;
        }
        let list = gpu_params(weights, storage, gpu.reads_f16())?;
        let mut params = HashMap::new();
        let mut weight_bytes = weight_bytes(&list);
        weight_bytes.total = 0;
        for p in &list {
            let tensor = match p.conv {
                Some(dtype) => {
                    let s = [p.shape[0], p.shape[1], p.shape[2], p.shape[3]];
                    ops::conv2d::upload_weight_as(gpu, &p.data, s, dtype, &p.name)?
                }
                None => Tensor::from_slice(gpu, &p.shape, &p.data, &p.name)?,
            };
            weight_bytes.total += tensor.bytes();
            params.insert(p.name.clone(), tensor);
        }
        Ok(UNet {
            config,
            params,
            weight_bytes,
        })
    }

    /// GPU memory of the parameters, and how much of it is f16.
    pub fn weight_bytes(&self) -> WeightBytes {
        self.weight_bytes
    }

    /// Records the forward pass for a batch of `batch` images of the config's sample size.
    pub fn plan(&self, gpu: &Gpu, batch: usize) -> Result<UNetPlan> {
        self.plan_for(gpu, &self.sample_shape(batch)?)
    }

    /// `[batch, in_channels, H, W]` at the config's sample size.
    pub fn sample_shape(&self, batch: usize) -> Result<[usize; 4]> {
        let (h, w) = self.config.sample_hw().ok_or_else(|| Error::Config {
            key: "sample_size".into(),
            value: "null".into(),
            reason: "the sample size is needed to plan the forward pass".into(),
        })?;
        Ok([batch, self.config.in_channels, h, w])
    }

    /// [`UNet::plan_for`] the largest batch ≤ `x_shape[0]` that fits the device's limits,
    /// halving the batch while a buffer would exceed one.
    pub fn plan_fitting(&self, gpu: &Gpu, x_shape: &[usize]) -> Result<UNetPlan> {
        let mut shape = x_shape.to_vec();
        loop {
            match self.plan_for(gpu, &shape) {
                Err(Error::Limit { .. }) if shape.first().is_some_and(|&n| n > 1) => {
                    shape[0] /= 2;
                }
                r => return r,
            }
        }
    }

    /// ε̂ = UNet(x, t[, labels]) for a whole `[N, C, H, W]` input (`t`: N timesteps; `labels`:
    /// N classes for a class-conditional model), in batches as large as the device allows (the
    /// last one zero-padded). Returns ε̂ and the batch size used.
    pub async fn forward(
        &self,
        gpu: &Gpu,
        x_shape: &[usize],
        x: &[f32],
        t: &[f32],
        labels: Option<&[f32]>,
    ) -> Result<(Vec<f32>, usize)> {
        super::check_input(&self.config, x_shape, t.len())?;
        if let Some(l) = labels {
            super::check_labels(&self.config, l, x_shape[0])?;
        }
        let n = x_shape[0];
        if x.len() != x_shape.iter().product::<usize>() {
            return Err(Error::Shape {
                what: "forward input".into(),
                expected: x_shape.to_vec(),
                got: vec![x.len()],
            });
        }
        let plan = self.plan_fitting(gpu, x_shape)?;
        let batch = plan.x.shape[0];
        let (per_in, per_out) = (x.len() / n, plan.eps.numel() / batch);
        let mut eps = Vec::with_capacity(n * per_out);
        let (mut xb, mut tb) = (vec![0.0; batch * per_in], vec![0.0; batch]);
        let mut lb = vec![0.0; batch];
        for first in (0..n).step_by(batch) {
            let k = batch.min(n - first);
            xb[..k * per_in].copy_from_slice(&x[first * per_in..(first + k) * per_in]);
            xb[k * per_in..].fill(0.0);
            tb[..k].copy_from_slice(&t[first..first + k]);
            tb[k..].fill(0.0);
            let l = labels.map(|l| {
                lb[..k].copy_from_slice(&l[first..first + k]);
                lb[k..].fill(0.0);
                lb.as_slice()
            });
            let out = plan.run_with_labels(gpu, &xb, &tb, l).await?;
            eps.extend_from_slice(&out[..k * per_out]);
        }
        Ok((eps, batch))
    }

    /// Records the forward pass for inputs of shape `x_shape` (`[N, C, H, W]`).
    pub fn plan_for(&self, gpu: &Gpu, x_shape: &[usize]) -> Result<UNetPlan> {
        super::check_input(&self.config, x_shape, x_shape.first().copied().unwrap_or(0))?;
        let pool = Rc::new(RefCell::new(Pool::default()));
        let x = Tensor::zeros(gpu, x_shape, "x")?;
        let t = Tensor::zeros(gpu, &x_shape[..1], "t")?;
        let mut rec = PlanRecorder {
            gpu,
            params: &self.params,
            pool: pool.clone(),
            dispatches: Vec::new(),
            flops: Vec::new(),
            convs: Vec::new(),
        };
        let labels = match self.config.num_class_embeds {
            Some(_) => Some(Tensor::zeros(gpu, &x_shape[..1], "class labels")?),
            None => None,
        };
        let xh = Pooled::fixed(x.clone());
        let th = Pooled::fixed(t.clone());
        let lh = labels.clone().map(Pooled::fixed);
        let eps = unet::forward(&mut rec, &self.config, &xh, &th, lh.as_ref())?;
        let eps = eps.tensor.clone();
        let (dispatches, flops, convs) = (rec.dispatches, rec.flops, rec.convs);
        let (activation_bytes, activation_bytes_without_reuse) = {
            let pool = pool.borrow();
            (pool.total_bytes, pool.requested_bytes)
        };
        Ok(UNetPlan {
            config: self.config.clone(),
            x,
            t,
            labels,
            eps,
            dispatches,
            flops,
            convs,
            activation_bytes,
            activation_bytes_without_reuse,
        })
    }
}

/// A recorded forward pass for one input shape.
pub struct UNetPlan {
    config: UNetConfig,
    x: Tensor,
    t: Tensor,
    /// Class labels `[N]` (as f32) of a class-conditional model.
    labels: Option<Tensor>,
    eps: Tensor,
    dispatches: Vec<Dispatch>,
    /// Floating-point operations of each dispatch (multiply-adds count 2).
    pub flops: Vec<u64>,
    /// The shape of every conv in the pass, in order (for the kernel bench; `count` is 1).
    pub convs: Vec<ConvLayer>,
    /// Bytes of GPU memory held by intermediate activations (after buffer reuse).
    pub activation_bytes: u64,
    /// What the activations would take without buffer reuse.
    pub activation_bytes_without_reuse: u64,
}

impl UNetPlan {
    /// Runs the forward pass for `x` and timesteps `t` and reads ε̂ back.
    pub async fn run(&self, gpu: &Gpu, x: &[f32], t: &[f32]) -> Result<Vec<f32>> {
        self.run_with_labels(gpu, x, t, None).await
    }

    /// [`UNetPlan::run`] with class `labels` (one per sample), which a class-conditional model
    /// needs and any other refuses.
    pub async fn run_with_labels(
        &self,
        gpu: &Gpu,
        x: &[f32],
        t: &[f32],
        labels: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        self.set_labels(gpu, labels)?;
        self.x.write(gpu, x)?;
        self.t.write(gpu, t)?;
        gpu.run(&self.dispatches).await?;
        self.eps.read(gpu).await
    }
}

impl UNetPlan {
    /// Writes the class labels of the next runs (checked against the model's classes).
    pub fn set_labels(&self, gpu: &Gpu, labels: Option<&[f32]>) -> Result<()> {
        super::check_conditioning(&self.config, labels.is_some())?;
        match (&self.labels, labels) {
            (Some(t), Some(l)) => {
                super::check_labels(&self.config, l, t.shape[0])?;
                t.write(gpu, l)
            }
            _ => Ok(()),
        }
    }

    /// The class labels tensor `[N]` of a class-conditional model.
    pub fn labels(&self) -> Option<&Tensor> {
        self.labels.as_ref()
    }
}

impl EpsModel for UNetPlan {
    fn x(&self) -> &Tensor {
        &self.x
    }
    fn t(&self) -> &Tensor {
        &self.t
    }
    fn eps(&self) -> &Tensor {
        &self.eps
    }
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}

/// Weights the model applies as convolutions: 4-D conv kernels and the attention output
/// projection (a Linear over channels, i.e. a 1×1 conv).
fn is_conv_weight(name: &str, shape: &[usize]) -> bool {
    shape.len() == 4 || name.ends_with(".to_out.0.weight")
}

/// The separate q/k/v projections, which the GPU model only keeps stacked.
fn is_qkv_part(name: &str) -> bool {
    [".to_q.", ".to_k.", ".to_v."]
        .iter()
        .any(|p| name.contains(p))
}

/// Free activation buffers by size. The forward pass is recorded in execution order, so a
/// buffer released after its last reader was recorded can back a later tensor.
#[derive(Default)]
struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    /// Bytes of all buffers created.
    total_bytes: u64,
    /// Bytes of all allocations served (created or reused).
    requested_bytes: u64,
}

/// An activation tensor that returns its buffer to the pool when dropped.
struct Pooled {
    tensor: Tensor,
    pool: Option<Rc<RefCell<Pool>>>,
}

impl Pooled {
    fn fixed(tensor: Tensor) -> Self {
        Pooled { tensor, pool: None }
    }
}

impl Deref for Pooled {
    type Target = Tensor;
    fn deref(&self) -> &Tensor {
        &self.tensor
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            let buffer = self.tensor.buffer.clone();
            pool.borrow_mut()
                .free
                .entry(buffer.size())
                .or_default()
                .push(buffer);
        }
    }
}

/// Records the inference plan: activations from the pool, FLOPs kept per dispatch.
struct PlanRecorder<'a> {
    gpu: &'a Gpu,
    params: &'a HashMap<String, Tensor>,
    pool: Rc<RefCell<Pool>>,
    dispatches: Vec<Dispatch>,
    flops: Vec<u64>,
    convs: Vec<ConvLayer>,
}

impl Recorder for PlanRecorder<'_> {
    type T = Pooled;

    fn gpu(&self) -> &Gpu {
        self.gpu
    }

    fn tensor(x: &Pooled) -> &Tensor {
        &x.tensor
    }

    fn alloc(&mut self, shape: &[usize]) -> Result<Pooled> {
        let bytes = (shape.iter().product::<usize>() as u64 * 4).max(4);
        self.pool.borrow_mut().requested_bytes += bytes;
        let reused = self
            .pool
            .borrow_mut()
            .free
            .get_mut(&bytes)
            .and_then(Vec::pop);
        let tensor = match reused {
            Some(buffer) => Tensor {
                buffer,
                shape: shape.to_vec(),
                dtype: crate::gpu::DType::F32,
            },
            None => {
                self.pool.borrow_mut().total_bytes += bytes;
                Tensor::zeros(self.gpu, shape, "activation")?
            }
        };
        Ok(Pooled {
            tensor,
            pool: Some(self.pool.clone()),
        })
    }

    fn param(&self, name: &str) -> Result<Tensor> {
        self.params
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Weights(format!("missing tensor `{name}`")))
    }

    /// Conv weights are uploaded packed under their own names.
    fn conv_weight(&self, name: &str) -> Result<Tensor> {
        self.param(name)
    }

    fn record(&mut self, dispatch: Dispatch, flops: u64, op: Recorded<'_, Pooled>) {
        if let Recorded::Conv {
            x, k, geom, out, ..
        } = op
        {
            let (xs, os) = (&x.tensor.shape, &out.tensor.shape);
            self.convs.push(ConvLayer {
                x: [xs[0], xs[1], xs[2], xs[3]],
                cout: os[1],
                k,
                geom,
                count: 1,
            });
        }
        self.dispatches.push(dispatch);
        self.flops.push(flops);
    }
}

/// One distinct conv layer of a model: input shape, output channels, kernel size, geometry,
/// and how many layers of the model have it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvLayer {
    pub x: [usize; 4],
    pub cout: usize,
    pub k: usize,
    pub geom: Conv2dGeom,
    pub count: usize,
}

impl ConvLayer {
    /// FLOPs of one forward (2 per multiply-add, counting every tap of the virtual input, also
    /// for the Upsample2D path that does 4/9 of them); dx and dW do as many.
    pub fn flops(&self) -> u64 {
        let [n, cin, h, w] = self.x;
        let (ho, wo) = self.geom.out_hw(h, w, self.k);
        2 * (n * self.cout * ho * wo * cin * self.k * self.k) as u64
    }

    /// `N×Cin×H×W→Cout kK sS [up]`.
    pub fn describe(&self) -> String {
        let [n, cin, h, w] = self.x;
        format!(
            "{n}×{cin}×{h}×{w}→{} k{} s{}{}",
            self.cout,
            self.k,
            self.geom.stride,
            if self.geom.upsample { " up" } else { "" }
        )
    }

    /// The same layer at batch `n`.
    pub fn with_batch(mut self, n: usize) -> Self {
        self.x[0] = n;
        self
    }
}
