//! Deterministic shuffling batch sampler. Each epoch visits every index exactly once in an order
//! fixed by `(seed, epoch)`; batches run on across epoch ends, so every batch is full. The whole
//! state is [`BatcherState`] (four integers), so a training run resumes exactly.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// SplitMix64 finaliser.
#[inline]
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes two words into one (order matters).
#[inline]
pub(crate) fn mix64(a: u64, b: u64) -> u64 {
    splitmix(a ^ splitmix(b ^ 0x6A09_E667_F3BC_C909))
}

/// Where a [`Batcher`] stands; serialise it with the checkpoint to resume exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatcherState {
    /// Shuffle seed.
    pub seed: u64,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Indices of this epoch's order already drawn, `0..len`.
    pub position: u64,
    /// Dataset length the state belongs to.
    pub len: u64,
}

/// One batch: dataset indices plus a seed for augmentation (flips) that is fixed by the
/// batcher state, so a resumed run draws the same batch with the same flips.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Dataset indices, `batch_size` of them.
    pub indices: Vec<usize>,
    /// Per-batch seed for [`super::Dataset::batch_with`].
    pub seed: u64,
    /// Epoch the batch started in.
    pub epoch: u64,
}

/// Shuffling sampler over `0..len`.
#[derive(Clone, Debug)]
pub struct Batcher {
    state: BatcherState,
    order: Vec<usize>,
}

impl Batcher {
    /// A sampler over `len` items at epoch 0, position 0.
    pub fn new(len: usize, seed: u64) -> Result<Self> {
        Self::from_state(BatcherState {
            seed,
            epoch: 0,
            position: 0,
            len: len as u64,
        })
    }

    /// Restores a saved state (a position at the epoch's end moves to the next epoch's start).
    pub fn from_state(mut state: BatcherState) -> Result<Self> {
        if state.len == 0 {
            return Err(Error::data("batch sampler", "the dataset has no images"));
        }
        let len = usize::try_from(state.len)
            .map_err(|_| Error::data("batch sampler", format!("length {} too large", state.len)))?;
        if state.position > state.len {
            return Err(Error::data(
                "batch sampler state",
                format!(
                    "position {} beyond the epoch length {}",
                    state.position, state.len
                ),
            ));
        }
        if state.position == state.len {
            state.epoch = state
                .epoch
                .checked_add(1)
                .ok_or_else(|| Error::data("batch sampler state", "epoch counter overflow"))?;
            state.position = 0;
        }
        let order = Self::order(state.seed, state.epoch, len);
        Ok(Batcher { state, order })
    }

    /// Restores a saved state for a dataset of `len` images, refusing a state saved for
    /// another length.
    pub fn resume(state: BatcherState, len: usize) -> Result<Self> {
        if state.len != len as u64 {
            return Err(Error::data(
                "batch sampler state",
                format!("saved for {} images, the dataset has {len}", state.len),
            ));
        }
        Self::from_state(state)
    }

    /// The state to save.
    pub fn state(&self) -> BatcherState {
        self.state
    }

    /// Current epoch.
    pub fn epoch(&self) -> u64 {
        self.state.epoch
    }

    /// Items drawn from the current epoch so far.
    pub fn position(&self) -> usize {
        self.state.position as usize
    }

    /// Dataset length.
    pub fn dataset_len(&self) -> usize {
        self.order.len()
    }

    /// This epoch's visiting order, a permutation of `0..len`.
    pub fn epoch_order(&self) -> &[usize] {
        &self.order
    }

    /// Draws the next `batch_size` indices (crossing into the next epoch where needed).
    pub fn next_batch(&mut self, batch_size: usize) -> Batch {
        let mut indices = vec![0; batch_size];
        let (seed, epoch) = self.fill(&mut indices);
        Batch {
            indices,
            seed,
            epoch,
        }
    }

    /// Fills `out` with the next indices; returns `(batch seed, epoch at start)`.
    pub fn fill(&mut self, out: &mut [usize]) -> (u64, u64) {
        let s = self.state;
        let seed = mix64(mix64(s.seed, s.epoch), s.position);
        for slot in out.iter_mut() {
            *slot = self.order[self.state.position as usize];
            self.state.position += 1;
            if self.state.position == self.state.len {
                self.state.epoch = self.state.epoch.wrapping_add(1);
                self.state.position = 0;
                self.order = Self::order(self.state.seed, self.state.epoch, self.order.len());
            }
        }
        (seed, s.epoch)
    }

    /// Fisher–Yates shuffle of `0..len` seeded by `(seed, epoch)`.
    fn order(seed: u64, epoch: u64, len: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..len).collect();
        let mut z = mix64(seed, epoch);
        for i in (1..len).rev() {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let r = splitmix(z);
            let j = ((r as u128 * (i as u128 + 1)) >> 64) as usize;
            order.swap(i, j);
        }
        order
    }
}
