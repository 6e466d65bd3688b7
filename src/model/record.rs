//! The U-Net's forward ops as GPU dispatches, written once for every recorder of the graph: the
//! inference plan ([`super::gpu_unet`], pooled activation buffers, FLOP counts) and the training
//! tape (`crate::train::tape`, every activation kept for the backward pass). A recorder says
//! where tensors live and what it keeps of each op ([`Recorder`]); any recorder is a
//! [`Backend`] of [`super::unet::forward`].

use super::unet::{Backend, Conv};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::ops;
use crate::options::{Conv2dGeom, GroupNormOptions, LinearOptions};

/// One recorded forward op: its inputs and output as the recorder's handles, plus what its
/// backward needs (parameter prefix, flags).
pub enum Recorded<'r, T> {
    TimestepEmbedding {
        out: &'r T,
    },
    Linear {
        x: &'r T,
        prefix: &'r str,
        opts: LinearOptions,
        out: &'r T,
    },
    Conv {
        x: &'r T,
        prefix: &'r str,
        /// Kernel size.
        k: usize,
        geom: Conv2dGeom,
        temb: Option<&'r T>,
        residual: Option<&'r T>,
        out_scale: f32,
        out: &'r T,
    },
    GroupNorm {
        x: &'r T,
        prefix: &'r str,
        opts: GroupNormOptions,
        out: &'r T,
    },
    /// Attention over `qkv` (the stacked q/k/v projection, itself a recorded conv).
    Attention {
        qkv: &'r T,
        heads: usize,
        out: &'r T,
    },
    Concat {
        a: &'r T,
        b: &'r T,
        out: &'r T,
    },
    /// 2x − 1 of the network input (no parameters; no gradient flows into the input).
    CenterInput {
        out: &'r T,
    },
    /// `emb` plus the `prefix` table's rows at `labels`.
    ClassEmbedding {
        emb: &'r T,
        labels: &'r T,
        prefix: &'r str,
        out: &'r T,
    },
}

/// Where a recorded graph keeps its tensors and parameters, and what it keeps of each op.
pub trait Recorder {
    /// An activation handle.
    type T;
    /// The device the dispatches are recorded for.
    fn gpu(&self) -> &Gpu;
    /// The tensor behind a handle.
    fn tensor(x: &Self::T) -> &Tensor;
    /// A fresh activation of `shape`.
    fn alloc(&mut self, shape: &[usize]) -> Result<Self::T>;
    /// A parameter in PyTorch layout (a shared handle to its buffer).
    fn param(&self, name: &str) -> Result<Tensor>;
    /// A conv weight packed for the conv kernels (see `ops::conv_pack::pack_weight`).
    fn conv_weight(&self, name: &str) -> Result<Tensor>;
    /// Keeps the dispatch of `op`; `flops` counts its floating-point operations (an FMA is 2).
    fn record(&mut self, dispatch: Dispatch, flops: u64, op: Recorded<'_, Self::T>);
}

/// A view of `t`'s buffer with another shape of the same size.
pub fn view(t: &Tensor, shape: &[usize]) -> Tensor {
    Tensor {
        buffer: t.buffer.clone(),
        shape: shape.to_vec(),
        dtype: t.dtype,
    }
}

impl<R: Recorder> Backend for R {
    type T = R::T;

    fn shape(&self, x: &R::T) -> Vec<usize> {
        R::tensor(x).shape.clone()
    }

    fn timestep_embedding(&mut self, t: &R::T, dim: usize, flip: bool, shift: f32) -> Result<R::T> {
        let t_in = R::tensor(t);
        let out = self.alloc(&[t_in.shape[0], dim])?;
        let o = R::tensor(&out);
        let d = ops::timestep::timestep_embedding(self.gpu(), t_in, dim, flip, shift, o)?;
        let flops = 4 * o.numel() as u64;
        self.record(d, flops, Recorded::TimestepEmbedding { out: &out });
        Ok(out)
    }

    fn linear(
        &mut self,
        x: &R::T,
        prefix: &str,
        out_features: usize,
        silu_in: bool,
        silu_out: bool,
    ) -> Result<R::T> {
        let w = self.param(&format!("{prefix}.weight"))?;
        let b = self.param(&format!("{prefix}.bias"))?;
        super::check_declared(prefix, "output features", out_features, w.shape[0])?;
        let xt = R::tensor(x);
        let out = self.alloc(&[xt.shape[0], w.shape[0]])?;
        let o = R::tensor(&out);
        let inputs = ops::linear::LinearInputs {
            x: xt,
            w: &w,
            b: &b,
        };
        let opts = LinearOptions { silu_in, silu_out };
        let d = ops::linear::linear(self.gpu(), inputs, opts, o)?;
        let flops = 2 * (o.numel() * xt.shape[1]) as u64;
        let op = Recorded::Linear {
            x,
            prefix,
            opts,
            out: &out,
        };
        self.record(d, flops, op);
        Ok(out)
    }

    fn conv(
        &mut self,
        x: &R::T,
        prefix: &str,
        conv: Conv,
        temb: Option<&R::T>,
        residual: Option<&R::T>,
        out_scale: f32,
    ) -> Result<R::T> {
        // Packed weight [ceil(Cout/4), Cin, k, k, 4]; Cout from the bias.
        let w = self.conv_weight(&format!("{prefix}.weight"))?;
        let b = self.param(&format!("{prefix}.bias"))?;
        let xt = R::tensor(x);
        let k = w.shape[2];
        super::check_declared(prefix, "output channels", conv.out_channels, b.shape[0])?;
        super::check_declared(prefix, "kernel size", conv.kernel, k)?;
        let geom = conv.geom;
        let (ho, wo) = geom.out_hw(xt.shape[2], xt.shape[3], k);
        let out = self.alloc(&[xt.shape[0], b.shape[0], ho, wo])?;
        let o = R::tensor(&out);
        let epi = ops::conv2d::Epilogue {
            temb: temb.map(R::tensor),
            residual: residual.map(R::tensor),
            out_scale,
            accumulate: false,
        };
        let inputs = ops::conv2d::Conv2dInputs {
            x: xt,
            w: &w,
            bias: &b,
        };
        let d = ops::conv2d::conv2d(self.gpu(), inputs, geom, &epi, o)?;
        let flops = 2 * (o.numel() * xt.shape[1] * k * k) as u64;
        let op = Recorded::Conv {
            x,
            prefix,
            k,
            geom,
            temb,
            residual,
            out_scale,
            out: &out,
        };
        self.record(d, flops, op);
        Ok(out)
    }

    fn group_norm(
        &mut self,
        x: &R::T,
        prefix: &str,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<R::T> {
        let gamma = self.param(&format!("{prefix}.weight"))?;
        let beta = self.param(&format!("{prefix}.bias"))?;
        let xt = R::tensor(x);
        let out = self.alloc(&xt.shape)?;
        let o = R::tensor(&out);
        let inputs = ops::group_norm::GroupNormInputs {
            x: xt,
            gamma: &gamma,
            beta: &beta,
        };
        let opts = GroupNormOptions { groups, eps, silu };
        let d = ops::group_norm::group_norm(self.gpu(), inputs, opts, o)?;
        let flops = 8 * o.numel() as u64;
        let op = Recorded::GroupNorm {
            x,
            prefix,
            opts,
            out: &out,
        };
        self.record(d, flops, op);
        Ok(out)
    }

    fn attention(&mut self, x: &R::T, prefix: &str, heads: usize, head_dim: usize) -> Result<R::T> {
        let qkv_prefix = format!("{prefix}.to_qkv");
        let stacked = Conv::same(3 * heads * head_dim, 1);
        let qkv = self.conv(x, &qkv_prefix, stacked, None, None, 1.0)?;
        let xt = R::tensor(x);
        let out = self.alloc(&xt.shape)?;
        let [n, c, h, w] = [xt.shape[0], xt.shape[1], xt.shape[2], xt.shape[3]];
        let qkv_view = view(R::tensor(&qkv), &[n, 3 * c, h * w]);
        let out_view = view(R::tensor(&out), &[n, c, h * w]);
        let d = ops::attention::attention(self.gpu(), &qkv_view, heads, &out_view)?;
        let flops = 4 * (n * c * h * w * h * w) as u64;
        let op = Recorded::Attention {
            qkv: &qkv,
            heads,
            out: &out,
        };
        self.record(d, flops, op);
        Ok(out)
    }

    fn concat(&mut self, a: &R::T, b: &R::T) -> Result<R::T> {
        let (at, bt) = (R::tensor(a), R::tensor(b));
        let mut shape = at.shape.clone();
        shape[1] += bt.shape[1];
        let out = self.alloc(&shape)?;
        let d = ops::concat::concat_channels(self.gpu(), at, bt, R::tensor(&out))?;
        self.record(d, 0, Recorded::Concat { a, b, out: &out });
        Ok(out)
    }

    fn add_class_embedding(&mut self, emb: &R::T, labels: &R::T, prefix: &str) -> Result<R::T> {
        let e = R::tensor(emb);
        let out = self.alloc(&e.shape)?;
        let table = self.param(&format!("{prefix}.weight"))?;
        let d = ops::embedding::add_class_embedding(
            self.gpu(),
            e,
            &table,
            R::tensor(labels),
            R::tensor(&out),
        )?;
        let op = Recorded::ClassEmbedding {
            emb,
            labels,
            prefix,
            out: &out,
        };
        self.record(d, e.numel() as u64, op);
        Ok(out)
    }

    fn center_input(&mut self, x: &R::T) -> Result<R::T> {
        let xt = R::tensor(x);
        let out = self.alloc(&xt.shape)?;
        let d = ops::elementwise::axpby(self.gpu(), 2.0, xt, 0.0, xt, -1.0, R::tensor(&out))?;
        self.record(
            d,
            2 * xt.numel() as u64,
            Recorded::CenterInput { out: &out },
        );
        Ok(out)
    }
}
