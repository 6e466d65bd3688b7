//! What the page can run on a device as a browser may give one: WebGPU's default limits, no
//! optional features (no subgroups) and kernels chosen by the heuristic (`Gpu::browser_like`),
//! on the same adapter the other tests use. The U-Net matches diffusers, a guided generation
//! matches the full device's, a training step runs, and a model beyond the limits is refused
//! naming what does not fit.

use std::sync::OnceLock;

use ddpm::generation::{Generation, Generator, Request};
use ddpm::gpu::Gpu;
use ddpm::model::{UNet, Weights};
use ddpm::sampler::{SamplerKind, SamplerOptions, SamplerPlan};
use ddpm::schedule::SchedulerConfig;
use ddpm::testing::assert_close;

fn browser() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::browser_like_blocking().expect("a GPU adapter (lavapipe works)"))
}

fn fixture_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn the_device_has_webgpu_default_limits_and_no_subgroups() {
    let gpu = browser();
    let defaults = wgpu::Limits::default();
    assert_eq!(
        gpu.limits.max_storage_buffer_binding_size,
        defaults.max_storage_buffer_binding_size
    );
    assert_eq!(
        gpu.limits.max_compute_workgroup_storage_size,
        defaults.max_compute_workgroup_storage_size
    );
    assert_eq!(gpu.limits.max_compute_invocations_per_workgroup, 256);
    assert!(!gpu.has_subgroups_of(8) && !gpu.has_subgroups_of(16) && !gpu.has_subgroups_of(32));
}

#[test]
fn the_unet_matches_diffusers_under_default_limits() {
    let gpu = browser();
    for name in ["unet_tiny", "unet_ddpm_style", "unet_celebahq_style"] {
        let dir = fixture_dir(name);
        let (cfg, weights) = Weights::load_dir(&dir).unwrap();
        let (shape, x) = ddpm::npy::read(dir.join("x.npy")).unwrap();
        let (_, t) = ddpm::npy::read(dir.join("t.npy")).unwrap();
        let (_, eps) = ddpm::npy::read(dir.join("eps.npy")).unwrap();
        let unet = UNet::new(gpu, cfg, &weights).unwrap();
        let plan = unet.plan_for(gpu, &shape).unwrap();
        let got = pollster::block_on(plan.run(gpu, &x, &t)).unwrap();
        assert_close(
            &got,
            &eps,
            2e-5,
            0.0,
            &format!("{name} under default limits"),
        );
    }
    gpu.check().unwrap();
    // Without subgroups a CPU adapter (SwiftShader in the browser; lavapipe here) gets the
    // straight-line conv kernel for every conv of the forward.
    if gpu.is_cpu() {
        let convs: Vec<(String, String)> = gpu
            .kernel_choices()
            .into_iter()
            .filter(|(key, _)| key.starts_with("conv2d ["))
            .collect();
        assert!(!convs.is_empty());
        for (key, variant) in convs {
            assert_eq!(variant, "unrolled", "{key}");
        }
    }
}

#[test]
fn a_guided_generation_matches_the_full_device() {
    let dir = fixture_dir("unet_class_cond");
    let (mut cfg, weights) = Weights::load_dir(&dir).unwrap();
    // The last class embedding serves as the unconditional one.
    cfg.ddpm_null_class = cfg.num_class_embeds.map(|n| n - 1);
    let sched = SchedulerConfig::default();
    let mut options = SamplerOptions::new(&sched, SamplerKind::Ddim { steps: 4, eta: 1.0 }, 3);
    options.guidance = Some(2.5);
    let classes: Vec<f32> = cfg.classes().iter().take(3).map(|&c| c as f32).collect();
    let run = |gpu: &Gpu| {
        let mut generator = Generator::new(UNet::new(gpu, cfg.clone(), &weights).unwrap());
        let request = Request {
            n: classes.len(),
            sampler: SamplerPlan::new(&sched, &options).unwrap(),
            classes: Some(classes.clone()),
            batch_cap: 2,
            initial: None,
            frames_budget: Some(1 << 20),
        };
        let mut g = Generation::new(&mut generator, gpu, request).unwrap();
        g.run_blocking(&mut generator, gpu, 3, |_| {}).unwrap();
        g.into_parts().0
    };
    let full = run(ddpm::testing::gpu());
    let browser = run(browser());
    assert!(full.iter().all(|v| v.is_finite()));
    assert_close(&browser, &full, 1e-4, 1e-4, "browser-like vs full device");
}

#[test]
fn a_training_step_runs_under_default_limits() {
    use ddpm::train::{TrainOptions, Trainer};
    let gpu = browser();
    let (cfg, weights) = Weights::load_dir(fixture_dir("unet_tiny")).unwrap();
    let options = TrainOptions {
        batch: 4,
        ..TrainOptions::default()
    };
    let mut trainer = Trainer::new(
        gpu,
        cfg.clone(),
        SchedulerConfig::default(),
        &weights,
        options,
    )
    .unwrap();
    let per: usize = cfg.in_channels * 16 * 16;
    let x0: Vec<f32> = (0..4 * per)
        .map(|i| ((i % 13) as f32 / 6.0) - 1.0)
        .collect();
    trainer.step(gpu, &x0).unwrap();
    let loss = trainer.read_loss_blocking(gpu).unwrap();
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    gpu.check().unwrap();
}

/// A model whose single image does not fit the device is refused before anything is
/// allocated, with a message naming what needs how much against which limit — by the plan and
/// by the generation path the page and `ddpm sample` share.
#[test]
fn a_model_beyond_the_limits_says_what_does_not_fit() {
    let gpu = browser();
    // One level of 32 channels at 2048×2048: a 512 MiB activation, past 128 MiB bindings.
    let cfg = ddpm::model::UNetConfig::from_json(
        r#"{"sample_size": 2048, "in_channels": 1, "out_channels": 1,
            "block_out_channels": [32], "layers_per_block": 1, "norm_num_groups": 8,
            "down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"]}"#,
    )
    .unwrap();
    let weights = Weights::init(&cfg, 0).unwrap();
    let unet = UNet::new(gpu, cfg, &weights).unwrap();
    let limit = gpu.limits.max_storage_buffer_binding_size;
    let check = |e: ddpm::Error| {
        let msg = e.to_string();
        assert!(matches!(e, ddpm::Error::Limit { .. }), "{msg}");
        assert!(
            msg.contains(&format!("needs {} bytes", 32u64 << 24))
                && msg.contains(&format!("at most {limit} bytes")),
            "{msg}"
        );
    };
    check(unet.plan(gpu, 1).err().expect("refused"));
    let sched = SchedulerConfig::default();
    let opts = SamplerOptions::new(&sched, SamplerKind::Ddim { steps: 2, eta: 0.0 }, 0);
    let mut generator = Generator::new(unet);
    let request = Request {
        n: 1,
        sampler: SamplerPlan::new(&sched, &opts).unwrap(),
        classes: None,
        batch_cap: 1,
        initial: None,
        frames_budget: None,
    };
    check(
        Generation::new(&mut generator, gpu, request)
            .err()
            .expect("refused"),
    );
}
