//! IDX files (the MNIST format): big-endian header `00 00 08 ndim`, `ndim` u32 dimensions, then
//! the unsigned bytes. Files may be gzipped; that is detected by the gzip magic `1f 8b`.

use std::borrow::Cow;
use std::io::Read;

use crate::{Error, Result};

/// Largest decompressed size accepted from a gzipped file (guards against gzip bombs).
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// A parsed IDX tensor of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// Dimensions, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// Row-major bytes, `dims.iter().product()` of them.
    pub data: Vec<u8>,
}

/// True if `bytes` start with the gzip magic.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Returns `bytes` decompressed if gzipped, else unchanged; `what` names the file in errors.
pub fn maybe_gunzip<'a>(bytes: &'a [u8], what: &str) -> Result<Cow<'a, [u8]>> {
    if !is_gzip(bytes) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::data(what, format!("corrupt or truncated gzip data: {e}")))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(Error::data(
            what,
            format!("decompresses to more than {MAX_DECOMPRESSED} bytes"),
        ));
    }
    Ok(Cow::Owned(out))
}

/// Parses an IDX file (plain or gzipped) of unsigned bytes; `what` names the file in errors.
pub fn parse(bytes: &[u8], what: &str) -> Result<Idx> {
    let bytes = maybe_gunzip(bytes, what)?;
    let bad = |msg: String| Error::data(what, format!("not a valid IDX file: {msg}"));
    if bytes.len() < 4 {
        return Err(bad(format!(
            "{} bytes, shorter than the 4-byte magic",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "wrong magic number {:02x} {:02x} {:02x} {:02x} (expected 00 00 08 <ndim>)",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "data type 0x{:02x}; only 0x08 (unsigned byte) is supported",
            bytes[2]
        )));
    }
    let ndim = bytes[3] as usize;
    if !(1..=4).contains(&ndim) {
        return Err(bad(format!("{ndim} dimensions (expected 1 to 4)")));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(bad(format!(
            "truncated header: {} bytes, need {header} for {ndim} dimensions",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let have = bytes.len() - header;
    if have < n {
        return Err(bad(format!(
            "truncated: dimensions {dims:?} need {n} data bytes, found {have}"
        )));
    }
    if have > n {
        return Err(bad(format!(
            "{} unexpected bytes after the {n} data bytes of dimensions {dims:?}",
            have - n
        )));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Parses an image file: 3-D `[n, h, w]` with `h == w`; returns `(size, pixels)`.
pub fn parse_images(bytes: &[u8], what: &str) -> Result<(usize, usize, Vec<u8>)> {
    let idx = parse(bytes, what)?;
    match idx.dims[..] {
        [n, h, w] if h == w && h > 0 && n > 0 => Ok((n, h, idx.data)),
        _ => Err(Error::data(
            what,
            format!(
                "expected square images [n, h, h] with n, h > 0, found dimensions {:?}",
                idx.dims
            ),
        )),
    }
}

/// Parses a label file: 1-D `[n]`.
pub fn parse_labels(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    let idx = parse(bytes, what)?;
    match idx.dims[..] {
        [_] => Ok(idx.data),
        _ => Err(Error::data(
            what,
            format!("expected 1-D labels [n], found dimensions {:?}", idx.dims),
        )),
    }
}

/// Path of `stem` (e.g. `train-images-idx3-ubyte`) in `dir`, plain or `.gz`, also accepting
/// the `train-images.idx3-ubyte` spelling; `None` if absent.
#[cfg(not(target_arch = "wasm32"))]
pub fn find(dir: impl AsRef<std::path::Path>, stem: &str) -> Option<std::path::PathBuf> {
    let dir = dir.as_ref();
    let dotted = stem.replacen("-idx", ".idx", 1);
    [
        stem.to_string(),
        format!("{stem}.gz"),
        dotted.clone(),
        format!("{dotted}.gz"),
    ]
    .iter()
    .map(|name| dir.join(name))
    .find(|p| p.is_file())
}

/// True if [`find`] locates `stem` in `dir`.
#[cfg(not(target_arch = "wasm32"))]
pub fn has_idx(dir: impl AsRef<std::path::Path>, stem: &str) -> bool {
    find(dir, stem).is_some()
}

/// Reads `stem` from `dir` (plain or gzipped); a missing file names the path and the fetch
/// command.
#[cfg(not(target_arch = "wasm32"))]
pub fn read(dir: impl AsRef<std::path::Path>, stem: &str) -> Result<(std::path::PathBuf, Vec<u8>)> {
    let dir = dir.as_ref();
    match find(dir, stem) {
        Some(p) => {
            let bytes = super::read_file(&p)?;
            Ok((p, bytes))
        }
        None => Err(Error::io(
            dir.join(stem),
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("file not found (nor {stem}.gz); {}", super::FETCH_HINT),
            ),
        )),
    }
}

/// Loads split `split` of an MNIST-layout directory: images required, labels if present.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn load_dir(
    name: &str,
    dir: impl AsRef<std::path::Path>,
    split: super::Split,
) -> Result<super::Images> {
    let dir = dir.as_ref();
    let p = split.prefix();
    let (ipath, ibytes) = read(dir, &format!("{p}-images-idx3-ubyte"))?;
    let labels = match find(dir, &format!("{p}-labels-idx1-ubyte")) {
        Some(lpath) => Some((lpath.display().to_string(), super::read_file(&lpath)?)),
        None => None,
    };
    images_from_idx(
        name,
        (&ibytes, &ipath.display().to_string()),
        labels.as_ref().map(|(w, b)| (b.as_slice(), w.as_str())),
    )
}

/// Builds [`super::Images`] from an image IDX and an optional label IDX (`(bytes, name)` pairs).
pub(crate) fn images_from_idx(
    name: &str,
    images: (&[u8], &str),
    labels: Option<(&[u8], &str)>,
) -> Result<super::Images> {
    let (n, size, pixels) = parse_images(images.0, images.1)?;
    let labels = match labels {
        Some((bytes, what)) => {
            let l = parse_labels(bytes, what)?;
            if l.len() != n {
                return Err(Error::data(
                    what,
                    format!("{} labels but {} has {n} images", l.len(), images.1),
                ));
            }
            Some(l)
        }
        None => None,
    };
    super::Images::new(name, 1, size, pixels, labels)
}
