//! The page's states, each shown in one `<body data-*>` attribute: the interface `web/e2e/`
//! waits on (and CSS may style by). [`show`] is the one place that writes them.

use super::dom;

/// A state machine whose current state the page shows as `<body data-{KEY}="{name}">`.
pub trait BodyState: Copy {
    const KEY: &'static str;
    fn name(self) -> &'static str;
}

/// Writes `state` to its `<body data-*>` attribute.
pub fn show<S: BodyState>(state: S) {
    if let Some(body) = dom::document().body() {
        let _ = body.set_attribute(&format!("data-{}", S::KEY), state.name());
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
