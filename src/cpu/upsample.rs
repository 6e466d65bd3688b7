//! Reference for `shaders/upsample.wgsl`: nearest-neighbour ×2 upsampling.

/// x [n, c, h, w] → [n, c, 2h, 2w] with out[.., y, x] = x[.., y / 2, x / 2].
pub fn upsample_nearest2x(x: &[f32], n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    assert_eq!(x.len(), n * c * h * w, "upsample: x length");
    let mut out = Vec::with_capacity(4 * x.len());
    for row in x.chunks(w.max(1)).take(n * c * h) {
        let wide: Vec<f32> = row.iter().flat_map(|&v| [v, v]).collect();
        out.extend_from_slice(&wide);
        out.extend_from_slice(&wide);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hand_checked() {
        // [[1, 2], [3, 4]] → 4×4 blocks.
        let y = super::upsample_nearest2x(&[1.0, 2.0, 3.0, 4.0], 1, 1, 2, 2);
        #[rustfmt::skip]
        let want = vec![
            1.0, 1.0, 2.0, 2.0,
            1.0, 1.0, 2.0, 2.0,
            3.0, 3.0, 4.0, 4.0,
            3.0, 3.0, 4.0, 4.0,
        ];
        assert_eq!(y, want);
    }
}
