//! Schedules, scheduler configs, DDIM timesteps, sampling plans and single reverse steps vs
//! diffusers' own (fixtures by `scripts/make_scheduler_fixtures.py`), on the CPU and the GPU.

use std::path::{Path, PathBuf};

use ddpm::cpu::sampling as cpu;
use ddpm::gpu::Tensor;
use ddpm::ops::sampling::{self as ops, StepNoise};
use ddpm::sampler::{plan, SamplerKind, SamplerOptions, StepCoefs};
use ddpm::schedule::{BetaSchedule, Schedule, SchedulerConfig, TimestepSpacing, VarianceType};
use ddpm::testing::{assert_close, gpu, max_abs_diff};
use ddpm::Error;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scheduler")
}

fn index() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("index.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Fixture `name.npy`: (shape, data).
fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    ddpm::npy::read(fixture_dir().join(format!("{name}.npy"))).unwrap()
}

fn config_of(v: &Value) -> SchedulerConfig {
    SchedulerConfig::from_json(&v.to_string()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Schedules and configs

#[test]
fn linear_schedule_closed_forms() {
    let s = Schedule::new(BetaSchedule::Linear, 1000, 1e-4, 0.02).unwrap();
    assert_eq!(s.len(), 1000);
    assert!((s.beta(0) - 1e-4).abs() < 1e-15);
    assert!((s.beta(999) - 0.02).abs() < 1e-15);
    assert!((s.beta(500) - (1e-4 + 0.0199 * 500.0 / 999.0)).abs() < 1e-15);
    // ᾱ_T = ∏(1 − β_t) ≈ 4.036e-5 (the DDPM paper's L_T ≈ 1e-5 bits setup).
    let ab_t = s.alpha_cumprod(Some(999));
    assert!((ab_t - 4.0358e-5).abs() < 1e-8, "ᾱ_999 = {ab_t}");
    assert_eq!(s.alpha_cumprod(None), 1.0);
    assert!((s.alpha_cumprod(Some(0)) - (1.0 - 1e-4)).abs() < 1e-15);
    // β̃_0 = 0 and 0 < β̃_t < β_t afterwards.
    assert_eq!(s.posterior_variance(0), 0.0);
    for t in 1..1000 {
        let v = s.posterior_variance(t);
        assert!(v > 0.0 && v < s.beta(t), "t={t}");
        assert!(s.alpha_cumprod(Some(t)) < s.alpha_cumprod(Some(t - 1)));
    }
    let pv = s.posterior_variances();
    let want = (1.0 - s.alpha_cumprod(Some(9))) / (1.0 - s.alpha_cumprod(Some(10))) * s.beta(10);
    assert!((pv[10] as f64 - want).abs() < 1e-10);
    assert_eq!(s.alphas()[3], (1.0 - s.beta(3)) as f32);
}

#[test]
fn scaled_linear_and_cosine_closed_forms() {
    let s = Schedule::new(BetaSchedule::ScaledLinear, 1000, 0.00085, 0.012).unwrap();
    assert!((s.beta(0) - 0.00085).abs() < 1e-12 && (s.beta(999) - 0.012).abs() < 1e-12);
    let mid = (0.00085f64.sqrt() + 0.012f64.sqrt()) / 2.0;
    assert!((s.beta(999) + s.beta(0) - 2.0 * mid * mid).abs() > 0.0); // √β linear, not β
    assert!(
        ((s.beta(333).sqrt() + s.beta(666).sqrt()) - (s.beta(0).sqrt() + s.beta(999).sqrt())).abs()
            < 1e-12
    );

    // Cosine: ᾱ_t = f(t+1)/f(0) with f(u) = cos²((u/T + s)/(1 + s)·π/2) while β is uncapped.
    let t_max = 1000;
    let c = Schedule::new(BetaSchedule::SquaredcosCapV2, t_max, 0.0, 0.0).unwrap();
    let f = |u: f64| {
        ((u / t_max as f64 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    for t in [0, 1, 100, 500, 900, 990] {
        let want = f(t as f64 + 1.0) / f(0.0);
        assert!(
            (c.alpha_cumprod(Some(t)) - want).abs() < 1e-12 * want.max(1e-3),
            "t={t}"
        );
    }
    assert_eq!(c.beta(999), 0.999, "β capped at 0.999 at the end");
    assert!((0..1000).all(|t| c.beta(t) > 0.0 && c.beta(t) <= 0.999));
    assert!(
        (1..1000).all(|t| c.beta(t) >= c.beta(t - 1)),
        "β increasing"
    );
    // β_0 is tiny (≈ 4e-5) and ᾱ halves near the middle.
    assert!(c.beta(0) < 1e-4 && (c.alpha_cumprod(Some(499)) - 0.5).abs() < 0.02);
}

#[test]
fn schedules_match_diffusers() {
    let idx = index();
    let (shape, data) = npy("schedules");
    assert_eq!(shape, vec![3, 2, 1000]);
    for (k, entry) in idx["schedules"].as_array().unwrap().iter().enumerate() {
        let cfg = config_of(&entry["config"]);
        let s = cfg.schedule().unwrap();
        let name = entry["name"].as_str().unwrap();
        assert_eq!(cfg.beta_schedule.name(), name);
        let betas = &data[k * 2000..k * 2000 + 1000];
        let ab = &data[k * 2000 + 1000..k * 2000 + 2000];
        assert_close(&s.betas(), betas, 1e-9, 2e-6, &format!("{name} betas"));
        // diffusers accumulates ᾱ in f32; ours is f64.
        assert_close(
            &s.alphas_cumprod(),
            ab,
            1e-9,
            1e-4,
            &format!("{name} alphas_cumprod"),
        );
    }
}

#[test]
fn ddim_timesteps_match_diffusers() {
    let idx = index();
    for e in idx["ddim_timesteps"].as_array().unwrap() {
        let cfg = SchedulerConfig {
            timestep_spacing: match e["timestep_spacing"].as_str().unwrap() {
                "leading" => TimestepSpacing::Leading,
                "linspace" => TimestepSpacing::Linspace,
                _ => TimestepSpacing::Trailing,
            },
            steps_offset: e["steps_offset"].as_u64().unwrap() as usize,
            ..SchedulerConfig::default()
        };
        let steps = e["steps"].as_u64().unwrap() as usize;
        let want: Vec<usize> = serde_json::from_value(e["timesteps"].clone()).unwrap();
        assert_eq!(cfg.ddim_timesteps(steps).unwrap(), want, "{e}");
    }
    for case in idx["cases"].as_array().unwrap() {
        if case["kind"] == "ddim" {
            let cfg = config_of(&case["config"]);
            let want: Vec<usize> = serde_json::from_value(case["timesteps"].clone()).unwrap();
            let steps = case["num_inference_steps"].as_u64().unwrap() as usize;
            assert_eq!(cfg.ddim_timesteps(steps).unwrap(), want, "{}", case["name"]);
        }
    }
}

#[test]
fn scheduler_configs_parse_and_round_trip() {
    let ddpm =
        SchedulerConfig::from_file(fixture_dir().join("ddpm_scheduler_config.json")).unwrap();
    assert_eq!(
        ddpm,
        SchedulerConfig {
            class_name: Some("DDPMScheduler".into()),
            ..SchedulerConfig::default()
        }
    );
    let ddim =
        SchedulerConfig::from_file(fixture_dir().join("ddim_scheduler_config.json")).unwrap();
    assert_eq!(ddim.class_name.as_deref(), Some("DDIMScheduler"));
    assert_eq!(
        (ddim.steps_offset, ddim.clip_sample, ddim.set_alpha_to_one),
        (1, false, true)
    );
    assert_eq!(ddim.clip(), None);

    // The original google/ddpm-cifar10-32 file (diffusers 0.1 era).
    let old = r#"{"_class_name": "DDPMScheduler", "_diffusers_version": "0.1.1", "beta_end": 0.02,
        "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": true,
        "num_train_timesteps": 1000, "trained_betas": null, "variance_type": "fixed_small",
        "tensor_format": "pt"}"#;
    assert_eq!(
        SchedulerConfig::from_json(old).unwrap().num_train_timesteps,
        1000
    );

    let custom = SchedulerConfig {
        class_name: None,
        num_train_timesteps: 500,
        beta_start: 2e-4,
        beta_end: 0.03,
        beta_schedule: BetaSchedule::SquaredcosCapV2,
        variance_type: VarianceType::FixedLarge,
        clip_sample: false,
        clip_sample_range: 2.0,
        timestep_spacing: TimestepSpacing::Trailing,
        steps_offset: 1,
        set_alpha_to_one: true,
    };
    let json = custom.to_json();
    let back = SchedulerConfig::from_json(&json).unwrap();
    assert_eq!(back.class_name.as_deref(), Some("DDPMScheduler"));
    assert_eq!(
        SchedulerConfig {
            class_name: None,
            ..back
        },
        custom
    );
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["prediction_type"], "epsilon");
    assert_eq!(v["variance_type"], "fixed_large");
}

#[test]
fn unsupported_scheduler_configs_name_the_key() {
    for (json, key) in [
        (r#"{"prediction_type": "v_prediction"}"#, "prediction_type"),
        (r#"{"prediction_type": "sample"}"#, "prediction_type"),
        (r#"{"thresholding": true}"#, "thresholding"),
        (r#"{"trained_betas": [0.1, 0.2]}"#, "trained_betas"),
        (r#"{"variance_type": "learned_range"}"#, "variance_type"),
        (r#"{"variance_type": "learned"}"#, "variance_type"),
        (r#"{"beta_schedule": "sigmoid"}"#, "beta_schedule"),
        (r#"{"timestep_spacing": "karras"}"#, "timestep_spacing"),
        (
            r#"{"rescale_betas_zero_snr": true}"#,
            "rescale_betas_zero_snr",
        ),
        (r#"{"num_train_timesteps": 0}"#, "num_train_timesteps"),
        (r#"{"num_train_timesteps": -3}"#, "num_train_timesteps"),
        (r#"{"beta_end": 1.5}"#, "beta_end"),
        (r#"{"clip_sample": "yes"}"#, "clip_sample"),
        (r#"{"use_karras_sigmas": true}"#, "use_karras_sigmas"),
    ] {
        match SchedulerConfig::from_json(json) {
            Err(e @ Error::Config { .. }) => {
                let Error::Config { key: k, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(k, key, "{json}");
                assert!(e.to_string().contains(key), "{e}");
            }
            other => panic!("{json}: expected Error::Config, got {other:?}"),
        }
    }
    assert!(matches!(
        SchedulerConfig::from_json("[1]"),
        Err(Error::Format { format: "JSON", ref what, .. }) if what == "scheduler_config.json"
    ));
    assert!(matches!(
        SchedulerConfig::from_json("{"),
        Err(Error::Format { format: "JSON", .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Step parity with diffusers

struct Inputs {
    sample: Vec<f32>,
    model_output: Vec<f32>,
    noise: Vec<f32>,
}

fn inputs() -> Vec<Inputs> {
    let (shape, data) = npy("inputs");
    let n: usize = shape[2..].iter().product();
    data.chunks(3 * n)
        .map(|c| Inputs {
            sample: c[..n].to_vec(),
            model_output: c[n..2 * n].to_vec(),
            noise: c[2 * n..].to_vec(),
        })
        .collect()
}

#[test]
fn steps_match_diffusers_cpu_and_gpu() {
    let gpu = gpu();
    let idx = index();
    let shape: Vec<usize> = serde_json::from_value(idx["shape"].clone()).unwrap();
    let n: usize = shape.iter().product();
    let ins = inputs();
    let mut worst64 = (0f32, String::new());
    let mut worst32 = (0f32, String::new());
    for case in idx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let cfg = config_of(&case["config"]);
        let sched = cfg.schedule().unwrap();
        let (_, outs) = npy(name);
        for (k, step) in case["steps"].as_array().unwrap().iter().enumerate() {
            let t = step["t"].as_u64().unwrap() as usize;
            let prev = usize::try_from(step["prev_t"].as_i64().unwrap()).ok();
            let inp = &ins[step["input"].as_u64().unwrap() as usize];
            // Per step: diffusers in f32 (prev, x̂0), then the same run in f64 (prev, x̂0).
            let part = |j: usize| &outs[(4 * k + j) * n..(4 * k + j + 1) * n];
            let tx = Tensor::from_slice(gpu, &shape, &inp.sample, "x").unwrap();
            let te = Tensor::from_slice(gpu, &shape, &inp.model_output, "eps").unwrap();
            let tz = Tensor::from_slice(gpu, &shape, &inp.noise, "z").unwrap();
            let tx0 = Tensor::zeros(gpu, &shape, "x0").unwrap();
            let (cpu_out, d) = if case["kind"] == "ddpm" {
                let c = sched
                    .ddpm_coefs(t, prev, cfg.variance_type, cfg.clip())
                    .unwrap();
                (
                    cpu::ddpm_step(&inp.sample, &inp.model_output, &c, &inp.noise),
                    ops::ddpm_step(gpu, &tx, &te, &tx0, &c, StepNoise::Given(&tz), None).unwrap(),
                )
            } else {
                let eta = case["eta"].as_f64().unwrap() as f32;
                let final_ab = if cfg.set_alpha_to_one {
                    1.0
                } else {
                    sched.alpha_cumprod(Some(0))
                };
                let c = sched
                    .ddim_coefs(t, prev, final_ab, eta, cfg.clip())
                    .unwrap();
                (
                    cpu::ddim_step(&inp.sample, &inp.model_output, &c, &inp.noise),
                    ops::ddim_step(gpu, &tx, &te, &tx0, &c, StepNoise::Given(&tz), None).unwrap(),
                )
            };
            pollster::block_on(gpu.run(&[d])).unwrap();
            let gpu_prev = tx.read_blocking(gpu).unwrap();
            let gpu_x0 = tx0.read_blocking(gpu).unwrap();
            // Deviation relative to the largest |value| (x̂0 at t = 999 is ε̂-dominated and
            // scaled by 1/√ᾱ ≈ 157). Against diffusers in f64 we agree to f32 rounding; against
            // stock diffusers (f32) to its own rounding, ≲ 3e-4 at small t where 1 − ᾱ cancels.
            for (got, j, which) in [
                (&cpu_out.0, 0, "cpu prev"),
                (&cpu_out.1, 1, "cpu x0"),
                (&gpu_prev, 0, "gpu prev"),
                (&gpu_x0, 1, "gpu x0"),
            ] {
                for (want, tol, worst) in [
                    (part(j + 2), 4e-6, &mut worst64),
                    (part(j), 5e-4, &mut worst32),
                ] {
                    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
                    let rel = max_abs_diff(got, want) / scale;
                    assert!(
                        rel <= tol,
                        "{name} t={t} {which}: deviation {rel:.2e} > {tol:e}"
                    );
                    if rel > worst.0 {
                        *worst = (rel, format!("{name} t={t} {which}"));
                    }
                }
            }
        }
    }
    eprintln!(
        "worst deviation from diffusers f64: {:.2e} ({})",
        worst64.0, worst64.1
    );
    eprintln!(
        "worst deviation from diffusers f32: {:.2e} ({})",
        worst32.0, worst32.1
    );
}

#[test]
fn q_sample_matches_diffusers_add_noise() {
    let gpu = gpu();
    let idx = index();
    let shape: Vec<usize> = serde_json::from_value(idx["shape"].clone()).unwrap();
    let n: usize = shape.iter().product();
    let (_, data) = npy("add_noise");
    let t: Vec<f32> = idx["add_noise"]["timesteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let ab = SchedulerConfig::default()
        .schedule()
        .unwrap()
        .alphas_cumprod();
    let (x0, eps, want) = (&data[..n], &data[n..2 * n], &data[2 * n..]);
    let tx0 = Tensor::from_slice(gpu, &shape, x0, "x0").unwrap();
    let tt = Tensor::from_slice(gpu, &[shape[0]], &t, "t").unwrap();
    let tab = Tensor::from_slice(gpu, &[ab.len()], &ab, "ab").unwrap();
    let te = Tensor::from_slice(gpu, &shape, eps, "eps").unwrap();
    let out = Tensor::zeros(gpu, &shape, "out").unwrap();
    let d = ops::q_sample(gpu, &tx0, &tt, &tab, &te, None, &out).unwrap();
    pollster::block_on(gpu.run(&[d])).unwrap();
    assert_close(
        &out.read_blocking(gpu).unwrap(),
        want,
        1e-5,
        1e-5,
        "q_sample vs add_noise",
    );
    let (cpu_out, _) = cpu::q_sample(x0, &t, &ab, Some(eps), None);
    assert_close(&cpu_out, want, 1e-5, 1e-5, "cpu q_sample vs add_noise");
}

#[test]
fn plans_follow_diffusers() {
    let cfg = SchedulerConfig::default();
    let p = plan(&cfg, &SamplerOptions::new(&cfg, SamplerKind::Ddpm, 0)).unwrap();
    assert_eq!(p.len(), 1000);
    assert_eq!((p[0].t, p[0].prev), (999, Some(998)));
    assert_eq!((p[999].t, p[999].prev), (0, None));
    let StepCoefs::Ddpm(last) = p[999].coefs else {
        panic!()
    };
    assert_eq!(last.sigma, 0.0, "no noise at t = 0");
    let StepCoefs::Ddpm(first) = p[0].coefs else {
        panic!()
    };
    let s = cfg.schedule().unwrap();
    assert!((first.sigma as f64 - s.posterior_variance(999).sqrt()).abs() < 1e-7);

    let kind = SamplerKind::Ddim {
        steps: 50,
        eta: 0.0,
    };
    let p = plan(&cfg, &SamplerOptions::new(&cfg, kind, 0)).unwrap();
    assert_eq!(p.len(), 50);
    assert_eq!(
        (p[0].t, p[0].prev, p[49].t, p[49].prev),
        (980, Some(960), 0, None)
    );
    let StepCoefs::Ddim(c) = p[49].coefs else {
        panic!()
    };
    assert_eq!((c.sigma, c.sqrt_ab_prev), (0.0, 1.0), "set_alpha_to_one");
}
