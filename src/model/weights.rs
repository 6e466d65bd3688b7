//! The parameters of a diffusers `UNet2DModel` as host tensors: loading them from
//! `diffusion_pytorch_model.safetensors`, its `.fp16.safetensors` variant, or PyTorch's
//! `diffusion_pytorch_model.bin` (read without running its pickle, see [`super::torch_bin`])
//! with f32/f16/bf16/f64 → f32 and old attention names mapped; checking them against a
//! [`UNetConfig`]; saving diffusers-loadable files; and PyTorch-like random initialisation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

pub use super::shapes::expected_params;
use super::torch_bin::{self, NamedTensor};
use super::UNetConfig;
use crate::{Error, Result};

/// File name of the weights in a diffusers model directory.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";
/// diffusers' float16 variant of [`WEIGHTS_FILE`].
pub const FP16_WEIGHTS_FILE: &str = "diffusion_pytorch_model.fp16.safetensors";
/// File name of PyTorch (`torch.save`) weights in a diffusers model directory.
pub const TORCH_WEIGHTS_FILE: &str = "diffusion_pytorch_model.bin";
/// File name of the config in a diffusers model directory.
pub const CONFIG_FILE: &str = "config.json";

/// A tensor on the host: row-major (C-order) f32 data of `shape`.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor, checking that `data` has `shape.product()` elements.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(data.len()) {
            return Err(Error::operand(
                "HostTensor",
                "data",
                format!(
                    "shape {shape:?} needs {} values, got {}",
                    n.map_or("too many".into(), |n| n.to_string()),
                    data.len()
                ),
            ));
        }
        Ok(HostTensor { shape, data })
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Element type used when writing a safetensors file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreDtype {
    F32,
    F16,
}

/// Parameter name → tensor, with diffusers' names (`down_blocks.1.attentions.0.to_q.weight`, …).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weights {
    tensors: BTreeMap<String, HostTensor>,
    /// Where the weights came from (a path, or a label for bytes), for error messages.
    source: String,
    /// The tensors a safetensors file stored in 16 bits (F16 or BF16): their f32 values came
    /// from halves, so the GPU U-Net may keep them at half size (see [`Weights::stored_as_half`]).
    half: BTreeSet<String>,
}

/// Maps pre-0.13 diffusers attention names to the current ones:
/// `….attentions.N.{query,key,value,proj_attn}.*` → `….attentions.N.{to_q,to_k,to_v,to_out.0}.*`.
pub fn map_legacy_name(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    for i in 2..parts.len() {
        if parts[i - 2] == "attentions" && parts[i - 1].parse::<usize>().is_ok() {
            let new = match parts[i] {
                "query" => "to_q",
                "key" => "to_k",
                "value" => "to_v",
                "proj_attn" => "to_out.0",
                _ => continue,
            };
            let mut v = parts.clone();
            v[i] = new;
            return v.join(".");
        }
    }
    name.to_string()
}

fn werr(msg: String) -> Error {
    Error::Weights(msg)
}

/// Decodes little-endian elements of `dtype` to f32.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        _ => return None,
    })
}

/// The model directory holding `config.json`: `dir` itself, or `dir/unet` for a pipeline layout.
fn model_dir(dir: &Path) -> PathBuf {
    if !dir.join(CONFIG_FILE).exists() && dir.join("unet").join(CONFIG_FILE).exists() {
        dir.join("unet")
    } else {
        dir.to_path_buf()
    }
}

impl Weights {
    /// An empty set of weights labelled `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Weights {
            tensors: BTreeMap::new(),
            source: source.into(),
            half: BTreeSet::new(),
        }
    }

    /// Loads a diffusers model directory (`config.json` + weights, or the same under `unet/` of a
    /// pipeline directory); validates both. The weights are the first present of
    /// [`WEIGHTS_FILE`], [`FP16_WEIGHTS_FILE`] and [`TORCH_WEIGHTS_FILE`]; with none, the error
    /// names the first.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<(UNetConfig, Weights)> {
        let dir = model_dir(dir.as_ref());
        let cfg_path = dir.join(CONFIG_FILE);
        let json = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let config = UNetConfig::from_json(&json).map_err(|e| match e {
            Error::Config { key, value, reason } => Error::Config {
                key,
                value,
                reason: format!("{reason} (in {})", cfg_path.display()),
            },
            e => e,
        })?;
        let w_path = [WEIGHTS_FILE, FP16_WEIGHTS_FILE, TORCH_WEIGHTS_FILE]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists())
            .unwrap_or_else(|| dir.join(WEIGHTS_FILE));
        let weights = if w_path.ends_with(TORCH_WEIGHTS_FILE) {
            let bytes = std::fs::read(&w_path).map_err(|e| Error::io(&w_path, e))?;
            Weights::from_torch_bin(&bytes, &w_path.display().to_string())?
        } else {
            Weights::load(&w_path)?
        };
        weights.validate(&config)?;
        Ok((config, weights))
    }

    /// Parses `config.json` text and weights bytes (as the browser receives them: safetensors,
    /// or a PyTorch `.bin` zip archive, told apart by its `PK` signature) and validates both;
    /// `source` names the weights in errors.
    pub fn load_bytes(
        config_json: &str,
        weights: &[u8],
        source: &str,
    ) -> Result<(UNetConfig, Weights)> {
        let config = UNetConfig::from_json(config_json)?;
        let weights = if weights.starts_with(b"PK\x03\x04") {
            Weights::from_torch_bin(weights, source)?
        } else {
            Weights::from_bytes(weights, source)?
        };
        weights.validate(&config)?;
        Ok((config, weights))
    }

    /// Loads a safetensors file (any tensors; call [`Weights::validate`] to check them).
    pub fn load(path: impl AsRef<Path>) -> Result<Weights> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Weights::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses safetensors bytes: F32/F16/BF16/F64 tensors become f32 (which were F16/BF16 is
    /// kept, see [`Weights::stored_as_half`]), legacy attention names are mapped (see
    /// [`map_legacy_name`]). A file holding a tensor under both its legacy and
    /// its current name is accepted when the two agree (shape and values) and otherwise
    /// refused, naming both. `source` names the file in errors.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Weights> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            werr(format!(
                "{source}: not a valid safetensors file ({e}; {} bytes — truncated or corrupt?)",
                bytes.len()
            ))
        })?;
        let tensors = st.iter().map(|(name, view)| {
            let data = to_f32(view.dtype(), view.data()).ok_or_else(|| {
                werr(format!(
                    "{source}: tensor `{name}` has dtype {:?}; only F32, F16, BF16 and F64 are supported",
                    view.dtype()
                ))
            })?;
            Ok((name.to_string(), view.shape().to_vec(), data))
        });
        let mut w = Weights::from_named_tensors(tensors, source)?;
        w.half = st
            .iter()
            .filter(|(_, view)| matches!(view.dtype(), Dtype::F16 | Dtype::BF16))
            .map(|(name, _)| map_legacy_name(name))
            .filter(|name| w.tensors.contains_key(name))
            .collect();
        Ok(w)
    }

    /// Parses PyTorch `torch.save` bytes (a `.bin` state dict; see [`torch_bin`] for what
    /// is accepted — no pickle code is ever run) like [`Weights::from_bytes`]: f32/f16/bf16/f64
    /// tensors become f32 and legacy names are mapped, with the same duplicate-name checks.
    pub fn from_torch_bin(bytes: &[u8], source: &str) -> Result<Weights> {
        let tensors = torch_bin::read_state_dict(bytes, source)?;
        Weights::from_named_tensors(tensors.into_iter().map(Ok), source)
    }

    /// Collects `(name, shape, data)` tensors in file order, mapping legacy names. A tensor under
    /// both its legacy and its current name is kept once when the two agree (shape and values)
    /// and otherwise refused, naming both.
    fn from_named_tensors(
        tensors: impl IntoIterator<Item = Result<NamedTensor>>,
        source: &str,
    ) -> Result<Weights> {
        let mut w = Weights::new(source);
        // Mapped name → the name it had in the file.
        let mut original: HashMap<String, String> = HashMap::new();
        for tensor in tensors {
            let (name, shape, data) = tensor?;
            let mapped = map_legacy_name(&name);
            let t = HostTensor { shape, data };
            if let Some(prev) = w.tensors.get(&mapped) {
                let first = &original[&mapped];
                let clash = if *first == mapped {
                    format!("`{name}` is the legacy name of `{mapped}`, and the file holds both")
                } else if name == mapped {
                    format!("`{first}` is the legacy name of `{mapped}`, and the file holds both")
                } else {
                    format!("`{first}` and `{name}` both map to `{mapped}`")
                };
                if prev.shape != t.shape {
                    return Err(werr(format!(
                        "{source}: {clash} with different shapes (`{first}` {:?}, `{name}` {:?}); \
                         keep one",
                        prev.shape, t.shape
                    )));
                }
                let same = prev
                    .data
                    .iter()
                    .zip(&t.data)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                if !same {
                    return Err(werr(format!(
                        "{source}: {clash} with different values; keep one"
                    )));
                }
                continue; // the same tensor twice: keep one
            }
            original.insert(mapped.clone(), name);
            w.tensors.insert(mapped, t);
        }
        Ok(w)
    }

    /// Where the weights came from (path or label).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        self.tensors.values().map(HostTensor::numel).sum()
    }

    /// The tensor `name`, if present.
    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.tensors.get(name)
    }

    /// Mutable access to tensor `name`, if present.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut HostTensor> {
        self.tensors.get_mut(name)
    }

    /// The tensor `name`, or an [`Error::Weights`] naming it and the file.
    pub fn tensor(&self, name: &str) -> Result<&HostTensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| werr(format!("{}: missing tensor `{name}`", self.source)))
    }

    /// Inserts (or replaces) a tensor; `data.len()` must match `shape`.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        shape: Vec<usize>,
        data: Vec<f32>,
    ) -> Result<()> {
        let t = HostTensor::new(shape, data)?;
        let name = name.into();
        self.half.remove(&name);
        self.tensors.insert(name, t);
        Ok(())
    }

    /// Removes a tensor, returning it.
    pub fn remove(&mut self, name: &str) -> Option<HostTensor> {
        self.half.remove(name);
        self.tensors.remove(name)
    }

    /// Whether the weights file stored tensor `name` in 16 bits (safetensors F16 or BF16; not
    /// tracked for PyTorch `.bin` files). [`Weights::insert`] clears it for the new tensor.
    pub fn stored_as_half(&self, name: &str) -> bool {
        self.half.contains(name)
    }

    /// Tensors in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &HostTensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Checks that the weights are exactly those of a `UNet2DModel` with `config`: every
    /// expected tensor present with its shape and nothing else. The error lists the first few
    /// problems, each naming the tensor, the expected and actual shapes, and the file.
    pub fn validate(&self, config: &UNetConfig) -> Result<()> {
        let expected = expected_params(config);
        let mut problems = Vec::new();
        for (name, shape) in &expected {
            match self.tensors.get(name) {
                None => problems.push(format!(
                    "missing tensor `{name}` (expected shape {shape:?})"
                )),
                Some(t) if &t.shape != shape => problems.push(format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.shape
                )),
                Some(_) => {}
            }
        }
        let known: HashMap<&str, ()> = expected.iter().map(|(n, _)| (n.as_str(), ())).collect();
        for (name, t) in &self.tensors {
            if !known.contains_key(name.as_str()) {
                problems.push(format!(
                    "unexpected tensor `{name}` {:?} (not a parameter of a UNet2DModel with this config)",
                    t.shape
                ));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        const SHOW: usize = 6;
        let mut msg = format!(
            "{}: does not match the config ({} problem{}): {}",
            self.source,
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems[..problems.len().min(SHOW)].join("; ")
        );
        if problems.len() > SHOW {
            msg += &format!("; … and {} more", problems.len() - SHOW);
        }
        Err(werr(msg))
    }

    /// Serialises to safetensors bytes (metadata `{"format": "pt"}`, as diffusers writes).
    pub fn to_safetensors_bytes(&self, dtype: StoreDtype) -> Result<Vec<u8>> {
        let bytes: Vec<(&str, &[usize], Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let b: Vec<u8> = match dtype {
                    StoreDtype::F32 => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    StoreDtype::F16 => t
                        .data
                        .iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                        .collect(),
                };
                (name.as_str(), t.shape.as_slice(), b)
            })
            .collect();
        let st_dtype = match dtype {
            StoreDtype::F32 => Dtype::F32,
            StoreDtype::F16 => Dtype::F16,
        };
        let views = bytes
            .iter()
            .map(|(name, shape, b)| {
                TensorView::new(st_dtype, shape.to_vec(), b)
                    .map(|v| (*name, v))
                    .map_err(|e| werr(format!("{}: tensor `{name}`: {e}", self.source)))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize(views, Some(meta))
            .map_err(|e| werr(format!("{}: could not serialise: {e}", self.source)))
    }

    /// Writes the weights as safetensors to `w`.
    pub fn write_safetensors(&self, mut w: impl Write, dtype: StoreDtype) -> Result<()> {
        let bytes = self.to_safetensors_bytes(dtype)?;
        w.write_all(&bytes)
            .map_err(|e| werr(format!("{}: write failed: {e}", self.source)))
    }

    /// Writes the weights as a safetensors file at `path`.
    pub fn save_safetensors(&self, path: impl AsRef<Path>, dtype: StoreDtype) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_safetensors_bytes(dtype)?;
        std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
    }

    /// Writes a diffusers model directory (`config.json` + `diffusion_pytorch_model.safetensors`)
    /// that `UNet2DModel.from_pretrained(dir)` loads.
    pub fn save_dir(
        &self,
        dir: impl AsRef<Path>,
        config: &UNetConfig,
        dtype: StoreDtype,
    ) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let cfg_path = dir.join(CONFIG_FILE);
        std::fs::write(&cfg_path, config.to_json()).map_err(|e| Error::io(&cfg_path, e))?;
        self.save_safetensors(dir.join(WEIGHTS_FILE), dtype)
    }

    /// Fresh weights for training from scratch, like PyTorch's default init: conv and linear
    /// weights kaiming-uniform with a = √5 (i.e. U(±1/√fan_in)), their biases U(±1/√fan_in),
    /// GroupNorm weight 1 and bias 0. Deterministic in `seed`.
    pub fn init(config: &UNetConfig, seed: u64) -> Result<Weights> {
        config.validate()?;
        let mut rng = SplitMix64(seed ^ 0x5DEE_CE66_D1CE_4E5B);
        let mut w = Weights::new(format!("init(seed={seed})"));
        let expected = expected_params(config);
        let shapes: HashMap<&str, &[usize]> = expected
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_slice()))
            .collect();
        for (name, shape) in &expected {
            let n: usize = shape.iter().product();
            let is_norm = name.contains("norm");
            let data = if is_norm {
                let v = if name.ends_with(".weight") { 1.0 } else { 0.0 };
                vec![v; n]
            } else if name == "class_embedding.weight" {
                // nn.Embedding's unit variance (uniform on ±√3 rather than N(0, 1)).
                (0..n)
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * 3f64.sqrt()) as f32)
                    .collect()
            } else {
                // fan_in of the layer: the weight's dims after the first.
                let wname = format!(
                    "{}.weight",
                    name.trim_end_matches(".bias").trim_end_matches(".weight")
                );
                let fan_in: usize = shapes[wname.as_str()][1..].iter().product();
                let bound = 1.0 / (fan_in as f64).sqrt();
                (0..n)
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                    .collect()
            };
            let shape = shape.clone();
            w.tensors.insert(name.clone(), HostTensor { shape, data });
        }
        Ok(w)
    }
}

/// SplitMix64 for [`Weights::init`].
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> UNetConfig {
        UNetConfig::from_json(
            r#"{"sample_size": 8, "in_channels": 1, "out_channels": 1,
                "block_out_channels": [8, 16], "norm_num_groups": 4, "attention_head_dim": 4,
                "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1}"#,
        )
        .unwrap()
    }

    #[test]
    fn legacy_names_map() {
        assert_eq!(
            map_legacy_name("mid_block.attentions.0.query.weight"),
            "mid_block.attentions.0.to_q.weight"
        );
        assert_eq!(
            map_legacy_name("up_blocks.1.attentions.2.proj_attn.bias"),
            "up_blocks.1.attentions.2.to_out.0.bias"
        );
        assert_eq!(
            map_legacy_name("down_blocks.1.attentions.0.group_norm.weight"),
            "down_blocks.1.attentions.0.group_norm.weight"
        );
        // Only inside attention blocks.
        assert_eq!(map_legacy_name("key.weight"), "key.weight");
    }

    #[test]
    fn init_validates_and_roundtrips() {
        let c = tiny();
        let w = Weights::init(&c, 7).unwrap();
        w.validate(&c).unwrap();
        assert_eq!(w.num_params(), c.num_params());
        assert_eq!(w, Weights::init(&c, 7).unwrap());
        assert_ne!(
            w.tensor("conv_in.weight").unwrap(),
            Weights::init(&c, 8)
                .unwrap()
                .tensor("conv_in.weight")
                .unwrap()
        );
        // Bounds: conv_in fan_in = 1·3·3 → |w| ≤ 1/3; norms 1/0.
        let ci = w.tensor("conv_in.weight").unwrap();
        assert!(ci.data.iter().all(|v| v.abs() <= 1.0 / 3.0));
        assert!(ci.data.iter().any(|v| v.abs() > 0.25));
        let gn = w.tensor("conv_norm_out.weight").unwrap();
        assert!(gn.data.iter().all(|&v| v == 1.0));
        let gb = w
            .tensor("down_blocks.1.attentions.0.group_norm.bias")
            .unwrap();
        assert!(gb.data.iter().all(|&v| v == 0.0));
        let l2 = w.tensor("time_embedding.linear_2.bias").unwrap();
        let bound = 1.0 / (32f32).sqrt();
        assert!(l2.data.iter().all(|v| v.abs() <= bound));

        let bytes = w.to_safetensors_bytes(StoreDtype::F32).unwrap();
        let mut back = Weights::from_bytes(&bytes, "mem").unwrap();
        back.source = w.source.clone();
        assert_eq!(back, w);

        assert!(w.iter().all(|(name, _)| !back.stored_as_half(name)));

        let bytes = w.to_safetensors_bytes(StoreDtype::F16).unwrap();
        let mut back = Weights::from_bytes(&bytes, "mem").unwrap();
        assert!(w.iter().all(|(name, _)| back.stored_as_half(name)));
        // A tensor replaced with f32 data, or removed, is no longer half.
        let ci = back.tensor("conv_in.weight").unwrap().clone();
        back.insert("conv_in.weight", ci.shape, ci.data).unwrap();
        assert!(!back.stored_as_half("conv_in.weight"));
        assert!(back.stored_as_half("conv_in.bias"));
        back.remove("conv_in.bias");
        assert!(!back.stored_as_half("conv_in.bias"));
        let back = Weights::from_bytes(&bytes, "mem").unwrap();
        for (name, t) in w.iter() {
            let b = back.tensor(name).unwrap();
            assert_eq!(b.shape, t.shape);
            for (x, y) in b.data.iter().zip(&t.data) {
                assert!((x - y).abs() <= 1e-3 * y.abs() + 1e-7, "{name}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn legacy_and_current_duplicates_agree_or_are_named() {
        let c = tiny();
        let w = Weights::init(&c, 5).unwrap();
        let current = "down_blocks.1.attentions.0.to_q.weight";
        let legacy = "down_blocks.1.attentions.0.query.weight";
        let q = w.tensor(current).unwrap().clone();
        let with_legacy = |t: HostTensor| {
            let mut both = w.clone();
            both.tensors.insert(legacy.into(), t);
            both.to_safetensors_bytes(StoreDtype::F32).unwrap()
        };
        // The same tensor under both names: accepted, one copy kept.
        let back = Weights::from_bytes(&with_legacy(q.clone()), "both.safetensors").unwrap();
        back.validate(&c).unwrap();
        assert_eq!(back.tensor(current).unwrap(), &q);
        assert_eq!(back.len(), w.len());
        // Different values or shapes: refused, naming both names.
        let mut other = q.clone();
        other.data[0] += 1.0;
        let e = Weights::from_bytes(&with_legacy(other), "both.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("`{legacy}` is the legacy name of `{current}`"))
                && e.contains("different values")
                && e.contains("both.safetensors"),
            "{e}"
        );
        let short = HostTensor::new(
            vec![q.shape[0] - 1, q.shape[1]],
            vec![0.0; (q.shape[0] - 1) * q.shape[1]],
        )
        .unwrap();
        let e = Weights::from_bytes(&with_legacy(short), "both.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(legacy) && e.contains(current) && e.contains("different shapes"),
            "{e}"
        );
    }
}
