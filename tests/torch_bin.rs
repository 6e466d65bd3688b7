//! PyTorch `.bin` weights (`torch.save` zip archives) against files written by torch itself
//! (`scripts/make_torch_bin_fixtures.py`): the same tensors as the safetensors fixture, a
//! malicious pickle refused, and damaged files giving errors, never panics or huge allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ddpm::model::torch_bin::read_state_dict;
use ddpm::model::weights::{
    StoreDtype, Weights, FP16_WEIGHTS_FILE, TORCH_WEIGHTS_FILE, WEIGHTS_FILE,
};

/// Records the largest single allocation, so damaged files can be shown not to drive one.
struct PeakAlloc;

static LARGEST_ALLOC: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOC.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOC.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOC.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn torch_bin(rel: &str) -> PathBuf {
    fixtures().join("torch_bin").join(rel)
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("torch_bin")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn reference() -> Weights {
    ddpm::model::load_dir(fixtures().join("unet_tiny"))
        .unwrap()
        .1
}

/// Every tensor of `got` equals `reference` with each value passed through `round`, bit for bit.
fn assert_same(got: &Weights, reference: &Weights, round: impl Fn(f32) -> f32) {
    assert_eq!(got.len(), reference.len());
    for (name, want) in reference.iter() {
        let t = got.tensor(name).unwrap();
        assert_eq!(t.shape, want.shape, "{name}");
        for (i, (&g, &w)) in t.data.iter().zip(&want.data).enumerate() {
            assert_eq!(g.to_bits(), round(w).to_bits(), "{name}[{i}]: {g} vs {w}");
        }
    }
}

#[test]
fn f32_f16_bf16_bins_match_the_safetensors_weights() {
    let reference = reference();
    let (config, w) = ddpm::model::load_dir(torch_bin("f32")).unwrap();
    assert_eq!(config.block_out_channels, [16, 32, 32]);
    assert!(w.source().ends_with(TORCH_WEIGHTS_FILE), "{}", w.source());
    assert_same(&w, &reference, |v| v);
    let (_, w) = ddpm::model::load_dir(torch_bin("f16")).unwrap();
    assert_same(&w, &reference, |v| half::f16::from_f32(v).to_f32());
    let (_, w) = ddpm::model::load_dir(torch_bin("bf16")).unwrap();
    assert_same(&w, &reference, |v| half::bf16::from_f32(v).to_f32());
}

#[test]
fn names_keep_the_file_order() {
    let bytes = std::fs::read(torch_bin("f32").join(TORCH_WEIGHTS_FILE)).unwrap();
    let tensors = read_state_dict(&bytes, "f32.bin").unwrap();
    let params: Vec<(String, Vec<usize>)> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("unet_tiny/params.json")).unwrap(),
    )
    .unwrap();
    let got: Vec<(String, Vec<usize>)> = tensors.into_iter().map(|(n, s, _)| (n, s)).collect();
    assert_eq!(got, params);
}

#[test]
fn views_dtypes_and_ordered_dicts_as_torch_writes_them() {
    let bytes = std::fs::read(torch_bin("views.bin")).unwrap();
    let got = read_state_dict(&bytes, "views.bin").unwrap();
    let base: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let at = |r: usize, c: usize| base[r * 4 + c];
    let thirds: Vec<f32> = (0..6).map(|i| i as f32 / 3.0).collect();
    let want: Vec<(&str, Vec<usize>, Vec<f32>)> = vec![
        ("base", vec![3, 4], base.clone()),
        (
            "transposed",
            vec![4, 3],
            (0..4).flat_map(|c| (0..3).map(move |r| at(r, c))).collect(),
        ),
        ("row", vec![4], base[4..8].to_vec()),
        ("column", vec![3], vec![2.0, 6.0, 10.0]),
        ("f64", vec![5], (0..5).map(|i| i as f32 / 4.0).collect()),
        (
            "f16",
            vec![2, 3],
            thirds
                .iter()
                .map(|&v| half::f16::from_f32(v).to_f32())
                .collect(),
        ),
        (
            "bf16",
            vec![3, 2],
            thirds
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_f32())
                .collect(),
        ),
        ("scalar", vec![], vec![2.5]),
        ("empty", vec![0, 3], vec![]),
    ];
    assert_eq!(got.len(), want.len());
    for ((name, shape, data), (wname, wshape, wdata)) in got.iter().zip(&want) {
        assert_eq!((name.as_str(), shape), (*wname, wshape));
        assert_eq!(data, wdata, "{name}");
    }
}

#[test]
fn malicious_pickle_is_refused_naming_the_global() {
    let bytes = std::fs::read(torch_bin("malicious.bin")).unwrap();
    let e = read_state_dict(&bytes, "malicious.bin")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`posix.system`") && e.contains("malicious.bin"),
        "{e}"
    );
    assert!(e.contains("nothing was executed"), "{e}");

    // Through a model directory too.
    let d = scratch("malicious");
    std::fs::copy(torch_bin("f32/config.json"), d.join("config.json")).unwrap();
    std::fs::write(d.join(TORCH_WEIGHTS_FILE), &bytes).unwrap();
    let e = ddpm::model::load_dir(&d).unwrap_err().to_string();
    assert!(
        e.contains("`posix.system`") && e.contains(TORCH_WEIGHTS_FILE),
        "{e}"
    );
}

#[test]
fn safetensors_then_fp16_safetensors_then_bin() {
    let reference = reference();
    let d = scratch("preference");
    std::fs::copy(torch_bin("bf16/config.json"), d.join("config.json")).unwrap();
    std::fs::copy(
        torch_bin("bf16").join(TORCH_WEIGHTS_FILE),
        d.join(TORCH_WEIGHTS_FILE),
    )
    .unwrap();
    let (_, w) = ddpm::model::load_dir(&d).unwrap();
    assert_same(&w, &reference, |v| half::bf16::from_f32(v).to_f32());

    reference
        .save_safetensors(d.join(FP16_WEIGHTS_FILE), StoreDtype::F16)
        .unwrap();
    let (_, w) = ddpm::model::load_dir(&d).unwrap();
    assert!(w.source().ends_with(FP16_WEIGHTS_FILE), "{}", w.source());
    assert_same(&w, &reference, |v| half::f16::from_f32(v).to_f32());

    reference
        .save_safetensors(d.join(WEIGHTS_FILE), StoreDtype::F32)
        .unwrap();
    let (_, w) = ddpm::model::load_dir(&d).unwrap();
    assert_same(&w, &reference, |v| v);
}

/// Whether `bytes` load; a panic inside the reader fails the test, naming `what`.
fn try_read(bytes: &[u8], what: &str) -> bool {
    match catch_unwind(AssertUnwindSafe(|| read_state_dict(bytes, what))) {
        Ok(r) => r.is_ok(),
        Err(_) => panic!("{what}: read_state_dict panicked"),
    }
}

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// The central-directory CRC field and data range of entry `name` (stored, as torch writes).
fn entry_span(bytes: &[u8], name: &str) -> (usize, std::ops::Range<usize>) {
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let central = (0..bytes.len() - 46)
        .find(|&at| {
            bytes[at..].starts_with(b"PK\x01\x02") && bytes[at + 46..].starts_with(name.as_bytes())
        })
        .unwrap();
    let local = u32_at(central + 42);
    let start = local + 30 + u16_at(local + 26) + u16_at(local + 28);
    (central + 16, start..start + u32_at(central + 20))
}

#[test]
fn damaged_files_are_errors_not_panics_or_huge_allocations() {
    let bytes = std::fs::read(torch_bin("f32").join(TORCH_WEIGHTS_FILE)).unwrap();
    // A real read allocates about the largest tensor plus the file's own pieces; 8× the file is
    // far above that and far below what a size field taken on trust could ask for.
    let alloc_limit = 8 * bytes.len();
    assert!(try_read(&bytes, "intact"));

    for cut in (0..bytes.len()).step_by(97) {
        assert!(
            !try_read(&bytes[..cut], &format!("cut at {cut}")),
            "cut at {cut} loaded"
        );
    }

    let mut rng = Rng(0x7031_C4B1);
    let mut loaded = 0;
    for case in 0..300 {
        let mut b = bytes.clone();
        let at = rng.below(b.len());
        b[at] ^= 1 + rng.below(255) as u8;
        loaded += usize::from(try_read(&b, &format!("case {case}: byte {at} changed")));
    }
    // Changed bytes are caught by the zip CRC unless they fall outside every entry read.
    assert!(loaded < 300, "{loaded} of 300 damaged files loaded");

    // The same inside data.pkl with its CRC made to match, so the pickle machine sees them.
    let (crc_at, pkl) = entry_span(&bytes, "diffusion_pytorch_model/data.pkl");
    let mut outcomes = [0usize; 2];
    for case in 0..400 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.below(3) {
            let at = pkl.start + rng.below(pkl.len());
            b[at] = rng.below(256) as u8;
        }
        let mut crc = flate2::Crc::new();
        crc.update(&b[pkl.clone()]);
        b[crc_at..crc_at + 4].copy_from_slice(&crc.sum().to_le_bytes());
        outcomes[usize::from(try_read(&b, &format!("pickle case {case}")))] += 1;
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    let largest = LARGEST_ALLOC.load(Ordering::Relaxed);
    assert!(largest <= alloc_limit, "largest allocation {largest} bytes");
}
