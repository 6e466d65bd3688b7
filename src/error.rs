//! The crate's error type: every failure is a value whose message names what is wrong.

use thiserror::Error;

/// Everything that can go wrong in the engine.
#[derive(Debug, Error)]
pub enum Error {
    /// No usable GPU adapter (WebGPU missing in the browser, no Vulkan driver natively…).
    #[error("no GPU adapter available: {0}")]
    NoAdapter(String),
    /// The adapter refused to create a device.
    #[error("could not create GPU device: {0}")]
    Device(String),
    /// The GPU reported an error (validation, out of memory, device lost).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// A buffer or binding would exceed a device limit.
    #[error(
        "{what} needs {needed} bytes but the device allows at most {limit} bytes ({limit_name})"
    )]
    Limit {
        what: String,
        needed: u64,
        limit: u64,
        limit_name: &'static str,
    },
    /// A tensor has the wrong shape.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    Shape {
        what: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A model config value we cannot run.
    #[error("unsupported config: `{key}` = {value}: {reason}")]
    Config {
        key: String,
        value: String,
        reason: String,
    },
    /// A weights file problem (corrupt file, missing tensor, wrong dtype).
    #[error("weights: {0}")]
    Weights(String),
    /// A model on the Hugging Face Hub could not be fetched (URL, status, what was found).
    #[error("Hub: {0}")]
    Hub(String),
    /// Any other invalid argument.
    #[error("{0}")]
    Invalid(String),
    /// I/O with the path that failed. The I/O error is part of the message, not a separate
    /// `source()`, so error chains (`{:#}`) print it once.
    #[error("{path}: {reason}")]
    Io {
        path: String,
        reason: std::io::Error,
    },
}

/// Crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            reason: source,
        }
    }
}
