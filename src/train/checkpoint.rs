//! Training checkpoints: one safetensors file holding the parameters, AdamW moments and EMA
//! weights, with the trainer state (step, options, configs, data position) as JSON metadata.
//! Written to a temporary file, synced, then renamed over the old one, so an interruption at
//! any moment leaves either the previous or the new checkpoint, never a broken one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::{master_params, TrainOptions, Trainer, MAX_STEPS};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::model::UNetConfig;
use crate::schedule::SchedulerConfig;

const STATE_KEY: &str = "ddpm_trainer_state";
const SETS: [&str; 4] = ["param", "adam_m", "adam_v", "ema"];

/// What a checkpoint records besides tensors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub step: u64,
    pub options: TrainOptions,
    /// The model's config.json.
    pub config: String,
    /// The scheduler_config.json.
    pub scheduler: String,
    /// Caller state (e.g. the data batcher's position), restored verbatim.
    pub extra: serde_json::Value,
    /// The kernel variants the run used (`Gpu::kernel_choices`); a resume pins them so that it
    /// computes exactly what the uninterrupted run would have. Empty in older checkpoints.
    #[serde(default)]
    pub kernels: BTreeMap<String, String>,
}

/// A loaded checkpoint, validated: its configs parse, its options and step are in range, and
/// it holds exactly the tensors of a trainer of its config (every set, name and shape, F32).
pub struct Checkpoint {
    pub state: State,
    config: UNetConfig,
    scheduler: SchedulerConfig,
    /// `set/name` → (shape, data), sets: param, adam_m, adam_v, ema.
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Checkpoint {
    /// The model's config (validated when the checkpoint was read).
    pub fn config(&self) -> Result<UNetConfig> {
        Ok(self.config.clone())
    }

    /// The noise schedule (validated when the checkpoint was read).
    pub fn scheduler(&self) -> Result<SchedulerConfig> {
        Ok(self.scheduler.clone())
    }

    /// The trained parameters in diffusers' naming (to build a [`Trainer`] from).
    pub fn weights(&self) -> Result<crate::model::Weights> {
        let mut master: Vec<_> = self
            .tensors
            .iter()
            .filter_map(|(k, (s, d))| {
                k.strip_prefix("param/")
                    .map(|n| (n.to_string(), s.clone(), d.clone()))
            })
            .collect();
        master.sort_by(|a, b| a.0.cmp(&b.0));
        super::from_master("checkpoint", master)
    }
}

impl Trainer {
    fn sets(&self) -> [&HashMap<String, Tensor>; 4] {
        [&self.params.master, &self.adam_m, &self.adam_v, &self.ema]
    }

    /// Writes a checkpoint atomically to `path`.
    pub async fn save_checkpoint(
        &self,
        gpu: &Gpu,
        path: &Path,
        extra: serde_json::Value,
    ) -> Result<()> {
        let state = State {
            step: self.step,
            options: self.options,
            config: self.config.to_json(),
            scheduler: self.scheduler.to_json(),
            extra,
            kernels: gpu.kernel_choices(),
        };
        let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (set, tensors) in SETS.iter().zip(self.sets()) {
            for n in &self.names {
                let t = &tensors[n];
                let bytes = gpu.read_bytes(&t.buffer, 0, t.bytes()).await?;
                data.push((format!("{set}/{n}"), t.shape.clone(), bytes));
            }
        }
        let views = data
            .iter()
            .map(|(k, s, b)| {
                TensorView::new(Dtype::F32, s.clone(), b)
                    .map(|v| (k.as_str(), v))
                    .map_err(|e| {
                        Error::format(
                            "safetensors",
                            format!("checkpoint tensor {k}"),
                            e.to_string(),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = HashMap::from([(
            STATE_KEY.to_string(),
            serde_json::to_string(&state).expect("state serialises"),
        )]);
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| {
            Error::format(
                "safetensors",
                "checkpoint",
                format!("could not serialise: {e}"),
            )
        })?;
        write_atomic(path, &bytes)
    }

    /// Restores moments, EMA, parameters and the step from `ckpt` (which must come from a
    /// trainer of the same config).
    pub fn restore(&mut self, gpu: &Gpu, ckpt: &Checkpoint) -> Result<()> {
        for (set, tensors) in SETS.iter().zip(self.sets()) {
            for n in &self.names {
                let key = format!("{set}/{n}");
                let (shape, data) = ckpt
                    .tensors
                    .get(&key)
                    .ok_or_else(|| Error::Weights(format!("checkpoint lacks tensor {key}")))?;
                crate::ops::same_shape(&key, &tensors[n].shape, shape)?;
                tensors[n].write(gpu, data)?;
            }
        }
        self.step = ckpt.state.step;
        // Packed conv weights follow the restored parameters.
        gpu.submit(&self.repack);
        Ok(())
    }
}

/// Reads a checkpoint written by [`Trainer::save_checkpoint`].
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(&bytes, &path.display().to_string())
}

/// Parses and validates checkpoint bytes (see [`Checkpoint`]); `source` names them in errors.
pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Checkpoint> {
    let bad = |what: String| Error::Weights(format!("{source}: not a usable checkpoint: {what}"));
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let state_json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| bad(format!("no {STATE_KEY} metadata")))?;
    let state: State = serde_json::from_str(state_json).map_err(|e| bad(e.to_string()))?;
    if state.step > MAX_STEPS {
        return Err(bad(format!(
            "step {} is beyond the {MAX_STEPS} steps a run may take",
            state.step
        )));
    }
    let in_ckpt = |e: Error, what: &str| match e {
        Error::Config { key, value, reason } => Error::Config {
            key,
            value,
            reason: format!("{reason} (in the {what} of checkpoint {source})"),
        },
        e => bad(format!("{what}: {e}")),
    };
    state
        .options
        .validate()
        .map_err(|e| in_ckpt(e, "training options"))?;
    let config = UNetConfig::from_json(&state.config).map_err(|e| in_ckpt(e, "model config"))?;
    let scheduler =
        SchedulerConfig::from_json(&state.scheduler).map_err(|e| in_ckpt(e, "scheduler config"))?;

    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let expected: HashMap<String, Vec<usize>> = SETS
        .iter()
        .flat_map(|set| {
            master_params(&config)
                .into_iter()
                .map(move |(n, shape)| (format!("{set}/{n}"), shape))
        })
        .collect();
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let Some(shape) = expected.get(&name) else {
            return Err(bad(format!(
                "unexpected tensor `{name}` (not a training tensor of its model config)"
            )));
        };
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor `{name}` is {:?}, expected F32",
                view.dtype()
            )));
        }
        if view.shape() != shape.as_slice() {
            return Err(bad(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if data.len() != shape.iter().product::<usize>() {
            return Err(bad(format!(
                "tensor `{name}` has the wrong number of bytes"
            )));
        }
        tensors.insert(name, (shape.clone(), data));
    }
    let mut missing: Vec<&String> = expected
        .keys()
        .filter(|k| !tensors.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(bad(format!(
            "{} tensor(s) missing, e.g. `{}`",
            missing.len(),
            missing[0]
        )));
    }
    Ok(Checkpoint {
        state,
        config,
        scheduler,
        tensors,
    })
}

/// Writes `bytes` to `path` via a synced temporary file ([`temp_path`]) and a rename: the old
/// file survives any failure (full disk included), and the error names the path. A process
/// killed mid-write leaves the temporary behind; [`remove_stale_temps`] cleans it up.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// The temporary file [`write_atomic`] fills before renaming it to `path`: `path` + `.tmp`
/// (`checkpoint.safetensors.tmp`).
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Removes the temporaries that killed [`write_atomic`]s of `paths` left behind (the
/// [`temp_path`] and the `name.tmp` of earlier versions, e.g. `checkpoint.tmp`); other files
/// are never touched. Returns the removed files.
pub fn remove_stale_temps(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for path in paths {
        for tmp in [temp_path(path), path.with_extension("tmp")] {
            if tmp.is_file() {
                std::fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
                removed.push(tmp);
            }
        }
    }
    Ok(removed)
}
