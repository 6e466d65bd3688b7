//! The generation path shared by `ddpm sample` and the page: batching never changes the images,
//! x_T is the seed's draw keyed by image index, the frames cover every batch, and requests
//! that do not fit the model are refused.

use ddpm::cpu::sampling as cpu;
use ddpm::generation::{Generation, Generator, Request};
use ddpm::model::{UNet, Weights};
use ddpm::sampler::{SamplerKind, SamplerOptions, SamplerPlan, SnapshotData, INIT_STREAM};
use ddpm::schedule::SchedulerConfig;
use ddpm::testing::{assert_close, gpu};
use ddpm::Error;

fn tiny() -> (ddpm::model::UNetConfig, Weights) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unet_tiny");
    Weights::load_dir(&dir).unwrap()
}

fn request(n: usize, batch_cap: usize, frames: bool) -> Request {
    let sched = SchedulerConfig::default();
    let kind = SamplerKind::Ddim { steps: 5, eta: 1.0 };
    Request {
        n,
        sampler: SamplerPlan::new(&sched, &SamplerOptions::new(&sched, kind, 11)).unwrap(),
        classes: None,
        batch_cap,
        initial: None,
        frames_budget: frames.then_some(1 << 20),
    }
}

#[test]
fn batches_frames_and_x_t_follow_the_seed_not_the_batching() {
    let gpu = gpu();
    let (cfg, weights) = tiny();
    let run = |cap: usize| {
        let mut generator = Generator::new(UNet::new(gpu, cfg.clone(), &weights).unwrap());
        let mut g = Generation::new(&mut generator, gpu, request(3, cap, true)).unwrap();
        let mut seen = Vec::new();
        g.run_blocking(&mut generator, gpu, 2, |s| seen.push(s.steps_done()))
            .unwrap();
        (g.batch(), seen, g.into_parts())
    };
    let (batch, seen, (one, frames_one)) = run(8);
    assert_eq!(batch, 3);
    assert_eq!(seen, vec![2, 4, 5]);
    let (batch, seen, (split, frames_split)) = run(2);
    assert_eq!(batch, 2);
    assert_eq!(seen, vec![2, 4, 5, 7, 9, 10], "two batches of 5 steps");
    // Kernel choices may differ with the batch shape: equal up to summation order.
    assert_close(&split, &one, 1e-4, 1e-4, "batch 2 vs one batch");

    let per = 16 * 16;
    for frames in [frames_one.unwrap(), frames_split.unwrap()] {
        assert_eq!((frames.len(), frames.stride()), (6, 1), "x_T + 5 steps");
        // Frame 0 holds every image's x_T: the seed's draw, keyed by the image's index.
        let x_t = cpu::noise(3 * per, 11, INIT_STREAM, 0);
        assert_eq!(frames.x(0), SnapshotData::quantise(&x_t).as_slice());
        assert_eq!(frames.timestep(0), Some(800), "DDIM 5: 800, 600, …, 0");
        // The last frame is the sample (up to a quantisation step).
        let last: Vec<i32> = frames.x(5).iter().map(|&b| b as i32).collect();
        let want = SnapshotData::quantise(&one);
        let off = last
            .iter()
            .zip(&want)
            .filter(|(a, b)| (**a - **b as i32).abs() > 1);
        assert_eq!(off.count(), 0);
        assert_eq!(frames.timestep(5), None);
        assert!(frames.gif().unwrap().starts_with(b"GIF89a"));
    }
}

/// The memory estimate counts the uploaded weights and the recorded batch's activations, and
/// grows with the batch.
#[test]
fn memory_estimate_follows_weights_and_batch() {
    let gpu = gpu();
    let (cfg, weights) = tiny();
    let mut generator = Generator::new(UNet::new(gpu, cfg, &weights).unwrap());
    assert_eq!(generator.memory(), None, "nothing prepared yet");
    let weight_bytes = generator.unet().weight_bytes().total;
    let mut at = |n: usize| {
        Generation::new(&mut generator, gpu, request(n, n, false)).unwrap();
        generator.memory().unwrap()
    };
    let (one, four) = (at(1), at(4));
    assert_eq!((one.weights, four.weights), (weight_bytes, weight_bytes));
    assert!(one.activations > 0, "{one:?}");
    assert!(
        four.activations > 3 * one.activations,
        "{one:?} vs {four:?}"
    );
    assert!(
        four.describe().starts_with("GPU memory ≈ "),
        "{}",
        four.describe()
    );
}

#[test]
fn requests_that_do_not_fit_are_refused() {
    let gpu = gpu();
    let (cfg, weights) = tiny();
    let mut generator = Generator::new(UNet::new(gpu, cfg, &weights).unwrap());
    // Each refusal is a setting error.
    let mut err = |r: Request| match Generation::new(&mut generator, gpu, r) {
        Ok(_) => panic!("accepted"),
        Err(e @ Error::Setting { .. }) => e.to_string(),
        Err(e) => panic!("expected a setting error, got {e:?}"),
    };
    let e = err(request(0, 4, false));
    assert!(e.contains("at least one image"), "{e}");
    let e = err(Request {
        initial: Some(vec![0.0; 10]),
        ..request(2, 4, false)
    });
    assert!(
        e.contains("initial x of 10 values for 2 images of 1×16×16"),
        "{e}"
    );
    let e = err(Request {
        classes: Some(vec![1.0]),
        ..request(2, 4, false)
    });
    assert!(e.contains("1 class labels for 2 images"), "{e}");
    let mut guided = request(2, 4, false);
    let mut options = *guided.sampler.options();
    options.guidance = Some(2.0);
    guided.sampler = SamplerPlan::new(&SchedulerConfig::default(), &options).unwrap();
    let e = err(guided);
    assert!(e.contains("guidance needs the class of every image"), "{e}");
}

#[test]
fn a_given_x_t_is_the_first_frame() {
    let gpu = gpu();
    let (cfg, weights) = tiny();
    let mut generator = Generator::new(UNet::new(gpu, cfg, &weights).unwrap());
    let x_t: Vec<f32> = (0..2 * 256).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
    let r = Request {
        initial: Some(x_t.clone()),
        ..request(2, 1, true)
    };
    let mut g = Generation::new(&mut generator, gpu, r).unwrap();
    g.run_blocking(&mut generator, gpu, 10, |_| {}).unwrap();
    let (_, frames) = g.into_parts();
    let frames = frames.unwrap();
    assert_eq!(frames.x(0), SnapshotData::quantise(&x_t).as_slice());
}
