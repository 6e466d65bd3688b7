//! Named model configurations: the original DDPM CIFAR-10 network and our small ones.

use super::UNetConfig;
use crate::error::{Error, Result};

/// Names accepted by [`preset`].
pub const PRESETS: &[&str] = &["cifar10", "mnist", "emoji"];

/// The config called `name`:
/// - `cifar10`: google/ddpm-cifar10-32 (Ho et al.'s CIFAR-10 model, 35.7 M parameters);
/// - `mnist`: the small 1×28×28 model this project trains and ships (also for Fashion-MNIST);
/// - `emoji`: its 3×32×32 colour sibling (wider: 32/64/64 channels) for the emoji dataset.
pub fn preset(name: &str) -> Result<UNetConfig> {
    let json = match name {
        "cifar10" => {
            r#"{
            "sample_size": 32, "in_channels": 3, "out_channels": 3,
            "block_out_channels": [128, 256, 256, 256],
            "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
            "layers_per_block": 2, "attention_head_dim": null, "norm_num_groups": 32,
            "norm_eps": 1e-6, "downsample_padding": 0, "flip_sin_to_cos": false, "freq_shift": 1,
            "act_fn": "silu", "center_input_sample": false, "mid_block_scale_factor": 1,
            "resnet_time_scale_shift": "default", "time_embedding_type": "positional"
        }"#
        }
        "mnist" => {
            r#"{
            "sample_size": 28, "in_channels": 1, "out_channels": 1,
            "block_out_channels": [16, 32, 64],
            "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
            "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
            "layers_per_block": 1, "attention_head_dim": 32, "norm_num_groups": 8,
            "norm_eps": 1e-5, "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0
        }"#
        }
        "emoji" => {
            r#"{
            "sample_size": 32, "in_channels": 3, "out_channels": 3,
            "block_out_channels": [32, 64, 64],
            "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
            "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
            "layers_per_block": 1, "attention_head_dim": 32, "norm_num_groups": 8,
            "norm_eps": 1e-5, "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0
        }"#
        }
        _ => {
            return Err(Error::setting(
                "preset",
                format!(
                    "unknown model preset `{name}` (known: {})",
                    PRESETS.join(", ")
                ),
            ))
        }
    };
    UNetConfig::from_json(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_a_valid_config() {
        for name in PRESETS {
            let cfg = preset(name).unwrap();
            cfg.validate().unwrap();
            let expected = match *name {
                "cifar10" => Some(35_746_307), // google/ddpm-cifar10-32's state_dict
                "mnist" => Some(686_769),      // the shipped model (assets/mnist)
                _ => None,
            };
            if let Some(n) = expected {
                assert_eq!(cfg.num_params(), n, "{name}");
            }
        }
        let emoji = preset("emoji").unwrap();
        assert_eq!((emoji.in_channels, emoji.sample_hw()), (3, Some((32, 32))));
        assert!(preset("nope")
            .unwrap_err()
            .to_string()
            .contains("cifar10, mnist, emoji"));
    }
}
