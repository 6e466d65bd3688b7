//! Noise schedules (β_t, α_t, ᾱ_t, β̃_t) and diffusers' `scheduler_config.json`.
//!
//! Everything is computed in f64 and exposed as f32 arrays (what the kernels consume). Per-step
//! update coefficients ([`DdpmCoefs`], [`DdimCoefs`]) are derived here, in f64, from ᾱ.

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// Most training timesteps T accepted (diffusers' models use 1000; the tables are O(T)).
pub const MAX_TIMESTEPS: usize = 1_000_000;

/// How β_t is laid out over the training timesteps (diffusers' `beta_schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BetaSchedule {
    /// `"linear"`: β linearly from `beta_start` to `beta_end` (Ho et al. 2020).
    Linear,
    /// `"scaled_linear"`: √β linear, squared.
    ScaledLinear,
    /// `"squaredcos_cap_v2"`: cosine ᾱ (Nichol & Dhariwal 2021), β capped at 0.999.
    SquaredcosCapV2,
}

impl BetaSchedule {
    /// diffusers' name.
    pub fn name(self) -> &'static str {
        match self {
            BetaSchedule::Linear => "linear",
            BetaSchedule::ScaledLinear => "scaled_linear",
            BetaSchedule::SquaredcosCapV2 => "squaredcos_cap_v2",
        }
    }

    /// Parses diffusers' name for it.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(BetaSchedule::Linear),
            "scaled_linear" => Ok(BetaSchedule::ScaledLinear),
            "squaredcos_cap_v2" => Ok(BetaSchedule::SquaredcosCapV2),
            _ => Err(config_err(
                "beta_schedule",
                s,
                "supported: linear, scaled_linear, squaredcos_cap_v2",
            )),
        }
    }
}

/// The reverse-process variance σ_t² of DDPM sampling (diffusers' `variance_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarianceType {
    /// `"fixed_small"`: σ² = β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t)·β_t (clamped at 1e-20 as diffusers does).
    FixedSmall,
    /// `"fixed_large"`: σ² = β_t.
    FixedLarge,
}

impl VarianceType {
    /// diffusers' name.
    pub fn name(self) -> &'static str {
        match self {
            VarianceType::FixedSmall => "fixed_small",
            VarianceType::FixedLarge => "fixed_large",
        }
    }

    /// Parses diffusers' name for it.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            // `fixed_small_log` draws with σ = exp(½ log β̃): the same numbers.
            "fixed_small" | "fixed_small_log" => Ok(VarianceType::FixedSmall),
            "fixed_large" => Ok(VarianceType::FixedLarge),
            _ => Err(config_err(
                "variance_type",
                s,
                "supported: fixed_small, fixed_small_log, fixed_large (learned variances need a \
                 model with 2× output channels, which we do not run)",
            )),
        }
    }
}

/// How inference timesteps are spread over the training ones (diffusers' `timestep_spacing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestepSpacing {
    /// `"leading"`: `arange(0, n)·(T // n)`, reversed, plus `steps_offset`.
    Leading,
    /// `"linspace"`: `linspace(0, T−1, n).round()`, reversed.
    Linspace,
    /// `"trailing"`: `round(arange(T, 0, −T/n)) − 1`.
    Trailing,
}

impl TimestepSpacing {
    /// diffusers' name.
    pub fn name(self) -> &'static str {
        match self {
            TimestepSpacing::Leading => "leading",
            TimestepSpacing::Linspace => "linspace",
            TimestepSpacing::Trailing => "trailing",
        }
    }

    /// Parses diffusers' name for it.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "leading" => Ok(TimestepSpacing::Leading),
            "linspace" => Ok(TimestepSpacing::Linspace),
            "trailing" => Ok(TimestepSpacing::Trailing),
            _ => Err(config_err(
                "timestep_spacing",
                s,
                "supported: leading, linspace, trailing",
            )),
        }
    }
}

/// The settings of diffusers' `DDPMScheduler` / `DDIMScheduler` that we run.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// `_class_name` if present (e.g. `"DDPMScheduler"`); informative only.
    pub class_name: Option<String>,
    /// T, the number of training timesteps.
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub variance_type: VarianceType,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: usize,
    /// DDIM: ᾱ before the first timestep is 1 (else ᾱ_0).
    pub set_alpha_to_one: bool,
}

impl Default for SchedulerConfig {
    /// diffusers' `DDPMScheduler()` defaults (the original DDPM setup).
    fn default() -> Self {
        SchedulerConfig {
            class_name: None,
            num_train_timesteps: 1000,
            beta_start: 1e-4,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            variance_type: VarianceType::FixedSmall,
            clip_sample: true,
            clip_sample_range: 1.0,
            timestep_spacing: TimestepSpacing::Leading,
            steps_offset: 0,
            set_alpha_to_one: true,
        }
    }
}

fn config_err(key: &str, value: impl std::fmt::Display, reason: &str) -> Error {
    Error::Config {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// Keys that only matter for features that are switched off (checked elsewhere) or that carry
/// no meaning for us.
const IGNORED_KEYS: &[&str] = &[
    "dynamic_thresholding_ratio", // thresholding only
    "sample_max_value",           // thresholding only
    "tensor_format",              // diffusers 0.1 configs
    "skip_prk_steps",             // PNDMScheduler
];

impl SchedulerConfig {
    /// Parses a diffusers `scheduler_config.json`. Missing keys take diffusers' defaults;
    /// unsupported values and unknown keys are an [`Error::Config`] naming the key.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::format("JSON", "scheduler_config.json", e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(Error::format(
                "JSON",
                "scheduler_config.json",
                "expected a JSON object",
            ));
        };
        Self::from_map(&map)
    }

    /// Reads and parses a `scheduler_config.json` file (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text).map_err(|e| match e {
            Error::Format { format, reason, .. } => Error::Format {
                format,
                what: path.display().to_string(),
                reason,
            },
            Error::Config { key, value, reason } => Error::Config {
                key,
                value,
                reason: format!("{reason} (in {})", path.display()),
            },
            e => e,
        })
    }

    fn from_map(map: &Map<String, Value>) -> Result<Self> {
        let mut c = SchedulerConfig::default();
        for (key, v) in map {
            match key.as_str() {
                "_class_name" => c.class_name = v.as_str().map(str::to_string),
                k if k.starts_with('_') => {}
                "num_train_timesteps" => {
                    let n = get_uint(key, v)?;
                    if !(1..=MAX_TIMESTEPS).contains(&n) {
                        return Err(config_err(
                            key,
                            v,
                            &format!("must be between 1 and {MAX_TIMESTEPS}"),
                        ));
                    }
                    c.num_train_timesteps = n;
                }
                "beta_start" => c.beta_start = get_f64(key, v)?,
                "beta_end" => c.beta_end = get_f64(key, v)?,
                "beta_schedule" => c.beta_schedule = BetaSchedule::parse(get_str(key, v)?)?,
                "variance_type" => {
                    if !v.is_null() {
                        c.variance_type = VarianceType::parse(get_str(key, v)?)?;
                    }
                }
                "clip_sample" => c.clip_sample = get_bool(key, v)?,
                "clip_sample_range" => {
                    c.clip_sample_range = get_f64(key, v)?;
                    let r = c.clip_sample_range;
                    // Used as f32: it must stay positive and finite there.
                    if !(r > 0.0 && (r as f32).is_finite() && (r as f32) > 0.0) {
                        return Err(config_err(key, v, "must be positive and fit an f32"));
                    }
                }
                "timestep_spacing" => {
                    c.timestep_spacing = TimestepSpacing::parse(get_str(key, v)?)?
                }
                "steps_offset" => {
                    c.steps_offset = get_uint(key, v)?;
                    if c.steps_offset > MAX_TIMESTEPS {
                        return Err(config_err(
                            key,
                            v,
                            &format!("must be at most {MAX_TIMESTEPS}"),
                        ));
                    }
                }
                "set_alpha_to_one" => c.set_alpha_to_one = get_bool(key, v)?,
                "prediction_type" => {
                    let s = get_str(key, v)?;
                    if s != "epsilon" {
                        return Err(config_err(
                            key,
                            s,
                            "only \"epsilon\" (the model predicts the noise) is supported",
                        ));
                    }
                }
                "thresholding" => {
                    if get_bool(key, v)? {
                        return Err(config_err(key, v, "dynamic thresholding is not supported"));
                    }
                }
                "rescale_betas_zero_snr" => {
                    if get_bool(key, v)? {
                        return Err(config_err(
                            key,
                            v,
                            "zero-terminal-SNR rescaling is not supported",
                        ));
                    }
                }
                "trained_betas" => {
                    if !v.is_null() {
                        return Err(config_err(
                            key,
                            "[…]",
                            "explicit trained betas are not supported; use beta_schedule",
                        ));
                    }
                }
                k if IGNORED_KEYS.contains(&k) => {}
                _ => return Err(config_err(key, v, "unknown scheduler config key")),
            }
        }
        c.schedule()?; // validates the beta range
        Ok(c)
    }

    /// A `DDPMScheduler` config diffusers (≥ 0.21) loads with `DDPMScheduler.from_pretrained`.
    pub fn to_json(&self) -> String {
        let v = json!({
            "_class_name": "DDPMScheduler",
            "_diffusers_version": "0.42.1",
            "num_train_timesteps": self.num_train_timesteps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "beta_schedule": self.beta_schedule.name(),
            "trained_betas": null,
            "variance_type": self.variance_type.name(),
            "clip_sample": self.clip_sample,
            "prediction_type": "epsilon",
            "thresholding": false,
            "dynamic_thresholding_ratio": 0.995,
            "clip_sample_range": self.clip_sample_range,
            "sample_max_value": 1.0,
            "timestep_spacing": self.timestep_spacing.name(),
            "steps_offset": self.steps_offset,
            "rescale_betas_zero_snr": false,
        });
        serde_json::to_string_pretty(&v).expect("JSON of plain values")
    }

    /// The β schedule this config describes.
    pub fn schedule(&self) -> Result<Schedule> {
        Schedule::new(
            self.beta_schedule,
            self.num_train_timesteps,
            self.beta_start,
            self.beta_end,
        )
    }

    /// The clip range x̂0 is clamped to, if `clip_sample`.
    pub fn clip(&self) -> Option<f32> {
        self.clip_sample.then_some(self.clip_sample_range as f32)
    }

    /// diffusers' `DDIMScheduler.set_timesteps(steps)`: decreasing timesteps.
    pub fn ddim_timesteps(&self, steps: usize) -> Result<Vec<usize>> {
        let t = self.num_train_timesteps;
        if t == 0 || t > MAX_TIMESTEPS {
            return Err(config_err(
                "num_train_timesteps",
                t,
                &format!("must be between 1 and {MAX_TIMESTEPS}"),
            ));
        }
        if steps == 0 {
            return Err(Error::setting(
                "steps",
                "DDIM needs at least 1 inference step (got 0)",
            ));
        }
        if steps > t {
            return Err(Error::setting(
                "steps",
                format!("{steps} inference steps exceed num_train_timesteps = {t}"),
            ));
        }
        let ts: Vec<i64> = match self.timestep_spacing {
            TimestepSpacing::Leading => {
                let ratio = (t / steps) as i64;
                let offset = i64::try_from(self.steps_offset).unwrap_or(i64::MAX);
                (0..steps as i64)
                    .rev()
                    .map(|i| (i * ratio).saturating_add(offset))
                    .collect()
            }
            TimestepSpacing::Linspace => {
                // numpy: y = arange(n)·step, then y[-1] = stop exactly.
                let last = (t - 1) as f64;
                let step = if steps > 1 {
                    last / (steps - 1) as f64
                } else {
                    0.0
                };
                (0..steps)
                    .rev()
                    .map(|i| {
                        let v = if i == steps - 1 && steps > 1 {
                            last
                        } else {
                            i as f64 * step
                        };
                        round_half_even(v) as i64
                    })
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = t as f64 / steps as f64;
                // numpy: arange(T, 0, -ratio) has ceil(T / ratio) elements.
                let count = (t as f64 / ratio).ceil() as usize;
                (0..count)
                    .map(|i| round_half_even(t as f64 - i as f64 * ratio) as i64 - 1)
                    .collect()
            }
        };
        ts.into_iter()
            .map(|v| {
                if v < 0 || v as usize >= t {
                    Err(config_err(
                        "steps_offset",
                        self.steps_offset,
                        &format!("timestep {v} falls outside [0, {t}) with {steps} steps"),
                    ))
                } else {
                    Ok(v as usize)
                }
            })
            .collect()
    }
}

/// numpy's `round` (half to even).
fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - v.signum()
    } else {
        r
    }
}

fn get_f64(key: &str, v: &Value) -> Result<f64> {
    v.as_f64()
        .ok_or_else(|| config_err(key, v, "expected a number"))
}

/// A non-negative integer (an integral float such as `1000.0` too); callers bound it.
fn get_uint(key: &str, v: &Value) -> Result<usize> {
    let n = match v.as_u64() {
        Some(n) => Some(n),
        // 2^53: beyond it floats skip integers, and every bound we check is far below.
        None => v
            .as_f64()
            .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f <= 9_007_199_254_740_992.0)
            .map(|f| f as u64),
    };
    n.and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| config_err(key, v, "expected a non-negative integer"))
}

fn get_bool(key: &str, v: &Value) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| config_err(key, v, "expected true or false"))
}

fn get_str<'a>(key: &str, v: &'a Value) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| config_err(key, v, "expected a string"))
}

/// β_t, α_t = 1 − β_t and ᾱ_t = ∏_{s≤t} α_s for t = 0..T (timestep t is diffusers' index t).
#[derive(Clone, Debug)]
pub struct Schedule {
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
}

impl Schedule {
    /// Builds a schedule of `num_train_timesteps` steps (β_start/β_end unused for the cosine).
    pub fn new(
        kind: BetaSchedule,
        num_train_timesteps: usize,
        beta_start: f64,
        beta_end: f64,
    ) -> Result<Self> {
        let t = num_train_timesteps;
        if t == 0 || t > MAX_TIMESTEPS {
            return Err(config_err(
                "num_train_timesteps",
                t,
                &format!("must be between 1 and {MAX_TIMESTEPS}"),
            ));
        }
        if kind != BetaSchedule::SquaredcosCapV2 {
            for (key, b) in [("beta_start", beta_start), ("beta_end", beta_end)] {
                if !(b > 0.0 && b < 1.0) {
                    return Err(config_err(key, b, "β must lie in (0, 1)"));
                }
            }
        }
        let lin = |a: f64, b: f64, i: usize| {
            if t == 1 {
                a
            } else {
                a + (b - a) * i as f64 / (t - 1) as f64
            }
        };
        let betas: Vec<f64> = match kind {
            BetaSchedule::Linear => (0..t).map(|i| lin(beta_start, beta_end, i)).collect(),
            BetaSchedule::ScaledLinear => (0..t)
                .map(|i| lin(beta_start.sqrt(), beta_end.sqrt(), i).powi(2))
                .collect(),
            BetaSchedule::SquaredcosCapV2 => {
                let alpha_bar = |s: f64| {
                    ((s + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..t)
                    .map(|i| {
                        let t1 = i as f64 / t as f64;
                        let t2 = (i + 1) as f64 / t as f64;
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
                    })
                    .collect()
            }
        };
        Ok(Self::from_betas(betas))
    }

    /// A schedule from explicit β values (each in (0, 1]).
    pub fn from_betas(betas: Vec<f64>) -> Self {
        let mut acc = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        Schedule {
            betas,
            alphas_cumprod,
        }
    }

    /// T.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    /// Never true (a schedule has at least one step); for clippy.
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// β_t.
    pub fn beta(&self, t: usize) -> f64 {
        self.betas[t]
    }

    /// α_t = 1 − β_t.
    pub fn alpha(&self, t: usize) -> f64 {
        1.0 - self.betas[t]
    }

    /// ᾱ_t; ᾱ_{−1} = 1 (pass `None`).
    pub fn alpha_cumprod(&self, t: Option<usize>) -> f64 {
        t.map_or(1.0, |t| self.alphas_cumprod[t])
    }

    /// β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t (0 at t = 0).
    pub fn posterior_variance(&self, t: usize) -> f64 {
        let ab_prev = self.alpha_cumprod(t.checked_sub(1));
        (1.0 - ab_prev) / (1.0 - self.alphas_cumprod[t]) * self.betas[t]
    }

    /// β as f32.
    pub fn betas(&self) -> Vec<f32> {
        self.betas.iter().map(|&b| b as f32).collect()
    }

    /// α as f32.
    pub fn alphas(&self) -> Vec<f32> {
        self.betas.iter().map(|&b| (1.0 - b) as f32).collect()
    }

    /// ᾱ as f32 (the table [`crate::ops::sampling::q_sample`] reads).
    pub fn alphas_cumprod(&self) -> Vec<f32> {
        self.alphas_cumprod.iter().map(|&a| a as f32).collect()
    }

    /// β̃ as f32.
    pub fn posterior_variances(&self) -> Vec<f32> {
        (0..self.len())
            .map(|t| self.posterior_variance(t) as f32)
            .collect()
    }

    fn check_t(&self, t: usize, prev: Option<usize>) -> Result<()> {
        if t >= self.len() {
            return Err(Error::setting(
                "timestep",
                format!(
                    "timestep {t} out of range for a schedule of {} steps",
                    self.len()
                ),
            ));
        }
        if let Some(p) = prev {
            if p >= t {
                return Err(Error::setting(
                    "previous timestep",
                    format!("previous timestep {p} must be smaller than timestep {t}"),
                ));
            }
        }
        Ok(())
    }

    /// Coefficients of one DDPM step from `t` to `prev` (`None`: the last step) as diffusers'
    /// `DDPMScheduler.step`: α_t := ᾱ_t/ᾱ_prev, β_t := 1 − α_t (so strided steps work too).
    pub fn ddpm_coefs(
        &self,
        t: usize,
        prev: Option<usize>,
        variance: VarianceType,
        clip: Option<f32>,
    ) -> Result<DdpmCoefs> {
        self.check_t(t, prev)?;
        let ab = self.alphas_cumprod[t];
        let ab_prev = self.alpha_cumprod(prev);
        let alpha = ab / ab_prev;
        let beta = 1.0 - alpha;
        let (c_x0, c_xt, c_eps) = if clip.is_some() {
            // μ from the clipped x̂0: the posterior q(x_{t−1} | x_t, x̂0).
            (
                ab_prev.sqrt() * beta / (1.0 - ab),
                alpha.sqrt() * (1.0 - ab_prev) / (1.0 - ab),
                0.0,
            )
        } else {
            // μ = 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε̂)  (Ho et al., Algorithm 2).
            (
                0.0,
                1.0 / alpha.sqrt(),
                -beta / (alpha.sqrt() * (1.0 - ab).sqrt()),
            )
        };
        let var = match variance {
            VarianceType::FixedSmall => ((1.0 - ab_prev) / (1.0 - ab) * beta).max(1e-20),
            VarianceType::FixedLarge => beta,
        };
        Ok(DdpmCoefs {
            t: t as u32,
            sqrt_ab: ab.sqrt() as f32,
            sqrt_1m_ab: (1.0 - ab).sqrt() as f32,
            clip,
            c_x0: c_x0 as f32,
            c_xt: c_xt as f32,
            c_eps: c_eps as f32,
            sigma: if t > 0 { var.sqrt() as f32 } else { 0.0 },
        })
    }

    /// Coefficients of one DDIM step (diffusers' `DDIMScheduler.step`, ε prediction): from `t`
    /// to `prev` (`None`: ᾱ_prev = `final_alpha_cumprod`), σ_t = η·√((1−ᾱ_prev)/(1−ᾱ_t)·(1−ᾱ_t/ᾱ_prev)).
    pub fn ddim_coefs(
        &self,
        t: usize,
        prev: Option<usize>,
        final_alpha_cumprod: f64,
        eta: f32,
        clip: Option<f32>,
    ) -> Result<DdimCoefs> {
        self.check_t(t, prev)?;
        if !(0.0..=1.0).contains(&eta) {
            return Err(Error::setting(
                "eta",
                format!("DDIM eta must lie in [0, 1], got {eta}"),
            ));
        }
        let ab = self.alphas_cumprod[t];
        let ab_prev = prev.map_or(final_alpha_cumprod, |p| self.alphas_cumprod[p]);
        let variance = (1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev);
        let std = eta as f64 * variance.max(0.0).sqrt();
        Ok(DdimCoefs {
            t: t as u32,
            sqrt_ab: ab.sqrt() as f32,
            sqrt_1m_ab: (1.0 - ab).sqrt() as f32,
            clip,
            sqrt_ab_prev: ab_prev.sqrt() as f32,
            c_dir: (1.0 - ab_prev - std * std).max(0.0).sqrt() as f32,
            sigma: std as f32,
            clipped_eps: false,
        })
    }
}

/// One fused DDPM step (all f32, derived in f64):
/// x̂0 = (x_t − `sqrt_1m_ab`·ε̂)/`sqrt_ab`, clamped to ±clip;
/// x_prev = `c_x0`·x̂0 + `c_xt`·x_t + `c_eps`·ε̂ + `sigma`·z.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdpmCoefs {
    /// The timestep (the RNG stream of z).
    pub t: u32,
    pub sqrt_ab: f32,
    pub sqrt_1m_ab: f32,
    pub clip: Option<f32>,
    pub c_x0: f32,
    pub c_xt: f32,
    pub c_eps: f32,
    /// σ_t (0 at t = 0).
    pub sigma: f32,
}

/// One fused DDIM step: x̂0 as in [`DdpmCoefs`];
/// x_prev = `sqrt_ab_prev`·x̂0 + `c_dir`·ε̂ + `sigma`·z.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdimCoefs {
    /// The timestep (the RNG stream of z).
    pub t: u32,
    pub sqrt_ab: f32,
    pub sqrt_1m_ab: f32,
    pub clip: Option<f32>,
    pub sqrt_ab_prev: f32,
    /// √(1 − ᾱ_prev − σ²).
    pub c_dir: f32,
    /// σ_t = η·√β̃ (0 when η = 0).
    pub sigma: f32,
    /// With `clip`: the ε̂ of the direction term re-derived from the clipped x̂0,
    /// ε̂ ← (x_t − √ᾱ·x̂0)/√(1−ᾱ) (diffusers' `use_clipped_model_output`, as in GLIDE), so the
    /// step stays consistent with the x̂0 it clipped.
    pub clipped_eps: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::err_text;

    #[test]
    fn round_half_even_matches_numpy() {
        for (v, want) in [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (-0.5, -0.0),
            (2.4, 2.0),
            (2.6, 3.0),
        ] {
            assert_eq!(round_half_even(v), want, "{v}");
        }
    }

    #[test]
    fn sizes_are_bounded_before_anything_is_allocated() {
        for t in [
            "10000000000",
            "4294967296",
            "1e11",
            "18446744073709551615",
            "18446744073709551616",
            "1000001",
            "0",
            "-1",
            "2.5",
        ] {
            let json = format!("{{\"num_train_timesteps\": {t}}}");
            let e = SchedulerConfig::from_json(&json).unwrap_err().to_string();
            assert!(e.contains("num_train_timesteps"), "{t}: {e}");
        }
        let c = SchedulerConfig::from_json(r#"{"num_train_timesteps": 1000000}"#).unwrap();
        assert_eq!(c.schedule().unwrap().len(), MAX_TIMESTEPS);
        let e = SchedulerConfig::from_json(r#"{"steps_offset": 18446744073709551615}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("steps_offset"), "{e}");
        let e = SchedulerConfig::from_json(r#"{"clip_sample_range": 1e300}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("clip_sample_range"), "{e}");
        // Hand-built configs cannot overflow either.
        let c = SchedulerConfig {
            steps_offset: usize::MAX,
            ..SchedulerConfig::default()
        };
        let e = err_text(c.ddim_timesteps(10), "steps_offset usize::MAX");
        assert!(e.contains("unsupported config: `steps_offset`"), "{e}");
        let c = SchedulerConfig {
            num_train_timesteps: usize::MAX,
            ..SchedulerConfig::default()
        };
        let e = err_text(
            c.ddim_timesteps(10),
            "num_train_timesteps usize::MAX (DDIM)",
        );
        assert!(
            e.contains("unsupported config: `num_train_timesteps`"),
            "{e}"
        );
        let e = err_text(c.schedule(), "num_train_timesteps usize::MAX (schedule)");
        assert!(
            e.contains("unsupported config: `num_train_timesteps`"),
            "{e}"
        );
    }
}
