//! Why a page action failed, typed until it reaches the DOM: the message element shows its
//! `Display`, and code that needs to tell failures apart matches the variant, not the text.

use std::fmt;

use wasm_bindgen::{JsCast, JsValue};

/// A failed page action.
#[derive(Debug)]
pub enum PageError {
    /// WebGPU is missing, or gave no adapter or device (the text says which and what to do).
    NoGpu(String),
    /// An action that needs a model ran without one.
    NoModel,
    /// An action that needs a run's results (`what`) ran before there were any.
    Nothing(&'static str),
    /// The engine refused or failed (config, weights, shapes, a GPU op), while `doing` if given.
    Engine {
        doing: Option<&'static str>,
        source: crate::Error,
    },
    /// A browser API failed while `doing`.
    Browser {
        doing: &'static str,
        message: String,
    },
    /// A file (URL or the user's file `name`) could not be fetched or read.
    File { name: String, reason: String },
    /// The user's input does not fit the model or the action (the text says why).
    Input(String),
    /// The action failed because the GPU device was lost meanwhile (the failure it caused).
    DeviceLost(Box<PageError>),
}

/// A page action's result.
pub type PageResult<T> = Result<T, PageError>;

impl PageError {
    /// A browser API failure from its JS exception.
    pub fn browser(doing: &'static str, value: JsValue) -> Self {
        PageError::Browser {
            doing,
            message: js_message(value),
        }
    }

    /// A file failure.
    pub fn file(name: impl Into<String>, reason: impl Into<String>) -> Self {
        PageError::File {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// An engine failure while `doing`.
    pub fn engine(doing: &'static str) -> impl FnOnce(crate::Error) -> Self {
        move |source| PageError::Engine {
            doing: Some(doing),
            source,
        }
    }
}

impl From<crate::Error> for PageError {
    fn from(source: crate::Error) -> Self {
        PageError::Engine {
            doing: None,
            source,
        }
    }
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::NoGpu(why) => write!(f, "WebGPU unavailable: {why}"),
            PageError::NoModel => write!(f, "No model loaded: load one below."),
            PageError::Nothing(what) => write!(f, "no {what} yet"),
            PageError::Engine {
                doing: Some(doing),
                source,
            } => write!(f, "{doing}: {source}"),
            PageError::Engine {
                doing: None,
                source,
            } => write!(f, "{source}"),
            PageError::Browser { doing, message } => write!(f, "{doing}: {message}"),
            PageError::File { name, reason } => write!(f, "{name}: {reason}"),
            PageError::Input(why) => write!(f, "{why}"),
            PageError::DeviceLost(e) => write!(
                f,
                "{e} (the GPU device was lost; press Generate to retry on a new device)"
            ),
        }
    }
}

impl std::error::Error for PageError {}

/// The message of a JS exception (an `Error`'s message, a thrown string, or its debug form).
pub fn js_message(value: JsValue) -> String {
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
