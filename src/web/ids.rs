//! Every element id the page's code names, in one place. `index.html` declares them and the
//! end-to-end tests in `web/e2e/` select them; `tests/page_ids.rs` checks that each one here is
//! declared in `index.html` exactly once and that the page declares no other.

/// Declares the id constants and [`ALL`].
macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident = $id:literal,)*) => {
        $($(#[$doc])* pub const $name: &str = $id;)*
        /// Every id above.
        pub const ALL: &[&str] = &[$($id),*];
    };
}

ids! {
    // Sampling controls.
    N_SAMPLES = "n-samples",
    SEED = "seed",
    SEED_RANDOM = "seed-random",
    /// `ddpm` | `ddim`.
    SAMPLER = "sampler",
    DDIM_OPTIONS = "ddim-options",
    DDIM_STEPS = "ddim-steps",
    DDIM_ETA = "ddim-eta",
    /// `fixed_small` | `fixed_large`.
    VARIANCE = "variance",
    CLASS_OPTIONS = "class-options",
    /// `each` or a class index.
    CLASS = "class",
    /// 0–8.
    GUIDANCE = "guidance",
    GUIDANCE_VALUE = "guidance-value",
    GENERATE = "generate",
    STOP = "stop",
    // Progress of a run.
    RUN_PROGRESS = "run-progress",
    STAT_STEPS = "stat-steps",
    STAT_RATE = "stat-rate",
    STAT_ELAPSED = "stat-elapsed",
    RUN_STATUS = "run-status",
    RUN_ERROR = "run-error",
    // Reverse-process viewer and player.
    CANVAS_XT = "canvas-xt",
    /// ε̂ over ±3σ.
    CANVAS_EPS = "canvas-eps",
    CANVAS_X0 = "canvas-x0",
    /// Frame index: 0 = x_T … last = the sample.
    VIEW_T = "view-t",
    VIEW_T_LABEL = "view-t-label",
    STEP_MATH = "step-math",
    PLAY = "play",
    STEP_BACK = "step-back",
    STEP_FWD = "step-fwd",
    REPLAY = "replay",
    /// Frames per second.
    PLAY_SPEED = "play-speed",
    // Downloads.
    EXPORT_PNG = "export-png",
    EXPORT_GIF = "export-gif",
    /// Shown where MediaRecorder exists.
    EXPORT_WEBM = "export-webm",
    EXPORT_NPY = "export-npy",
    // Compare mode.
    /// Checkbox.
    COMPARE = "compare",
    /// `ddim-0` | `ddim-1` | `ddpm-small` | `ddpm-large`.
    COMPARE_WITH = "compare-with",
    COMPARE_VIEW = "compare-view",
    CMP_XT = "cmp-xt",
    CMP_DIFF = "cmp-diff",
    CMP_X0 = "cmp-x0",
    CMP_LABEL = "cmp-label",
    // Forward process, noise-then-denoise, loss per timestep, drawing pad.
    FWD_IMAGE = "fwd-image",
    /// Timestep, 0..T−1.
    FWD_T = "fwd-t",
    FWD_T_LABEL = "fwd-t-label",
    FWD_X0 = "fwd-x0",
    FWD_XT = "fwd-xt",
    FWD_PLOT = "fwd-plot",
    FWD_STATS = "fwd-stats",
    SCHEDULE_INFO = "schedule-info",
    FWD_DENOISE = "fwd-denoise",
    FWD_RECON_VIEW = "fwd-recon-view",
    FWD_RECON = "fwd-recon",
    FWD_DIFF = "fwd-diff",
    /// Carries `data-mse`.
    FWD_RECON_STATS = "fwd-recon-stats",
    LOSS_RUN = "loss-run",
    LOSS_VIEW = "loss-view",
    LOSS_PLOT = "loss-plot",
    LOSS_STATS = "loss-stats",
    DRAW_PAD = "draw-pad",
    /// Adds "Your drawing" to `fwd-image`.
    DRAW_USE = "draw-use",
    DRAW_CLEAR = "draw-clear",
    // Model.
    /// The shipped models' folders.
    MODEL_MENU = "model-menu",
    MODEL_STATUS = "model-status",
    MODEL_PROGRESS = "model-progress",
    MODEL_INFO = "model-info",
    MODEL_FILES = "model-files",
    MODEL_DROP = "model-drop",
    MODEL_ERROR = "model-error",
    /// The default model's `data-note`, e.g. "untrained placeholder".
    MODEL_NOTE = "model-note",
    /// A Hub id, `owner/name[@revision]`.
    HUB_ID = "hub-id",
    /// The DDPM paper's models.
    HUB_MENU = "hub-menu",
    HUB_LOAD = "hub-load",
    // GPU.
    GPU_STATUS = "gpu-status",
    GPU_ERROR = "gpu-error",
    GPU_INFO = "gpu-info",
}
