//! Sampling kernels: `shaders/noise.wgsl` (N(0,1) fill), `fill.wgsl` (constant fill),
//! `q_sample.wgsl` (forward process), `ddpm_step.wgsl` / `ddim_step.wgsl` (fused reverse steps),
//! `rng_bits.wgsl` (raw Philox words, for tests). All draw from `shaders/rng.wgsl`, mirrored by
//! [`crate::cpu::sampling`].

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};
use crate::ops::{check_no_alias, same_shape};
use crate::schedule::{DdimCoefs, DdpmCoefs};

const NOISE: KernelSpec = KernelSpec {
    name: "noise",
    source: concat!(
        include_str!("../../shaders/rng.wgsl"),
        include_str!("../../shaders/noise.wgsl")
    ),
    entry: "noise",
    bindings: &[Access::Uniform, Access::ReadWrite],
    params: &RngParams::LAYOUT,
};

const RNG_BITS: KernelSpec = KernelSpec {
    name: "rng_bits",
    source: concat!(
        include_str!("../../shaders/rng.wgsl"),
        include_str!("../../shaders/rng_bits.wgsl")
    ),
    entry: "rng_bits",
    bindings: &[Access::Uniform, Access::ReadWrite],
    params: &RngParams::LAYOUT,
};

const FILL: KernelSpec = KernelSpec {
    name: "fill",
    source: include_str!("../../shaders/fill.wgsl"),
    entry: "fill",
    bindings: &[Access::Uniform, Access::ReadWrite],
    params: &FillParams::LAYOUT,
};

const Q_SAMPLE: KernelSpec = KernelSpec {
    name: "q_sample",
    source: concat!(
        include_str!("../../shaders/rng.wgsl"),
        include_str!("../../shaders/q_sample.wgsl")
    ),
    entry: "q_sample",
    bindings: &[
        Access::Uniform,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    params: &QSampleParams::LAYOUT,
};

const STEP_BINDINGS: &[Access] = &[
    Access::Uniform,
    Access::ReadWrite, // x
    Access::ReadWrite, // eps (guided: the combined ε̂ is written over its first half)
    Access::Read,      // z (or a placeholder)
    Access::ReadWrite, // x0_out
];

const DDPM_STEP: KernelSpec = KernelSpec {
    name: "ddpm_step",
    source: concat!(
        include_str!("../../shaders/rng.wgsl"),
        include_str!("../../shaders/ddpm_step.wgsl")
    ),
    entry: "ddpm_step",
    bindings: STEP_BINDINGS,
    params: &DdpmParams::LAYOUT,
};

const DDIM_STEP: KernelSpec = KernelSpec {
    name: "ddim_step",
    source: concat!(
        include_str!("../../shaders/rng.wgsl"),
        include_str!("../../shaders/ddim_step.wgsl")
    ),
    entry: "ddim_step",
    bindings: STEP_BINDINGS,
    params: &DdimParams::LAYOUT,
};

/// Invocations per workgroup of every sampling kernel (their `@workgroup_size`).
const WG: u32 = 256;

/// Where the σ·z term of a reverse step takes z from.
#[derive(Clone, Copy, Debug)]
pub enum StepNoise<'a> {
    /// The counter-based RNG keyed by (seed, stream = the step's timestep t, element index
    /// `first` + i: the element's position in the whole run, so batching never changes a draw).
    Rng { seed: u64, first: u64 },
    /// A given tensor of the sample's shape (e.g. diffusers' noise, for parity tests).
    Given(&'a Tensor),
}

uniform_params! {
    struct RngParams {
        n: u32,
        seed_lo: u32,
        seed_hi: u32,
        stream: u32,
        first_lo: u32,
        first_hi: u32,
        /// noise.wgsl: indices repeat every `period` elements.
        period: u32,
        _pad: u32,
    }
}

uniform_params! {
    struct FillParams {
        n: u32,
        value: f32,
        _pad: [u32; 2],
    }
}

uniform_params! {
    struct QSampleParams {
        n: u32,
        per_sample: u32,
        n_t: u32,
        draw: u32,
        seed_lo: u32,
        seed_hi: u32,
        stream: u32,
        _pad: u32,
    }
}

uniform_params! {
    struct DdpmParams {
        n: u32,
        seed_lo: u32,
        seed_hi: u32,
        stream: u32,
        sqrt_ab: f32,
        sqrt_1m_ab: f32,
        clip_range: f32,
        clip: u32,
        c_x0: f32,
        c_xt: f32,
        c_eps: f32,
        sigma: f32,
        noise_mode: u32,
        first_lo: u32,
        first_hi: u32,
        guided: u32,
        guidance: f32,
        _pad: [u32; 3],
    }
}

uniform_params! {
    struct DdimParams {
        n: u32,
        seed_lo: u32,
        seed_hi: u32,
        stream: u32,
        sqrt_ab: f32,
        sqrt_1m_ab: f32,
        clip_range: f32,
        clip: u32,
        sqrt_ab_prev: f32,
        c_dir: f32,
        sigma: f32,
        noise_mode: u32,
        first_lo: u32,
        first_hi: u32,
        guided: u32,
        guidance: f32,
        clipped_eps: u32,
        _pad: [u32; 3],
    }
}

impl RngParams {
    fn new(n: u32, seed: u64, stream: u32, first: u64) -> Self {
        RngParams {
            n,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            stream,
            first_lo: first as u32,
            first_hi: (first >> 32) as u32,
            period: n.max(1),
            _pad: 0,
        }
    }
}

fn workgroups(n: u32) -> [u32; 3] {
    grid(n.div_ceil(WG))
}

fn numel_u32(what: &str, t: &Tensor) -> Result<u32> {
    crate::ops::to_u32(what, "elements", t.numel())
}

/// out ← N(0, 1) drawn for (`seed`, `stream`, element index `first` + i); x_T of the reverse
/// process.
pub fn noise(gpu: &Gpu, out: &Tensor, seed: u64, stream: u32, first: u64) -> Result<Dispatch> {
    noise_repeated(gpu, out, seed, stream, first, out.numel())
}

/// [`noise`] with the indices repeating every `period` elements (`first + i % period`): the
/// halves of a classifier-free-guided batch start from the same x_T.
pub fn noise_repeated(
    gpu: &Gpu,
    out: &Tensor,
    seed: u64,
    stream: u32,
    first: u64,
    period: usize,
) -> Result<Dispatch> {
    let n = numel_u32("noise out", out)?;
    if period == 0 || !out.numel().is_multiple_of(period) {
        return Err(Error::operand(
            "noise",
            "period",
            format!("{period} must divide the {} elements", out.numel()),
        ));
    }
    let mut params = RngParams::new(n, seed, stream, first);
    params.period = crate::ops::to_u32("noise", "period", period)?;
    Ok(gpu.dispatch(&NOISE, &params, &[&out.buffer], workgroups(n)))
}

/// out (`[n, 4]`, read back as u32 bits) ← the raw Philox block for (`seed`, `stream`,
/// `first` + i).
pub fn rng_bits(gpu: &Gpu, out: &Tensor, seed: u64, stream: u32, first: u64) -> Result<Dispatch> {
    if out.shape.len() != 2 || out.shape[1] != 4 {
        return Err(Error::Shape {
            what: "rng_bits out".into(),
            expected: vec![out.shape.first().copied().unwrap_or(0), 4],
            got: out.shape.clone(),
        });
    }
    let n = numel_u32("rng_bits out", out)? / 4;
    let params = RngParams::new(n, seed, stream, first);
    Ok(gpu.dispatch(&RNG_BITS, &params, &[&out.buffer], workgroups(n)))
}

/// out ← `value` everywhere.
pub fn fill(gpu: &Gpu, out: &Tensor, value: f32) -> Result<Dispatch> {
    let n = numel_u32("fill out", out)?;
    let params = FillParams {
        n,
        value,
        _pad: [0; 2],
    };
    Ok(gpu.dispatch(&FILL, &params, &[&out.buffer], workgroups(n)))
}

/// Forward process: out = √ᾱ_{t[s]}·x0 + √(1−ᾱ_{t[s]})·ε for each sample s.
/// `x0`, `eps`, `out`: `[N, …]`; `t`: `[N]` timesteps as f32 (rounded, clamped to [0, T−1]);
/// `alphas_cumprod`: `[T]` ([`crate::schedule::Schedule::alphas_cumprod`]). With
/// `draw = Some((seed, stream))` ε is drawn from the RNG (element index) and written to `eps`
/// (the training target); otherwise `eps` is read.
pub fn q_sample(
    gpu: &Gpu,
    x0: &Tensor,
    t: &Tensor,
    alphas_cumprod: &Tensor,
    eps: &Tensor,
    draw: Option<(u64, u32)>,
    out: &Tensor,
) -> Result<Dispatch> {
    let batch = *x0.shape.first().ok_or_else(|| {
        Error::operand(
            "q_sample",
            "x0",
            "must have a batch dimension, got a scalar",
        )
    })?;
    same_shape("q_sample t", &[batch], &t.shape)?;
    same_shape("q_sample eps", &x0.shape, &eps.shape)?;
    same_shape("q_sample out", &x0.shape, &out.shape)?;
    if alphas_cumprod.shape.len() != 1 || alphas_cumprod.numel() == 0 {
        return Err(Error::operand(
            "q_sample",
            "alphas_cumprod",
            format!(
                "must be a non-empty [T] table, got {:?}",
                alphas_cumprod.shape
            ),
        ));
    }
    // eps is written too when the noise is drawn here.
    check_no_alias(
        "q_sample",
        &[("out", out), ("eps", eps)],
        &[("x0", x0), ("t", t)],
    )?;
    let n = numel_u32("q_sample x0", x0)?;
    let (seed, stream) = draw.unwrap_or((0, 0));
    let params = QSampleParams {
        n,
        per_sample: crate::ops::to_u32(
            "q_sample",
            "elements per sample",
            (x0.numel() / batch.max(1)).max(1),
        )?,
        n_t: numel_u32("q_sample alphas_cumprod", alphas_cumprod)?,
        draw: draw.is_some() as u32,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        stream,
        _pad: 0,
    };
    Ok(gpu.dispatch(
        &Q_SAMPLE,
        &params,
        &[
            &x0.buffer,
            &t.buffer,
            &alphas_cumprod.buffer,
            &eps.buffer,
            &out.buffer,
        ],
        workgroups(n),
    ))
}

/// Checks the step operands; returns (n, z tensor, noise mode, seed, first element index), z
/// being [`Gpu::placeholder`] unless given. With `guided`, n is half the elements (the
/// conditional half; see `shaders/ddpm_step.wgsl`).
fn step_operands(
    gpu: &Gpu,
    what: &str,
    [x, eps, x0_out]: [&Tensor; 3],
    sigma: f32,
    noise: StepNoise,
    guided: bool,
) -> Result<(u32, Tensor, u32, u64, u64)> {
    same_shape(&format!("{what} eps"), &x.shape, &eps.shape)?;
    same_shape(&format!("{what} x0_out"), &x.shape, &x0_out.shape)?;
    check_no_alias(what, &[("x", x), ("x0_out", x0_out), ("eps", eps)], &[])?;
    let mut n = numel_u32(what, x)?;
    if guided {
        if x.shape.first().is_none_or(|b| !b.is_multiple_of(2)) {
            return Err(Error::operand(
                what,
                "x",
                format!(
                    "a guided step needs an even batch (conditional and unconditional halves), \
                     got {:?}",
                    x.shape
                ),
            ));
        }
        n /= 2;
    }
    Ok(match noise {
        _ if sigma == 0.0 => (n, gpu.placeholder()?.clone(), 0, 0, 0),
        StepNoise::Rng { seed, first } => (n, gpu.placeholder()?.clone(), 1, seed, first),
        StepNoise::Given(z) => {
            same_shape(&format!("{what} z"), &x.shape, &z.shape)?;
            check_no_alias(
                what,
                &[("x", x), ("x0_out", x0_out), ("eps", eps)],
                &[("z", z)],
            )?;
            (n, z.clone(), 2, 0, 0)
        }
    })
}

/// One DDPM reverse step in place on `x` (`[N, C, H, W]`): x ← x_prev, `x0_out` ← x̂0,
/// from ε̂ `eps` and [`DdpmCoefs`] (see `shaders/ddpm_step.wgsl`).
pub fn ddpm_step(
    gpu: &Gpu,
    x: &Tensor,
    eps: &Tensor,
    x0_out: &Tensor,
    c: &DdpmCoefs,
    noise: StepNoise,
    guidance: Option<f32>,
) -> Result<Dispatch> {
    let (n, z, mode, seed, first) = step_operands(
        gpu,
        "ddpm_step",
        [x, eps, x0_out],
        c.sigma,
        noise,
        guidance.is_some(),
    )?;
    let params = DdpmParams {
        n,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        stream: c.t,
        sqrt_ab: c.sqrt_ab,
        sqrt_1m_ab: c.sqrt_1m_ab,
        clip_range: c.clip.unwrap_or(0.0),
        clip: c.clip.is_some() as u32,
        c_x0: c.c_x0,
        c_xt: c.c_xt,
        c_eps: c.c_eps,
        sigma: c.sigma,
        noise_mode: mode,
        first_lo: first as u32,
        first_hi: (first >> 32) as u32,
        guided: guidance.is_some() as u32,
        guidance: guidance.unwrap_or(1.0),
        _pad: [0; 3],
    };
    Ok(gpu.dispatch(
        &DDPM_STEP,
        &params,
        &[&x.buffer, &eps.buffer, &z.buffer, &x0_out.buffer],
        workgroups(n),
    ))
}

/// One DDIM step in place on `x`: x ← x_prev, `x0_out` ← x̂0 (see `shaders/ddim_step.wgsl`).
pub fn ddim_step(
    gpu: &Gpu,
    x: &Tensor,
    eps: &Tensor,
    x0_out: &Tensor,
    c: &DdimCoefs,
    noise: StepNoise,
    guidance: Option<f32>,
) -> Result<Dispatch> {
    let (n, z, mode, seed, first) = step_operands(
        gpu,
        "ddim_step",
        [x, eps, x0_out],
        c.sigma,
        noise,
        guidance.is_some(),
    )?;
    let params = DdimParams {
        n,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        stream: c.t,
        sqrt_ab: c.sqrt_ab,
        sqrt_1m_ab: c.sqrt_1m_ab,
        clip_range: c.clip.unwrap_or(0.0),
        clip: c.clip.is_some() as u32,
        sqrt_ab_prev: c.sqrt_ab_prev,
        c_dir: c.c_dir,
        sigma: c.sigma,
        noise_mode: mode,
        first_lo: first as u32,
        first_hi: (first >> 32) as u32,
        guided: guidance.is_some() as u32,
        guidance: guidance.unwrap_or(1.0),
        clipped_eps: c.clipped_eps as u32,
        _pad: [0; 3],
    };
    Ok(gpu.dispatch(
        &DDIM_STEP,
        &params,
        &[&x.buffer, &eps.buffer, &z.buffer, &x0_out.buffer],
        workgroups(n),
    ))
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![
        kernel_check!(NOISE).workgroup_size([WG]),
        kernel_check!(RNG_BITS).workgroup_size([WG]),
        kernel_check!(FILL).workgroup_size([WG]),
        kernel_check!(Q_SAMPLE).workgroup_size([WG]),
        kernel_check!(DDPM_STEP).workgroup_size([WG]),
        kernel_check!(DDIM_STEP).workgroup_size([WG]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::sampling as cpu;
    use crate::schedule::{BetaSchedule, Schedule, VarianceType};
    use crate::testing::{assert_close, err_text, gpu, operand_err_text, Rng};

    const SIZES: [usize; 5] = [1, 7, 255, 257, 3001];

    fn run(d: Dispatch) {
        pollster::block_on(gpu().run(&[d])).unwrap();
    }

    #[test]
    fn rng_bits_match_cpu_exactly() {
        let gpu = gpu();
        // The last case's element indices cross 2^32: the high word carries into the counter.
        let cases = [
            (1, 0, 0, 0),
            (257, 42, 7, 0),
            (1000, u64::MAX, u32::MAX, 3),
            (600, 5, 2, (1 << 32) - 300),
        ];
        for (n, seed, stream, first) in cases {
            let out = Tensor::zeros(gpu, &[n, 4], "bits").unwrap();
            run(rng_bits(gpu, &out, seed, stream, first).unwrap());
            let got: Vec<u32> = out
                .read_blocking(gpu)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let want: Vec<u32> = (0..n as u64)
                .flat_map(|i| cpu::rng_u32x4(seed, stream, first + i))
                .collect();
            assert_eq!(got, want, "seed {seed} stream {stream} first {first}");
        }
    }

    #[test]
    fn noise_matches_cpu() {
        let gpu = gpu();
        for (k, n) in SIZES.into_iter().enumerate() {
            let seed = 0x1234_5678_9abc_def0 ^ k as u64;
            let first = [0, 7 * 784, (1 << 32) - 100][k % 3];
            let out = Tensor::zeros(gpu, &[n], "noise").unwrap();
            run(noise(gpu, &out, seed, 11, first).unwrap());
            let got = out.read_blocking(gpu).unwrap();
            let want = cpu::noise(n, seed, 11, first);
            assert_close(&got, &want, 2e-6, 2e-6, "noise");
        }
    }

    #[test]
    fn fill_writes_constant() {
        let gpu = gpu();
        for n in SIZES {
            let out = Tensor::from_slice(gpu, &[n], &vec![7.0; n], "fill").unwrap();
            run(fill(gpu, &out, -3.25).unwrap());
            assert_eq!(out.read_blocking(gpu).unwrap(), cpu::fill(n, -3.25));
        }
    }

    #[test]
    fn q_sample_matches_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(5);
        let sched = Schedule::new(BetaSchedule::Linear, 1000, 1e-4, 0.02).unwrap();
        let ab = sched.alphas_cumprod();
        let tab = Tensor::from_slice(gpu, &[ab.len()], &ab, "ab").unwrap();
        for shape in [vec![1, 1, 1, 1], vec![3, 2, 5, 7], vec![2, 3, 16, 9]] {
            let n: usize = shape.iter().product();
            let x0 = rng.normals(n, 1.0);
            let e = rng.normals(n, 1.0);
            let t: Vec<f32> = (0..shape[0]).map(|_| rng.range(0, 999) as f32).collect();
            let tx0 = Tensor::from_slice(gpu, &shape, &x0, "x0").unwrap();
            let tt = Tensor::from_slice(gpu, &[shape[0]], &t, "t").unwrap();
            let teps = Tensor::from_slice(gpu, &shape, &e, "eps").unwrap();
            let out = Tensor::zeros(gpu, &shape, "out").unwrap();
            // Given ε.
            run(q_sample(gpu, &tx0, &tt, &tab, &teps, None, &out).unwrap());
            let (want, _) = cpu::q_sample(&x0, &t, &ab, Some(&e), None);
            assert_close(
                &out.read_blocking(gpu).unwrap(),
                &want,
                1e-5,
                1e-5,
                "q_sample",
            );
            assert_eq!(teps.read_blocking(gpu).unwrap(), e, "eps left alone");
            // Drawn ε, written back.
            run(q_sample(gpu, &tx0, &tt, &tab, &teps, Some((9, 3)), &out).unwrap());
            let (want, want_eps) = cpu::q_sample(&x0, &t, &ab, None, Some((9, 3)));
            assert_close(
                &teps.read_blocking(gpu).unwrap(),
                &want_eps,
                2e-6,
                2e-6,
                "eps",
            );
            assert_close(
                &out.read_blocking(gpu).unwrap(),
                &want,
                1e-5,
                1e-5,
                "q_sample rng",
            );
        }
    }

    fn step_case(shape: &[usize], t: usize, prev: Option<usize>, ddim: bool, clip: Option<f32>) {
        step_case_guided(shape, t, prev, ddim, clip, None);
        if shape[0].is_multiple_of(2) {
            step_case_guided(shape, t, prev, ddim, clip, Some(2.5));
        }
    }

    /// One step on the GPU vs the CPU; `guidance`: the batch is (conditional ‖ unconditional)
    /// halves, combined as ε̂_u + w·(ε̂_c − ε̂_u) and written to both.
    fn step_case_guided(
        shape: &[usize],
        t: usize,
        prev: Option<usize>,
        ddim: bool,
        clip: Option<f32>,
        guidance: Option<f32>,
    ) {
        let gpu = gpu();
        let mut rng = Rng::new(t as u64 * 7 + ddim as u64);
        let sched = Schedule::new(BetaSchedule::SquaredcosCapV2, 1000, 1e-4, 0.02).unwrap();
        let n: usize = shape.iter().product();
        let x = rng.normals(n, 1.5);
        let e = rng.normals(n, 1.0);
        let z = rng.normals(n, 1.0);
        let tx = Tensor::from_slice(gpu, shape, &x, "x").unwrap();
        let te = Tensor::from_slice(gpu, shape, &e, "eps").unwrap();
        let tz = Tensor::from_slice(gpu, shape, &z, "z").unwrap();
        let tx0 = Tensor::zeros(gpu, shape, "x0").unwrap();
        let (seed, first) = (77, 3 * n as u64);
        // What the CPU steps: the whole batch, or the first half with the combined ε̂.
        let m = if guidance.is_some() { n / 2 } else { n };
        let (xc, ec) = match guidance {
            Some(w) => (
                x[..m].to_vec(),
                (0..m).map(|i| e[m + i] + w * (e[i] - e[m + i])).collect(),
            ),
            None => (x.clone(), e.clone()),
        };
        for given in [false, true] {
            if given && guidance.is_some() {
                continue; // given z is for parity tests, never guided
            }
            tx.write(gpu, &x).unwrap();
            te.write(gpu, &e).unwrap();
            let noise = if given {
                StepNoise::Given(&tz)
            } else {
                StepNoise::Rng { seed, first }
            };
            let zz = if given {
                z.clone()
            } else {
                cpu::noise(m, seed, t as u32, first)
            };
            let (d, (want, want_x0)) = if ddim {
                let mut c = sched.ddim_coefs(t, prev, 1.0, 0.7, clip).unwrap();
                // Both ways of the direction term's ε̂ (re-derived from the clipped x̂0 or not).
                c.clipped_eps = clip.is_some() && !given;
                (
                    ddim_step(gpu, &tx, &te, &tx0, &c, noise, guidance).unwrap(),
                    cpu::ddim_step(&xc, &ec, &c, &zz),
                )
            } else {
                let c = sched
                    .ddpm_coefs(t, prev, VarianceType::FixedSmall, clip)
                    .unwrap();
                (
                    ddpm_step(gpu, &tx, &te, &tx0, &c, noise, guidance).unwrap(),
                    cpu::ddpm_step(&xc, &ec, &c, &zz),
                )
            };
            let (want, want_x0) = match guidance {
                Some(_) => (
                    [want.clone(), want].concat(),
                    [want_x0.clone(), want_x0].concat(),
                ),
                None => (want, want_x0),
            };
            run(d);
            let what =
                format!("{shape:?} t={t} ddim={ddim} clip={clip:?} given={given} w={guidance:?}");
            assert_close(&tx.read_blocking(gpu).unwrap(), &want, 1e-5, 1e-5, &what);
            assert_close(
                &tx0.read_blocking(gpu).unwrap(),
                &want_x0,
                1e-5,
                1e-5,
                &what,
            );
            // eps[0..m] holds the ε̂ the update used (guided: the combination; else unchanged).
            let used = te.read_blocking(gpu).unwrap();
            assert_close(&used[..m], &ec, 1e-6, 1e-6, &format!("{what} eps used"));
            assert_eq!(used[m..], e[m..], "{what}: the unconditional half is kept");
        }
    }

    #[test]
    fn ddpm_step_matches_cpu() {
        for (shape, t) in [
            (vec![1, 1, 1, 1], 0),
            (vec![2, 3, 5, 7], 1),
            (vec![3, 1, 9, 11], 500),
            (vec![1, 3, 16, 17], 999),
        ] {
            for clip in [None, Some(1.0)] {
                step_case(&shape, t, t.checked_sub(1), false, clip);
            }
        }
        step_case(&[2, 3, 4, 5], 600, Some(400), false, Some(1.0));
    }

    #[test]
    fn ddim_step_matches_cpu() {
        for (shape, t, prev) in [
            (vec![1, 1, 1, 1], 0, None),
            (vec![2, 3, 5, 7], 20, Some(0)),
            (vec![3, 1, 9, 11], 500, Some(480)),
            (vec![1, 3, 16, 17], 999, Some(979)),
        ] {
            for clip in [None, Some(1.0)] {
                step_case(&shape, t, prev, true, clip);
            }
        }
    }

    #[test]
    fn ops_reject_bad_operands() {
        let gpu = gpu();
        let sched = Schedule::new(BetaSchedule::Linear, 10, 1e-4, 0.02).unwrap();
        let c = sched
            .ddpm_coefs(5, Some(4), VarianceType::FixedLarge, None)
            .unwrap();
        let a = Tensor::zeros(gpu, &[2, 3], "a").unwrap();
        let b = Tensor::zeros(gpu, &[2, 3], "b").unwrap();
        let odd = Tensor::zeros(gpu, &[3, 2], "odd").unwrap();
        let noise = StepNoise::Rng { seed: 1, first: 0 };
        // A guided step needs an even batch.
        let odd_batch = Tensor::zeros(gpu, &[3, 2], "odd batch").unwrap();
        let (ob_e, ob_x0) = (
            Tensor::zeros(gpu, &[3, 2], "e").unwrap(),
            Tensor::zeros(gpu, &[3, 2], "x0").unwrap(),
        );
        let e = operand_err_text(
            ddpm_step(gpu, &odd_batch, &ob_e, &ob_x0, &c, noise, Some(2.0)),
            "guided step on an odd batch",
            "x",
        );
        assert!(e.contains("even batch"), "{e}");
        assert!(matches!(
            ddpm_step(gpu, &a, &odd, &b, &c, noise, None),
            Err(Error::Shape { .. })
        ));
        let e = err_text(
            ddpm_step(gpu, &a, &b, &a, &c, noise, None),
            "aliased output",
        );
        assert!(
            e.contains("ddpm_step: x and x0_out are the same buffer"),
            "{e}"
        );
        let e = err_text(
            ddpm_step(gpu, &a, &b, &odd, &c, noise, None),
            "x0_out of the wrong shape",
        );
        assert!(e.contains("shape mismatch for ddpm_step x0_out"), "{e}");
        // x0_out is checked before z, so this is rejected for x0_out's shape …
        let e = err_text(
            ddpm_step(gpu, &a, &b, &odd, &c, StepNoise::Given(&odd), None),
            "x0_out and z of the wrong shape",
        );
        assert!(e.contains("shape mismatch for ddpm_step x0_out"), "{e}");
        // … and with a good x0_out, for z's.
        let x0 = Tensor::zeros(gpu, &[2, 3], "x0").unwrap();
        let e = err_text(
            ddpm_step(gpu, &a, &b, &x0, &c, StepNoise::Given(&odd), None),
            "z of the wrong shape",
        );
        assert!(e.contains("shape mismatch for ddpm_step z"), "{e}");
        let t = Tensor::zeros(gpu, &[3], "t").unwrap();
        let tab = Tensor::zeros(gpu, &[10], "tab").unwrap();
        let e = err_text(
            q_sample(gpu, &a, &t, &tab, &b, None, &odd),
            "t of 3 for a batch of 2",
        );
        assert!(e.contains("shape mismatch for q_sample t"), "{e}");
        let t2 = Tensor::zeros(gpu, &[2], "t2").unwrap();
        let e = err_text(q_sample(gpu, &a, &t2, &tab, &b, None, &a), "aliased");
        assert!(
            e.contains("q_sample: out and x0 are the same buffer"),
            "{e}"
        );
        let empty = Tensor::zeros(gpu, &[0], "empty").unwrap();
        // out is checked before the table, so this is rejected for out's shape …
        let e = err_text(
            q_sample(gpu, &a, &t2, &empty, &b, None, &odd),
            "empty table and out of the wrong shape",
        );
        assert!(e.contains("shape mismatch for q_sample out"), "{e}");
        // … and with a good out, for the empty table.
        let e = operand_err_text(
            q_sample(gpu, &a, &t2, &empty, &b, None, &x0),
            "empty table",
            "alphas_cumprod",
        );
        assert!(
            e.contains("q_sample: alphas_cumprod: must be a non-empty [T] table"),
            "{e}"
        );
        let e = err_text(rng_bits(gpu, &a, 0, 0, 0), "out not [n, 4]");
        assert!(e.contains("shape mismatch for rng_bits out"), "{e}");
    }
}
