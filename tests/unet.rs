//! The whole U-Net: GPU vs the CPU reference, and both vs diffusers' own outputs (fixtures made
//! by `scripts/make_fixtures.py` from random-weight `UNet2DModel`s).
//!
//! Tolerance vs diffusers: 2e-5 absolute on outputs of magnitude ~1. Both sides compute in f32
//! with different summation orders (torch's conv algorithms vs our direct loops), which leaves
//! differences of ~1e-6 after ~30 layers; 2e-5 is 10× that margin, yet far below any real bug
//! (a wrong padding, head split or scale moves outputs by 1e-2 or more).

use ddpm::model::cpu_unet::{self, HostTensor};
use ddpm::model::weights::StoreDtype;
use ddpm::model::{gpu_weight_bytes, presets, GpuWeights, UNet, UNetConfig, WeightBytes, Weights};
use ddpm::testing::{assert_close, err_text, gpu, Rng};

struct Fixture {
    cfg: UNetConfig,
    weights: Weights,
    x: HostTensor,
    t: Vec<f32>,
    eps: Vec<f32>,
    eps_f64: Vec<f32>,
}

fn fixture(name: &str) -> Fixture {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let (cfg, weights) = Weights::load_dir(&dir).unwrap();
    let (shape, x) = ddpm::npy::read(dir.join("x.npy")).unwrap();
    let (_, t) = ddpm::npy::read(dir.join("t.npy")).unwrap();
    let (_, eps) = ddpm::npy::read(dir.join("eps.npy")).unwrap();
    let (_, eps_f64) = ddpm::npy::read(dir.join("eps_f64.npy")).unwrap();
    Fixture {
        cfg,
        weights,
        x: HostTensor { shape, data: x },
        t,
        eps,
        eps_f64,
    }
}

fn gpu_forward(cfg: &UNetConfig, weights: &Weights, x: &HostTensor, t: &[f32]) -> Vec<f32> {
    gpu_forward_with(cfg, weights, GpuWeights::Auto, x, t).0
}

/// The GPU forward with the conv weights stored as `storage` says, and what they took.
fn gpu_forward_with(
    cfg: &UNetConfig,
    weights: &Weights,
    storage: GpuWeights,
    x: &HostTensor,
    t: &[f32],
) -> (Vec<f32>, WeightBytes) {
    let gpu = gpu();
    let unet = UNet::with_weights(gpu, cfg.clone(), weights, storage).unwrap();
    let plan = unet.plan_for(gpu, &x.shape).unwrap();
    let eps = pollster::block_on(plan.run(gpu, &x.data, t)).unwrap();
    (eps, unet.weight_bytes())
}

#[test]
fn gpu_and_cpu_match_diffusers() {
    for name in ["unet_tiny", "unet_ddpm_style", "unet_celebahq_style"] {
        let f = fixture(name);
        let cpu = cpu_unet::forward(&f.cfg, &f.weights, &f.x, &f.t).unwrap();
        assert_close(
            &cpu.data,
            &f.eps,
            2e-5,
            0.0,
            &format!("{name}: CPU vs diffusers"),
        );
        assert_close(
            &cpu.data,
            &f.eps_f64,
            2e-5,
            0.0,
            &format!("{name}: CPU vs diffusers f64"),
        );
        // Automatic storage: the f16 fixtures' conv weights stay f16 on the GPU.
        let (gpu, bytes) = gpu_forward_with(&f.cfg, &f.weights, GpuWeights::Auto, &f.x, &f.t);
        let f16_file = name != "unet_tiny";
        assert!(bytes.conv_tensors > 0, "{name}");
        assert_eq!(
            bytes.f16_tensors,
            if f16_file { bytes.conv_tensors } else { 0 },
            "{name}: conv weights kept f16"
        );
        assert_close(
            &gpu,
            &f.eps,
            2e-5,
            0.0,
            &format!("{name}: GPU vs diffusers"),
        );
        assert_close(
            &gpu,
            &f.eps_f64,
            2e-5,
            0.0,
            &format!("{name}: GPU vs diffusers f64"),
        );
    }
}

#[test]
fn fixture_outputs_depend_on_the_timestep() {
    // Guards the parity test against a degenerate fixture: different t ⇒ different ε̂.
    let f = fixture("unet_tiny");
    let per = f.eps.len() / f.t.len();
    let diff: f32 = (0..per)
        .map(|i| (f.eps[i] - f.eps[per + i]).abs())
        .sum::<f32>()
        / per as f32;
    assert!(diff > 1e-2, "mean |Δε̂| between samples {diff}");
}

#[test]
fn gpu_matches_cpu_on_random_configs() {
    // Awkward shapes: non-square input, odd channel counts per group, 3 heads, padding 0.
    let configs = [
        r#"{"sample_size": [8, 12], "in_channels": 2, "out_channels": 3,
            "block_out_channels": [12, 24], "down_block_types": ["AttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "AttnUpBlock2D"], "layers_per_block": 1,
            "norm_num_groups": 3, "attention_head_dim": 4, "downsample_padding": 0,
            "flip_sin_to_cos": false, "freq_shift": 1, "mid_block_scale_factor": 1.41421356}"#,
        r#"{"sample_size": 4, "in_channels": 1, "out_channels": 1,
            "block_out_channels": [8], "down_block_types": ["AttnDownBlock2D"],
            "up_block_types": ["AttnUpBlock2D"], "layers_per_block": 2,
            "norm_num_groups": 4, "attention_head_dim": 8, "add_attention": false}"#,
    ];
    for (i, json) in configs.iter().enumerate() {
        let cfg = UNetConfig::from_json(json).unwrap();
        let weights = perturbed_init(&cfg, i as u64);
        let (h, w) = cfg.sample_hw().unwrap();
        for batch in [1, 3] {
            let shape = vec![batch, cfg.in_channels, h, w];
            let mut rng = Rng::new(7 + batch as u64);
            let x = HostTensor {
                data: rng.normals(shape.iter().product(), 1.0),
                shape,
            };
            let t: Vec<f32> = (0..batch).map(|k| (k * 433 % 1000) as f32).collect();
            let cpu = cpu_unet::forward(&cfg, &weights, &x, &t).unwrap();
            let gpu = gpu_forward(&cfg, &weights, &x, &t);
            assert_close(
                &gpu,
                &cpu.data,
                2e-5,
                1e-4,
                &format!("config {i} batch {batch}"),
            );
        }
    }
}

/// With f16 storage the GPU U-Net matches the CPU U-Net on the same f16-exact weights (an f16
/// safetensors file, kept f16 by `auto`, and forced `f16` on the same values held as f32);
/// `auto` keeps f32 weights f32, and f16 storage takes exactly half of the conv weights' bytes.
#[test]
fn gpu_f16_weights_match_cpu_on_f16_exact_weights() {
    let configs = [
        // Attention (stacked q/k/v, to_out as 1×1 conv), odd channels per group, 3 heads.
        r#"{"sample_size": [8, 12], "in_channels": 2, "out_channels": 3,
            "block_out_channels": [12, 24], "down_block_types": ["AttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "AttnUpBlock2D"], "layers_per_block": 1,
            "norm_num_groups": 3, "attention_head_dim": 4, "downsample_padding": 0,
            "flip_sin_to_cos": false, "freq_shift": 1}"#,
        r#"{"sample_size": 16, "in_channels": 1, "out_channels": 1,
            "block_out_channels": [16, 32, 32], "down_block_types":
            ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"], "up_block_types":
            ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1,
            "norm_num_groups": 8, "attention_head_dim": 8}"#,
    ];
    for (i, json) in configs.iter().enumerate() {
        let cfg = UNetConfig::from_json(json).unwrap();
        let w32 = perturbed_init(&cfg, 20 + i as u64);
        let bytes = w32.to_safetensors_bytes(StoreDtype::F16).unwrap();
        let w16 = Weights::from_bytes(&bytes, "f16 file").unwrap();
        let (h, w) = cfg.sample_hw().unwrap();
        let shape = vec![2, cfg.in_channels, h, w];
        let x = HostTensor {
            data: Rng::new(30 + i as u64).normals(shape.iter().product(), 1.0),
            shape,
        };
        let t = [17.0, 901.0];
        let cpu = cpu_unet::forward(&cfg, &w16, &x, &t).unwrap();

        let (auto, auto_bytes) = gpu_forward_with(&cfg, &w16, GpuWeights::Auto, &x, &t);
        assert!(auto_bytes.conv_tensors > 0);
        assert_eq!(
            auto_bytes.f16_tensors, auto_bytes.conv_tensors,
            "config {i}"
        );
        assert_close(
            &auto,
            &cpu.data,
            2e-5,
            1e-4,
            &format!("config {i}: auto (f16)"),
        );
        assert_eq!(
            gpu_weight_bytes(&cfg, &w16, GpuWeights::Auto).unwrap(),
            auto_bytes,
            "config {i}: the byte count without a device"
        );

        // The same f16-exact values held as f32 (no file dtype): auto keeps f32, f16 forced.
        let mut exact_f32 = w16.clone();
        let names: Vec<String> = w16.iter().map(|(n, _)| n.to_string()).collect();
        for name in &names {
            let t = w16.tensor(name).unwrap().clone();
            exact_f32.insert(name.clone(), t.shape, t.data).unwrap();
        }
        let f32_bytes = gpu_weight_bytes(&cfg, &exact_f32, GpuWeights::Auto).unwrap();
        assert_eq!(f32_bytes.f16_tensors, 0, "config {i}: auto on f32 data");
        let (forced, forced_bytes) = gpu_forward_with(&cfg, &exact_f32, GpuWeights::F16, &x, &t);
        assert_eq!(forced_bytes, auto_bytes);
        assert_close(
            &forced,
            &cpu.data,
            2e-5,
            1e-4,
            &format!("config {i}: f16 forced"),
        );
        let (plain, plain_bytes) = gpu_forward_with(&cfg, &w16, GpuWeights::F32, &x, &t);
        assert_eq!(plain_bytes.f16_tensors, 0);
        assert_close(
            &plain,
            &cpu.data,
            2e-5,
            1e-4,
            &format!("config {i}: f32 forced"),
        );
        // f16 halves exactly the conv weights' bytes.
        assert_eq!(
            plain_bytes.total - auto_bytes.total,
            auto_bytes.f16,
            "config {i}"
        );
        assert!(
            2 * auto_bytes.f16 > plain_bytes.total / 2,
            "config {i}: mostly conv weights"
        );

        // f32 weights that f16 cannot hold exactly stay f32 under auto.
        let auto32 = gpu_weight_bytes(&cfg, &w32, GpuWeights::Auto).unwrap();
        assert_eq!((auto32.f16_tensors, auto32.total), (0, plain_bytes.total));
    }

    // Forcing f16 on a value f16 cannot hold, and an unknown storage name, are clear errors.
    let cfg = UNetConfig::from_json(configs[0]).unwrap();
    let mut big = perturbed_init(&cfg, 5);
    big.get_mut("conv_in.weight").unwrap().data[3] = 1e5;
    let r = UNet::with_weights(gpu(), cfg.clone(), &big, GpuWeights::F16);
    let e = err_text(r.map(|_| ()), "1e5 in f16");
    assert!(
        e.contains("conv2d: weight: conv_in.weight: 100000 is beyond f16's range"),
        "{e}"
    );
    assert!(UNet::with_weights(gpu(), cfg, &big, GpuWeights::Auto).is_ok());
    let e = err_text(GpuWeights::parse("bf16"), "bf16");
    assert!(
        e.contains("GPU weight storage `bf16`: expected one of auto, f32, f16"),
        "{e}"
    );
}

/// `Weights::init` with the GroupNorm affine parameters moved off 1/0, so they matter.
fn perturbed_init(cfg: &UNetConfig, seed: u64) -> Weights {
    let mut w = Weights::init(cfg, seed).unwrap();
    let mut rng = Rng::new(seed + 100);
    let names: Vec<String> = w.iter().map(|(n, _)| n.to_string()).collect();
    for name in names {
        let t = w.get_mut(&name).unwrap();
        if t.shape.len() == 1 {
            for v in &mut t.data {
                *v += 0.2 * rng.normal();
            }
        }
    }
    w
}

#[test]
fn bad_inputs_are_clear_errors() {
    let gpu = gpu();
    let cfg = presets::preset("mnist").unwrap();
    let weights = Weights::init(&cfg, 0).unwrap();
    let unet = UNet::new(gpu, cfg.clone(), &weights).unwrap();
    // Wrong channel count, size not divisible by 4, empty batch.
    for shape in [[1, 3, 28, 28], [1, 1, 30, 30], [0, 1, 28, 28]] {
        let err = unet.plan_for(gpu, &shape).err().expect("must fail");
        assert!(
            matches!(&err, ddpm::Error::Operand { op, operand: "x", .. } if op == "U-Net"),
            "{err:?}"
        );
        let err = err.to_string();
        assert!(err.contains("U-Net: x: must be [N, 1, H, W]"), "{err}");
    }
    // Timestep count mismatch on the CPU path.
    let x = HostTensor {
        shape: vec![2, 1, 28, 28],
        data: vec![0.0; 2 * 28 * 28],
    };
    let err = cpu_unet::forward(&cfg, &weights, &x, &[1.0]).unwrap_err();
    assert!(
        matches!(
            err,
            ddpm::Error::Operand {
                operand: "timesteps",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("one timestep per sample"), "{err}");
    // Weights of another config.
    let other = Weights::init(&presets::preset("cifar10").unwrap(), 0).unwrap();
    let err = UNet::new(gpu, cfg, &other)
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("conv_in.weight"), "{err}");
}

#[test]
fn plan_reuses_activation_buffers() {
    let gpu = gpu();
    let cfg = presets::preset("mnist").unwrap();
    let weights = Weights::init(&cfg, 0).unwrap();
    let unet = UNet::new(gpu, cfg.clone(), &weights).unwrap();
    let plan = unet.plan(gpu, 2).unwrap();
    let (used, naive) = (plan.activation_bytes, plan.activation_bytes_without_reuse);
    assert!(
        used * 2 < naive,
        "activations take {used} bytes, {naive} without reuse"
    );
}

/// An input over the device's binding limit runs in smaller batches (the last one padded) and
/// gives the same ε̂ as one batch; a limit no batch fits is still a clear error.
#[test]
fn forward_splits_batches_that_exceed_the_device_limits() {
    // Few channels at 32×32: activations (~100 KB per image) outweigh every weight (≤ 10 KB).
    let cfg = UNetConfig::from_json(
        r#"{"sample_size": 32, "in_channels": 1, "out_channels": 1,
            "block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "UpBlock2D"], "layers_per_block": 1,
            "norm_num_groups": 4}"#,
    )
    .unwrap();
    let weights = perturbed_init(&cfg, 3);
    let n = 5;
    let shape = [n, 1, 32, 32];
    let x = Rng::new(5).normals(n * 32 * 32, 1.0);
    let t: Vec<f32> = (0..n).map(|i| (i * 199) as f32).collect();
    let gpu = gpu();
    let unet = UNet::new(gpu, cfg.clone(), &weights).unwrap();
    let (whole, batch) = pollster::block_on(unet.forward(gpu, &shape, &x, &t, None)).unwrap();
    assert_eq!(batch, n);

    let mut small = ddpm::gpu::Gpu::new_blocking().unwrap();
    let mut batches = Vec::new();
    for cap_kib in [512, 256, 128, 64, 32, 16, 8] {
        small.limits.max_storage_buffer_binding_size = cap_kib << 10;
        let run = UNet::new(&small, cfg.clone(), &weights)
            .and_then(|unet| pollster::block_on(unet.forward(&small, &shape, &x, &t, None)));
        match run {
            Ok((eps, batch)) => {
                assert_close(&eps, &whole, 1e-5, 1e-5, &format!("batch {batch}"));
                batches.push(batch);
            }
            Err(e) => {
                assert!(e.to_string().contains("maxStorageBufferBindingSize"), "{e}");
                break;
            }
        }
    }
    assert!(
        batches.contains(&2) && batches.contains(&1),
        "batches used as the limit fell: {batches:?}"
    );
}

/// diffusers strips a `UNetRes` prefix from block type names (`UNetResAttnDownBlock2D` is
/// `AttnDownBlock2D`): such a config computes the same ε̂ as diffusers' on both backends.
#[test]
fn unet_res_prefixed_block_names_match_diffusers() {
    let f = fixture("unet_ddpm_style");
    let json = f.cfg.to_json();
    let prefixed = json
        .replace("\"AttnDownBlock2D\"", "\"UNetResAttnDownBlock2D\"")
        .replace("\"DownBlock2D\"", "\"UNetResDownBlock2D\"")
        .replace("\"AttnUpBlock2D\"", "\"UNetResAttnUpBlock2D\"")
        .replace("\"UpBlock2D\"", "\"UNetResUpBlock2D\"");
    assert!(prefixed.contains("UNetResAttnDownBlock2D") && prefixed.contains("UNetResUpBlock2D"));
    let cfg = UNetConfig::from_json(&prefixed).unwrap();
    let cpu = cpu_unet::forward(&cfg, &f.weights, &f.x, &f.t).unwrap();
    assert_close(&cpu.data, &f.eps, 2e-5, 0.0, "CPU, UNetRes names");
    let gpu = gpu_forward(&cfg, &f.weights, &f.x, &f.t);
    assert_close(&gpu, &f.eps, 2e-5, 0.0, "GPU, UNetRes names");
}

/// `center_input_sample: true` feeds 2x − 1 to the net, as diffusers does: the fixture's
/// diffusers outputs for x are reproduced from (x + 1) / 2 on both backends.
#[test]
fn center_input_sample_is_honoured() {
    let f = fixture("unet_tiny");
    let mut cfg = f.cfg.clone();
    cfg.center_input_sample = true;
    let half = HostTensor {
        shape: f.x.shape.clone(),
        data: f.x.data.iter().map(|v| (v + 1.0) / 2.0).collect(),
    };
    let cpu = cpu_unet::forward(&cfg, &f.weights, &half, &f.t).unwrap();
    assert_close(&cpu.data, &f.eps, 2e-5, 0.0, "CPU, centred input");
    let gpu = gpu_forward(&cfg, &f.weights, &half, &f.t);
    assert_close(&gpu, &f.eps, 2e-5, 0.0, "GPU, centred input");
    // Without centring the same input gives something else.
    let plain = cpu_unet::forward(&f.cfg, &f.weights, &half, &f.t).unwrap();
    let diff = plain
        .data
        .iter()
        .zip(&f.eps)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff > 1e-2, "centring changed nothing ({diff})");
}

/// A class-conditional model (`num_class_embeds`, diffusers' `class_labels`) matches diffusers on
/// both backends; labels are required, checked, and change the output.
#[test]
fn class_conditional_model_matches_diffusers() {
    let f = fixture("unet_class_cond");
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unet_class_cond");
    let (_, labels) = ddpm::npy::read(dir.join("labels.npy")).unwrap();
    assert_eq!(f.cfg.num_class_embeds, Some(11));
    let cpu = cpu_unet::forward_with_labels(&f.cfg, &f.weights, &f.x, &f.t, Some(&labels)).unwrap();
    assert_close(
        &cpu.data,
        &f.eps,
        2e-5,
        0.0,
        "CPU vs diffusers, class labels",
    );
    let gpu = gpu();
    let unet = UNet::new(gpu, f.cfg.clone(), &f.weights).unwrap();
    let (eps, _) =
        pollster::block_on(unet.forward(gpu, &f.x.shape, &f.x.data, &f.t, Some(&labels))).unwrap();
    assert_close(&eps, &f.eps, 2e-5, 0.0, "GPU vs diffusers, class labels");

    let other: Vec<f32> = labels.iter().map(|l| (l + 1.0) % 11.0).collect();
    let moved =
        cpu_unet::forward_with_labels(&f.cfg, &f.weights, &f.x, &f.t, Some(&other)).unwrap();
    let diff = moved
        .data
        .iter()
        .zip(&f.eps)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff > 1e-3, "the label changed nothing ({diff})");

    // Every label problem is a setting error about the class labels.
    let err = |r: ddpm::Result<ddpm::model::cpu_unet::HostTensor>| {
        let e = r.unwrap_err();
        assert!(
            matches!(
                e,
                ddpm::Error::Setting {
                    name: "class labels",
                    ..
                }
            ),
            "{e:?}"
        );
        e.to_string()
    };
    let missing = err(cpu_unet::forward(&f.cfg, &f.weights, &f.x, &f.t));
    assert!(missing.contains("class-conditional"), "{missing}");
    let bad = err(cpu_unet::forward_with_labels(
        &f.cfg,
        &f.weights,
        &f.x,
        &f.t,
        Some(&[0.0, 11.0, 2.0]),
    ));
    assert!(
        bad.contains("class label 11") && bad.contains("0..=10"),
        "{bad}"
    );
    let frac = err(cpu_unet::forward_with_labels(
        &f.cfg,
        &f.weights,
        &f.x,
        &f.t,
        Some(&[0.5, 1.0, 2.0]),
    ));
    assert!(frac.contains("0.5"), "{frac}");
    let plain = fixture("unet_tiny");
    let unwanted = err(cpu_unet::forward_with_labels(
        &plain.cfg,
        &plain.weights,
        &plain.x,
        &plain.t,
        Some(&[1.0, 2.0]),
    ));
    assert!(unwanted.contains("no class embedding"), "{unwanted}");
}
