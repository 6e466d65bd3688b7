//! Noto colour emoji from the npm package `emoji-datasource-google`: the sheet
//! `img/google/sheets-clean/32.png` holds each emoji as a 32×32 RGBA image inside a 34×34 cell
//! (1-px padding); `emoji.json` gives each emoji's cell as `sheet_x` (column) / `sheet_y` (row).
//! Cells are composited on white and stored as 3×32×32 RGB; fully transparent cells are skipped.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::Images;
use crate::{Error, Result};

/// Where `scripts/fetch_data.sh` puts the sheet.
pub const DEFAULT_SHEET: &str = "data/emoji/sheet-32.png";
/// Where `scripts/fetch_data.sh` puts `emoji.json`.
pub const DEFAULT_JSON: &str = "data/emoji/emoji.json";
/// Emoji image size in the 32-px sheet.
pub const SIZE: usize = 32;

/// How to cut the sheet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmojiOptions {
    /// Cell pitch in pixels (34 for the 32-px sheet).
    pub cell: usize,
    /// Padding inside each cell before the image (1); the image is `cell - 2 * pad` square.
    pub pad: usize,
    /// With `emoji.json`: also take the skin-tone variants (≈ doubles the set, mostly
    /// recoloured duplicates).
    pub skin_tones: bool,
}

impl Default for EmojiOptions {
    fn default() -> Self {
        EmojiOptions {
            cell: SIZE + 2,
            pad: 1,
            skin_tones: false,
        }
    }
}

/// Alpha-blends a straight-alpha RGBA pixel over white: `c·a + 255·(1 − a)`, rounded.
#[inline]
pub fn composite_on_white(p: [u8; 4]) -> [u8; 3] {
    let a = p[3] as u32;
    let blend = |c: u8| ((c as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
    [blend(p[0]), blend(p[1]), blend(p[2])]
}

#[derive(Deserialize)]
struct Cell {
    sheet_x: usize,
    sheet_y: usize,
    #[serde(default)]
    has_img_google: Option<bool>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(flatten)]
    cell: Cell,
    #[serde(default)]
    skin_variations: Option<BTreeMap<String, Cell>>,
}

/// Cuts the emoji out of a sheet PNG; with `emoji_json`, only the cells it lists (in its
/// order), else every non-empty cell row by row.
pub fn from_bytes(png: &[u8], emoji_json: Option<&[u8]>, opts: &EmojiOptions) -> Result<Images> {
    cut(
        png,
        "emoji sheet PNG",
        emoji_json.map(|j| (j, "emoji.json")),
        opts,
    )
}

/// Loads the sheet (and `emoji.json` if given) with default [`EmojiOptions`].
#[cfg(not(target_arch = "wasm32"))]
pub fn load(
    sheet_png: impl AsRef<std::path::Path>,
    emoji_json: Option<&std::path::Path>,
) -> Result<Images> {
    load_with(sheet_png, emoji_json, &EmojiOptions::default())
}

/// Loads the sheet (and `emoji.json` if given) with `opts`.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_with(
    sheet_png: impl AsRef<std::path::Path>,
    emoji_json: Option<&std::path::Path>,
    opts: &EmojiOptions,
) -> Result<Images> {
    let sheet = sheet_png.as_ref();
    let png = super::read_file(sheet)?;
    let json = match emoji_json {
        Some(p) => Some((super::read_file(p)?, p.display().to_string())),
        None => None,
    };
    cut(
        &png,
        &sheet.display().to_string(),
        json.as_ref().map(|(b, w)| (b.as_slice(), w.as_str())),
        opts,
    )
}

fn cut(png: &[u8], what: &str, json: Option<(&[u8], &str)>, opts: &EmojiOptions) -> Result<Images> {
    let (w, h, rgba) = decode_rgba(png, what)?;
    let (cell, pad) = (opts.cell, opts.pad);
    if cell == 0 || 2 * pad >= cell {
        return Err(Error::setting(
            "emoji cell",
            format!("emoji cell {cell} px with padding {pad} px leaves no image"),
        ));
    }
    let size = cell - 2 * pad;
    if w % cell != 0 || h % cell != 0 {
        return Err(Error::data(
            what,
            format!("{w}×{h} px is not a whole number of {cell}-px cells"),
        ));
    }
    let (cols, rows) = (w / cell, h / cell);
    let cells: Vec<(usize, usize)> = match json {
        Some((bytes, jwhat)) => {
            let entries: Vec<Entry> = serde_json::from_slice(bytes).map_err(|e| {
                Error::data(
                    jwhat,
                    format!("not an emoji-datasource list (sheet_x/sheet_y per emoji): {e}"),
                )
            })?;
            let mut seen = HashSet::new();
            let mut cells = Vec::new();
            for e in &entries {
                let variants = e
                    .skin_variations
                    .iter()
                    .flat_map(|m| m.values())
                    .filter(|_| opts.skin_tones);
                for c in std::iter::once(&e.cell).chain(variants) {
                    if c.has_img_google == Some(false) {
                        continue;
                    }
                    if c.sheet_x >= cols || c.sheet_y >= rows {
                        return Err(Error::data(
                            jwhat,
                            format!(
                                "cell ({}, {}) lies outside the {cols}×{rows} grid of {what}",
                                c.sheet_x, c.sheet_y
                            ),
                        ));
                    }
                    if seen.insert((c.sheet_x, c.sheet_y)) {
                        cells.push((c.sheet_x, c.sheet_y));
                    }
                }
            }
            cells
        }
        None => (0..rows)
            .flat_map(|y| (0..cols).map(move |x| (x, y)))
            .collect(),
    };
    let plane = size * size;
    let mut pixels = Vec::with_capacity(cells.len() * 3 * plane);
    let mut img = vec![0u8; 3 * plane];
    for (cx, cy) in cells {
        let (x0, y0) = (cx * cell + pad, cy * cell + pad);
        let mut any = false;
        for y in 0..size {
            for x in 0..size {
                let o = ((y0 + y) * w + x0 + x) * 4;
                let p = [rgba[o], rgba[o + 1], rgba[o + 2], rgba[o + 3]];
                any |= p[3] != 0;
                let rgb = composite_on_white(p);
                for (ch, v) in rgb.into_iter().enumerate() {
                    img[ch * plane + y * size + x] = v;
                }
            }
        }
        if any {
            pixels.extend_from_slice(&img);
        }
    }
    if pixels.is_empty() {
        return Err(Error::data(
            what,
            format!("no non-transparent {size}×{size} emoji found"),
        ));
    }
    Images::new("emoji", 3, size, pixels, None)
}

/// Decodes a PNG to 8-bit RGBA: `(width, height, [h, w, 4] bytes)`.
fn decode_rgba(png: &[u8], what: &str) -> Result<(usize, usize, Vec<u8>)> {
    let bad = |e: png::DecodingError| Error::data(what, format!("not a valid PNG: {e}"));
    let mut dec = png::Decoder::new(std::io::Cursor::new(png));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().map_err(bad)?;
    let len = reader
        .output_buffer_size()
        .ok_or_else(|| Error::data(what, "PNG too large to decode"))?;
    let mut buf = vec![0u8; len];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    buf.truncate(info.buffer_size());
    let (w, h) = (info.width as usize, info.height as usize);
    if info.bit_depth != png::BitDepth::Eight {
        return Err(Error::data(
            what,
            format!("unsupported PNG bit depth {:?}", info.bit_depth),
        ));
    }
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        png::ColorType::GrayscaleAlpha => buf
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        other => {
            return Err(Error::data(
                what,
                format!("unsupported PNG colour type {other:?}"),
            ))
        }
    };
    if rgba.len() != w * h * 4 {
        return Err(Error::data(
            what,
            format!("decoded {} bytes for {w}×{h} RGBA", rgba.len()),
        ));
    }
    Ok((w, h, rgba))
}
