//! The U-Net of diffusers' `UNet2DModel`, written once against a [`Backend`] so that the GPU
//! recorder and the CPU reference compute exactly the same graph.
//!
//! Reads like diffusers' `forward`: time embedding → `conv_in` → down blocks (collecting skip
//! connections) → mid block → up blocks (consuming them) → `conv_norm_out`/SiLU/`conv_out`.

use crate::error::Result;
use crate::model::UNetConfig;
use crate::options::Conv2dGeom;

/// The tensor operations the U-Net is made of. Parameters are named as diffusers names them
/// (`prefix` + `.weight` / `.bias`); the backend resolves them.
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
    /// `prefix` Linear on `[N, in]`, optionally with SiLU before and/or after.
    fn linear(
        &mut self,
        x: &Self::T,
        prefix: &str,
        silu_in: bool,
        silu_out: bool,
    ) -> Result<Self::T>;
    /// `prefix` Conv2d, then `(· + temb[n, c] + residual) * out_scale`.
    fn conv(
        &mut self,
        x: &Self::T,
        prefix: &str,
        geom: Conv2dGeom,
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
    /// normalised `x`, softmax(q·kᵀ/√d)·v) — without `to_out`.
    fn attention(&mut self, x: &Self::T, prefix: &str, heads: usize) -> Result<Self::T>;
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
    /// Whether the parameter `name` exists (e.g. a resnet's optional `conv_shortcut`).
    fn has_param(&self, name: &str) -> bool;
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

    // 1. time: sinusoidal [N, ch0] → linear_1 → SiLU → linear_2 [N, 4·ch0].
    let t_emb = b.timestep_embedding(t, ch0, cfg.flip_sin_to_cos, cfg.freq_shift as f32)?;
    let h = b.linear(&t_emb, "time_embedding.linear_1", false, true)?;
    let emb = b.linear(&h, "time_embedding.linear_2", false, false)?;
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
    let mut skips = vec![b.conv(x, "conv_in", Conv2dGeom::same(3), None, None, 1.0)?];
    for i in 0..cfg.down_block_types.len() {
        let channels = cfg.block_out_channels[i];
        for j in 0..cfg.layers_per_block {
            let h = skips.last().expect("conv_in output");
            let mut h = resnet(
                b,
                &norm,
                h,
                &emb,
                &format!("down_blocks.{i}.resnets.{j}"),
                1.0,
            )?;
            if cfg.down_has_attention(i) {
                let prefix = format!("down_blocks.{i}.attentions.{j}");
                h = attention(b, &norm, &h, &prefix, cfg.heads_for(channels), 1.0)?;
            }
            skips.push(h);
        }
        if i + 1 < cfg.block_out_channels.len() {
            // Downsample2D: 3×3 stride 2; padding 0 means diffusers pads right/bottom by 1.
            let p = cfg.downsample_padding;
            let geom = Conv2dGeom {
                stride: 2,
                pad: if p == 0 { [0, 0, 1, 1] } else { [p, p, p, p] },
                upsample: false,
            };
            let h = skips.last().expect("resnet output");
            let h = b.conv(
                h,
                &format!("down_blocks.{i}.downsamplers.0.conv"),
                geom,
                None,
                None,
                1.0,
            )?;
            skips.push(h);
        }
    }

    // 4. mid block: resnet → attention → resnet, scaled by mid_block_scale_factor.
    let scale = cfg.mid_block_scale_factor as f32;
    let mid_heads = cfg.heads_for(*cfg.block_out_channels.last().expect("validated non-empty"));
    let mid_norm = Norm {
        groups: cfg.attn_norm_num_groups.unwrap_or(norm.groups),
        eps: norm.eps,
    };
    let mut h = resnet(
        b,
        &norm,
        skips.last().expect("down output"),
        &emb,
        "mid_block.resnets.0",
        scale,
    )?;
    if cfg.add_attention {
        h = attention(b, &mid_norm, &h, "mid_block.attentions.0", mid_heads, scale)?;
    }
    let mut h = resnet(b, &norm, &h, &emb, "mid_block.resnets.1", scale)?;

    // 5. up blocks: each resnet takes concat(h, newest skip); layers_per_block + 1 resnets.
    let reversed: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
    for (i, &channels) in reversed.iter().enumerate() {
        for j in 0..=cfg.layers_per_block {
            let skip = skips.pop().expect("one skip per up-block resnet");
            let cat = b.concat(&h, &skip)?;
            drop(skip);
            h = resnet(
                b,
                &norm,
                &cat,
                &emb,
                &format!("up_blocks.{i}.resnets.{j}"),
                1.0,
            )?;
            drop(cat);
            if cfg.up_has_attention(i) {
                let prefix = format!("up_blocks.{i}.attentions.{j}");
                h = attention(b, &norm, &h, &prefix, cfg.heads_for(channels), 1.0)?;
            }
        }
        if i + 1 < reversed.len() {
            // Upsample2D: nearest ×2, then 3×3 conv (fused).
            let geom = Conv2dGeom {
                upsample: true,
                ..Conv2dGeom::same(3)
            };
            h = b.conv(
                &h,
                &format!("up_blocks.{i}.upsamplers.0.conv"),
                geom,
                None,
                None,
                1.0,
            )?;
        }
    }
    debug_assert!(skips.is_empty());

    // 6. post-process: GroupNorm → SiLU → conv_out.
    let h = b.group_norm(&h, "conv_norm_out", norm.groups, norm.eps, true)?;
    b.conv(&h, "conv_out", Conv2dGeom::same(3), None, None, 1.0)
}

/// ResnetBlock2D: `(shortcut(x) + conv2(SiLU(GN(conv1(SiLU(GN(x))) + proj(SiLU(temb)))))) / scale`.
fn resnet<B: Backend>(
    b: &mut B,
    n: &Norm,
    x: &B::T,
    emb: &B::T,
    prefix: &str,
    output_scale: f32,
) -> Result<B::T> {
    let h = b.group_norm(x, &format!("{prefix}.norm1"), n.groups, n.eps, true)?;
    let temb = b.linear(emb, &format!("{prefix}.time_emb_proj"), true, false)?;
    let h = b.conv(
        &h,
        &format!("{prefix}.conv1"),
        Conv2dGeom::same(3),
        Some(&temb),
        None,
        1.0,
    )?;
    drop(temb);
    let h = b.group_norm(&h, &format!("{prefix}.norm2"), n.groups, n.eps, true)?;
    // Dropout is the identity at inference.
    let shortcut_name = format!("{prefix}.conv_shortcut");
    let inv = 1.0 / output_scale;
    if b.has_param(&format!("{shortcut_name}.weight")) {
        let shortcut = b.conv(x, &shortcut_name, Conv2dGeom::same(1), None, None, 1.0)?;
        b.conv(
            &h,
            &format!("{prefix}.conv2"),
            Conv2dGeom::same(3),
            None,
            Some(&shortcut),
            inv,
        )
    } else {
        b.conv(
            &h,
            &format!("{prefix}.conv2"),
            Conv2dGeom::same(3),
            None,
            Some(x),
            inv,
        )
    }
}

/// Attention block: `(to_out(MHSA(GN(x))) + x) / rescale`.
fn attention<B: Backend>(
    b: &mut B,
    n: &Norm,
    x: &B::T,
    prefix: &str,
    heads: usize,
    rescale: f32,
) -> Result<B::T> {
    let h = b.group_norm(x, &format!("{prefix}.group_norm"), n.groups, n.eps, false)?;
    let h = b.attention(&h, prefix, heads)?;
    b.conv(
        &h,
        &format!("{prefix}.to_out.0"),
        Conv2dGeom::same(1),
        None,
        Some(x),
        1.0 / rescale,
    )
}
