//! Tests of the training-data module: IDX parsing (plain and gzipped), file errors, emoji sheet
//! cutting and compositing, scaling, padding, flips and the resumable batch sampler. Tests on
//! the real datasets run only when `bash scripts/fetch_data.sh` has fetched them.

use std::io::Write;
use std::path::{Path, PathBuf};

use ddpm::data::emoji::{self, EmojiOptions};
use ddpm::data::{
    fashion, idx, mnist, to_u8, to_unit, Batcher, BatcherState, Dataset, Images, Source, Split,
};

/// A fresh, empty scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddpm-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// IDX bytes of unsigned bytes with `dims`.
fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Three 4×4 images whose pixel k of image i is `i * 16 + k`, labels 7, 8, 9.
fn tiny_set() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..48).collect();
    (
        idx_bytes(&[3, 4, 4], &pixels),
        idx_bytes(&[3], &[7, 8, 9]),
        pixels,
    )
}

fn err_string<T: std::fmt::Debug>(r: ddpm::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn idx_plain_files_load() {
    let dir = scratch("idx-plain");
    let (images, labels, pixels) = tiny_set();
    std::fs::write(dir.join("train-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), &labels).unwrap();
    let ds = mnist::load(&dir).unwrap();
    assert_eq!((ds.len(), ds.channels(), ds.size()), (3, 1, 4));
    assert_eq!(ds.pixels(), &pixels[..]);
    assert_eq!(ds.labels(), Some(&[7u8, 8, 9][..]));
    assert_eq!(ds.image(1).unwrap(), &pixels[16..32]);
    assert!(ds.image(3).is_none());
    // The test split is absent: a clear error naming it.
    let e = err_string(mnist::load_split(&dir, Split::Test));
    assert!(e.contains("t10k-images-idx3-ubyte"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn idx_gzipped_files_load_and_labels_are_optional() {
    let dir = scratch("idx-gz");
    let (images, labels, pixels) = tiny_set();
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gzip(&images)).unwrap();
    let ds = fashion::load_split(&dir, Split::Test).unwrap();
    assert_eq!(ds.pixels(), &pixels[..]);
    assert_eq!(ds.labels(), None, "no label file: images alone");
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gzip(&labels)).unwrap();
    let ds = fashion::load_split(&dir, Split::Test).unwrap();
    assert_eq!(ds.labels(), Some(&[7u8, 8, 9][..]));
    // Byte-slice parsers (what wasm uses) agree, gzipped or not.
    let a = mnist::from_idx_bytes(&gzip(&images), Some(&labels)).unwrap();
    let b = fashion::from_idx_bytes(&images, None).unwrap();
    assert_eq!(a.pixels(), b.pixels());
    assert_eq!(a.labels(), Some(&[7u8, 8, 9][..]));
    assert!(idx::is_gzip(&gzip(&images)) && !idx::is_gzip(&images));
    let parsed = idx::parse(&gzip(&images), "x").unwrap();
    assert_eq!(parsed.dims, vec![3, 4, 4]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn idx_corrupt_data_is_a_clear_error() {
    let (images, _, _) = tiny_set();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0x12, 0x34, 0x56, 0x78, 0, 0], "wrong magic"),
        (vec![0, 0], "shorter than the 4-byte magic"),
        (
            {
                let mut b = images.clone();
                b[2] = 0x0D; // float data
                b
            },
            "only 0x08",
        ),
        (vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0], "truncated header"),
        (vec![0, 0, 8, 9], "9 dimensions"),
        (images[..images.len() - 5].to_vec(), "truncated"),
        (
            {
                let mut b = images.clone();
                b.extend_from_slice(&[1, 2]);
                b
            },
            "2 unexpected bytes",
        ),
        (
            {
                let gz = gzip(&images);
                gz[..gz.len() / 2].to_vec()
            },
            "gzip",
        ),
        (
            vec![
                0, 0, 8, 4, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
                255, 255, 255, 255, 255, 255,
            ],
            "overflow",
        ),
    ];
    for (bytes, want) in cases {
        let e = err_string(idx::parse(&bytes, "some/file-idx3-ubyte"));
        assert!(e.contains("some/file-idx3-ubyte"), "names the file: {e}");
        assert!(e.contains(want), "expected `{want}` in: {e}");
    }
    // Shape checks on top of a valid IDX.
    let e = err_string(mnist::from_idx_bytes(&idx_bytes(&[2, 3], &[0; 6]), None));
    assert!(e.contains("expected square images"), "{e}");
    let e = err_string(mnist::from_idx_bytes(
        &idx_bytes(&[2, 3, 4], &[0; 24]),
        None,
    ));
    assert!(e.contains("expected square images"), "{e}");
    let e = err_string(mnist::from_idx_bytes(
        &images,
        Some(&idx_bytes(&[2], &[1, 2])),
    ));
    assert!(e.contains("2 labels but"), "{e}");
    let e = err_string(mnist::from_idx_bytes(&images, Some(&images)));
    assert!(e.contains("expected 1-D labels"), "{e}");
}

#[test]
fn missing_and_corrupt_files_name_the_file_and_the_fetch_command() {
    let dir = scratch("missing");
    let e = err_string(mnist::load(&dir));
    assert!(e.contains("train-images-idx3-ubyte"), "{e}");
    assert!(e.contains("bash scripts/fetch_data.sh"), "{e}");
    let e = err_string(emoji::load(dir.join("sheet-32.png"), None));
    assert!(
        e.contains("sheet-32.png") && e.contains("bash scripts/fetch_data.sh"),
        "{e}"
    );
    let e = err_string(Source::Mnist.load(&dir));
    assert!(
        e.contains("mnist") && e.contains("bash scripts/fetch_data.sh"),
        "{e}"
    );

    // A corrupt file on disk: the error names its path.
    let path = dir.join("train-images-idx3-ubyte.gz");
    std::fs::write(&path, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let e = err_string(mnist::load(&dir));
    assert!(
        e.contains(&path.display().to_string()) && e.contains("gzip"),
        "{e}"
    );
    std::fs::write(&path, b"hello").unwrap();
    let e = err_string(mnist::load(&dir));
    assert!(
        e.contains(&path.display().to_string()) && e.contains("wrong magic"),
        "{e}"
    );
    // A corrupt label file next to good images.
    let (images, _, _) = tiny_set();
    std::fs::write(&path, gzip(&images)).unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 9, 1],
    )
    .unwrap();
    let e = err_string(mnist::load(&dir));
    assert!(
        e.contains("train-labels-idx1-ubyte") && e.contains("truncated"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// RGBA sheet of `cols × rows` 34-px cells; `f(cell_x, cell_y, x, y)` gives the pixel at
/// position (x, y) inside the cell (0..34, so padding included).
fn sheet(cols: usize, rows: usize, f: impl Fn(usize, usize, usize, usize) -> [u8; 4]) -> Vec<u8> {
    let (w, h) = (cols * 34, rows * 34);
    let mut rgba = vec![0u8; w * h * 4];
    for y in 0..h {
        for x in 0..w {
            let p = f(x / 34, y / 34, x % 34, y % 34);
            rgba[(y * w + x) * 4..][..4].copy_from_slice(&p);
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(&rgba).unwrap();
    wr.finish().unwrap();
    out
}

/// 3×2 cells: (0,0) opaque red, (1,0) empty but with opaque padding, (2,0) blue at alpha 128,
/// (0,1) one opaque green pixel at (3, 5) of the image, (1,1) and (2,1) empty.
fn test_sheet() -> Vec<u8> {
    sheet(3, 2, |cx, cy, x, y| {
        let inner = (1..33).contains(&x) && (1..33).contains(&y);
        match (cx, cy) {
            (0, 0) if inner => [255, 0, 0, 255],
            (1, 0) if !inner => [9, 9, 9, 255],
            (2, 0) if inner => [0, 0, 255, 128],
            (0, 1) if x == 1 + 3 && y == 1 + 5 => [0, 255, 0, 255],
            _ => [0, 0, 0, 0],
        }
    })
}

/// Image `i` of `ds` as f32 NCHW.
fn get(ds: &Images, i: usize) -> Vec<f32> {
    let mut out = vec![0.0; ds.image_len()];
    ds.batch(&[i], &mut out).unwrap();
    out
}

#[test]
fn compositing_on_white() {
    assert_eq!(emoji::composite_on_white([10, 20, 30, 0]), [255, 255, 255]);
    assert_eq!(emoji::composite_on_white([10, 20, 30, 255]), [10, 20, 30]);
    // 0·128/255 + 255·127/255 = 127.0; 255·128/255 + 255·127/255 = 255.
    assert_eq!(emoji::composite_on_white([0, 255, 0, 128]), [127, 255, 127]);
    for a in 0..=255u8 {
        for c in [0u8, 77, 200, 255] {
            let want = (c as f32 * a as f32 + 255.0 * (255.0 - a as f32)) / 255.0;
            let got = emoji::composite_on_white([c, c, c, a])[0] as f32;
            assert!((got - want).abs() <= 0.5, "c {c} a {a}: {got} vs {want}");
        }
    }
}

#[test]
fn emoji_cells_are_cut_composited_and_empty_ones_skipped() {
    let png = test_sheet();
    let ds = emoji::from_bytes(&png, None, &EmojiOptions::default()).unwrap();
    assert_eq!((ds.len(), ds.channels(), ds.size()), (3, 3, 32));
    let plane = 32 * 32;
    // Cell (0,0): opaque red → (1, -1, -1) everywhere; the padding never leaks in.
    let red = get(&ds, 0);
    assert!(red[..plane].iter().all(|&v| v == 1.0));
    assert!(red[plane..].iter().all(|&v| v == -1.0));
    // Cell (2,0): blue at alpha 128 over white → (127, 127, 255).
    let blue = get(&ds, 1);
    assert!(blue[..2 * plane].iter().all(|&v| v == to_unit(127)));
    assert!(blue[2 * plane..].iter().all(|&v| v == 1.0));
    // Cell (0,1): white except a green pixel at row 5, column 3.
    let g = get(&ds, 2);
    let at = 5 * 32 + 3;
    assert_eq!([g[at], g[plane + at], g[2 * plane + at]], [-1.0, 1.0, -1.0]);
    assert_eq!(g.iter().filter(|&&v| v != 1.0).count(), 2);

    // emoji.json picks cells in its order, drops has_img_google = false, and adds skin tones
    // only when asked.
    let json = br#"[
        {"name": "BLUE", "sheet_x": 2, "sheet_y": 0},
        {"name": "RED", "sheet_x": 0, "sheet_y": 0, "has_img_google": true,
         "skin_variations": {"1F3FB": {"sheet_x": 0, "sheet_y": 1, "has_img_google": true}}},
        {"name": "EMPTY", "sheet_x": 1, "sheet_y": 0},
        {"name": "NOIMG", "sheet_x": 1, "sheet_y": 1, "has_img_google": false}
    ]"#;
    let ds = emoji::from_bytes(&png, Some(json), &EmojiOptions::default()).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(get(&ds, 0), blue);
    assert_eq!(get(&ds, 1), red);
    let opts = EmojiOptions {
        skin_tones: true,
        ..EmojiOptions::default()
    };
    let ds = emoji::from_bytes(&png, Some(json), &opts).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(get(&ds, 2), g);

    // From files.
    let dir = scratch("emoji");
    std::fs::write(dir.join("sheet.png"), &png).unwrap();
    std::fs::write(dir.join("emoji.json"), json).unwrap();
    let ds = emoji::load(
        dir.join("sheet.png"),
        Some(dir.join("emoji.json").as_path()),
    )
    .unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(get(&ds, 1), red);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn emoji_bad_inputs_are_clear_errors() {
    let png = test_sheet();
    let opts = EmojiOptions::default();
    let e = err_string(emoji::from_bytes(b"not a png", None, &opts));
    assert!(e.contains("not a valid PNG"), "{e}");
    let e = err_string(emoji::from_bytes(&png[..png.len() / 2], None, &opts));
    assert!(e.contains("not a valid PNG"), "{e}");
    let e = err_string(emoji::from_bytes(&png, Some(b"{oops"), &opts));
    assert!(e.contains("emoji.json"), "{e}");
    let e = err_string(emoji::from_bytes(
        &png,
        Some(br#"[{"sheet_x": 3, "sheet_y": 0}]"#),
        &opts,
    ));
    assert!(e.contains("outside the 3×2 grid"), "{e}");
    let odd = EmojiOptions { cell: 33, ..opts };
    let e = err_string(emoji::from_bytes(&png, None, &odd));
    assert!(e.contains("not a whole number of 33-px cells"), "{e}");
    let empty = sheet(2, 1, |_, _, _, _| [5, 5, 5, 0]);
    let e = err_string(emoji::from_bytes(&empty, None, &opts));
    assert!(e.contains("no non-transparent"), "{e}");
    let dir = scratch("emoji-bad");
    std::fs::write(dir.join("s.png"), &png).unwrap();
    let e = err_string(emoji::load(
        dir.join("s.png"),
        Some(dir.join("none.json").as_path()),
    ));
    assert!(
        e.contains("none.json") && e.contains("bash scripts/fetch_data.sh"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scaling_maps_bytes_to_minus_one_one() {
    let pixels: Vec<u8> = (0..=255u8).collect(); // one 1×16×16 image
    let ds = Images::new("ramp", 1, 16, pixels.clone(), None).unwrap();
    let x = get(&ds, 0);
    assert_eq!(x[0], -1.0);
    assert_eq!(x[255], 1.0);
    for (v, &p) in x.iter().zip(&pixels) {
        assert!((v - (p as f32 / 127.5 - 1.0)).abs() < 1e-6);
        assert!((-1.0..=1.0).contains(v));
        assert_eq!(to_u8(*v), p, "to_u8 inverts to_unit");
    }
    assert_eq!((to_u8(-3.0), to_u8(7.0)), (0, 255));
}

#[test]
fn batches_are_nchw_and_checked() {
    // Two 2-channel 2×2 images: image i, channel c, pixel k = 100·i + 10·c + k.
    let pixels: Vec<u8> = (0..2)
        .flat_map(|i| (0..2).flat_map(move |c| (0..4).map(move |k| 100 * i + 10 * c + k)))
        .collect();
    let ds = Images::new("nchw", 2, 2, pixels, Some(vec![0, 1])).unwrap();
    let mut out = vec![0.0; 3 * 8];
    ds.batch(&[1, 0, 1], &mut out).unwrap();
    let bytes: Vec<u8> = out.iter().map(|&v| to_u8(v)).collect();
    assert_eq!(&bytes[..8], &[100, 101, 102, 103, 110, 111, 112, 113]);
    assert_eq!(&bytes[8..16], &[0, 1, 2, 3, 10, 11, 12, 13]);
    assert_eq!(&bytes[16..], &bytes[..8]);
    let e = err_string(ds.batch(&[0, 1], &mut out));
    assert!(e.contains("holds 24 floats, need 16"), "{e}");
    let e = err_string(ds.batch(&[0, 2, 1], &mut out));
    assert!(e.contains("index 2 out of range"), "{e}");
    assert!(ds.batch(&[], &mut []).is_ok());
    let e = err_string(Images::new("bad", 1, 2, vec![0; 5], None));
    assert!(
        e.contains("bad: 5 bytes is not a positive multiple of one 1×2×2 image"),
        "{e}"
    );
    let e = err_string(Images::new("bad", 1, 2, vec![], None));
    assert!(
        e.contains("bad: 0 bytes is not a positive multiple of one 1×2×2 image"),
        "{e}"
    );
    let r = Images::new("bad", 1, 2, vec![0; 8], Some(vec![1]));
    assert!(
        matches!(&r, Err(ddpm::Error::Data { what, .. }) if what == "bad"),
        "{r:?}"
    );
    let e = err_string(r);
    assert!(e.contains("bad: 1 labels for 2 images"), "{e}");
    let small = ds.clone().truncate(1).unwrap();
    assert_eq!((small.len(), small.labels()), (1, Some(&[0u8][..])));
    let e = err_string(ds.truncate(0));
    assert!(e.contains("cannot keep 0 images"), "{e}");
}

#[test]
fn padding_centres_images_on_minus_one() {
    let ds = Images::new("pad", 1, 2, vec![255, 0, 51, 204], None).unwrap();
    let padded = ds.clone().pad_to(4).unwrap();
    assert_eq!(
        (padded.size(), padded.native_size(), padded.image_len()),
        (4, 2, 16)
    );
    let x = get(&padded, 0);
    let m = -1.0;
    #[rustfmt::skip]
    let want = [
        m, m, m, m,
        m, 1.0, -1.0, m,
        m, to_unit(51), to_unit(204), m,
        m, m, m, m,
    ];
    assert_eq!(x, want);
    // 28 → 32, the case the 32×32 models need: 2 px of -1 each side.
    let d28 = Images::new("d28", 1, 28, vec![255; 28 * 28], None)
        .unwrap()
        .pad_to(32)
        .unwrap();
    let x = get(&d28, 0);
    for y in 0..32 {
        for xx in 0..32 {
            let inside = (2..30).contains(&y) && (2..30).contains(&xx);
            assert_eq!(
                x[y * 32 + xx],
                if inside { 1.0 } else { -1.0 },
                "({y}, {xx})"
            );
        }
    }
    // Padding to the native size is a no-op; smaller is an error.
    assert_eq!(get(&ds.clone().pad_to(2).unwrap(), 0), get(&ds, 0));
    let e = err_string(ds.pad_to(1));
    assert!(e.contains("cannot pad"), "{e}");
}

#[test]
fn flips_follow_the_seed_and_the_flag() {
    // One 1×3×3 image with distinct columns, padded to 4 (odd padding: 0 left, 1 right).
    let img = vec![0, 100, 200, 0, 100, 200, 0, 100, 200];
    let base = Images::new("flip", 1, 3, img, None).unwrap();
    let n = 64;
    let idx = vec![0; n];
    let mut out = vec![0.0; n * 9];
    let plain = get(&base, 0);
    let mirrored: Vec<f32> = plain
        .chunks(3)
        .flat_map(|r| r.iter().rev().copied())
        .collect();

    // Flips off: batch_with ignores the seed.
    base.batch_with(&idx, Some(5), &mut out).unwrap();
    assert!(out.chunks(9).all(|c| c == plain));
    // Flips on but no seed (plain `batch`): no flips.
    let flipping = base.clone().with_flips(true);
    assert!(flipping.flips());
    flipping.batch(&idx, &mut out).unwrap();
    assert!(out.chunks(9).all(|c| c == plain));
    // Flips on with a seed: each image is plain or mirrored, about half of each, deterministic.
    flipping.batch_with(&idx, Some(5), &mut out).unwrap();
    let flipped: Vec<bool> = out
        .chunks(9)
        .map(|c| {
            assert!(c == plain || c == mirrored);
            c == mirrored
        })
        .collect();
    let k = flipped.iter().filter(|&&f| f).count();
    assert!((16..=48).contains(&k), "{k} of {n} flipped");
    let mut again = vec![0.0; n * 9];
    flipping.batch_with(&idx, Some(5), &mut again).unwrap();
    assert_eq!(out, again);
    flipping.batch_with(&idx, Some(6), &mut again).unwrap();
    assert_ne!(out, again, "another seed, other flips");

    // With odd padding the whole padded row mirrors.
    let padded = flipping.pad_to(4).unwrap();
    let mut out = vec![0.0; n * 16];
    padded.batch_with(&idx, Some(5), &mut out).unwrap();
    let p = get(&padded, 0);
    let pm: Vec<f32> = p.chunks(4).flat_map(|r| r.iter().rev().copied()).collect();
    for (c, &f) in out.chunks(16).zip(&flipped) {
        assert_eq!(c, if f { &pm[..] } else { &p[..] });
    }
}

/// Draws `batches` batches of `size`, returning the concatenated indices and seeds.
fn draw(b: &mut Batcher, batches: usize, size: usize) -> (Vec<usize>, Vec<u64>) {
    let mut idx = Vec::new();
    let mut seeds = Vec::new();
    for _ in 0..batches {
        let batch = b.next_batch(size);
        assert_eq!(batch.indices.len(), size);
        idx.extend(batch.indices);
        seeds.push(batch.seed);
    }
    (idx, seeds)
}

#[test]
fn batcher_visits_every_index_once_per_epoch() {
    for (len, size) in [(10, 3), (7, 7), (5, 1), (13, 20), (1, 4)] {
        let mut b = Batcher::new(len, 42).unwrap();
        let epochs = 6;
        let total = len * epochs;
        let batches = total.div_ceil(size);
        let (stream, _) = draw(&mut b, batches, size);
        for (e, chunk) in stream[..total].chunks(len).enumerate() {
            let mut sorted = chunk.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..len).collect::<Vec<_>>(), "len {len} epoch {e}");
        }
        assert_eq!(b.epoch() as usize, batches * size / len);
        assert_eq!(b.position(), batches * size % len);
    }
    // Orders differ between epochs and between seeds, and repeat for the same seed.
    let order = |seed, epoch| {
        Batcher::from_state(BatcherState {
            seed,
            epoch,
            position: 0,
            len: 1000,
        })
        .unwrap()
        .epoch_order()
        .to_vec()
    };
    assert_eq!(order(1, 0), order(1, 0));
    assert_ne!(order(1, 0), order(1, 1));
    assert_ne!(order(1, 0), order(2, 0));
    assert_ne!(order(1, 0), (0..1000).collect::<Vec<_>>());
    let (a, sa) = draw(&mut Batcher::new(100, 9).unwrap(), 30, 16);
    let (b, sb) = draw(&mut Batcher::new(100, 9).unwrap(), 30, 16);
    assert_eq!((a, &sa), (b, &sb));
    let mut uniq = sa.clone();
    uniq.sort_unstable();
    uniq.dedup();
    assert_eq!(uniq.len(), sa.len(), "every batch has its own seed");
}

#[test]
fn batcher_resumes_exactly_from_saved_state() {
    let mut b = Batcher::new(37, 7).unwrap();
    draw(&mut b, 11, 8); // crosses two epoch ends
    let saved = serde_json::to_string(&b.state()).unwrap();
    let (rest, seeds) = draw(&mut b, 9, 8);

    let state: BatcherState = serde_json::from_str(&saved).unwrap();
    assert_eq!(state.len, 37);
    assert_eq!((state.epoch, state.position), (2, 88 - 74));
    let mut resumed = Batcher::resume(state, 37).unwrap();
    assert_eq!(draw(&mut resumed, 9, 8), (rest, seeds));
    assert_eq!(resumed.state(), b.state());

    let r = Batcher::resume(state, 36);
    assert!(
        matches!(&r, Err(ddpm::Error::Data { what, .. }) if what == "batch sampler state"),
        "{r:?}"
    );
    let e = err_string(r);
    assert!(e.contains("saved for 37 images") && e.contains("36"), "{e}");
    let bad = BatcherState {
        position: 38,
        ..state
    };
    assert!(err_string(Batcher::from_state(bad)).contains("position 38"));
    let end = Batcher::from_state(BatcherState {
        position: 37,
        ..state
    })
    .unwrap();
    assert_eq!((end.epoch(), end.position()), (state.epoch + 1, 0));
    let e = err_string(Batcher::new(0, 1));
    assert!(
        e.contains("batch sampler: the dataset has no images"),
        "{e}"
    );
    // Large seeds survive JSON exactly.
    let s = BatcherState {
        seed: u64::MAX - 3,
        epoch: 1 << 40,
        position: 5,
        len: 60000,
    };
    let back: BatcherState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn source_names_parse() {
    for s in Source::ALL {
        assert_eq!(s.name().parse::<Source>().unwrap(), s);
        assert_eq!(s.to_string(), s.name());
    }
    assert_eq!("Fashion-MNIST".parse::<Source>().unwrap(), Source::Fashion);
    assert_eq!(
        (Source::Emoji.channels(), Source::Emoji.native_size()),
        (3, 32)
    );
    assert_eq!(
        (Source::Mnist.channels(), Source::Mnist.native_size()),
        (1, 28)
    );
    let r = "cifar".parse::<Source>();
    assert!(
        matches!(
            r,
            Err(ddpm::Error::Setting {
                name: "dataset",
                ..
            })
        ),
        "{r:?}"
    );
    assert!(err_string(r).contains("unknown dataset `cifar`"));
}

// ---- Real datasets (only when fetched) ----

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn present(path: &Path, what: &str) -> bool {
    let ok = path.exists();
    if !ok {
        eprintln!(
            "skipping the real {what} test: {} missing (run `bash scripts/fetch_data.sh`)",
            path.display()
        );
    }
    ok
}

fn mean(ds: &Images) -> f64 {
    ds.pixels().iter().map(|&v| v as f64).sum::<f64>() / ds.pixels().len() as f64
}

#[test]
fn real_mnist() {
    let dir = data_dir().join("mnist");
    if !present(&dir, "MNIST") {
        return;
    }
    let ds = Source::Mnist.load(&data_dir()).unwrap();
    assert_eq!((ds.len(), ds.channels(), ds.size()), (60000, 1, 28));
    let labels = ds.labels().unwrap();
    assert_eq!(
        &labels[..5],
        &[5, 0, 4, 1, 9],
        "the well-known first MNIST labels"
    );
    assert!(labels.iter().all(|&l| l < 10));
    let m = mean(&ds) / 255.0;
    assert!((m - 0.1307).abs() < 0.001, "MNIST mean {m}");
    let test = mnist::load_split(&dir, Split::Test).unwrap();
    assert_eq!(test.len(), 10000);
    // Served padded to 32: the border is -1, the data in [-1, 1].
    let ds = ds.pad_to(32).unwrap();
    let mut x = vec![0.0; 4 * ds.image_len()];
    ds.batch(&[0, 1, 59998, 59999], &mut x).unwrap();
    assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
    assert!(x[..32].iter().all(|&v| v == -1.0));
    assert!(x.contains(&1.0));
}

#[test]
fn real_fashion_mnist() {
    let local = data_dir().join("fashion-mnist");
    let dir = if local.exists() {
        local
    } else {
        PathBuf::from(fashion::SYSTEM_DIR)
    };
    if !present(&dir, "Fashion-MNIST") {
        return;
    }
    let ds = fashion::load(&dir).unwrap();
    assert_eq!((ds.len(), ds.channels(), ds.size()), (60000, 1, 28));
    let labels = ds.labels().unwrap();
    assert_eq!(labels[0], 9, "first Fashion-MNIST item is an ankle boot");
    let mut counts = [0usize; 10];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [6000; 10], "Fashion-MNIST is balanced");
    let m = mean(&ds) / 255.0;
    assert!((m - 0.2860).abs() < 0.001, "Fashion-MNIST mean {m}");
    assert_eq!(fashion::load_split(&dir, Split::Test).unwrap().len(), 10000);
}

#[test]
fn real_emoji() {
    let dir = data_dir().join("emoji");
    if !present(&dir.join("sheet-32.png"), "emoji") {
        return;
    }
    let ds = Source::Emoji.load(&data_dir()).unwrap();
    assert_eq!((ds.channels(), ds.size()), (3, 32));
    assert!((1800..=1911).contains(&ds.len()), "{} emoji", ds.len());
    // Composited on white: most top-left corners are white.
    let white = (0..ds.len())
        .filter(|&i| ds.image(i).unwrap()[0] == 255)
        .count();
    assert!(
        white * 10 > ds.len() * 8,
        "{white} of {} corners white",
        ds.len()
    );
    let all = emoji::load_with(
        dir.join("sheet-32.png"),
        Some(dir.join("emoji.json").as_path()),
        &EmojiOptions {
            skin_tones: true,
            ..EmojiOptions::default()
        },
    )
    .unwrap();
    let sheet_only = emoji::load(dir.join("sheet-32.png"), None).unwrap();
    assert!(
        all.len() > 2 * ds.len() - 100,
        "{} with skin tones",
        all.len()
    );
    assert_eq!(
        sheet_only.len(),
        all.len(),
        "every non-empty cell is listed in emoji.json"
    );
    eprintln!(
        "emoji: {} base, {} with skin tones, mean {:.1}",
        ds.len(),
        all.len(),
        mean(&ds)
    );
}
