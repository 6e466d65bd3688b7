//! `cargo bench`: U-Net forward latency and per-kernel GFLOP/s (same as `ddpm bench`).
//! Set `DDPM_BENCH_PRESETS` (default `mnist,cifar10`) and `DDPM_BENCH_BATCHES` (default `1,16,64`).

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn main() {
    let gpu = ddpm::gpu::Gpu::new_blocking().expect("a GPU adapter (lavapipe works)");
    println!("GPU: {}", gpu.describe());
    for name in list("DDPM_BENCH_PRESETS", "mnist,cifar10") {
        let cfg = ddpm::model::presets::preset(&name).expect("known preset");
        for batch in list("DDPM_BENCH_BATCHES", "1,16,64") {
            let batch: usize = batch.parse().expect("batch sizes are integers");
            let b = ddpm::bench::bench_forward(&gpu, &cfg, batch, 3, true).expect("benchmark runs");
            ddpm::bench::print_forward(&name, &b);
        }
    }
}
