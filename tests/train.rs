//! Training end to end: the tape's gradients against finite differences of the CPU U-Net, the
//! loss going down on a tiny dataset, and resume reproducing an uninterrupted run exactly.

use ddpm::model::cpu_unet::{self, HostTensor};
use ddpm::model::{UNetConfig, Weights};
use ddpm::schedule::SchedulerConfig;
use ddpm::testing::{gpu, Rng};
use ddpm::train::{checkpoint, TrainOptions, Trainer};

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

/// L = mean((UNet(x_t, t) − ε)²) on the CPU, in f64 accumulation.
fn cpu_loss(cfg: &UNetConfig, w: &Weights, xt: &HostTensor, t: &[f32], noise: &[f32]) -> f64 {
    let eps = cpu_unet::forward(cfg, w, xt, t).unwrap();
    eps.data
        .iter()
        .zip(noise)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / noise.len() as f64
}

#[test]
fn tape_gradients_match_finite_differences() {
    let gpu = gpu();
    let cfg = tiny_config();
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
    let (loss, grads, xt, noise) = pollster::block_on(trainer.gradients(gpu, &x0, 3)).unwrap();
    let xt = HostTensor {
        shape: vec![2, 1, 8, 8],
        data: xt,
    };
    let t = trainer.timesteps(3);
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
            || name.contains("conv_out"))
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
