//! Schedules, RNG, sampling kernels and the sampler: closed forms, parity with diffusers
//! fixtures (`scripts/make_scheduler_fixtures.py`), GPU vs CPU, statistics and bad input.

use std::path::{Path, PathBuf};

use ddpm::cpu::sampling as cpu;
use ddpm::gpu::{Dispatch, Gpu, Tensor};
use ddpm::model::EpsModel;
use ddpm::ops::sampling::{self as ops, StepNoise};
use ddpm::sampler::{
    plan, sample_cpu, Sampler, SamplerKind, SamplerOptions, SnapshotData, StepCoefs, INIT_STREAM,
};
use ddpm::schedule::{BetaSchedule, Schedule, SchedulerConfig, TimestepSpacing, VarianceType};
use ddpm::testing::{assert_close, gpu, Rng};
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

/// A little-endian f32 C-order `.npy` file: (shape, data).
fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture_dir().join(format!("{name}.npy"))).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{name}: not a .npy file");
    let (header_len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{name}: {header}");
    assert!(
        header.contains("'fortran_order': False"),
        "{name}: {header}"
    );
    let dims = &header[header.find("'shape': (").unwrap() + 10..];
    let dims = &dims[..dims.find(')').unwrap()];
    let shape: Vec<usize> = dims
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{name}");
    (shape, data)
}

fn config_of(v: &Value) -> SchedulerConfig {
    SchedulerConfig::from_json(&v.to_string()).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
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
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        SchedulerConfig::from_json("{"),
        Err(Error::Invalid(_))
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

// ---------------------------------------------------------------------------------------------
// RNG and q_sample statistics

fn mean_var(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

fn corr(a: &[f32], b: &[f32]) -> f64 {
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let cov = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - ma) * (y as f64 - mb))
        .sum::<f64>()
        / a.len() as f64;
    cov / (va * vb).sqrt()
}

fn gpu_noise(gpu: &Gpu, n: usize, seed: u64, stream: u32) -> Vec<f32> {
    let out = Tensor::zeros(gpu, &[n], "noise").unwrap();
    pollster::block_on(gpu.run(&[ops::noise(gpu, &out, seed, stream, 0).unwrap()])).unwrap();
    out.read_blocking(gpu).unwrap()
}

#[test]
fn rng_normals_have_the_right_statistics() {
    let gpu = gpu();
    let n = 100_003;
    let z = gpu_noise(gpu, n, 2024, 7);
    let (mean, var) = mean_var(&z);
    // Standard errors: 1/√n ≈ 0.0032 for the mean, √(2/n) ≈ 0.0045 for the variance.
    assert!(mean.abs() < 0.016, "mean {mean}");
    assert!((var - 1.0).abs() < 0.025, "variance {var}");
    let kurt = z.iter().map(|&x| (x as f64 - mean).powi(4)).sum::<f64>() / n as f64 / (var * var);
    assert!((kurt - 3.0).abs() < 0.12, "kurtosis {kurt}");
    let tails = z.iter().filter(|x| x.abs() > 3.0).count() as f64 / n as f64;
    assert!((tails - 0.0027).abs() < 0.0012, "P(|z| > 3) = {tails}");
    assert!(z.iter().all(|x| x.is_finite() && x.abs() < 6.0));
    // Adjacent indices, adjacent streams (steps), different seeds: uncorrelated (|ρ| ≲ 5/√n).
    let lim = 0.016;
    let adj = corr(&z[..n - 1], &z[1..]);
    assert!(adj.abs() < lim, "adjacent-index correlation {adj}");
    let next_step = gpu_noise(gpu, n, 2024, 8);
    let c = corr(&z, &next_step);
    assert!(c.abs() < lim, "adjacent-stream correlation {c}");
    let other_seed = gpu_noise(gpu, n, 2025, 7);
    let c = corr(&z, &other_seed);
    assert!(c.abs() < lim, "seed correlation {c}");
    assert!(z.iter().zip(&other_seed).filter(|(a, b)| a == b).count() < 10);
    let high_seed = gpu_noise(gpu, n, 2024 | (1 << 40), 7);
    assert_ne!(z, high_seed, "the seed's high word matters");
    // The CPU mirror agrees.
    let want = cpu::noise(n, 2024, 7, 0);
    let diff = max_abs_diff(&z, &want);
    eprintln!("GPU vs CPU normals: max |Δ| = {diff:.2e} over {n}");
    assert!(diff < 1e-6, "GPU vs CPU normals differ by {diff}");
}

#[test]
fn q_sample_statistics_per_sample_timesteps() {
    let gpu = gpu();
    let sched = SchedulerConfig::default().schedule().unwrap();
    let ab = sched.alphas_cumprod();
    let ts = [0usize, 250, 999];
    let per = 30_000;
    let shape = [ts.len(), 3, 100, 100];
    let x0 = vec![0.8f32; ts.len() * per];
    let t: Vec<f32> = ts.iter().map(|&t| t as f32).collect();
    let tx0 = Tensor::from_slice(gpu, &shape, &x0, "x0").unwrap();
    let tt = Tensor::from_slice(gpu, &[ts.len()], &t, "t").unwrap();
    let tab = Tensor::from_slice(gpu, &[ab.len()], &ab, "ab").unwrap();
    let te = Tensor::zeros(gpu, &shape, "eps").unwrap();
    let out = Tensor::zeros(gpu, &shape, "out").unwrap();
    let d = ops::q_sample(gpu, &tx0, &tt, &tab, &te, Some((5, 0)), &out).unwrap();
    pollster::block_on(gpu.run(&[d])).unwrap();
    let xt = out.read_blocking(gpu).unwrap();
    let eps = te.read_blocking(gpu).unwrap();
    for (s, &t) in ts.iter().enumerate() {
        let a = ab[t] as f64;
        let (mean, var) = mean_var(&xt[s * per..(s + 1) * per]);
        let sd = (1.0 - a).sqrt();
        assert!(
            (mean - a.sqrt() * 0.8).abs() < 0.03 * sd + 1e-6,
            "t={t}: mean {mean}"
        );
        assert!(
            (var - (1.0 - a)).abs() < 0.04 * (1.0 - a) + 1e-9,
            "t={t}: var {var}"
        );
        // The returned ε reproduces x_t.
        for i in (s * per..(s + 1) * per).step_by(997) {
            let want = a.sqrt() as f32 * 0.8 + (1.0 - a).sqrt() as f32 * eps[i];
            assert!((xt[i] - want).abs() < 1e-5, "t={t} i={i}");
        }
    }
    let (m, v) = mean_var(&eps);
    assert!(
        m.abs() < 0.01 && (v - 1.0).abs() < 0.02,
        "drawn ε: mean {m}, var {v}"
    );
}

// ---------------------------------------------------------------------------------------------
// The sampler

/// ε̂ = √a_t·x + √(1−a_t)·c with a_t from a table indexed by the timestep tensor (one q_sample
/// dispatch), so a wrong timestep shows up in the result.
struct MockModel {
    x: Tensor,
    t: Tensor,
    eps: Tensor,
    dispatches: Vec<Dispatch>,
    c: Vec<f32>,
    table: Vec<f32>,
    _keep: (Tensor, Tensor),
}

impl MockModel {
    fn new(gpu: &Gpu, shape: &[usize], train_steps: usize) -> Self {
        let n: usize = shape.iter().product();
        Self::with_offsets(gpu, shape, train_steps, Rng::new(99).normals(n, 0.5))
    }

    /// A model whose offsets c repeat per image, so each image's ε̂ depends on that image alone
    /// (as a real U-Net's does) whatever the batch size.
    fn per_image(gpu: &Gpu, shape: &[usize], train_steps: usize) -> Self {
        let per: usize = shape[1..].iter().product();
        let image = Rng::new(98).normals(per, 0.5);
        let c = image.repeat(shape[0]);
        Self::with_offsets(gpu, shape, train_steps, c)
    }

    fn with_offsets(gpu: &Gpu, shape: &[usize], train_steps: usize, c: Vec<f32>) -> Self {
        let table: Vec<f32> = (0..train_steps)
            .map(|t| 0.2 + 0.6 * t as f32 / train_steps as f32)
            .collect();
        let x = Tensor::zeros(gpu, shape, "mock x").unwrap();
        let t = Tensor::zeros(gpu, &[shape[0]], "mock t").unwrap();
        let eps = Tensor::zeros(gpu, shape, "mock eps").unwrap();
        let tc = Tensor::from_slice(gpu, shape, &c, "mock c").unwrap();
        let tab = Tensor::from_slice(gpu, &[train_steps], &table, "mock table").unwrap();
        let d = ops::q_sample(gpu, &x, &t, &tab, &tc, None, &eps).unwrap();
        MockModel {
            x,
            t,
            eps,
            dispatches: vec![d],
            c,
            table,
            _keep: (tc, tab),
        }
    }

    fn cpu_eps(&self, x: &[f32], t: usize) -> Vec<f32> {
        let ts = vec![t as f32; self.x.shape[0]];
        cpu::q_sample(x, &ts, &self.table, Some(&self.c), None).0
    }
}

impl EpsModel for MockModel {
    fn x(&self) -> &Tensor {
        &self.x
    }
    fn t(&self) -> &Tensor {
        &self.t
    }
    fn eps(&self) -> &Tensor {
        &self.eps
    }
    fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }
}

const SHAPE: [usize; 4] = [2, 3, 5, 7];

fn short_config(clip: bool, variance: VarianceType) -> SchedulerConfig {
    SchedulerConfig {
        num_train_timesteps: 20,
        beta_start: 1e-3,
        beta_end: 0.2,
        clip_sample: clip,
        variance_type: variance,
        ..SchedulerConfig::default()
    }
}

#[test]
fn gpu_sampler_matches_cpu_sampler() {
    let gpu = gpu();
    let n: usize = SHAPE.iter().product();
    let cases = [
        (
            short_config(true, VarianceType::FixedSmall),
            SamplerKind::Ddpm,
        ),
        (
            short_config(false, VarianceType::FixedSmall),
            SamplerKind::Ddpm,
        ),
        (
            short_config(true, VarianceType::FixedLarge),
            SamplerKind::Ddpm,
        ),
        (
            SchedulerConfig::default(),
            SamplerKind::Ddim {
                steps: 20,
                eta: 1.0,
            },
        ),
        (
            SchedulerConfig::default(),
            SamplerKind::Ddim {
                steps: 20,
                eta: 0.0,
            },
        ),
        (
            SchedulerConfig {
                clip_sample: false,
                steps_offset: 1,
                ..SchedulerConfig::default()
            },
            SamplerKind::Ddim {
                steps: 20,
                eta: 0.5,
            },
        ),
    ];
    for (k, (cfg, kind)) in cases.into_iter().enumerate() {
        let model = MockModel::new(gpu, &SHAPE, cfg.num_train_timesteps);
        let opts = SamplerOptions::new(&cfg, kind, 1000 + k as u64);
        let mut sampler = Sampler::new(gpu, &model, &cfg, &opts).unwrap();
        assert_eq!(sampler.plan().len(), 20);
        let got = sampler.run_to_end_blocking(gpu, 7).unwrap();
        let got_x0 = pollster::block_on(sampler.read_x0(gpu)).unwrap();
        let x_t = cpu::noise(n, opts.seed, INIT_STREAM, 0);
        let (want, want_x0) = sample_cpu(sampler.plan(), x_t, opts.seed, 0, &mut |x, t| {
            model.cpu_eps(x, t)
        });
        let what = format!("case {k}: {kind:?} clip={}", cfg.clip_sample);
        eprintln!(
            "{what}: max |GPU − CPU| = {:.2e}",
            max_abs_diff(&got, &want)
        );
        assert_close(&got, &want, 1e-4, 1e-4, &what);
        assert_close(&got_x0, &want_x0, 1e-4, 1e-4, &what);
        assert!(got.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn same_seed_is_bit_identical_and_seeds_differ() {
    let gpu = gpu();
    let cfg = short_config(true, VarianceType::FixedSmall);
    let model = MockModel::new(gpu, &SHAPE, 20);
    let opts = SamplerOptions::new(&cfg, SamplerKind::Ddpm, 42);
    let mut sampler = Sampler::new(gpu, &model, &cfg, &opts).unwrap();
    let a = sampler.run_to_end_blocking(gpu, 20).unwrap();
    sampler.restart(gpu, 42, 0).unwrap();
    let b = sampler.run_to_end_blocking(gpu, 3).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b), "same seed, different chunking");
    let mut fresh = Sampler::new(gpu, &model, &cfg, &opts).unwrap();
    assert_eq!(bits(&a), bits(&fresh.run_to_end_blocking(gpu, 5).unwrap()));
    sampler.restart(gpu, 43, 0).unwrap();
    let c = sampler.run_to_end_blocking(gpu, 20).unwrap();
    assert!(
        max_abs_diff(&a, &c) > 1e-2,
        "a different seed gives a different sample"
    );
}

#[test]
fn a_seed_draws_the_same_images_whatever_the_batching() {
    let gpu = gpu();
    let cfg = short_config(false, VarianceType::FixedLarge);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for kind in [
        SamplerKind::Ddpm,
        SamplerKind::Ddim {
            steps: 10,
            eta: 1.0,
        },
    ] {
        let opts = SamplerOptions::new(&cfg, kind, 7);
        // 5 images at once…
        let whole = MockModel::per_image(gpu, &[5, 3, 5, 7], 20);
        let mut s = Sampler::new(gpu, &whole, &cfg, &opts).unwrap();
        let all = s.run_to_end_blocking(gpu, 20).unwrap();
        // …equal 5 images in batches of 2 (the last one padded to 2 and cut).
        let pairs = MockModel::per_image(gpu, &[2, 3, 5, 7], 20);
        let per = 3 * 5 * 7;
        let mut s = Sampler::new(gpu, &pairs, &cfg, &opts).unwrap();
        let mut batched = Vec::new();
        for first in [0u64, 2, 4] {
            s.restart(gpu, 7, first).unwrap();
            batched.extend(s.run_to_end_blocking(gpu, 20).unwrap());
        }
        assert_eq!(bits(&all), bits(&batched[..5 * per]), "{kind:?}");
        // A fresh sampler told its first image agrees with the restarted one.
        let mut o = opts;
        o.first_image = 2;
        let mut fresh = Sampler::new(gpu, &pairs, &cfg, &o).unwrap();
        let second = fresh.run_to_end_blocking(gpu, 7).unwrap();
        assert_eq!(bits(&second), bits(&all[2 * per..4 * per]), "{kind:?}");
        assert!(
            max_abs_diff(&second, &all[..2 * per]) > 1e-2,
            "images differ"
        );
    }
}

#[test]
fn ddim_eta0_is_deterministic_given_x_t() {
    let gpu = gpu();
    let cfg = SchedulerConfig::default();
    let model = MockModel::new(gpu, &SHAPE, 1000);
    let n: usize = SHAPE.iter().product();
    let x_t = Rng::new(3).normals(n, 1.0);
    let run = |eta: f32, seed: u64| {
        let opts = SamplerOptions::new(&cfg, SamplerKind::Ddim { steps: 10, eta }, seed);
        let mut s = Sampler::new(gpu, &model, &cfg, &opts).unwrap();
        s.set_initial(gpu, &x_t).unwrap();
        s.run_to_end_blocking(gpu, 10).unwrap()
    };
    let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(run(0.0, 1)),
        bits(run(0.0, 2)),
        "η = 0 ignores the seed"
    );
    assert_ne!(bits(run(1.0, 1)), bits(run(1.0, 2)), "η = 1 draws noise");
}

#[test]
fn chunks_report_progress_and_capture_the_trajectory() {
    let gpu = gpu();
    let cfg = short_config(true, VarianceType::FixedSmall);
    let model = MockModel::new(gpu, &SHAPE, 20);
    let opts = SamplerOptions::new(&cfg, SamplerKind::Ddpm, 7);
    let mut sampler = Sampler::new(gpu, &model, &cfg, &opts).unwrap();
    sampler.capture(3, 1 << 20).unwrap();
    let p = sampler.progress();
    assert_eq!(
        (p.step, p.total, p.timestep, p.next_timestep),
        (0, 20, None, Some(19))
    );
    let p = sampler.run_steps_blocking(gpu, 4).unwrap();
    assert_eq!(
        (p.step, p.timestep, p.next_timestep),
        (4, Some(16), Some(15))
    );
    let mut seen = vec![p.step];
    while !sampler.progress().done() {
        seen.push(sampler.run_steps_blocking(gpu, 4).unwrap().step);
    }
    assert_eq!(seen, vec![4, 8, 12, 16, 20]);
    let p = sampler.progress();
    assert_eq!((p.timestep, p.next_timestep), (Some(0), None));
    assert_eq!(
        sampler.run_steps_blocking(gpu, 4).unwrap().step,
        20,
        "done stays done"
    );

    let x = pollster::block_on(sampler.read_sample(gpu)).unwrap();
    let x0 = pollster::block_on(sampler.read_x0(gpu)).unwrap();
    let tr = sampler.trajectory().unwrap();
    let steps: Vec<usize> = tr.snapshots().iter().map(|s| s.step).collect();
    assert_eq!(steps, vec![3, 6, 9, 12, 15, 18, 20]);
    assert!(!tr.is_quantised());
    let last = tr.snapshots().last().unwrap();
    assert_eq!(last.timestep, 0);
    assert_eq!(last.x, SnapshotData::F32(x.clone()));
    assert_eq!(last.x0, SnapshotData::F32(x0));
    // A mid-run snapshot equals the CPU run stopped at that step.
    let n = x.len();
    let snap = &tr.snapshots()[2];
    let (want, want_x0) = sample_cpu(
        &sampler.plan()[..snap.step],
        cpu::noise(n, 7, INIT_STREAM, 0),
        7,
        0,
        &mut |x, t| model.cpu_eps(x, t),
    );
    assert_eq!(snap.timestep, sampler.plan()[snap.step - 1].t);
    assert_close(&snap.x.to_f32(), &want, 1e-4, 1e-4, "snapshot x");
    assert_close(&snap.x0.to_f32(), &want_x0, 1e-4, 1e-4, "snapshot x0");
    // …and its ε̂ is the model's output for that step's input.
    let (input, _) = sample_cpu(
        &sampler.plan()[..snap.step - 1],
        cpu::noise(n, 7, INIT_STREAM, 0),
        7,
        0,
        &mut |x, t| model.cpu_eps(x, t),
    );
    let want_eps = model.cpu_eps(&input, snap.timestep);
    assert_close(&snap.eps.to_f32(), &want_eps, 1e-4, 1e-4, "snapshot eps");

    // A tight budget: quantised to u8, thinned by doubling the stride, final step kept.
    let snap_u8 = 3 * n;
    let mut s2 = Sampler::new(gpu, &model, &cfg, &opts).unwrap();
    s2.capture(1, 5 * snap_u8).unwrap();
    let x_again = s2.run_to_end_blocking(gpu, 6).unwrap();
    assert_eq!(x_again, x);
    let tr = s2.trajectory().unwrap();
    assert!(tr.is_quantised() && tr.bytes() <= 5 * snap_u8);
    let steps: Vec<usize> = tr.snapshots().iter().map(|s| s.step).collect();
    assert_eq!(*steps.last().unwrap(), 20);
    assert!(steps.len() >= 3 && tr.every() > 1, "{steps:?}");
    assert_eq!(
        tr.snapshots().last().unwrap().x.to_u8(1.0),
        SnapshotData::quantise(&x)
    );
}

#[test]
fn a_run_can_start_from_an_intermediate_timestep() {
    let gpu = gpu();
    let n: usize = SHAPE.iter().product();
    let model = MockModel::new(gpu, &SHAPE, 1000);
    let cfg = SchedulerConfig::default();
    for (kind, start, first_t) in [
        (SamplerKind::Ddpm, 57, 57),
        (
            SamplerKind::Ddim {
                steps: 50,
                eta: 1.0,
            },
            57,
            40,
        ),
        (
            SamplerKind::Ddim {
                steps: 50,
                eta: 0.0,
            },
            980,
            980,
        ),
    ] {
        let mut opts = SamplerOptions::new(&cfg, kind, 5);
        let full = plan(&cfg, &opts).unwrap();
        opts.start = Some(start);
        let part = plan(&cfg, &opts).unwrap();
        // The full plan's tail from the first timestep at or below `start`.
        assert_eq!(part[0].t, first_t, "{kind:?}");
        assert_eq!(part[..], full[full.len() - part.len()..], "{kind:?}");
        // On the GPU from a given x_start, as the CPU reference runs that tail.
        let x_start = Rng::new(11).normals(n, 0.8);
        let mut s = Sampler::new(gpu, &model, &cfg, &opts).unwrap();
        assert_eq!(s.plan().len(), part.len());
        s.set_initial(gpu, &x_start).unwrap();
        let got = s.run_to_end_blocking(gpu, 16).unwrap();
        let (want, _) = sample_cpu(&part, x_start, 5, 0, &mut |x, t| model.cpu_eps(x, t));
        assert_close(&got, &want, 1e-4, 1e-4, &format!("{kind:?} from {start}"));
    }
    for bad in [1000, 5000] {
        let mut opts = SamplerOptions::new(&cfg, SamplerKind::Ddpm, 0);
        opts.start = Some(bad);
        let e = plan(&cfg, &opts).unwrap_err().to_string();
        assert!(e.contains("start timestep") && e.contains("0..=999"), "{e}");
    }
    // DDIM 10 (timesteps 900, 800, …, 100, 0): from t = 50 only the last step is left.
    let mut opts = SamplerOptions::new(
        &cfg,
        SamplerKind::Ddim {
            steps: 10,
            eta: 0.0,
        },
        0,
    );
    opts.start = Some(50);
    assert_eq!(plan(&cfg, &opts).unwrap().len(), 1);
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

#[test]
fn bad_sampler_input_is_a_clear_error() {
    let cfg = SchedulerConfig::default();
    let opts = |kind| SamplerOptions::new(&cfg, kind, 0);
    let msg = |r: ddpm::Result<_>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected an error"),
    };
    let m = msg(plan(&cfg, &opts(SamplerKind::Ddim { steps: 0, eta: 0.0 })).map(|_| ()));
    assert!(m.contains("at least 1"), "{m}");
    let m = msg(plan(
        &cfg,
        &opts(SamplerKind::Ddim {
            steps: 1001,
            eta: 0.0,
        }),
    )
    .map(|_| ()));
    assert!(m.contains("1001") && m.contains("1000"), "{m}");
    let m = msg(plan(
        &cfg,
        &opts(SamplerKind::Ddim {
            steps: 10,
            eta: 1.5,
        }),
    )
    .map(|_| ()));
    assert!(m.contains("eta"), "{m}");
    let m = msg(SamplerKind::parse("euler", 10, 0.0).map(|_| ()));
    assert!(m.contains("euler") && m.contains("ddim"), "{m}");
    assert_eq!(
        SamplerKind::parse("DDPM", 1, 0.0).unwrap(),
        SamplerKind::Ddpm
    );
    assert_eq!(
        SamplerKind::parse("ddim", 25, 0.3).unwrap(),
        SamplerKind::Ddim {
            steps: 25,
            eta: 0.3
        }
    );
    let off = SchedulerConfig {
        steps_offset: 1,
        ..cfg.clone()
    };
    let m = msg(off.ddim_timesteps(1000).map(|_| ()));
    assert!(m.contains("steps_offset"), "{m}");
    let mut bad_clip = opts(SamplerKind::Ddpm);
    bad_clip.clip = Some(-1.0);
    assert!(plan(&cfg, &bad_clip).is_err());

    let gpu = gpu();
    let model = MockModel::new(gpu, &SHAPE, 1000);
    let mut s = Sampler::new(
        gpu,
        &model,
        &cfg,
        &opts(SamplerKind::Ddim { steps: 5, eta: 0.0 }),
    )
    .unwrap();
    assert!(s.capture(0, 100).is_err());
    assert!(matches!(
        s.set_initial(gpu, &[0.0; 3]),
        Err(Error::Shape { .. })
    ));
    assert!(Sampler::new(
        gpu,
        &model,
        &cfg,
        &opts(SamplerKind::Ddim { steps: 0, eta: 0.0 })
    )
    .is_err());
    let sched = cfg.schedule().unwrap();
    assert!(sched
        .ddpm_coefs(1000, Some(999), VarianceType::FixedSmall, None)
        .is_err());
    assert!(sched
        .ddpm_coefs(5, Some(5), VarianceType::FixedSmall, None)
        .is_err());
}
