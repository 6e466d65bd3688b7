//! Images from tensors: a batch `[N, C, H, W]` in [−1, 1] laid out as a grid of RGBA pixels,
//! and their PNG / animated GIF encodings, shared by the CLI (files) and the page (canvas,
//! downloads).

use crate::error::{Error, Result};

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

/// `img` encoded as an 8-bit RGBA PNG.
pub fn png_bytes(img: &Rgba) -> Result<Vec<u8>> {
    let bad = |e: png::EncodingError| Error::format("PNG", "encoding PNG", e.to_string());
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, img.width as u32, img.height as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(bad)?;
    w.write_image_data(&img.pixels).map_err(bad)?;
    w.finish().map_err(bad)?;
    Ok(out)
}

/// `frames` (all the size of the first, at most 65,535 pixels a side) as a looping animated
/// GIF showing each frame for `delay_cs` hundredths of a second.
pub fn gif_bytes(frames: &[Rgba], delay_cs: u16) -> Result<Vec<u8>> {
    let first = frames
        .first()
        .ok_or_else(|| Error::format("GIF", "GIF", "needs at least one frame"))?;
    let side = |v: usize| {
        u16::try_from(v).map_err(|_| Error::format("GIF", "GIF", format!("side {v} exceeds 65535")))
    };
    let (w, h) = (side(first.width)?, side(first.height)?);
    let bad = |e: gif::EncodingError| Error::format("GIF", "encoding GIF", e.to_string());
    let mut out = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut out, w, h, &[]).map_err(bad)?;
        enc.set_repeat(gif::Repeat::Infinite).map_err(bad)?;
        for f in frames {
            if (f.width, f.height) != (first.width, first.height) {
                return Err(Error::format(
                    "GIF",
                    "GIF",
                    format!(
                        "frames differ in size: {}×{} and {}×{}",
                        first.width, first.height, f.width, f.height
                    ),
                ));
            }
            let mut pixels = f.pixels.clone();
            let mut frame = gif::Frame::from_rgba_speed(w, h, &mut pixels, 10);
            frame.delay = delay_cs;
            enc.write_frame(&frame).map_err(bad)?;
        }
    }
    Ok(out)
}

/// Hundredths of a second each trajectory frame shows.
pub const TRAJECTORY_FRAME_CS: u16 = 8;

/// Extra copies of the final sample at the end of a trajectory GIF, so it holds for a moment.
pub const TRAJECTORY_HOLD_FRAMES: usize = 10;

/// The trajectory x_T → x_0 as a looping GIF, the file `ddpm sample --gif` and the page's
/// export write: each frame is the `[n, c, h, w]` display bytes of one snapshot laid out on
/// `cols` columns, the last one held for [`TRAJECTORY_HOLD_FRAMES`] more frames.
pub fn trajectory_gif(frames: &[&[u8]], shape: [usize; 4], cols: usize) -> Result<Vec<u8>> {
    let mut imgs: Vec<Rgba> = frames
        .iter()
        .map(|f| grid(f, shape, cols, 2, |v| v))
        .collect();
    let last = imgs
        .last()
        .cloned()
        .ok_or_else(|| Error::format("GIF", "trajectory GIF", "no trajectory was captured"))?;
    imgs.extend(std::iter::repeat_n(last, TRAJECTORY_HOLD_FRAMES));
    gif_bytes(&imgs, TRAJECTORY_FRAME_CS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::err_text;

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

    #[test]
    fn png_and_gif_decode_back() {
        let x = [-1.0, 1.0, 0.0, 0.5];
        let img = grid(&x, [1, 1, 2, 2], 1, 0, to_byte);
        let png = png_bytes(&img).unwrap();
        let mut dec = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut buf = vec![0; dec.output_buffer_size().unwrap()];
        dec.next_frame(&mut buf).unwrap();
        assert_eq!(buf, img.pixels);

        let other = grid(&[0.0; 4], [1, 1, 2, 2], 1, 0, to_byte);
        let gif = gif_bytes(&[img.clone(), other], 8).unwrap();
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut dec = opts.read_info(std::io::Cursor::new(gif)).unwrap();
        let mut frames = 0;
        while let Some(f) = dec.read_next_frame().unwrap() {
            assert_eq!((f.width, f.height, f.delay), (2, 2, 8));
            if frames == 0 {
                assert_eq!(&f.buffer[..], &img.pixels[..]);
            }
            frames += 1;
        }
        assert_eq!(frames, 2);
        let r = gif_bytes(&[], 8);
        assert!(matches!(r, Err(Error::Format { format: "GIF", .. })));
        let e = err_text(r, "no frames");
        assert!(e.contains("GIF: needs at least one frame"), "{e}");
        let wide = grid(&[0.0; 6], [1, 1, 2, 3], 1, 0, to_byte);
        let e = err_text(gif_bytes(&[img, wide], 8), "frames of two sizes");
        assert!(e.contains("GIF: frames differ in size"), "{e}");
    }
}
