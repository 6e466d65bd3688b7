//! The counter-based RNG and q_sample: statistics of the GPU's normals and of the forward
//! process per sample and timestep.

use ddpm::cpu::sampling as cpu;
use ddpm::gpu::{Gpu, Tensor};
use ddpm::ops::sampling as ops;
use ddpm::schedule::SchedulerConfig;
use ddpm::testing::{gpu, max_abs_diff};

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
