//! The GPU U-Net: weights uploaded once ([`UNet`]), the forward pass recorded once per batch
//! size into a list of dispatches ([`UNetPlan`]) that sampling and training replay.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Deref;
use std::rc::Rc;

use super::cpu_unet::conv_weight_shape;
use super::unet::{self, Backend};
use super::{EpsModel, UNetConfig, Weights};
use crate::cpu::conv2d::Conv2dGeom;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::ops;

/// A U-Net whose parameters live on the GPU.
pub struct UNet {
    pub config: UNetConfig,
    params: HashMap<String, Tensor>,
}

impl UNet {
    /// Validates `weights` against `config` and uploads them: conv weights (and the attention
    /// projections, which act as 1×1 convs) packed for the conv kernel, each attention block's
    /// q, k, v projections stacked into one `{prefix}.to_qkv` conv (`[3C, C, 1, 1]`).
    pub fn new(gpu: &Gpu, config: UNetConfig, weights: &Weights) -> Result<Self> {
        config.validate()?;
        weights.validate(&config)?;
        let mut params = HashMap::new();
        for (name, t) in weights.iter() {
            let tensor = if is_conv_weight(name, &t.shape) {
                ops::conv2d::upload_weight(gpu, &t.data, conv_weight_shape(&t.shape), name)?
            } else if is_qkv_part(name) {
                continue; // uploaded stacked, below
            } else {
                Tensor::from_slice(gpu, &t.shape, &t.data, name)?
            };
            params.insert(name.to_string(), tensor);
        }
        let prefixes: Vec<&str> = weights
            .iter()
            .filter_map(|(name, _)| name.strip_suffix(".to_q.weight"))
            .collect();
        for prefix in prefixes {
            let (mut w, mut b) = (Vec::new(), Vec::new());
            for p in ["to_q", "to_k", "to_v"] {
                w.extend_from_slice(&weights.tensor(&format!("{prefix}.{p}.weight"))?.data);
                b.extend_from_slice(&weights.tensor(&format!("{prefix}.{p}.bias"))?.data);
            }
            let name = format!("{prefix}.to_qkv");
            let c = b.len() / 3;
            let wt = ops::conv2d::upload_weight(gpu, &w, [3 * c, c, 1, 1], &name)?;
            params.insert(format!("{name}.weight"), wt);
            params.insert(
                format!("{name}.bias"),
                Tensor::from_slice(gpu, &[3 * c], &b, &name)?,
            );
        }
        Ok(UNet { config, params })
    }

    /// Records the forward pass for a batch of `batch` images of the config's sample size.
    pub fn plan(&self, gpu: &Gpu, batch: usize) -> Result<UNetPlan> {
        let (h, w) = self.config.sample_hw().ok_or_else(|| Error::Config {
            key: "sample_size".into(),
            value: "null".into(),
            reason: "the sample size is needed to plan the forward pass".into(),
        })?;
        self.plan_for(gpu, &[batch, self.config.in_channels, h, w])
    }

    /// Records the forward pass for inputs of shape `x_shape` (`[N, C, H, W]`).
    pub fn plan_for(&self, gpu: &Gpu, x_shape: &[usize]) -> Result<UNetPlan> {
        super::check_input(&self.config, x_shape, x_shape.first().copied().unwrap_or(0))?;
        let pool = Rc::new(RefCell::new(Pool::default()));
        let x = Tensor::zeros(gpu, x_shape, "x")?;
        let t = Tensor::zeros(gpu, &x_shape[..1], "t")?;
        let mut rec = Recorder {
            gpu,
            params: &self.params,
            pool: pool.clone(),
            dispatches: Vec::new(),
            flops: Vec::new(),
        };
        let xh = Pooled::fixed(x.clone());
        let th = Pooled::fixed(t.clone());
        let eps = unet::forward(&mut rec, &self.config, &xh, &th)?;
        let eps = eps.tensor.clone();
        let (dispatches, flops) = (rec.dispatches, rec.flops);
        let (activation_bytes, activation_bytes_without_reuse) = {
            let pool = pool.borrow();
            (pool.total_bytes, pool.requested_bytes)
        };
        Ok(UNetPlan {
            x,
            t,
            eps,
            dispatches,
            flops,
            activation_bytes,
            activation_bytes_without_reuse,
        })
    }
}

/// A recorded forward pass for one input shape.
pub struct UNetPlan {
    x: Tensor,
    t: Tensor,
    eps: Tensor,
    dispatches: Vec<Dispatch>,
    /// Floating-point operations of each dispatch (multiply-adds count 2).
    pub flops: Vec<u64>,
    /// Bytes of GPU memory held by intermediate activations (after buffer reuse).
    pub activation_bytes: u64,
    /// What the activations would take without buffer reuse.
    pub activation_bytes_without_reuse: u64,
}

impl UNetPlan {
    /// Runs the forward pass for `x` and timesteps `t` and reads ε̂ back.
    pub async fn run(&self, gpu: &Gpu, x: &[f32], t: &[f32]) -> Result<Vec<f32>> {
        self.x.write(gpu, x)?;
        self.t.write(gpu, t)?;
        gpu.run(&self.dispatches).await?;
        self.eps.read(gpu).await
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

struct Recorder<'a> {
    gpu: &'a Gpu,
    params: &'a HashMap<String, Tensor>,
    pool: Rc<RefCell<Pool>>,
    dispatches: Vec<Dispatch>,
    flops: Vec<u64>,
}

impl<'a> Recorder<'a> {
    fn param(&self, name: &str) -> Result<&'a Tensor> {
        let params: &'a HashMap<String, Tensor> = self.params;
        params
            .get(name)
            .ok_or_else(|| Error::Weights(format!("missing tensor `{name}`")))
    }

    fn push(&mut self, d: Dispatch, flops: usize) {
        self.dispatches.push(d);
        self.flops.push(flops as u64);
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
}

impl Backend for Recorder<'_> {
    type T = Pooled;

    fn shape(&self, x: &Pooled) -> Vec<usize> {
        x.shape.clone()
    }

    fn timestep_embedding(
        &mut self,
        t: &Pooled,
        dim: usize,
        flip: bool,
        shift: f32,
    ) -> Result<Pooled> {
        let out = self.alloc(&[t.shape[0], dim])?;
        let d = ops::timestep::timestep_embedding(self.gpu, t, dim, flip, shift, &out)?;
        self.push(d, out.numel() * 4);
        Ok(out)
    }

    fn linear(
        &mut self,
        x: &Pooled,
        prefix: &str,
        silu_in: bool,
        silu_out: bool,
    ) -> Result<Pooled> {
        let w = self.param(&format!("{prefix}.weight"))?;
        let b = self.param(&format!("{prefix}.bias"))?;
        let out = self.alloc(&[x.shape[0], w.shape[0]])?;
        let d = ops::linear::linear(self.gpu, x, w, b, silu_in, silu_out, &out)?;
        self.push(d, 2 * out.numel() * x.shape[1]);
        Ok(out)
    }

    fn conv(
        &mut self,
        x: &Pooled,
        prefix: &str,
        geom: Conv2dGeom,
        temb: Option<&Pooled>,
        residual: Option<&Pooled>,
        out_scale: f32,
    ) -> Result<Pooled> {
        // Packed weight [ceil(Cout/4), Cin, k, k, 4]; Cout from the bias.
        let w = self.param(&format!("{prefix}.weight"))?;
        let b = self.param(&format!("{prefix}.bias"))?;
        let k = w.shape[2];
        let (ho, wo) = geom.out_hw(x.shape[2], x.shape[3], k);
        let out = self.alloc(&[x.shape[0], b.shape[0], ho, wo])?;
        let epi = ops::conv2d::Epilogue {
            temb: temb.map(|t| &t.tensor),
            residual: residual.map(|r| &r.tensor),
            out_scale,
        };
        let d = ops::conv2d::conv2d(self.gpu, x, w, b, geom, &epi, &out)?;
        self.push(d, 2 * out.numel() * x.shape[1] * k * k);
        Ok(out)
    }

    fn group_norm(
        &mut self,
        x: &Pooled,
        prefix: &str,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<Pooled> {
        let gamma = self.param(&format!("{prefix}.weight"))?;
        let beta = self.param(&format!("{prefix}.bias"))?;
        let out = self.alloc(&x.shape)?;
        let d = ops::group_norm::group_norm(self.gpu, x, gamma, beta, groups, eps, silu, &out)?;
        self.push(d, 8 * out.numel());
        Ok(out)
    }

    fn attention(&mut self, x: &Pooled, prefix: &str, heads: usize) -> Result<Pooled> {
        let qkv = self.conv(
            x,
            &format!("{prefix}.to_qkv"),
            Conv2dGeom::same(1),
            None,
            None,
            1.0,
        )?;
        let out = self.alloc(&x.shape)?;
        let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
        let qkv_view = Tensor {
            buffer: qkv.buffer.clone(),
            shape: vec![n, 3 * c, h * w],
        };
        let out_view = Tensor {
            buffer: out.buffer.clone(),
            shape: vec![n, c, h * w],
        };
        let d = ops::attention::attention(self.gpu, &qkv_view, heads, &out_view)?;
        self.push(d, 4 * n * c * h * w * h * w);
        Ok(out)
    }

    fn concat(&mut self, a: &Pooled, b: &Pooled) -> Result<Pooled> {
        let mut shape = a.shape.clone();
        shape[1] += b.shape[1];
        let out = self.alloc(&shape)?;
        let d = ops::concat::concat_channels(self.gpu, a, b, &out)?;
        self.push(d, 0);
        Ok(out)
    }

    fn has_param(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }
}
