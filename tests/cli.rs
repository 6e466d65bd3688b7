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
