//! Reading and writing diffusers `UNet2DModel` files and `.npy` arrays, against fixtures made by
//! `scripts/make_fixtures.py` with real diffusers.

use std::path::{Path, PathBuf};

use ddpm::model::config::UNetConfig;
use ddpm::model::weights::{expected_params, StoreDtype, Weights, WEIGHTS_FILE};
use ddpm::{npy, Error};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `params.json`: `[[name, shape], ...]` from diffusers' `state_dict()`.
fn params_json(dir: &Path) -> Vec<(String, Vec<usize>)> {
    let text = std::fs::read_to_string(dir.join("params.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn config_of(dir: &Path) -> UNetConfig {
    UNetConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("model_files")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn loads_unet_tiny() {
    let dir = fixtures().join("unet_tiny");
    let (c, w) = Weights::load_dir(&dir).unwrap();
    assert_eq!(c.sample_size, Some([16, 16]));
    assert_eq!((c.in_channels, c.out_channels), (1, 1));
    assert_eq!(c.block_out_channels, [16, 32, 32]);
    assert_eq!(c.layers_per_block, 1);
    assert_eq!(c.groups(), 8);
    assert_eq!(c.heads_for(32), 4);
    assert!(c.flip_sin_to_cos);
    assert_eq!(c.freq_shift, 0.0);
    assert_eq!(c.norm_eps, 1e-5);
    assert_eq!(w.len(), params_json(&dir).len());
    assert_eq!(w.num_params(), c.num_params());
    let q = w.tensor("down_blocks.1.attentions.0.to_q.weight").unwrap();
    assert_eq!(q.shape, [32, 32]);
    // GroupNorm params were perturbed away from 1/0 by the fixture script.
    let gn = w.tensor("conv_norm_out.weight").unwrap();
    assert!(gn.data.iter().any(|&v| v != 1.0));
}

#[test]
fn loads_unet_ddpm_style_f16_with_legacy_names() {
    let dir = fixtures().join("unet_ddpm_style");
    // The file itself stores float16 tensors under the pre-0.13 attention names.
    let bytes = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st
        .names()
        .iter()
        .any(|n| n.ends_with("attentions.0.query.weight")));
    assert!(st
        .names()
        .iter()
        .any(|n| n.ends_with("attentions.0.proj_attn.bias")));
    assert!(!st.names().iter().any(|n| n.contains("to_q")));
    assert!(st.iter().all(|(_, v)| v.dtype() == safetensors::Dtype::F16));

    let (c, w) = Weights::load_dir(&dir).unwrap();
    assert_eq!(c.attention_head_dim, None);
    assert_eq!(c.heads_for(32), 1);
    assert!(!c.flip_sin_to_cos);
    assert_eq!(c.freq_shift, 1.0);
    assert_eq!(c.downsample_padding, 0);
    assert_eq!(c.norm_eps, 1e-6);
    for n in ["to_q", "to_k", "to_v", "to_out.0"] {
        let t = w
            .tensor(&format!("mid_block.attentions.0.{n}.weight"))
            .unwrap();
        assert_eq!(t.shape, [32, 32]);
    }
    assert!(w
        .iter()
        .all(|(n, _)| !n.contains("query") && !n.contains("proj_attn")));
    // Values are exactly the f16 ones.
    for (name, t) in w.iter() {
        for &v in &t.data {
            assert_eq!(half::f16::from_f32(v).to_f32(), v, "{name}");
        }
    }
}

#[test]
fn expected_params_match_diffusers_state_dict() {
    let mut dirs = vec![
        fixtures().join("unet_tiny"),
        fixtures().join("unet_ddpm_style"),
        fixtures().join("unet_celebahq_style"),
        fixtures().join("unet_class_cond"),
    ];
    let mut extra: Vec<PathBuf> = std::fs::read_dir(fixtures().join("params"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    extra.sort();
    assert!(extra.len() >= 5, "params/ fixtures missing");
    dirs.extend(extra);
    for dir in dirs {
        let c = config_of(&dir);
        let want = params_json(&dir);
        let got = expected_params(&c);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{}: parameter {i}", dir.display());
        }
        assert_eq!(got.len(), want.len(), "{}", dir.display());
        let n: usize = want.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(c.num_params(), n, "{}", dir.display());
    }
}

#[test]
fn fixture_arrays_and_npy_roundtrip() {
    let cases = [("unet_tiny", vec![2, 1, 16, 16], vec![0.0, 999.0])];
    let cases =
        cases
            .into_iter()
            .chain([("unet_ddpm_style", vec![3, 3, 8, 8], vec![1.0, 500.0, 999.0])]);
    for (name, shape, ts) in cases {
        let dir = fixtures().join(name);
        let (xs, x) = npy::read(dir.join("x.npy")).unwrap();
        assert_eq!(xs, shape);
        let (ts_shape, t) = npy::read(dir.join("t.npy")).unwrap();
        assert_eq!((ts_shape, t), (vec![ts.len()], ts));
        let (es, eps) = npy::read(dir.join("eps.npy")).unwrap();
        assert_eq!(es, shape);
        // eps_f64.npy is '<f8'; read as f32 it agrees with the f32 reference to ~1e-6.
        let (es64, eps64) = npy::read(dir.join("eps_f64.npy")).unwrap();
        assert_eq!(es64, shape);
        let worst = eps
            .iter()
            .zip(&eps64)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-4,
            "{name}: f32 vs f64 reference differ by {worst}"
        );
        assert!(eps.iter().any(|v| v.abs() > 0.1));

        let p = scratch(name).join("x.npy");
        npy::write(&p, &xs, &x).unwrap();
        assert_eq!(npy::read(&p).unwrap(), (xs, x));
    }
}

#[test]
fn save_dir_roundtrip_f32_and_f16() {
    let (c, w) = Weights::load_dir(fixtures().join("unet_tiny")).unwrap();
    let d = scratch("tiny_f32");
    w.save_dir(&d, &c, StoreDtype::F32).unwrap();
    let (c2, w2) = Weights::load_dir(&d).unwrap();
    assert_eq!(c2, c);
    for (name, t) in w.iter() {
        assert_eq!(w2.tensor(name).unwrap(), t, "{name}");
    }
    // The config we write parses as the same config diffusers wrote.
    let theirs = std::fs::read_to_string(fixtures().join("unet_tiny/config.json")).unwrap();
    assert_eq!(UNetConfig::from_json(&theirs).unwrap(), c2);

    // ddpm_style weights are f16 already: saving as F16 is lossless.
    let (c, w) = Weights::load_dir(fixtures().join("unet_ddpm_style")).unwrap();
    let d = scratch("ddpm_style_f16");
    w.save_dir(&d, &c, StoreDtype::F16).unwrap();
    let (_, w2) = Weights::load_dir(&d).unwrap();
    for (name, t) in w.iter() {
        assert_eq!(w2.tensor(name).unwrap(), t, "{name}");
    }
}

#[test]
fn bf16_f64_supported_other_dtypes_rejected() {
    use safetensors::tensor::{Dtype, TensorView};
    let bf: Vec<u8> = [1.5f32, -0.25]
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect();
    let f64s: Vec<u8> = [2.5f64].iter().flat_map(|v| v.to_le_bytes()).collect();
    let bytes = safetensors::serialize(
        [
            ("a", TensorView::new(Dtype::BF16, vec![2], &bf).unwrap()),
            ("b", TensorView::new(Dtype::F64, vec![1, 1], &f64s).unwrap()),
        ],
        None,
    )
    .unwrap();
    let w = Weights::from_bytes(&bytes, "mem.safetensors").unwrap();
    assert_eq!(w.tensor("a").unwrap().data, [1.5, -0.25]);
    assert_eq!(w.tensor("b").unwrap().shape, [1, 1]);

    let ints = [0u8; 16];
    let bytes = safetensors::serialize(
        [(
            "steps",
            TensorView::new(Dtype::I64, vec![2], &ints).unwrap(),
        )],
        None,
    )
    .unwrap();
    let msg = Weights::from_bytes(&bytes, "mem.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("steps") && msg.contains("I64") && msg.contains("mem.safetensors"),
        "{msg}"
    );
}

/// The tiny fixture's config text and weight bytes.
fn tiny_files() -> (String, Vec<u8>) {
    let dir = fixtures().join("unet_tiny");
    (
        std::fs::read_to_string(dir.join("config.json")).unwrap(),
        std::fs::read(dir.join(WEIGHTS_FILE)).unwrap(),
    )
}

fn weights_error(err: Error) -> String {
    assert!(
        matches!(err, Error::Weights(_)),
        "expected Error::Weights, got {err:?}"
    );
    err.to_string()
}

#[test]
fn truncated_and_garbage_safetensors_are_clear_errors() {
    let (cfg, bytes) = tiny_files();
    for cut in [0, 5, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = Weights::load_bytes(&cfg, &bytes[..cut], "tiny.safetensors").unwrap_err();
        let msg = weights_error(err);
        assert!(msg.contains("tiny.safetensors"), "{msg}");
        assert!(msg.contains("truncated or corrupt"), "{msg}");
    }
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let msg = weights_error(Weights::from_bytes(&garbage, "junk.bin").unwrap_err());
    assert!(
        msg.contains("junk.bin") && msg.contains("not a valid safetensors file"),
        "{msg}"
    );

    // On disk: the error names the path.
    let d = scratch("truncated");
    std::fs::write(d.join("config.json"), &cfg).unwrap();
    std::fs::write(d.join(WEIGHTS_FILE), &bytes[..bytes.len() - 3]).unwrap();
    let msg = weights_error(Weights::load_dir(&d).unwrap_err());
    assert!(
        msg.contains(&d.join(WEIGHTS_FILE).display().to_string()),
        "{msg}"
    );

    // A missing weights file is an I/O error naming the path.
    std::fs::remove_file(d.join(WEIGHTS_FILE)).unwrap();
    let msg = Weights::load_dir(&d).unwrap_err().to_string();
    assert!(msg.contains(WEIGHTS_FILE), "{msg}");
}

#[test]
fn wrong_shape_missing_and_unexpected_tensors_are_named() {
    let (cfg, bytes) = tiny_files();
    let w = Weights::from_bytes(&bytes, "tiny.safetensors").unwrap();

    let mut bad = w.clone();
    let name = "up_blocks.1.resnets.0.conv1.weight";
    let t = bad.remove(name).unwrap();
    assert_eq!(t.shape, [32, 64, 3, 3]);
    bad.insert(name, vec![32, 63, 3, 3], vec![0.0; 32 * 63 * 9])
        .unwrap();
    let b = bad.to_safetensors_bytes(StoreDtype::F32).unwrap();
    let msg = weights_error(Weights::load_bytes(&cfg, &b, "bad_shape.safetensors").unwrap_err());
    assert!(msg.contains("bad_shape.safetensors"), "{msg}");
    assert!(msg.contains(name), "{msg}");
    assert!(
        msg.contains("[32, 63, 3, 3]") && msg.contains("[32, 64, 3, 3]"),
        "{msg}"
    );

    let mut bad = w.clone();
    bad.remove("mid_block.attentions.0.to_v.bias").unwrap();
    let b = bad.to_safetensors_bytes(StoreDtype::F16).unwrap();
    let msg = weights_error(Weights::load_bytes(&cfg, &b, "missing.safetensors").unwrap_err());
    assert!(
        msg.contains("missing tensor `mid_block.attentions.0.to_v.bias`"),
        "{msg}"
    );
    assert!(
        msg.contains("[32]") && msg.contains("missing.safetensors"),
        "{msg}"
    );

    let mut bad = w.clone();
    bad.insert("class_embedding.weight", vec![10, 64], vec![0.0; 640])
        .unwrap();
    let msg = weights_error(
        bad.validate(&UNetConfig::from_json(&cfg).unwrap())
            .unwrap_err(),
    );
    assert!(
        msg.contains("unexpected tensor `class_embedding.weight`"),
        "{msg}"
    );

    // Weights of one model checked against another config: many problems, summarised.
    let other = config_of(&fixtures().join("unet_ddpm_style"));
    let msg = weights_error(w.validate(&other).unwrap_err());
    assert!(msg.contains("more"), "{msg}");
}

#[test]
fn unsupported_config_is_named() {
    let (cfg, bytes) = tiny_files();
    let cases = [
        ("\"act_fn\": \"silu\"", "\"act_fn\": \"gelu\"", "act_fn"),
        (
            "\"resnet_time_scale_shift\": \"default\"",
            "\"resnet_time_scale_shift\": \"scale_shift\"",
            "scale_shift",
        ),
        (
            "\"norm_num_groups\": 8",
            "\"norm_num_groups\": 6",
            "norm_num_groups",
        ),
        (
            "\"attention_head_dim\": 8",
            "\"attention_head_dim\": 5",
            "attention_head_dim",
        ),
        ("\"sample_size\": 16", "\"sample_size\": 18", "sample_size"),
        (
            "\"center_input_sample\"",
            "\"cross_attention_dim\": 64, \"center_input_sample\"",
            "cross_attention_dim",
        ),
    ];
    for (from, to, needle) in cases {
        assert!(cfg.contains(from), "fixture config lacks {from}");
        let bad = cfg.replace(from, to);
        let err = Weights::load_bytes(&bad, &bytes, "tiny.safetensors").unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(needle), "`{msg}` should name {needle}");
    }
    // From a directory, the message also names the config file.
    let d = scratch("bad_config");
    std::fs::write(
        d.join("config.json"),
        cfg.replace("\"act_fn\": \"silu\"", "\"act_fn\": \"relu\""),
    )
    .unwrap();
    std::fs::write(d.join(WEIGHTS_FILE), &bytes).unwrap();
    let msg = Weights::load_dir(&d).unwrap_err().to_string();
    assert!(
        msg.contains("act_fn") && msg.contains("relu") && msg.contains("config.json"),
        "{msg}"
    );
}

#[test]
fn npy_wrong_dtype_names_file_and_dtype() {
    let d = scratch("npy_dtype");
    let p = d.join("labels.npy");
    let mut b = npy::to_bytes(&[2], &[0.0, 0.0]).unwrap();
    // Turn the '<f4' header into '<i4' (same width), as np.save of an int32 array would write.
    let i = b.windows(3).position(|w| w == b"<f4").unwrap();
    b[i + 1] = b'i';
    std::fs::write(&p, &b).unwrap();
    let msg = npy::read(&p).unwrap_err().to_string();
    assert!(msg.contains("labels.npy") && msg.contains("'<i4'"), "{msg}");

    let p = d.join("missing.npy");
    let msg = npy::read(&p).unwrap_err().to_string();
    assert!(msg.contains("missing.npy"), "{msg}");
}
