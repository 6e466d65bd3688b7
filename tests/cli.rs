//! The `ddpm` binary end to end on a fixture model: forward, info, sample, and its errors.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ddpm(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(args)
        .output()
        .expect("run ddpm");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn forward_writes_diffusers_eps() {
    let dir = fixture("unet_ddpm_style");
    let out = tmp("eps.npy");
    let (ok, text) = ddpm(&[
        "forward",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        dir.join("x.npy").to_str().unwrap(),
        "--timesteps",
        "1,500,999",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let (shape, eps) = ddpm::npy::read(&out).unwrap();
    let (want_shape, want) = ddpm::npy::read(dir.join("eps.npy")).unwrap();
    assert_eq!(shape, want_shape);
    ddpm::testing::assert_close(&eps, &want, 2e-5, 0.0, "ddpm forward vs diffusers");
}

#[test]
fn forward_takes_class_labels() {
    let dir = fixture("unet_class_cond");
    let out = tmp("eps_cond.npy");
    let (ok, text) = ddpm(&[
        "forward",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        dir.join("x.npy").to_str().unwrap(),
        "--timesteps",
        "10,500,999",
        "--class-labels",
        "3,10,7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let (_, eps) = ddpm::npy::read(&out).unwrap();
    let (_, want) = ddpm::npy::read(dir.join("eps.npy")).unwrap();
    ddpm::testing::assert_close(
        &eps,
        &want,
        2e-5,
        0.0,
        "ddpm forward --class-labels vs diffusers",
    );
    // Without labels, or with one outside the model's classes: clear errors.
    let x = dir.join("x.npy");
    let base = [
        "forward",
        "--model",
        dir.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--timesteps",
        "10",
        "--out",
        out.to_str().unwrap(),
    ];
    let (ok, text) = ddpm(&base);
    assert!(!ok && text.contains("class-conditional"), "{text}");
    let (ok, text) = ddpm(&[&base[..], &["--class-labels", "11"]].concat());
    assert!(!ok && text.contains("class label 11"), "{text}");
}

#[test]
fn sample_writes_png_and_npy() {
    let dir = fixture("unet_tiny");
    let (png, npy) = (tmp("grid.png"), tmp("samples.npy"));
    let args = [
        "sample",
        "--model",
        dir.to_str().unwrap(),
        "--n",
        "3",
        "--sampler",
        "ddim",
        "--steps",
        "4",
        "--seed",
        "5",
        "--out",
        png.to_str().unwrap(),
        "--npy",
        npy.to_str().unwrap(),
    ];
    let (ok, text) = ddpm(&args);
    assert!(ok, "{text}");
    let (shape, x) = ddpm::npy::read(&npy).unwrap();
    assert_eq!(shape, vec![3, 1, 16, 16]);
    assert!(x.iter().all(|v| v.is_finite()));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let info = decoder.read_info().unwrap().info().clone();
    // 2 columns of 16 px with 2 px padding.
    assert_eq!((info.width, info.height), (2 * 16 + 3 * 2, 2 * 16 + 3 * 2));
    // Same seed, same samples.
    let (ok, text) = ddpm(&args);
    assert!(ok, "{text}");
    assert_eq!(ddpm::npy::read(&npy).unwrap().1, x);
    // …whatever the batching: 2 batches of 2, the last one padded (kernel choices may differ
    // with the batch shape, so equal up to summation order).
    let (ok, text) = ddpm(&[&args[..], &["--batch", "2"]].concat());
    assert!(ok, "{text}");
    assert!(text.contains("in 2 batch(es) of 2"), "{text}");
    let batched = ddpm::npy::read(&npy).unwrap().1;
    ddpm::testing::assert_close(&batched, &x, 1e-4, 1e-4, "--batch 2 vs one batch");
    // The trajectory of all images over both batches: x_T and 4 steps.
    let gif = tmp("trajectory.gif");
    let (ok, text) = ddpm(&[&args[..], &["--batch", "2", "--gif", gif.to_str().unwrap()]].concat());
    assert!(ok, "{text}");
    assert!(text.contains("(5 frames)"), "{text}");
    let bytes = std::fs::read(&gif).unwrap();
    assert!(bytes.starts_with(b"GIF89a"));
    // Logical screen: the 3-image grid (2 columns, 2 px padding) at the GIF's scale.
    let (w, h) = (
        u16::from_le_bytes([bytes[6], bytes[7]]),
        u16::from_le_bytes([bytes[8], bytes[9]]),
    );
    assert_eq!(w, h);
    assert_eq!(w as usize % (2 * 16 + 3 * 2), 0, "{w}");
}

/// Without `--model`, `ddpm sample` uses the trained MNIST model bundled from assets/mnist: the
/// same samples as `--model assets/mnist`, and they look like MNIST: mostly dark background
/// (≈ 80 % of real MNIST pixels are −1) with some bright strokes (≈ 10 % above 0.5).
#[test]
fn sample_defaults_to_the_bundled_mnist_model() {
    let npy = tmp("bundled.npy");
    let common = [
        "--n",
        "4",
        "--sampler",
        "ddim",
        "--steps",
        "20",
        "--seed",
        "3",
        "--out",
    ];
    let mut args = vec!["sample"];
    args.extend(common);
    let png = tmp("bundled.png");
    args.extend([png.to_str().unwrap(), "--npy", npy.to_str().unwrap()]);
    let (ok, text) = ddpm(&args);
    assert!(ok, "{text}");
    assert!(text.contains("assets/mnist (bundled)"), "{text}");
    let (shape, bundled) = ddpm::npy::read(&npy).unwrap();
    assert_eq!(shape, vec![4, 1, 28, 28]);
    let fraction = |keep: fn(f32) -> bool| {
        bundled.iter().filter(|&&v| keep(v)).count() as f64 / bundled.len() as f64
    };
    let (background, ink) = (fraction(|v| v < -0.8), fraction(|v| v > 0.5));
    assert!(
        (0.6..0.95).contains(&background) && (0.03..0.3).contains(&ink),
        "not MNIST-like: {background:.2} background, {ink:.2} ink"
    );

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/mnist");
    let mut args = vec!["sample", "--model", dir.to_str().unwrap()];
    args.extend(common);
    args.extend([png.to_str().unwrap(), "--npy", npy.to_str().unwrap()]);
    let (ok, text) = ddpm(&args);
    assert!(ok, "{text}");
    assert_eq!(ddpm::npy::read(&npy).unwrap().1, bundled);
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let dir = fixture("unet_tiny");
    let model = dir.to_str().unwrap();
    for (args, msg) in [
        (
            vec!["sample", "--model", model, "--n", "0"],
            "--n must be between 1",
        ),
        (
            vec!["sample", "--model", model, "--sampler", "euler"],
            "unknown sampler",
        ),
        (
            vec![
                "sample",
                "--model",
                model,
                "--sampler",
                "ddim",
                "--steps",
                "0",
            ],
            "at least 1 inference step",
        ),
        (
            vec!["info", "--model", "/nonexistent/model"],
            "/nonexistent/model",
        ),
        (
            vec![
                "forward",
                "--model",
                model,
                "--input",
                "/nonexistent.npy",
                "--timesteps",
                "1",
                "--out",
                "/tmp/x.npy",
            ],
            "/nonexistent.npy",
        ),
    ] {
        let (ok, text) = ddpm(&args);
        assert!(!ok, "{args:?} should fail");
        assert!(text.contains(msg), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{args:?}: {text}");
    }
}

#[test]
fn loss_per_timestep_of_the_bundled_model() {
    let csv = tmp("loss.csv");
    let run = |seed: &str| {
        let (ok, out) = ddpm(&[
            "loss",
            "--timesteps",
            "3",
            "--draws",
            "1",
            "--seed",
            seed,
            "--csv",
            csv.to_str().unwrap(),
        ]);
        assert!(ok, "{out}");
        assert!(out.contains("over 8 mnist image(s) × 1 draw(s)"), "{out}");
        let text = std::fs::read_to_string(&csv).unwrap();
        let rows: Vec<(usize, f64)> = text
            .lines()
            .skip(1)
            .map(|l| {
                let (t, v) = l.split_once(',').unwrap();
                (t.parse().unwrap(), v.parse().unwrap())
            })
            .collect();
        rows
    };
    let a = run("0");
    assert_eq!(a.iter().map(|r| r.0).collect::<Vec<_>>(), [166, 500, 833]);
    assert!(a.iter().all(|r| r.1.is_finite() && r.1 > 0.0), "{a:?}");
    // A trained model is surest where x_t is mostly noise.
    assert!(a[0].1 > 3.0 * a[2].1, "{a:?}");
    assert_eq!(run("0"), a, "same seed, same curve");
    assert_ne!(run("1"), a, "another noise draw");

    let tiny = fixture("unet_tiny");
    let (ok, out) = ddpm(&["loss", "--model", tiny.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("the images are 1×28×28 but the model takes 1×16×16"),
        "{out}"
    );
}

#[test]
fn info_reports_parameters() {
    let (ok, text) = ddpm(&["info", "--preset", "cifar10"]);
    assert!(ok, "{text}");
    assert!(text.contains("parameters: 35746307"), "{text}");
}

#[test]
fn no_gpu_adapter_is_a_clear_error() {
    let dir = fixture("unet_tiny");
    let out = Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(["forward", "--model", dir.to_str().unwrap(), "--input"])
        .arg(dir.join("x.npy"))
        .args(["--timesteps", "1", "--out"])
        .arg(tmp("never.npy"))
        .env("WGPU_BACKEND", "vulkan")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("no GPU adapter available"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}

/// A tiny 1×28×28 U-Net config for the training runs below (fast on a software GPU).
const TINY_28: &str = r#"{
    "sample_size": 28, "in_channels": 1, "out_channels": 1,
    "block_out_channels": [8, 16],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1, "attention_head_dim": 8, "norm_num_groups": 4
}"#;

/// A data folder with an MNIST-format training set of 40 synthetic 28×28 images (a bright
/// square at a varying place), no labels.
fn synthetic_mnist(root: &Path) {
    let n = 40u32;
    let mut bytes = Vec::new();
    for v in [0x0803u32, n, 28, 28] {
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    for i in 0..n as usize {
        let (r0, c0) = (4 + i % 12, 4 + (i * 7) % 12);
        for r in 0..28 {
            for c in 0..28 {
                let on = (r0..r0 + 10).contains(&r) && (c0..c0 + 10).contains(&c);
                bytes.push(if on { 255 } else { 0 });
            }
        }
    }
    std::fs::create_dir_all(root.join("mnist")).unwrap();
    std::fs::write(root.join("mnist/train-images-idx3-ubyte"), bytes).unwrap();
}

/// [`synthetic_mnist`] plus labels (image i is class i % 10).
fn synthetic_mnist_with_labels(root: &Path) {
    synthetic_mnist(root);
    let n = 40u32;
    let mut bytes = Vec::new();
    for v in [0x0801u32, n] {
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    bytes.extend((0..n).map(|i| (i % 10) as u8));
    std::fs::write(root.join("mnist/train-labels-idx1-ubyte"), bytes).unwrap();
}

/// A fresh scratch folder for a training run: synthetic data, the tiny config, the output.
struct TrainDirs {
    root: PathBuf,
    data: PathBuf,
    config: PathBuf,
    out: PathBuf,
}

fn train_dirs(name: &str) -> TrainDirs {
    let root = tmp(name);
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    synthetic_mnist(&data);
    let config = root.join("tiny.json");
    std::fs::write(&config, TINY_28).unwrap();
    let out = root.join("run");
    TrainDirs {
        root,
        data,
        config,
        out,
    }
}

impl TrainDirs {
    /// `ddpm train` on the synthetic MNIST data at batch 4 into `out`, with `extra` arguments.
    fn train(&self, out: &Path, extra: &[&str]) -> (bool, String) {
        let mut args = vec![
            "train",
            "--data",
            "mnist",
            "--data-dir",
            self.data.to_str().unwrap(),
            "--batch",
            "4",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ddpm(&args)
    }
}

/// Rows of loss.csv after the header, as (step, loss).
fn loss_rows(out: &Path) -> Vec<(u64, f32)> {
    let text = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("step,loss,lr,seconds"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect()
}

/// `ddpm train` end to end: a cosine-schedule run writes a diffusers folder (loadable, with its
/// schedule), loss log, curve, samples and a checkpoint; `--resume` continues it; misuse fails
/// with a message and leaves the run intact.
#[test]
fn train_writes_a_model_and_resumes() {
    let TrainDirs {
        root,
        data,
        config,
        out,
    } = train_dirs("train");
    let (data_s, config_s, out_s) = (
        data.to_str().unwrap(),
        config.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let base = [
        "train",
        "--data",
        "mnist",
        "--data-dir",
        data_s,
        "--out",
        out_s,
        "--batch",
        "4",
        "--log-every",
        "1",
        "--checkpoint-every",
        "2",
        "--sample-every",
        "0",
    ];
    let run = |extra: &[&str]| ddpm(&[&base[..], extra].concat());

    let (ok, text) = run(&[
        "--config",
        config_s,
        "--beta-schedule",
        "cosine",
        "--timesteps",
        "500",
        "--steps",
        "4",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("squaredcos_cap_v2 β over T = 500"), "{text}");
    let (cfg, weights) = ddpm::model::load_dir(&out).unwrap();
    assert_eq!(cfg.block_out_channels, vec![8, 16]);
    assert_eq!(weights.num_params(), cfg.num_params());
    let sched =
        ddpm::schedule::SchedulerConfig::from_file(out.join("scheduler_config.json")).unwrap();
    assert_eq!(sched.beta_schedule.name(), "squaredcos_cap_v2");
    assert_eq!(sched.num_train_timesteps, 500);
    let rows = loss_rows(&out);
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(
        rows.iter().all(|r| r.1.is_finite() && r.1 > 0.0),
        "{rows:?}"
    );
    for file in ["checkpoint.safetensors", "loss.png", "samples_000004.png"] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let checkpoint = std::fs::read(out.join("checkpoint.safetensors")).unwrap();

    // Misuse: each fails with a message and changes nothing.
    for (extra, msg) in [
        (vec!["--steps", "6"], "already holds a checkpoint"),
        (
            vec!["--resume", "--beta-schedule", "linear", "--steps", "6"],
            "cannot change on --resume",
        ),
        (
            vec!["--beta-schedule", "quadratic", "--steps", "6"],
            "--beta-schedule",
        ),
    ] {
        let (ok, text) = run(&extra);
        assert!(!ok, "{extra:?} should fail");
        assert!(text.contains(msg), "{extra:?}: {text}");
        assert!(!text.contains("panicked"), "{extra:?}: {text}");
    }
    assert_eq!(
        std::fs::read(out.join("checkpoint.safetensors")).unwrap(),
        checkpoint
    );

    // As a kill after step 7 would leave it: loss rows past the checkpoint (the last one torn)
    // and temporaries of interrupted saves, current and older names, beside a user's file.
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(out.join("loss.csv"))
        .unwrap();
    std::io::Write::write_all(&mut log, b"5,12345,0.001,9.9\n6,12345,0.001,9.9\n7,12").unwrap();
    drop(log);
    let stale = [
        "checkpoint.safetensors.tmp",
        "diffusion_pytorch_model.safetensors.tmp",
        "diffusion_pytorch_model.tmp",
        "config.tmp",
    ];
    for f in stale.iter().chain(&["notes.tmp"]) {
        std::fs::write(out.join(f), b"partial").unwrap();
    }

    // Resume continues the same run (schedule and config from the checkpoint).
    let (ok, text) = run(&["--resume", "--steps", "6"]);
    assert!(ok, "{text}");
    assert!(text.contains("resumed at step 4"), "{text}");
    let rows = loss_rows(&out);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert!(rows.iter().all(|r| r.1 != 12345.0), "{rows:?}");
    for f in stale {
        assert!(!out.join(f).exists(), "{f} left behind");
        assert!(text.contains(f), "{text}");
    }
    assert!(
        out.join("notes.tmp").exists(),
        "a file that is not ours was removed"
    );
    assert_ne!(
        std::fs::read(out.join("checkpoint.safetensors")).unwrap(),
        checkpoint
    );

    // The exported folder samples with its own (cosine, T = 500) schedule.
    let npy = root.join("s.npy");
    let (ok, text) = ddpm(&[
        "sample",
        "--model",
        out_s,
        "--n",
        "2",
        "--sampler",
        "ddim",
        "--steps",
        "5",
        "--out",
        root.join("s.png").to_str().unwrap(),
        "--npy",
        npy.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert_eq!(ddpm::npy::read(&npy).unwrap().0, vec![2, 1, 28, 28]);

    // A fresh run whose model does not fit the data, and one without the dataset.
    let other = root.join("other");
    let (ok, text) = ddpm(&[
        "train",
        "--data",
        "mnist",
        "--data-dir",
        data_s,
        "--config",
        "emoji",
        "--out",
        other.to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(!ok && text.contains("channel"), "{text}");
    let (ok, text) = ddpm(&[
        "train",
        "--data",
        "emoji",
        "--data-dir",
        data_s,
        "--out",
        other.to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert!(
        !ok && text.contains("sheet-32.png") && text.contains("fetch_data.sh"),
        "{text}"
    );
}

/// Ctrl-C (SIGINT) during `ddpm train` finishes the step, saves a checkpoint at that very step and
/// exits with a message; `--resume` continues from it.
#[cfg(unix)]
#[test]
fn train_interrupted_saves_and_resumes() {
    let TrainDirs {
        data, config, out, ..
    } = train_dirs("interrupt");
    let args = |steps: &str| {
        [
            "train",
            "--data",
            "mnist",
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--batch",
            "2",
            "--log-every",
            "1",
            "--checkpoint-every",
            "100000",
            "--steps",
            steps,
        ]
        .map(String::from)
    };
    let child = Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(args("100000"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for a few logged steps, then interrupt.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !out.join("loss.csv").exists() || loss_rows(&out).len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "training did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let result = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "{text}");
    let step: u64 = text
        .split("interrupted at step ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no interruption message: {text}"));
    assert!(step >= 3, "{text}");
    assert!(out.join("checkpoint.safetensors").exists());
    ddpm::model::load_dir(&out).unwrap();

    let more = (step + 2).to_string();
    let resume_args = args(&more);
    let mut resume: Vec<&str> = resume_args.iter().map(String::as_str).collect();
    resume.push("--resume");
    let (ok, text) = ddpm(&resume);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("resumed at step {step}")), "{text}");
    assert_eq!(loss_rows(&out).last().unwrap().0, step + 2);
}

/// A run killed outright (SIGKILL) between checkpoints: `--resume` redoes the steps after the
/// last checkpoint, and loss.csv lists every step once.
#[cfg(unix)]
#[test]
fn train_killed_resumes_without_repeating_loss_rows() {
    let TrainDirs {
        data, config, out, ..
    } = train_dirs("killed");
    let args = |steps: &str| {
        [
            "train",
            "--data",
            "mnist",
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--batch",
            "2",
            "--log-every",
            "1",
            "--checkpoint-every",
            "3",
            "--sample-every",
            "0",
            "--steps",
            steps,
        ]
        .map(String::from)
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_ddpm"))
        .args(args("100000"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    // Steps of the complete rows (the process may be writing one right now).
    let complete = || -> Vec<u64> {
        let text = std::fs::read_to_string(out.join("loss.csv")).unwrap_or_default();
        text.split_inclusive('\n')
            .skip(1)
            .filter(|l| l.ends_with('\n'))
            .filter_map(|l| l.split(',').next()?.parse().ok())
            .collect()
    };
    while complete().len() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "training did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let logged = *complete().last().unwrap();
    let until = (logged + 2).to_string();
    let resume_args = args(&until);
    let mut resume: Vec<&str> = resume_args.iter().map(String::as_str).collect();
    resume.push("--resume");
    let (ok, text) = ddpm(&resume);
    assert!(ok, "{text}");
    let resumed: u64 = text
        .split("resumed at step ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume message: {text}"));
    assert!(
        resumed >= 3 && resumed.is_multiple_of(3) && resumed <= logged,
        "{text}"
    );
    let steps: Vec<u64> = loss_rows(&out).iter().map(|r| r.0).collect();
    assert_eq!(steps, (1..=logged + 2).collect::<Vec<_>>(), "{text}");
}

/// `ddpm sample --class 3 --guidance 2.5` on a class-conditional model draws what the CPU
/// reference computes with ε̂ = ε̂_u + w·(ε̂_c − ε̂_u) (conditional on class 3, unconditional
/// on the null class; DDIM's direction term from the clipped x̂0), whatever the batching; bad
/// classes and guidance are clear errors.
#[test]
fn sample_with_class_and_guidance_matches_the_cpu_reference() {
    use ddpm::cpu::sampling as cpu;
    use ddpm::model::cpu_unet::{self, HostTensor};
    use ddpm::sampler::{plan, sample_cpu, SamplerKind, SamplerOptions, INIT_STREAM};

    let src = fixture("unet_class_cond");
    let dir = tmp("class_cond_model");
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["ddpm_null_class"] = 10.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(
        src.join("diffusion_pytorch_model.safetensors"),
        dir.join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let npy = tmp("guided.npy");
    let png = tmp("guided.png");
    let sample = |extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--model",
            dir.to_str().unwrap(),
            "--n",
            "3",
            "--sampler",
            "ddim",
            "--steps",
            "4",
            "--seed",
            "5",
            "--out",
            png.to_str().unwrap(),
            "--npy",
            npy.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ddpm(&args)
    };
    let (ok, text) = sample(&["--class", "3", "--guidance", "2.5", "--batch", "2"]);
    assert!(ok, "{text}");
    let (shape, got) = ddpm::npy::read(&npy).unwrap();
    assert_eq!(shape, vec![3, 1, 16, 16]);

    let (config, weights) = ddpm::model::load_dir(&dir).unwrap();
    let sched = ddpm::schedule::SchedulerConfig::default();
    let kind = SamplerKind::Ddim { steps: 4, eta: 0.0 };
    let mut opts = SamplerOptions::new(&sched, kind, 5);
    // The guided plan: DDIM re-derives ε̂ from the clipped x̂0.
    opts.guidance = Some(2.5);
    let steps = plan(&sched, &opts).unwrap();
    let x_t = cpu::noise(3 * 256, 5, INIT_STREAM, 0);
    let (want, _) = sample_cpu(&steps, x_t, 5, 0, &mut |x, t| {
        let x = HostTensor {
            shape: vec![3, 1, 16, 16],
            data: x.to_vec(),
        };
        let ts = [t as f32; 3];
        let run = |c: f32| {
            cpu_unet::forward_with_labels(&config, &weights, &x, &ts, Some(&[c; 3]))
                .unwrap()
                .data
        };
        let (ec, eu) = (run(3.0), run(10.0));
        eu.iter().zip(&ec).map(|(u, c)| u + 2.5 * (c - u)).collect()
    });
    ddpm::testing::assert_close(&got, &want, 1e-4, 1e-4, "guided sample vs CPU");

    // Guidance 1 is the plain conditional model, and differs from w = 2.5.
    let (ok, text) = sample(&["--class", "3"]);
    assert!(ok, "{text}");
    let plain = ddpm::npy::read(&npy).unwrap().1;
    let diff = plain
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff > 1e-2, "guidance changed nothing ({diff})");

    let (ok, text) = sample(&["--class", "10"]);
    assert!(
        !ok && text.contains("0..=9"),
        "the null class is not drawable: {text}"
    );
    let (ok, text) = ddpm(&[
        "sample",
        "--model",
        src.to_str().unwrap(),
        "--guidance",
        "3",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("ddpm_null_class"), "{text}");
    let (ok, text) = ddpm(&[
        "sample",
        "--model",
        fixture("unet_tiny").to_str().unwrap(),
        "--class",
        "1",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("not class-conditional"), "{text}");
}

/// `ddpm train --conditional`: a class-conditional model (10 classes + the null class) whose
/// folder samples by class, with a grid of one row per class; resume needs the flag again;
/// data without labels is a clear error; `--init` of it without `--conditional` continues its
/// null class as an unconditional model.
#[test]
fn train_conditional_writes_a_class_conditional_model() {
    let d = train_dirs("train_cond");
    let config = d.config.to_str().unwrap();
    let (ok, text) = d.train(
        &d.out,
        &["--config", config, "--steps", "2", "--conditional"],
    );
    assert!(!ok && text.contains("has no labels"), "{text}");
    synthetic_mnist_with_labels(&d.data);
    let train = |steps: &str, extra: &[&str]| {
        let every = ["--sample-every", "2", "--checkpoint-every", "2"];
        let args = [&["--config", config, "--steps", steps], &every[..], extra].concat();
        d.train(&d.out, &args)
    };
    let (ok, text) = train("2", &["--conditional", "--label-dropout", "0.5"]);
    assert!(ok, "{text}");
    let cfg = ddpm::model::UNetConfig::from_json(
        &std::fs::read_to_string(d.out.join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            cfg.num_class_embeds,
            cfg.ddpm_null_class,
            cfg.classes().len()
        ),
        (Some(11), Some(10), 10)
    );
    let grid = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(d.out.join("samples_000002.png")).unwrap(),
    ));
    let info = grid.read_info().unwrap().info().clone();
    assert_eq!(
        (info.width, info.height),
        (2 * 28 + 3 * 2, 10 * 28 + 11 * 2),
        "2 per class, a row each"
    );
    let (ok, text) = train("4", &["--resume"]);
    assert!(
        !ok && text.contains("--conditional cannot change"),
        "{text}"
    );
    let (ok, text) = train("4", &["--resume", "--conditional"]);
    assert!(ok, "{text}");
    let (ok, text) = ddpm(&[
        "sample",
        "--model",
        d.out.to_str().unwrap(),
        "--class",
        "all",
        "--n",
        "10",
        "--sampler",
        "ddim",
        "--steps",
        "2",
        "--out",
        d.root.join("by_class.png").to_str().unwrap(),
    ]);
    assert!(ok, "{text}");

    // Continued unconditionally (one step at a negligible rate): the null row folded into the
    // time embedding's bias, no class embedding, no guidance keys.
    let plain = d.root.join("plain");
    let args = [
        "--init",
        d.out.to_str().unwrap(),
        "--steps",
        "1",
        "--lr",
        "1e-12",
        "--warmup",
        "0",
    ];
    let (ok, text) = d.train(&plain, &args);
    assert!(ok && text.contains("as an unconditional one"), "{text}");
    let (cond_cfg, cond_w) = ddpm::model::load_dir(&d.out).unwrap();
    let (plain_cfg, plain_w) = ddpm::model::load_dir(&plain).unwrap();
    assert_eq!(
        (plain_cfg.num_class_embeds, plain_cfg.ddpm_guidance_scale),
        (None, None)
    );
    assert!(plain_w.get("class_embedding.weight").is_none());
    let table = cond_w.tensor("class_embedding.weight").unwrap();
    let dim = table.shape[1];
    let null = &table.data[10 * dim..11 * dim];
    let bias = "time_embedding.linear_2.bias";
    let want: Vec<f32> = cond_w
        .tensor(bias)
        .unwrap()
        .data
        .iter()
        .zip(null)
        .map(|(b, r)| b + r)
        .collect();
    let got = &plain_w.tensor(bias).unwrap().data;
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        diff < 1e-3,
        "folded bias off by {diff} (cond null class {:?})",
        cond_cfg.ddpm_null_class
    );
}

/// `ddpm train --init DIR` starts from a model folder's weights and config (not random ones):
/// one step at a negligible learning rate leaves the export equal to the starting model, where
/// a fresh run with another seed differs; a conditional flag that does not match the model and
/// `--resume` alongside are refused.
#[test]
fn train_init_starts_from_a_model_folder() {
    let d = train_dirs("train_init");
    let train = |out: &Path, extra: &[&str]| d.train(out, &[&["--steps", "1"], extra].concat());
    let (ok, text) = train(&d.out, &["--config", d.config.to_str().unwrap()]);
    assert!(ok, "{text}");
    let start = d.out.to_str().unwrap();
    let tuned = d.root.join("tuned");
    let (ok, text) = train(
        &tuned,
        &[
            "--init", start, "--seed", "5", "--lr", "1e-12", "--warmup", "0",
        ],
    );
    assert!(ok, "{text}");
    let fresh = d.root.join("fresh");
    let (ok, text) = train(
        &fresh,
        &["--config", d.config.to_str().unwrap(), "--seed", "5"],
    );
    assert!(ok, "{text}");

    let (start_cfg, start_w) = ddpm::model::load_dir(&d.out).unwrap();
    let (tuned_cfg, tuned_w) = ddpm::model::load_dir(&tuned).unwrap();
    let (_, fresh_w) = ddpm::model::load_dir(&fresh).unwrap();
    assert_eq!(tuned_cfg, start_cfg, "the --init model's config");
    let max_diff = |a: &ddpm::model::Weights, b: &ddpm::model::Weights| {
        a.iter()
            .flat_map(|(name, x)| {
                let y = b.get(name).unwrap();
                x.data.iter().zip(&y.data).map(|(u, v)| (u - v).abs())
            })
            .fold(0f32, f32::max)
    };
    let kept = max_diff(&start_w, &tuned_w);
    let fresh_diff = max_diff(&start_w, &fresh_w);
    assert!(kept < 1e-5, "--init moved the weights by {kept}");
    assert!(
        fresh_diff > 1e-2,
        "a fresh seed-5 run differs by only {fresh_diff}"
    );

    let (ok, text) = train(&d.root.join("cond"), &["--init", start, "--conditional"]);
    assert!(
        !ok && text.contains("the --init model is unconditional")
            && text.contains("--conditional cannot change"),
        "{text}"
    );
    let (ok, text) = train(&d.out, &["--init", start, "--resume"]);
    assert!(!ok && text.contains("--init"), "{text}");
}
