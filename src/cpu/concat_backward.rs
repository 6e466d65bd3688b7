//! Reference for the gradient of channel concatenation (`ops::concat_backward`).

/// Splits dy [n, ca + cb, spatial] into (da [n, ca, spatial], db [n, cb, spatial]): the gradient
/// of `cpu::concat::concat_channels`.
pub fn concat_backward(
    dy: &[f32],
    n: usize,
    ca: usize,
    cb: usize,
    spatial: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (la, lb) = (ca * spatial, cb * spatial);
    assert_eq!(dy.len(), n * (la + lb), "concat_backward: dy length");
    let mut da = Vec::with_capacity(n * la);
    let mut db = Vec::with_capacity(n * lb);
    if la + lb > 0 {
        for row in dy.chunks(la + lb) {
            da.extend_from_slice(&row[..la]);
            db.extend_from_slice(&row[la..]);
        }
    }
    (da, db)
}
