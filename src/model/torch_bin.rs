//! PyTorch `.bin` weights — `torch.save` zip archives — read without running any of their code.
//!
//! A `torch.save` file is a zip archive (entries stored uncompressed) holding `<prefix>/data.pkl`,
//! a pickle of the saved object, and one `<prefix>/data/<key>` entry per tensor storage. Loading
//! the pickle with Python would call whatever functions it names, so this module instead
//! interprets the pickle opcodes itself, with an object model that can only build what a state
//! dict of tensors needs: strings, numbers, tuples, lists, dicts, and tensors from exactly these
//! globals:
//!
//! - `collections.OrderedDict` (the state dict itself and each tensor's empty backward hooks),
//! - `torch._utils._rebuild_tensor_v2` (a tensor: storage, offset, size, stride),
//! - `torch.FloatStorage`, `torch.HalfStorage`, `torch.BFloat16Storage`, `torch.DoubleStorage`.
//!
//! Any other global is refused, naming it (`posix.system`, `builtins.eval`, …), and nothing is
//! ever called. Tensors may have any strides (views such as transposes are materialised in
//! row-major order) within their storage. Every size read from the file is checked against the
//! bytes actually present before anything is allocated; a truncated or corrupt file is an
//! [`Error::Weights`] naming the problem, never a panic.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

use crate::{Error, Result};

/// A tensor read from the archive: name, shape, row-major f32 values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Reads the state dict (a `dict`/`OrderedDict` of name → tensor) pickled in a `torch.save`
/// archive: tensors in file order, f16/bf16/f64 converted to f32. `source` names the file in
/// errors.
pub fn read_state_dict(bytes: &[u8], source: &str) -> Result<Vec<NamedTensor>> {
    read_archive(bytes).map_err(|e| Error::Weights(format!("{source}: {e}")))
}

/// Internal errors are messages; [`read_state_dict`] prefixes the source.
type Res<T> = std::result::Result<T, String>;

/// The most dimensions a tensor may have (bounds what each tensor record copies).
const MAX_DIMS: usize = 32;
/// The most f32 values all tensors together may decode to, per byte of archive: tensors may
/// share a storage (tied weights) and f16 doubles in size, but never without bound.
const VALUES_PER_ARCHIVE_BYTE: usize = 2;

fn read_archive(bytes: &[u8]) -> Res<Vec<NamedTensor>> {
    let zip = Zip::parse(bytes)?;
    let prefix = zip.archive_prefix()?;
    if let Some(order) = zip.get(&format!("{prefix}byteorder")) {
        let order = zip.read(order)?;
        if order.as_ref() != b"little".as_slice() {
            return Err(format!(
                "the archive's byteorder is {:?}; only little-endian archives are supported",
                String::from_utf8_lossy(&order)
            ));
        }
    }
    let pkl_name = format!("{prefix}data.pkl");
    let pkl = zip.read(zip.get(&pkl_name).ok_or("no data.pkl")?)?;
    let mut machine = Machine::new(&pkl);
    let top = machine.run()?;
    machine.state_dict(
        top,
        |key| {
            let name = format!("{prefix}data/{key}");
            let entry = zip
                .get(&name)
                .ok_or_else(|| format!("storage `{key}` has no archive entry `{name}`"))?;
            zip.read(entry)
        },
        bytes.len().saturating_mul(VALUES_PER_ARCHIVE_BYTE),
    )
}

// ---------------------------------------------------------------------------------------------
// Zip archive (stored or deflated entries, zip64 records as torch writes them).

/// Little-endian integers at fixed offsets, `None` past the end.
fn le<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}
fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    le(b, at).map(u16::from_le_bytes)
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    le(b, at).map(u32::from_le_bytes)
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    le(b, at).map(u64::from_le_bytes)
}

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIR: u32 = 0x0605_4b50;
const ZIP64_END_OF_CENTRAL_DIR: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
/// Zip64 extended-information extra field.
const ZIP64_EXTRA: u16 = 0x0001;

/// One central-directory entry.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    flags: u16,
    method: u16,
    crc32: u32,
    compressed: u64,
    uncompressed: u64,
    local_offset: u64,
}

/// The entries of a zip archive held in memory.
struct Zip<'a> {
    bytes: &'a [u8],
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
}

fn to_usize(v: u64, what: &str) -> Res<usize> {
    usize::try_from(v).map_err(|_| format!("{what} {v} is too large"))
}

impl<'a> Zip<'a> {
    fn parse(bytes: &'a [u8]) -> Res<Self> {
        let corrupt = |what: &str| format!("corrupt zip archive: {what} (truncated file?)");
        let eocd = Self::find_end_record(bytes)?;
        let mut count = u64::from(u16_at(bytes, eocd + 10).ok_or_else(|| corrupt("end record"))?);
        let mut cd_size = u64::from(u32_at(bytes, eocd + 12).ok_or_else(|| corrupt("end record"))?);
        let mut cd_offset =
            u64::from(u32_at(bytes, eocd + 16).ok_or_else(|| corrupt("end record"))?);
        // torch always writes zip64 records; they hold the real values when the 32-bit ones
        // saturate.
        let locator = eocd.checked_sub(20);
        if let Some(loc) = locator.filter(|&l| u32_at(bytes, l) == Some(ZIP64_LOCATOR)) {
            let at = u64_at(bytes, loc + 8).ok_or_else(|| corrupt("zip64 locator"))?;
            let at = usize::try_from(at).map_err(|_| corrupt("zip64 locator"))?;
            if u32_at(bytes, at) != Some(ZIP64_END_OF_CENTRAL_DIR) {
                return Err(corrupt("zip64 end record not where its locator points"));
            }
            let field = |off| u64_at(bytes, at + off).ok_or_else(|| corrupt("zip64 end record"));
            count = field(32)?;
            cd_size = field(40)?;
            cd_offset = field(48)?;
        } else if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
            return Err(corrupt("zip64 sizes without a zip64 end record"));
        }
        let cd_start = usize::try_from(cd_offset).map_err(|_| corrupt("central directory"))?;
        let cd = usize::try_from(cd_size)
            .ok()
            .and_then(|n| bytes.get(cd_start..cd_start.checked_add(n)?))
            .ok_or_else(|| corrupt("central directory outside the file"))?;

        let mut entries = Vec::new();
        let mut by_name = HashMap::new();
        let mut at = 0usize;
        for _ in 0..count {
            let entry =
                Self::central_entry(cd, &mut at).ok_or_else(|| corrupt("central directory"))?;
            if by_name.insert(entry.name.clone(), entries.len()).is_some() {
                return Err(format!(
                    "zip archive holds `{}` twice",
                    entry.name.escape_debug()
                ));
            }
            entries.push(entry);
        }
        Ok(Zip {
            bytes,
            entries,
            by_name,
        })
    }

    /// The end-of-central-directory record: the last signature whose comment ends the file.
    fn find_end_record(bytes: &[u8]) -> Res<usize> {
        let last = bytes.len().checked_sub(22);
        let first = last.map_or(0, |l| l.saturating_sub(0xFFFF));
        let found = last.and_then(|last| {
            (first..=last).rev().find(|&at| {
                u32_at(bytes, at) == Some(END_OF_CENTRAL_DIR)
                    && u16_at(bytes, at + 20).map(|c| at + 22 + usize::from(c)) == Some(bytes.len())
            })
        });
        found.ok_or_else(|| {
            if bytes.first() == Some(&0x80) {
                "a legacy (pre-PyTorch 1.6) torch.save file, not a zip archive; only the zip \
                 format is supported (re-save it with a current torch, or as safetensors)"
                    .to_string()
            } else if bytes.starts_with(b"PK\x03\x04") {
                format!(
                    "corrupt zip archive: no end-of-central-directory record ({} bytes — truncated?)",
                    bytes.len()
                )
            } else {
                "not a torch.save zip archive".to_string()
            }
        })
    }

    /// Parses the central-directory entry at `*at`, advancing past it.
    fn central_entry(cd: &[u8], at: &mut usize) -> Option<Entry> {
        let h = *at;
        if u32_at(cd, h)? != CENTRAL_HEADER {
            return None;
        }
        let name_len = usize::from(u16_at(cd, h + 28)?);
        let extra_len = usize::from(u16_at(cd, h + 30)?);
        let comment_len = usize::from(u16_at(cd, h + 32)?);
        let name = cd.get(h + 46..h + 46 + name_len)?;
        let extra = cd.get(h + 46 + name_len..h + 46 + name_len + extra_len)?;
        *at = h + 46 + name_len + extra_len + comment_len;
        let mut entry = Entry {
            name: String::from_utf8_lossy(name).into_owned(),
            flags: u16_at(cd, h + 8)?,
            method: u16_at(cd, h + 10)?,
            crc32: u32_at(cd, h + 16)?,
            compressed: u64::from(u32_at(cd, h + 20)?),
            uncompressed: u64::from(u32_at(cd, h + 24)?),
            local_offset: u64::from(u32_at(cd, h + 42)?),
        };
        // Zip64 extra field: 64-bit values for exactly the 32-bit fields that saturate, in order.
        let mut x = 0;
        while x + 4 <= extra.len() {
            let id = u16_at(extra, x)?;
            let len = usize::from(u16_at(extra, x + 2)?);
            let data = extra.get(x + 4..x + 4 + len)?;
            if id == ZIP64_EXTRA {
                let mut values = data.chunks_exact(8).map(|c| u64_at(c, 0));
                for field in [
                    &mut entry.uncompressed,
                    &mut entry.compressed,
                    &mut entry.local_offset,
                ] {
                    if *field == 0xFFFF_FFFF {
                        *field = values.next()??;
                    }
                }
            }
            x += 4 + len;
        }
        Some(entry)
    }

    fn get(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// The folder holding `data.pkl` (`archive/`, `diffusion_pytorch_model/`, …), with its slash.
    fn archive_prefix(&self) -> Res<String> {
        let pickles: Vec<&str> = self
            .entries
            .iter()
            .filter_map(|e| e.name.strip_suffix("data.pkl"))
            .filter(|p| p.is_empty() || (p.ends_with('/') && p.matches('/').count() == 1))
            .collect();
        match pickles[..] {
            [prefix] => Ok(prefix.to_string()),
            [] => Err("no `data.pkl` in the zip archive (not a torch.save file?)".into()),
            _ => Err(format!(
                "the zip archive holds several pickles ({}); expected one torch.save archive",
                pickles
                    .iter()
                    .map(|p| format!("`{}data.pkl`", p.escape_debug()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The entry's bytes (borrowed when stored, inflated when deflated), CRC-checked.
    fn read(&self, e: &Entry) -> Res<Cow<'a, [u8]>> {
        let name = e.name.escape_debug();
        let corrupt =
            |what: &str| format!("zip entry `{name}`: {what} (truncated or corrupt file?)");
        if e.flags & 1 != 0 {
            return Err(format!("zip entry `{name}` is encrypted"));
        }
        let header = to_usize(e.local_offset, "local header offset")?;
        if u32_at(self.bytes, header) != Some(LOCAL_HEADER) {
            return Err(corrupt("no local header at its offset"));
        }
        let name_len =
            usize::from(u16_at(self.bytes, header + 26).ok_or_else(|| corrupt("header"))?);
        let extra_len =
            usize::from(u16_at(self.bytes, header + 28).ok_or_else(|| corrupt("header"))?);
        let start = header + 30 + name_len + extra_len;
        if self.bytes.get(header + 30..header + 30 + name_len) != Some(e.name.as_bytes()) {
            return Err(corrupt("local header names another entry"));
        }
        let raw = usize::try_from(e.compressed)
            .ok()
            .and_then(|n| self.bytes.get(start..start.checked_add(n)?))
            .ok_or_else(|| corrupt(&format!("{} bytes past the end of the file", e.compressed)))?;
        let data = match e.method {
            0 if e.uncompressed == e.compressed => Cow::Borrowed(raw),
            0 => return Err(corrupt("stored entry with two different sizes")),
            8 => {
                // Deflate expands at most ~1032:1; a larger claimed size is corrupt. The output
                // grows only as inflation produces it.
                if e.uncompressed > e.compressed.saturating_mul(1032).saturating_add(64) {
                    return Err(corrupt("impossible deflate ratio"));
                }
                let mut out = Vec::new();
                flate2::read::DeflateDecoder::new(raw)
                    .take(e.uncompressed)
                    .read_to_end(&mut out)
                    .map_err(|err| corrupt(&format!("inflate failed: {err}")))?;
                if out.len() as u64 != e.uncompressed {
                    return Err(corrupt("inflated size differs from the directory's"));
                }
                Cow::Owned(out)
            }
            m => {
                return Err(format!(
                    "zip entry `{name}` uses compression method {m}; only stored (0) and \
                     deflate (8) are supported"
                ))
            }
        };
        let mut crc = flate2::Crc::new();
        crc.update(&data);
        if crc.sum() != e.crc32 {
            return Err(corrupt("CRC-32 mismatch"));
        }
        Ok(data)
    }
}

// ---------------------------------------------------------------------------------------------
// Restricted pickle machine.

/// Element type of a storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dtype {
    F32,
    F16,
    BF16,
    F64,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }

    /// Decodes little-endian elements to f32.
    fn decode(self, bytes: &[u8], out: &mut Vec<f32>) {
        match self {
            Dtype::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            Dtype::F16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            Dtype::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            Dtype::F64 => out.extend(bytes.chunks_exact(8).map(|b| {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            })),
        }
    }
}

/// The only globals a pickle may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    Storage(Dtype),
}

impl Global {
    fn lookup(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch", "FloatStorage") => Global::Storage(Dtype::F32),
            ("torch", "HalfStorage") => Global::Storage(Dtype::F16),
            ("torch", "BFloat16Storage") => Global::Storage(Dtype::BF16),
            ("torch", "DoubleStorage") => Global::Storage(Dtype::F64),
            _ => return None,
        })
    }
}

/// Names of the allowed globals, for the refusal message.
const ALLOWED: &str = "collections.OrderedDict, torch._utils._rebuild_tensor_v2, \
                       torch.{Float,Half,BFloat16,Double}Storage";

/// A stack or memo value. Compound values live in [`Machine::objects`] and are referenced by
/// index, so copying a value is cheap and no structure is ever deep or cyclic in Rust terms.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Obj(usize),
}

/// A storage named by a persistent id: `('storage', torch.XStorage, key, location, numel)`.
#[derive(Clone, Debug)]
struct StorageRef {
    dtype: Dtype,
    /// Object index of the key string (`data/<key>` in the archive).
    key: usize,
    numel: u64,
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, …)`, not yet read from the storage.
#[derive(Clone, Debug)]
struct TensorRef {
    storage: StorageRef,
    offset: u64,
    size: Vec<u64>,
    stride: Vec<u64>,
}

#[derive(Debug)]
enum Object {
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// `dict` or `OrderedDict`: pairs in insertion order (duplicates resolved at the end).
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
    /// A global outside the allowlist, or whatever calling or building one would have made.
    Refused,
}

/// Pickle interpreter over `code`; see the module docs for what it can build.
struct Machine<'a> {
    code: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objects: Vec<Object>,
    /// Disallowed globals seen (`module.name`), in order, without repeats.
    refused: Vec<String>,
}

impl<'a> Machine<'a> {
    fn new(code: &'a [u8]) -> Self {
        Machine {
            code,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            objects: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// Interprets up to STOP and returns the pickled object. Disallowed globals take precedence
    /// over any other error, so a hostile pickle is always reported as such.
    fn run(&mut self) -> Res<Value> {
        let result = self.execute();
        if !self.refused.is_empty() {
            let names: Vec<String> = self.refused.iter().map(|n| format!("`{n}`")).collect();
            return Err(format!(
                "refusing to load: the pickle (data.pkl) calls {}, which {} not among the globals \
                 a state dict of tensors uses ({ALLOWED}); nothing was executed",
                names.join(", "),
                if names.len() == 1 { "is" } else { "are" }
            ));
        }
        result.map_err(|e| format!("data.pkl: {e}"))
    }

    fn execute(&mut self) -> Res<Value> {
        loop {
            let at = self.pos;
            let op = self.take(1)?[0];
            let r = self.step(op);
            match r {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => return Err(format!("at byte {at} (opcode 0x{op:02x}): {e}")),
            }
        }
    }

    /// Executes one opcode; `Some` at STOP.
    fn step(&mut self, op: u8) -> Res<Option<Value>> {
        match op {
            0x80 => {
                // PROTO
                let v = self.take(1)?[0];
                if !(2..=5).contains(&v) {
                    return Err(format!("pickle protocol {v} (expected 2 to 5)"));
                }
            }
            0x95 => {
                // FRAME: a length hint only.
                self.take(8)?;
            }
            b'.' => return self.pop().map(Some),       // STOP
            b'(' => self.marks.push(self.stack.len()), // MARK
            b'0' => {
                self.pop()?; // POP
            }
            b'1' => {
                self.pop_mark()?; // POP_MARK
            }
            b'2' => {
                // DUP
                let v = self.peek()?;
                self.stack.push(v);
            }
            b'N' => self.stack.push(Value::None),        // NONE
            0x88 => self.stack.push(Value::Bool(true)),  // NEWTRUE
            0x89 => self.stack.push(Value::Bool(false)), // NEWFALSE
            b'J' => {
                // BININT
                let v = i32::from_le_bytes(self.array()?);
                self.stack.push(Value::Int(v.into()));
            }
            b'K' => {
                // BININT1
                let v = self.take(1)?[0];
                self.stack.push(Value::Int(v.into()));
            }
            b'M' => {
                // BININT2
                let v = u16::from_le_bytes(self.array()?);
                self.stack.push(Value::Int(v.into()));
            }
            0x8a => {
                // LONG1: little-endian two's complement of n ≤ 8 bytes.
                let n = usize::from(self.take(1)?[0]);
                let b = self.take(n)?;
                if n > 8 {
                    return Err(format!("{n}-byte integer (at most 8 supported)"));
                }
                let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                    0xFF
                } else {
                    0
                };
                let mut full = [fill; 8];
                full[..n].copy_from_slice(b);
                self.stack.push(Value::Int(i64::from_le_bytes(full)));
            }
            b'G' => {
                // BINFLOAT
                let v = f64::from_be_bytes(self.array()?);
                self.stack.push(Value::Float(v));
            }
            b'X' => {
                // BINUNICODE
                let n = u32::from_le_bytes(self.array()?);
                self.string(u64::from(n))?;
            }
            0x8c => {
                // SHORT_BINUNICODE
                let n = self.take(1)?[0];
                self.string(u64::from(n))?;
            }
            0x8d => {
                // BINUNICODE8
                let n = u64::from_le_bytes(self.array()?);
                self.string(n)?;
            }
            b')' => self.push_obj(Object::Tuple(Vec::new())), // EMPTY_TUPLE
            b't' => {
                // TUPLE
                let items = self.pop_mark()?;
                self.push_obj(Object::Tuple(items));
            }
            0x85..=0x87 => {
                // TUPLE1, TUPLE2, TUPLE3
                let n = usize::from(op - 0x84);
                let items = self.pop_n(n)?;
                self.push_obj(Object::Tuple(items));
            }
            b']' => self.push_obj(Object::List(Vec::new())), // EMPTY_LIST
            b'l' => {
                // LIST
                let items = self.pop_mark()?;
                self.push_obj(Object::List(items));
            }
            b'a' | b'e' => {
                // APPEND, APPENDS
                let items = if op == b'a' {
                    self.pop_n(1)?
                } else {
                    self.pop_mark()?
                };
                let target = self.peek()?;
                match self.object_mut(target) {
                    Some(Object::List(list)) => list.extend(items),
                    Some(Object::Refused) => {}
                    _ => return Err(format!("append to {}", self.kind(target))),
                }
            }
            b'}' => self.push_obj(Object::Dict(Vec::new())), // EMPTY_DICT
            b'd' => {
                // DICT
                let items = self.pop_mark()?;
                let pairs = Self::pairs(items)?;
                self.push_obj(Object::Dict(pairs));
            }
            b's' | b'u' => {
                // SETITEM, SETITEMS
                let items = if op == b's' {
                    self.pop_n(2)?
                } else {
                    self.pop_mark()?
                };
                let pairs = Self::pairs(items)?;
                let target = self.peek()?;
                match self.object_mut(target) {
                    Some(Object::Dict(dict)) => dict.extend(pairs),
                    Some(Object::Refused) => {}
                    _ => return Err(format!("setitem on {}", self.kind(target))),
                }
            }
            b'c' => {
                // GLOBAL "module\nname\n"
                let module = self.line()?;
                let name = self.line()?;
                self.global(&module, &name);
            }
            0x93 => {
                // STACK_GLOBAL
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(module), Some(name)) = (self.str_of(module), self.str_of(name)) else {
                    return Err("STACK_GLOBAL of non-strings".into());
                };
                let (module, name) = (module.to_string(), name.to_string());
                self.global(&module, &name);
            }
            b'R' => {
                // REDUCE: callable(*args)
                let args = self.pop()?;
                let callable = self.pop()?;
                let result = self.reduce(callable, args)?;
                self.push_obj(result);
            }
            b'b' => {
                // BUILD: `__setstate__`. The only state accepted is a dict's attributes (the
                // `_metadata` of a state dict), which is ignored.
                let state = self.pop()?;
                let target = self.peek()?;
                match (self.object(target), state) {
                    (Some(Object::Refused), _) => {}
                    (Some(Object::Dict(_)), Value::None) => {}
                    (Some(Object::Dict(_)), s)
                        if matches!(self.object(s), Some(Object::Dict(_))) => {}
                    _ => {
                        return Err(format!(
                            "BUILD of {} with {}",
                            self.kind(target),
                            self.kind(state)
                        ))
                    }
                }
            }
            b'Q' => {
                // BINPERSID
                let pid = self.pop()?;
                let storage = self.persistent_storage(pid)?;
                self.push_obj(Object::Storage(storage));
            }
            b'q' => {
                // BINPUT
                let i = self.take(1)?[0];
                self.memo_put(u32::from(i))?;
            }
            b'r' => {
                // LONG_BINPUT
                let i = u32::from_le_bytes(self.array()?);
                self.memo_put(i)?;
            }
            0x94 => {
                // MEMOIZE
                let i = u32::try_from(self.memo.len()).map_err(|_| "memo too large")?;
                self.memo_put(i)?;
            }
            b'h' => {
                // BINGET
                let i = self.take(1)?[0];
                self.memo_get(u32::from(i))?;
            }
            b'j' => {
                // LONG_BINGET
                let i = u32::from_le_bytes(self.array()?);
                self.memo_get(i)?;
            }
            _ => return Err("unsupported pickle opcode".into()),
        }
        Ok(None)
    }

    // --- input

    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let code: &'a [u8] = self.code;
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| code.get(self.pos..end))
            .ok_or_else(|| {
                format!(
                    "pickle truncated: needs {n} more bytes at byte {} of {}",
                    self.pos,
                    code.len()
                )
            })?;
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    /// A `\n`-terminated line (GLOBAL's operands).
    fn line(&mut self) -> Res<String> {
        let rest = &self.code[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("pickle truncated inside a GLOBAL name")?;
        let line = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(line)
    }

    /// Pushes a UTF-8 string of `n` bytes, checked against the bytes left before allocating.
    fn string(&mut self, n: u64) -> Res<()> {
        let n = usize::try_from(n).map_err(|_| format!("string of {n} bytes"))?;
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| "string is not valid UTF-8")?;
        self.push_obj(Object::Str(s.to_string()));
        Ok(())
    }

    // --- stack and memo

    fn push_obj(&mut self, o: Object) {
        self.objects.push(o);
        self.stack.push(Value::Obj(self.objects.len() - 1));
    }

    /// Height below which the stack belongs to an enclosing MARK.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Res<Value> {
        if self.stack.len() <= self.floor() {
            return Err("stack underflow".into());
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn peek(&self) -> Res<Value> {
        if self.stack.len() <= self.floor() {
            return Err("stack underflow".into());
        }
        Ok(*self.stack.last().expect("checked above"))
    }

    fn pop_n(&mut self, n: usize) -> Res<Vec<Value>> {
        if self.stack.len() < self.floor() + n {
            return Err("stack underflow".into());
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    /// Everything above the last MARK, removing the mark.
    fn pop_mark(&mut self) -> Res<Vec<Value>> {
        let m = self.marks.pop().ok_or("no MARK to pop to")?;
        Ok(self.stack.split_off(m))
    }

    fn memo_put(&mut self, i: u32) -> Res<()> {
        let v = self.peek()?;
        self.memo.insert(i, v);
        Ok(())
    }

    fn memo_get(&mut self, i: u32) -> Res<()> {
        let v = *self
            .memo
            .get(&i)
            .ok_or_else(|| format!("memo index {i} was never stored"))?;
        self.stack.push(v);
        Ok(())
    }

    fn pairs(items: Vec<Value>) -> Res<Vec<(Value, Value)>> {
        if !items.len().is_multiple_of(2) {
            return Err("odd number of dict items".into());
        }
        Ok(items.chunks_exact(2).map(|p| (p[0], p[1])).collect())
    }

    // --- objects

    fn object(&self, v: Value) -> Option<&Object> {
        match v {
            Value::Obj(i) => self.objects.get(i),
            _ => None,
        }
    }

    fn object_mut(&mut self, v: Value) -> Option<&mut Object> {
        match v {
            Value::Obj(i) => self.objects.get_mut(i),
            _ => None,
        }
    }

    fn str_of(&self, v: Value) -> Option<&str> {
        match self.object(v) {
            Some(Object::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn tuple_of(&self, v: Value) -> Option<&[Value]> {
        match self.object(v) {
            Some(Object::Tuple(t)) => Some(t),
            _ => None,
        }
    }

    /// What `v` is, for error messages.
    fn kind(&self, v: Value) -> &'static str {
        match v {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Obj(_) => match self.object(v) {
                Some(Object::Str(_)) => "a string",
                Some(Object::Tuple(_)) => "a tuple",
                Some(Object::List(_)) => "a list",
                Some(Object::Dict(_)) => "a dict",
                Some(Object::Global(_)) => "a global",
                Some(Object::Storage(_)) => "a storage",
                Some(Object::Tensor(_)) => "a tensor",
                Some(Object::Refused) | None => "a refused object",
            },
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        match Global::lookup(module, name) {
            Some(g) => self.push_obj(Object::Global(g)),
            None => {
                let full = format!("{}.{}", module.escape_debug(), name.escape_debug());
                let full: String = full.chars().take(200).collect();
                if self.refused.len() < 8 && !self.refused.contains(&full) {
                    self.refused.push(full);
                }
                self.push_obj(Object::Refused);
            }
        }
    }

    /// REDUCE: the only calls are `OrderedDict()` and `_rebuild_tensor_v2(…)`, both built
    /// without running anything; a refused callable yields a refused object.
    fn reduce(&self, callable: Value, args: Value) -> Res<Object> {
        let Some(args_tuple) = self.tuple_of(args) else {
            return Err(format!("REDUCE with {} as arguments", self.kind(args)));
        };
        match self.object(callable) {
            Some(Object::Refused) => Ok(Object::Refused),
            Some(Object::Global(Global::OrderedDict)) if args_tuple.is_empty() => {
                Ok(Object::Dict(Vec::new()))
            }
            Some(Object::Global(Global::RebuildTensorV2)) => self.rebuild_tensor(args_tuple),
            _ => Err(format!(
                "REDUCE of {} with {} arguments",
                self.kind(callable),
                args_tuple.len()
            )),
        }
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
    /// backward_hooks[, metadata])`; the last three do not affect the values.
    fn rebuild_tensor(&self, args: &[Value]) -> Res<Object> {
        let bad = |what: &str| format!("_rebuild_tensor_v2: {what}");
        if !(6..=7).contains(&args.len()) {
            return Err(bad(&format!("{} arguments (expected 6 or 7)", args.len())));
        }
        let Some(Object::Storage(storage)) = self.object(args[0]) else {
            return Err(bad(&format!("storage is {}", self.kind(args[0]))));
        };
        let offset = self
            .non_negative(args[1])
            .ok_or_else(|| bad("storage offset is not an int ≥ 0"))?;
        let dims = |v: Value, what: &str| -> Res<Vec<u64>> {
            let t = self
                .tuple_of(v)
                .ok_or_else(|| bad(&format!("{what} is {}", self.kind(v))))?;
            if t.len() > MAX_DIMS {
                return Err(bad(&format!("{} dimensions (at most {MAX_DIMS})", t.len())));
            }
            t.iter()
                .map(|&d| self.non_negative(d))
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| bad(&format!("{what} holds something other than ints ≥ 0")))
        };
        let size = dims(args[2], "size")?;
        let stride = dims(args[3], "stride")?;
        if size.len() != stride.len() {
            return Err(bad(&format!(
                "{} sizes but {} strides",
                size.len(),
                stride.len()
            )));
        }
        Ok(Object::Tensor(TensorRef {
            storage: storage.clone(),
            offset,
            size,
            stride,
        }))
    }

    fn non_negative(&self, v: Value) -> Option<u64> {
        match v {
            Value::Int(i) => u64::try_from(i).ok(),
            _ => None,
        }
    }

    /// BINPERSID's id: `('storage', torch.XStorage, key, location, numel)`.
    fn persistent_storage(&self, pid: Value) -> Res<StorageRef> {
        let bad = || "persistent id is not ('storage', torch.<dtype>Storage, key, location, numel)";
        let t = self.tuple_of(pid).ok_or_else(bad)?;
        let [tag, ty, key, location, numel] = t[..] else {
            return Err(bad().into());
        };
        let dtype = match self.object(ty) {
            Some(Object::Global(Global::Storage(d))) => *d,
            _ => return Err(bad().into()),
        };
        if self.str_of(tag) != Some("storage") || self.str_of(location).is_none() {
            return Err(bad().into());
        }
        let (Value::Obj(key), Some(_)) = (key, self.str_of(key)) else {
            return Err(bad().into());
        };
        let numel = self.non_negative(numel).ok_or_else(bad)?;
        Ok(StorageRef { dtype, key, numel })
    }

    // --- result

    /// The pickled dict as tensors in insertion order (a repeated key keeps its first position
    /// and its last value, as in Python). `storage_bytes(key)` reads `data/<key>`; at most
    /// `max_values` f32 values are decoded in all.
    fn state_dict<'s>(
        &self,
        top: Value,
        mut storage_bytes: impl FnMut(&str) -> Res<Cow<'s, [u8]>>,
        max_values: usize,
    ) -> Res<Vec<NamedTensor>> {
        let Some(Object::Dict(pairs)) = self.object(top) else {
            return Err(format!(
                "data.pkl holds {}, not a dict of tensors (a state dict)",
                self.kind(top)
            ));
        };
        let mut order: Vec<(&str, &TensorRef)> = Vec::new();
        let mut position: HashMap<&str, usize> = HashMap::new();
        for &(k, v) in pairs {
            let name = self
                .str_of(k)
                .ok_or_else(|| format!("state dict key is {}, not a string", self.kind(k)))?;
            let Some(Object::Tensor(t)) = self.object(v) else {
                return Err(format!(
                    "state dict entry `{}` is {}, not a tensor",
                    name.escape_debug(),
                    self.kind(v)
                ));
            };
            match position.get(name) {
                Some(&i) => order[i].1 = t,
                None => {
                    position.insert(name, order.len());
                    order.push((name, t));
                }
            }
        }

        let mut storages: HashMap<&str, Cow<'s, [u8]>> = HashMap::new();
        let mut budget = max_values;
        let mut out = Vec::with_capacity(order.len());
        for (name, t) in order {
            let s = &t.storage;
            let key = self
                .str_of(Value::Obj(s.key))
                .expect("persistent_storage checked the key");
            if !storages.contains_key(key) {
                storages.insert(key, storage_bytes(key)?);
            }
            let bytes = &storages[key];
            let shape: Vec<usize> = t
                .size
                .iter()
                .map(|&d| to_usize(d, "dimension"))
                .collect::<Res<_>>()?;
            let data = materialise(t, s, bytes, &mut budget).map_err(|e| {
                format!(
                    "tensor `{}` (storage `{}`): {e}",
                    name.escape_debug(),
                    key.escape_debug()
                )
            })?;
            out.push((name.to_string(), shape, data));
        }
        Ok(out)
    }
}

/// Reads tensor `t` from its storage's bytes in row-major order, checking every index against
/// the storage and the decoded total against `budget` (which it decreases).
fn materialise(t: &TensorRef, s: &StorageRef, bytes: &[u8], budget: &mut usize) -> Res<Vec<f32>> {
    let elem = s.dtype.size();
    let expected = s.numel.checked_mul(elem as u64);
    if expected != Some(bytes.len() as u64) {
        return Err(format!(
            "the pickle gives the storage {} {:?} elements ({} bytes) but its archive entry has {} bytes",
            s.numel,
            s.dtype,
            expected.map_or("too many".into(), |b| b.to_string()),
            bytes.len()
        ));
    }
    let storage_numel = bytes.len() / elem;
    // Even an empty tensor's other dimensions must multiply without overflow, so the shape's
    // product can be taken in any order.
    let nonzero_numel = t
        .size
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("size {:?} has too many elements", t.size))?;
    if t.size.contains(&0) {
        return Ok(Vec::new());
    }
    let numel = nonzero_numel;
    // The last element read: offset + Σ (size − 1)·stride.
    let last = t
        .size
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |a, (&d, &s)| {
            a.checked_add((d - 1).checked_mul(s)?)
        });
    if last.is_none_or(|l| l >= storage_numel as u64) {
        return Err(format!(
            "offset {} with size {:?} and stride {:?} reaches past the storage's {storage_numel} elements",
            t.offset, t.size, t.stride
        ));
    }
    if numel > storage_numel {
        return Err(format!(
            "{numel} elements overlap in a storage of {storage_numel} (stride-0 views are not supported)"
        ));
    }
    if numel > *budget {
        return Err(format!(
            "the tensors together decode to more than {VALUES_PER_ARCHIVE_BYTE} values per byte \
             of the archive (one storage read too many times?); refusing"
        ));
    }
    *budget -= numel;
    // Both bounded by storage_numel, checked above.
    let offset = t.offset as usize;
    let mut out = Vec::with_capacity(numel);
    let mut contiguous_stride = 1u64;
    let contiguous = t.size.iter().zip(&t.stride).rev().all(|(&d, &s)| {
        let ok = d == 1 || s == contiguous_stride;
        contiguous_stride *= d;
        ok
    });
    if contiguous {
        s.dtype
            .decode(&bytes[offset * elem..(offset + numel) * elem], &mut out);
        return Ok(out);
    }
    // Strided view: walk the indices like an odometer, last dimension fastest. A dimension of
    // size 1 never moves (its stride may be anything); for the others (size − 1)·stride ≤ last,
    // so every step below stays under twice the storage length.
    let size: Vec<usize> = t.size.iter().map(|&d| d as usize).collect();
    let stride: Vec<usize> = (t.size.iter().zip(&t.stride))
        .map(|(&d, &s)| if d == 1 { 0 } else { s as usize })
        .collect();
    let mut index = vec![0usize; size.len()];
    let mut at = offset;
    for _ in 0..numel {
        s.dtype.decode(&bytes[at * elem..(at + 1) * elem], &mut out);
        for d in (0..size.len()).rev() {
            index[d] += 1;
            at += stride[d];
            if index[d] < size[d] {
                break;
            }
            at -= stride[d] * size[d];
            index[d] = 0;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- building pickles and archives by hand

    fn unicode(s: &str) -> Vec<u8> {
        let mut b = vec![b'X'];
        b.extend((s.len() as u32).to_le_bytes());
        b.extend(s.as_bytes());
        b
    }

    fn global(module: &str, name: &str) -> Vec<u8> {
        format!("c{module}\n{name}\n").into_bytes()
    }

    fn ints(v: &[u8]) -> Vec<u8> {
        let mut b = vec![b'('];
        for &x in v {
            b.extend([b'K', x]);
        }
        b.push(b't');
        b
    }

    /// `_rebuild_tensor_v2(('storage', torch.<storage>, key, 'cpu', numel), offset, size,
    /// stride, False, OrderedDict())` as torch writes it.
    fn tensor(
        storage: &str,
        key: &str,
        numel: u8,
        offset: u8,
        size: &[u8],
        stride: &[u8],
    ) -> Vec<u8> {
        let mut b = global("torch._utils", "_rebuild_tensor_v2");
        b.extend(b"((");
        b.extend(unicode("storage"));
        b.extend(global("torch", storage));
        b.extend(unicode(key));
        b.extend(unicode("cpu"));
        b.extend([b'K', numel, b't', b'Q', b'K', offset]);
        b.extend(ints(size));
        b.extend(ints(stride));
        b.push(0x89);
        b.extend(global("collections", "OrderedDict"));
        b.extend(b")R");
        b.extend(b"tR");
        b
    }

    /// `{name: tensor, …}` as protocol-2 pickle bytes.
    fn state_dict_pickle(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![0x80, 2, b'}', b'q', 0, b'('];
        for (name, value) in entries {
            b.extend(unicode(name));
            b.extend(value);
        }
        b.extend(b"u.");
        b
    }

    fn crc(b: &[u8]) -> u32 {
        let mut c = flate2::Crc::new();
        c.update(b);
        c.sum()
    }

    /// A stored zip of `files`, with zip64 end records as torch writes them; with
    /// `zip64_offsets`, each central entry's local-header offset is in a zip64 extra field.
    fn zip(files: &[(String, Vec<u8>)], zip64_offsets: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in files {
            let offset = out.len() as u32;
            let mut fields = Vec::new();
            fields.extend(0u16.to_le_bytes()); // flags
            fields.extend(0u16.to_le_bytes()); // method
            fields.extend([0; 4]); // time, date
            fields.extend(crc(data).to_le_bytes());
            fields.extend((data.len() as u32).to_le_bytes());
            fields.extend((data.len() as u32).to_le_bytes());
            fields.extend((name.len() as u16).to_le_bytes());
            out.extend(LOCAL_HEADER.to_le_bytes());
            out.extend(20u16.to_le_bytes());
            out.extend(&fields);
            out.extend(0u16.to_le_bytes()); // extra
            out.extend(name.as_bytes());
            out.extend(data);
            central.extend(CENTRAL_HEADER.to_le_bytes());
            central.extend([20, 0, 20, 0]);
            central.extend(&fields);
            central.extend((if zip64_offsets { 12u16 } else { 0 }).to_le_bytes());
            central.extend([0; 6]); // comment length, disk, internal attributes
            central.extend([0; 4]); // external attributes
            if zip64_offsets {
                central.extend(0xFFFF_FFFFu32.to_le_bytes());
                central.extend(name.as_bytes());
                central.extend(ZIP64_EXTRA.to_le_bytes());
                central.extend(8u16.to_le_bytes());
                central.extend(u64::from(offset).to_le_bytes());
            } else {
                central.extend(offset.to_le_bytes());
                central.extend(name.as_bytes());
            }
        }
        let cd_offset = out.len() as u64;
        out.extend(&central);
        let eocd64 = out.len() as u64;
        out.extend(ZIP64_END_OF_CENTRAL_DIR.to_le_bytes());
        out.extend(44u64.to_le_bytes());
        out.extend([30, 3, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend((files.len() as u64).to_le_bytes());
        out.extend((files.len() as u64).to_le_bytes());
        out.extend((central.len() as u64).to_le_bytes());
        out.extend(cd_offset.to_le_bytes());
        out.extend(ZIP64_LOCATOR.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(eocd64.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        out.extend(END_OF_CENTRAL_DIR.to_le_bytes());
        out.extend([0; 4]);
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend((cd_offset as u32).to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    fn files(pickle: Vec<u8>, storages: &[(&str, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
        let mut files = vec![
            ("archive/data.pkl".to_string(), pickle),
            ("archive/byteorder".to_string(), b"little".to_vec()),
        ];
        for (key, data) in storages {
            files.push((format!("archive/data/{key}"), data.clone()));
        }
        files
    }

    fn archive(pickle: Vec<u8>, storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
        zip(&files(pickle, storages), false)
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn run(pickle: &[u8]) -> Res<Value> {
        Machine::new(pickle).run()
    }

    // --- tests

    #[test]
    fn reads_contiguous_strided_and_converted_tensors() {
        let base: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let halves: Vec<u8> = [0.5f32, -2.0]
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let pickle = state_dict_pickle(&[
            ("a", tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1])),
            ("a_t", tensor("FloatStorage", "0", 6, 0, &[3, 2], &[1, 3])),
            ("tail", tensor("FloatStorage", "0", 6, 4, &[2], &[1])),
            ("h", tensor("HalfStorage", "1", 2, 0, &[2], &[1])),
        ]);
        let bytes = archive(pickle, &[("0", f32s(&base)), ("1", halves)]);
        let got = read_state_dict(&bytes, "mem").unwrap();
        let names: Vec<&str> = got.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names, ["a", "a_t", "tail", "h"]);
        assert_eq!(got[0].1, [2, 3]);
        assert_eq!(got[0].2, base);
        assert_eq!(got[1].1, [3, 2]);
        assert_eq!(got[1].2, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(got[2].2, [4.0, 5.0]);
        assert_eq!(got[3].2, [0.5, -2.0]);
    }

    #[test]
    fn refuses_foreign_globals_naming_them() {
        for (module, name) in [("posix", "system"), ("builtins", "eval"), ("torch", "load")] {
            let mut evil = global(module, name);
            evil.extend(unicode("echo pwned"));
            evil.extend([0x85, b'R']);
            let pickle = state_dict_pickle(&[
                ("w", tensor("FloatStorage", "0", 1, 0, &[1], &[1])),
                ("payload", evil),
            ]);
            let e = read_state_dict(&archive(pickle, &[("0", f32s(&[1.0]))]), "evil.bin")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("`{module}.{name}`")) && e.contains("evil.bin"),
                "{e}"
            );
            assert!(e.contains("nothing was executed"), "{e}");
        }
        // Several are all named, even when the pickle breaks afterwards; STACK_GLOBAL too.
        let mut p = vec![0x80, 4];
        p.extend(global("os", "system"));
        p.extend(unicode("subprocess"));
        p.extend(unicode("Popen"));
        p.extend([0x93, b'0', b'0', 0xFF]);
        let e = run(&p).unwrap_err();
        assert!(e.contains("`os.system`, `subprocess.Popen`"), "{e}");
    }

    #[test]
    fn truncated_pickles_are_errors() {
        let full = state_dict_pickle(&[("w", tensor("FloatStorage", "0", 1, 0, &[1], &[1]))]);
        assert!(run(&full).is_ok());
        for cut in 0..full.len() {
            let e = run(&full[..cut]).unwrap_err();
            assert!(
                e.contains("truncated") || e.contains("underflow"),
                "cut {cut}: {e}"
            );
        }
        // A string longer than the pickle is refused before allocating.
        let e = run(&[
            0x80, 2, 0x8d, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, b'.',
        ])
        .unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn memo_stack_and_opcode_misuse_are_errors() {
        let cases: [(&[u8], &str); 8] = [
            (b"\x80\x02h\x07.", "memo index 7 was never stored"),
            (b"\x80\x02j\x00\x00\x01\x00.", "memo index 65536"),
            (b"\x80\x02q\x00.", "stack underflow"),
            (b"\x80\x02.", "stack underflow"),
            (b"\x80\x02K\x01(\x85.", "stack underflow"),
            (b"\x80\x02t.", "no MARK"),
            (b"\x80\x02K\x01K\x02K\x03s.", "setitem on an int"),
            (b"\x80\x02I1\n.", "(opcode 0x49): unsupported pickle opcode"),
        ];
        for (code, want) in cases {
            let e = run(code).unwrap_err();
            assert!(e.contains(want), "{code:?}: {e}");
        }
        let e = run(b"\x80\x01}.").unwrap_err();
        assert!(e.contains("protocol 1"), "{e}");
        // REDUCE of anything but the allowed callables.
        let mut p = vec![0x80, 2];
        p.extend(global("torch", "FloatStorage"));
        p.extend(b")R.");
        assert!(run(&p).unwrap_err().contains("REDUCE of a global"));
    }

    #[test]
    fn integers_decode() {
        let cases: [(&[u8], i64); 6] = [
            (b"\x80\x02K\xff.", 255),
            (b"\x80\x02M\x00\x01.", 256),
            (b"\x80\x02J\xff\xff\xff\xff.", -1),
            (b"\x80\x02\x8a\x00.", 0),
            (b"\x80\x02\x8a\x01\xff.", -1),
            (b"\x80\x02\x8a\x05\x00\x00\x00\x00\x01.", 1 << 32),
        ];
        for (code, want) in cases {
            assert_eq!(run(code), Ok(Value::Int(want)), "{code:?}");
        }
        let e = run(b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.").unwrap_err();
        assert!(e.contains("9-byte integer"), "{e}");
    }

    #[test]
    fn out_of_range_storage_is_refused() {
        let data = f32s(&[1.0, 2.0, 3.0, 4.0]);
        let read = |t: Vec<u8>| {
            read_state_dict(
                &archive(state_dict_pickle(&[("w", t)]), &[("0", data.clone())]),
                "m",
            )
            .map(|_| ())
            .unwrap_err()
            .to_string()
        };
        let e = read(tensor("FloatStorage", "0", 4, 2, &[3], &[1]));
        assert!(
            e.contains("reaches past the storage's 4 elements") && e.contains("`w`"),
            "{e}"
        );
        let e = read(tensor("FloatStorage", "0", 4, 0, &[2, 2], &[3, 1]));
        assert!(e.contains("reaches past"), "{e}");
        // The pickle's element count must match the entry's bytes.
        let e = read(tensor("FloatStorage", "0", 9, 0, &[1], &[1]));
        assert!(e.contains("archive entry has 16 bytes"), "{e}");
        let e = read(tensor("DoubleStorage", "0", 4, 0, &[1], &[1]));
        assert!(e.contains("32 bytes"), "{e}");
        // Overlapping (stride-0) views larger than the storage.
        let e = read(tensor("FloatStorage", "0", 4, 0, &[8], &[0]));
        assert!(e.contains("overlap"), "{e}");
        // A storage with no entry.
        let e = read(tensor("FloatStorage", "7", 4, 0, &[1], &[1]));
        assert!(e.contains("archive/data/7"), "{e}");
    }

    #[test]
    fn non_tensor_entries_and_other_files_are_named() {
        let pickle = state_dict_pickle(&[("step", vec![b'K', 3])]);
        let e = read_state_dict(&archive(pickle, &[]), "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`step` is an int, not a tensor"), "{e}");
        let e = read_state_dict(b"\x80\x02}q\x00.", "legacy.bin")
            .unwrap_err()
            .to_string();
        assert!(e.contains("legacy"), "{e}");
        let e = read_state_dict(b"hello", "x").unwrap_err().to_string();
        assert!(e.contains("not a torch.save zip archive"), "{e}");
        // A big-endian archive.
        let mut big = files(state_dict_pickle(&[]), &[]);
        big[1].1 = b"big".to_vec();
        let e = read_state_dict(&zip(&big, false), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("byteorder is \"big\""), "{e}");
        // A changed byte inside an entry.
        let mut bytes = archive(state_dict_pickle(&[]), &[]);
        let at = bytes.windows(6).position(|w| w == b"little").unwrap();
        bytes[at] = b'L';
        let e = read_state_dict(&bytes, "x").unwrap_err().to_string();
        assert!(
            e.contains("CRC-32 mismatch") && e.contains("archive/byteorder"),
            "{e}"
        );
        // Several archives in one zip.
        let mut two = files(state_dict_pickle(&[]), &[]);
        two.push(("other/data.pkl".into(), state_dict_pickle(&[])));
        let e = read_state_dict(&zip(&two, false), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("several pickles"), "{e}");
    }

    #[test]
    fn zip64_offsets_and_deflated_entries_are_read() {
        let data = f32s(&[1.0, -1.0, 0.25]);
        let pickle = state_dict_pickle(&[("w", tensor("FloatStorage", "0", 3, 0, &[3], &[1]))]);
        let got = read_state_dict(
            &zip(&files(pickle.clone(), &[("0", data.clone())]), true),
            "m",
        )
        .unwrap();
        assert_eq!(got[0].2, [1.0, -1.0, 0.25]);

        // Deflate the pickle entry by hand: method 8, compressed size and bytes replaced.
        let mut deflated = Vec::new();
        flate2::read::DeflateEncoder::new(&pickle[..], flate2::Compression::default())
            .read_to_end(&mut deflated)
            .unwrap();
        let stored = archive(pickle.clone(), &[("0", data)]);
        let zip = Zip::parse(&stored).unwrap();
        let mut entry = zip.get("archive/data.pkl").unwrap().clone();
        entry.method = 8;
        entry.compressed = deflated.len() as u64;
        let mut bytes = stored[..30 + entry.name.len()].to_vec();
        bytes.extend(&deflated);
        let zip = Zip {
            bytes: &bytes,
            entries: vec![],
            by_name: HashMap::new(),
        };
        assert_eq!(zip.read(&entry).unwrap().as_ref(), pickle.as_slice());
        entry.uncompressed = 1 << 40;
        assert!(zip
            .read(&entry)
            .unwrap_err()
            .contains("impossible deflate ratio"));
        entry.method = 12;
        assert!(zip
            .read(&entry)
            .unwrap_err()
            .contains("compression method 12"));
    }

    #[test]
    fn repeated_keys_keep_first_position_and_last_value() {
        let data = f32s(&[1.0, 2.0]);
        let pickle = state_dict_pickle(&[
            ("a", tensor("FloatStorage", "0", 2, 0, &[1], &[1])),
            ("b", tensor("FloatStorage", "0", 2, 0, &[2], &[1])),
            ("a", tensor("FloatStorage", "0", 2, 1, &[1], &[1])),
        ]);
        let got = read_state_dict(&archive(pickle, &[("0", data)]), "m").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.as_str(), got[0].2.as_slice()), ("a", &[2.0][..]));
    }

    #[test]
    fn shared_storages_are_bounded() {
        // 200 references to one 64-element storage decode to more than the archive allows.
        let entries: Vec<(String, Vec<u8>)> = (0..200)
            .map(|i| {
                (
                    format!("t{i}"),
                    tensor("FloatStorage", "0", 64, 0, &[64], &[1]),
                )
            })
            .collect();
        let refs: Vec<(&str, Vec<u8>)> = entries
            .iter()
            .map(|(n, b)| (n.as_str(), b.clone()))
            .collect();
        let bytes = archive(state_dict_pickle(&refs), &[("0", f32s(&[0.0; 64]))]);
        assert!(read_state_dict(&bytes, "m").is_ok());
        let mut p = vec![0x80, 2, b'}', b'('];
        p.extend(tensor("FloatStorage", "0", 64, 0, &[64], &[1]));
        p.extend([b'q', 1, b'0']);
        for i in 0..3000u32 {
            p.extend(unicode(&format!("t{i}")));
            p.extend([b'h', 1]);
        }
        p.extend(b"u.");
        let bytes = archive(p, &[("0", f32s(&[0.0; 64]))]);
        let e = read_state_dict(&bytes, "m").unwrap_err().to_string();
        assert!(e.contains("values per byte of the archive"), "{e}");
    }
}
