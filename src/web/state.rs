//! The page's states, each shown in one `<body data-*>` attribute: the interface `web/e2e/`
//! waits on (and CSS may style by). The page keeps each current state in a [`Current`], whose
//! [`Current::set`] is the one place that writes them, so an attribute never disagrees with
//! what the page believes.

use std::cell::Cell;

use super::dom;

/// A state machine whose current state the page shows as `<body data-{KEY}="{name}">`.
pub trait BodyState: Copy {
    const KEY: &'static str;
    fn name(self) -> &'static str;
}

/// The current state of one [`BodyState`] machine.
pub struct Current<S>(Cell<S>);

impl<S: BodyState> Current<S> {
    /// Holds `initial` without showing it.
    pub const fn new(initial: S) -> Self {
        Current(Cell::new(initial))
    }

    pub fn get(&self) -> S {
        self.0.get()
    }

    /// Stores `state` and writes it to its `<body data-*>` attribute.
    pub fn set(&self, state: S) {
        self.0.set(state);
        if let Some(body) = dom::document().body() {
            let _ = body.set_attribute(&format!("data-{}", S::KEY), state.name());
        }
    }
}

/// Declares a state enum with its attribute key and attribute values.
macro_rules! body_state {
    ($(#[$doc:meta])* $name:ident = $key:literal { $($(#[$vdoc:meta])* $variant:ident = $value:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl BodyState for $name {
            const KEY: &'static str = $key;
            fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $value),+
                }
            }
        }
    };
}

body_state! {
    /// The WebGPU device.
    GpuState = "gpu" {
        Pending = "pending",
        Ready = "ready",
        /// No adapter (or no WebGPU at all).
        Unavailable = "unavailable",
        /// The device was lost; the next run creates a new one.
        Lost = "lost",
    }
}

body_state! {
    /// The loaded model.
    ModelState = "model" {
        None = "none",
        Loading = "loading",
        Ready = "ready",
        /// The last load failed (an earlier model may still be in use).
        Error = "error",
    }
}

body_state! {
    /// A reverse-process run (Generate, denoise, compare).
    RunState = "run" {
        Idle = "idle",
        Running = "running",
        /// Stop was pressed: the run ends after its current chunk (shown as running until then).
        Stopping = "running",
        Done = "done",
        Stopped = "stopped",
        Error = "error",
    }
}

body_state! {
    /// Trajectory playback.
    PlayState = "play" {
        Playing = "playing",
        Paused = "paused",
    }
}

body_state! {
    /// The loss-per-timestep measurement.
    LossState = "loss" {
        Idle = "idle",
        Running = "running",
        Done = "done",
        Error = "error",
    }
}
