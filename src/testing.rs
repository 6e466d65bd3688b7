//! Helpers shared by tests and benchmarks: a deterministic RNG, tolerant comparison and one
//! GPU device per test process.

/// SplitMix64: tiny, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform integer in [lo, hi].
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    /// `n` standard normal values scaled by `scale`.
    pub fn normals(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale).collect()
    }
}

/// Asserts `|got - want| <= atol + rtol * |want|` elementwise, naming the worst element.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], atol: f32, rtol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    // (index, amount by which the tolerance is exceeded; NaN counts as infinitely far)
    let mut worst = (0usize, 0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        let excess = if excess.is_nan() {
            f32::INFINITY
        } else {
            excess
        };
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    if worst.1 > 0.0 {
        let i = worst.0;
        panic!(
            "{what}: element {i} of {}: got {}, want {} (atol {atol}, rtol {rtol})",
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// The largest |a − b| over two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "max_abs_diff: lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// One GPU device shared by all tests of a process (device creation is slow on lavapipe).
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu() -> &'static crate::gpu::Gpu {
    use std::sync::OnceLock;
    static GPU: OnceLock<crate::gpu::Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        crate::gpu::Gpu::new_blocking().expect("tests need a GPU adapter (lavapipe works)")
    })
}

/// The comma-separated values of a WGSL file's leading `// key:` comment lines (the headers
/// `requires:`, `fragment:` and `features:`; see `tests/wgsl_validate.rs`).
pub fn wgsl_header(source: &str, key: &str) -> Vec<String> {
    source
        .lines()
        .take_while(|l| l.trim_start().starts_with("//"))
        .filter_map(|l| {
            l.trim_start()
                .trim_start_matches('/')
                .trim()
                .strip_prefix(key)
                .map(str::to_string)
        })
        .flat_map(|list| {
            list.split(',')
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// Shader source `own` with the helper files its `// requires:` header names (read from `dir`)
/// prepended in order, as the Rust side's `concat!(include_str!(…), …)` composes it; the error
/// names a helper that cannot be read.
#[cfg(not(target_arch = "wasm32"))]
pub fn wgsl_with_requires(dir: &std::path::Path, own: &str) -> Result<String, String> {
    let mut source = String::new();
    for helper in wgsl_header(own, "requires:") {
        let text = std::fs::read_to_string(dir.join(&helper))
            .map_err(|e| format!("requires {helper}: {e}"))?;
        source.push_str(&text);
    }
    source.push_str(own);
    Ok(source)
}

/// Every source the Rust side may compose from shader `own`: [`wgsl_with_requires`], then, for
/// each fragment in `dir` whose header `// replaces: other.wgsl` names one of `own`'s required
/// files, the same with that file swapped for the fragment (e.g. the conv2d kernels with
/// `conv2d_weights_f16.wgsl` instead of `conv2d_weights_f32.wgsl`), in file-name order.
#[cfg(not(target_arch = "wasm32"))]
pub fn wgsl_compositions(dir: &std::path::Path, own: &str) -> Result<Vec<String>, String> {
    let mut out = vec![wgsl_with_requires(dir, own)?];
    let requires = wgsl_header(own, "requires:");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("wgsl"))
        .collect();
    files.sort();
    for path in files {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for replaced in wgsl_header(&text, "replaces:") {
            if !requires.contains(&replaced) {
                continue;
            }
            let mut source = String::new();
            for helper in &requires {
                if *helper == replaced {
                    source.push_str(&text);
                } else {
                    let h = std::fs::read_to_string(dir.join(helper))
                        .map_err(|e| format!("requires {helper}: {e}"))?;
                    source.push_str(&h);
                }
            }
            source.push_str(own);
            out.push(source);
        }
    }
    Ok(out)
}

/// The Display text of `r`'s error; panics (naming `what`) if `r` is Ok. (Takes no `Debug`
/// bound on `T`, since many ops return a `Dispatch`, which has none.)
#[track_caller]
pub fn err_text<T>(r: crate::Result<T>, what: &str) -> String {
    match r {
        Ok(_) => panic!("{what}: expected an error, got Ok"),
        Err(e) => e.to_string(),
    }
}

/// [`err_text`] of an [`crate::Error::Operand`] about `operand`; panics (naming `what`) if `r`
/// is Ok or another error.
#[track_caller]
pub fn operand_err_text<T>(r: crate::Result<T>, what: &str, operand: &str) -> String {
    match r {
        Ok(_) => panic!("{what}: expected an error, got Ok"),
        Err(e) if matches!(&e, crate::Error::Operand { operand: o, .. } if *o == operand) => {
            e.to_string()
        }
        Err(e) => panic!("{what}: expected an error about operand `{operand}`, got {e:?}"),
    }
}

/// [`err_text`] of an [`crate::Error::Setting`] about setting `name`; panics (naming `what`)
/// if `r` is Ok or another error.
#[track_caller]
pub fn setting_err_text<T>(r: crate::Result<T>, what: &str, name: &str) -> String {
    match r {
        Ok(_) => panic!("{what}: expected an error, got Ok"),
        Err(e) if matches!(&e, crate::Error::Setting { name: n, .. } if *n == name) => {
            e.to_string()
        }
        Err(e) => panic!("{what}: expected an error about setting `{name}`, got {e:?}"),
    }
}

/// The starting contents of an output a kernel may accumulate into: random when it
/// accumulates, NaN otherwise (so an output that is not overwritten shows).
pub fn initial_output(rng: &mut Rng, n: usize, accumulate: bool) -> Vec<f32> {
    if accumulate {
        rng.normals(n, 1.0)
    } else {
        vec![f32::NAN; n]
    }
}

/// What an output started at `init` should hold after `add`: `init + add` when accumulating,
/// else `add`.
pub fn accumulated(init: &[f32], add: &[f32], accumulate: bool) -> Vec<f32> {
    if accumulate {
        init.iter().zip(add).map(|(a, b)| a + b).collect()
    } else {
        add.to_vec()
    }
}
