//! The browser demo (wasm32 only). Page layout: `index.html`; styles: `web/style.css`; build:
//! `Trunk.toml`; end-to-end tests: `web/e2e/`. This module holds the page's state ([`App`]),
//! the entry point and the test hooks; by concern:
//! - [`device`]: the WebGPU device and its loss; [`controls`]: events, keys, settings;
//! - [`generate`]: Generate, denoise-from-t and compare runs over [`engine`] (U-Net + sampler),
//!   filling [`crate::generation::Frames`]; [`viewer`], [`player`], [`export`]: showing, playing and saving them;
//! - [`forward_view`] over [`forward`] (q(x_t | x_0) of examples, samples and [`draw_pad`]
//!   drawings), [`loss_view`]: L_simple per timestep;
//! - [`loading`] over [`files`]: model folders, the Hub, the user's files;
//! - [`dom`], [`draw`]: element access and canvas pixels.
//!
//! Element ids: [`ids`], the one list of them (`web/e2e/` selects the same).
//!
//! `<body>` carries the page state ([`state`]): `data-gpu` = pending | ready | unavailable | lost,
//! `data-run` = idle | running | done | stopped | error, `data-model` = none | loading | ready | error,
//! `data-play` = playing | paused, `data-loss` = idle | running | done | error.
//! Test hooks on `window.ddpm`: [`debug_lose_device`], [`debug_last_samples`],
//! [`debug_last_shape`], [`debug_frame`], [`debug_compare_frame`], [`debug_loss_curve`],
//! [`debug_max_batch`],
//! [`debug_engine_stats`].

mod controls;
mod device;
mod dom;
mod draw;
mod draw_pad;
mod engine;
mod error;
mod export;
mod files;
mod forward;
mod forward_view;
mod generate;
pub mod ids;
mod loading;
mod loss_view;
mod player;
mod run;
mod state;
mod viewer;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{HtmlInputElement, HtmlSelectElement, KeyboardEvent};

use crate::generation::{Frames, Generation, Request};
use crate::gpu::Gpu;
use crate::sampler::{SamplerKind, SamplerPlan, SnapshotData, EPS_RANGE};
use crate::schedule::{SchedulerConfig, VarianceType};
use engine::{Engine, Model};
use error::{PageError, PageResult};
use files::ModelFiles;
use forward::Forward;
use run::RunConfig;
use state::{Current, GpuState, LossState, ModelState, RunState};

use controls::*;
use device::*;
use forward_view::*;
use generate::*;
use loading::*;
use viewer::*;

/// Frames kept for the slider: at most this many bytes (quantized x_t, x̂_0 and ε̂).
const FRAME_BUDGET: usize = 128 << 20;
/// Aim for chunks of GPU work of about this many milliseconds between yields.
const CHUNK_TARGET_MS: f64 = 60.0;
/// Largest chunk of steps between two yields.
const MAX_CHUNK: usize = 200;

/// A frame waiting to be drawn: its label and pictures.
struct LiveFrame {
    label: String,
    pictures: Pictures,
    target: Target,
}

/// Which run a Generate's pass fills: the main one, or compare mode's second run.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Main,
    Compare,
}

/// The viewer's three grids of one frame, quantized (`eps` over ±[`EPS_RANGE`]).
#[derive(Clone)]
struct Pictures {
    x: Vec<u8>,
    x0: Vec<u8>,
    eps: Vec<u8>,
    shape: [usize; 4],
}

/// The noise schedule as the page shows it (timesteps t = 0..T−1).
struct ScheduleView {
    abar: Vec<f32>,
    betas: Vec<f32>,
    log_snr: Vec<f32>,
    /// Multi-line description for `#schedule-info`.
    info: String,
}

impl ScheduleView {
    fn new(cfg: &SchedulerConfig) -> Self {
        let (abar, betas) = match cfg.schedule() {
            Ok(s) => (s.alphas_cumprod(), s.betas()),
            Err(_) => (vec![1.0], vec![0.0]), // validated when the model loaded
        };
        let log_snr = abar.iter().map(|&a| (a / (1.0 - a)).ln()).collect();
        let last = abar.len() - 1;
        let clip = match cfg.clip() {
            Some(r) => format!("clip x̂0 to ±{r}"),
            None => "no clipping".into(),
        };
        let info = format!(
            "{} β {:e} → {} · T = {}\nσ² {} · {clip}\nᾱ_{last} = {:.2e} · SNR = {:.2e}",
            cfg.beta_schedule.name(),
            cfg.beta_start,
            cfg.beta_end,
            cfg.num_train_timesteps,
            cfg.variance_type.name(),
            abar[last],
            abar[last] / (1.0 - abar[last]),
        );
        ScheduleView {
            abar,
            betas,
            log_snr,
            info,
        }
    }
}

/// The page's state. Lives in a thread-local (the page has one thread).
struct App {
    gpu: RefCell<Option<Rc<Gpu>>>,
    gpu_state: Current<GpuState>,
    /// The current model…
    model: RefCell<Option<Rc<Model>>>,
    /// …the state of the latest load…
    model_state: Current<ModelState>,
    /// …and, on the current device, its weights, forward plan and sampler (taken out while a
    /// Generate runs).
    engine: RefCell<Option<Engine>>,
    /// Load counter (model ids).
    loads: Cell<u64>,
    /// Largest batch per GPU pass (test hook [`debug_max_batch`]; the device's limits also cap it).
    batch_cap: Cell<usize>,
    schedule: RefCell<Rc<ScheduleView>>,
    frames: RefCell<Option<Frames>>,
    /// Compare mode: the second run's frames.
    compare_frames: RefCell<Option<Frames>>,
    /// Final samples of the last finished Generate, `[N, C, H, W]`.
    last_samples: RefCell<Option<(Vec<f32>, [usize; 4])>>,
    /// The plan of the last Generate (for the update the slider's frame takes).
    last_plan: RefCell<Option<SamplerPlan>>,
    /// Latest frame of the running Generate, waiting for the animation frame that draws it
    /// (requested when a frame starts waiting, see [`show_live`]).
    live: RefCell<Option<LiveFrame>>,
    /// Generate, denoise or compare; one at a time, and not during a loss measurement.
    run: Current<RunState>,
    loss: Current<LossState>,
    fwd: RefCell<Rc<Forward>>,
    fwd_view: Cell<ForwardView>,
}

impl App {
    /// Whether a reverse-process run or a loss measurement holds the GPU.
    fn busy(&self) -> bool {
        matches!(self.run.get(), RunState::Running | RunState::Stopping)
            || self.loss.get() == LossState::Running
    }

    /// Whether a device exists or can be created again (after a loss).
    fn gpu_usable(&self) -> bool {
        self.gpu.borrow().is_some() || self.gpu_state.get() == GpuState::Lost
    }
}

thread_local! {
    static APP: Rc<App> = Rc::new(App {
        gpu: RefCell::new(None),
        gpu_state: Current::new(GpuState::Pending),
        model: RefCell::new(None),
        model_state: Current::new(ModelState::None),
        engine: RefCell::new(None),
        loads: Cell::new(0),
        batch_cap: Cell::new(usize::MAX),
        schedule: RefCell::new(Rc::new(ScheduleView::new(&SchedulerConfig::default()))),
        frames: RefCell::new(None),
        compare_frames: RefCell::new(None),
        last_samples: RefCell::new(None),
        last_plan: RefCell::new(None),
        live: RefCell::new(None),
        run: Current::new(RunState::Idle),
        loss: Current::new(LossState::Idle),
        fwd: RefCell::new(Rc::new(Forward::new())),
        fwd_view: Cell::new(ForwardView::Idle),
    });
}

/// Counts GPU devices created, so a late "device lost" from a replaced device is ignored.
static GPU_GENERATION: AtomicU32 = AtomicU32::new(0);

fn app() -> Rc<App> {
    APP.with(Rc::clone)
}

/// Entry point, run when the wasm module is instantiated.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    // The states index.html's <body> starts in, now owned by the module.
    let app = app();
    app.gpu_state.set(GpuState::Pending);
    app.model_state.set(ModelState::None);
    app.run.set(RunState::Idle);
    app.loss.set(LossState::Idle);
    player::pause();
    wire_controls();
    show_schedule();
    refresh_forward_menu();
    update_forward();
    spawn_local(async {
        let _ = ensure_gpu().await;
        load_default_model().await;
    });
}

/// Test hook: destroys the current GPU device, as a driver reset would (`device.destroy()`).
#[wasm_bindgen]
pub fn debug_lose_device() {
    if let Some(gpu) = app().gpu.borrow().as_ref() {
        gpu.device.destroy();
    }
}

/// Test hook: the final samples of the last finished Generate as f32 `[N, C, H, W]` values in
/// [−1, 1] (empty if none), e.g. to compare with `ddpm sample --npy`.
#[wasm_bindgen]
pub fn debug_last_samples() -> Vec<f32> {
    app()
        .last_samples
        .borrow()
        .as_ref()
        .map_or(Vec::new(), |(x, _)| x.clone())
}

/// Test hook: the shape `[N, C, H, W]` of [`debug_last_samples`] (empty if none).
#[wasm_bindgen]
pub fn debug_last_shape() -> Vec<u32> {
    app()
        .last_samples
        .borrow()
        .as_ref()
        .map_or(Vec::new(), |(_, s)| s.iter().map(|&d| d as u32).collect())
}

/// Test hook: slot `i` of the viewer's frames as f32, `[x_t | x̂0 | ε̂]` (each `[N, C, H, W]`,
/// decoded from the stored bytes; empty if there is no such frame).
#[wasm_bindgen]
pub fn debug_frame(i: usize) -> Vec<f32> {
    frame_values(&app().frames, i)
}

/// Test hook: [`debug_frame`] of compare mode's second run.
#[wasm_bindgen]
pub fn debug_compare_frame(i: usize) -> Vec<f32> {
    frame_values(&app().compare_frames, i)
}

fn frame_values(store: &RefCell<Option<Frames>>, i: usize) -> Vec<f32> {
    let frames = store.borrow();
    let Some(f) = frames.as_ref().filter(|f| i < f.len()) else {
        return Vec::new();
    };
    let decode = |q: &[u8], range: f32| {
        SnapshotData::U8 {
            bytes: q.to_vec(),
            range,
        }
        .to_f32()
    };
    [
        decode(f.x(i), 1.0),
        decode(f.x0(i), 1.0),
        decode(f.eps(i), EPS_RANGE),
    ]
    .concat()
}

/// Test hook: the last loss-per-timestep curve, `[t0, loss0, t1, loss1, …]` (empty if none).
#[wasm_bindgen]
pub fn debug_loss_curve() -> Vec<f64> {
    loss_view::last_curve()
}

/// Test hook: samples at most `k` images per GPU pass (0: no cap), as if the device's limits
/// allowed no more, so a Generate runs in several batches.
#[wasm_bindgen]
pub fn debug_max_batch(k: usize) {
    app().batch_cap.set(if k == 0 { usize::MAX } else { k });
}

/// Test hook: `[forward passes recorded, samplers created]` by the current engine (empty if
/// none); repeated Generates with unchanged settings reuse both.
#[wasm_bindgen]
pub fn debug_engine_stats() -> Vec<u32> {
    app().engine.borrow().as_ref().map_or(Vec::new(), |e| {
        let g = &e.generator;
        vec![g.plans_recorded as u32, g.samplers_created as u32]
    })
}

/// Enables Generate when a device exists (or can be recreated), a model is loaded and no run is
/// in progress.
fn refresh_generate() {
    let app = app();
    let ready = app.gpu_usable()
        && !app.busy()
        && app.model_state.get() != ModelState::Loading
        && app.model.borrow().is_some();
    dom::set_disabled(ids::GENERATE, !ready);
    dom::set_disabled(ids::FWD_DENOISE, !ready);
    dom::set_disabled(ids::LOSS_RUN, !ready);
}
