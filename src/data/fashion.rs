//! Fashion-MNIST (Zalando): 60000 train / 10000 test images, 1×28×28, 10 classes. Same IDX
//! layout as MNIST, gzipped, from the Debian package `dataset-fashion-mnist` ([`SYSTEM_DIR`]);
//! `scripts/fetch_data.sh` copies them to [`DEFAULT_DIR`].

use super::Images;
use crate::Result;

/// Where `scripts/fetch_data.sh` puts the files.
pub const DEFAULT_DIR: &str = "data/fashion-mnist";

/// Where the Debian package `dataset-fashion-mnist` installs them.
pub const SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Class names by label.
pub const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Builds the dataset from IDX bytes (plain or gzipped): images `[n, h, h]`, labels `[n]`.
pub fn from_idx_bytes(images: &[u8], labels: Option<&[u8]>) -> Result<Images> {
    super::idx::images_from_idx(
        "fashion",
        (images, "Fashion-MNIST images"),
        labels.map(|l| (l, "Fashion-MNIST labels")),
    )
}

/// Loads the training images (and labels if present) from `dir`.
#[cfg(not(target_arch = "wasm32"))]
pub fn load(dir: impl AsRef<std::path::Path>) -> Result<Images> {
    load_split(dir, super::Split::Train)
}

/// Loads one split from `dir` (`{train,t10k}-images-idx3-ubyte[.gz]`, labels optional).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_split(dir: impl AsRef<std::path::Path>, split: super::Split) -> Result<Images> {
    super::idx::load_dir("fashion", dir, split)
}

/// Loads the training images from [`DEFAULT_DIR`], else from [`SYSTEM_DIR`].
#[cfg(not(target_arch = "wasm32"))]
pub fn load_default() -> Result<Images> {
    if !super::idx::has_idx(DEFAULT_DIR, "train-images-idx3-ubyte")
        && super::idx::has_idx(SYSTEM_DIR, "train-images-idx3-ubyte")
    {
        load(SYSTEM_DIR)
    } else {
        load(DEFAULT_DIR)
    }
}
