//! Whether this engine can run a `UNet2DModel` config: bounds first, then structure, then the
//! checks that walk the graph (through [`super::shapes`]).

use super::config::{
    cfg_err, BlockType, UNetConfig, MAX_CHANNELS, MAX_CLASSES, MAX_LAYERS_PER_BLOCK, MAX_LEVELS,
    MAX_PARAMS, MAX_SAMPLE_SIZE, MAX_SCALE_FACTOR,
};
use super::shapes::{self, Layer};
use crate::Result;

impl UNetConfig {
    /// Checks that this engine can run the config: every rejection is an [`Error::Config`]
    /// naming the key, its value and why. Sizes and counts are bounded first ([`MAX_LEVELS`],
    /// [`MAX_LAYERS_PER_BLOCK`], [`MAX_CHANNELS`], [`MAX_SAMPLE_SIZE`], then [`MAX_PARAMS`]), so
    /// nothing that walks the architecture can overflow or allocate without bound.
    pub fn validate(&self) -> Result<()> {
        let levels = self.block_out_channels.len();
        let boc = &self.block_out_channels;
        if levels == 0 || boc.contains(&0) {
            return Err(cfg_err(
                "block_out_channels",
                format!("{boc:?}"),
                "need at least one level, each with at least one channel",
            ));
        }
        if self.down_block_types.len() != levels {
            return Err(cfg_err(
                "down_block_types",
                BlockType::list(&self.down_block_types),
                format!("must have one entry per block_out_channels entry ({levels})"),
            ));
        }
        if self.up_block_types.len() != levels {
            return Err(cfg_err(
                "up_block_types",
                BlockType::list(&self.up_block_types),
                format!("must have one entry per block_out_channels entry ({levels})"),
            ));
        }
        self.check_bounds()?;
        for t in &self.down_block_types {
            if !t.is_down() {
                return Err(cfg_err(
                    "down_block_types",
                    t.name(),
                    "unsupported block type (supported: DownBlock2D, AttnDownBlock2D)",
                ));
            }
        }
        for t in &self.up_block_types {
            if !t.is_up() {
                return Err(cfg_err(
                    "up_block_types",
                    t.name(),
                    "unsupported block type (supported: UpBlock2D, AttnUpBlock2D)",
                ));
            }
        }
        match self.mid_block_type.as_deref() {
            Some("UNetMidBlock2D") => {}
            other => {
                return Err(cfg_err(
                    "mid_block_type",
                    format!("{other:?}"),
                    "only UNetMidBlock2D is supported",
                ))
            }
        }
        if !matches!(self.act_fn.as_str(), "silu" | "swish") {
            return Err(cfg_err(
                "act_fn",
                &self.act_fn,
                "only silu (alias swish) is supported",
            ));
        }
        if self.time_embedding_type != "positional" {
            return Err(cfg_err(
                "time_embedding_type",
                &self.time_embedding_type,
                "only positional (sinusoidal) time embeddings are supported",
            ));
        }
        if self.resnet_time_scale_shift != "default" {
            return Err(cfg_err(
                "resnet_time_scale_shift",
                &self.resnet_time_scale_shift,
                "only `default` (additive time embedding) is supported",
            ));
        }
        if let Some(t) = &self.class_embed_type {
            return Err(cfg_err(
                "class_embed_type",
                t,
                "only the default (null: a learned embedding table of num_class_embeds rows) is \
                 supported, not the `timestep` or `identity` embeddings",
            ));
        }
        if let Some(n) = self.num_class_embeds {
            if n == 0 || n > MAX_CLASSES {
                return Err(cfg_err(
                    "num_class_embeds",
                    n,
                    format!("must be between 1 and {MAX_CLASSES}"),
                ));
            }
        }
        let rows = self.num_class_embeds.unwrap_or(0);
        if let Some(null) = self.ddpm_null_class {
            if null >= rows {
                return Err(cfg_err(
                    "ddpm_null_class",
                    null,
                    format!("must be a row of the class embedding (num_class_embeds = {rows})"),
                ));
            }
        }
        if let Some(w) = self.ddpm_guidance_scale {
            if !w.is_finite() || (w != 1.0 && self.ddpm_null_class.is_none()) {
                return Err(cfg_err(
                    "ddpm_guidance_scale",
                    w,
                    "must be finite, and other than 1 only with a ddpm_null_class",
                ));
            }
        }
        if let Some(names) = &self.ddpm_class_names {
            if names.len() != self.classes().len() {
                return Err(cfg_err(
                    "ddpm_class_names",
                    names.len(),
                    format!("needs one name per class ({})", self.classes().len()),
                ));
            }
        }
        // downsample_type only matters for AttnDownBlock2D with a downsampler (DownBlock2D always
        // uses a conv), upsample_type likewise for AttnUpBlock2D.
        let attn_downsamples = (0..levels.saturating_sub(1)).any(|i| self.down_has_attention(i));
        if self.downsample_type != "conv" && attn_downsamples {
            return Err(cfg_err(
                "downsample_type",
                &self.downsample_type,
                "only conv downsampling is supported",
            ));
        }
        let attn_upsamples = (0..levels.saturating_sub(1)).any(|i| self.up_has_attention(i));
        if self.upsample_type != "conv" && attn_upsamples {
            return Err(cfg_err(
                "upsample_type",
                &self.upsample_type,
                "only conv upsampling is supported",
            ));
        }
        if self.in_channels == 0 {
            return Err(cfg_err("in_channels", 0, "must be at least 1"));
        }
        if self.out_channels == 0 {
            return Err(cfg_err("out_channels", 0, "must be at least 1"));
        }
        if self.layers_per_block == 0 {
            return Err(cfg_err("layers_per_block", 0, "must be at least 1"));
        }
        if !boc[0].is_multiple_of(2) {
            return Err(cfg_err(
                "block_out_channels",
                format!("{boc:?}"),
                "the first entry (the sinusoidal timestep embedding width) must be even",
            ));
        }
        if self.time_embedding_dim == Some(0) {
            return Err(cfg_err("time_embedding_dim", 0, "must be at least 1"));
        }
        if self.downsample_padding > 1 {
            return Err(cfg_err(
                "downsample_padding",
                self.downsample_padding,
                "only 0 (pad right/bottom by 1) and 1 keep the resolution halving exact",
            ));
        }
        // The kernels compute in f32: ε must stay positive there.
        if !(self.norm_eps > 0.0 && self.norm_eps <= 1.0 && (self.norm_eps as f32) > 0.0) {
            return Err(cfg_err("norm_eps", self.norm_eps, "must lie in (0, 1]"));
        }
        let half = (boc[0] / 2) as f64;
        if self.freq_shift.is_nan() || self.freq_shift.abs() >= half {
            return Err(cfg_err(
                "freq_shift",
                self.freq_shift,
                format!("must lie strictly between ±half the embedding width ({half})"),
            ));
        }
        let msf = self.mid_block_scale_factor;
        if !(1.0 / MAX_SCALE_FACTOR..=MAX_SCALE_FACTOR).contains(&msf) {
            return Err(cfg_err(
                "mid_block_scale_factor",
                msf,
                format!(
                    "must lie in [{}, {MAX_SCALE_FACTOR}]",
                    1.0 / MAX_SCALE_FACTOR
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(cfg_err("dropout", self.dropout, "must be in [0, 1)"));
        }
        let Some(groups) = self.norm_num_groups else {
            return Err(cfg_err(
                "norm_num_groups",
                "null",
                "UNet2DModel needs a group count for its GroupNorms",
            ));
        };
        if groups == 0 {
            return Err(cfg_err("norm_num_groups", 0, "must be at least 1"));
        }
        if self.attn_norm_num_groups == Some(0) {
            return Err(cfg_err("attn_norm_num_groups", 0, "must be at least 1"));
        }
        if self.attention_head_dim == Some(0) {
            return Err(cfg_err("attention_head_dim", 0, "must be at least 1"));
        }
        let Some([h, w]) = self.sample_size else {
            return Err(cfg_err(
                "sample_size",
                "null",
                "the engine records the forward pass for a fixed image size; set sample_size",
            ));
        };
        let f = 1usize << (levels - 1); // levels ≤ MAX_LEVELS
        if h == 0 || w == 0 || !h.is_multiple_of(f) || !w.is_multiple_of(f) {
            return Err(cfg_err(
                "sample_size",
                format!("{:?}", [h, w]),
                format!(
                    "height and width must be positive multiples of 2^(levels-1) = {f} \
                     ({levels} levels)"
                ),
            ));
        }
        // Every GroupNorm and attention block: channels divisible by groups / head dim.
        for layer in shapes::layers(self, h, w) {
            if let Layer::GroupNorm {
                name,
                channels,
                groups,
            } = &layer
            {
                if !channels.is_multiple_of(*groups) {
                    let key = if name.starts_with("mid_block.attentions")
                        && self.attn_norm_num_groups.is_some()
                    {
                        "attn_norm_num_groups"
                    } else {
                        "norm_num_groups"
                    };
                    return Err(cfg_err(
                        key,
                        groups,
                        format!("{name} has {channels} channels, not divisible by {groups} groups"),
                    ));
                }
            }
        }
        for (name, c) in self.attention_blocks() {
            let d = self.attention_head_dim.unwrap_or(c);
            if !c.is_multiple_of(d) {
                return Err(cfg_err(
                    "attention_head_dim",
                    d,
                    format!("{name} has {c} channels, not divisible by the head dim {d}"),
                ));
            }
        }
        Ok(())
    }

    /// The size bounds of [`UNetConfig::validate`], checked before anything walks the layers.
    fn check_bounds(&self) -> Result<()> {
        let boc = &self.block_out_channels;
        if boc.len() > MAX_LEVELS {
            return Err(cfg_err(
                "block_out_channels",
                format!("({} entries)", boc.len()),
                format!("at most {MAX_LEVELS} levels are supported"),
            ));
        }
        let too_many =
            |key: &str, v: usize, max: usize| cfg_err(key, v, format!("must be at most {max}"));
        if let Some(&c) = boc.iter().find(|&&c| c > MAX_CHANNELS) {
            return Err(cfg_err(
                "block_out_channels",
                format!("{boc:?}"),
                format!("{c} channels: each entry must be at most {MAX_CHANNELS}"),
            ));
        }
        let channels = [
            ("in_channels", Some(self.in_channels)),
            ("out_channels", Some(self.out_channels)),
            ("time_embedding_dim", self.time_embedding_dim),
            ("attention_head_dim", self.attention_head_dim),
            ("norm_num_groups", self.norm_num_groups),
            ("attn_norm_num_groups", self.attn_norm_num_groups),
        ];
        for (key, v) in channels {
            if let Some(v) = v.filter(|&v| v > MAX_CHANNELS) {
                return Err(too_many(key, v, MAX_CHANNELS));
            }
        }
        if self.layers_per_block > MAX_LAYERS_PER_BLOCK {
            return Err(too_many(
                "layers_per_block",
                self.layers_per_block,
                MAX_LAYERS_PER_BLOCK,
            ));
        }
        if let Some(hw) = self.sample_size {
            if hw.iter().any(|&s| s > MAX_SAMPLE_SIZE) {
                return Err(cfg_err(
                    "sample_size",
                    format!("{hw:?}"),
                    format!("height and width must be at most {MAX_SAMPLE_SIZE}"),
                ));
            }
        }
        let params = self.num_params();
        if params > MAX_PARAMS {
            return Err(cfg_err(
                "block_out_channels",
                format!("{boc:?}"),
                format!(
                    "the model would have {params} parameters; at most {MAX_PARAMS} are supported"
                ),
            ));
        }
        Ok(())
    }
}
