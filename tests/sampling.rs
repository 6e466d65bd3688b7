//! The sampler: GPU vs the CPU reference over a mock ε-model, seeds and batching, DDIM
//! determinism, chunked progress and trajectory capture, starting from an intermediate t, and
//! bad input.

use ddpm::cpu::sampling as cpu;
use ddpm::gpu::{Dispatch, Gpu, Tensor};
use ddpm::model::EpsModel;
use ddpm::ops::sampling as ops;
use ddpm::sampler::{
    plan, sample_cpu, Sampler, SamplerKind, SamplerOptions, SnapshotData, INIT_STREAM,
};
use ddpm::schedule::{SchedulerConfig, VarianceType};
use ddpm::testing::{assert_close, gpu, max_abs_diff, setting_err_text, Rng};
use ddpm::Error;

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
    assert_eq!(steps, vec![0, 3, 6, 9, 12, 15, 18, 20]);
    assert!(!tr.is_quantised());
    // Step 0 is x_T as drawn on the GPU (the CPU twin of its RNG), nothing predicted yet.
    let start = &tr.snapshots()[0];
    assert_eq!(start.timestep, sampler.plan()[0].t);
    assert_eq!(
        start.x,
        SnapshotData::F32(cpu::noise(x.len(), 7, INIT_STREAM, 0))
    );
    assert_eq!(start.x0, SnapshotData::F32(vec![0.0; x.len()]));
    assert_eq!(start.eps, SnapshotData::F32(vec![0.0; x.len()]));
    let last = tr.snapshots().last().unwrap();
    assert_eq!(last.timestep, 0);
    assert_eq!(last.x, SnapshotData::F32(x.clone()));
    assert_eq!(last.x0, SnapshotData::F32(x0));
    // A mid-run snapshot equals the CPU run stopped at that step.
    let n = x.len();
    let snap = &tr.snapshots()[3];
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
        let e = setting_err_text(plan(&cfg, &opts), "start past T", "start");
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
    let e = setting_err_text(plan(&cfg, &bad_clip), "clip -1", "clip");
    assert!(e.contains("clip range must be positive, got -1"), "{e}");

    let gpu = gpu();
    let model = MockModel::new(gpu, &SHAPE, 1000);
    let mut s = Sampler::new(
        gpu,
        &model,
        &cfg,
        &opts(SamplerKind::Ddim { steps: 5, eta: 0.0 }),
    )
    .unwrap();
    let e = setting_err_text(
        s.capture(0, 100),
        "capture every 0 steps",
        "trajectory stride",
    );
    assert!(
        e.contains("trajectory stride must be at least 1 step"),
        "{e}"
    );
    assert!(matches!(
        s.set_initial(gpu, &[0.0; 3]),
        Err(Error::Shape { .. })
    ));
    let e = setting_err_text(
        Sampler::new(
            gpu,
            &model,
            &cfg,
            &opts(SamplerKind::Ddim { steps: 0, eta: 0.0 }),
        ),
        "a sampler of 0 DDIM steps",
        "steps",
    );
    assert!(e.contains("DDIM needs at least 1 inference step"), "{e}");
    let sched = cfg.schedule().unwrap();
    let e = setting_err_text(
        sched.ddpm_coefs(1000, Some(999), VarianceType::FixedSmall, None),
        "t = T",
        "timestep",
    );
    assert!(
        e.contains("timestep 1000 out of range for a schedule of 1000 steps"),
        "{e}"
    );
    let e = setting_err_text(
        sched.ddpm_coefs(5, Some(5), VarianceType::FixedSmall, None),
        "prev = t",
        "previous timestep",
    );
    assert!(
        e.contains("previous timestep 5 must be smaller than timestep 5"),
        "{e}"
    );
}

/// Guided DDIM re-derives the direction term's ε̂ from the clipped x̂0 unless told otherwise;
/// unguided DDIM keeps diffusers' default.
#[test]
fn guided_ddim_uses_the_clipped_model_output_by_default() {
    let cfg = SchedulerConfig::default();
    let clipped = |opts: &SamplerOptions| -> Vec<bool> {
        ddpm::sampler::plan(&cfg, opts)
            .unwrap()
            .iter()
            .map(|p| match p.coefs {
                ddpm::sampler::StepCoefs::Ddim(c) => c.clipped_eps,
                ddpm::sampler::StepCoefs::Ddpm(_) => panic!("a DDIM plan"),
            })
            .collect()
    };
    let mut opts = SamplerOptions::new(
        &cfg,
        SamplerKind::Ddim {
            steps: 10,
            eta: 0.0,
        },
        0,
    );
    assert!(clipped(&opts).iter().all(|&c| !c), "unguided: off");
    opts.guidance = Some(2.0);
    assert!(clipped(&opts).iter().all(|&c| c), "guided: on");
    opts.clipped_model_output = Some(false);
    assert!(clipped(&opts).iter().all(|&c| !c), "guided, turned off");
    opts.guidance = None;
    opts.clipped_model_output = Some(true);
    assert!(clipped(&opts).iter().all(|&c| c), "unguided, turned on");
}
