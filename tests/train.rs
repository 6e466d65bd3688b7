//! Training end to end: the tape's gradients against finite differences of the CPU U-Net, the
//! loss going down on a tiny dataset, and resume reproducing an uninterrupted run exactly.

use ddpm::model::cpu_unet::{self, HostTensor};
use ddpm::model::{UNetConfig, Weights};
use ddpm::schedule::SchedulerConfig;
use ddpm::testing::{gpu, setting_err_text, Rng};
use ddpm::train::{checkpoint, LrDecay, TrainOptions, Trainer};

fn tiny_config() -> UNetConfig {
    UNetConfig::from_json(
        r#"{"sample_size": 8, "in_channels": 1, "out_channels": 1,
            "block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
            "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1,
            "norm_num_groups": 4, "attention_head_dim": 8}"#,
    )
    .unwrap()
}

/// A tiny dataset: 8 images 8×8 of bars and blocks in [−1, 1].
fn tiny_data() -> Vec<Vec<f32>> {
    (0..8)
        .map(|k| {
            (0..64)
                .map(|i| {
                    let (y, x) = (i / 8, i % 8);
                    let on = match k % 4 {
                        0 => x == k / 2 + 2,
                        1 => y == k / 2 + 2,
                        2 => (x + y) % (k / 2 + 2) == 0,
                        _ => x < 4 + k / 4 && y < 4,
                    };
                    if on {
                        1.0
                    } else {
                        -1.0
                    }
                })
                .collect()
        })
        .collect()
}

fn batch(data: &[Vec<f32>], step: u64, n: usize) -> Vec<f32> {
    (0..n)
        .flat_map(|i| data[(step as usize * n + i) % data.len()].clone())
        .collect()
}

fn options(batch: usize) -> TrainOptions {
    TrainOptions {
        batch,
        lr: 2e-3,
        warmup: 10,
        seed: 11,
        ..TrainOptions::default()
    }
}

fn perturbed_weights(cfg: &UNetConfig) -> Weights {
    let mut w = Weights::init(cfg, 3).unwrap();
    let mut rng = Rng::new(5);
    let names: Vec<String> = w.iter().map(|(n, _)| n.to_string()).collect();
    for n in names {
        let t = w.get_mut(&n).unwrap();
        if t.shape.len() == 1 {
            t.data.iter_mut().for_each(|v| *v += 0.1 * rng.normal());
        }
    }
    w
}

/// L = mean((UNet(x_t, t[, labels]) − ε)²) on the CPU, in f64 accumulation.
fn cpu_loss_labelled(
    cfg: &UNetConfig,
    w: &Weights,
    xt: &HostTensor,
    t: &[f32],
    labels: Option<&[f32]>,
    noise: &[f32],
) -> f64 {
    let eps = cpu_unet::forward_with_labels(cfg, w, xt, t, labels).unwrap();
    eps.data
        .iter()
        .zip(noise)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / noise.len() as f64
}

#[test]
fn tape_gradients_match_finite_differences() {
    tape_gradients_case(tiny_config());
}

/// With diffusers' input centring (x ← 2x − 1 before conv_in) the tape is still exact.
#[test]
fn tape_gradients_with_centred_input() {
    let mut cfg = tiny_config();
    cfg.center_input_sample = true;
    tape_gradients_case(cfg);
}

/// A class-conditional model (3 classes + the null row): the class embedding's gradient too.
#[test]
fn tape_gradients_with_class_labels() {
    let mut cfg = tiny_config();
    cfg.num_class_embeds = Some(4);
    cfg.ddpm_null_class = Some(3);
    tape_gradients_case(cfg);
}

fn tape_gradients_case(cfg: UNetConfig) {
    let gpu = gpu();
    let weights = perturbed_weights(&cfg);
    let trainer = Trainer::new(
        gpu,
        cfg.clone(),
        SchedulerConfig::default(),
        &weights,
        options(2),
    )
    .unwrap();
    let x0 = batch(&tiny_data(), 0, 2);
    let classes: Option<&[u8]> = cfg.num_class_embeds.map(|_| &[2u8, 0][..]);
    let (loss, grads, xt, noise) =
        pollster::block_on(trainer.gradients(gpu, &x0, 3, classes)).unwrap();
    let xt = HostTensor {
        shape: vec![2, 1, 8, 8],
        data: xt,
    };
    let t = trainer.timesteps(3);
    let labels = classes.map(|c| trainer.step_labels(3, c).unwrap());
    let labels = labels.as_deref();
    let cpu_loss = |cfg: &UNetConfig, w: &Weights, xt: &HostTensor, t: &[f32], noise: &[f32]| {
        cpu_loss_labelled(cfg, w, xt, t, labels, noise)
    };
    let l0 = cpu_loss(&cfg, &weights, &xt, &t, &noise);
    assert!(
        (l0 - loss as f64).abs() < 1e-4 * l0.max(1.0),
        "GPU loss {loss} vs CPU {l0}"
    );

    let mut rng = Rng::new(9);
    let mut checked = 0;
    for (name, _) in weights.iter() {
        // A sample of parameters from every kind of layer.
        if !(name.contains("conv_in")
            || name.contains("norm1")
            || name.contains("time_embedding.linear_1")
            || name.contains("time_emb_proj")
            || name.contains("attentions.0.to_")
            || name.contains("attentions.0.group_norm")
            || name.contains("conv_shortcut")
            || name.contains("downsamplers")
            || name.contains("upsamplers")
            || name.contains("conv_out")
            || name.contains("class_embedding"))
        {
            continue;
        }
        let g = &grads.tensor(name).unwrap().data;
        for _ in 0..2 {
            let i = rng.range(0, g.len() - 1);
            let h = 1e-2f32;
            let mut wp = weights.clone();
            wp.get_mut(name).unwrap().data[i] += h;
            let mut wm = weights.clone();
            wm.get_mut(name).unwrap().data[i] -= h;
            let fd = (cpu_loss(&cfg, &wp, &xt, &t, &noise) - cpu_loss(&cfg, &wm, &xt, &t, &noise))
                / (2.0 * h as f64);
            let an = g[i] as f64;
            assert!(
                (fd - an).abs() <= 2e-3 + 0.05 * fd.abs().max(an.abs()),
                "{name}[{i}]: finite difference {fd}, tape {an}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} gradient entries checked");
}

#[test]
fn loss_goes_down_on_a_tiny_dataset() {
    let gpu = gpu();
    let cfg = tiny_config();
    let weights = Weights::init(&cfg, 1).unwrap();
    let data = tiny_data();
    let mut trainer =
        Trainer::new(gpu, cfg, SchedulerConfig::default(), &weights, options(8)).unwrap();
    let mut losses = Vec::new();
    for step in 0..300 {
        trainer.step(gpu, &batch(&data, step, 8)).unwrap();
        losses.push(trainer.read_loss_blocking(gpu).unwrap());
    }
    let first: f32 = losses[..30].iter().sum::<f32>() / 30.0;
    let last: f32 = losses[270..].iter().sum::<f32>() / 30.0;
    assert!(
        last < 0.5 * first,
        "mean loss of the first 30 steps {first}, of the last 30 {last}"
    );
}

#[test]
fn resume_reproduces_the_uninterrupted_run() {
    let gpu = gpu();
    let cfg = tiny_config();
    let weights = Weights::init(&cfg, 2).unwrap();
    let data = tiny_data();
    let sched = SchedulerConfig::default();
    let run = |trainer: &mut Trainer, steps: std::ops::Range<u64>| {
        for s in steps {
            trainer.step(gpu, &batch(&data, s, 4)).unwrap();
        }
        trainer.read_loss_blocking(gpu).unwrap()
    };
    let mut straight = Trainer::new(gpu, cfg.clone(), sched.clone(), &weights, options(4)).unwrap();
    let loss_straight = run(&mut straight, 0..8);

    let mut first = Trainer::new(gpu, cfg.clone(), sched.clone(), &weights, options(4)).unwrap();
    run(&mut first, 0..4);
    let path = std::env::temp_dir().join(format!("ddpm-resume-{}.safetensors", std::process::id()));
    pollster::block_on(first.save_checkpoint(gpu, &path, serde_json::json!({"note": "test"})))
        .unwrap();
    drop(first);
    let ckpt = checkpoint::load(&path).unwrap();
    assert_eq!(ckpt.state.step, 4);
    assert_eq!(ckpt.state.extra["note"], "test");
    let mut resumed = Trainer::new(
        gpu,
        ckpt.config().unwrap(),
        ckpt.scheduler().unwrap(),
        &ckpt.weights().unwrap(),
        ckpt.state.options,
    )
    .unwrap();
    resumed.restore(gpu, &ckpt).unwrap();
    let loss_resumed = run(&mut resumed, 4..8);
    assert_eq!(
        loss_straight.to_bits(),
        loss_resumed.to_bits(),
        "{loss_straight} vs {loss_resumed}"
    );
    let a = pollster::block_on(straight.weights(gpu, true)).unwrap();
    let b = pollster::block_on(resumed.weights(gpu, true)).unwrap();
    for (name, t) in a.iter() {
        assert_eq!(
            t.data,
            b.tensor(name).unwrap().data,
            "EMA {name} differs after resume"
        );
    }
    let _ = std::fs::remove_file(path);
}

/// A checkpoint records the kernel variants its run used; a new device (here one told to force
/// other variants) that pins them continues the run bit for bit.
#[test]
fn resume_on_a_new_device_reuses_the_recorded_kernels() {
    let gpu = gpu();
    let cfg = tiny_config();
    let weights = Weights::init(&cfg, 3).unwrap();
    let data = tiny_data();
    let sched = SchedulerConfig::default();
    let run = |gpu: &ddpm::gpu::Gpu, trainer: &mut Trainer, steps: std::ops::Range<u64>| {
        for s in steps {
            trainer.step(gpu, &batch(&data, s, 4)).unwrap();
        }
        trainer.read_loss_blocking(gpu).unwrap()
    };
    let mut straight = Trainer::new(gpu, cfg.clone(), sched.clone(), &weights, options(4)).unwrap();
    let loss_straight = run(gpu, &mut straight, 0..6);
    let mut first = Trainer::new(gpu, cfg.clone(), sched.clone(), &weights, options(4)).unwrap();
    run(gpu, &mut first, 0..3);
    let path =
        std::env::temp_dir().join(format!("ddpm-kernels-{}.safetensors", std::process::id()));
    pollster::block_on(first.save_checkpoint(gpu, &path, serde_json::json!({}))).unwrap();
    let ckpt = checkpoint::load(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let recorded = &ckpt.state.kernels;
    assert!(
        recorded.keys().any(|k| k.starts_with("conv2d dx")),
        "no dx choice recorded: {recorded:?}"
    );

    let other = ddpm::gpu::Gpu::new_blocking().unwrap();
    other.set_kernel_policy(ddpm::gpu::KernelPolicy::Force("direct".into()));
    other.pin_kernel_choices(recorded);
    let mut resumed = Trainer::new(
        &other,
        ckpt.config().unwrap(),
        ckpt.scheduler().unwrap(),
        &ckpt.weights().unwrap(),
        ckpt.state.options,
    )
    .unwrap();
    resumed.restore(&other, &ckpt).unwrap();
    let chosen = other.kernel_choices();
    for (key, variant) in recorded {
        assert_eq!(chosen.get(key), Some(variant), "{key}");
    }
    let loss_resumed = run(&other, &mut resumed, 3..6);
    assert_eq!(
        loss_straight.to_bits(),
        loss_resumed.to_bits(),
        "{loss_straight} vs {loss_resumed}"
    );
}

#[test]
fn corrupt_checkpoint_is_a_clear_error() {
    let path =
        std::env::temp_dir().join(format!("ddpm-bad-ckpt-{}.safetensors", std::process::id()));
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let err = checkpoint::load(&path)
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("not a usable checkpoint"), "{err}");
    let _ = std::fs::remove_file(path);
}

/// The EMA decay warms up as diffusers' `EMAModel` does, min(d, (1 + step)/(10 + step)), and
/// the EMA weights after the first steps follow it exactly.
#[test]
fn ema_warms_up_like_diffusers() {
    let gpu = gpu();
    let cfg = tiny_config();
    let weights = Weights::init(&cfg, 4).unwrap();
    let data = tiny_data();
    let mut trainer =
        Trainer::new(gpu, cfg, SchedulerConfig::default(), &weights, options(2)).unwrap();
    assert_eq!(trainer.ema_decay(0), 0.1);
    assert_eq!(trainer.ema_decay(1), 2.0 / 11.0);
    assert_eq!(trainer.ema_decay(100_000), 0.999);
    // EMA_0 = the initial parameters; EMA_{s+1} = EMA_s − (1 − d_s)(EMA_s − θ_{s+1}).
    let mut want = weights.clone();
    for step in 0..3u64 {
        trainer.step(gpu, &batch(&data, step, 2)).unwrap();
        let params = pollster::block_on(trainer.weights(gpu, false)).unwrap();
        let ema = pollster::block_on(trainer.weights(gpu, true)).unwrap();
        let d = 0.999f32.min((1 + step) as f32 / (10 + step) as f32);
        let mut moved = 0f32;
        for (name, p) in params.iter() {
            let w = want.get_mut(name).unwrap();
            for (e, &p) in w.data.iter_mut().zip(&p.data) {
                let before = *e;
                *e -= (1.0 - d) * (*e - p);
                moved = moved.max((*e - before).abs());
            }
            ddpm::testing::assert_close(
                &ema.tensor(name).unwrap().data,
                &w.data,
                1e-7,
                1e-5,
                &format!("EMA of {name} after step {step}"),
            );
        }
        // A fixed 0.999 would have moved the EMA 1000× less than the warm-up does.
        assert!(moved > 1e-5, "step {step}: EMA moved at most {moved}");
    }
}

#[test]
fn learning_rate_warms_up_then_follows_its_decay() {
    let gpu = gpu();
    let cfg = tiny_config();
    let weights = Weights::init(&cfg, 4).unwrap();
    let lr_of = |lr_decay: LrDecay| {
        let options = TrainOptions {
            warmup: 10,
            lr_decay,
            ..options(2)
        };
        let trainer = Trainer::new(
            gpu,
            cfg.clone(),
            SchedulerConfig::default(),
            &weights,
            options,
        )
        .unwrap();
        move |step: u64| trainer.lr(step)
    };
    let constant = lr_of(LrDecay::Constant);
    assert_eq!(constant(0), 2e-3 / 10.0);
    assert_eq!(constant(9), 2e-3);
    assert_eq!(constant(1_000_000), 2e-3);
    let cosine = lr_of(LrDecay::Cosine {
        start: 10,
        end: 110,
    });
    assert_eq!(cosine(4), constant(4), "the warm-up comes first");
    assert_eq!(cosine(10), 2e-3);
    assert!((cosine(60) - 1e-3).abs() < 1e-9, "halfway: {}", cosine(60));
    assert!((cosine(35) - 2e-3 * 0.853_553_4).abs() < 1e-9);
    assert_eq!(cosine(110), 0.0);
    assert_eq!(cosine(500), 0.0);
    for s in 10..110 {
        assert!(cosine(s + 1) < cosine(s), "not decreasing at step {s}");
    }

    let backwards = TrainOptions {
        lr_decay: LrDecay::Cosine { start: 50, end: 50 },
        ..options(2)
    };
    let err = backwards.validate().unwrap_err().to_string();
    assert!(
        err.contains("lr_decay") && err.contains("start < end"),
        "{err}"
    );

    // Checkpoints written before the decay existed read as constant.
    let mut json = serde_json::to_value(options(2)).unwrap();
    json.as_object_mut().unwrap().remove("lr_decay");
    let old: TrainOptions = serde_json::from_value(json).unwrap();
    assert_eq!(old.lr_decay, LrDecay::Constant);
    let round = serde_json::to_value(TrainOptions {
        lr_decay: LrDecay::Cosine { start: 3, end: 9 },
        ..options(2)
    })
    .unwrap();
    assert_eq!(
        round["lr_decay"],
        serde_json::json!({"kind": "cosine", "start": 3, "end": 9})
    );
}

/// A checkpoint file as (state JSON, tensors as (name, dtype, shape, bytes)).
type Parts = (
    serde_json::Value,
    Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>,
);

fn split_checkpoint(bytes: &[u8]) -> Parts {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let state = meta.metadata().as_ref().unwrap()["ddpm_trainer_state"].clone();
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    (serde_json::from_str(&state).unwrap(), tensors)
}

fn join_checkpoint((state, tensors): &Parts) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta =
        std::collections::HashMap::from([("ddpm_trainer_state".to_string(), state.to_string())]);
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// Checkpoint contents are checked by name, shape, dtype and range against the model before
/// anything is built from them (these used to panic or abort).
#[test]
fn checkpoint_contents_are_validated() {
    let gpu = gpu();
    let cfg = tiny_config();
    let weights = Weights::init(&cfg, 6).unwrap();
    let trainer = Trainer::new(gpu, cfg, SchedulerConfig::default(), &weights, options(2)).unwrap();
    let path = std::env::temp_dir().join(format!(
        "ddpm-ckpt-check-{}.safetensors",
        std::process::id()
    ));
    pollster::block_on(trainer.save_checkpoint(gpu, &path, serde_json::json!({}))).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let ckpt = checkpoint::from_bytes(&bytes, "ck").unwrap();
    assert_eq!(
        ckpt.weights().unwrap(),
        weights_named(&weights, "checkpoint")
    );

    let qkv = "param/down_blocks.1.attentions.0.to_qkv.weight";
    type Edit = Box<dyn Fn(&mut Parts)>;
    let set_tensor = |name: &'static str, shape: Vec<usize>| -> Edit {
        Box::new(move |p: &mut Parts| {
            let t = p.1.iter_mut().find(|t| t.0 == name).unwrap();
            t.3 = vec![0; 4 * shape.iter().product::<usize>()];
            t.2 = shape.clone();
        })
    };
    let cases: Vec<(Edit, &str)> = vec![
        (set_tensor(qkv, vec![]), "has shape [], expected [48, 16]"),
        (set_tensor(qkv, vec![47, 16]), "has shape [47, 16]"),
        (
            set_tensor("ema/conv_in.bias", vec![3]),
            "`ema/conv_in.bias` has shape [3]",
        ),
        (
            Box::new(|p: &mut Parts| {
                let t =
                    p.1.iter_mut()
                        .find(|t| t.0 == "adam_m/conv_in.bias")
                        .unwrap();
                t.1 = safetensors::Dtype::F16;
                t.3.truncate(t.3.len() / 2);
            }),
            "is F16, expected F32",
        ),
        (
            Box::new(|p: &mut Parts| p.1.retain(|t| t.0 != "adam_v/conv_out.weight")),
            "missing, e.g. `adam_v/conv_out.weight`",
        ),
        (
            Box::new(|p: &mut Parts| {
                p.1.push((
                    "param/extra".into(),
                    safetensors::Dtype::F32,
                    vec![1],
                    vec![0; 4],
                ))
            }),
            "unexpected tensor `param/extra`",
        ),
        (
            Box::new(|p: &mut Parts| {
                let s = p.0["scheduler"]
                    .as_str()
                    .unwrap()
                    .replace("1000,", "10000000000,");
                p.0["scheduler"] = s.into();
            }),
            "num_train_timesteps",
        ),
        (
            Box::new(|p: &mut Parts| {
                let s = p.0["config"].as_str().unwrap().replace(
                    "\"layers_per_block\": 1",
                    "\"layers_per_block\": 4294967296",
                );
                p.0["config"] = s.into();
            }),
            "layers_per_block",
        ),
        (
            Box::new(|p: &mut Parts| p.0["options"]["batch"] = 10_000_000_000u64.into()),
            "`batch` = 10000000000",
        ),
        (
            Box::new(|p: &mut Parts| p.0["options"]["ema_decay"] = 2.0.into()),
            "ema_decay",
        ),
        (
            Box::new(|p: &mut Parts| p.0["step"] = u64::MAX.into()),
            "step 18446744073709551615",
        ),
    ];
    for (edit, needle) in cases {
        let mut parts = split_checkpoint(&bytes);
        edit(&mut parts);
        let err = checkpoint::from_bytes(&join_checkpoint(&parts), "ck")
            .err()
            .expect("must be refused")
            .to_string();
        assert!(
            err.contains(needle) && err.contains("ck"),
            "`{err}` should say {needle:?}"
        );
    }
}

/// `weights` relabelled (`Weights` equality includes the source label).
fn weights_named(weights: &Weights, source: &str) -> Weights {
    let mut w = Weights::new(source);
    for (n, t) in weights.iter() {
        w.insert(n, t.shape.clone(), t.data.clone()).unwrap();
    }
    w
}

/// A batch over the device's limits is a clear error, and `largest_fitting_batch` finds the
/// exact boundary: that batch builds, one more does not.
#[test]
fn largest_fitting_batch_is_the_exact_boundary() {
    let cfg = tiny_config();
    let weights = perturbed_weights(&cfg);
    let sched = SchedulerConfig::default();
    let mut small = ddpm::gpu::Gpu::new_blocking().unwrap();
    small.limits.max_storage_buffer_binding_size = 64 << 10;
    let build =
        |batch: usize| Trainer::new(&small, cfg.clone(), sched.clone(), &weights, options(batch));
    let err = build(64).err().expect("batch 64 exceeds 64 KiB bindings");
    assert!(matches!(err, ddpm::Error::Limit { .. }), "{err}");
    let fit = Trainer::largest_fitting_batch(&small, &cfg, &sched, &weights, options(64))
        .unwrap()
        .expect("some batch fits");
    assert!((2..64).contains(&fit), "{fit}");
    assert!(build(fit).is_ok());
    assert!(matches!(build(fit + 1), Err(ddpm::Error::Limit { .. })));
    assert_eq!(
        small.kernel_policy(),
        ddpm::gpu::KernelPolicy::from_env().unwrap()
    );
    // Nothing fits when even the weights exceed the limit.
    small.limits.max_storage_buffer_binding_size = 1 << 10;
    let none = Trainer::largest_fitting_batch(&small, &cfg, &sched, &weights, options(64));
    assert_eq!(none.unwrap(), None);
}

/// Label dropout replaces labels by the null class at about the requested rate, the same way
/// every time for a step (so resume is exact), differently from step to step.
#[test]
fn label_dropout_is_seeded_and_near_its_rate() {
    let mut cfg = tiny_config();
    cfg.num_class_embeds = Some(4);
    cfg.ddpm_null_class = Some(3);
    let weights = perturbed_weights(&cfg);
    let mut o = options(64);
    o.label_dropout = 0.25;
    let trainer =
        Trainer::new(gpu(), cfg.clone(), SchedulerConfig::default(), &weights, o).unwrap();
    let classes: Vec<u8> = (0..64).map(|i| (i % 3) as u8).collect();
    let a = trainer.step_labels(5, &classes).unwrap();
    assert_eq!(a, trainer.step_labels(5, &classes).unwrap());
    assert_ne!(a, trainer.step_labels(6, &classes).unwrap());
    let dropped = a.iter().filter(|&&l| l == 3.0).count();
    assert!(
        (6..=26).contains(&dropped),
        "{dropped} of 64 dropped at p = 0.25"
    );
    for (l, &c) in a.iter().zip(&classes) {
        assert!(*l == 3.0 || *l == c as f32);
    }
    // The null class is not a data class; dropout needs a null class.
    let e = setting_err_text(
        trainer.step_labels(5, &[3; 64]),
        "the null class as a data label",
        "class labels",
    );
    assert!(
        e.contains("data label 3 is not one of the model's 3 classes"),
        "{e}"
    );
    let mut plain = cfg;
    plain.ddpm_null_class = None;
    let err = Trainer::new(gpu(), plain, SchedulerConfig::default(), &weights, o)
        .err()
        .unwrap();
    assert!(err.to_string().contains("ddpm_null_class"), "{err}");
}
