//! The U-Net's parameters, layer shapes and FLOPs, derived from its one description: running
//! [`unet::forward`] on a backend whose tensors are shapes alone records every layer the graph
//! declares. [`expected_params`], [`UNetConfig::num_params`], [`UNetConfig::forward_flops`],
//! `Weights::init` and the config's divisibility checks all read that record, so they cannot
//! drift from what the GPU and the CPU reference run.

use super::unet::{self, Backend, Conv};
use super::UNetConfig;
use crate::error::Result;

/// One parameterised (or FLOP-costing) layer of the U-Net.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Layer {
    /// `{name}.weight [cout, cin, k, k]`, `{name}.bias [cout]`; output `hout × wout` per sample.
    Conv {
        name: String,
        cin: usize,
        cout: usize,
        k: usize,
        hout: usize,
        wout: usize,
    },
    /// `{name}.weight [out, in]`, `{name}.bias [out]`, applied to `rows` vectors per sample.
    Linear {
        name: String,
        inf: usize,
        outf: usize,
        rows: usize,
    },
    /// `{name}.weight [channels]`, `{name}.bias [channels]`.
    GroupNorm {
        name: String,
        channels: usize,
        groups: usize,
    },
    /// The parameter-free core of self-attention: softmax(QKᵀ/√d)V over `tokens` positions with
    /// `channels` = heads × head_dim.
    AttnCore { tokens: usize, channels: usize },
    /// A lookup table `{name}.weight [rows, dim]` (no bias): the class embedding.
    Embedding {
        name: String,
        rows: usize,
        dim: usize,
    },
}

impl Layer {
    /// The module path the layer's parameters live under (empty for the attention core).
    fn name(&self) -> &str {
        match self {
            Layer::Conv { name, .. }
            | Layer::Linear { name, .. }
            | Layer::GroupNorm { name, .. }
            | Layer::Embedding { name, .. } => name,
            Layer::AttnCore { .. } => "",
        }
    }
}

/// The shape-only backend: a tensor is its shape; every op records its [`Layer`].
struct Shapes {
    layers: Vec<Layer>,
    /// Rows of the class-embedding table (`num_class_embeds`).
    classes: usize,
}

/// Elements per sample past the batch dimension (positions × channels for `[N, C, H, W]`).
fn positions(shape: &[usize]) -> usize {
    shape[2..].iter().fold(1, |a, &d| a.saturating_mul(d))
}

impl Backend for Shapes {
    type T = Vec<usize>;

    fn shape(&self, x: &Vec<usize>) -> Vec<usize> {
        x.clone()
    }

    fn timestep_embedding(
        &mut self,
        t: &Vec<usize>,
        dim: usize,
        _: bool,
        _: f32,
    ) -> Result<Self::T> {
        Ok(vec![t[0], dim])
    }

    fn linear(
        &mut self,
        x: &Vec<usize>,
        prefix: &str,
        out_features: usize,
        _: bool,
        _: bool,
    ) -> Result<Self::T> {
        self.layers.push(Layer::Linear {
            name: prefix.into(),
            inf: x[1],
            outf: out_features,
            rows: 1,
        });
        Ok(vec![x[0], out_features])
    }

    fn conv(
        &mut self,
        x: &Vec<usize>,
        prefix: &str,
        conv: Conv,
        _: Option<&Vec<usize>>,
        _: Option<&Vec<usize>>,
        _: f32,
    ) -> Result<Self::T> {
        let (hout, wout) = conv.geom.out_hw(x[2], x[3], conv.kernel);
        let (name, cin, cout) = (prefix.to_string(), x[1], conv.out_channels);
        self.layers.push(if conv.linear_weight {
            Layer::Linear {
                name,
                inf: cin,
                outf: cout,
                rows: hout.saturating_mul(wout),
            }
        } else {
            Layer::Conv {
                name,
                cin,
                cout,
                k: conv.kernel,
                hout,
                wout,
            }
        });
        Ok(vec![x[0], cout, hout, wout])
    }

    fn group_norm(
        &mut self,
        x: &Vec<usize>,
        prefix: &str,
        groups: usize,
        _: f32,
        _: bool,
    ) -> Result<Self::T> {
        self.layers.push(Layer::GroupNorm {
            name: prefix.into(),
            channels: x[1],
            groups,
        });
        Ok(x.clone())
    }

    fn attention(
        &mut self,
        x: &Vec<usize>,
        prefix: &str,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self::T> {
        let inner = heads.saturating_mul(head_dim);
        let tokens = positions(x);
        for q in ["to_q", "to_k", "to_v"] {
            self.layers.push(Layer::Linear {
                name: format!("{prefix}.{q}"),
                inf: x[1],
                outf: inner,
                rows: tokens,
            });
        }
        self.layers.push(Layer::AttnCore {
            tokens,
            channels: inner,
        });
        Ok(vec![x[0], inner, x[2], x[3]])
    }

    fn concat(&mut self, a: &Vec<usize>, b: &Vec<usize>) -> Result<Self::T> {
        let mut out = a.clone();
        out[1] = out[1].saturating_add(b[1]);
        Ok(out)
    }

    fn center_input(&mut self, x: &Vec<usize>) -> Result<Self::T> {
        Ok(x.clone())
    }

    fn add_class_embedding(
        &mut self,
        emb: &Vec<usize>,
        _: &Vec<usize>,
        prefix: &str,
    ) -> Result<Self::T> {
        self.layers.push(Layer::Embedding {
            name: prefix.into(),
            rows: self.classes,
            dim: emb[1],
        });
        Ok(emb.clone())
    }
}

/// Where diffusers' `state_dict` puts a module path: the order in which `UNet2DModel` and its
/// blocks register their submodules (which is not the order they run in: `up_blocks` come
/// before `mid_block`, a block's `attentions` before its `resnets`, a resnet's `conv1` before
/// its `time_emb_proj`). Unknown components sort last, keeping the graph's order among them.
fn state_dict_key(name: &str) -> Vec<usize> {
    const ORDER: &[&str] = &[
        // UNet2DModel
        "conv_in",
        "time_proj",
        "time_embedding",
        "class_embedding",
        "down_blocks",
        "up_blocks",
        "mid_block",
        "conv_norm_out",
        "conv_out",
        // TimestepEmbedding
        "linear_1",
        "linear_2",
        // blocks
        "attentions",
        "resnets",
        "downsamplers",
        "upsamplers",
        // ResnetBlock2D
        "norm1",
        "conv1",
        "time_emb_proj",
        "norm2",
        "conv2",
        "conv_shortcut",
        // Attention
        "group_norm",
        "to_q",
        "to_k",
        "to_v",
        "to_out",
        // Down/Upsample2D
        "conv",
    ];
    name.split('.')
        .map(|part| match part.parse::<usize>() {
            Ok(i) => i,
            Err(_) => ORDER.iter().position(|&o| o == part).unwrap_or(ORDER.len()),
        })
        .collect()
}

/// The layers of the U-Net for an `h × w` input, in diffusers' `state_dict` order. Any config
/// whose block lists have equal lengths can be walked ([`UNetConfig::validate`] checks that
/// before it calls this); sizes that do not divide simply give empty feature maps.
pub(crate) fn layers(cfg: &UNetConfig, h: usize, w: usize) -> Vec<Layer> {
    let mut shapes = Shapes {
        layers: Vec::new(),
        classes: cfg.num_class_embeds.unwrap_or(0),
    };
    let x = vec![1, cfg.in_channels, h, w];
    let t = vec![1];
    let labels = cfg.num_class_embeds.map(|_| vec![1]);
    unet::forward(&mut shapes, cfg, &x, &t, labels.as_ref())
        .expect("the shape-only forward has no failing op, and gets labels iff the model has them");
    let mut layers = shapes.layers;
    // A stable sort keeps the graph's order where diffusers' order does not decide.
    layers.sort_by_cached_key(|l| state_dict_key(l.name()));
    layers
}

/// The parameters (name, shape) of a `UNet2DModel` with `config`, in diffusers' `state_dict`
/// order: conv weights `[out, in, kh, kw]`, linear weights `[out, in]`, every layer with a bias
/// except the class embedding.
pub fn expected_params(config: &UNetConfig) -> Vec<(String, Vec<usize>)> {
    let (h, w) = config.sample_hw().unwrap_or((1, 1));
    let mut out = Vec::new();
    for layer in layers(config, h, w) {
        match layer {
            Layer::Conv {
                name, cin, cout, k, ..
            } => {
                out.push((format!("{name}.weight"), vec![cout, cin, k, k]));
                out.push((format!("{name}.bias"), vec![cout]));
            }
            Layer::Linear {
                name, inf, outf, ..
            } => {
                out.push((format!("{name}.weight"), vec![outf, inf]));
                out.push((format!("{name}.bias"), vec![outf]));
            }
            Layer::GroupNorm { name, channels, .. } => {
                out.push((format!("{name}.weight"), vec![channels]));
                out.push((format!("{name}.bias"), vec![channels]));
            }
            Layer::AttnCore { .. } => {}
            Layer::Embedding { name, rows, dim } => {
                out.push((format!("{name}.weight"), vec![rows, dim]));
            }
        }
    }
    out
}

impl UNetConfig {
    /// Total number of parameters (at most [`super::config::MAX_PARAMS`] for a validated
    /// config; saturates).
    pub fn num_params(&self) -> usize {
        expected_params(self)
            .iter()
            .map(|(_, s)| s.iter().fold(1usize, |a, &d| a.saturating_mul(d)))
            .fold(0, usize::saturating_add)
    }

    /// FLOPs of one forward pass of `batch` samples at `sample_size` (0 without a sample size).
    /// See [`UNetConfig::forward_flops_at`].
    pub fn forward_flops(&self, batch: usize) -> u128 {
        match self.sample_size {
            Some([h, w]) => self.forward_flops_at(batch, h, w),
            None => 0,
        }
    }

    /// FLOPs of one forward pass of `batch` samples of `h × w`, counting each multiply-add as 2:
    /// convolutions (2·Cin·Cout·k²·Hout·Wout), linears (2·in·out per row: time embedding MLP,
    /// `time_emb_proj`, attention q/k/v/out projections per position) and the attention core
    /// (2·L²·C for QKᵀ plus 2·L²·C for ·V, L = H·W positions). Not counted: GroupNorm, SiLU,
    /// softmax, residual adds, upsampling, concatenation and the sinusoidal embedding
    /// (all O(activations), a few percent at most). Counted in u128, saturating at
    /// `u128::MAX` (far beyond any size [`UNetConfig::validate`] accepts).
    pub fn forward_flops_at(&self, batch: usize, h: usize, w: usize) -> u128 {
        let prod = |xs: &[usize]| {
            xs.iter()
                .fold(2u128, |acc, &x| acc.saturating_mul(x as u128))
        };
        let per_sample = layers(self, h, w)
            .iter()
            .map(|l| match *l {
                Layer::Conv {
                    cin,
                    cout,
                    k,
                    hout,
                    wout,
                    ..
                } => prod(&[cin, cout, k, k, hout, wout]),
                Layer::Linear {
                    inf, outf, rows, ..
                } => prod(&[inf, outf, rows]),
                Layer::GroupNorm { .. } | Layer::Embedding { .. } => 0,
                Layer::AttnCore { tokens, channels } => prod(&[2, tokens, tokens, channels]),
            })
            .fold(0u128, u128::saturating_add);
        per_sample.saturating_mul(batch as u128)
    }

    /// Every attention block as (module path, channels).
    pub(crate) fn attention_blocks(&self) -> Vec<(String, usize)> {
        let (h, w) = self.sample_hw().unwrap_or((1, 1));
        layers(self, h, w)
            .into_iter()
            .filter_map(|l| match l {
                Layer::GroupNorm { name, channels, .. } if name.ends_with(".group_norm") => {
                    Some((name.trim_end_matches(".group_norm").to_string(), channels))
                }
                _ => None,
            })
            .collect()
    }
}
