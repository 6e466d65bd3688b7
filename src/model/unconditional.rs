//! A class-conditional model's null class as an unconditional model: diffusers adds
//! `class_embedding.weight[c]` to the time embedding `time_embedding.linear_2(…)`, so the
//! prediction for the null class is that of the same U-Net without a class embedding whose
//! `linear_2` bias holds the null row added in. `ddpm train --init` uses it to continue a
//! conditional model as an unconditional one.

use super::config::UNetConfig;
use super::weights::Weights;
use crate::error::{Error, Result};

const CLASS_EMBEDDING: &str = "class_embedding.weight";
const TIME_BIAS: &str = "time_embedding.linear_2.bias";

/// The unconditional model that predicts exactly what the conditional `config`/`weights`
/// predict for its null class (`ddpm_null_class`): the class embedding dropped, its null row
/// added to `time_embedding.linear_2.bias`, the guidance keys removed from the config.
pub fn fold_null_class(config: &UNetConfig, weights: &Weights) -> Result<(UNetConfig, Weights)> {
    let setting = |reason: String| Error::setting("null class", reason);
    let Some(classes) = config.num_class_embeds else {
        return Err(setting("the model is not class-conditional".into()));
    };
    let Some(null) = config.ddpm_null_class else {
        return Err(setting(
            "the model names no null class (config.json's ddpm_null_class), so it has no \
             unconditional prediction to keep"
                .into(),
        ));
    };
    config.validate()?;
    weights.validate(config)?;
    let table = weights.tensor(CLASS_EMBEDDING)?;
    let dim = table.shape[1];
    let row = &table.data[null * dim..(null + 1) * dim];
    debug_assert!(null < classes);
    let bias = weights.tensor(TIME_BIAS)?;
    let folded: Vec<f32> = bias.data.iter().zip(row).map(|(b, r)| b + r).collect();

    let mut weights = weights.clone();
    weights.remove(CLASS_EMBEDDING);
    weights.insert(TIME_BIAS, vec![dim], folded)?;
    let config = UNetConfig {
        num_class_embeds: None,
        class_embed_type: None,
        ddpm_null_class: None,
        ddpm_guidance_scale: None,
        ddpm_class_names: None,
        ..config.clone()
    };
    weights.validate(&config)?;
    Ok((config, weights))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu_unet;
    use crate::testing::{assert_close, Rng};

    fn conditional() -> (UNetConfig, Weights) {
        let mut cfg = crate::model::presets::preset("mnist").unwrap();
        cfg.num_class_embeds = Some(11);
        cfg.ddpm_null_class = Some(10);
        cfg.ddpm_guidance_scale = Some(2.0);
        let mut w = Weights::init(&cfg, 3).unwrap();
        // Make every row (and the bias) matter: init may leave them small or zero.
        let mut rng = Rng::new(5);
        for name in [CLASS_EMBEDDING, TIME_BIAS] {
            let t = w.get_mut(name).unwrap();
            t.data = rng.normals(t.data.len(), 1.0);
        }
        (cfg, w)
    }

    #[test]
    fn folded_model_predicts_the_null_class() {
        let (cfg, w) = conditional();
        let (ucfg, uw) = fold_null_class(&cfg, &w).unwrap();
        assert_eq!(ucfg.num_class_embeds, None);
        assert_eq!(ucfg.ddpm_guidance_scale, None);
        assert!(uw.get(CLASS_EMBEDDING).is_none());
        let mut rng = Rng::new(9);
        let x = cpu_unet::HostTensor {
            shape: vec![2, 1, 28, 28],
            data: rng.normals(2 * 784, 1.0),
        };
        let t = [17.0, 640.0];
        let want = cpu_unet::forward_with_labels(&cfg, &w, &x, &t, Some(&[10.0, 10.0])).unwrap();
        let got = cpu_unet::forward(&ucfg, &uw, &x, &t).unwrap();
        assert_close(&got.data, &want.data, 1e-5, 1e-5, "folded vs null class");
        // A real class predicts something else (the fold is not a no-op).
        let other = cpu_unet::forward_with_labels(&cfg, &w, &x, &t, Some(&[3.0, 3.0])).unwrap();
        let diff: f32 = other
            .data
            .iter()
            .zip(&got.data)
            .map(|(a, b)| (a - b).abs())
            .sum();
        assert!(diff > 1e-2, "class 3 and the null class agree ({diff})");
    }

    #[test]
    fn refuses_models_without_a_null_class() {
        let (cfg, w) = conditional();
        let e = crate::testing::setting_err_text(
            fold_null_class(
                &UNetConfig {
                    ddpm_null_class: None,
                    ..cfg.clone()
                },
                &w,
            ),
            "no null class",
            "null class",
        );
        assert!(e.contains("ddpm_null_class"), "{e}");
        let plain = crate::model::presets::preset("mnist").unwrap();
        let pw = Weights::init(&plain, 1).unwrap();
        let e = crate::testing::setting_err_text(
            fold_null_class(&plain, &pw),
            "unconditional",
            "null class",
        );
        assert!(e.contains("not class-conditional"), "{e}");
    }
}
