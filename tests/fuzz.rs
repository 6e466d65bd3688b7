//! A seeded mutation fuzzer over every file reader the CLI uses: the safetensors weights loader
//! (with its config.json), config.json, scheduler_config.json, .npy and training checkpoints.
//! Seeds are real files (the shipped model in assets/, tests/fixtures/, a tiny checkpoint
//! written here); mutations are byte flips, truncations, insertions, deletions, splices,
//! replacements of numeric fields with extreme values, huge strings and, for the embedded
//! headers (safetensors JSON, .npy dict, the checkpoint's nested state), the same inside the
//! header with its length prefix fixed up. Every case must end in `Ok` (whose result must be
//! consistent) or a typed `Err`; a panic is caught per case and reported with its input, and an
//! allocation beyond [`ALLOC_LIMIT`] aborts at once naming the case (instead of the machine
//! running out of memory).
//!
//! `cargo test --test fuzz` runs [`DEFAULT_CASES`]; `cargo test --release --test fuzz --
//! --ignored` runs a million. `FUZZ_SEED`, `FUZZ_CASES` override both; `FUZZ_DUMP=N` writes
//! case N's input to the target's tmp dir before running it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use ddpm::data::{Batcher, BatcherState};
use ddpm::model::cpu_unet::{self, HostTensor};
use ddpm::model::{UNetConfig, Weights};
use ddpm::sampler::{SamplerKind, SamplerOptions};
use ddpm::schedule::SchedulerConfig;
use ddpm::testing::Rng;
use ddpm::train::{checkpoint, TrainOptions, Trainer};
use serde_json::{json, Value};

/// Cases of the default (debug-profile) run.
const DEFAULT_CASES: u64 = 5000;
/// Largest single allocation a case may make. The biggest seed is 2.8 MB and the largest
/// legitimate table (T = 10^6 steps of f64) 8 MB: anything near this is sized by the input.
const ALLOC_LIMIT: usize = 256 << 20;

// ---------------------------------------------------------------------------------------------
// Allocation guard.

thread_local! {
    /// The case this thread runs (u64::MAX: none, the guard is off).
    static CASE: Cell<u64> = const { Cell::new(u64::MAX) };
}

struct Guard;

impl Guard {
    fn check(size: usize) {
        if size <= ALLOC_LIMIT {
            return;
        }
        let case = CASE.try_with(Cell::get).unwrap_or(u64::MAX);
        if case == u64::MAX {
            return;
        }
        // No allocation from here on: digits into a stack buffer, then abort.
        let mut buf = [0u8; 160];
        let mut n = 0;
        for part in [
            &b"fuzz: case "[..],
            digits(case, &mut [0; 20]),
            b" tried to allocate ",
            digits(size as u64, &mut [0; 20]),
            b" bytes (an allocation sized by the input); rerun with FUZZ_DUMP=<case>\n",
        ] {
            let m = part.len().min(buf.len() - n);
            buf[n..n + m].copy_from_slice(&part[..m]);
            n += m;
        }
        let _ = std::io::stderr().write_all(&buf[..n]);
        std::process::abort();
    }
}

fn digits(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Guard = Guard;

// ---------------------------------------------------------------------------------------------
// Targets and seeds.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// `Weights::load_bytes(config.json, weights)` (safetensors or a torch .bin archive), what
    /// `load_dir` and the page call.
    Weights,
    /// `UNetConfig::from_json`.
    Config,
    /// `SchedulerConfig::from_json`.
    Scheduler,
    /// `npy::from_bytes`.
    Npy,
    /// `checkpoint::from_bytes` and what `ddpm train --resume` reads from it.
    Checkpoint,
}

const TARGETS: [Target; 5] = [
    Target::Weights,
    Target::Config,
    Target::Scheduler,
    Target::Npy,
    Target::Checkpoint,
];

impl Target {
    fn ext(self) -> &'static str {
        match self {
            Target::Weights | Target::Checkpoint => "safetensors",
            Target::Config | Target::Scheduler => "json",
            Target::Npy => "npy",
        }
    }
}

/// One seed: the bytes to mutate, plus the config.json that goes with a weights file.
#[derive(Clone)]
struct Seed {
    name: String,
    bytes: Vec<u8>,
    config: Option<String>,
}

struct Seeds {
    by_target: Vec<(Target, Vec<Seed>)>,
}

impl Seeds {
    fn of(&self, t: Target) -> &[Seed] {
        &self.by_target.iter().find(|(x, _)| *x == t).unwrap().1
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_seed(path: &Path) -> Seed {
    Seed {
        name: path
            .strip_prefix(root())
            .unwrap_or(path)
            .display()
            .to_string(),
        bytes: std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        config: None,
    }
}

/// Files under `dir` (recursively) whose name ends with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A tiny config for the checkpoint seeds (fast to train one step of on a software GPU).
const TINY: &str = r#"{"sample_size": 8, "in_channels": 1, "out_channels": 1,
    "block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1,
    "norm_num_groups": 4, "attention_head_dim": 8}"#;
/// Dataset length the checkpoint seeds' batcher state belongs to.
const DATA_LEN: usize = 40;

/// Two real checkpoints of a tiny model (before and after two steps), written by the trainer.
fn checkpoint_seeds() -> Vec<Seed> {
    let gpu = ddpm::testing::gpu();
    let cfg = UNetConfig::from_json(TINY).unwrap();
    let weights = Weights::init(&cfg, 1).unwrap();
    let options = TrainOptions {
        batch: 2,
        ..TrainOptions::default()
    };
    let mut trainer =
        Trainer::new(gpu, cfg, SchedulerConfig::default(), &weights, options).unwrap();
    let mut batcher = Batcher::new(DATA_LEN, 0).unwrap();
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fuzz-seed-{}.safetensors", std::process::id()));
    let mut out = Vec::new();
    for steps in [0, 2] {
        for _ in 0..steps {
            batcher.next_batch(2);
            trainer.step(gpu, &[0.25; 2 * 64]).unwrap();
        }
        let extra = json!({ "batcher": batcher.state() });
        pollster::block_on(trainer.save_checkpoint(gpu, &path, extra)).unwrap();
        out.push(Seed {
            name: format!("checkpoint at step {}", trainer.step),
            bytes: std::fs::read(&path).unwrap(),
            config: None,
        });
    }
    let _ = std::fs::remove_file(&path);
    out
}

fn seeds() -> Seeds {
    let r = root();
    let fixtures = r.join("tests/fixtures");
    let mut weights = Vec::new();
    for dir in [
        r.join("assets/mnist"),
        r.join("assets/placeholder"),
        fixtures.join("unet_tiny"),
        fixtures.join("unet_ddpm_style"),
    ] {
        let mut s = read_seed(&dir.join("diffusion_pytorch_model.safetensors"));
        s.config = Some(std::fs::read_to_string(dir.join("config.json")).unwrap());
        weights.push(s);
    }
    // PyTorch .bin archives take the same path (load_bytes tells them apart).
    let bin = fixtures.join("torch_bin/f16");
    let mut s = read_seed(&bin.join("diffusion_pytorch_model.bin"));
    s.config = Some(std::fs::read_to_string(bin.join("config.json")).unwrap());
    weights.push(s);
    let mut configs: Vec<Seed> = files(&fixtures, "config.json")
        .iter()
        .filter(|p| !p.to_string_lossy().contains("scheduler"))
        .map(|p| read_seed(p))
        .collect();
    configs.push(read_seed(&r.join("assets/mnist/config.json")));
    configs.push(Seed {
        name: "tiny config".into(),
        bytes: TINY.as_bytes().to_vec(),
        config: None,
    });
    let mut schedulers: Vec<Seed> = files(&fixtures.join("scheduler"), "config.json")
        .iter()
        .map(|p| read_seed(p))
        .collect();
    schedulers.push(read_seed(&r.join("assets/mnist/scheduler_config.json")));
    let mut npys: Vec<Seed> = files(&fixtures, ".npy")
        .iter()
        .map(|p| read_seed(p))
        .collect();
    npys.push(Seed {
        name: "written 2×3 f32".into(),
        bytes: ddpm::npy::to_bytes(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
        config: None,
    });
    Seeds {
        by_target: vec![
            (Target::Weights, weights),
            (Target::Config, configs),
            (Target::Scheduler, schedulers),
            (Target::Npy, npys),
            (Target::Checkpoint, checkpoint_seeds()),
        ],
    }
}

// ---------------------------------------------------------------------------------------------
// Running one input.

/// Runs `target` on the input as the CLI would and checks what an `Ok` returns. Returns
/// `Ok(true)` for Ok, `Ok(false)` for a typed error, `Err` for an inconsistent Ok result.
fn run_target(target: Target, bytes: &[u8], config: Option<&str>) -> Result<bool, String> {
    let text = || String::from_utf8_lossy(bytes).into_owned();
    match target {
        Target::Weights => {
            let config = config.unwrap_or(TINY);
            let (cfg, w) = match Weights::load_bytes(config, bytes, "fuzz.safetensors") {
                Ok(x) => x,
                Err(_) => return Ok(false),
            };
            // What `ddpm info` prints, then (for small models) the CPU forward.
            if w.num_params() != cfg.num_params() {
                return Err(format!(
                    "validated weights hold {} values, the config {}",
                    w.num_params(),
                    cfg.num_params()
                ));
            }
            let _ = cfg.forward_flops(1);
            small_forward(&cfg, &w)
        }
        Target::Config => {
            let cfg = match UNetConfig::from_json(&text()) {
                Ok(c) => c,
                Err(_) => return Ok(false),
            };
            let back = UNetConfig::from_json(&cfg.to_json())
                .map_err(|e| format!("to_json of an accepted config is refused: {e}"))?;
            if back != cfg {
                return Err("to_json does not round-trip".into());
            }
            let _ = (cfg.num_params(), cfg.forward_flops(4));
            if cfg.num_params() <= 100_000 && cfg.forward_flops(1) <= 20_000_000 {
                let w = Weights::init(&cfg, 0).map_err(|e| format!("init refused: {e}"))?;
                small_forward(&cfg, &w)
            } else {
                Ok(true)
            }
        }
        Target::Scheduler => {
            let c = match SchedulerConfig::from_json(&text()) {
                Ok(c) => c,
                Err(_) => return Ok(false),
            };
            let s = c
                .schedule()
                .map_err(|e| format!("accepted config has no schedule: {e}"))?;
            if s.len() != c.num_train_timesteps {
                return Err(format!(
                    "schedule of {} steps for T = {}",
                    s.len(),
                    c.num_train_timesteps
                ));
            }
            for steps in [1, 7, 50] {
                let _ = c.ddim_timesteps(steps);
                let opts = SamplerOptions::new(&c, SamplerKind::Ddim { steps, eta: 0.5 }, 0);
                let _ = ddpm::sampler::plan(&c, &opts);
            }
            Ok(true)
        }
        Target::Npy => match ddpm::npy::from_bytes(bytes, "fuzz.npy") {
            Ok((shape, data)) => {
                let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                if n != Some(data.len()) {
                    return Err(format!("shape {shape:?} with {} values", data.len()));
                }
                Ok(true)
            }
            Err(_) => Ok(false),
        },
        Target::Checkpoint => {
            let c = match checkpoint::from_bytes(bytes, "fuzz checkpoint") {
                Ok(c) => c,
                Err(_) => return Ok(false),
            };
            // What `ddpm train --resume` does before it needs the GPU.
            let (cfg, sched) = (
                c.config().map_err(|e| e.to_string())?,
                c.scheduler().map_err(|e| e.to_string())?,
            );
            let w = c
                .weights()
                .map_err(|e| format!("validated checkpoint has no weights: {e}"))?;
            w.validate(&cfg)
                .map_err(|e| format!("validated checkpoint's weights do not fit: {e}"))?;
            sched.schedule().map_err(|e| e.to_string())?;
            let Ok(state) =
                serde_json::from_value::<BatcherState>(c.state.extra["batcher"].clone())
            else {
                return Ok(false);
            };
            let Ok(mut b) = Batcher::resume(state, DATA_LEN) else {
                return Ok(false);
            };
            let batch = b.next_batch(c.state.options.batch);
            if batch.indices.iter().any(|&i| i >= DATA_LEN) {
                return Err(format!("batch index out of range: {:?}", batch.indices));
            }
            Ok(true)
        }
    }
}

/// The CPU forward of a small model (one sample), as `ddpm forward --cpu` runs it.
fn small_forward(cfg: &UNetConfig, w: &Weights) -> Result<bool, String> {
    let Some((h, wd)) = cfg.sample_hw() else {
        return Ok(true);
    };
    if cfg.forward_flops(1) > 20_000_000 {
        return Ok(true);
    }
    let x = HostTensor {
        shape: vec![1, cfg.in_channels, h, wd],
        data: vec![0.5; cfg.in_channels * h * wd],
    };
    let eps = cpu_unet::forward(cfg, w, &x, &[10.0])
        .map_err(|e| format!("validated model refused its own input: {e}"))?;
    if eps.shape != [1, cfg.out_channels, h, wd] {
        return Err(format!("output shape {:?}", eps.shape));
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Mutations.

/// Replacements for numeric fields, as text.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "3",
    "17",
    "65",
    "2147483648",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999",
    "1e11",
    "1e308",
    "1e400",
    "-1e308",
    "1e-400",
    "0.5",
    "-0",
    "NaN",
    "Infinity",
    "1000000",
    "1000001",
    "65536",
    "16384",
];
/// Mild replacements (in range for most fields), so that mutants also get past validation.
const MILD: &[&str] = &["1", "2", "4", "8", "16", "32", "0.1", "1.5", "999", "100"];

/// Extreme JSON values for value-level mutations.
fn extreme_value(rng: &mut Rng) -> Value {
    let big = |n: usize| "x".repeat(n);
    match rng.range(0, 27) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(1u64 << 31),
        3 => json!(1u64 << 32),
        4 => json!(u64::MAX),
        5 => json!(18446744073709551616f64),
        6 => json!(1e11),
        7 => json!(1e308),
        8 => json!(-1e308),
        9 => json!(5e-324),
        10 => json!(0.5),
        11 => json!(1_000_000),
        12 => json!(1_000_001),
        13 => json!(65),
        14 => Value::Null,
        15 => json!(true),
        16 => json!([]),
        17 => json!({}),
        18 => json!(big(1 << 20)),
        19 => json!(""),
        20 => Value::Array(vec![json!(0); 100_000]),
        21 => json!([1, 2, 3]),
        22 => json!(["DownBlock2D", "AttnDownBlock2D"]),
        23 => {
            let mut v = json!(0);
            for _ in 0..200 {
                v = json!([v]);
            }
            v
        }
        24 => json!("NaN"),
        25 => json!(16),
        26 => json!(-0.0),
        _ => json!(i64::MIN),
    }
}

/// All JSON pointers in `v` (objects and arrays; at most 2000).
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    if out.len() >= 2000 {
        return;
    }
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                pointers(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate().take(64) {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A value-level mutation of JSON text: replace a node, delete a key or add one.
fn mutate_json(text: &[u8], rng: &mut Rng, log: &mut Vec<String>) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(text).ok()?;
    let mut ps = Vec::new();
    pointers(&v, String::new(), &mut ps);
    let p = ps[rng.range(0, ps.len() - 1)].clone();
    let node = v.pointer_mut(&p)?;
    match (rng.range(0, 5), node) {
        (0, Value::Object(m)) if !m.is_empty() => {
            let k = m.keys().nth(rng.range(0, m.len() - 1)).unwrap().clone();
            m.remove(&k);
            log.push(format!("json: delete {p}/{k}"));
        }
        (1, Value::Object(m)) => {
            let keys = [
                "num_train_timesteps",
                "sample_size",
                "extra",
                "batch",
                "_x",
                "step",
            ];
            let k = keys[rng.range(0, keys.len() - 1)];
            let e = extreme_value(rng);
            log.push(format!("json: add {p}/{k} = {}", short(&e)));
            m.insert(k.into(), e);
        }
        (2 | 3, node @ Value::Number(_)) => {
            let e = json!([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 0.25, 999.0][rng.range(0, 7)]);
            log.push(format!("json: set {p} = {e}"));
            *node = e;
        }
        (_, node) => {
            let e = extreme_value(rng);
            log.push(format!("json: set {p} = {}", short(&e)));
            *node = e;
        }
    }
    Some(serde_json::to_vec(&v).unwrap())
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}… ({} bytes)", &s[..40], s.len())
    } else {
        s
    }
}

/// Ranges of numeric tokens in `b` (digits with sign, point, exponent).
fn numbers(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() && out.len() < 4096 {
        if b[i].is_ascii_digit() {
            let start = if i > 0 && b[i - 1] == b'-' { i - 1 } else { i };
            let mut j = i;
            while j < b.len()
                && (b[j].is_ascii_digit() || matches!(b[j], b'.' | b'e' | b'E' | b'+'))
            {
                j += 1;
            }
            out.push((start, j));
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// One byte-level mutation of `b` (`others`: splice material).
fn mutate_bytes(b: &mut Vec<u8>, others: &[Seed], rng: &mut Rng, log: &mut Vec<String>) {
    let pos = |rng: &mut Rng, len: usize| rng.range(0, len);
    match rng.range(0, 9) {
        0 if !b.is_empty() => {
            let i = pos(rng, b.len() - 1);
            b[i] ^= 1 << rng.range(0, 7);
            log.push(format!("flip bit at {i}"));
        }
        1 if !b.is_empty() => {
            let i = pos(rng, b.len() - 1);
            let vals = b"\x00\xff\x7f\x80\"{}[],:-09.eTF\\\n";
            b[i] = vals[rng.range(0, vals.len() - 1)];
            log.push(format!("set byte {i} to {:#04x}", b[i]));
        }
        2 => {
            let n = pos(rng, b.len());
            b.truncate(n);
            log.push(format!("truncate to {n}"));
        }
        3 => {
            let i = pos(rng, b.len());
            let tokens: [&[u8]; 8] = [
                b"\x00",
                b"\"",
                b"{",
                b"]",
                b",\"a\":1",
                b"1e999",
                b"\xff\xfe",
                b" ",
            ];
            let t = tokens[rng.range(0, tokens.len() - 1)];
            b.splice(i..i, t.iter().copied());
            log.push(format!("insert {:?} at {i}", String::from_utf8_lossy(t)));
        }
        4 if !b.is_empty() => {
            let i = pos(rng, b.len() - 1);
            let j = (i + rng.range(1, 64)).min(b.len());
            b.drain(i..j);
            log.push(format!("delete {i}..{j}"));
        }
        5 => {
            let o = &others[rng.range(0, others.len() - 1)].bytes;
            if !o.is_empty() {
                let s = pos(rng, o.len() - 1);
                let e = (s + rng.range(1, 256)).min(o.len());
                let i = pos(rng, b.len());
                let j = (i + rng.range(0, 256)).min(b.len());
                b.splice(i..j, o[s..e].iter().copied());
                log.push(format!("splice {s}..{e} of another seed over {i}..{j}"));
            }
        }
        6 | 7 => {
            let nums = numbers(b);
            if !nums.is_empty() {
                let (s, e) = nums[rng.range(0, nums.len() - 1)];
                let r = if rng.range(0, 2) == 0 {
                    MILD[rng.range(0, MILD.len() - 1)]
                } else {
                    NUMBERS[rng.range(0, NUMBERS.len() - 1)]
                };
                log.push(format!(
                    "number {:?} at {s} → {r}",
                    String::from_utf8_lossy(&b[s..e])
                ));
                b.splice(s..e, r.bytes());
            }
        }
        8 => {
            let i = pos(rng, b.len());
            let n = 1 << rng.range(4, 20);
            let fill = if rng.range(0, 1) == 0 { b'a' } else { b'9' };
            b.splice(i..i, std::iter::repeat_n(fill, n));
            log.push(format!("insert {n} × {:?} at {i}", fill as char));
        }
        _ if !b.is_empty() => {
            let i = pos(rng, b.len() - 1);
            let j = (i + rng.range(1, 128)).min(b.len());
            let chunk = b[i..j].to_vec();
            b.splice(j..j, chunk);
            log.push(format!("duplicate {i}..{j}"));
        }
        _ => {}
    }
}

/// A mutation of text `t` (JSON): value-level or byte-level.
fn mutate_text(t: &[u8], others: &[Seed], rng: &mut Rng, log: &mut Vec<String>) -> Vec<u8> {
    if rng.range(0, 2) == 0 {
        if let Some(v) = mutate_json(t, rng, log) {
            return v;
        }
    }
    let mut b = t.to_vec();
    for _ in 0..rng.range(1, 3) {
        mutate_bytes(&mut b, others, rng, log);
    }
    b
}

/// safetensors: (header JSON, data) if the length prefix is sane.
fn split_safetensors(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as usize;
    let end = n.checked_add(8)?;
    Some((b.get(8..end)?, &b[end..]))
}

fn join_safetensors(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

/// .npy: (prefix up to the header, header, data).
fn split_npy(b: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (lenw, start) = match *b.get(6)? {
        1 => (2, 10),
        2 | 3 => (4, 12),
        _ => return None,
    };
    let mut n = 0usize;
    for k in (0..lenw).rev() {
        n = n << 8 | *b.get(8 + k)? as usize;
    }
    let header = b.get(start..start + n)?;
    Some((&b[..start], header, &b[start + n..]))
}

fn join_npy(prefix: &[u8], header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    if prefix.len() == 10 {
        out[8..10].copy_from_slice(&(header.len().min(u16::MAX as usize) as u16).to_le_bytes());
    } else {
        out[8..12].copy_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

/// A checkpoint's nested texts: mutates the safetensors header, the trainer state, or the
/// config / scheduler JSON inside the state, and re-nests.
fn mutate_checkpoint(
    b: &[u8],
    others: &[Seed],
    rng: &mut Rng,
    log: &mut Vec<String>,
) -> Option<Vec<u8>> {
    let (header, data) = split_safetensors(b)?;
    let mut h: Value = serde_json::from_slice(header).ok()?;
    let state_text = h
        .pointer("/__metadata__/ddpm_trainer_state")?
        .as_str()?
        .to_string();
    let level = rng.range(0, 3);
    let new_state = match level {
        0 => {
            log.push("in the safetensors header:".into());
            let new_header = mutate_text(header, others, rng, log);
            return Some(join_safetensors(&new_header, data));
        }
        1 => {
            log.push("in the trainer state:".into());
            mutate_text(state_text.as_bytes(), others, rng, log)
        }
        _ => {
            let key = if rng.range(0, 1) == 0 {
                "config"
            } else {
                "scheduler"
            };
            log.push(format!("in the state's {key}:"));
            let mut state: Value = serde_json::from_str(&state_text).ok()?;
            let inner = state.get(key)?.as_str()?.to_string();
            let m = mutate_text(inner.as_bytes(), others, rng, log);
            state[key] = String::from_utf8_lossy(&m).into_owned().into();
            serde_json::to_vec(&state).unwrap()
        }
    };
    *h.pointer_mut("/__metadata__/ddpm_trainer_state")? =
        String::from_utf8_lossy(&new_state).into_owned().into();
    Some(join_safetensors(&serde_json::to_vec(&h).unwrap(), data))
}

/// One case: `target`'s input derived from a seed by 1–3 mutations, with a log of them.
fn make_case(
    target: Target,
    seeds: &[Seed],
    rng: &mut Rng,
) -> (Vec<u8>, Option<String>, Vec<String>) {
    let seed = &seeds[rng.range(0, seeds.len() - 1)];
    let mut log = vec![format!("seed {}", seed.name)];
    let mut bytes = seed.bytes.clone();
    let mut config = seed.config.clone();
    let rounds = [1, 1, 1, 2, 3][rng.range(0, 4)];
    for _ in 0..rounds {
        let structured = rng.range(0, 3) > 0;
        let done = structured
            && match target {
                Target::Weights => {
                    if rng.range(0, 4) == 0 {
                        let c = config.take().unwrap_or_default();
                        log.push("in config.json:".into());
                        config = Some(
                            String::from_utf8_lossy(&mutate_text(
                                c.as_bytes(),
                                seeds,
                                rng,
                                &mut log,
                            ))
                            .into_owned(),
                        );
                        true
                    } else if rng.range(0, 6) == 0 {
                        let n = [0u64, 1, 7, u32::MAX as u64, 1 << 40, u64::MAX - 7, u64::MAX];
                        let v = n[rng.range(0, n.len() - 1)];
                        if bytes.len() >= 8 {
                            bytes[..8].copy_from_slice(&v.to_le_bytes());
                            log.push(format!("header length → {v}"));
                        }
                        true
                    } else if let Some((h, d)) = split_safetensors(&bytes) {
                        log.push("in the safetensors header:".into());
                        let h = mutate_text(h, seeds, rng, &mut log);
                        bytes = join_safetensors(&h, d);
                        true
                    } else {
                        false
                    }
                }
                Target::Npy => match split_npy(&bytes) {
                    Some((p, h, d)) => {
                        log.push("in the .npy header:".into());
                        let mut h2 = h.to_vec();
                        for _ in 0..rng.range(1, 2) {
                            mutate_bytes(&mut h2, seeds, rng, &mut log);
                        }
                        bytes = join_npy(p, &h2, d);
                        true
                    }
                    None => false,
                },
                Target::Checkpoint => match mutate_checkpoint(&bytes, seeds, rng, &mut log) {
                    Some(b) => {
                        bytes = b;
                        true
                    }
                    None => false,
                },
                Target::Config | Target::Scheduler => {
                    bytes = mutate_text(&bytes, seeds, rng, &mut log);
                    true
                }
            };
        if !done {
            mutate_bytes(&mut bytes, seeds, rng, &mut log);
        }
    }
    (bytes, config, log)
}

// ---------------------------------------------------------------------------------------------
// The driver.

#[derive(Default)]
struct Tally {
    cases: u64,
    ok: u64,
    err: u64,
    failures: Vec<String>,
}

/// Serialises fuzz runs (the panic hook is process-wide).
static RUN: Mutex<()> = Mutex::new(());

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

fn fuzz(default_cases: u64) {
    let _lock = RUN.lock().unwrap_or_else(|e| e.into_inner());
    let cases = env_u64("FUZZ_CASES").unwrap_or(default_cases);
    let seed = env_u64("FUZZ_SEED").unwrap_or(0x5EED);
    let dump = env_u64("FUZZ_DUMP");
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let seeds = seeds();

    let message: &'static Mutex<String> = Box::leak(Box::new(Mutex::new(String::new())));
    let previous: &'static _ = Box::leak(Box::new(std::panic::take_hook()));
    std::panic::set_hook(Box::new(move |info| {
        if CASE.with(Cell::get) == u64::MAX {
            return previous(info); // not inside a case: report as usual
        }
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let text = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        *message.lock().unwrap_or_else(|e| e.into_inner()) = format!("{text}{loc}");
    }));

    let start = Instant::now();
    let mut per_target = [(0u64, 0u64, 0u64); TARGETS.len()];
    let mut tally = Tally::default();
    for case in 0..cases {
        let mut rng = Rng::new(seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let ti = rng.range(0, TARGETS.len() - 1);
        let target = TARGETS[ti];
        CASE.with(|c| c.set(case));
        let made = catch_unwind(AssertUnwindSafe(|| {
            make_case(target, seeds.of(target), &mut rng)
        }));
        CASE.with(|c| c.set(u64::MAX));
        let (bytes, config, log) = made.unwrap_or_else(|_| {
            panic!(
                "fuzzer bug in case {case}: {}",
                message.lock().unwrap_or_else(|e| e.into_inner())
            )
        });
        if dump == Some(case) {
            let p = tmp.join(format!("fuzz-case-{case}.{}", target.ext()));
            std::fs::write(&p, &bytes).unwrap();
            if let Some(c) = &config {
                std::fs::write(tmp.join(format!("fuzz-case-{case}.config.json")), c).unwrap();
            }
            eprintln!(
                "fuzz: case {case} ({target:?}, {}) written to {}",
                log.join("; "),
                p.display()
            );
        }
        CASE.with(|c| c.set(case));
        let result = catch_unwind(AssertUnwindSafe(|| {
            run_target(target, &bytes, config.as_deref())
        }));
        CASE.with(|c| c.set(u64::MAX));
        tally.cases += 1;
        per_target[ti].0 += 1;
        let failure = match result {
            Ok(Ok(true)) => {
                tally.ok += 1;
                per_target[ti].1 += 1;
                None
            }
            Ok(Ok(false)) => {
                tally.err += 1;
                per_target[ti].2 += 1;
                None
            }
            Ok(Err(broken)) => Some(format!("inconsistent Ok: {broken}")),
            Err(_) => Some(format!(
                "panic: {}",
                message.lock().unwrap_or_else(|e| e.into_inner())
            )),
        };
        if let Some(what) = failure {
            if tally.failures.len() < 20 {
                let p = tmp.join(format!("fuzz-fail-{case}.{}", target.ext()));
                std::fs::write(&p, &bytes).unwrap();
                if let Some(c) = &config {
                    std::fs::write(tmp.join(format!("fuzz-fail-{case}.config.json")), c).unwrap();
                }
                tally.failures.push(format!(
                    "case {case} ({target:?}): {what}\n    mutations: {}\n    input: {}",
                    log.join("; "),
                    p.display()
                ));
            } else {
                tally.failures.push(String::new());
            }
        }
    }
    let _ = std::panic::take_hook(); // back to `previous` (leaked, still installed by it)
    std::panic::set_hook(Box::new(previous));
    let secs = start.elapsed().as_secs_f64();
    for (t, (n, ok, err)) in TARGETS.iter().zip(per_target) {
        eprintln!("fuzz:   {t:?}: {n} cases, {ok} Ok, {err} Err");
    }
    let summary = format!(
        "fuzz: {} cases, {} Ok, {} Err, {} panics/inconsistent, {secs:.1} s (seed {seed:#x})",
        tally.cases,
        tally.ok,
        tally.err,
        tally.failures.len()
    );
    eprintln!("{summary}");
    let shown: Vec<&String> = tally.failures.iter().filter(|f| !f.is_empty()).collect();
    assert!(
        tally.failures.is_empty(),
        "{summary}\n{}",
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The mix must reach past the parsers: some cases of every target load.
    for (t, (_, ok, err)) in TARGETS.iter().zip(per_target) {
        assert!(
            ok > 0 && err > 0,
            "{t:?}: {ok} Ok, {err} Err — the mutations miss"
        );
    }
}

#[test]
fn fuzz_file_readers() {
    fuzz(DEFAULT_CASES);
}

#[test]
#[ignore = "a million cases: cargo test --release --test fuzz -- --ignored"]
fn fuzz_file_readers_million() {
    fuzz(1_000_000);
}

/// The reproducers of issue #14, each a typed error now (they aborted, panicked or were
/// silently misread).
#[test]
fn issue_14_reproducers_are_errors() {
    let mnist = std::fs::read_to_string(root().join("assets/mnist/config.json")).unwrap();
    let with = |key: &str, v: Value| {
        let mut c: Value = serde_json::from_str(&mnist).unwrap();
        c[key] = v;
        c.to_string()
    };
    for (json, needle) in [
        (
            with("layers_per_block", json!(4294967296u64)),
            "layers_per_block",
        ),
        (with("sample_size", json!(1048576)), "sample_size"),
        (with("sample_size", json!(1u64 << 31)), "sample_size"),
        (
            with("mid_block_scale_factor", json!(18446744073709551616f64)),
            "mid_block_scale_factor",
        ),
    ] {
        let e = UNetConfig::from_json(&json).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
    let mut c: Value = serde_json::from_str(&mnist).unwrap();
    c["block_out_channels"] = json!(vec![32; 65]);
    c["down_block_types"] = json!(vec!["DownBlock2D"; 65]);
    c["up_block_types"] = json!(vec!["UpBlock2D"; 65]);
    let e = UNetConfig::from_json(&c.to_string())
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 16 levels"), "{e}");
    for t in ["10000000000", "4294967296", "1e11", "18446744073709551615"] {
        let e = SchedulerConfig::from_json(&format!("{{\"num_train_timesteps\": {t}}}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("num_train_timesteps") && e.contains("1000000"),
            "{e}"
        );
    }
}
