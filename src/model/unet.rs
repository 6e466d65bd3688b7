//! The U-Net of diffusers' `UNet2DModel`, written once against a [`Backend`]: the GPU recorders
//! and the CPU reference compute this graph, and the shape-only backend of [`super::shapes`]
//! derives the parameter list, layer shapes and FLOPs from it, so nothing else describes the
//! architecture.
//!
//! Reads like diffusers' `forward`: time embedding → `conv_in` → down blocks (collecting skip
//! connections) → mid block → up blocks (consuming them) → `conv_norm_out`/SiLU/`conv_out`.

use crate::error::Result;
use crate::model::UNetConfig;
use crate::options::Conv2dGeom;

/// A convolution as the graph declares it: output channels, square kernel size, geometry, and
/// whether diffusers stores its weight as a Linear `[out, in]` (a 1×1 conv over positions: the
/// attention's `to_out.0`) rather than a Conv2d `[out, in, k, k]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv {
    pub out_channels: usize,
    pub kernel: usize,
    pub geom: Conv2dGeom,
    pub linear_weight: bool,
}

impl Conv {
    /// A `kernel`×`kernel` stride-1 conv keeping the size.
    pub fn same(out_channels: usize, kernel: usize) -> Self {
        Conv {
            out_channels,
            kernel,
            geom: Conv2dGeom::same(kernel),
            linear_weight: false,
        }
    }

    /// A Linear applied at every position (weight `[out, in]`).
    pub fn projection(out_channels: usize) -> Self {
        Conv {
            linear_weight: true,
            ..Conv::same(out_channels, 1)
        }
    }
}

/// The tensor operations the U-Net is made of. Parameters are named as diffusers names them
/// (`prefix` + `.weight` / `.bias`); the graph declares each layer's output size, and a backend
/// with real weights checks that its tensors have it.
pub trait Backend {
    /// A tensor handle (NCHW, f32).
    type T;
    /// The shape of `x`.
    fn shape(&self, x: &Self::T) -> Vec<usize>;
    /// Sinusoidal embedding of the timesteps `t` `[N]` → `[N, dim]`.
    fn timestep_embedding(
        &mut self,
        t: &Self::T,
        dim: usize,
        flip_sin_to_cos: bool,
        freq_shift: f32,
    ) -> Result<Self::T>;
    /// `prefix` Linear `[N, in]` → `[N, out_features]`, optionally with SiLU before and/or after.
    fn linear(
        &mut self,
        x: &Self::T,
        prefix: &str,
        out_features: usize,
        silu_in: bool,
        silu_out: bool,
    ) -> Result<Self::T>;
    /// `prefix` Conv2d, then `(· + temb[n, c] + residual) * out_scale`.
    fn conv(
        &mut self,
        x: &Self::T,
        prefix: &str,
        conv: Conv,
        temb: Option<&Self::T>,
        residual: Option<&Self::T>,
        out_scale: f32,
    ) -> Result<Self::T>;
    /// `prefix` GroupNorm (affine), optionally followed by SiLU.
    fn group_norm(
        &mut self,
        x: &Self::T,
        prefix: &str,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<Self::T>;
    /// Multi-head self-attention core of `prefix` (`to_q`, `to_k`, `to_v` projections of the
    /// normalised `x` to `heads` × `head_dim` channels, softmax(q·kᵀ/√d)·v) — without `to_out`.
    fn attention(
        &mut self,
        x: &Self::T,
        prefix: &str,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self::T>;
    /// Channel concatenation `[a, b]`.
    fn concat(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// The input centred from [0, 1] to [−1, 1]: 2x − 1 (`center_input_sample`).
    fn center_input(&mut self, x: &Self::T) -> Result<Self::T>;
    /// `emb` `[N, dim]` plus the rows of the `prefix` embedding table named by `labels` `[N]`.
    fn add_class_embedding(
        &mut self,
        emb: &Self::T,
        labels: &Self::T,
        prefix: &str,
    ) -> Result<Self::T>;
}

/// Normalisation settings shared by every block.
struct Norm {
    groups: usize,
    eps: f32,
}

/// ε̂ = UNet(x, t[, labels]): `x` `[N, C, H, W]`, `t` `[N]`, class `labels` `[N]` (exactly when
/// the model has `num_class_embeds`) → `[N, out_channels, H, W]`.
pub fn forward<B: Backend>(
    b: &mut B,
    cfg: &UNetConfig,
    x: &B::T,
    t: &B::T,
    labels: Option<&B::T>,
) -> Result<B::T> {
    // 0. diffusers' `center_input_sample`: x ← 2x − 1.
    let centred = match cfg.center_input_sample {
        true => Some(b.center_input(x)?),
        false => None,
    };
    let x = centred.as_ref().unwrap_or(x);
    let norm = Norm {
        groups: cfg.groups(),
        eps: cfg.norm_eps as f32,
    };
    let ch0 = cfg.block_out_channels[0];
    let temb = cfg.time_embed_dim();

    // 1. time: sinusoidal [N, ch0] → linear_1 → SiLU → linear_2 [N, 4·ch0].
    let t_emb = b.timestep_embedding(t, ch0, cfg.flip_sin_to_cos, cfg.freq_shift as f32)?;
    let h = b.linear(&t_emb, "time_embedding.linear_1", temb, false, true)?;
    let emb = b.linear(&h, "time_embedding.linear_2", temb, false, false)?;
    drop((t_emb, h));
    // 1b. class conditioning: emb + class_embedding(labels).
    super::check_conditioning(cfg, labels.is_some())?;
    let emb = match labels {
        Some(l) => b.add_class_embedding(&emb, l, "class_embedding")?,
        None => emb,
    };

    // 2. conv_in: [N, C, H, W] → [N, ch0, H, W].
    // 3. down blocks. `skips` is diffusers' `down_block_res_samples`: conv_in's output, every
    //    resnet (+attention) output and every downsampler output. The newest entry is always
    //    the current hidden state.
    let mut skips = vec![b.conv(x, "conv_in", Conv::same(ch0, 3), None, None, 1.0)?];
    for i in 0..cfg.down_block_types.len() {
        let channels = cfg.block_out_channels[i];
        for j in 0..cfg.layers_per_block {
            let h = skips.last().expect("conv_in output");
            let prefix = format!("down_blocks.{i}.resnets.{j}");
            let mut h = resnet(b, &norm, h, &emb, &prefix, channels, 1.0)?;
            if cfg.down_has_attention(i) {
                let prefix = format!("down_blocks.{i}.attentions.{j}");
                h = attention(b, cfg, &norm, &h, &prefix, 1.0)?;
            }
            skips.push(h);
        }
        if i + 1 < cfg.block_out_channels.len() {
            // Downsample2D: 3×3 stride 2; padding 0 means diffusers pads right/bottom by 1.
            let conv = Conv {
                geom: Conv2dGeom::downsample(cfg.downsample_padding),
                ..Conv::same(channels, 3)
            };
            let h = skips.last().expect("resnet output");
            let prefix = format!("down_blocks.{i}.downsamplers.0.conv");
            let h = b.conv(h, &prefix, conv, None, None, 1.0)?;
            skips.push(h);
        }
    }

    // 4. mid block: resnet → attention → resnet, scaled by mid_block_scale_factor.
    let scale = cfg.mid_block_scale_factor as f32;
    let mid = *cfg.block_out_channels.last().expect("validated non-empty");
    let mid_norm = Norm {
        groups: cfg.mid_attn_groups(),
        eps: norm.eps,
    };
    let down_out = skips.last().expect("down output");
    let mut h = resnet(b, &norm, down_out, &emb, "mid_block.resnets.0", mid, scale)?;
    if cfg.add_attention {
        h = attention(b, cfg, &mid_norm, &h, "mid_block.attentions.0", scale)?;
    }
    let mut h = resnet(b, &norm, &h, &emb, "mid_block.resnets.1", mid, scale)?;

    // 5. up blocks: each resnet takes concat(h, newest skip); layers_per_block + 1 resnets.
    let reversed: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
    for (i, &channels) in reversed.iter().enumerate() {
        for j in 0..=cfg.layers_per_block {
            let skip = skips.pop().expect("one skip per up-block resnet");
            let cat = b.concat(&h, &skip)?;
            drop(skip);
            let prefix = format!("up_blocks.{i}.resnets.{j}");
            h = resnet(b, &norm, &cat, &emb, &prefix, channels, 1.0)?;
            drop(cat);
            if cfg.up_has_attention(i) {
                let prefix = format!("up_blocks.{i}.attentions.{j}");
                h = attention(b, cfg, &norm, &h, &prefix, 1.0)?;
            }
        }
        if i + 1 < reversed.len() {
            // Upsample2D: nearest ×2, then 3×3 conv (fused).
            let mut conv = Conv::same(channels, 3);
            conv.geom.upsample = true;
            let prefix = format!("up_blocks.{i}.upsamplers.0.conv");
            h = b.conv(&h, &prefix, conv, None, None, 1.0)?;
        }
    }
    debug_assert!(skips.is_empty());

    // 6. post-process: GroupNorm → SiLU → conv_out.
    let h = b.group_norm(&h, "conv_norm_out", norm.groups, norm.eps, true)?;
    let conv_out = Conv::same(cfg.out_channels, 3);
    b.conv(&h, "conv_out", conv_out, None, None, 1.0)
}

/// ResnetBlock2D to `channels` outputs:
/// `(shortcut(x) + conv2(SiLU(GN(conv1(SiLU(GN(x))) + proj(SiLU(temb)))))) / scale`, where the
/// shortcut is a 1×1 `conv_shortcut` exactly when the channel count changes (diffusers'
/// `use_in_shortcut`).
fn resnet<B: Backend>(
    b: &mut B,
    n: &Norm,
    x: &B::T,
    emb: &B::T,
    prefix: &str,
    channels: usize,
    output_scale: f32,
) -> Result<B::T> {
    let h = b.group_norm(x, &format!("{prefix}.norm1"), n.groups, n.eps, true)?;
    let temb = b.linear(
        emb,
        &format!("{prefix}.time_emb_proj"),
        channels,
        true,
        false,
    )?;
    let conv3 = Conv::same(channels, 3);
    let h = b.conv(
        &h,
        &format!("{prefix}.conv1"),
        conv3,
        Some(&temb),
        None,
        1.0,
    )?;
    drop(temb);
    let h = b.group_norm(&h, &format!("{prefix}.norm2"), n.groups, n.eps, true)?;
    // Dropout is the identity at inference.
    let inv = 1.0 / output_scale;
    let conv2 = format!("{prefix}.conv2");
    if b.shape(x)[1] != channels {
        let shortcut_name = format!("{prefix}.conv_shortcut");
        let shortcut = b.conv(x, &shortcut_name, Conv::same(channels, 1), None, None, 1.0)?;
        b.conv(&h, &conv2, conv3, None, Some(&shortcut), inv)
    } else {
        b.conv(&h, &conv2, conv3, None, Some(x), inv)
    }
}

/// Attention block: `(to_out(MHSA(GN(x))) + x) / rescale`.
fn attention<B: Backend>(
    b: &mut B,
    cfg: &UNetConfig,
    n: &Norm,
    x: &B::T,
    prefix: &str,
    rescale: f32,
) -> Result<B::T> {
    let channels = b.shape(x)[1];
    let (heads, head_dim) = (cfg.heads_for(channels), cfg.head_dim_for(channels));
    let h = b.group_norm(x, &format!("{prefix}.group_norm"), n.groups, n.eps, false)?;
    let h = b.attention(&h, prefix, heads, head_dim)?;
    let to_out = Conv::projection(channels);
    b.conv(
        &h,
        &format!("{prefix}.to_out.0"),
        to_out,
        None,
        Some(x),
        1.0 / rescale,
    )
}
