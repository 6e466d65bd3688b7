//! `config.json` of a diffusers `UNet2DModel`: parsing with diffusers' defaults, writing back,
//! and the scalar facts derived from it (groups, heads, embedding widths). Validation lives in
//! [`super::validate`]; parameters, shapes and FLOPs come from the graph ([`super::shapes`]).

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
    /// Resolved at load ([`BlockType::parse`]); written back by their canonical names.
    pub down_block_types: Vec<BlockType>,
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<BlockType>,
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
        use BlockType::*;
        UNetConfig {
            sample_size: None,
            in_channels: 3,
            out_channels: 3,
            center_input_sample: false,
            time_embedding_type: "positional".into(),
            time_embedding_dim: None,
            freq_shift: 0.0,
            flip_sin_to_cos: true,
            down_block_types: vec![
                DownBlock2D,
                AttnDownBlock2D,
                AttnDownBlock2D,
                AttnDownBlock2D,
            ],
            mid_block_type: Some("UNetMidBlock2D".into()),
            up_block_types: vec![AttnUpBlock2D, AttnUpBlock2D, AttnUpBlock2D, UpBlock2D],
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

pub(super) fn cfg_err(
    key: &str,
    value: impl std::fmt::Display,
    reason: impl Into<String>,
) -> Error {
    Error::Config {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A down or up block of the U-Net, resolved from its `config.json` name once, at load, the way
/// diffusers resolves it (a `UNetRes` prefix is dropped: `UNetResAttnDownBlock2D` is
/// `AttnDownBlock2D`). The graph ([`super::unet`]) only ever sees these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockType {
    DownBlock2D,
    AttnDownBlock2D,
    UpBlock2D,
    AttnUpBlock2D,
    /// Any other name, as written; [`UNetConfig::validate`] rejects it, naming the key.
    Unsupported(String),
}

impl BlockType {
    /// The block a `config.json` name stands for.
    pub fn parse(name: &str) -> Self {
        match name.strip_prefix("UNetRes").unwrap_or(name) {
            "DownBlock2D" => BlockType::DownBlock2D,
            "AttnDownBlock2D" => BlockType::AttnDownBlock2D,
            "UpBlock2D" => BlockType::UpBlock2D,
            "AttnUpBlock2D" => BlockType::AttnUpBlock2D,
            _ => BlockType::Unsupported(name.to_string()),
        }
    }

    /// The canonical diffusers name (an unsupported one as written).
    pub fn name(&self) -> &str {
        match self {
            BlockType::DownBlock2D => "DownBlock2D",
            BlockType::AttnDownBlock2D => "AttnDownBlock2D",
            BlockType::UpBlock2D => "UpBlock2D",
            BlockType::AttnUpBlock2D => "AttnUpBlock2D",
            BlockType::Unsupported(name) => name,
        }
    }

    /// Whether the block has attention after each resnet.
    pub fn has_attention(&self) -> bool {
        matches!(self, BlockType::AttnDownBlock2D | BlockType::AttnUpBlock2D)
    }

    /// Whether it belongs in `down_block_types`.
    pub fn is_down(&self) -> bool {
        matches!(self, BlockType::DownBlock2D | BlockType::AttnDownBlock2D)
    }

    /// Whether it belongs in `up_block_types`.
    pub fn is_up(&self) -> bool {
        matches!(self, BlockType::UpBlock2D | BlockType::AttnUpBlock2D)
    }

    /// `[DownBlock2D, AttnDownBlock2D, …]`, for messages.
    pub fn list(blocks: &[BlockType]) -> String {
        let names: Vec<&str> = blocks.iter().map(BlockType::name).collect();
        format!("[{}]", names.join(", "))
    }
}

impl Serialize for BlockType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for BlockType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(BlockType::parse(&String::deserialize(d)?))
    }
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
        self.down_block_types[i].has_attention()
    }

    /// Whether up block `i` (counted from the lowest resolution) is an `AttnUpBlock2D`.
    pub fn up_has_attention(&self, i: usize) -> bool {
        self.up_block_types[i].has_attention()
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
        // Block names with diffusers' UNetRes prefix resolve like diffusers does, to the same
        // config as the plain names; written back, they take the canonical name.
        let plain = UNetConfig::from_json(&base.to_string()).unwrap();
        let mut v = base;
        v["down_block_types"][0] = "UNetResDownBlock2D".into();
        v["up_block_types"][2] = "UNetResAttnUpBlock2D".into();
        let prefixed = UNetConfig::from_json(&v.to_string()).unwrap();
        assert_eq!(prefixed, plain);
        assert!(!prefixed.to_json().contains("UNetRes"));
    }

    #[test]
    fn block_types_resolve_once() {
        use BlockType::*;
        for (name, block, attn) in [
            ("DownBlock2D", DownBlock2D, false),
            ("UNetResAttnDownBlock2D", AttnDownBlock2D, true),
            ("UpBlock2D", UpBlock2D, false),
            ("AttnUpBlock2D", AttnUpBlock2D, true),
        ] {
            let b = BlockType::parse(name);
            assert_eq!(b, block, "{name}");
            assert_eq!(b.has_attention(), attn, "{name}");
            assert_eq!(b.is_down(), name.contains("Down"), "{name}");
            assert_eq!(BlockType::parse(b.name()), b, "{name} round trip");
        }
        // Unknown names are kept as written, and validation names them with the key.
        let skip = BlockType::parse("SkipDownBlock2D");
        assert_eq!(skip, Unsupported("SkipDownBlock2D".into()));
        assert!(!skip.is_down() && !skip.is_up() && !skip.has_attention());
        let mut c = UNetConfig::from_json(ddpm_cifar10()).unwrap();
        c.down_block_types[2] = skip;
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("down_block_types") && msg.contains("SkipDownBlock2D"),
            "{msg}"
        );
        // An up block among the down blocks is refused too.
        let mut c = UNetConfig::from_json(ddpm_cifar10()).unwrap();
        c.down_block_types[0] = UpBlock2D;
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("down_block_types") && msg.contains("UpBlock2D"),
            "{msg}"
        );
    }
}
