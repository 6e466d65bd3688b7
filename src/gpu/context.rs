//! Adapter and device setup, error capture, submission and readback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::kernel::{Dispatch, Kernel, KernelSpec};
use super::tensor::Tensor;
use super::tuning::{KernelPolicy, Tuner};
use crate::error::{Error, Result};

/// A GPU device with its queue, limits, a cache of compiled kernels and the kernel variants
/// chosen so far (see [`super::tuning`]).
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// What the adapter says about itself (name, backend, device type).
    pub info: wgpu::AdapterInfo,
    /// The limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
    kernels: Mutex<HashMap<(&'static str, &'static str), Arc<Kernel>>>,
    errors: Arc<Mutex<Vec<String>>>,
    pub(crate) tuner: Tuner,
    /// See [`Gpu::placeholder`].
    placeholder: std::sync::OnceLock<Tensor>,
    /// See [`Gpu::scratch`].
    scratch: Mutex<HashMap<&'static str, Tensor>>,
    /// See [`Gpu::reads_f16`].
    f16_in_f32: bool,
}

/// Which device [`Gpu::request`] asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DeviceKind {
    /// The adapter's full limits and the optional features the kernels use.
    Full,
    /// WebGPU's defaults, as a browser may give.
    BrowserLike,
}

impl Gpu {
    /// Requests a high-performance adapter and a device with the adapter's full limits.
    pub async fn new() -> Result<Self> {
        Self::request(DeviceKind::Full).await
    }

    /// A device as a browser may give one: WebGPU's default limits (128 MiB storage bindings,
    /// 256 invocations and 16 KiB of workgroup memory per workgroup, …), no optional features,
    /// kernels chosen by the heuristic without timing, as the page does. For tests of what the
    /// page can run.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn browser_like_blocking() -> Result<Self> {
        pollster::block_on(Self::request(DeviceKind::BrowserLike))
    }

    async fn request(kind: DeviceKind) -> Result<Self> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| {
                Error::NoAdapter(format!(
                    "{e}. Natively this needs a Vulkan, Metal or DX12 driver (on Linux without a GPU: \
                     install mesa-vulkan-drivers and libvulkan1 for lavapipe); in a browser it needs WebGPU"
                ))
            })?;
        let info = adapter.get_info();
        let f16_in_f32 = adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32);
        let limits = match kind {
            DeviceKind::Full => adapter.limits(),
            DeviceKind::BrowserLike => wgpu::Limits::default(),
        };
        // Optional features some kernel variants use (see `gpu::tuning`). Not in the browser:
        // WGSL there needs `enable subgroups;`, which naga does not parse yet.
        let features = if cfg!(target_arch = "wasm32") || kind == DeviceKind::BrowserLike {
            wgpu::Features::empty()
        } else {
            adapter.features() & wgpu::Features::SUBGROUP
        };
        let policy = match kind {
            DeviceKind::Full => KernelPolicy::from_env()?,
            DeviceKind::BrowserLike => KernelPolicy::Heuristic,
        };
        let tuner = Tuner::new(policy);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("ddpm"),
                required_features: features,
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Device(e.to_string()))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().push(e.to_string());
        }));
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            kernels: Mutex::default(),
            errors,
            tuner,
            placeholder: std::sync::OnceLock::new(),
            scratch: Mutex::default(),
            f16_in_f32,
        })
    }

    /// One shared one-element tensor that fills a binding a dispatch never touches (an
    /// optional operand it was not given), so recording such dispatches allocates nothing.
    pub(crate) fn placeholder(&self) -> Result<&Tensor> {
        if let Some(t) = self.placeholder.get() {
            return Ok(t);
        }
        let t = Tensor::zeros(self, &[1], "unused binding")?;
        Ok(self.placeholder.get_or_init(|| t))
    }

    /// A buffer of at least `numel` f32 for intermediates that live only within one op's
    /// launches (Winograd's transformed tiles): every op asking for `slot` shares one buffer,
    /// replaced by a larger one when an op needs more (dispatches recorded earlier keep theirs).
    /// Sound because the queue runs ops one after another and no op reads another's scratch.
    pub(crate) fn scratch(&self, slot: &'static str, numel: usize) -> Result<Tensor> {
        let mut pool = self.scratch.lock().unwrap();
        if let Some(t) = pool.get(slot).filter(|t| t.numel() >= numel) {
            return Ok(t.clone());
        }
        let t = Tensor::zeros(self, &[numel], slot)?;
        pool.insert(slot, t.clone());
        Ok(t)
    }

    /// [`Gpu::new`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self> {
        pollster::block_on(Self::new())
    }

    /// True if shaders may use WGSL's `unpack2x16float` (wgpu's `SHADER_F16_IN_F32` downlevel
    /// flag), which the f16-weight conv kernels need: every browser's WebGPU and most native
    /// drivers; Mesa's lavapipe only where it also has the `shader-f16` feature.
    pub fn reads_f16(&self) -> bool {
        self.f16_in_f32
    }

    /// True if the device has subgroup operations with exactly `size` lanes per subgroup.
    pub fn has_subgroups_of(&self, size: u32) -> bool {
        self.device.features().contains(wgpu::Features::SUBGROUP)
            && self.info.subgroup_min_size == size
            && self.info.subgroup_max_size == size
    }

    /// True for adapters that run shaders on the CPU (lavapipe, SwiftShader, WARP). In the
    /// browser the device type is only known for a fallback adapter, so the name decides too.
    pub fn is_cpu(&self) -> bool {
        let name = self.info.name.to_lowercase();
        self.info.device_type == wgpu::DeviceType::Cpu
            || ["swiftshader", "llvmpipe", "lavapipe", "softpipe", "warp"]
                .iter()
                .any(|n| name.contains(n))
    }

    /// One line describing the adapter, e.g. `llvmpipe (LLVM 19.1.7, 256 bits) (Vulkan, Cpu)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Returns (and clears) the first GPU error reported since the last check.
    pub fn check(&self) -> Result<()> {
        let mut errors = self.errors.lock().unwrap();
        if errors.is_empty() {
            return Ok(());
        }
        let msg = errors.join("; ");
        errors.clear();
        Err(Error::Gpu(msg))
    }

    /// The compiled pipeline for `spec`, compiled on first use and cached.
    pub(crate) fn kernel(&self, spec: &KernelSpec) -> Arc<Kernel> {
        let mut cache = self.kernels.lock().unwrap();
        cache
            .entry((spec.name, spec.entry))
            .or_insert_with(|| Arc::new(Kernel::new(&self.device, spec)))
            .clone()
    }

    /// Records `dispatches` in order into one compute pass of `encoder`.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, dispatches: &[Dispatch]) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("ddpm"),
            timestamp_writes: None,
        });
        for d in dispatches {
            d.record(&mut pass);
        }
    }

    /// Records `dispatches` into one command buffer and submits it (does not wait).
    pub fn submit(&self, dispatches: &[Dispatch]) {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.encode(&mut encoder, dispatches);
        self.queue.submit([encoder.finish()]);
    }

    /// Submits `dispatches` and waits until the GPU has finished them.
    pub async fn run(&self, dispatches: &[Dispatch]) -> Result<()> {
        self.submit(dispatches);
        self.wait().await
    }

    /// Waits until all submitted work is done, then reports any GPU error.
    pub async fn wait(&self) -> Result<()> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.poll_wait();
        rx.await
            .map_err(|_| Error::Gpu("device lost while waiting".into()))?;
        self.check()
    }

    /// Blocks natively until the queue is idle; a no-op in the browser.
    pub(crate) fn poll_wait(&self) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        }
    }

    /// Copies `size` bytes of `buffer` from `offset` back to the CPU.
    pub async fn read_bytes(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.poll_wait();
        rx.await
            .map_err(|_| Error::Gpu("device lost during readback".into()))?
            .map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
        self.check()?;
        let bytes = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("readback map failed: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }
}
