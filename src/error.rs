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
    /// A tensor op refused one of its operands: `op` names the op (`conv2d`, `attention`…),
    /// `operand` the argument (`x`, `weight`, `bias`, `qkv`, `out`…), `reason` what is wrong.
    #[error("{op}: {operand}: {reason}")]
    Operand {
        op: String,
        operand: &'static str,
        reason: String,
    },
    /// An op was asked for something its kernels do not implement (a kernel size or stride, a
    /// size past u32 indexing or the workgroup grid, kernel timing in the browser).
    #[error("{op}: {what}")]
    Unsupported { op: String, what: String },
    /// A dataset cannot be read or used: `what` names the file, dataset or batch sampler.
    #[error("{what}: {reason}")]
    Data { what: String, reason: String },
    /// A file or stream is not valid `format` (`npy`, `JSON`, `GIF`…) or cannot be encoded as
    /// it: `what` names the file or stream.
    #[error("{what}: {reason}")]
    Format {
        format: &'static str,
        what: String,
        reason: String,
    },
    /// A sampling, schedule, generation or training setting that cannot be used: `name` says
    /// which (`eta`, `steps`, `guidance`, `class labels`…), `reason` is the whole sentence.
    #[error("{reason}")]
    Setting { name: &'static str, reason: String },
    /// Training diverged: the loss of `step` was not finite.
    #[error(
        "the loss became {loss} at step {step}: training diverged (try a lower --lr); the last \
         checkpoint is kept"
    )]
    Diverged { step: u64, loss: f32 },
    /// An op's output shares its buffer with another of its bindings (`other`: an input or a
    /// second output), which a dispatch must not do.
    #[error(
        "{op}: {output} and {other} are the same buffer (an output must not alias another binding)"
    )]
    Alias {
        op: String,
        output: String,
        other: String,
    },
    /// Any other invalid argument, not yet typed (an unprepared generator).
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

    /// An [`Error::Operand`].
    pub fn operand(
        op: impl Into<String>,
        operand: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        Error::Operand {
            op: op.into(),
            operand,
            reason: reason.into(),
        }
    }

    /// An [`Error::Unsupported`].
    pub fn unsupported(op: impl Into<String>, what: impl Into<String>) -> Self {
        Error::Unsupported {
            op: op.into(),
            what: what.into(),
        }
    }

    /// An [`Error::Data`].
    pub fn data(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Data {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Format`].
    pub fn format(
        format: &'static str,
        what: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Format {
            format,
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Setting`].
    pub fn setting(name: &'static str, reason: impl Into<String>) -> Self {
        Error::Setting {
            name,
            reason: reason.into(),
        }
    }
}
