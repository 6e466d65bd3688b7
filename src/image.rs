//! Images from tensors: a batch `[N, C, H, W]` in [−1, 1] laid out as a grid of RGBA pixels,
//! shared by the CLI (PNG/GIF files) and the page (canvas).

/// Pixels of a grid image, row-major RGBA.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgba {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Columns of the most square grid for `n` tiles.
pub fn grid_columns(n: usize) -> usize {
    (n as f64).sqrt().ceil().max(1.0) as usize
}

/// [−1, 1] ↦ [0, 255], clamped.
pub fn to_byte(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Lays out the `n` images of `x` (`[n, c, h, w]` flattened, c = 1 grey or 3 RGB; other c
/// show their first channel) on a grid of `cols` columns with `pad` pixels between tiles.
/// `value` maps each element to a byte (e.g. [`to_byte`] for floats).
pub fn grid<T: Copy>(
    x: &[T],
    shape: [usize; 4],
    cols: usize,
    pad: usize,
    value: impl Fn(T) -> u8,
) -> Rgba {
    let [n, c, h, w] = shape;
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let width = cols * w + (cols + 1) * pad;
    let height = rows * h + (rows + 1) * pad;
    let mut pixels = vec![0u8; width * height * 4];
    for px in pixels.chunks_exact_mut(4) {
        px.copy_from_slice(&[24, 24, 28, 255]);
    }
    for i in 0..n {
        let (gx, gy) = (pad + (i % cols) * (w + pad), pad + (i / cols) * (h + pad));
        let img = &x[i * c * h * w..(i + 1) * c * h * w];
        for y in 0..h {
            for xx in 0..w {
                let at = |ch: usize| value(img[(ch * h + y) * w + xx]);
                let rgb = if c == 3 {
                    [at(0), at(1), at(2)]
                } else {
                    let g = at(0);
                    [g, g, g]
                };
                let o = ((gy + y) * width + gx + xx) * 4;
                pixels[o..o + 3].copy_from_slice(&rgb);
            }
        }
    }
    Rgba {
        width,
        height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_tiles_and_maps_values() {
        // Two 1×2×2 images on 2 columns with 1 px padding → 7×4.
        let x = [-1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0];
        let g = grid(&x, [2, 1, 2, 2], 2, 1, to_byte);
        assert_eq!((g.width, g.height), (7, 4));
        let px = |x: usize, y: usize| &g.pixels[(y * g.width + x) * 4..(y * g.width + x) * 4 + 4];
        assert_eq!(px(1, 1), &[0, 0, 0, 255]);
        assert_eq!(px(2, 1), &[255, 255, 255, 255]);
        assert_eq!(px(1, 2), &[128, 128, 128, 255]);
        assert_eq!(px(4, 1), &[255, 255, 255, 255]);
        assert_eq!(px(0, 0), &[24, 24, 28, 255]);
    }

    #[test]
    fn rgb_channels_are_planes() {
        let x = [1.0, -1.0, -1.0]; // one red pixel
        let g = grid(&x, [1, 3, 1, 1], 1, 0, to_byte);
        assert_eq!(g.pixels, vec![255, 0, 0, 255]);
    }

    #[test]
    fn columns_are_square_ish() {
        assert_eq!(grid_columns(1), 1);
        assert_eq!(grid_columns(16), 4);
        assert_eq!(grid_columns(17), 5);
    }
}
