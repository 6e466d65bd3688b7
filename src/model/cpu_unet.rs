//! The CPU reference U-Net: [`super::unet::forward`] over the plain-Rust ops of [`crate::cpu`].
//! Slow and simple, it is the yardstick for the GPU U-Net.

use super::unet::{self, Backend, Conv};
use super::{UNetConfig, Weights};
use crate::cpu;
use crate::error::{Error, Result};
use crate::options::{GroupNormOptions, LinearOptions};

pub use crate::model::weights::HostTensor;

struct Cpu<'w> {
    weights: &'w Weights,
}

impl Cpu<'_> {
    fn param(&self, name: &str) -> Result<(&[usize], &[f32])> {
        self.weights
            .get(name)
            .map(|t| (t.shape.as_slice(), t.data.as_slice()))
            .ok_or_else(|| Error::Weights(format!("missing tensor `{name}`")))
    }
}

fn nchw(shape: &[usize]) -> [usize; 4] {
    [shape[0], shape[1], shape[2], shape[3]]
}

/// A conv weight's shape; Linear weights `[out, in]` (attention projections) act as 1×1 convs.
pub(crate) fn conv_weight_shape(shape: &[usize]) -> [usize; 4] {
    match *shape {
        [o, i] => [o, i, 1, 1],
        _ => nchw(shape),
    }
}

impl Backend for Cpu<'_> {
    type T = HostTensor;

    fn add_class_embedding(
        &mut self,
        emb: &HostTensor,
        labels: &HostTensor,
        prefix: &str,
    ) -> Result<HostTensor> {
        let (_, table) = self.param(&format!("{prefix}.weight"))?;
        Ok(HostTensor {
            shape: emb.shape.clone(),
            data: cpu::embedding::add_class_embedding(&emb.data, table, &labels.data, emb.shape[1]),
        })
    }

    fn center_input(&mut self, x: &HostTensor) -> Result<HostTensor> {
        Ok(HostTensor {
            shape: x.shape.clone(),
            data: cpu::axpby(2.0, &x.data, 0.0, &x.data, -1.0),
        })
    }

    fn shape(&self, x: &HostTensor) -> Vec<usize> {
        x.shape.clone()
    }

    fn timestep_embedding(
        &mut self,
        t: &HostTensor,
        dim: usize,
        flip: bool,
        shift: f32,
    ) -> Result<HostTensor> {
        Ok(HostTensor {
            shape: vec![t.data.len(), dim],
            data: cpu::timestep::timestep_embedding(&t.data, dim, flip, shift),
        })
    }

    fn linear(
        &mut self,
        x: &HostTensor,
        prefix: &str,
        out_features: usize,
        silu_in: bool,
        silu_out: bool,
    ) -> Result<HostTensor> {
        let (ws, w) = self.param(&format!("{prefix}.weight"))?;
        let (_, bias) = self.param(&format!("{prefix}.bias"))?;
        let (n, in_f, out_f) = (x.shape[0], x.shape[1], ws[0]);
        super::check_declared(prefix, "output features", out_features, out_f)?;
        let inputs = cpu::linear::LinearInputs {
            x: &x.data,
            n,
            in_f,
            w,
            out_f,
            b: bias,
        };
        Ok(HostTensor {
            shape: vec![n, out_f],
            data: cpu::linear::linear(inputs, LinearOptions { silu_in, silu_out }),
        })
    }

    fn conv(
        &mut self,
        x: &HostTensor,
        prefix: &str,
        conv: Conv,
        temb: Option<&HostTensor>,
        residual: Option<&HostTensor>,
        out_scale: f32,
    ) -> Result<HostTensor> {
        let (ws, w) = self.param(&format!("{prefix}.weight"))?;
        let (_, bias) = self.param(&format!("{prefix}.bias"))?;
        let [cout, _, k, _] = conv_weight_shape(ws);
        super::check_declared(prefix, "output channels", conv.out_channels, cout)?;
        super::check_declared(prefix, "kernel size", conv.kernel, k)?;
        let geom = conv.geom;
        let inputs = cpu::conv2d::Conv2dInputs {
            x: &x.data,
            x_shape: nchw(&x.shape),
            w,
            w_shape: conv_weight_shape(ws),
            bias,
        };
        let epi = cpu::conv2d::Epilogue {
            temb: temb.map(|t| t.data.as_slice()),
            residual: residual.map(|r| r.data.as_slice()),
            out_scale,
        };
        let (data, shape) = cpu::conv2d::conv2d(inputs, geom, &epi)?;
        Ok(HostTensor {
            shape: shape.to_vec(),
            data,
        })
    }

    fn group_norm(
        &mut self,
        x: &HostTensor,
        prefix: &str,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<HostTensor> {
        let (_, gamma) = self.param(&format!("{prefix}.weight"))?;
        let (_, beta) = self.param(&format!("{prefix}.bias"))?;
        let inputs = cpu::group_norm::GroupNormInputs {
            x: &x.data,
            n: x.shape[0],
            c: x.shape[1],
            spatial: x.shape[2..].iter().product(),
            gamma,
            beta,
        };
        Ok(HostTensor {
            shape: x.shape.clone(),
            data: cpu::group_norm::group_norm(inputs, GroupNormOptions { groups, eps, silu }),
        })
    }

    fn attention(
        &mut self,
        x: &HostTensor,
        prefix: &str,
        heads: usize,
        head_dim: usize,
    ) -> Result<HostTensor> {
        let [n, _, h, w] = nchw(&x.shape);
        let c = heads * head_dim;
        // q, k, v = 1×1 projections, stacked channel-wise into [N, 3C, H·W].
        let mut qkv = Vec::with_capacity(3 * x.data.len());
        let parts: Vec<HostTensor> = ["to_q", "to_k", "to_v"]
            .iter()
            .map(|p| {
                let projection = Conv::projection(c);
                self.conv(x, &format!("{prefix}.{p}"), projection, None, None, 1.0)
            })
            .collect::<Result<_>>()?;
        for b in 0..n {
            for p in &parts {
                qkv.extend_from_slice(&p.data[b * c * h * w..(b + 1) * c * h * w]);
            }
        }
        Ok(HostTensor {
            shape: vec![n, c, h, w],
            data: cpu::attention::attention(&qkv, n, c, h * w, heads),
        })
    }

    fn concat(&mut self, a: &HostTensor, b: &HostTensor) -> Result<HostTensor> {
        let [n, ca, h, w] = nchw(&a.shape);
        let cb = b.shape[1];
        Ok(HostTensor {
            shape: vec![n, ca + cb, h, w],
            data: cpu::concat::concat_channels(&a.data, &b.data, n, ca, cb, h * w),
        })
    }
}

/// ε̂ for `x` `[N, C, H, W]` at timesteps `t` (one per sample), on the CPU. Validates the
/// config, the weights and the input first.
pub fn forward(
    cfg: &UNetConfig,
    weights: &Weights,
    x: &HostTensor,
    t: &[f32],
) -> Result<HostTensor> {
    forward_with_labels(cfg, weights, x, t, None)
}

/// [`forward`] with class `labels` (one per sample) for a class-conditional model.
pub fn forward_with_labels(
    cfg: &UNetConfig,
    weights: &Weights,
    x: &HostTensor,
    t: &[f32],
    labels: Option<&[f32]>,
) -> Result<HostTensor> {
    cfg.validate()?;
    weights.validate(cfg)?;
    super::check_input(cfg, &x.shape, t.len())?;
    let n: Option<usize> = x.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(x.data.len()) {
        return Err(Error::operand(
            "U-Net",
            "x",
            format!(
                "shape {:?} needs that many values, got {}",
                x.shape,
                x.data.len()
            ),
        ));
    }
    let t = HostTensor {
        shape: vec![t.len()],
        data: t.to_vec(),
    };
    let labels = labels
        .map(|l| {
            super::check_labels(cfg, l, x.shape[0])?;
            Ok::<_, Error>(HostTensor {
                shape: vec![l.len()],
                data: l.to_vec(),
            })
        })
        .transpose()?;
    unet::forward(&mut Cpu { weights }, cfg, x, &t, labels.as_ref())
}
