//! The browser demo (wasm32 only): WebGPU setup, the Generate run loop, the timestep viewer,
//! the forward-process view and model loading. Page layout: `web/index.html`; styles:
//! `web/style.css`; build: `Trunk.toml`; end-to-end tests: `web/e2e/`.
//!
//! Stable element ids (used by `web/e2e/`):
//! - sampling controls: `n-samples`, `seed`, `seed-random`, `sampler` (`ddpm`|`ddim`),
//!   `ddim-options`, `ddim-steps`, `ddim-eta`, `variance` (`fixed_small`|`fixed_large`),
//!   `generate`, `stop`, `export-png`;
//! - progress: `run-progress`, `stat-steps`, `stat-rate`, `stat-elapsed`, `run-status`, `run-error`;
//! - reverse-process viewer: `canvas-xt`, `canvas-x0`, `view-t` (frame index: 0 = t = T … last =
//!   t = 0), `view-t-label`;
//! - forward process: `fwd-image`, `fwd-t` (t, 0..=T), `fwd-t-label`, `fwd-x0`, `fwd-xt`,
//!   `fwd-plot`, `fwd-stats`, `schedule-info`;
//! - model: `model-status`, `model-progress`, `model-info`, `model-files`, `model-drop`, `model-error`;
//! - GPU: `gpu-status`, `gpu-error`, `gpu-info`; notice `standin-note`.
//!
//! `<body>` carries the page state: `data-gpu` = pending | ready | unavailable | lost,
//! `data-run` = idle | running | done | stopped | error, `data-model` = none | loading | ready | error.

mod dom;
mod draw;
mod files;
mod forward;
mod run;
mod standin;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{HtmlInputElement, HtmlSelectElement, KeyboardEvent};

use crate::gpu::Gpu;
use forward::Forward;
use run::{Frames, RunConfig, SamplerKind, Variance};
use standin::{load_model, run_chunk, Model, ModelFiles, Run, Schedule, DEFAULT_SAMPLE};

/// Frames kept for the slider: at most this many bytes (quantized x_t and x̂_0).
const FRAME_BUDGET: usize = 160 << 20;
/// Aim for chunks of GPU work of about this many milliseconds between yields.
const CHUNK_TARGET_MS: f64 = 50.0;
/// Largest chunk of steps between two yields.
const MAX_CHUNK: usize = 200;

/// (t, x_t, x̂_0) quantized.
type LiveFrame = (usize, Vec<u8>, Vec<u8>);

/// The page's state. Lives in a thread-local (the page has one thread).
struct App {
    gpu: RefCell<Option<Rc<Gpu>>>,
    /// The current model, built on the current device…
    model: RefCell<Option<Rc<Model>>>,
    /// …from these files (kept to rebuild it on a new device after a device loss).
    model_files: RefCell<Option<Rc<ModelFiles>>>,
    schedule: RefCell<Schedule>,
    frames: RefCell<Option<Frames>>,
    /// Latest frame of the running Generate: (t, x_t, x̂_0), quantized, waiting to be drawn.
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
        model: RefCell::new(None),
        model_files: RefCell::new(None),
        schedule: RefCell::new(Schedule::linear(1000, 1e-4, 0.02)),
        frames: RefCell::new(None),
        live: RefCell::new(None),
        draw_pending: Cell::new(false),
        running: Cell::new(false),
        stop: Cell::new(false),
        fwd: RefCell::new(Rc::new(Forward::new(DEFAULT_SAMPLE))),
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
            rebuild_model(&gpu);
            let label = adapter_label(&gpu).await;
            show_gpu_info(&gpu, &label);
            dom::show_message("gpu-error", None);
            dom::set_body_state("gpu", "ready");
            set_gpu_pill("ready", &label);
            dom::set_disabled("generate", app().running.get());
            dom::set_text("run-status", "Ready. Press Generate.");
            Ok(gpu)
        }
        Err(msg) => {
            let msg = format!("WebGPU unavailable: {msg}");
            dom::show_message("gpu-error", Some(&msg));
            dom::set_body_state("gpu", "unavailable");
            set_gpu_pill("unavailable", "WebGPU unavailable");
            dom::set_disabled("generate", true);
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
    dom::set_body_state("gpu", "lost");
    set_gpu_pill("lost", "GPU device lost");
    dom::show_message(
        "gpu-error",
        Some(&format!(
            "The GPU device was lost ({why}). Press Generate to start a new device."
        )),
    );
    if !app().running.get() {
        dom::set_disabled("generate", false);
    }
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
    dom::on::<web_sys::Event>("generate", "click", |_| spawn_local(generate()));
    dom::on::<web_sys::Event>("stop", "click", |_| {
        app().stop.set(true);
        dom::set_text("run-status", "Stopping…");
    });
    dom::on::<web_sys::Event>("seed-random", "click", |_| {
        let seed = (js_sys::Math::random() * 1e9).floor();
        dom::el::<HtmlInputElement>("seed").set_value_as_number(seed);
    });
    dom::on::<web_sys::Event>("sampler", "change", |_| {
        dom::set_hidden("ddim-options", dom::select_value("sampler") != "ddim");
    });
    dom::on::<web_sys::Event>("n-samples", "change", |_| {
        let n = read_n();
        dom::el::<HtmlInputElement>("n-samples").set_value_as_number(n as f64);
    });
    dom::on::<web_sys::Event>("view-t", "input", |_| show_selected_frame());
    dom::on::<web_sys::Event>("export-png", "click", |_| export_png());
    dom::on::<web_sys::Event>("fwd-t", "input", |_| update_forward());
    dom::on::<web_sys::Event>("fwd-image", "change", |_| update_forward());
    dom::listen::<KeyboardEvent>(dom::document().as_ref(), "keydown", on_key);
    dom::listen::<web_sys::Event>(dom::window().as_ref(), "resize", |_| update_forward());

    // Model files: picker and drag & drop.
    dom::on::<web_sys::Event>("model-files", "change", |_| {
        let input = dom::el::<HtmlInputElement>("model-files");
        if let Some(list) = input.files() {
            spawn_local(async move {
                let result = files::read_user_files(&list).await;
                dom::el::<HtmlInputElement>("model-files").set_value("");
                apply_model_files(result).await;
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
            spawn_local(
                async move { apply_model_files(files::read_user_files(&list).await).await },
            );
        }
    });
}

/// ← / → step the timestep viewer by one frame (unless typing in a field).
fn on_key(e: KeyboardEvent) {
    let delta = match e.key().as_str() {
        "ArrowLeft" => -1.0,
        "ArrowRight" => 1.0,
        _ => return,
    };
    if let Some(target) = e
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
    {
        let tag = target.tag_name();
        if matches!(tag.as_str(), "INPUT" | "SELECT" | "TEXTAREA") {
            return; // the focused control handles its own arrows (the range inputs step by one)
        }
    }
    let slider = dom::el::<HtmlInputElement>("view-t");
    if slider.disabled() {
        return;
    }
    let max = slider.max().parse::<f64>().unwrap_or(0.0);
    let v = (slider.value_as_number() + delta).clamp(0.0, max);
    slider.set_value_as_number(v);
    e.prevent_default();
    show_selected_frame();
}

fn read_n() -> usize {
    dom::input_f64("n-samples", 16.0).round().clamp(1.0, 64.0) as usize
}

fn read_config() -> RunConfig {
    let steps = dom::input_f64("ddim-steps", 50.0)
        .round()
        .clamp(1.0, 100_000.0) as usize;
    let eta = dom::input_f64("ddim-eta", 0.0).clamp(0.0, 1.0) as f32;
    RunConfig {
        n: read_n(),
        seed: dom::input_f64("seed", 0.0).max(0.0) as u64,
        sampler: if dom::select_value("sampler") == "ddim" {
            SamplerKind::Ddim { steps, eta }
        } else {
            SamplerKind::Ddpm
        },
        variance: if dom::select_value("variance") == "fixed_large" {
            Variance::FixedLarge
        } else {
            Variance::FixedSmall
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Generate

/// Runs the reverse process in chunks, yielding to the browser between chunks and drawing the
/// latest x_t on animation frames, until done or stopped.
async fn generate() {
    let app = app();
    if app.running.get() {
        return;
    }
    app.running.set(true);
    app.stop.set(false);
    dom::set_disabled("generate", true);
    dom::show_message("run-error", None);
    let outcome = generate_inner(&app).await;
    app.running.set(false);
    dom::set_disabled("stop", true);
    dom::set_disabled("generate", false);
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
            "{status} Kept every {}th frame for the slider (memory).",
            f.stride()
        ),
        _ => status.to_string(),
    };
    dom::set_text("run-status", &status);
    enable_viewer();
    if state == "done" {
        if let Some(frames) = app.frames.borrow().as_ref() {
            Rc::make_mut(&mut app.fwd.borrow_mut()).add_generated(frames);
        }
        refresh_forward_menu();
    }
    dom::set_body_state("run", state);
}

/// Ok(stopped?) or a message for the page.
async fn generate_inner(app: &Rc<App>) -> Result<bool, String> {
    let gpu = ensure_gpu().await?;
    let cfg = read_config();
    let model = app.model.borrow().clone();
    let sample = model.as_ref().map_or(DEFAULT_SAMPLE, |m| m.sample);
    let schedule = app.schedule.borrow().clone();
    let mut run = Run::new(&gpu, model.as_deref(), &schedule, &cfg).map_err(|e| e.to_string())?;
    let total = run.total_steps();
    let frames = Frames::new(run.shape(), total + 1, FRAME_BUDGET);
    run.keep_every = frames.stride();
    *app.frames.borrow_mut() = Some(frames);
    let slider = dom::el::<HtmlInputElement>("view-t");
    slider.set_disabled(true);
    dom::set_disabled("stop", false);
    dom::set_body_state("run", "running");
    dom::set_text(
        "run-status",
        &format!("Running {} · {} × {:?}…", cfg.describe(), cfg.n, sample),
    );
    update_stats(0, total, 0.0);

    let t0 = dom::now_ms();
    let mut chunk = 1usize;
    while !run.is_done() {
        if app.stop.get() {
            return Ok(true);
        }
        let (c0, before) = (dom::now_ms(), run.steps_done());
        let frames = run_chunk(&gpu, &mut run, chunk).await.map_err(|e| {
            let lost = app.gpu.borrow().is_none();
            if lost {
                format!("{e} (the GPU device was lost; press Generate to retry on a new device)")
            } else {
                e.to_string()
            }
        })?;
        let dt = dom::now_ms() - c0;
        if let Some(store) = app.frames.borrow_mut().as_mut() {
            for f in &frames {
                store.push(f);
            }
        }
        if let Some(last) = frames.last() {
            *app.live.borrow_mut() =
                Some((last.t, draw::quantize(&last.x), draw::quantize(&last.x0)));
            schedule_live_draw(run.shape());
        }
        update_stats(run.steps_done(), total, dom::now_ms() - t0);
        // Size the next chunk so that one takes about CHUNK_TARGET_MS.
        let per_step = dt / (run.steps_done() - before).max(1) as f64;
        chunk = ((CHUNK_TARGET_MS / per_step.max(0.01)) as usize)
            .clamp((chunk / 2).max(1), (chunk * 2).min(MAX_CHUNK));
        dom::yield_now().await;
    }
    Ok(false)
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
            format!("{rate:.1} it/s")
        } else {
            "–".into()
        },
    );
    dom::set_text("stat-elapsed", &format!("{:.1} s", elapsed_ms / 1e3));
}

/// Draws the latest live frame on the next animation frame (at most one pending).
fn schedule_live_draw(shape: [usize; 4]) {
    let app = app();
    if app.draw_pending.replace(true) {
        return;
    }
    dom::request_frame(move || {
        let app = self::app();
        app.draw_pending.set(false);
        let live = app.live.borrow_mut().take();
        if let Some((t, x, x0)) = live {
            draw_pair(&x, &x0, shape);
            dom::set_text("view-t-label", &format!("t = {t}"));
            dom::set_disabled("export-png", false);
        }
    });
}

fn draw_pair(x: &[u8], x0: &[u8], shape: [usize; 4]) {
    if let Err(e) =
        draw::draw_grid("canvas-xt", x, shape).and_then(|_| draw::draw_grid("canvas-x0", x0, shape))
    {
        web_sys::console::error_1(&e);
    }
}

// ---------------------------------------------------------------------------------------------
// Timestep viewer

fn enable_viewer() {
    let app = app();
    let frames = app.frames.borrow();
    let slider = dom::el::<HtmlInputElement>("view-t");
    match frames.as_ref() {
        Some(f) if !f.is_empty() => {
            slider.set_max(&(f.len() - 1).to_string());
            slider.set_value_as_number((f.len() - 1) as f64);
            slider.set_disabled(false);
            drop(frames);
            show_selected_frame();
        }
        _ => slider.set_disabled(true),
    }
}

fn show_selected_frame() {
    let app = app();
    let frames = app.frames.borrow();
    let Some(f) = frames.as_ref().filter(|f| !f.is_empty()) else {
        return;
    };
    let i = (dom::el::<HtmlInputElement>("view-t")
        .value_as_number()
        .max(0.0) as usize)
        .min(f.len() - 1);
    draw_pair(f.x(i), f.x0(i), f.shape);
    let t = f.t(i);
    let label = if t == 0 {
        "t = 0 (sample)".to_string()
    } else {
        format!("t = {t}")
    };
    dom::set_text("view-t-label", &label);
    dom::set_disabled("export-png", false);
}

fn export_png() {
    let label = dom::el::<web_sys::Element>("view-t-label")
        .text_content()
        .unwrap_or_default();
    let t: String = label.chars().filter(|c| c.is_ascii_digit()).collect();
    let seed = dom::input_f64("seed", 0.0) as u64;
    let name = format!("ddpm-seed{seed}-t{t}.png");
    if let Err(e) = draw::png_data_url("canvas-xt", 512).and_then(|url| draw::download(&url, &name))
    {
        dom::show_message(
            "run-error",
            Some(&format!("export failed: {}", dom::js_err(e))),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Schedule and forward process

fn show_schedule() {
    let app = app();
    let s = app.schedule.borrow();
    let abar = s.alphas_cumprod();
    let t_max = s.t_max();
    let snr_t = abar[t_max] / (1.0 - abar[t_max]);
    dom::set_text(
        "schedule-info",
        &format!(
            "{} · T = {t_max}\nᾱ_T = {:.2e} · SNR(T) = {snr_t:.2e}",
            s.kind, abar[t_max]
        ),
    );
    let slider = dom::el::<HtmlInputElement>("fwd-t");
    slider.set_max(&t_max.to_string());
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
        .map(|(i, (name, _))| format!("<option value=\"{i}\">{}</option>", esc(name)))
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

async fn forward_once(app: &Rc<App>) {
    let (abar, series) = {
        let s = app.schedule.borrow();
        let abar = s.alphas_cumprod();
        let log_snr: Vec<f32> = abar[1..].iter().map(|&a| (a / (1.0 - a)).ln()).collect();
        (abar, (s.betas.clone(), log_snr))
    };
    let t_max = abar.len() - 1;
    let t = (dom::el::<HtmlInputElement>("fwd-t")
        .value_as_number()
        .max(0.0) as usize)
        .min(t_max);
    let i = dom::select_value("fwd-image").parse::<usize>().unwrap_or(0);
    let gpu = app.gpu.borrow().clone();
    // Hold an Rc of the view's data, not a RefCell borrow, across the await.
    let fwd = app.fwd.borrow().clone();
    let i = i.min(fwd.images.len().saturating_sub(1));
    let (shape, x0) = (fwd.shape(), fwd.x0(i));
    let xt = fwd.xt(gpu.as_deref(), i, abar[t]).await;
    let r = draw::draw_grid("fwd-x0", &x0, shape)
        .and_then(|_| draw::draw_grid("fwd-xt", &xt, shape))
        .and_then(|_| {
            draw::draw_schedule_plot(
                "fwd-plot",
                &draw::PlotSeries {
                    abar: &abar[1..],
                    beta: &series.0,
                    log_snr: &series.1,
                },
                t,
            )
        });
    if let Err(e) = r {
        web_sys::console::error_1(&e);
    }
    dom::set_text("fwd-t-label", &format!("t = {t}"));
    let a = abar[t];
    let beta = if t >= 1 { series.0[t - 1] } else { 0.0 };
    let snr = if t >= 1 {
        format!("{:.3e}", a / (1.0 - a))
    } else {
        "∞".into()
    };
    dom::set_text(
        "fwd-stats",
        &format!(
            "ᾱ_t = {a:.4} · β_t = {beta:.5} · SNR = {snr} · √(1−ᾱ_t) = {:.3}",
            (1.0 - a).sqrt()
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// Model loading

/// Loads the default model named by `?model=URL/` or `<meta name="ddpm-default-model">`, if any.
async fn load_default_model() {
    let from_query = web_sys::Url::new(&dom::window().location().href().unwrap_or_default())
        .ok()
        .and_then(|u| u.search_params().get("model"));
    let from_meta = dom::document()
        .query_selector("meta[name=ddpm-default-model]")
        .ok()
        .flatten()
        .and_then(|m| m.get_attribute("content"));
    let Some(mut base) = from_query.or(from_meta).filter(|s| !s.is_empty()) else {
        dom::set_text(
            "model-status",
            "No default model bundled: Generate uses the stand-in. Load your own below.",
        );
        return;
    };
    if !base.ends_with('/') {
        base.push('/');
    }
    dom::set_body_state("model", "loading");
    dom::set_hidden("model-progress", false);
    let progress = dom::el::<web_sys::HtmlProgressElement>("model-progress");
    let result = files::fetch_model(&base, |name, done, total| match total {
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
    })
    .await;
    dom::set_hidden("model-progress", true);
    apply_model_files(result).await;
}

/// Rebuilds the current model (if any) on a newly created device.
fn rebuild_model(gpu: &Gpu) {
    let app = app();
    let Some(files) = app.model_files.borrow().clone() else {
        return;
    };
    match load_model(Some(gpu), &files) {
        Ok(model) => *app.model.borrow_mut() = Some(Rc::new(model)),
        Err(e) => {
            app.model.borrow_mut().take();
            app.model_files.borrow_mut().take();
            dom::show_message(
                "model-error",
                Some(&format!(
                    "Could not rebuild the model on the new GPU device: {e}"
                )),
            );
            dom::set_text("model-status", "No model loaded.");
            dom::set_body_state("model", "error");
        }
    }
}

/// Loads model files (or shows why they could not be read) and makes the model current.
async fn apply_model_files(files: Result<ModelFiles, String>) {
    let app = app();
    dom::show_message("model-error", None);
    let loaded = match files {
        Ok(files) => {
            dom::set_body_state("model", "loading");
            dom::set_text(
                "model-status",
                &format!("Loading model from {}…", files.source),
            );
            let gpu = app.gpu.borrow().clone();
            load_model(gpu.as_deref(), &files)
                .map(|m| (m, Rc::new(files)))
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    match loaded {
        Ok((model, files)) => {
            *app.model_files.borrow_mut() = Some(files);
            dom::set_html("model-info", &table(&model.facts));
            dom::set_hidden("model-info", false);
            dom::set_text("model-status", "Model loaded.");
            *app.schedule.borrow_mut() = model.schedule.clone();
            if app.fwd.borrow().sample != model.sample {
                *app.fwd.borrow_mut() = Rc::new(Forward::new(model.sample));
            }
            *app.model.borrow_mut() = Some(Rc::new(model));
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
    show_schedule();
    refresh_forward_menu();
    update_forward();
}
