//! Training data for the DDPM trainer: MNIST, Fashion-MNIST and Noto colour emoji held in memory
//! as u8 images and served as NCHW f32 batches in [-1, 1] (`x / 127.5 - 1`).
//!
//! Fetch the files with `bash scripts/fetch_data.sh` (into the git-ignored `data/`). The
//! byte-slice parsers ([`idx::parse`], [`mnist::from_idx_bytes`], [`emoji::from_bytes`]) work on
//! every target, wasm32 included; the path-based loaders are native only.
//!
//! ```no_run
//! use ddpm::data::{Batcher, Dataset, Source};
//! let ds = Source::Mnist.load("data".as_ref())?.pad_to(32)?; // [60000, 1, 32, 32]
//! let mut sampler = Batcher::new(ds.len(), 0)?;
//! let mut x = vec![0f32; 64 * ds.image_len()];
//! let b = sampler.next_batch(64);
//! ds.batch_with(&b.indices, Some(b.seed), &mut x)?; // NCHW f32 in [-1, 1]
//! # Ok::<(), ddpm::Error>(())
//! ```

pub mod batcher;
pub mod emoji;
pub mod examples;
pub mod fashion;
pub mod idx;
pub mod mnist;

pub use batcher::{Batch, Batcher, BatcherState};

use crate::{Error, Result};

/// What to run when a data file is missing.
pub const FETCH_HINT: &str = "fetch the datasets with `bash scripts/fetch_data.sh`";

/// Maps a stored byte to the model's range: `v / 127.5 - 1` (0 → -1, 255 → 1).
#[inline]
pub fn to_unit(v: u8) -> f32 {
    v as f32 / 127.5 - 1.0
}

/// Inverse of [`to_unit`] for viewing: `(x + 1) * 127.5`, rounded and clamped to 0..=255.
#[inline]
pub fn to_u8(x: f32) -> u8 {
    ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
}

/// A set of square images the trainer draws batches from.
pub trait Dataset {
    /// Number of images.
    fn len(&self) -> usize;
    /// True when there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Channels per image (1 for MNIST, 3 for emoji).
    fn channels(&self) -> usize;
    /// Height = width of the images served (after any padding).
    fn size(&self) -> usize;
    /// Floats per served image: `channels * size * size`.
    fn image_len(&self) -> usize {
        self.channels() * self.size() * self.size()
    }
    /// Writes images `indices` into `out` as NCHW f32 in [-1, 1]; `out.len()` must be
    /// `indices.len() * image_len()`. No augmentation.
    fn batch(&self, indices: &[usize], out: &mut [f32]) -> Result<()> {
        self.batch_with(indices, None, out)
    }
    /// As [`Dataset::batch`]; with `flip_seed = Some(s)` and flips enabled on the dataset, each
    /// image is mirrored horizontally with probability 1/2, decided by `s` and its batch position
    /// (pass [`Batch::seed`] so a resumed run sees the same flips).
    fn batch_with(&self, indices: &[usize], flip_seed: Option<u64>, out: &mut [f32]) -> Result<()>;
}

/// Which split of an IDX dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// 60000 training images.
    Train,
    /// 10000 test images.
    Test,
}

impl Split {
    /// File-name prefix: `train` or `t10k`.
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// The datasets `scripts/fetch_data.sh` provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// MNIST digits, 1×28×28.
    Mnist,
    /// Fashion-MNIST, 1×28×28.
    Fashion,
    /// Noto colour emoji, 3×32×32 composited on white.
    Emoji,
}

impl Source {
    /// All sources.
    pub const ALL: [Source; 3] = [Source::Mnist, Source::Fashion, Source::Emoji];

    /// Short name: `mnist`, `fashion`, `emoji`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Mnist => "mnist",
            Source::Fashion => "fashion",
            Source::Emoji => "emoji",
        }
    }

    /// Channels of the stored images.
    pub fn channels(self) -> usize {
        match self {
            Source::Mnist | Source::Fashion => 1,
            Source::Emoji => 3,
        }
    }

    /// Stored height = width (before any [`Images::pad_to`]).
    pub fn native_size(self) -> usize {
        match self {
            Source::Mnist | Source::Fashion => 28,
            Source::Emoji => emoji::SIZE,
        }
    }

    /// Loads the training images from the layout `scripts/fetch_data.sh` writes under
    /// `data_dir` (normally `data`); Fashion-MNIST falls back to [`fashion::SYSTEM_DIR`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(self, data_dir: &std::path::Path) -> Result<Images> {
        match self {
            Source::Mnist => mnist::load(data_dir.join("mnist")),
            Source::Fashion => {
                let local = data_dir.join("fashion-mnist");
                if !idx::has_idx(&local, "train-images-idx3-ubyte")
                    && idx::has_idx(fashion::SYSTEM_DIR, "train-images-idx3-ubyte")
                {
                    fashion::load(fashion::SYSTEM_DIR)
                } else {
                    fashion::load(local)
                }
            }
            Source::Emoji => {
                let dir = data_dir.join("emoji");
                emoji::load(
                    dir.join("sheet-32.png"),
                    Some(dir.join("emoji.json").as_path()),
                )
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Source {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mnist" => Ok(Source::Mnist),
            "fashion" | "fashion-mnist" | "fashion_mnist" => Ok(Source::Fashion),
            "emoji" => Ok(Source::Emoji),
            _ => Err(Error::setting(
                "dataset",
                format!("unknown dataset `{s}`: expected mnist, fashion or emoji"),
            )),
        }
    }
}

/// `count` square u8 images, `[count, channels, native, native]` (NCHW), optionally with labels,
/// served padded to `size` (border value -1) and optionally with random horizontal flips.
#[derive(Clone, Debug)]
pub struct Images {
    name: String,
    count: usize,
    channels: usize,
    native: usize,
    size: usize,
    pixels: Vec<u8>,
    labels: Option<Vec<u8>>,
    flips: bool,
}

impl Images {
    /// Wraps `pixels` = `[count, channels, native, native]` u8; `labels`, if any, one per image.
    pub fn new(
        name: impl Into<String>,
        channels: usize,
        native: usize,
        pixels: Vec<u8>,
        labels: Option<Vec<u8>>,
    ) -> Result<Self> {
        let name = name.into();
        let per = channels
            .checked_mul(native)
            .and_then(|v| v.checked_mul(native))
            .unwrap_or(0);
        if per == 0 {
            return Err(Error::data(
                name,
                format!("cannot hold images of {channels}×{native}×{native}"),
            ));
        }
        if pixels.is_empty() || !pixels.len().is_multiple_of(per) {
            return Err(Error::data(
                name,
                format!(
                    "{} bytes is not a positive multiple of one {channels}×{native}×{native} \
                     image ({per} bytes)",
                    pixels.len()
                ),
            ));
        }
        let count = pixels.len() / per;
        if let Some(l) = &labels {
            if l.len() != count {
                return Err(Error::data(
                    name,
                    format!("{} labels for {count} images", l.len()),
                ));
            }
        }
        Ok(Images {
            name,
            count,
            channels,
            native,
            size: native,
            pixels,
            labels,
            flips: false,
        })
    }

    /// Dataset name (for messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stored height = width, before padding.
    pub fn native_size(&self) -> usize {
        self.native
    }

    /// All stored pixels, `[len, channels, native, native]` u8.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Stored pixels of image `i` (`[channels, native, native]`), or `None` if out of range.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let per = self.channels * self.native * self.native;
        (i < self.count).then(|| &self.pixels[i * per..(i + 1) * per])
    }

    /// Class labels, one per image, where the source has them.
    pub fn labels(&self) -> Option<&[u8]> {
        self.labels.as_deref()
    }

    /// Serves the images centred in `size × size` with the background value -1 around them
    /// (e.g. 28 → 32 for a 32×32 model); `size` equal to the native size removes padding.
    pub fn pad_to(mut self, size: usize) -> Result<Self> {
        if size < self.native {
            return Err(Error::data(
                &self.name,
                format!(
                    "cannot pad {n}×{n} images to {size}×{size} (smaller)",
                    n = self.native
                ),
            ));
        }
        self.size = size;
        Ok(self)
    }

    /// Enables random horizontal flips in [`Dataset::batch_with`] (given a seed).
    pub fn with_flips(mut self, on: bool) -> Self {
        self.flips = on;
        self
    }

    /// Whether flips are enabled.
    pub fn flips(&self) -> bool {
        self.flips
    }

    /// Keeps only the first `n` images (e.g. to overfit a tiny set); `n` ≥ len keeps all.
    pub fn truncate(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(Error::data(&self.name, "cannot keep 0 images"));
        }
        if n < self.count {
            self.count = n;
            self.pixels
                .truncate(n * self.channels * self.native * self.native);
            if let Some(l) = &mut self.labels {
                l.truncate(n);
            }
        }
        Ok(self)
    }
}

impl Dataset for Images {
    fn len(&self) -> usize {
        self.count
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn size(&self) -> usize {
        self.size
    }

    fn batch_with(&self, indices: &[usize], flip_seed: Option<u64>, out: &mut [f32]) -> Result<()> {
        let (c, n, s) = (self.channels, self.native, self.size);
        let per_out = c * s * s;
        if out.len() != indices.len() * per_out {
            return Err(Error::data(
                format!("{} batch buffer", self.name),
                format!(
                    "holds {} floats, need {} = {} images × {c}×{s}×{s}",
                    out.len(),
                    indices.len() * per_out,
                    indices.len()
                ),
            ));
        }
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.count) {
            return Err(Error::data(
                &self.name,
                format!(
                    "image index {bad} out of range (it has {} images)",
                    self.count
                ),
            ));
        }
        let top = (s - n) / 2;
        let per_in = c * n * n;
        for (j, (&i, dst)) in indices
            .iter()
            .zip(out.chunks_exact_mut(per_out))
            .enumerate()
        {
            let flip =
                self.flips && flip_seed.is_some_and(|seed| batcher::mix64(seed, j as u64) & 1 == 1);
            if s != n {
                dst.fill(-1.0);
            }
            let src = &self.pixels[i * per_in..(i + 1) * per_in];
            for ch in 0..c {
                for y in 0..n {
                    let row = &src[(ch * n + y) * n..(ch * n + y + 1) * n];
                    let base = (ch * s + y + top) * s;
                    for (x, &v) in row.iter().enumerate() {
                        // Flip the whole padded row, so odd padding mirrors correctly too.
                        let xo = if flip { s - 1 - (x + top) } else { x + top };
                        dst[base + xo] = to_unit(v);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads a whole file; a missing file says how to fetch it.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::io(
                path,
                std::io::Error::new(e.kind(), format!("file not found; {FETCH_HINT}")),
            )
        } else {
            Error::io(path, e)
        }
    })
}
