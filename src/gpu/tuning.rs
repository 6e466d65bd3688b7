//! Choosing among kernel variants. Some ops have several WGSL kernels that compute the same result
//! with different work layouts (one family for CPU drivers such as lavapipe and SwiftShader, one
//! for real GPUs); which is fastest depends on the adapter and the shape. [`Gpu`] picks one per op
//! and shape when a plan is built, by [`KernelPolicy`], and remembers the choice for the process
//! (cuDNN's benchmark mode, burn's autotune).
//!
//! A training run records its choices in the checkpoint and pins them on resume
//! ([`Gpu::pin_kernel_choices`]), so that a resumed run uses the same kernels — and so gives
//! bit-identical results — whatever a new timing would say.
//!
//! A program may also keep the choices timed under `Auto` on disk, per adapter and build
//! ([`Gpu::use_kernel_cache`]; the `ddpm` CLI does, in `$XDG_CACHE_HOME/ddpm/kernels/` else
//! `~/.cache/ddpm/kernels/`, unless [`KERNEL_CACHE_ENV`]`=off`), so that later processes skip
//! the timing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Gpu;
use crate::error::{Error, Result};

/// The environment variable that sets the initial [`KernelPolicy`] (`auto`, `heuristic` or a
/// variant name).
pub const KERNELS_ENV: &str = "DDPM_KERNELS";

/// The environment variable with which the `ddpm` CLI turns its on-disk cache of timed choices
/// off (`off`, `0`) or points it at another folder.
pub const KERNEL_CACHE_ENV: &str = "DDPM_KERNEL_CACHE";

/// How [`Gpu`] picks a variant when an op offers several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelPolicy {
    /// Time every eligible variant once per op and shape on this device and keep the fastest.
    /// Natively only; in the browser (no blocking wait) it acts as `Heuristic`.
    Auto,
    /// The op's rule of thumb for this adapter class, without timing.
    Heuristic,
    /// This variant wherever the op has it and it is eligible; elsewhere the heuristic.
    Force(String),
}

impl KernelPolicy {
    /// Parses `auto`, `heuristic` or a variant name.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "" => Err(Error::setting("kernel policy", "empty kernel policy")),
            "auto" => Ok(KernelPolicy::Auto),
            "heuristic" => Ok(KernelPolicy::Heuristic),
            name => Ok(KernelPolicy::Force(name.to_string())),
        }
    }

    /// The policy named by [`KERNELS_ENV`], else `Auto` natively and `Heuristic` in the browser.
    pub fn from_env() -> Result<Self> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Ok(v) = std::env::var(KERNELS_ENV) {
            return Self::parse(&v)
                .map_err(|e| Error::setting("kernel policy", format!("{KERNELS_ENV}: {e}")));
        }
        Ok(if cfg!(target_arch = "wasm32") {
            KernelPolicy::Heuristic
        } else {
            KernelPolicy::Auto
        })
    }
}

/// The policy, the choices made so far (key → variant name) and, when a disk cache is in use,
/// the choices timed by earlier processes on this adapter and build, and its file.
pub(crate) struct Tuner {
    policy: Mutex<KernelPolicy>,
    choices: Mutex<BTreeMap<String, String>>,
    timed: Mutex<BTreeMap<String, String>>,
    cache_file: Mutex<Option<PathBuf>>,
}

impl Tuner {
    pub(crate) fn new(policy: KernelPolicy) -> Self {
        Tuner {
            policy: Mutex::new(policy),
            choices: Mutex::default(),
            timed: Mutex::default(),
            cache_file: Mutex::default(),
        }
    }

    /// Records a timed choice in the cache file, if any, and returns the choice to keep: the
    /// file's if another process timed `key` meanwhile (the first to finish wins, so that
    /// processes sharing a cache agree even on near ties), else `name`. The file is re-read and
    /// merged, then rewritten atomically; failures are ignored (the cache only saves time).
    fn remember_timed(&self, key: &str, name: &str) -> String {
        let Some(file) = self.cache_file.lock().unwrap().clone() else {
            return name.to_string();
        };
        let mut timed = self.timed.lock().unwrap();
        if let Some(on_disk) = read_cache(&file) {
            for (k, v) in on_disk {
                timed.insert(k, v);
            }
        }
        let kept = timed
            .entry(key.to_string())
            .or_insert_with(|| name.to_string())
            .clone();
        let Ok(text) = serde_json::to_string_pretty(&*timed) else {
            return kept;
        };
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, text).is_err() || std::fs::rename(&tmp, &file).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        kept
    }
}

/// The choices in a cache file (`None` if it is missing or unreadable).
fn read_cache(file: &Path) -> Option<BTreeMap<String, String>> {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
}

/// The default folder of the on-disk choice cache: [`KERNEL_CACHE_ENV`] if set (`None` when it
/// is `off`, `0` or empty), else `$XDG_CACHE_HOME/ddpm/kernels`, else `~/.cache/ddpm/kernels`.
pub fn default_kernel_cache_dir() -> Option<PathBuf> {
    match std::env::var(KERNEL_CACHE_ENV).ok().as_deref() {
        Some("off" | "0" | "") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
            Some(base.join("ddpm").join("kernels"))
        }
    }
}

/// Deterministic scratch values in [-0.5, 0.5) for timing candidates (no denormals, no NaNs).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn tuning_data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 997) as f32 / 997.0 - 0.5)
        .collect()
}

/// Seconds of one run of `dispatches`: the best of three, after a run that compiles the
/// pipelines (native only: it blocks).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn time_dispatches(gpu: &Gpu, dispatches: &[crate::gpu::Dispatch]) -> Result<f64> {
    pollster::block_on(gpu.run(dispatches))?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        pollster::block_on(gpu.run(dispatches))?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// 64-bit FNV-1a of `s`.
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One candidate of [`Gpu::choose_variant`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate<V> {
    pub variant: V,
    pub name: &'static str,
    /// Whether `Auto` times it: variants of the other adapter class (GPU kernels on a CPU
    /// driver) are only run when forced.
    pub timed: bool,
}

impl Gpu {
    /// The current policy.
    pub fn kernel_policy(&self) -> KernelPolicy {
        self.tuner.policy.lock().unwrap().clone()
    }

    /// Sets the policy for choices not yet made (earlier choices stay, so plans already built
    /// and plans built later agree; see [`Gpu::clear_kernel_choices`]).
    pub fn set_kernel_policy(&self, policy: KernelPolicy) {
        *self.tuner.policy.lock().unwrap() = policy;
    }

    /// Every choice made (or pinned) so far: op-and-shape key → variant name.
    pub fn kernel_choices(&self) -> BTreeMap<String, String> {
        self.tuner.choices.lock().unwrap().clone()
    }

    /// Makes these choices as if they had been made already (a resumed training run passes the
    /// ones its checkpoint recorded). A pinned name an op does not offer (any more) is ignored
    /// for that op.
    pub fn pin_kernel_choices(&self, choices: &BTreeMap<String, String>) {
        let mut mine = self.tuner.choices.lock().unwrap();
        for (k, v) in choices {
            mine.insert(k.clone(), v.clone());
        }
    }

    /// Keeps the choices timed under `Auto` in a file in `dir`, named by this adapter and
    /// `kernels` (a digest of the kernel sources that have variants, e.g.
    /// `ops::kernel_sources_digest()`), and reuses the ones an earlier process made there (a
    /// missing or unreadable file is an empty cache).
    pub fn use_kernel_cache(&self, dir: &Path, kernels: u64) {
        let key = fnv1a(&format!(
            "{} {}\n{}\n{kernels}",
            self.info.name,
            self.info.driver_info,
            env!("CARGO_PKG_VERSION"),
        ));
        let file = dir.join(format!("{key:016x}.json"));
        *self.tuner.timed.lock().unwrap() = read_cache(&file).unwrap_or_default();
        *self.tuner.cache_file.lock().unwrap() = Some(file);
    }

    /// Forgets every choice, so the next plans choose again under the current policy.
    pub fn clear_kernel_choices(&self) {
        self.tuner.choices.lock().unwrap().clear();
    }

    /// The variant to run for `key` (an op name and its shape): an earlier or pinned choice if
    /// it is among `candidates` (the eligible variants, never empty), else one chosen by the
    /// policy — under `Auto` by `time`, which returns the seconds one run of a variant takes.
    /// `heuristic` must be one of the candidates (else the first is the rule of thumb).
    pub(crate) fn choose_variant<V: Copy + PartialEq>(
        &self,
        key: &str,
        candidates: &[Candidate<V>],
        heuristic: V,
        time: impl FnMut(V) -> Result<f64>,
    ) -> Result<V> {
        assert!(!candidates.is_empty(), "{key}: no eligible kernel variant");
        let find = |name: &str| candidates.iter().position(|c| c.name == name);
        if let Some(i) = self
            .tuner
            .choices
            .lock()
            .unwrap()
            .get(key)
            .and_then(|n| find(n))
        {
            return Ok(candidates[i].variant);
        }
        let rule = candidates
            .iter()
            .position(|c| c.variant == heuristic)
            .unwrap_or(0);
        let timed = candidates.iter().filter(|c| c.timed).count();
        let chosen = match self.kernel_policy() {
            KernelPolicy::Force(name) => find(&name).unwrap_or(rule),
            KernelPolicy::Heuristic => rule,
            KernelPolicy::Auto if cfg!(target_arch = "wasm32") || timed < 2 => rule,
            KernelPolicy::Auto => {
                let earlier = self
                    .tuner
                    .timed
                    .lock()
                    .unwrap()
                    .get(key)
                    .and_then(|n| find(n));
                match earlier {
                    Some(i) => i,
                    None => {
                        let i = fastest(candidates, time)?.unwrap_or(rule);
                        let kept = self.tuner.remember_timed(key, candidates[i].name);
                        find(&kept).unwrap_or(i)
                    }
                }
            }
        };
        self.tuner
            .choices
            .lock()
            .unwrap()
            .insert(key.to_string(), candidates[chosen].name.to_string());
        Ok(candidates[chosen].variant)
    }
}

/// The index of the timed candidate with the smallest time (the first on ties).
fn fastest<V: Copy>(
    candidates: &[Candidate<V>],
    mut time: impl FnMut(V) -> Result<f64>,
) -> Result<Option<usize>> {
    let mut best: Option<(usize, f64)> = None;
    for (i, c) in candidates.iter().enumerate().filter(|(_, c)| c.timed) {
        let t = time(c.variant)?;
        if best.is_none_or(|(_, bt)| t < bt) {
            best = Some((i, t));
        }
    }
    Ok(best.map(|b| b.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::err_text;

    #[test]
    fn policy_parses() {
        assert_eq!(KernelPolicy::parse("auto").unwrap(), KernelPolicy::Auto);
        assert_eq!(
            KernelPolicy::parse("heuristic").unwrap(),
            KernelPolicy::Heuristic
        );
        assert_eq!(
            KernelPolicy::parse(" reg ").unwrap(),
            KernelPolicy::Force("reg".into())
        );
        let e = err_text(KernelPolicy::parse(""), "empty policy");
        assert!(e.contains("empty kernel policy"), "{e}");
    }

    fn cand(variant: usize, name: &'static str, timed: bool) -> Candidate<usize> {
        Candidate {
            variant,
            name,
            timed,
        }
    }

    #[test]
    fn fastest_takes_the_smallest_timed() {
        let times = [0.3, 0.1, 0.2, 0.01];
        let c = [
            cand(0, "a", true),
            cand(1, "b", true),
            cand(2, "c", true),
            cand(3, "d", false),
        ];
        assert_eq!(fastest(&c, |v| Ok(times[v])).unwrap(), Some(1));
        assert_eq!(fastest(&c[3..], |v| Ok(times[v])).unwrap(), None);
        let e = err_text(
            fastest(&c, |_| Err(Error::Gpu("timer failed".into()))),
            "a failing timer",
        );
        assert!(e.contains("timer failed"), "{e}");
    }

    #[test]
    fn choices_follow_policy_and_pins() {
        let gpu = crate::testing::gpu();
        if gpu.kernel_policy() != KernelPolicy::Auto {
            return; // DDPM_KERNELS set for this test run: timing is not what is chosen by.
        }
        let c = [cand(0, "a", true), cand(1, "b", true), cand(2, "c", false)];
        let slow_first = |v: usize| Ok([0.2, 0.1, 0.0][v]);
        // Choices are per key and kept; keys here are unique to this test.
        assert_eq!(
            gpu.choose_variant("test:auto", &c, 0, slow_first).unwrap(),
            1
        );
        assert_eq!(
            gpu.choose_variant("test:auto", &c, 0, |_| -> Result<f64> { unreachable!() })
                .unwrap(),
            1
        );
        gpu.pin_kernel_choices(&BTreeMap::from([
            ("test:pinned".to_string(), "c".to_string()),
            ("test:stale".to_string(), "gone".to_string()),
        ]));
        assert_eq!(
            gpu.choose_variant("test:pinned", &c, 0, slow_first)
                .unwrap(),
            2
        );
        // A pinned name the op does not offer is chosen again (here by timing).
        assert_eq!(
            gpu.choose_variant("test:stale", &c, 0, slow_first).unwrap(),
            1
        );
        assert_eq!(gpu.kernel_choices()["test:stale"], "b");
    }

    #[test]
    fn disk_cache_carries_timed_choices_to_a_new_device() {
        if KernelPolicy::from_env().unwrap() != KernelPolicy::Auto {
            return; // DDPM_KERNELS set for this test run.
        }
        let dir = std::env::temp_dir().join(format!("ddpm-kernel-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = [cand(0, "a", true), cand(1, "b", true)];
        let first = Gpu::new_blocking().unwrap();
        first.use_kernel_cache(&dir, 1);
        let t = |v: usize| Ok([0.2, 0.1][v]);
        assert_eq!(first.choose_variant("cache:k", &c, 0, t).unwrap(), 1);
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(files.len(), 1);
        drop(first);

        let second = Gpu::new_blocking().unwrap();
        second.use_kernel_cache(&dir, 1);
        let untimed = |_: usize| -> Result<f64> { panic!("timed again despite the cache") };
        assert_eq!(second.choose_variant("cache:k", &c, 0, untimed).unwrap(), 1);
        // Without the cache the same key is timed.
        let third = Gpu::new_blocking().unwrap();
        assert_eq!(
            third
                .choose_variant("cache:k", &c, 0, |v| Ok([0.1, 0.2][v]))
                .unwrap(),
            0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn processes_sharing_a_cache_keep_the_first_timed_choice() {
        if KernelPolicy::from_env().unwrap() != KernelPolicy::Auto {
            return; // DDPM_KERNELS set for this test run.
        }
        let dir = std::env::temp_dir().join(format!("ddpm-kernel-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = [cand(0, "a", true), cand(1, "b", true)];
        // Both load the (empty) cache before either has timed "race:k".
        let first = Gpu::new_blocking().unwrap();
        let second = Gpu::new_blocking().unwrap();
        first.use_kernel_cache(&dir, 1);
        second.use_kernel_cache(&dir, 1);
        assert_eq!(
            first
                .choose_variant("race:k", &c, 0, |v| Ok([0.2, 0.1][v]))
                .unwrap(),
            1
        );
        // The second times "a" faster but keeps what the first wrote meanwhile; a key only it
        // timed is added to the file next to the first's.
        let a_faster = |v: usize| Ok([0.1, 0.2][v]);
        assert_eq!(second.choose_variant("race:k", &c, 0, a_faster).unwrap(), 1);
        assert_eq!(
            second
                .choose_variant("race:other", &c, 0, a_faster)
                .unwrap(),
            0
        );
        let third = Gpu::new_blocking().unwrap();
        third.use_kernel_cache(&dir, 1);
        let untimed = |_: usize| -> Result<f64> { panic!("timed again despite the cache") };
        assert_eq!(third.choose_variant("race:k", &c, 0, untimed).unwrap(), 1);
        assert_eq!(
            third.choose_variant("race:other", &c, 0, untimed).unwrap(),
            0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
