//! NumPy `.npy` files (format versions 1–3): read little-endian f32, f64 or f16 arrays (C or
//! Fortran order) as C-order f32; write f32 (`<f4`, version 1 unless the header needs
//! version 2). The header is parsed as the Python dict literal it is, strictly.

use std::path::Path;

use crate::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

fn bad(source: &str, msg: impl std::fmt::Display) -> Error {
    Error::format("npy", source, msg.to_string())
}

/// Reads an `.npy` file: (shape, data) with data in C order.
pub fn read(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<f32>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(&bytes, &path.display().to_string())
}

/// Parses `.npy` bytes; `source` names the file in errors. Fortran-order arrays are
/// returned in C order.
pub fn from_bytes(bytes: &[u8], source: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad(source, "not a .npy file (missing \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (hlen, start): (usize, usize) = match major {
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
    let header = start
        .checked_add(hlen)
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| bad(source, "truncated .npy header"))?;
    let Header {
        descr,
        fortran_order,
        shape,
    } = parse_header(header, start).map_err(|e| bad(source, format!(".npy header: {e}")))?;
    let width = match descr.as_str() {
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
    let values: Vec<f32> = match width {
        4 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        8 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        _ => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    };
    let values = if fortran_order && shape.len() > 1 && !values.is_empty() {
        fortran_to_c(&shape, &values)
    } else {
        values
    };
    Ok((shape, values))
}

/// Reorders a column-major (Fortran) array of `shape` (`values.len()` = its non-zero product)
/// into row-major (C) order.
fn fortran_to_c(shape: &[usize], values: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(values.len());
    // Walk the C-order index (last axis fastest) and track its Fortran-order offset.
    let mut strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        strides[k] = strides[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; shape.len()];
    let mut offset = 0usize;
    for _ in 0..values.len() {
        out.push(values[offset]);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            offset += strides[k];
            if idx[k] < shape[k] {
                break;
            }
            offset -= strides[k] * shape[k];
            idx[k] = 0;
        }
    }
    out
}

/// The three entries of a `.npy` header.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the header: a Python dict literal with exactly the keys `'descr'` (a string),
/// `'fortran_order'` (`True`/`False`) and `'shape'` (a tuple of non-negative ints), each once,
/// padded with whitespace. Errors give the file offset of the problem (`base` is where the
/// header starts).
fn parse_header(text: &[u8], base: usize) -> std::result::Result<Header, String> {
    let mut p = Parser {
        s: text,
        i: 0,
        base,
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        if p.peek() == Some(b'}') {
            break;
        }
        let at = p.pos();
        let key = p.string()?;
        p.expect(b':')?;
        let dup = match key.as_str() {
            "descr" => descr.replace(p.string()?).is_some(),
            "fortran_order" => fortran.replace(p.boolean()?).is_some(),
            "shape" => shape.replace(p.tuple()?).is_some(),
            k => {
                return Err(format!(
                    "unexpected key {k:?} at byte {at} (a .npy header has exactly 'descr', \
                     'fortran_order' and 'shape')"
                ))
            }
        };
        if dup {
            return Err(format!("key {key:?} repeated at byte {at}"));
        }
        match p.peek() {
            Some(b',') => p.i += 1,
            Some(b'}') => break,
            _ => return Err(p.unexpected("',' or '}'")),
        }
    }
    p.expect(b'}')?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(p.unexpected("only whitespace after the dict"));
    }
    let missing = |k: &str| format!("no {k:?} key");
    Ok(Header {
        descr: descr.ok_or_else(|| missing("descr"))?,
        fortran_order: fortran.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
    })
}

/// A cursor over the header bytes for [`parse_header`].
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    base: usize,
}

impl Parser<'_> {
    fn pos(&self) -> usize {
        self.base + self.i
    }

    fn skip_ws(&mut self) {
        while self
            .s
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    /// The next non-whitespace byte (skipping to it).
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn unexpected(&mut self, wanted: &str) -> String {
        match self.peek() {
            Some(c) if c.is_ascii_graphic() => {
                format!(
                    "expected {wanted} at byte {}, found '{}'",
                    self.pos(),
                    c as char
                )
            }
            Some(c) => format!(
                "expected {wanted} at byte {}, found byte 0x{c:02x}",
                self.pos()
            ),
            None => format!(
                "expected {wanted} at byte {}, found the end of the header",
                self.pos()
            ),
        }
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{}'", c as char)))
        }
    }

    /// A quoted string without escapes (`'…'` or `"…"`, printable ASCII).
    fn string(&mut self) -> std::result::Result<String, String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(self.unexpected("a quoted string")),
        };
        let open = self.pos();
        self.i += 1;
        let begin = self.i;
        loop {
            match self.s.get(self.i) {
                Some(&c) if c == q => break,
                Some(&c) if (b' '..=b'~').contains(&c) && c != b'\\' => self.i += 1,
                Some(_) => {
                    return Err(format!(
                        "unsupported character in the string at byte {} (escapes and \
                         non-ASCII are not used by .npy headers)",
                        self.pos()
                    ))
                }
                None => return Err(format!("unterminated string starting at byte {open}")),
            }
        }
        let text = String::from_utf8_lossy(&self.s[begin..self.i]).into_owned();
        self.i += 1;
        Ok(text)
    }

    /// `True` or `False`.
    fn boolean(&mut self) -> std::result::Result<bool, String> {
        self.skip_ws();
        let rest = &self.s[self.i..];
        let ident = rest
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count();
        let value = match &rest[..ident] {
            b"True" => true,
            b"False" => false,
            _ => return Err(self.unexpected("True or False")),
        };
        self.i += ident;
        Ok(value)
    }

    /// A tuple of non-negative ints: `()`, `(3,)`, `(2, 3)`, `(2, 3,)` (Python 2's `3L` too).
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        let mut trailing_comma = false;
        loop {
            if self.peek() == Some(b')') {
                break;
            }
            dims.push(self.int()?);
            trailing_comma = false;
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    trailing_comma = true;
                }
                Some(b')') => break,
                _ => return Err(self.unexpected("',' or ')' in the shape")),
            }
        }
        if dims.len() == 1 && !trailing_comma {
            return Err(format!(
                "the shape at byte {} is a parenthesised int, not a tuple (write `(n,)`)",
                self.pos()
            ));
        }
        self.i += 1; // ')'
        Ok(dims)
    }

    /// A non-negative decimal int (no leading zeros, as in Python; an `L` suffix allowed).
    fn int(&mut self) -> std::result::Result<usize, String> {
        self.skip_ws();
        let at = self.pos();
        let digits = self.s[self.i..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(self.unexpected("a non-negative integer"));
        }
        let text = &self.s[self.i..self.i + digits];
        if digits > 1 && text[0] == b'0' {
            return Err(format!("integer with a leading zero at byte {at}"));
        }
        let value = text.iter().try_fold(0usize, |a, &c| {
            a.checked_mul(10)?.checked_add((c - b'0') as usize)
        });
        self.i += digits;
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        value.ok_or_else(|| {
            format!(
                "dimension at byte {at} does not fit in {} bits",
                usize::BITS
            )
        })
    }
}

/// Encodes an f32 C-order array as `.npy` bytes (`<f4`).
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(data.len()) {
        return Err(Error::format(
            "npy",
            "npy",
            format!(
                "shape {shape:?} needs {} values, got {}",
                n.map_or("too many".into(), |n| n.to_string()),
                data.len()
            ),
        ));
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
    use crate::testing::err_text;

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
        let e = err_text(to_bytes(&[2, 2], &[1.0]), "1 value for [2, 2]");
        assert!(e.contains("npy: shape [2, 2] needs 4 values, got 1"), "{e}");
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

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn fortran_order_is_read_into_c_order() {
        // np.asfortranarray(np.arange(6).reshape(2, 3)) stores 0 3 1 4 2 5.
        let b = npy(
            1,
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n",
            &f32_bytes(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]),
        );
        let want: Vec<f32> = (0..6).map(|i| i as f32).collect();
        assert_eq!(from_bytes(&b, "x").unwrap(), (vec![2, 3], want));
        // 3-D: element (i, j, k) of shape (2, 3, 4) sits at i + 2j + 6k in Fortran order.
        let (d0, d1, d2) = (2, 3, 4);
        let c_value = |i: usize, j: usize, k: usize| (100 * i + 10 * j + k) as f32;
        let mut fortran = vec![0.0; d0 * d1 * d2];
        for i in 0..d0 {
            for j in 0..d1 {
                for k in 0..d2 {
                    fortran[i + d0 * j + d0 * d1 * k] = c_value(i, j, k);
                }
            }
        }
        let b = npy(
            1,
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }\n",
            &f32_bytes(&fortran),
        );
        let (shape, got) = from_bytes(&b, "x").unwrap();
        assert_eq!(shape, vec![2, 3, 4]);
        let mut want = Vec::new();
        for i in 0..d0 {
            for j in 0..d1 {
                for k in 0..d2 {
                    want.push(c_value(i, j, k));
                }
            }
        }
        assert_eq!(got, want);
        // 1-D and empty arrays are the same in both orders.
        let b = npy(
            1,
            "{'descr': '<f4', 'fortran_order': True, 'shape': (0, 5), }\n",
            &[],
        );
        assert_eq!(from_bytes(&b, "x").unwrap(), (vec![0, 5], vec![]));
    }

    #[test]
    fn header_is_parsed_as_a_python_dict() {
        let ok = |dict: &str, n: usize| {
            from_bytes(&npy(1, dict, &f32_bytes(&vec![1.0; n])), "x")
                .unwrap_or_else(|e| panic!("{dict}: {e}"))
                .0
        };
        // Key order, quotes, whitespace, trailing commas, Python 2 longs.
        assert_eq!(
            ok(
                "{\"shape\":(2,3),\"fortran_order\":False,\"descr\":\"<f4\"}",
                6
            ),
            vec![2, 3]
        );
        assert_eq!(
            ok(
                "{ 'descr' : '<f4' ,\n'fortran_order' : False , 'shape' : ( 4 , ) }   \n",
                4
            ),
            vec![4]
        );
        assert_eq!(
            ok(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 1L)}",
                2
            ),
            vec![2, 1]
        );
        assert_eq!(
            ok("{'descr': '<f4', 'fortran_order': False, 'shape': ()}", 1),
            Vec::<usize>::new()
        );

        let bad = |dict: &str, needle: &str| {
            let e = from_bytes(&npy(1, dict, &[0; 64]), "data/x.npy")
                .unwrap_err()
                .to_string();
            assert!(e.contains("data/x.npy"), "{dict}: {e}");
            assert!(e.contains(needle), "{dict}: `{e}` should say {needle:?}");
        };
        // fortran_order must be the literal True/False (numpy rejects all of these).
        for v in ["'True'", "true", "1", "None", "Truex"] {
            bad(
                &format!("{{'descr': '<f4', 'fortran_order': {v}, 'shape': (4,), }}"),
                "expected True or False at byte 44",
            );
        }
        // A decoy key or value cannot stand in for the real one.
        bad(
            "{'descr': '<f4', 'note': \"'shape': (32, 1, 4, 4)\", 'fortran_order': False, 'shape': (4,)}",
            "unexpected key \"note\" at byte 27",
        );
        bad(
            "{'x': \"'descr': '<f2'\", 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}",
            "unexpected key \"x\" at byte 11",
        );
        bad(
            "{'descr': '<f4', 'descr': '<f2', 'fortran_order': False, 'shape': (4,)}",
            "key \"descr\" repeated at byte 27",
        );
        bad(
            "{'descr': '<f4', 'shape': (4,)}",
            "no \"fortran_order\" key",
        );
        bad(
            "{'fortran_order': False, 'shape': (4,)}",
            "no \"descr\" key",
        );
        bad(
            "{'descr': '<f4', 'fortran_order': False}",
            "no \"shape\" key",
        );
        bad(
            "{'descr': ['<f4'], 'fortran_order': False, 'shape': (4,)}",
            "expected a quoted string at byte 20",
        );
        bad(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4)}",
            "not a tuple",
        );
        bad(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,)}",
            "expected a non-negative integer at byte 61",
        );
        bad(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (04,)}",
            "leading zero at byte 61",
        );
        bad(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
            "does not fit",
        );
        bad(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4,)} x",
            "only whitespace after the dict at byte 66",
        );
        bad(
            "{'descr': '<f4' 'fortran_order': False, 'shape': (4,)}",
            "expected ',' or '}' at byte 26",
        );
        bad("{'descr': '<f4", "unterminated string starting at byte 20");
        bad(
            "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (4,)}",
            "unsupported character",
        );
    }
}
