//! The training graph: [`crate::model::unet::forward`] recorded on a tape that keeps every
//! activation, then walked backwards to record the gradient dispatches. Recorded once for a
//! batch size; every training step replays the same dispatches.
//!
//! Gradient convention: walking the tape in reverse, the first contribution to a gradient
//! overwrites its buffer and later ones accumulate, so no zero-fill passes are needed.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::cpu::conv2d::Conv2dGeom;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::unet::Backend;
use crate::ops;

/// Trainable parameters on the GPU: the master copy in PyTorch layout (updated by AdamW) and,
/// for convolutions, the packed copy the conv kernels read (refreshed after every update).
pub struct Params {
    /// Master tensors by name (attention q/k/v stacked as `{prefix}.to_qkv`, `[3C, C, 1, 1]`).
    pub master: HashMap<String, Tensor>,
    /// Packed conv weights by name (see `ops::conv2d::pack_weight`).
    pub packed: HashMap<String, Tensor>,
}

impl Params {
    fn get(&self, name: &str) -> Result<&Tensor> {
        self.master
            .get(name)
            .ok_or_else(|| Error::Weights(format!("missing tensor `{name}`")))
    }

    fn get_packed(&self, name: &str) -> Result<&Tensor> {
        self.packed
            .get(name)
            .ok_or_else(|| Error::Weights(format!("missing packed conv weight `{name}`")))
    }
}

/// An activation on the tape.
pub struct Node {
    id: usize,
    pub tensor: Tensor,
}

/// What each recorded forward op needs for its backward.
enum Op {
    Linear {
        x: usize,
        prefix: String,
        silu_in: bool,
        silu_out: bool,
        out: usize,
    },
    Conv {
        x: usize,
        prefix: String,
        geom: Conv2dGeom,
        temb: Option<usize>,
        residual: Option<usize>,
        scale: f32,
        out: usize,
    },
    GroupNorm {
        x: usize,
        prefix: String,
        groups: usize,
        eps: f32,
        silu: bool,
        out: usize,
    },
    Attention {
        qkv: usize,
        heads: usize,
        out: usize,
    },
    Concat {
        a: usize,
        b: usize,
        out: usize,
    },
}

/// Records the forward pass and everything its backward needs.
pub struct Tape<'a> {
    gpu: &'a Gpu,
    params: &'a Params,
    nodes: Vec<Tensor>,
    ops: Vec<Op>,
    pub forward: Vec<Dispatch>,
    /// Activations that need no gradient (inputs, timestep embedding).
    no_grad: Vec<Cell<bool>>,
}

impl<'a> Tape<'a> {
    pub fn new(gpu: &'a Gpu, params: &'a Params) -> Self {
        Tape {
            gpu,
            params,
            nodes: Vec::new(),
            ops: Vec::new(),
            forward: Vec::new(),
            no_grad: Vec::new(),
        }
    }

    /// Puts an existing tensor (a model input) on the tape; it gets no gradient.
    pub fn input(&mut self, tensor: &Tensor) -> Rc<Node> {
        let node = self.push_node(tensor.clone());
        self.no_grad[node.id].set(true);
        node
    }

    fn push_node(&mut self, tensor: Tensor) -> Rc<Node> {
        self.nodes.push(tensor.clone());
        self.no_grad.push(Cell::new(false));
        Rc::new(Node {
            id: self.nodes.len() - 1,
            tensor,
        })
    }

    fn alloc(&mut self, shape: &[usize]) -> Result<Rc<Node>> {
        let t = Tensor::zeros(self.gpu, shape, "activation")?;
        Ok(self.push_node(t))
    }

    /// Records the backward pass from `d_out` (the loss gradient of node `out`): returns the
    /// dispatches and the parameter gradients by master name.
    pub fn backward(
        self,
        out: &Node,
        d_out: &Tensor,
    ) -> Result<(Vec<Dispatch>, HashMap<String, Tensor>)> {
        let gpu = self.gpu;
        let mut grads: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        grads[out.id] = Some(d_out.clone());
        let mut param_grads: HashMap<String, Tensor> = HashMap::new();
        let mut d: Vec<Dispatch> = Vec::new();

        // The gradient buffer of node `id` (allocated on first use) and whether to accumulate.
        let grad_of =
            |grads: &mut Vec<Option<Tensor>>, id: usize| -> Result<Option<(Tensor, bool)>> {
                if self.no_grad[id].get() {
                    return Ok(None);
                }
                Ok(Some(match &grads[id] {
                    Some(g) => (g.clone(), true),
                    None => {
                        let g = Tensor::zeros(gpu, &self.nodes[id].shape, "gradient")?;
                        grads[id] = Some(g.clone());
                        (g, false)
                    }
                }))
            };
        let mut param_grad = |name: String, like: &Tensor| -> Result<Tensor> {
            if param_grads.contains_key(&name) {
                return Err(Error::Invalid(format!(
                    "parameter {name} used twice in one pass"
                )));
            }
            let g = Tensor::zeros(gpu, &like.shape, &format!("grad {name}"))?;
            param_grads.insert(name, g.clone());
            Ok(g)
        };

        for op in self.ops.iter().rev() {
            match op {
                Op::Linear {
                    x,
                    prefix,
                    silu_in,
                    silu_out,
                    out,
                } => {
                    let Some(dy) = grads[*out].clone() else {
                        continue;
                    };
                    let w = self.params.get(&format!("{prefix}.weight"))?;
                    let b = self.params.get(&format!("{prefix}.bias"))?;
                    let dw = param_grad(format!("{prefix}.weight"), w)?;
                    let db = param_grad(format!("{prefix}.bias"), b)?;
                    let dx = grad_of(&mut grads, *x)?;
                    d.extend(ops::linear_backward::linear_backward(
                        gpu,
                        &self.nodes[*x],
                        w,
                        b,
                        &dy,
                        *silu_in,
                        *silu_out,
                        dx.as_ref().is_some_and(|g| g.1),
                        dx.as_ref().map(|g| &g.0),
                        false,
                        &dw,
                        &db,
                    )?);
                }
                Op::Conv {
                    x,
                    prefix,
                    geom,
                    temb,
                    residual,
                    scale,
                    out,
                } => {
                    let Some(dy) = grads[*out].clone() else {
                        continue;
                    };
                    let w = self.params.get(&format!("{prefix}.weight"))?;
                    let b = self.params.get(&format!("{prefix}.bias"))?;
                    let dw = param_grad(format!("{prefix}.weight"), w)?;
                    let db = param_grad(format!("{prefix}.bias"), b)?;
                    let w4 = conv_view(w);
                    let dw4 = conv_view(&dw);
                    d.extend(ops::conv2d_backward::conv2d_backward_weight(
                        gpu,
                        &dy,
                        &self.nodes[*x],
                        *geom,
                        *scale,
                        false,
                        &dw4,
                        &db,
                    )?);
                    if let Some((dx, acc)) = grad_of(&mut grads, *x)? {
                        d.push(ops::conv2d_backward::conv2d_backward_input(
                            gpu, &dy, &w4, *geom, *scale, acc, &dx,
                        )?);
                    }
                    if let Some(t) = temb {
                        if let Some((dt, acc)) = grad_of(&mut grads, *t)? {
                            d.push(ops::grad_utils::reduce_spatial(gpu, &dy, *scale, acc, &dt)?);
                        }
                    }
                    if let Some(r) = residual {
                        if let Some((dr, acc)) = grad_of(&mut grads, *r)? {
                            d.push(ops::grad_utils::scale_into(gpu, &dy, *scale, acc, &dr)?);
                        }
                    }
                }
                Op::GroupNorm {
                    x,
                    prefix,
                    groups,
                    eps,
                    silu,
                    out,
                } => {
                    let Some(dy) = grads[*out].clone() else {
                        continue;
                    };
                    let gamma = self.params.get(&format!("{prefix}.weight"))?;
                    let beta = self.params.get(&format!("{prefix}.bias"))?;
                    let dgamma = param_grad(format!("{prefix}.weight"), gamma)?;
                    let dbeta = param_grad(format!("{prefix}.bias"), beta)?;
                    let Some((dx, acc)) = grad_of(&mut grads, *x)? else {
                        return Err(Error::Invalid("group norm of a constant".into()));
                    };
                    d.extend(ops::group_norm_backward::group_norm_backward(
                        gpu,
                        &self.nodes[*x],
                        gamma,
                        beta,
                        &dy,
                        *groups,
                        *eps,
                        *silu,
                        acc,
                        &dx,
                        false,
                        &dgamma,
                        &dbeta,
                    )?);
                }
                Op::Attention { qkv, heads, out } => {
                    let Some(dy) = grads[*out].clone() else {
                        continue;
                    };
                    let Some((dqkv, acc)) = grad_of(&mut grads, *qkv)? else {
                        continue;
                    };
                    let (n, c) = (dy.shape[0], dy.shape[1]);
                    let l: usize = dy.shape[2..].iter().product();
                    let view = |t: &Tensor, ch: usize| Tensor {
                        buffer: t.buffer.clone(),
                        shape: vec![n, ch, l],
                    };
                    d.extend(ops::attention_backward::attention_backward(
                        gpu,
                        &view(&self.nodes[*qkv], 3 * c),
                        &view(&dy, c),
                        *heads,
                        acc,
                        &view(&dqkv, 3 * c),
                    )?);
                }
                Op::Concat { a, b, out } => {
                    let Some(dy) = grads[*out].clone() else {
                        continue;
                    };
                    let da = grad_of(&mut grads, *a)?.expect("concat inputs need gradients");
                    let db = grad_of(&mut grads, *b)?.expect("concat inputs need gradients");
                    d.push(ops::grad_utils::concat_backward(
                        gpu, &dy, da.1, &da.0, db.1, &db.0,
                    )?);
                }
            }
        }
        Ok((d, param_grads))
    }
}

/// A Linear weight `[out, in]` seen as a 1×1 conv weight.
fn conv_view(w: &Tensor) -> Tensor {
    Tensor {
        buffer: w.buffer.clone(),
        shape: crate::model::cpu_unet::conv_weight_shape(&w.shape).to_vec(),
    }
}

impl Backend for Tape<'_> {
    type T = Rc<Node>;

    fn shape(&self, x: &Rc<Node>) -> Vec<usize> {
        x.tensor.shape.clone()
    }

    fn timestep_embedding(
        &mut self,
        t: &Rc<Node>,
        dim: usize,
        flip: bool,
        shift: f32,
    ) -> Result<Rc<Node>> {
        let out = self.alloc(&[t.tensor.shape[0], dim])?;
        self.no_grad[out.id].set(true);
        let d =
            ops::timestep::timestep_embedding(self.gpu, &t.tensor, dim, flip, shift, &out.tensor)?;
        self.forward.push(d);
        Ok(out)
    }

    fn linear(
        &mut self,
        x: &Rc<Node>,
        prefix: &str,
        silu_in: bool,
        silu_out: bool,
    ) -> Result<Rc<Node>> {
        let w = self.params.get(&format!("{prefix}.weight"))?;
        let b = self.params.get(&format!("{prefix}.bias"))?;
        let out = self.alloc(&[x.tensor.shape[0], w.shape[0]])?;
        let d = ops::linear::linear(self.gpu, &x.tensor, w, b, silu_in, silu_out, &out.tensor)?;
        self.forward.push(d);
        self.ops.push(Op::Linear {
            x: x.id,
            prefix: prefix.to_string(),
            silu_in,
            silu_out,
            out: out.id,
        });
        Ok(out)
    }

    fn conv(
        &mut self,
        x: &Rc<Node>,
        prefix: &str,
        geom: Conv2dGeom,
        temb: Option<&Rc<Node>>,
        residual: Option<&Rc<Node>>,
        out_scale: f32,
    ) -> Result<Rc<Node>> {
        let w = self.params.get_packed(&format!("{prefix}.weight"))?;
        let b = self.params.get(&format!("{prefix}.bias"))?;
        let k = w.shape[2];
        let (ho, wo) = geom.out_hw(x.tensor.shape[2], x.tensor.shape[3], k);
        let out = self.alloc(&[x.tensor.shape[0], b.shape[0], ho, wo])?;
        let epi = ops::conv2d::Epilogue {
            temb: temb.map(|t| &t.tensor),
            residual: residual.map(|r| &r.tensor),
            out_scale,
        };
        let d = ops::conv2d::conv2d(self.gpu, &x.tensor, w, b, geom, &epi, &out.tensor)?;
        self.forward.push(d);
        self.ops.push(Op::Conv {
            x: x.id,
            prefix: prefix.to_string(),
            geom,
            temb: temb.map(|t| t.id),
            residual: residual.map(|r| r.id),
            scale: out_scale,
            out: out.id,
        });
        Ok(out)
    }

    fn group_norm(
        &mut self,
        x: &Rc<Node>,
        prefix: &str,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<Rc<Node>> {
        let gamma = self.params.get(&format!("{prefix}.weight"))?;
        let beta = self.params.get(&format!("{prefix}.bias"))?;
        let out = self.alloc(&x.tensor.shape)?;
        let d = ops::group_norm::group_norm(
            self.gpu,
            &x.tensor,
            gamma,
            beta,
            groups,
            eps,
            silu,
            &out.tensor,
        )?;
        self.forward.push(d);
        self.ops.push(Op::GroupNorm {
            x: x.id,
            prefix: prefix.to_string(),
            groups,
            eps,
            silu,
            out: out.id,
        });
        Ok(out)
    }

    fn attention(&mut self, x: &Rc<Node>, prefix: &str, heads: usize) -> Result<Rc<Node>> {
        let qkv = self.conv(
            x,
            &format!("{prefix}.to_qkv"),
            Conv2dGeom::same(1),
            None,
            None,
            1.0,
        )?;
        let out = self.alloc(&x.tensor.shape)?;
        let s = &x.tensor.shape;
        let (n, c, l) = (s[0], s[1], s[2] * s[3]);
        let view = |t: &Tensor, ch: usize| Tensor {
            buffer: t.buffer.clone(),
            shape: vec![n, ch, l],
        };
        let d = ops::attention::attention(
            self.gpu,
            &view(&qkv.tensor, 3 * c),
            heads,
            &view(&out.tensor, c),
        )?;
        self.forward.push(d);
        self.ops.push(Op::Attention {
            qkv: qkv.id,
            heads,
            out: out.id,
        });
        Ok(out)
    }

    fn concat(&mut self, a: &Rc<Node>, b: &Rc<Node>) -> Result<Rc<Node>> {
        let mut shape = a.tensor.shape.clone();
        shape[1] += b.tensor.shape[1];
        let out = self.alloc(&shape)?;
        let d = ops::concat::concat_channels(self.gpu, &a.tensor, &b.tensor, &out.tensor)?;
        self.forward.push(d);
        self.ops.push(Op::Concat {
            a: a.id,
            b: b.id,
            out: out.id,
        });
        Ok(out)
    }

    fn has_param(&self, name: &str) -> bool {
        self.params.master.contains_key(name)
    }
}
