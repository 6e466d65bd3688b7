//! Reference for `shaders/concat.wgsl`: concatenation along channels.

/// a [n, ca, spatial] ‖ b [n, cb, spatial] → [n, ca + cb, spatial] (torch.cat(dim=1)).
pub fn concat_channels(
    a: &[f32],
    b: &[f32],
    n: usize,
    ca: usize,
    cb: usize,
    spatial: usize,
) -> Vec<f32> {
    let (la, lb) = (ca * spatial, cb * spatial);
    assert_eq!(a.len(), n * la, "concat: a length");
    assert_eq!(b.len(), n * lb, "concat: b length");
    let mut out = Vec::with_capacity(a.len() + b.len());
    for i in 0..n {
        out.extend_from_slice(&a[i * la..(i + 1) * la]);
        out.extend_from_slice(&b[i * lb..(i + 1) * lb]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hand_checked() {
        // n 2, ca 1, cb 2, spatial 2.
        let a = [1.0, 2.0, 10.0, 20.0];
        let b = [3.0, 4.0, 5.0, 6.0, 30.0, 40.0, 50.0, 60.0];
        let y = super::concat_channels(&a, &b, 2, 1, 2, 2);
        let want = [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0,
        ];
        assert_eq!(y, want);
    }
}
