//! NumPy `.npy` files (format versions 1–3): read little-endian C-order f32, f64 or f16 arrays
//! as f32; write f32 (`<f4`, version 1 unless the header needs version 2).

use std::path::Path;

use crate::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

fn bad(source: &str, msg: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{source}: {msg}"))
}

/// Reads an `.npy` file: (shape, data) with data in C order.
pub fn read(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<f32>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(&bytes, &path.display().to_string())
}

/// Parses `.npy` bytes; `source` names the file in errors.
pub fn from_bytes(bytes: &[u8], source: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad(source, "not a .npy file (missing \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad(source, "truncated .npy header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(source, format!("unsupported .npy format version {v}"))),
    };
    let header = bytes
        .get(start..start + hlen)
        .ok_or_else(|| bad(source, "truncated .npy header"))?;
    let header =
        std::str::from_utf8(header).map_err(|_| bad(source, "the .npy header is not text"))?;
    let descr = dict_value(header, "descr")
        .and_then(|v| py_str(v))
        .ok_or_else(|| bad(source, format!("no 'descr' in .npy header {header:?}")))?;
    let fortran = dict_value(header, "fortran_order").ok_or_else(|| {
        bad(
            source,
            format!("no 'fortran_order' in .npy header {header:?}"),
        )
    })?;
    if fortran.starts_with("True") {
        return Err(bad(
            source,
            "fortran_order arrays are not supported (save a C-contiguous array, e.g. np.ascontiguousarray)",
        ));
    }
    let shape_text = dict_value(header, "shape")
        .ok_or_else(|| bad(source, format!("no 'shape' in .npy header {header:?}")))?;
    let shape = parse_shape(shape_text).ok_or_else(|| {
        bad(
            source,
            format!("cannot parse shape in .npy header {header:?}"),
        )
    })?;
    let width = match descr {
        "<f4" => 4,
        "<f8" => 8,
        "<f2" => 2,
        d => {
            return Err(bad(
                source,
                format!("unsupported dtype '{d}' (supported: little-endian float32 '<f4', float64 '<f8', float16 '<f2')"),
            ))
        }
    };
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(source, format!("shape {shape:?} is too large")))?;
    let data = &bytes[start + hlen..];
    if n.checked_mul(width) != Some(data.len()) {
        return Err(bad(
            source,
            format!(
                "shape {shape:?} of '{descr}' needs {} data bytes, the file has {} (truncated or corrupt?)",
                n as u128 * width as u128,
                data.len()
            ),
        ));
    }
    let values = match width {
        4 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        8 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        _ => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    };
    Ok((shape, values))
}

/// The text after `'key':` in a Python dict literal.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_sq = format!("'{key}'");
    let pat_dq = format!("\"{key}\"");
    let i = header
        .find(&pat_sq)
        .map(|i| i + pat_sq.len())
        .or_else(|| header.find(&pat_dq).map(|i| i + pat_dq.len()))?;
    let rest = header[i..].trim_start().strip_prefix(':')?;
    Some(rest.trim_start())
}

/// A quoted Python string at the start of `s`.
fn py_str(s: &str) -> Option<&str> {
    let q = s.chars().next()?;
    if q != '\'' && q != '"' {
        return None;
    }
    let end = s[1..].find(q)?;
    Some(&s[1..1 + end])
}

/// A Python tuple of ints at the start of `s`: `()`, `(3,)`, `(2, 3)`.
fn parse_shape(s: &str) -> Option<Vec<usize>> {
    let inner = s.strip_prefix('(')?;
    let inner = &inner[..inner.find(')')?];
    inner
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.trim_end_matches('L').parse().ok())
        .collect()
}

/// Encodes an f32 C-order array as `.npy` bytes (`<f4`).
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(Error::Invalid(format!(
            "npy: shape {shape:?} needs {n} values, got {}",
            data.len()
        )));
    }
    let dims = match shape {
        [] => String::new(),
        [d] => format!("{d},"),
        _ => shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Pad with spaces so the data starts at a multiple of 64 bytes; end with '\n'.
    let v1 = (10 + dict.len() + 1).div_ceil(64) * 64 - 10 <= u16::MAX as usize;
    let prefix = if v1 { 10 } else { 12 };
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    let hlen = total - prefix;
    let mut out = Vec::with_capacity(total + 4 * data.len());
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Writes an f32 C-order array to an `.npy` file.
pub fn write(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(shape, data)?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of a header + data as NumPy writes them.
    fn npy(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn roundtrip_shapes() {
        for shape in [vec![], vec![5], vec![2, 3], vec![2, 1, 3, 4], vec![0, 3]] {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let bytes = to_bytes(&shape, &data).unwrap();
            assert_eq!(bytes.len() % 64, (4 * n) % 64, "header aligned to 64");
            assert_eq!(from_bytes(&bytes, "x").unwrap(), (shape, data));
        }
        assert!(to_bytes(&[2, 2], &[1.0]).is_err());
    }

    #[test]
    fn reads_f64_f16_and_v2() {
        let d64: Vec<u8> = [1.5f64, -2.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b = npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n",
            &d64,
        );
        assert_eq!(from_bytes(&b, "x").unwrap(), (vec![2], vec![1.5, -2.25]));
        let d16: Vec<u8> = [0.5f32, 3.0]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let b = npy(
            2,
            "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 2), }\n",
            &d16,
        );
        assert_eq!(from_bytes(&b, "x").unwrap(), (vec![1, 2], vec![0.5, 3.0]));
    }

    #[test]
    fn clear_errors() {
        let err = |b: &[u8]| from_bytes(b, "data/x.npy").unwrap_err().to_string();
        let e = err(&npy(
            1,
            "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }\n",
            &[0; 8],
        ));
        assert!(e.contains("data/x.npy") && e.contains("'<i8'"), "{e}");
        let e = err(&npy(
            1,
            "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n",
            &[0; 4],
        ));
        assert!(e.contains("'>f4'"), "{e}");
        let e = err(&npy(
            1,
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n",
            &[0; 16],
        ));
        assert!(e.contains("fortran_order"), "{e}");
        let e = err(&npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n",
            &[0; 8],
        ));
        assert!(e.contains("truncated"), "{e}");
        let e = err(b"hello world, not numpy");
        assert!(e.contains("not a .npy file"), "{e}");
        let mut b = to_bytes(&[4], &[1.0; 4]).unwrap();
        b.truncate(20);
        assert!(err(&b).contains("truncated"));
    }
}
