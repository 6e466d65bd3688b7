//! The example images compiled into the crate (see assets/README.md): the page's forward view
//! and `ddpm loss` use them, so both see the same data without a download.

use super::{fashion, mnist, Dataset, Images, Source};
use crate::model::UNetConfig;
use crate::Result;

/// Eight MNIST test digits 0–7 (the first of each class in t10k), IDX.
const MNIST_IMAGES: &[u8] =
    include_bytes!("../../assets/examples/mnist-t10k-0to7-images-idx3-ubyte.gz");
const MNIST_LABELS: &[u8] =
    include_bytes!("../../assets/examples/mnist-t10k-0to7-labels-idx1-ubyte");

/// The first Fashion-MNIST test image of each class 0–9 (`scripts/make_examples.py`), IDX.
const FASHION_IMAGES: &[u8] =
    include_bytes!("../../assets/examples/fashion-t10k-0to9-images-idx3-ubyte.gz");
const FASHION_LABELS: &[u8] =
    include_bytes!("../../assets/examples/fashion-t10k-0to9-labels-idx1-ubyte");

/// The bundled MNIST digits with their labels.
pub fn mnist() -> Result<Images> {
    mnist::from_idx_bytes(MNIST_IMAGES, Some(MNIST_LABELS))
}

/// The bundled Fashion-MNIST images with their labels.
pub fn fashion() -> Result<Images> {
    super::idx::images_from_idx(
        "fashion",
        (FASHION_IMAGES, "Fashion-MNIST examples"),
        Some((FASHION_LABELS, "Fashion-MNIST example labels")),
    )
}

/// The dataset `config`'s model was trained on: its `ddpm_dataset`, else Fashion-MNIST when it
/// names Fashion-MNIST's classes, else MNIST for a 1×28×28 model (`None`: unknown).
pub fn dataset_of(config: &UNetConfig) -> Option<Source> {
    if let Some(name) = &config.ddpm_dataset {
        return name.parse().ok();
    }
    let fashion_names = config
        .ddpm_class_names
        .as_ref()
        .is_some_and(|n| n.iter().eq(fashion::CLASSES.iter()));
    let mnist_sized = config.in_channels == 1 && config.sample_hw() == Some((28, 28));
    match (fashion_names, mnist_sized) {
        (true, _) => Some(Source::Fashion),
        (false, true) => Some(Source::Mnist),
        _ => None,
    }
}

/// The bundled examples of `source` (emoji has none).
pub fn of(source: Source) -> Option<Result<Images>> {
    match source {
        Source::Mnist => Some(mnist()),
        Source::Fashion => Some(fashion()),
        Source::Emoji => None,
    }
}

/// All of `ds` as NCHW f32 in [−1, 1], with its shape `[N, C, H, W]`.
pub fn as_tensor(ds: &Images) -> Result<(Vec<f32>, [usize; 4])> {
    let n = ds.len();
    let mut x = vec![0.0; n * ds.image_len()];
    ds.batch(&(0..n).collect::<Vec<_>>(), &mut x)?;
    Ok((x, [n, ds.channels(), ds.size(), ds.size()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_examples_are_one_per_class() {
        let m = mnist().unwrap();
        assert_eq!(
            (m.len(), m.labels().unwrap()),
            (8, &[0, 1, 2, 3, 4, 5, 6, 7][..])
        );
        let f = fashion().unwrap();
        assert_eq!(f.len(), 10);
        assert_eq!(f.labels().unwrap(), &(0..10).collect::<Vec<u8>>()[..]);
        let (x, shape) = as_tensor(&f).unwrap();
        assert_eq!(shape, [10, 1, 28, 28]);
        assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn the_dataset_of_a_model() {
        let mut cfg = UNetConfig {
            in_channels: 1,
            sample_size: Some([28, 28]),
            ..UNetConfig::default()
        };
        assert_eq!(dataset_of(&cfg), Some(Source::Mnist));
        cfg.ddpm_class_names = Some(fashion::CLASSES.iter().map(|s| s.to_string()).collect());
        assert_eq!(dataset_of(&cfg), Some(Source::Fashion));
        cfg.ddpm_dataset = Some("emoji".into());
        assert_eq!(dataset_of(&cfg), Some(Source::Emoji));
        let other = UNetConfig {
            in_channels: 3,
            ..UNetConfig::default()
        };
        assert_eq!(dataset_of(&other), None);
    }
}
