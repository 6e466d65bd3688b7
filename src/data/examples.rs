//! The example images compiled into the crate (see assets/README.md): the page's forward view
//! and `ddpm loss` use them, so both see the same data without a download.

use super::{mnist, Dataset, Images};
use crate::Result;

/// Eight MNIST test digits 0–7 (the first of each class in t10k), IDX.
const MNIST_IMAGES: &[u8] =
    include_bytes!("../../assets/examples/mnist-t10k-0to7-images-idx3-ubyte.gz");
const MNIST_LABELS: &[u8] =
    include_bytes!("../../assets/examples/mnist-t10k-0to7-labels-idx1-ubyte");

/// The bundled MNIST digits with their labels.
pub fn mnist() -> Result<Images> {
    mnist::from_idx_bytes(MNIST_IMAGES, Some(MNIST_LABELS))
}

/// All of `ds` as NCHW f32 in [−1, 1], with its shape `[N, C, H, W]`.
pub fn as_tensor(ds: &Images) -> Result<(Vec<f32>, [usize; 4])> {
    let n = ds.len();
    let mut x = vec![0.0; n * ds.image_len()];
    ds.batch(&(0..n).collect::<Vec<_>>(), &mut x)?;
    Ok((x, [n, ds.channels(), ds.size(), ds.size()]))
}
