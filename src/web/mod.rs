//! The browser demo (wasm32 only): WebGPU setup, the Generate run loop over the real U-Net and
//! sampler, the timestep viewer, the forward-process view and model loading. Page layout:
//! `index.html`; styles: `web/style.css`; build: `Trunk.toml`; end-to-end tests: `web/e2e/`.
//!
//! Stable element ids (used by `web/e2e/`):
//! - sampling controls: `n-samples`, `seed`, `seed-random`, `sampler` (`ddpm`|`ddim`),
//!   `ddim-options`, `ddim-steps`, `ddim-eta`, `variance` (`fixed_small`|`fixed_large`),
//!   `class-options`, `class` (`each` or a class index), `guidance` (0–8), `guidance-value`,
//!   `generate`, `stop`;
//! - progress: `run-progress`, `stat-steps`, `stat-rate`, `stat-elapsed`, `run-status`, `run-error`;
//! - reverse-process viewer: `canvas-xt`, `canvas-eps` (ε̂ over ±3σ), `canvas-x0`, `view-t`
//!   (frame index: 0 = x_T … last = the sample), `view-t-label`, `step-math`; player: `play`,
//!   `step-back`, `step-fwd`, `replay`, `play-speed` (frames/s); downloads: `export-png`,
//!   `export-gif`, `export-npy`; compare mode: `compare` (checkbox), `compare-with`
//!   (`ddim-0` | `ddim-1` | `ddpm-small` | `ddpm-large`), `compare-view`, `cmp-xt`, `cmp-diff`,
//!   `cmp-x0`, `cmp-label`;
//! - forward process: `fwd-image`, `fwd-t` (timestep, 0..T−1), `fwd-t-label`, `fwd-x0`, `fwd-xt`,
//!   `fwd-plot`, `fwd-stats`, `schedule-info`; noise-then-denoise: `fwd-denoise`,
//!   `fwd-recon-view`, `fwd-recon`, `fwd-diff`, `fwd-recon-stats` (its `data-mse`); loss per
//!   timestep: `loss-run`, `loss-view`, `loss-plot`, `loss-stats`; drawing pad: `draw-pad`,
//!   `draw-use` (adds "Your drawing" to `fwd-image`), `draw-clear`;
//! - model: `model-menu` (the shipped models' folders), `model-status`, `model-progress`, `model-info`, `model-files`, `model-drop`,
//!   `model-error`, `model-note` (the default model's `data-note`, e.g. "untrained placeholder"),
//!   `hub-id` (a Hub id, `owner/name[@revision]`), `hub-menu` (the DDPM paper's models),
//!   `hub-load`;
//! - GPU: `gpu-status`, `gpu-error`, `gpu-info`.
//!
//! `<body>` carries the page state: `data-gpu` = pending | ready | unavailable | lost,
//! `data-run` = idle | running | done | stopped | error, `data-model` = none | loading | ready | error,
//! `data-play` = playing | paused, `data-loss` = idle | running | done | error.
//! Test hooks on `window.ddpm`: [`debug_lose_device`], [`debug_last_samples`],
//! [`debug_last_shape`], [`debug_frame`], [`debug_compare_frame`], [`debug_loss_curve`],
//! [`debug_max_batch`],
//! [`debug_engine_stats`].

mod dom;
mod draw;
mod draw_pad;
mod engine;
mod export;
mod files;
mod forward;
mod loss_view;
mod player;
mod run;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{HtmlInputElement, HtmlSelectElement, KeyboardEvent};

use crate::gpu::Gpu;
use crate::sampler::{SamplerKind, SnapshotData, EPS_RANGE, INIT_STREAM};
use crate::schedule::{SchedulerConfig, VarianceType};
use engine::{Engine, Model};
use files::ModelFiles;
use forward::Forward;
use run::{Frames, RunConfig};

/// Frames kept for the slider: at most this many bytes (quantized x_t, x̂_0 and ε̂).
const FRAME_BUDGET: usize = 128 << 20;
/// Aim for chunks of GPU work of about this many milliseconds between yields.
const CHUNK_TARGET_MS: f64 = 60.0;
/// Largest chunk of steps between two yields.
const MAX_CHUNK: usize = 200;
/// Byte budget of the per-chunk snapshot capture (the chunk's own staging limit binds first).
const CHUNK_CAPTURE_BUDGET: usize = 1 << 30;

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
    /// A device exists or can be created again (false while pending or when WebGPU is missing).
    gpu_usable: Cell<bool>,
    /// The current model…
    model: RefCell<Option<Rc<Model>>>,
    model_loading: Cell<bool>,
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
    /// The planned steps of the last Generate (for the update the slider's frame takes).
    last_plan: RefCell<Option<Vec<crate::sampler::PlannedStep>>>,
    /// Latest frame of the running Generate, waiting to be drawn.
    live: RefCell<Option<LiveFrame>>,
    draw_pending: Cell<bool>,
    running: Cell<bool>,
    stop: Cell<bool>,
    fwd: RefCell<Rc<Forward>>,
    fwd_busy: Cell<bool>,
    fwd_dirty: Cell<bool>,
}

thread_local! {
    static APP: Rc<App> = Rc::new(App {
        gpu: RefCell::new(None),
        gpu_usable: Cell::new(false),
        model: RefCell::new(None),
        model_loading: Cell::new(false),
        engine: RefCell::new(None),
        loads: Cell::new(0),
        batch_cap: Cell::new(usize::MAX),
        schedule: RefCell::new(Rc::new(ScheduleView::new(&SchedulerConfig::default()))),
        frames: RefCell::new(None),
        compare_frames: RefCell::new(None),
        last_samples: RefCell::new(None),
        last_plan: RefCell::new(None),
        live: RefCell::new(None),
        draw_pending: Cell::new(false),
        running: Cell::new(false),
        stop: Cell::new(false),
        fwd: RefCell::new(Rc::new(Forward::new())),
        fwd_busy: Cell::new(false),
        fwd_dirty: Cell::new(false),
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
        vec![e.plans_recorded as u32, e.samplers_created as u32]
    })
}

/// Enables Generate when a device exists (or can be recreated), a model is loaded and no run is
/// in progress.
fn refresh_generate() {
    let app = app();
    let ready = app.gpu_usable.get()
        && !app.running.get()
        && !app.model_loading.get()
        && app.model.borrow().is_some();
    dom::set_disabled("generate", !ready);
    dom::set_disabled("fwd-denoise", !ready);
    dom::set_disabled("loss-run", !ready);
}

// ---------------------------------------------------------------------------------------------
// GPU

/// The current GPU, created on first use and again after a device loss.
async fn ensure_gpu() -> Result<Rc<Gpu>, String> {
    if let Some(gpu) = app().gpu.borrow().as_ref() {
        return Ok(gpu.clone());
    }
    dom::set_body_state("gpu", "pending");
    set_gpu_pill("pending", "Starting WebGPU…");
    match create_gpu().await {
        Ok(gpu) => {
            let gpu = Rc::new(gpu);
            *app().gpu.borrow_mut() = Some(gpu.clone());
            app().gpu_usable.set(true);
            rebuild_engine(&gpu);
            let label = adapter_label(&gpu).await;
            show_gpu_info(&gpu, &label);
            dom::show_message("gpu-error", None);
            dom::set_body_state("gpu", "ready");
            set_gpu_pill("ready", &label);
            refresh_generate();
            if !app().running.get() {
                dom::set_text("run-status", "Ready. Press Generate.");
            }
            Ok(gpu)
        }
        Err(msg) => {
            let msg = format!("WebGPU unavailable: {msg}");
            dom::show_message("gpu-error", Some(&msg));
            dom::set_body_state("gpu", "unavailable");
            set_gpu_pill("unavailable", "WebGPU unavailable");
            app().gpu_usable.set(false);
            refresh_generate();
            dom::set_text("run-status", "Generate needs WebGPU.");
            Err(msg)
        }
    }
}

async fn create_gpu() -> Result<Gpu, String> {
    let navigator = dom::window().navigator();
    let has_gpu = js_sys::Reflect::get(&navigator, &"gpu".into())
        .map(|v| !v.is_undefined() && !v.is_null())
        .unwrap_or(false);
    if !has_gpu {
        return Err(
            "this browser does not expose WebGPU (navigator.gpu is missing). \
                    Use a recent Chrome or Edge (113+), or Firefox / Safari with WebGPU enabled; \
                    WebGPU also needs a secure context (https:// or http://localhost)."
                .into(),
        );
    }
    let gpu = Gpu::new().await.map_err(|e| match e {
        crate::Error::NoAdapter(_) => "the browser supports WebGPU but gave no GPU adapter (the GPU may be \
             blocklisted or WebGPU turned off; on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu \
             or --enable-unsafe-webgpu)."
            .to_string(),
        other => format!("{other}."),
    })?;
    let generation = GPU_GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
    gpu.device.set_device_lost_callback(move |reason, message| {
        if GPU_GENERATION.load(Ordering::SeqCst) == generation {
            on_device_lost(&format!("{reason:?}: {message}"));
        }
    });
    Ok(gpu)
}

/// Called by wgpu when the device is lost: forget it; the next Generate makes a new one.
fn on_device_lost(why: &str) {
    GPU_GENERATION.fetch_add(1, Ordering::SeqCst);
    app().gpu.borrow_mut().take();
    app().engine.borrow_mut().take();
    dom::set_body_state("gpu", "lost");
    set_gpu_pill("lost", "GPU device lost");
    dom::show_message(
        "gpu-error",
        Some(&format!(
            "The GPU device was lost ({why}). Press Generate to start a new device."
        )),
    );
    refresh_generate();
}

fn set_gpu_pill(class: &str, text: &str) {
    dom::set_class("gpu-status", &format!("pill {class}"));
    dom::set_text("gpu-status", text);
    dom::el::<web_sys::Element>("gpu-status")
        .set_attribute("title", text)
        .ok();
}

/// "WebGPU · vendor architecture (description)". wgpu's browser backend reports only the
/// description, so ask `navigator.gpu` for the adapter's info (display only).
async fn adapter_label(gpu: &Gpu) -> String {
    let fallback = matches!(gpu.info.device_type, wgpu::DeviceType::Cpu);
    let mut parts: Vec<String> = Vec::new();
    let get =
        |o: &JsValue, k: &str| js_sys::Reflect::get(o, &k.into()).unwrap_or(JsValue::UNDEFINED);
    let gpu_js = get(&dom::window().navigator().into(), "gpu");
    if let Ok(f) = get(&gpu_js, "requestAdapter").dyn_into::<js_sys::Function>() {
        if let Ok(p) = f
            .call0(&gpu_js)
            .and_then(|p| p.dyn_into::<js_sys::Promise>())
        {
            if let Ok(adapter) = wasm_bindgen_futures::JsFuture::from(p).await {
                let info = get(&adapter, "info");
                for key in ["vendor", "architecture", "description"] {
                    if let Some(v) = get(&info, key).as_string().filter(|v| !v.is_empty()) {
                        if !parts.contains(&v) {
                            parts.push(v);
                        }
                    }
                }
            }
        }
    }
    if parts.is_empty() && !gpu.info.name.is_empty() {
        parts.push(gpu.info.name.clone());
    }
    let mut label = format!(
        "WebGPU · {}",
        if parts.is_empty() {
            "adapter".into()
        } else {
            parts.join(" ")
        }
    );
    if fallback {
        label += " (software)";
    }
    label
}

fn show_gpu_info(gpu: &Gpu, label: &str) {
    let l = &gpu.limits;
    let rows = [
        ("adapter", label.to_string()),
        (
            "backend",
            format!("{:?} · {:?}", gpu.info.backend, gpu.info.device_type),
        ),
        ("maxBufferSize", files::mb(l.max_buffer_size)),
        (
            "maxStorageBufferBindingSize",
            files::mb(l.max_storage_buffer_binding_size),
        ),
        (
            "maxStorageBuffersPerShaderStage",
            l.max_storage_buffers_per_shader_stage.to_string(),
        ),
        (
            "maxComputeWorkgroupStorageSize",
            format!("{} B", l.max_compute_workgroup_storage_size),
        ),
        (
            "maxComputeInvocationsPerWorkgroup",
            l.max_compute_invocations_per_workgroup.to_string(),
        ),
        (
            "maxComputeWorkgroupsPerDimension",
            l.max_compute_workgroups_per_dimension.to_string(),
        ),
    ];
    dom::set_html("gpu-info", &table(&rows));
}

/// An HTML table of (label, value) rows, escaped.
fn table<S: AsRef<str>>(rows: &[(S, String)]) -> String {
    let mut html = String::from("<table>");
    for (k, v) in rows {
        html += &format!("<tr><td>{}</td><td>{}</td></tr>", esc(k.as_ref()), esc(v));
    }
    html + "</table>"
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

// ---------------------------------------------------------------------------------------------
// Controls

fn wire_controls() {
    dom::on::<web_sys::Event>("generate", "click", |_| {
        // Mark the run as started before the click returns, so no one reads a stale state.
        if !app().running.get() {
            dom::set_body_state("run", "running");
        }
        spawn_local(generate())
    });
    dom::on::<web_sys::Event>("stop", "click", |_| {
        app().stop.set(true);
        dom::set_text("run-status", "Stopping…");
    });
    dom::on::<web_sys::Event>("seed-random", "click", |_| {
        let seed = (js_sys::Math::random() * 1e9).floor();
        dom::el::<HtmlInputElement>("seed").set_value_as_number(seed);
    });
    dom::on::<web_sys::Event>("sampler", "change", |_| show_sampler_options());
    dom::on::<web_sys::Event>("guidance", "input", |_| show_guidance());
    dom::on::<web_sys::Event>("n-samples", "change", |_| {
        let n = read_n();
        dom::el::<HtmlInputElement>("n-samples").set_value_as_number(n as f64);
    });
    dom::on::<web_sys::Event>("view-t", "input", |_| show_selected_frame());
    dom::on::<web_sys::Event>("export-png", "click", |_| report_export(export::png()));
    dom::on::<web_sys::Event>("export-gif", "click", |_| {
        let app = app();
        let frames = app.frames.borrow();
        report_export(
            frames
                .as_ref()
                .ok_or("no run yet".into())
                .and_then(export::gif),
        );
    });
    dom::on::<web_sys::Event>("export-npy", "click", |_| {
        let app = app();
        let samples = app.last_samples.borrow();
        report_export(match samples.as_ref() {
            Some((x, shape)) => export::npy(x, *shape),
            None => Err("no finished run yet".into()),
        });
    });
    dom::on::<web_sys::Event>("play", "click", |_| player::toggle());
    dom::on::<web_sys::Event>("step-back", "click", |_| {
        player::pause();
        player::step(-1);
    });
    dom::on::<web_sys::Event>("step-fwd", "click", |_| {
        player::pause();
        player::step(1);
    });
    dom::on::<web_sys::Event>("replay", "click", |_| {
        player::jump(false);
        player::play();
    });
    dom::on::<web_sys::Event>("loss-run", "click", |_| spawn_local(loss_view::measure()));
    draw_pad::wire(|x, shape| {
        let i = Rc::make_mut(&mut app().fwd.borrow_mut()).add_drawing(x, shape);
        refresh_forward_menu();
        dom::el::<HtmlSelectElement>("fwd-image").set_value(&i.to_string());
        update_forward();
    });
    dom::on::<web_sys::Event>("fwd-denoise", "click", |_| {
        if !app().running.get() {
            dom::set_body_state("run", "running");
        }
        spawn_local(denoise())
    });
    dom::on::<web_sys::Event>("fwd-t", "input", |_| update_forward());
    dom::on::<web_sys::Event>("fwd-image", "change", |_| update_forward());
    dom::listen::<KeyboardEvent>(dom::document().as_ref(), "keydown", on_key);
    dom::listen::<web_sys::Event>(dom::window().as_ref(), "resize", |_| update_forward());

    // The models the page ships (assets/), by folder.
    dom::on::<web_sys::Event>("model-menu", "change", |_| {
        let base = dom::el::<HtmlSelectElement>("model-menu").value();
        if !base.is_empty() {
            spawn_local(async move { load_from_url(&base, None).await });
        }
    });

    // Models from the Hub: the paper's models in a menu, or any id.
    dom::on::<web_sys::Event>("hub-menu", "change", |_| {
        let id = dom::el::<HtmlSelectElement>("hub-menu").value();
        if !id.is_empty() {
            dom::el::<HtmlInputElement>("hub-id").set_value(&id);
        }
    });
    dom::on::<web_sys::Event>("hub-load", "click", |_| {
        let text = dom::el::<HtmlInputElement>("hub-id").value();
        let text = text.trim();
        let name = if text.starts_with(crate::hub::PREFIX) {
            text.to_string()
        } else {
            format!("{}{text}", crate::hub::PREFIX)
        };
        let endpoint = web_sys::Url::new(&dom::window().location().href().unwrap_or_default())
            .ok()
            .and_then(|u| u.search_params().get("hub"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| crate::hub::DEFAULT_ENDPOINT.to_string());
        spawn_local(async move {
            match crate::hub::HubId::parse(&name).expect("prefixed above") {
                Ok(id) => load_from_hub(&endpoint, &id).await,
                Err(e) => apply_model_files(Err(e.to_string()), None).await,
            }
        });
    });

    // Model files: picker and drag & drop.
    dom::on::<web_sys::Event>("model-files", "change", |_| {
        let input = dom::el::<HtmlInputElement>("model-files");
        if let Some(list) = input.files() {
            spawn_local(async move {
                let result = files::read_user_files(&list).await;
                dom::el::<HtmlInputElement>("model-files").set_value("");
                apply_model_files(result, None).await;
            });
        }
    });
    dom::on::<web_sys::DragEvent>("model-drop", "dragover", |e| {
        e.prevent_default();
        dom::set_class("model-drop", "drop over");
    });
    dom::on::<web_sys::DragEvent>("model-drop", "dragleave", |_| {
        dom::set_class("model-drop", "drop")
    });
    dom::on::<web_sys::DragEvent>("model-drop", "drop", |e| {
        e.prevent_default();
        dom::set_class("model-drop", "drop");
        if let Some(list) = e.data_transfer().and_then(|d| d.files()) {
            spawn_local(async move {
                apply_model_files(files::read_user_files(&list).await, None).await
            });
        }
    });
}

/// Player keys (unless typing in a field): ← / → step one frame, Space plays or pauses, Home /
/// End jump to x_T / the sample.
fn on_key(e: KeyboardEvent) {
    if let Some(target) = e
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
    {
        let tag = target.tag_name();
        // The focused control handles its own keys (the range inputs step by one; Space
        // presses a button).
        if matches!(tag.as_str(), "INPUT" | "SELECT" | "TEXTAREA")
            || (tag == "BUTTON" && e.key() == " ")
        {
            return;
        }
    }
    if dom::el::<HtmlInputElement>("view-t").disabled() {
        return;
    }
    match e.key().as_str() {
        "ArrowLeft" | "ArrowRight" => {
            player::pause();
            player::step(if e.key() == "ArrowLeft" { -1 } else { 1 });
        }
        " " => player::toggle(),
        "Home" | "End" => {
            player::pause();
            player::jump(e.key() == "End");
        }
        _ => return,
    }
    e.prevent_default();
}

/// Shows a failed download in the run's error line.
fn report_export(result: Result<(), String>) {
    if let Err(e) = result {
        dom::show_message("run-error", Some(&format!("export failed: {e}")));
    }
}

fn read_n() -> usize {
    dom::input_f64("n-samples", 16.0).round().clamp(1.0, 64.0) as usize
}

/// The sampling controls; DDIM steps are clamped to 1..=T of the model's schedule.
fn read_config(scheduler: &SchedulerConfig) -> RunConfig {
    let steps = dom::input_f64("ddim-steps", 50.0)
        .round()
        .clamp(1.0, scheduler.num_train_timesteps as f64) as usize;
    let eta = dom::input_f64("ddim-eta", 0.0).clamp(0.0, 1.0) as f32;
    RunConfig {
        n: read_n(),
        seed: dom::input_f64("seed", 0.0).max(0.0) as u64,
        kind: if dom::select_value("sampler") == "ddim" {
            SamplerKind::Ddim { steps, eta }
        } else {
            SamplerKind::Ddpm
        },
        variance: VarianceType::parse(&dom::select_value("variance"))
            .unwrap_or(scheduler.variance_type),
        class: dom::select_value("class").parse().ok(),
        guidance: dom::input_f64("guidance", 1.0) as f32,
        start: None,
    }
}

/// Shows the class picker and guidance slider for a class-conditional model (classes by name
/// where the model names them), hides them otherwise.
fn show_class_controls(config: &crate::model::UNetConfig) {
    let classes = config.classes();
    dom::set_hidden("class-options", classes.is_empty());
    let names = config.ddpm_class_names.clone().unwrap_or_default();
    let mut html = String::from("<option value=\"each\" selected>One of each</option>");
    for (i, c) in classes.iter().enumerate() {
        let name = names.get(i).cloned().unwrap_or_else(|| c.to_string());
        html.push_str(&format!(
            "<option value=\"{c}\">{}</option>",
            escape_html(&name)
        ));
    }
    dom::set_html("class", &html);
    let guided = config.ddpm_null_class.is_some();
    let w = config.ddpm_guidance_scale.unwrap_or(1.0);
    let slider = dom::el::<HtmlInputElement>("guidance");
    slider.set_value_as_number(if guided { w } else { 1.0 });
    slider.set_disabled(!guided);
    show_guidance();
}

/// `s` with `&`, `<`, `>` and `"` escaped for HTML.
fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The guidance value beside its slider.
fn show_guidance() {
    let w = dom::input_f64("guidance", 1.0);
    let what = match w {
        0.0 => " (unconditional)",
        1.0 => " (plain conditional)",
        _ => "",
    };
    dom::set_text("guidance-value", &format!("w = {w}{what}"));
}

// ---------------------------------------------------------------------------------------------
// Generate

/// Generate: samples from x_T (see [`run_reverse`]).
async fn generate() {
    run_reverse(None).await
}

/// Noise it, then denoise it: the forward view's image noised to its t by q(x_t | x_0), then
/// the reverse process from there (one image, the page's sampler settings; a conditional model
/// is given the example's class when known).
async fn denoise() {
    let app = app();
    let fwd = app.fwd.borrow().clone();
    let Some(i) = forward_selection(&fwd) else {
        return;
    };
    let t = forward_t(&app.schedule.borrow());
    let im = &fwd.images[i];
    run_reverse(Some(Denoise {
        image: i,
        t,
        x0: im.x0.clone(),
        shape: im.shape,
        label: im.label,
    }))
    .await
}

/// A noise-then-denoise run: image `image` of the forward view (`x0`, `[1, C, H, W]`), noised to
/// timestep `t`.
struct Denoise {
    image: usize,
    t: usize,
    x0: Vec<f32>,
    shape: [usize; 4],
    label: Option<usize>,
}

/// Runs the reverse process in chunks, yielding to the browser between chunks and drawing the
/// latest x_t on animation frames, until done or stopped: from x_T, or (`denoise`) from a
/// noised data image.
async fn run_reverse(denoise: Option<Denoise>) {
    let app = app();
    if app.running.get() {
        return;
    }
    app.running.set(true);
    app.stop.set(false);
    refresh_generate();
    player::set_enabled(false);
    dom::show_message("run-error", None);
    let outcome = generate_inner(&app, denoise.as_ref()).await;
    app.running.set(false);
    dom::set_disabled("stop", true);
    refresh_generate();
    let (state, status) = match outcome {
        Ok(true) => ("stopped", "Stopped."),
        Ok(false) => ("done", "Done."),
        Err(msg) => {
            dom::show_message("run-error", Some(&msg));
            ("error", "Failed (see below).")
        }
    };
    let status = match app.frames.borrow().as_ref() {
        Some(f) if f.stride() > 1 => format!(
            "{status} The slider keeps every {}th step (memory).",
            f.stride()
        ),
        _ => status.to_string(),
    };
    dom::set_text("run-status", &status);
    enable_viewer();
    if state == "done" {
        let samples = app.last_samples.borrow().clone();
        match (&denoise, samples) {
            (Some(d), Some((x, _))) => show_reconstruction(d, &x),
            (None, Some((x, shape))) => {
                Rc::make_mut(&mut app.fwd.borrow_mut()).add_generated(&x, shape);
                refresh_forward_menu();
            }
            _ => {}
        }
    }
    dom::set_body_state("run", state);
}

/// The denoised image beside its original: |difference|, MSE, PSNR (peak-to-peak 2) and max |Δ|.
fn show_reconstruction(d: &Denoise, x: &[f32]) {
    let diff: Vec<f32> = x.iter().zip(&d.x0).map(|(a, b)| (a - b).abs()).collect();
    let mse = diff.iter().map(|v| (v * v) as f64).sum::<f64>() / diff.len().max(1) as f64;
    let max = diff.iter().fold(0f32, |m, &v| m.max(v));
    let shown: Vec<f32> = diff.iter().map(|v| v - 1.0).collect();
    let r = draw::draw_grid("fwd-recon", &SnapshotData::quantise(x), d.shape)
        .and_then(|_| draw::draw_grid("fwd-diff", &SnapshotData::quantise(&shown), d.shape));
    if let Err(e) = r {
        web_sys::console::error_1(&e);
    }
    dom::set_hidden("fwd-recon-view", false);
    let t0 = app()
        .last_plan
        .borrow()
        .as_ref()
        .and_then(|p| p.first().map(|s| s.t))
        .unwrap_or(d.t);
    dom::set_text(
        "fwd-recon-stats",
        &format!(
            "from t = {t0}: MSE = {mse:.5} · PSNR = {:.1} dB · max |Δ| = {max:.3}",
            10.0 * (4.0 / mse.max(1e-12)).log10()
        ),
    );
    let _ =
        dom::el::<web_sys::Element>("fwd-recon-stats").set_attribute("data-mse", &mse.to_string());
}

/// Ok(stopped?) or a message for the page.
async fn generate_inner(app: &Rc<App>, denoise: Option<&Denoise>) -> Result<bool, String> {
    let gpu = ensure_gpu().await?;
    let generation = GPU_GENERATION.load(Ordering::SeqCst);
    let model = app
        .model
        .borrow()
        .clone()
        .ok_or("No model loaded: load one below.")?;
    let mut cfg = read_config(&model.scheduler);
    if let Some(d) = denoise {
        if d.shape[1..] != model.sample {
            let [c, h, w] = model.sample;
            return Err(format!(
                "This image is {}×{}×{}, the model draws {c}×{h}×{w}: denoising needs an image of                  the model's size (generate one first, it joins the menu).",
                d.shape[1], d.shape[2], d.shape[3]
            ));
        }
        cfg.n = 1;
        cfg.start = Some(d.t);
        cfg.class = d.label.or(cfg.class);
    }
    // Check the settings (DDIM steps, η, schedule) before touching the GPU.
    let plan = crate::sampler::plan(&model.scheduler, &cfg.options(&model.scheduler, 0))
        .map_err(|e| e.to_string())?;
    let timesteps: Vec<usize> = plan.iter().map(|p| p.t).collect();
    // A denoising run starts from the image noised to the plan's first timestep.
    let initial = match denoise {
        Some(d) => {
            let fwd = app.fwd.borrow().clone();
            let abar = app.schedule.borrow().abar.clone();
            Some(fwd.xt(Some(&gpu), d.image, timesteps[0], &abar).await)
        }
        None => None,
    };
    *app.last_plan.borrow_mut() = Some(plan);
    let mut engine = take_engine(app, &gpu, generation, &model)?;
    app.compare_frames.borrow_mut().take();
    dom::set_hidden("compare-view", true);
    let pass = Pass {
        cfg: &cfg,
        timesteps,
        initial,
        target: Target::Main,
    };
    let mut outcome = run_batches(app, &gpu, &mut engine, &model, pass).await;
    let compared = dom::el::<HtmlInputElement>("compare").checked() && denoise.is_none();
    if let (Ok(false), true) = (&outcome, compared) {
        if let Some(second) = cfg.compared(
            &dom::select_value("compare-with"),
            model.scheduler.num_train_timesteps,
        ) {
            outcome = compare_run(app, &gpu, &mut engine, &model, &second).await;
        }
    }
    let current = GPU_GENERATION.load(Ordering::SeqCst) == generation
        && app
            .model
            .borrow()
            .as_ref()
            .is_some_and(|m| m.id == engine.model_id);
    // Keep the engine for the next Generate unless it is stale or failed (its state is unknown).
    if current && outcome.is_ok() {
        *app.engine.borrow_mut() = Some(engine);
    }
    outcome.map_err(|e| {
        if app.gpu.borrow().is_none() {
            format!("{e} (the GPU device was lost; press Generate to retry on a new device)")
        } else {
            e
        }
    })
}

/// The engine of `model` on the current device: the kept one, or a new one.
fn take_engine(app: &App, gpu: &Gpu, generation: u32, model: &Model) -> Result<Engine, String> {
    let kept = app.engine.borrow_mut().take();
    match kept {
        Some(e) if e.generation == generation && e.model_id == model.id => Ok(e),
        other => {
            drop(other); // free its GPU memory first
            model
                .weights()
                .and_then(|w| Engine::new(gpu, generation, model, &w))
                .map_err(|e| format!("Could not put the model on the GPU: {e}"))
        }
    }
}

/// One pass of [`run_batches`]: the settings, the plan's timesteps, x_T given or drawn for the
/// seed, and which run it fills.
struct Pass<'a> {
    cfg: &'a RunConfig,
    timesteps: Vec<usize>,
    initial: Option<Vec<f32>>,
    target: Target,
}

/// Compare mode's second run (`cfg`: the same seed and images, another sampler), into
/// `compare_frames`. Ok(stopped?).
async fn compare_run(
    app: &Rc<App>,
    gpu: &Gpu,
    engine: &mut Engine,
    model: &Model,
    cfg: &RunConfig,
) -> Result<bool, String> {
    let plan = crate::sampler::plan(&model.scheduler, &cfg.options(&model.scheduler, 0))
        .map_err(|e| e.to_string())?;
    let timesteps = plan.iter().map(|p| p.t).collect();
    dom::set_hidden("compare-view", false);
    let label = format!("x_t of {}", cfg.describe());
    dom::set_text("cmp-label", &label);
    let pass = Pass {
        cfg,
        timesteps,
        initial: None,
        target: Target::Compare,
    };
    run_batches(app, gpu, engine, model, pass).await
}

/// Samples `cfg.n` images in batches (as large as the device allows), filling the slider's
/// frames (of `pass.target`) and the live view as chunks complete, from x_T drawn for the seed
/// or from `pass.initial` (one batch). Ok(stopped?).
async fn run_batches(
    app: &Rc<App>,
    gpu: &Gpu,
    engine: &mut Engine,
    model: &Model,
    pass: Pass<'_>,
) -> Result<bool, String> {
    let Pass {
        cfg,
        timesteps,
        initial,
        target,
    } = pass;
    let err = |e: crate::Error| e.to_string();
    let n = cfg.n;
    let store = match target {
        Target::Main => &app.frames,
        Target::Compare => &app.compare_frames,
    };
    // Free the previous Generate's frames before anything new is allocated.
    store.borrow_mut().take();
    if target == Target::Main {
        app.last_samples.borrow_mut().take();
    }
    let batch = engine
        .prepare(
            gpu,
            &model.scheduler,
            n,
            app.batch_cap.get(),
            &cfg.options_for(&model.config, &model.scheduler, 0),
        )
        .map_err(err)?;
    let runs = n.div_ceil(batch);
    let [c, h, w] = model.sample;
    let (per, shape) = (c * h * w, [n, c, h, w]);
    let steps = timesteps.len();
    // Compare mode holds two runs' frames in the same budget.
    let budget = if dom::el::<HtmlInputElement>("compare").checked() {
        FRAME_BUDGET / 2
    } else {
        FRAME_BUDGET
    };
    *store.borrow_mut() = Some(Frames::new(shape, batch, timesteps, budget));
    let mut live = Pictures {
        x: vec![0u8; n * per],
        x0: vec![0u8; n * per],
        eps: vec![0u8; n * per],
        shape,
    };
    let mut samples = vec![0f32; n * per];

    dom::el::<HtmlInputElement>("view-t").set_disabled(true);
    dom::set_disabled("stop", false);
    dom::set_body_state("run", "running");
    let batches = if runs > 1 {
        format!(" in {runs} batches of {batch} (device limits)")
    } else {
        String::new()
    };
    let what = match target {
        Target::Main => "Running",
        Target::Compare => "Comparison: running",
    };
    dom::set_text(
        "run-status",
        &format!("{what} {} · {n} × {c}×{h}×{w}{batches}…", cfg.describe()),
    );
    let total = runs * steps;
    update_stats(0, total, 0.0);

    let t0 = dom::now_ms();
    let mut chunk = 1usize;
    for r in 0..runs {
        let first = r * batch;
        let seed = cfg.seed;
        let classes = cfg.classes(&model.config, first, batch);
        if !classes.is_empty() {
            let null = guided_null_class(model, cfg);
            let labels = crate::sampler::batch_labels(&classes, null);
            engine.set_labels(gpu, &labels).map_err(err)?;
        }
        let sampler = engine.sampler().ok_or("no sampler was prepared")?;
        if r > 0 {
            // The step noise of images first.. (keyed by their index in the whole run).
            sampler.restart(gpu, seed, first as u64).map_err(err)?;
        }
        // x_T from the CPU twin of the GPU's RNG (same seed, stream and element index, bit-equal
        // to `ops::noise`): the first trajectory frame needs it on the CPU anyway, so drawing it
        // here saves a GPU read-back.
        let x_t = match &initial {
            Some(x) => x.clone(),
            None => {
                crate::cpu::sampling::noise(batch * per, seed, INIT_STREAM, (first * per) as u64)
            }
        };
        sampler.set_initial(gpu, &x_t).map_err(err)?;
        if let Some(f) = store.borrow_mut().as_mut() {
            f.begin_run(r, &x_t);
        }
        let count = batch.min(n - first);
        loop {
            if app.stop.get() {
                return Ok(true);
            }
            sampler.capture(1, CHUNK_CAPTURE_BUDGET).map_err(err)?;
            let (c0, before) = (dom::now_ms(), sampler.progress().step);
            let p = sampler.run_steps(gpu, chunk).await.map_err(err)?;
            let dt = dom::now_ms() - c0;
            let snaps = sampler.trajectory().map_or(&[][..], |t| t.snapshots());
            if let Some(f) = store.borrow_mut().as_mut() {
                for s in snaps {
                    f.push(s);
                }
            }
            if let Some(last) = snaps.last() {
                let range = first * per..(first + count) * per;
                live.x[range.clone()].copy_from_slice(&last.x.to_u8(1.0)[..count * per]);
                live.x0[range.clone()].copy_from_slice(&last.x0.to_u8(1.0)[..count * per]);
                live.eps[range].copy_from_slice(&last.eps.to_u8(EPS_RANGE)[..count * per]);
                let label = match p.next_timestep {
                    Some(t) => format!("t = {t}"),
                    None => "x₀ (sample)".into(),
                };
                *app.live.borrow_mut() = Some(LiveFrame {
                    label,
                    pictures: live.clone(),
                    target,
                });
                schedule_live_draw();
            }
            update_stats(r * steps + p.step, total, dom::now_ms() - t0);
            if p.done() {
                break;
            }
            // Size the next chunk so that one takes about CHUNK_TARGET_MS.
            let per_step = dt / (p.step - before).max(1) as f64;
            chunk = ((CHUNK_TARGET_MS / per_step.max(0.01)) as usize)
                .clamp((chunk / 2).max(1), (chunk * 2).min(MAX_CHUNK));
            dom::yield_now().await;
        }
        let x = sampler.read_sample(gpu).await.map_err(err)?;
        samples[first * per..(first + count) * per].copy_from_slice(&x[..count * per]);
    }
    if target == Target::Main {
        *app.last_samples.borrow_mut() = Some((samples, shape));
    }
    Ok(false)
}

/// The null class of a guided run of `model` under `cfg` (`None`: no guidance).
fn guided_null_class(model: &Model, cfg: &RunConfig) -> Option<usize> {
    cfg.options_for(&model.config, &model.scheduler, 0)
        .guidance
        .and(model.config.ddpm_null_class)
}

fn update_stats(done: usize, total: usize, elapsed_ms: f64) {
    let p = dom::el::<web_sys::HtmlProgressElement>("run-progress");
    p.set_max(total.max(1) as f64);
    p.set_value(done as f64);
    dom::set_text("stat-steps", &format!("{done} / {total}"));
    let rate = if elapsed_ms > 0.0 {
        done as f64 / (elapsed_ms / 1e3)
    } else {
        0.0
    };
    dom::set_text(
        "stat-rate",
        &if done > 0 {
            format!("{rate:.1}")
        } else {
            "–".into()
        },
    );
    // After the first steps: the time the rest of the run should take at this rate.
    let left = if done > 0 && done < total && rate > 0.0 {
        format!(" · ~{} left", duration((total - done) as f64 / rate))
    } else {
        String::new()
    };
    dom::set_text("stat-elapsed", &format!("{:.1} s{left}", elapsed_ms / 1e3));
}

/// `42 s`, `3 min 5 s` or `2 h 7 min`.
fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Draws the latest live frame on the next animation frame (at most one pending).
fn schedule_live_draw() {
    let app = app();
    if app.draw_pending.replace(true) {
        return;
    }
    dom::request_frame(move || {
        let app = self::app();
        app.draw_pending.set(false);
        let live = app.live.borrow_mut().take();
        match live {
            Some(f) if f.target == Target::Main => {
                let p = &f.pictures;
                draw_frame(&p.x, &p.x0, &p.eps, p.shape);
                dom::set_text("view-t-label", &f.label);
                dom::set_disabled("export-png", false);
            }
            Some(f) => {
                let p = &f.pictures;
                let r = draw::draw_grid("cmp-xt", &p.x, p.shape)
                    .and_then(|_| draw::draw_grid("cmp-x0", &p.x0, p.shape));
                if let Err(e) = r {
                    web_sys::console::error_1(&e);
                }
            }
            None => {}
        }
    });
}

/// Draws x_t, ε̂ and x̂0 of one frame.
fn draw_frame(x: &[u8], x0: &[u8], eps: &[u8], shape: [usize; 4]) {
    let r = draw::draw_grid("canvas-xt", x, shape)
        .and_then(|_| draw::draw_grid("canvas-x0", x0, shape))
        .and_then(|_| draw::draw_grid("canvas-eps", eps, shape));
    if let Err(e) = r {
        web_sys::console::error_1(&e);
    }
}

// ---------------------------------------------------------------------------------------------
// Timestep viewer

fn enable_viewer() {
    let app = app();
    // A live frame still waiting for its animation frame would overwrite the selected one.
    app.live.borrow_mut().take();
    let frames = app.frames.borrow();
    let slider = dom::el::<HtmlInputElement>("view-t");
    match frames.as_ref() {
        Some(f) if !f.is_empty() => {
            slider.set_max(&(f.len() - 1).to_string());
            slider.set_value_as_number((f.len() - 1) as f64);
            slider.set_disabled(false);
            drop(frames);
            player::set_enabled(true);
            dom::set_disabled("export-gif", false);
            show_selected_frame();
        }
        _ => slider.set_disabled(true),
    }
    dom::set_disabled("export-npy", app.last_samples.borrow().is_none());
}

fn show_selected_frame() {
    let app = app();
    if app.running.get() {
        return;
    }
    let frames = app.frames.borrow();
    let Some(f) = frames.as_ref().filter(|f| !f.is_empty()) else {
        return;
    };
    let i = (dom::el::<HtmlInputElement>("view-t")
        .value_as_number()
        .max(0.0) as usize)
        .min(f.len() - 1);
    draw_frame(f.x(i), f.x0(i), f.eps(i), f.shape);
    show_compared_frame(f, i);
    dom::set_text("view-t-label", &f.label(i));
    dom::set_disabled("export-png", false);
    let step = app
        .last_plan
        .borrow()
        .as_ref()
        .and_then(|p| p.get(i).copied());
    let schedule = app.schedule.borrow().clone();
    dom::set_text(
        "step-math",
        &step.map_or(String::new(), |s| step_math(&s, &schedule)),
    );
}

/// Compare mode: the second run's frame nearest to slot `i`'s timestep of `main`, and
/// |x_t − x_t′| (from the displayed bytes).
fn show_compared_frame(main: &Frames, i: usize) {
    let app = app();
    let compare = app.compare_frames.borrow();
    let Some(c) = compare.as_ref().filter(|c| c.shape == main.shape) else {
        return;
    };
    let Some(j) = c.nearest(main.timestep(i)) else {
        return;
    };
    let diff: Vec<u8> = main
        .x(i)
        .iter()
        .zip(c.x(j))
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let r = draw::draw_grid("cmp-xt", c.x(j), c.shape)
        .and_then(|_| draw::draw_grid("cmp-x0", c.x0(j), c.shape))
        .and_then(|_| draw::draw_grid("cmp-diff", &diff, c.shape));
    if let Err(e) = r {
        web_sys::console::error_1(&e);
    }
    dom::set_text("cmp-label", &format!("x_t′ at {}", c.label(j)));
}

/// The update frame `step` takes, written out with its numbers (the DDPM paper's form for DDPM,
/// Song et al.'s for DDIM) and how much of x_{t−1}'s variance the fresh noise σ_t·z is.
fn step_math(step: &crate::sampler::PlannedStep, s: &ScheduleView) -> String {
    use crate::sampler::StepCoefs;
    let t = step.t;
    let (abar, beta) = (s.abar[t] as f64, s.betas[t] as f64);
    let prev = step
        .prev
        .map_or("0 (the sample)".to_string(), |p| p.to_string());
    let head = format!(
        "t = {t} → {prev}: ᾱ_t = {abar:.5}, SNR = ᾱ/(1−ᾱ) = {:.4}",
        abar / (1.0 - abar)
    );
    let (update, sigma) = match step.coefs {
        StepCoefs::Ddpm(c) => (
            format!(
                "x_t−1 = 1/√α_t · (x_t − β_t/√(1−ᾱ_t) · ε̂) + σ_t·z = {:.5} · (x_t − {:.5} · ε̂) + {:.5} · z \
                 (β_t = {beta:.6})",
                1.0 / (1.0 - beta).sqrt(),
                beta / (1.0 - abar).sqrt(),
                c.sigma
            ),
            c.sigma as f64,
        ),
        StepCoefs::Ddim(c) => (
            format!(
                "x_t−1 = √ᾱ_prev · x̂0 + √(1−ᾱ_prev−σ²) · ε̂ + σ·z = {:.5} · x̂0 + {:.5} · ε̂ + {:.5} · z",
                c.sqrt_ab_prev, c.c_dir, c.sigma
            ),
            c.sigma as f64,
        ),
    };
    // x_{t−1} has (about) unit variance along the forward process, so σ² is the noise's share.
    let share = format!(
        "fresh noise σ² = {:.2e}: {:.1} % of x_t−1's variance, the rest from the mean",
        sigma * sigma,
        100.0 * (sigma * sigma).min(1.0)
    );
    format!("{head}\n{update}\n{share}")
}

// ---------------------------------------------------------------------------------------------
// Schedule and forward process

fn show_schedule() {
    let s = app().schedule.borrow().clone();
    dom::set_text("schedule-info", &s.info);
    let slider = dom::el::<HtmlInputElement>("fwd-t");
    slider.set_max(&(s.abar.len() - 1).to_string());
}

fn refresh_forward_menu() {
    let app = app();
    let fwd = app.fwd.borrow();
    let select = dom::el::<HtmlSelectElement>("fwd-image");
    let previous = select.value();
    let html: String = fwd
        .images
        .iter()
        .enumerate()
        .map(|(i, im)| format!("<option value=\"{i}\">{}</option>", esc(&im.name)))
        .collect();
    select.set_inner_html(&html);
    if (previous.parse::<usize>().ok()).is_some_and(|i| i < fwd.images.len()) {
        select.set_value(&previous);
    }
}

/// Redraws the forward view for the chosen image and t (coalescing bursts of slider events).
fn update_forward() {
    let app = app();
    if app.fwd_busy.get() {
        app.fwd_dirty.set(true);
        return;
    }
    app.fwd_busy.set(true);
    spawn_local(async move {
        loop {
            app.fwd_dirty.set(false);
            forward_once(&app).await;
            if !app.fwd_dirty.get() {
                break;
            }
        }
        app.fwd_busy.set(false);
    });
}

/// The forward view's timestep (`#fwd-t`, within the schedule).
fn forward_t(s: &ScheduleView) -> usize {
    (dom::el::<HtmlInputElement>("fwd-t")
        .value_as_number()
        .max(0.0) as usize)
        .min(s.abar.len() - 1)
}

/// The index of the forward view's chosen image (`None`: no images).
fn forward_selection(fwd: &Forward) -> Option<usize> {
    let i = dom::select_value("fwd-image").parse::<usize>().unwrap_or(0);
    (!fwd.images.is_empty()).then(|| i.min(fwd.images.len() - 1))
}

async fn forward_once(app: &Rc<App>) {
    let s = app.schedule.borrow().clone();
    let t = forward_t(&s);
    let gpu = app.gpu.borrow().clone();
    // Hold an Rc of the view's data, not a RefCell borrow, across the await.
    let fwd = app.fwd.borrow().clone();
    let Some(i) = forward_selection(&fwd) else {
        return;
    };
    let im = &fwd.images[i];
    let xt = fwd.xt(gpu.as_deref(), i, t, &s.abar).await;
    let q = crate::sampler::SnapshotData::quantise;
    let r = draw::draw_grid("fwd-x0", &q(&im.x0), im.shape)
        .and_then(|_| draw::draw_grid("fwd-xt", &q(&xt), im.shape))
        .and_then(|_| {
            draw::draw_schedule_plot(
                "fwd-plot",
                &draw::PlotSeries {
                    abar: &s.abar,
                    beta: &s.betas,
                    log_snr: &s.log_snr,
                },
                t,
            )
        });
    if let Err(e) = r {
        web_sys::console::error_1(&e);
    }
    dom::set_text("fwd-t-label", &format!("t = {t}"));
    let a = s.abar[t];
    dom::set_text(
        "fwd-stats",
        &format!(
            "ᾱ_t = {a:.4} · β_t = {:.5} · SNR = {:.3e} · √(1−ᾱ_t) = {:.3}",
            s.betas[t],
            a / (1.0 - a),
            (1.0 - a).sqrt()
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// Model loading

/// Loads the default model named by `?model=URL/` (or `?model=hf:owner/name[@revision]`, from
/// the Hub at `?hub=`, else the public Hub) or `<meta name="ddpm-default-model">` (whose
/// `data-note` is shown in a banner), if any.
async fn load_default_model() {
    let params = web_sys::Url::new(&dom::window().location().href().unwrap_or_default())
        .ok()
        .map(|u| u.search_params());
    let param = |key: &str| {
        params
            .as_ref()
            .and_then(|p| p.get(key))
            .filter(|s| !s.is_empty())
    };
    let from_query = param("model");
    if let Some(id) = from_query.as_deref().and_then(crate::hub::HubId::parse) {
        let endpoint = param("hub").unwrap_or_else(|| crate::hub::DEFAULT_ENDPOINT.to_string());
        match id {
            Ok(id) => load_from_hub(&endpoint, &id).await,
            Err(e) => apply_model_files(Err(e.to_string()), None).await,
        }
        return;
    }
    let meta = dom::document()
        .query_selector("meta[name=ddpm-default-model]")
        .ok()
        .flatten();
    let (base, note) = match from_query {
        Some(url) => (Some(url), None),
        None => (
            meta.as_ref().and_then(|m| m.get_attribute("content")),
            meta.as_ref().and_then(|m| m.get_attribute("data-note")),
        ),
    };
    let Some(mut base) = base.filter(|s| !s.is_empty()) else {
        dom::set_text(
            "model-status",
            "No default model bundled: load your own below.",
        );
        return;
    };
    if !base.ends_with('/') {
        base.push('/');
    }
    load_from_url(&base, note).await;
}

/// Downloads the model folder at `base` (ending in `/`) and loads it.
async fn load_from_url(base: &str, note: Option<String>) {
    start_download();
    let result = files::fetch_model(base, show_download).await;
    dom::set_hidden("model-progress", true);
    apply_model_files(result, note).await;
}

/// Downloads Hub model `id` from `endpoint` (through the browser's cache) and loads it.
async fn load_from_hub(endpoint: &str, id: &crate::hub::HubId) {
    start_download();
    let result = files::fetch_hub_model(endpoint, id, show_download).await;
    dom::set_hidden("model-progress", true);
    apply_model_files(result, None).await;
}

/// The model section's state while files download.
fn start_download() {
    let app = app();
    app.model_loading.set(true);
    refresh_generate();
    dom::set_body_state("model", "loading");
    dom::set_hidden("model-progress", false);
}

/// Download progress of file `name` in the model section.
fn show_download(name: &str, done: u64, total: Option<u64>) {
    let progress = dom::el::<web_sys::HtmlProgressElement>("model-progress");
    match total {
        Some(t) if t > 0 => {
            progress.set_max(t as f64);
            progress.set_value(done as f64);
            dom::set_text(
                "model-status",
                &format!("Downloading {name}: {} / {}", files::mb(done), files::mb(t)),
            );
        }
        _ => {
            progress.remove_attribute("value").ok();
            dom::set_text(
                "model-status",
                &format!("Downloading {name}: {}", files::mb(done)),
            );
        }
    }
}

/// Puts the current model (if any) on a newly created device.
fn rebuild_engine(gpu: &Gpu) {
    let app = app();
    app.engine.borrow_mut().take();
    let Some(model) = app.model.borrow().clone() else {
        return;
    };
    let generation = GPU_GENERATION.load(Ordering::SeqCst);
    match model
        .weights()
        .and_then(|w| Engine::new(gpu, generation, &model, &w))
    {
        Ok(e) => *app.engine.borrow_mut() = Some(e),
        Err(e) => dom::show_message(
            "model-error",
            Some(&format!(
                "Could not put the model on the new GPU device: {e}"
            )),
        ),
    }
}

/// Loads model files (or shows why they could not be read) and makes the model current;
/// `note` (the default model's) is shown in a banner.
async fn apply_model_files(files: Result<ModelFiles, String>, note: Option<String>) {
    let app = app();
    dom::show_message("model-error", None);
    app.model_loading.set(true);
    refresh_generate();
    dom::set_body_state("model", "loading");
    let loaded = match files {
        Ok(files) => {
            dom::set_text(
                "model-status",
                &format!("Loading model from {}…", files.source),
            );
            // Let the status paint before the (synchronous) parse and upload.
            dom::yield_now().await;
            install_model(&app, files)
        }
        Err(e) => Err(e),
    };
    app.model_loading.set(false);
    match loaded {
        Ok(()) => {
            let model = app.model.borrow().clone().expect("installed");
            dom::set_html("model-info", &table(&model.facts));
            dom::set_hidden("model-info", false);
            dom::set_text(
                "model-status",
                &format!("Model loaded: {}.", model.summary()),
            );
            dom::show_message("model-note", note.as_deref());
            dom::set_body_state("model", "ready");
        }
        Err(msg) => {
            dom::show_message(
                "model-error",
                Some(&format!("Could not load the model: {msg}")),
            );
            dom::set_text(
                "model-status",
                if app.model.borrow().is_some() {
                    "Keeping the previous model."
                } else {
                    "No model loaded."
                },
            );
            dom::set_body_state("model", "error");
        }
    }
    refresh_generate();
    show_schedule();
    update_forward();
}

/// Shows the DDIM options when DDIM is selected.
fn show_sampler_options() {
    dom::set_hidden("ddim-options", dom::select_value("sampler") != "ddim");
}

/// FLOPs per image and step above which a loaded model starts on DDIM 50.
const BIG_MODEL_FLOPS: u128 = 1_000_000_000;

/// Parses `files` and, if a device exists and no Generate runs, puts the model on it (so
/// problems show now); then makes it the current model.
fn install_model(app: &App, files: ModelFiles) -> Result<(), String> {
    let id = app.loads.get() + 1;
    app.loads.set(id);
    let (model, weights) = Model::load(id, files).map_err(|e| e.to_string())?;
    let gpu = app.gpu.borrow().clone();
    let engine = match gpu {
        Some(gpu) if !app.running.get() => {
            // Free the previous model's GPU memory first.
            app.engine.borrow_mut().take();
            let generation = GPU_GENERATION.load(Ordering::SeqCst);
            Some(Engine::new(&gpu, generation, &model, &weights).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    // The controls follow the model's scheduler; costly models (the paper's CIFAR-10 net, 12
    // GFLOP per image and step, and its 256×256 ones) start on DDIM 50, DDPM one click away.
    if model.config.forward_flops(1) > BIG_MODEL_FLOPS {
        dom::el::<HtmlSelectElement>("sampler").set_value("ddim");
        dom::el::<HtmlInputElement>("ddim-steps").set_value("50");
        show_sampler_options();
    }
    dom::el::<HtmlSelectElement>("variance").set_value(model.scheduler.variance_type.name());
    show_class_controls(&model.config);
    draw_pad::resize(model.sample);
    // The shipped-models menu shows the one loaded, or "your own model".
    let menu = dom::el::<HtmlSelectElement>("model-menu");
    menu.set_value(&model.files.source);
    if menu.value() != model.files.source {
        menu.set_value("");
    }
    // The forward view's examples come from the model's own dataset.
    let source =
        crate::data::examples::dataset_of(&model.config).unwrap_or(crate::data::Source::Mnist);
    *app.fwd.borrow_mut() = Rc::new(Forward::with_examples(source));
    refresh_forward_menu();
    update_forward();
    dom::el::<HtmlInputElement>("ddim-steps")
        .set_max(&model.scheduler.num_train_timesteps.to_string());
    *app.schedule.borrow_mut() = Rc::new(ScheduleView::new(&model.scheduler));
    *app.engine.borrow_mut() = engine;
    *app.model.borrow_mut() = Some(Rc::new(model));
    Ok(())
}
