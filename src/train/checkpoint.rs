//! Training checkpoints: one safetensors file holding the parameters, AdamW moments and EMA
//! weights, with the trainer state (step, options, configs, data position) as JSON metadata.
//! Written to a temporary file, synced, then renamed over the old one, so an interruption at
//! any moment leaves either the previous or the new checkpoint, never a broken one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::{TrainOptions, Trainer};
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

/// A loaded checkpoint.
pub struct Checkpoint {
    pub state: State,
    /// `set/name` → (shape, data), sets: param, adam_m, adam_v, ema.
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Checkpoint {
    pub fn config(&self) -> Result<UNetConfig> {
        UNetConfig::from_json(&self.state.config)
    }

    pub fn scheduler(&self) -> Result<SchedulerConfig> {
        SchedulerConfig::from_json(&self.state.scheduler)
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
                    .map_err(|e| Error::Invalid(format!("checkpoint tensor {k}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = HashMap::from([(
            STATE_KEY.to_string(),
            serde_json::to_string(&state).expect("state serialises"),
        )]);
        let bytes = safetensors::serialize(views, Some(meta))
            .map_err(|e| Error::Invalid(format!("could not serialise the checkpoint: {e}")))?;
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
    let bad = |what: String| {
        Error::Weights(format!(
            "{}: not a usable checkpoint: {what}",
            path.display()
        ))
    };
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let state_json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| bad(format!("no {STATE_KEY} metadata")))?;
    let state: State = serde_json::from_str(state_json).map_err(|e| bad(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor {name} is {:?}, expected F32",
                view.dtype()
            )));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(name.to_string(), (view.shape().to_vec(), data));
    }
    Ok(Checkpoint { state, tensors })
}

/// Writes `bytes` to `path` via a synced temporary file and a rename: the old file survives
/// any failure (full disk included), and the error names the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
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
