//! The training graph: [`crate::model::unet::forward`] recorded on a tape that keeps every
//! activation, then walked backwards to record the gradient dispatches. Recorded once for a
//! batch size; every training step replays the same dispatches.
//!
//! Gradient convention: walking the tape in reverse, the first contribution to a gradient
//! overwrites its buffer and later ones accumulate, so no zero-fill passes are needed.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::record::{view, Recorded, Recorder};
use crate::ops;
use crate::ops::Accumulate;
use crate::options::{Conv2dGeom, Conv2dGradOptions, GroupNormOptions, LinearOptions};

/// Trainable parameters on the GPU: the master copy in PyTorch layout (updated by AdamW) and,
/// for convolutions, the packed copy the conv kernels read (refreshed after every update).
pub struct Params {
    /// Master tensors by name (attention q/k/v stacked as `{prefix}.to_qkv`, `[3C, C, 1, 1]`).
    pub master: HashMap<String, Tensor>,
    /// Packed conv weights by name (see `ops::conv_pack::pack_weight`).
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
        opts: LinearOptions,
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
        opts: GroupNormOptions,
        out: usize,
    },
    Attention {
        qkv: usize,
        heads: usize,
        out: usize,
    },
    ClassEmbedding {
        emb: usize,
        labels: usize,
        prefix: String,
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
        // Parameter `name` and a fresh gradient buffer for it (each parameter is used once per
        // pass, so its gradient is written once).
        let params = self.params;
        let mut grad_for = |name: String| -> Result<(Tensor, Tensor)> {
            let p = params.get(&name)?.clone();
            if param_grads.contains_key(&name) {
                return Err(Error::operand(
                    "tape",
                    "parameter",
                    format!("{name} used twice in one pass"),
                ));
            }
            let g = Tensor::zeros(gpu, &p.shape, &format!("grad {name}"))?;
            param_grads.insert(name, g.clone());
            Ok((p, g))
        };
        // The weight and bias of layer `prefix` with their gradient buffers.
        let weight_and_bias = |grad_for: &mut dyn FnMut(String) -> Result<(Tensor, Tensor)>,
                               prefix: &str|
         -> Result<[Tensor; 4]> {
            let (w, dw) = grad_for(format!("{prefix}.weight"))?;
            let (b, db) = grad_for(format!("{prefix}.bias"))?;
            Ok([w, b, dw, db])
        };

        for op in self.ops.iter().rev() {
            match op {
                Op::Linear {
                    x,
                    prefix,
                    opts,
                    out,
                } => {
                    let Some(dy) = grads[*out].clone() else {
                        continue;
                    };
                    let [w, b, dw, db] = weight_and_bias(&mut grad_for, prefix)?;
                    let dx = grad_of(&mut grads, *x)?;
                    let inputs = ops::linear::LinearInputs {
                        x: &self.nodes[*x],
                        w: &w,
                        b: &b,
                    };
                    let layer_grads = ops::linear_backward::LinearGrads {
                        dx: dx.as_ref().map(|g| &g.0),
                        dw: &dw,
                        db: &db,
                    };
                    let acc = Accumulate {
                        dx: dx.as_ref().is_some_and(|g| g.1),
                        params: false,
                    };
                    d.extend(ops::linear_backward::linear_backward(
                        gpu,
                        inputs,
                        &dy,
                        *opts,
                        layer_grads,
                        acc,
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
                    let [w, _, dw, db] = weight_and_bias(&mut grad_for, prefix)?;
                    let w4 = conv_view(&w);
                    let dw4 = conv_view(&dw);
                    let opts = |accumulate| Conv2dGradOptions {
                        geom: *geom,
                        out_scale: *scale,
                        accumulate,
                    };
                    d.extend(ops::conv2d_backward::conv2d_backward_weight(
                        gpu,
                        &dy,
                        &self.nodes[*x],
                        opts(false),
                        &dw4,
                        &db,
                    )?);
                    if let Some((dx, acc)) = grad_of(&mut grads, *x)? {
                        d.extend(ops::conv2d_backward::conv2d_backward_input(
                            gpu,
                            &dy,
                            &w4,
                            opts(acc),
                            &dx,
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
                    opts,
                    out,
                } => {
                    let Some(dy) = grads[*out].clone() else {
                        continue;
                    };
                    let [gamma, beta, dgamma, dbeta] = weight_and_bias(&mut grad_for, prefix)?;
                    let Some((dx, acc)) = grad_of(&mut grads, *x)? else {
                        return Err(Error::operand("tape group_norm", "x", "is a constant"));
                    };
                    let inputs = ops::group_norm::GroupNormInputs {
                        x: &self.nodes[*x],
                        gamma: &gamma,
                        beta: &beta,
                    };
                    let layer_grads = ops::group_norm_backward::GroupNormGrads {
                        dx: &dx,
                        dgamma: &dgamma,
                        dbeta: &dbeta,
                    };
                    let acc = Accumulate {
                        dx: acc,
                        params: false,
                    };
                    d.extend(ops::group_norm_backward::group_norm_backward(
                        gpu,
                        inputs,
                        &dy,
                        *opts,
                        layer_grads,
                        acc,
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
                    d.extend(ops::attention_backward::attention_backward(
                        gpu,
                        &view(&self.nodes[*qkv], &[n, 3 * c, l]),
                        &view(&dy, &[n, c, l]),
                        *heads,
                        acc,
                        &view(&dqkv, &[n, 3 * c, l]),
                    )?);
                }
                Op::ClassEmbedding {
                    emb,
                    labels,
                    prefix,
                    out,
                } => {
                    let Some(dy) = grads[*out].clone() else {
                        continue;
                    };
                    // A table without bias.
                    let (_, g) = grad_for(format!("{prefix}.weight"))?;
                    d.push(ops::embedding::class_embedding_grad(
                        gpu,
                        &dy,
                        &self.nodes[*labels],
                        &g,
                    )?);
                    if let Some((de, acc)) = grad_of(&mut grads, *emb)? {
                        d.push(ops::grad_utils::scale_into(gpu, &dy, 1.0, acc, &de)?);
                    }
                }
                Op::Concat { a, b, out } => {
                    let Some(dy) = grads[*out].clone() else {
                        continue;
                    };
                    let da = grad_of(&mut grads, *a)?.expect("concat inputs need gradients");
                    let db = grad_of(&mut grads, *b)?.expect("concat inputs need gradients");
                    d.push(ops::concat_backward::concat_backward(
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
    view(w, &crate::model::cpu_unet::conv_weight_shape(&w.shape))
}

impl Recorder for Tape<'_> {
    type T = Rc<Node>;

    fn gpu(&self) -> &Gpu {
        self.gpu
    }

    fn tensor(x: &Rc<Node>) -> &Tensor {
        &x.tensor
    }

    fn alloc(&mut self, shape: &[usize]) -> Result<Rc<Node>> {
        let t = Tensor::zeros(self.gpu, shape, "activation")?;
        Ok(self.push_node(t))
    }

    fn param(&self, name: &str) -> Result<Tensor> {
        self.params.get(name).cloned()
    }

    fn conv_weight(&self, name: &str) -> Result<Tensor> {
        self.params.get_packed(name).cloned()
    }

    fn record(&mut self, dispatch: Dispatch, _flops: u64, op: Recorded<'_, Rc<Node>>) {
        self.forward.push(dispatch);
        let op = match op {
            // The timestep embedding and the centred input have no parameters and need no
            // gradient.
            Recorded::TimestepEmbedding { out } | Recorded::CenterInput { out } => {
                self.no_grad[out.id].set(true);
                return;
            }
            Recorded::Linear {
                x,
                prefix,
                opts,
                out,
            } => Op::Linear {
                x: x.id,
                prefix: prefix.to_string(),
                opts,
                out: out.id,
            },
            Recorded::Conv {
                x,
                prefix,
                geom,
                temb,
                residual,
                out_scale,
                out,
                ..
            } => Op::Conv {
                x: x.id,
                prefix: prefix.to_string(),
                geom,
                temb: temb.map(|t| t.id),
                residual: residual.map(|r| r.id),
                scale: out_scale,
                out: out.id,
            },
            Recorded::GroupNorm {
                x,
                prefix,
                opts,
                out,
            } => Op::GroupNorm {
                x: x.id,
                prefix: prefix.to_string(),
                opts,
                out: out.id,
            },
            Recorded::Attention { qkv, heads, out } => Op::Attention {
                qkv: qkv.id,
                heads,
                out: out.id,
            },
            Recorded::ClassEmbedding {
                emb,
                labels,
                prefix,
                out,
            } => Op::ClassEmbedding {
                emb: emb.id,
                labels: labels.id,
                prefix: prefix.to_string(),
                out: out.id,
            },
            Recorded::Concat { a, b, out } => Op::Concat {
                a: a.id,
                b: b.id,
                out: out.id,
            },
        };
        self.ops.push(op);
    }
}
