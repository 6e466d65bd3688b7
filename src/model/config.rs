//! `config.json` of a diffusers `UNet2DModel`: parsing with diffusers' defaults, validation
//! against what this engine runs, writing back, and the architecture walk shared by
//! [`crate::model::weights::expected_params`], [`UNetConfig::num_params`] and
//! [`UNetConfig::forward_flops`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The diffusers version whose `UNet2DModel` this config follows (written by [`UNetConfig::to_json`]).
pub const DIFFUSERS_VERSION: &str = "0.42.1";

/// Keys that are not `UNet2DModel` arguments we model but that cannot change its function:
/// `num_train_timesteps` only sizes the `learned` time embedding, which [`UNetConfig::validate`]
/// rejects anyway. Keys starting with `_` (`_class_name`, `_diffusers_version`, `_name_or_path`,
/// `_use_default_values`, …) are metadata and always ignored. Any other unknown key is an error:
/// it usually means the file belongs to another model (e.g. `cross_attention_dim` of
/// `UNet2DConditionModel`).
pub const HARMLESS_KEYS: &[&str] = &["num_train_timesteps"];

/// Most resolution levels (`block_out_channels` entries) [`UNetConfig::validate`] accepts: the
/// sample size must be a multiple of 2^(levels − 1).
pub const MAX_LEVELS: usize = 16;
/// Most `layers_per_block` accepted.
pub const MAX_LAYERS_PER_BLOCK: usize = 64;
/// Most channels accepted for `block_out_channels` entries, `in_channels`, `out_channels`,
/// `time_embedding_dim`, `attention_head_dim` and the group counts.
pub const MAX_CHANNELS: usize = 1 << 16;
/// Most pixels per side accepted for `sample_size`.
pub const MAX_SAMPLE_SIZE: usize = 1 << 14;
/// Most parameters accepted (4 GiB as f32; diffusers' largest `UNet2DModel`s have ~0.1 G).
pub const MAX_PARAMS: usize = 1 << 30;
/// `mid_block_scale_factor` must lie in [1/`MAX_SCALE_FACTOR`, `MAX_SCALE_FACTOR`].
pub const MAX_SCALE_FACTOR: f64 = 1e3;

/// Most classes accepted for `num_class_embeds`.
pub const MAX_CLASSES: usize = 1 << 16;

/// Every key [`UNetConfig`] reads.
const KNOWN_KEYS: &[&str] = &[
    "sample_size",
    "in_channels",
    "out_channels",
    "center_input_sample",
    "time_embedding_type",
    "time_embedding_dim",
    "freq_shift",
    "flip_sin_to_cos",
    "down_block_types",
    "mid_block_type",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "mid_block_scale_factor",
    "downsample_padding",
    "downsample_type",
    "upsample_type",
    "dropout",
    "act_fn",
    "attention_head_dim",
    "norm_num_groups",
    "attn_norm_num_groups",
    "norm_eps",
    "resnet_time_scale_shift",
    "add_attention",
    "class_embed_type",
    "num_class_embeds",
    "ddpm_null_class",
    "ddpm_guidance_scale",
    "ddpm_class_names",
    "ddpm_dataset",
];

/// The arguments of diffusers' `UNet2DModel.__init__` (diffusers 0.42), with its defaults for
/// missing keys. Build with [`UNetConfig::from_json`] (which also validates) or by editing
/// [`UNetConfig::default`]; call [`UNetConfig::validate`] after editing by hand.
///
/// Fields the forward pass must honour beyond the obvious ones (`center_input_sample`: x ← 2x − 1
/// first): `mid_block_scale_factor` (the mid block's resnet `output_scale_factor` and
/// attention `rescale_output_factor`), `attn_norm_num_groups` (groups of the mid-block attention
/// GroupNorm, see [`UNetConfig::mid_attn_groups`]), `add_attention` (mid block without
/// attention when false), `time_embedding_dim` (see [`UNetConfig::time_embed_dim`]).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct UNetConfig {
    /// `[height, width]` of the samples; diffusers writes an int for square images.
    #[serde(
        deserialize_with = "de_sample_size",
        serialize_with = "ser_sample_size"
    )]
    pub sample_size: Option<[usize; 2]>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub time_embedding_type: String,
    /// Width of the time embedding; `None` → `4 * block_out_channels[0]`.
    pub time_embedding_dim: Option<usize>,
    pub freq_shift: f64,
    pub flip_sin_to_cos: bool,
    pub down_block_types: Vec<String>,
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub mid_block_scale_factor: f64,
    pub downsample_padding: usize,
    pub downsample_type: String,
    pub upsample_type: String,
    pub dropout: f64,
    pub act_fn: String,
    /// Channels per attention head; `null` → one head spanning all channels of the block.
    #[serde(default = "default_attention_head_dim")]
    pub attention_head_dim: Option<usize>,
    #[serde(default = "default_norm_num_groups")]
    pub norm_num_groups: Option<usize>,
    pub attn_norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub resnet_time_scale_shift: String,
    pub add_attention: bool,
    pub class_embed_type: Option<String>,
    pub num_class_embeds: Option<usize>,
    /// ddpm's key (diffusers ignores it): the class-embedding row that means "no class", the
    /// unconditional half of classifier-free guidance (by convention the last row, so a model
    /// of C classes has `num_class_embeds` C + 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ddpm_null_class: Option<usize>,
    /// ddpm's key: the guidance scale w samplers default to (1: plain conditional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ddpm_guidance_scale: Option<f64>,
    /// ddpm's key: display names of the classes (e.g. Fashion-MNIST's), one per class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ddpm_class_names: Option<Vec<String>>,
    /// ddpm's key: the dataset the model was trained on, as `ddpm train --data` names it
    /// (`mnist`, `fashion`, `emoji`); the page's forward view and `ddpm loss` pick their bundled
    /// examples by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ddpm_dataset: Option<String>,
}

fn default_attention_head_dim() -> Option<usize> {
    Some(8)
}

fn default_norm_num_groups() -> Option<usize> {
    Some(32)
}

impl Default for UNetConfig {
    /// diffusers' defaults (note: `sample_size` is `None`, which [`UNetConfig::validate`] rejects).
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        UNetConfig {
            sample_size: None,
            in_channels: 3,
            out_channels: 3,
            center_input_sample: false,
            time_embedding_type: "positional".into(),
            time_embedding_dim: None,
            freq_shift: 0.0,
            flip_sin_to_cos: true,
            down_block_types: s(&[
                "DownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
            ]),
            mid_block_type: Some("UNetMidBlock2D".into()),
            up_block_types: s(&[
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "UpBlock2D",
            ]),
            block_out_channels: vec![224, 448, 672, 896],
            layers_per_block: 2,
            mid_block_scale_factor: 1.0,
            downsample_padding: 1,
            downsample_type: "conv".into(),
            upsample_type: "conv".into(),
            dropout: 0.0,
            act_fn: "silu".into(),
            attention_head_dim: default_attention_head_dim(),
            norm_num_groups: default_norm_num_groups(),
            attn_norm_num_groups: None,
            norm_eps: 1e-5,
            resnet_time_scale_shift: "default".into(),
            add_attention: true,
            class_embed_type: None,
            num_class_embeds: None,
            ddpm_null_class: None,
            ddpm_guidance_scale: None,
            ddpm_class_names: None,
            ddpm_dataset: None,
        }
    }
}

fn de_sample_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[usize; 2]>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        One(usize),
        Two([usize; 2]),
    }
    Ok(match Option::<S>::deserialize(d)? {
        None => None,
        Some(S::One(s)) => Some([s, s]),
        Some(S::Two(hw)) => Some(hw),
    })
}

fn ser_sample_size<S: Serializer>(v: &Option<[usize; 2]>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        None => s.serialize_none(),
        Some([h, w]) if h == w => s.serialize_u64(*h as u64),
        Some(hw) => hw.serialize(s),
    }
}

fn cfg_err(key: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> Error {
    Error::Config {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A block type name as diffusers resolves it (`UNetResDownBlock2D` → `DownBlock2D`).
fn block_kind(name: &str) -> &str {
    name.strip_prefix("UNetRes").unwrap_or(name)
}

/// One parameterised (or FLOP-costing) layer of the U-Net, in diffusers' `state_dict` order.
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

impl UNetConfig {
    /// Parses and validates a diffusers `config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| cfg_err("config.json", "(unparsable)", format!("invalid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(cfg_err(
                "config.json",
                "(not an object)",
                "expected a JSON object of UNet2DModel arguments",
            ));
        };
        Self::from_map(map)
    }

    fn from_map(mut map: Map<String, Value>) -> Result<Self> {
        if let Some(class) = map.get("_class_name") {
            if class.as_str() != Some("UNet2DModel") {
                return Err(cfg_err(
                    "_class_name",
                    class,
                    "this is not a UNet2DModel config (only UNet2DModel is supported)",
                ));
            }
        }
        map.retain(|k, _| !k.starts_with('_') && !HARMLESS_KEYS.contains(&k.as_str()));
        if let Some(k) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(cfg_err(
                k,
                &map[k],
                "unknown UNet2DModel key (it suggests a different model, e.g. UNet2DConditionModel)",
            ));
        }
        let config: UNetConfig = match serde_json::from_value(Value::Object(map.clone())) {
            Ok(c) => c,
            Err(e) => {
                // Find the offending key by parsing each one on its own.
                for (k, v) in &map {
                    let mut one = Map::new();
                    one.insert(k.clone(), v.clone());
                    if let Err(e) = serde_json::from_value::<UNetConfig>(Value::Object(one)) {
                        return Err(cfg_err(k, v, format!("wrong type: {e}")));
                    }
                }
                return Err(cfg_err("config.json", "", e.to_string()));
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// The config as diffusers' `save_pretrained` writes it (sorted keys, `_class_name`).
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).expect("config serialises");
        let map = v.as_object_mut().expect("config is an object");
        map.insert("_class_name".into(), "UNet2DModel".into());
        map.insert("_diffusers_version".into(), DIFFUSERS_VERSION.into());
        map.insert("num_train_timesteps".into(), Value::Null);
        serde_json::to_string_pretty(&v).expect("config serialises")
    }

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
                format!("{:?}", self.down_block_types),
                format!("must have one entry per block_out_channels entry ({levels})"),
            ));
        }
        if self.up_block_types.len() != levels {
            return Err(cfg_err(
                "up_block_types",
                format!("{:?}", self.up_block_types),
                format!("must have one entry per block_out_channels entry ({levels})"),
            ));
        }
        self.check_bounds()?;
        for t in &self.down_block_types {
            if !matches!(block_kind(t), "DownBlock2D" | "AttnDownBlock2D") {
                return Err(cfg_err(
                    "down_block_types",
                    t,
                    "unsupported block type (supported: DownBlock2D, AttnDownBlock2D)",
                ));
            }
        }
        for t in &self.up_block_types {
            if !matches!(block_kind(t), "UpBlock2D" | "AttnUpBlock2D") {
                return Err(cfg_err(
                    "up_block_types",
                    t,
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
        for layer in self.layers(h, w) {
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

    /// Number of resolution levels (`block_out_channels.len()`).
    pub fn levels(&self) -> usize {
        self.block_out_channels.len()
    }

    /// `[height, width]` from `sample_size` (validated to be present).
    pub fn sample_hw(&self) -> Option<(usize, usize)> {
        self.sample_size.map(|[h, w]| (h, w))
    }

    /// Width of the time embedding after `time_embedding.linear_1`/`linear_2`.
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim
            .unwrap_or(self.block_out_channels[0].saturating_mul(4))
    }

    /// Width of the sinusoidal embedding fed to `time_embedding.linear_1` (`block_out_channels[0]`).
    pub fn time_proj_dim(&self) -> usize {
        self.block_out_channels[0]
    }

    /// GroupNorm groups of every resnet, attention and `conv_norm_out` GroupNorm.
    pub fn groups(&self) -> usize {
        self.norm_num_groups.unwrap_or(32)
    }

    /// Groups of the mid block's attention GroupNorm (`attn_norm_num_groups` or [`Self::groups`]).
    pub fn mid_attn_groups(&self) -> usize {
        self.attn_norm_num_groups.unwrap_or_else(|| self.groups())
    }

    /// Channels per head of an attention block with `channels` channels.
    pub fn head_dim_for(&self, channels: usize) -> usize {
        self.attention_head_dim.unwrap_or(channels)
    }

    /// Number of heads of an attention block with `channels` channels (diffusers:
    /// `channels // attention_head_dim`, or 1 when `attention_head_dim` is null).
    pub fn heads_for(&self, channels: usize) -> usize {
        // 0 for a head dim of 0, which validation rejects.
        channels
            .checked_div(self.head_dim_for(channels))
            .unwrap_or(0)
    }

    /// The classes a conditional model draws: the class-embedding rows except the null class
    /// (empty for an unconditional model).
    pub fn classes(&self) -> Vec<usize> {
        (0..self.num_class_embeds.unwrap_or(0).min(MAX_CLASSES))
            .filter(|&c| Some(c) != self.ddpm_null_class)
            .collect()
    }

    /// Whether down block `i` is an `AttnDownBlock2D`.
    pub fn down_has_attention(&self, i: usize) -> bool {
        block_kind(&self.down_block_types[i]) == "AttnDownBlock2D"
    }

    /// Whether up block `i` (counted from the lowest resolution) is an `AttnUpBlock2D`.
    pub fn up_has_attention(&self, i: usize) -> bool {
        block_kind(&self.up_block_types[i]) == "AttnUpBlock2D"
    }

    /// Total number of parameters (at most [`MAX_PARAMS`] for a validated config; saturates).
    pub fn num_params(&self) -> usize {
        crate::model::weights::expected_params(self)
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
        let per_sample = self
            .layers(h, w)
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
    fn attention_blocks(&self) -> Vec<(String, usize)> {
        let (h, w) = self.sample_hw().unwrap_or((1, 1));
        self.layers(h, w)
            .into_iter()
            .filter_map(|l| match l {
                Layer::GroupNorm { name, channels, .. } if name.ends_with(".group_norm") => {
                    Some((name.trim_end_matches(".group_norm").to_string(), channels))
                }
                _ => None,
            })
            .collect()
    }

    /// The layers of the U-Net for an `h × w` input, in diffusers' `state_dict` order (which
    /// puts `up_blocks` before `mid_block`, and within a block `attentions` before `resnets`).
    /// Assumes block lists of equal length (checked by [`UNetConfig::validate`] first).
    pub(crate) fn layers(&self, h: usize, w: usize) -> Vec<Layer> {
        let boc = &self.block_out_channels;
        let levels = boc.len();
        let temb = self.time_embed_dim();
        let g = self.groups();
        let mut out = Vec::new();
        // Shifts and products saturate, so an unvalidated config cannot overflow here.
        let shr = |x: usize, s: usize| x.checked_shr(s as u32).unwrap_or(0);
        let conv = |name: String, cin, cout, k, hout, wout| Layer::Conv {
            name,
            cin,
            cout,
            k,
            hout,
            wout,
        };
        let norm = |name: String, channels, groups| Layer::GroupNorm {
            name,
            channels,
            groups,
        };
        let resnet = |out: &mut Vec<Layer>, p: &str, cin: usize, cout: usize, h, w| {
            out.push(norm(format!("{p}.norm1"), cin, g));
            out.push(conv(format!("{p}.conv1"), cin, cout, 3, h, w));
            out.push(Layer::Linear {
                name: format!("{p}.time_emb_proj"),
                inf: temb,
                outf: cout,
                rows: 1,
            });
            out.push(norm(format!("{p}.norm2"), cout, g));
            out.push(conv(format!("{p}.conv2"), cout, cout, 3, h, w));
            if cin != cout {
                out.push(conv(format!("{p}.conv_shortcut"), cin, cout, 1, h, w));
            }
        };
        let attention = |out: &mut Vec<Layer>, p: &str, c: usize, groups: usize, tokens| {
            let inner = self.heads_for(c) * self.head_dim_for(c);
            out.push(norm(format!("{p}.group_norm"), c, groups));
            for q in ["to_q", "to_k", "to_v"] {
                out.push(Layer::Linear {
                    name: format!("{p}.{q}"),
                    inf: c,
                    outf: inner,
                    rows: tokens,
                });
            }
            out.push(Layer::AttnCore {
                tokens,
                channels: inner,
            });
            out.push(Layer::Linear {
                name: format!("{p}.to_out.0"),
                inf: inner,
                outf: c,
                rows: tokens,
            });
        };

        out.push(conv("conv_in".into(), self.in_channels, boc[0], 3, h, w));
        out.push(Layer::Linear {
            name: "time_embedding.linear_1".into(),
            inf: self.time_proj_dim(),
            outf: temb,
            rows: 1,
        });
        out.push(Layer::Linear {
            name: "time_embedding.linear_2".into(),
            inf: temb,
            outf: temb,
            rows: 1,
        });
        if let Some(rows) = self.num_class_embeds {
            out.push(Layer::Embedding {
                name: "class_embedding".into(),
                rows,
                dim: temb,
            });
        }

        // Down: level i runs at (h, w) / 2^i; a downsampler halves it for the next level.
        let mut cout = boc[0];
        for (i, &c) in boc.iter().enumerate() {
            let (hi, wi) = (shr(h, i), shr(w, i));
            let cin_block = cout;
            cout = c;
            let p = format!("down_blocks.{i}");
            if self.down_has_attention(i) {
                for j in 0..self.layers_per_block {
                    attention(
                        &mut out,
                        &format!("{p}.attentions.{j}"),
                        cout,
                        g,
                        hi.saturating_mul(wi),
                    );
                }
            }
            for j in 0..self.layers_per_block {
                let cin = if j == 0 { cin_block } else { cout };
                resnet(&mut out, &format!("{p}.resnets.{j}"), cin, cout, hi, wi);
            }
            if i + 1 < levels {
                let name = format!("{p}.downsamplers.0.conv");
                out.push(conv(name, cout, cout, 3, hi / 2, wi / 2));
            }
        }

        // Up (state_dict order puts it before the mid block): level i runs at (h, w) / 2^(L-1-i).
        let rev: Vec<usize> = boc.iter().rev().copied().collect();
        let mut cout = rev[0];
        for i in 0..levels {
            let s = levels - 1 - i;
            let (hi, wi) = (shr(h, s), shr(w, s));
            let prev = cout;
            cout = rev[i];
            let skip_in = rev[(i + 1).min(levels - 1)];
            let n = self.layers_per_block + 1;
            let p = format!("up_blocks.{i}");
            if self.up_has_attention(i) {
                for j in 0..n {
                    attention(
                        &mut out,
                        &format!("{p}.attentions.{j}"),
                        cout,
                        g,
                        hi.saturating_mul(wi),
                    );
                }
            }
            for j in 0..n {
                let skip = if j == n - 1 { skip_in } else { cout };
                let cin = if j == 0 { prev } else { cout };
                resnet(
                    &mut out,
                    &format!("{p}.resnets.{j}"),
                    cin + skip,
                    cout,
                    hi,
                    wi,
                );
            }
            if i + 1 < levels {
                let name = format!("{p}.upsamplers.0.conv");
                out.push(conv(
                    name,
                    cout,
                    cout,
                    3,
                    hi.saturating_mul(2),
                    wi.saturating_mul(2),
                ));
            }
        }

        // Mid: resnet, attention, resnet at the lowest resolution.
        let c = rev[0];
        let s = levels - 1;
        let (hm, wm) = (shr(h, s), shr(w, s));
        if self.add_attention {
            let groups = self.mid_attn_groups();
            attention(
                &mut out,
                "mid_block.attentions.0",
                c,
                groups,
                hm.saturating_mul(wm),
            );
        }
        resnet(&mut out, "mid_block.resnets.0", c, c, hm, wm);
        resnet(&mut out, "mid_block.resnets.1", c, c, hm, wm);

        out.push(norm("conv_norm_out".into(), boc[0], g));
        out.push(conv("conv_out".into(), boc[0], self.out_channels, 3, h, w));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddpm_cifar10() -> &'static str {
        r#"{
          "_class_name": "UNet2DModel", "_diffusers_version": "0.0.4", "act_fn": "silu",
          "attention_head_dim": null, "block_out_channels": [128, 256, 256, 256],
          "center_input_sample": false,
          "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
          "downsample_padding": 0, "flip_sin_to_cos": false, "freq_shift": 1, "in_channels": 3,
          "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06,
          "norm_num_groups": 32, "out_channels": 3, "sample_size": 32,
          "time_embedding_type": "positional",
          "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
        }"#
    }

    #[test]
    fn parses_ddpm_cifar10_with_defaults() {
        let c = UNetConfig::from_json(ddpm_cifar10()).unwrap();
        assert_eq!(c.sample_size, Some([32, 32]));
        assert_eq!(c.attention_head_dim, None);
        assert_eq!(c.norm_eps, 1e-6);
        assert_eq!(c.freq_shift, 1.0);
        assert!(!c.flip_sin_to_cos);
        assert_eq!(c.downsample_padding, 0);
        assert_eq!(c.resnet_time_scale_shift, "default");
        assert_eq!(c.time_embed_dim(), 512);
        assert_eq!(c.heads_for(256), 1);
        assert_eq!(c.head_dim_for(256), 256);
        assert_eq!(c.groups(), 32);
        assert!(c.down_has_attention(1) && !c.down_has_attention(0));
        assert!(c.up_has_attention(2) && !c.up_has_attention(1));
        // google/ddpm-cifar10-32 has 35.7 M parameters.
        assert_eq!(c.num_params(), 35_746_307);
        let gflops = c.forward_flops(1) as f64 / 1e9;
        assert!((10.0..14.0).contains(&gflops), "{gflops} GFLOP");
        assert_eq!(c.forward_flops(4), 4 * c.forward_flops(1));
    }

    #[test]
    fn missing_keys_take_diffusers_defaults() {
        let c = UNetConfig::from_json(r#"{"sample_size": 64}"#).unwrap();
        let d = UNetConfig {
            sample_size: Some([64, 64]),
            ..UNetConfig::default()
        };
        assert_eq!(c, d);
        assert_eq!(c.attention_head_dim, Some(8));
        assert_eq!(c.heads_for(448), 56);
        assert_eq!(c.time_embed_dim(), 896);
    }

    #[test]
    fn level_count_is_bounded() {
        // 65 levels made `1 << (levels − 1)` wrap; 16 is the documented maximum.
        for (n, ok) in [(16, true), (17, false), (65, false)] {
            let json = serde_json::json!({
                "sample_size": 1 << (n - 1).min(14),
                "block_out_channels": vec![8; n],
                "down_block_types": vec!["DownBlock2D"; n],
                "up_block_types": vec!["UpBlock2D"; n],
                "norm_num_groups": 4, "layers_per_block": 1,
            });
            let r = UNetConfig::from_json(&json.to_string());
            if ok {
                // 2^15 does not fit the sample size bound: the multiple-of check names it.
                let msg = r.unwrap_err().to_string();
                assert!(msg.contains("2^(levels-1) = 32768"), "{msg}");
            } else {
                let msg = r.unwrap_err().to_string();
                assert!(msg.contains("at most 16 levels"), "{n}: {msg}");
            }
        }
    }

    #[test]
    fn flops_do_not_wrap() {
        // The shipped MNIST model at 2^20 × 2^20 (what `ddpm info` printed wrapped).
        let c = UNetConfig::from_json(include_str!("../../assets/mnist/config.json")).unwrap();
        let big = c.forward_flops_at(1, 1 << 20, 1 << 20);
        assert!(big > u64::MAX as u128, "{big}");
        let gflop = big as f64 / 1e9;
        assert!((4.8e15..4.9e15).contains(&gflop), "{gflop:e} GFLOP");
        // Doubling the side multiplies the (dominant) attention term by 16.
        let ratio = c.forward_flops_at(1, 1 << 21, 1 << 21) as f64 / big as f64;
        assert!((15.9..16.0).contains(&ratio), "{ratio}");
        // Absurd sizes saturate instead of wrapping to small numbers.
        assert_eq!(c.forward_flops_at(2, 1 << 40, 1 << 40), u128::MAX);
        assert_eq!(
            c.forward_flops_at(3, 64, 64),
            3 * c.forward_flops_at(1, 64, 64)
        );
    }

    #[test]
    fn json_roundtrip() {
        let mut c = UNetConfig::from_json(ddpm_cifar10()).unwrap();
        c.sample_size = Some([32, 64]);
        let j = c.to_json();
        assert!(j.contains("\"_class_name\": \"UNet2DModel\""));
        assert!(j.contains("\"norm_eps\": 1e-6"), "{j}");
        assert_eq!(UNetConfig::from_json(&j).unwrap(), c);
    }

    #[test]
    fn rejects_what_the_engine_cannot_run() {
        let base: Value = serde_json::from_str(ddpm_cifar10()).unwrap();
        let cases: &[(&str, Value, &str)] = &[
            ("act_fn", "gelu".into(), "act_fn"),
            (
                "time_embedding_type",
                "fourier".into(),
                "time_embedding_type",
            ),
            (
                "resnet_time_scale_shift",
                "scale_shift".into(),
                "resnet_time_scale_shift",
            ),
            ("class_embed_type", "timestep".into(), "class_embed_type"),
            ("num_class_embeds", 0.into(), "num_class_embeds"),
            ("mid_block_type", Value::Null, "mid_block_type"),
            ("norm_num_groups", 48.into(), "norm_num_groups"),
            ("attention_head_dim", 24.into(), "attention_head_dim"),
            ("sample_size", 36.into(), "sample_size"),
            ("sample_size", Value::Null, "sample_size"),
            ("cross_attention_dim", 768.into(), "cross_attention_dim"),
            ("layers_per_block", "two".into(), "layers_per_block"),
            ("_class_name", "UNet2DConditionModel".into(), "_class_name"),
            (
                "down_block_types",
                serde_json::json!([
                    "DownBlock2D",
                    "CrossAttnDownBlock2D",
                    "DownBlock2D",
                    "DownBlock2D"
                ]),
                "CrossAttnDownBlock2D",
            ),
            (
                "up_block_types",
                serde_json::json!(["UpBlock2D", "UpBlock2D", "UpBlock2D"]),
                "up_block_types",
            ),
            ("downsample_type", "resnet".into(), "downsample_type"),
            // Sizes beyond the documented bounds, before anything is built from them.
            ("layers_per_block", 4294967296u64.into(), "at most 64"),
            ("sample_size", 1048576.into(), "at most 16384"),
            ("in_channels", (1u64 << 32).into(), "in_channels"),
            (
                "block_out_channels",
                serde_json::json!([128, 256, 256, 70000]),
                "at most 65536",
            ),
            (
                "block_out_channels",
                serde_json::json!([65536, 65536, 65536, 65536]),
                "parameters",
            ),
            (
                "mid_block_scale_factor",
                18446744073709551616f64.into(),
                "[0.001, 1000]",
            ),
            ("mid_block_scale_factor", 0.into(), "mid_block_scale_factor"),
            ("norm_eps", 1e300.into(), "norm_eps"),
            ("norm_eps", 1e-300.into(), "norm_eps"),
            ("freq_shift", (-1e300).into(), "freq_shift"),
            (
                "layers_per_block",
                18446744073709551615u64.into(),
                "layers_per_block",
            ),
            (
                "layers_per_block",
                18446744073709551616f64.into(),
                "wrong type",
            ),
        ];
        for (key, value, needle) in cases {
            let mut v = base.clone();
            v[*key] = value.clone();
            let err = UNetConfig::from_json(&v.to_string()).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::Config { .. }), "{key}: {msg}");
            assert!(msg.contains(needle), "{key}: `{msg}` should name {needle}");
        }
        // Harmless extras are ignored.
        let mut v = base.clone();
        v["num_train_timesteps"] = 1000.into();
        v["_name_or_path"] = "google/ddpm-cifar10-32".into();
        assert!(UNetConfig::from_json(&v.to_string()).is_ok());
        // Block names with diffusers' UNetRes prefix resolve like diffusers does.
        let mut v = base;
        v["down_block_types"][0] = "UNetResDownBlock2D".into();
        assert!(UNetConfig::from_json(&v.to_string()).is_ok());
    }
}
