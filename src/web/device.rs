//! The GPU device: created on first use and after a device loss, its adapter described in the
//! page (`#gpu-status`, `#gpu-info`).

use super::ids;
use super::*;

/// The current GPU, created on first use and again after a device loss.
pub(super) async fn ensure_gpu() -> PageResult<Rc<Gpu>> {
    if let Some(gpu) = app().gpu.borrow().as_ref() {
        return Ok(gpu.clone());
    }
    app().gpu_state.set(GpuState::Pending);
    set_gpu_pill("pending", "Starting WebGPU…");
    match create_gpu().await {
        Ok(gpu) => {
            let gpu = Rc::new(gpu);
            *app().gpu.borrow_mut() = Some(gpu.clone());
            rebuild_engine(&gpu);
            let label = adapter_label(&gpu).await;
            show_gpu_info(&gpu, &label);
            dom::show_message(ids::GPU_ERROR, None);
            app().gpu_state.set(GpuState::Ready);
            set_gpu_pill("ready", &label);
            refresh_generate();
            if !app().busy() {
                dom::set_text(ids::RUN_STATUS, "Ready. Press Generate.");
            }
            Ok(gpu)
        }
        Err(e) => {
            dom::show_message(ids::GPU_ERROR, Some(&e.to_string()));
            app().gpu_state.set(GpuState::Unavailable);
            set_gpu_pill("unavailable", "WebGPU unavailable");
            refresh_generate();
            dom::set_text(ids::RUN_STATUS, "Generate needs WebGPU.");
            Err(e)
        }
    }
}

pub(super) async fn create_gpu() -> PageResult<Gpu> {
    let navigator = dom::window().navigator();
    let has_gpu = js_sys::Reflect::get(&navigator, &"gpu".into())
        .map(|v| !v.is_undefined() && !v.is_null())
        .unwrap_or(false);
    if !has_gpu {
        return Err(PageError::NoGpu(
            "this browser does not expose WebGPU (navigator.gpu is missing). \
                    Use a recent Chrome or Edge (113+), or Firefox / Safari with WebGPU enabled; \
                    WebGPU also needs a secure context (https:// or http://localhost)."
                .into(),
        ));
    }
    let gpu = Gpu::new().await.map_err(|e| {
        PageError::NoGpu(match e {
            crate::Error::NoAdapter(_) => "the browser supports WebGPU but gave no GPU adapter (the GPU may be \
                 blocklisted or WebGPU turned off; on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu \
                 or --enable-unsafe-webgpu)."
                .to_string(),
            other => format!("{other}."),
        })
    })?;
    // `?kernels=reg|subgroup|tiled|heuristic` forces a kernel variant (for measuring them in
    // the browser); the default is the heuristic for the adapter class.
    if let Some(policy) = dom::query_param("kernels") {
        let policy = crate::gpu::KernelPolicy::parse(&policy)
            .map_err(|e| PageError::Input(format!("?kernels=: {e}")))?;
        gpu.set_kernel_policy(policy);
    }
    let generation = GPU_GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
    gpu.device.set_device_lost_callback(move |reason, message| {
        if GPU_GENERATION.load(Ordering::SeqCst) == generation {
            on_device_lost(&format!("{reason:?}: {message}"));
        }
    });
    Ok(gpu)
}

/// Called by wgpu when the device is lost: forget it; the next Generate makes a new one.
pub(super) fn on_device_lost(why: &str) {
    GPU_GENERATION.fetch_add(1, Ordering::SeqCst);
    app().gpu.borrow_mut().take();
    app().engine.borrow_mut().take();
    app().gpu_state.set(GpuState::Lost);
    set_gpu_pill("lost", "GPU device lost");
    dom::show_message(
        ids::GPU_ERROR,
        Some(&format!(
            "The GPU device was lost ({why}). Press Generate to start a new device."
        )),
    );
    refresh_generate();
}

pub(super) fn set_gpu_pill(class: &str, text: &str) {
    dom::set_class(ids::GPU_STATUS, &format!("pill {class}"));
    dom::set_text(ids::GPU_STATUS, text);
    dom::el::<web_sys::Element>(ids::GPU_STATUS)
        .set_attribute("title", text)
        .ok();
}

/// "WebGPU · vendor architecture (description)". wgpu's browser backend reports only the
/// description, so ask `navigator.gpu` for the adapter's info (display only).
pub(super) async fn adapter_label(gpu: &Gpu) -> String {
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

pub(super) fn show_gpu_info(gpu: &Gpu, label: &str) {
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
    dom::set_html(ids::GPU_INFO, &table(&rows));
}

/// An HTML table of (label, value) rows, escaped.
pub(super) fn table<S: AsRef<str>>(rows: &[(S, String)]) -> String {
    let mut html = String::from("<table>");
    for (k, v) in rows {
        html += &format!("<tr><td>{}</td><td>{}</td></tr>", esc(k.as_ref()), esc(v));
    }
    html + "</table>"
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
