//! Kernels (one WGSL entry point + its bind group layout) and recorded dispatches.
//!
//! Conventions every shader in `shaders/` follows:
//! - all bindings live in `@group(0)`, numbered from 0 in the order of [`KernelSpec::bindings`];
//! - binding 0 is the kernel's uniform parameter struct (mirrored by a `#[repr(C)]` Pod struct
//!   declared with `uniform_params!`, named by [`KernelSpec::params`]);
//! - a 1-D job of more than [`MAX_WORKGROUPS_PER_DIM`] workgroups is spread over x and y by
//!   [`grid`]; the shader flattens it with `wid.x + wid.y * nwg.x` (`@builtin(num_workgroups)`).

use wgpu::util::DeviceExt;

use super::{Gpu, ParamsLayout, UniformParams};

/// WebGPU's guaranteed maximum workgroup count per dimension.
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65535;

/// How a shader binding is accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<uniform>` (the parameter block).
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// A static description of one kernel: its WGSL source, entry point and bindings.
pub struct KernelSpec {
    /// Unique name (usually the shader file's stem), used as cache key and debug label.
    pub name: &'static str,
    /// WGSL source (`include_str!`, or `concat!` of several files).
    pub source: &'static str,
    /// The `@compute` entry point.
    pub entry: &'static str,
    /// One entry per binding, in binding order.
    pub bindings: &'static [Access],
    /// The layout of the parameter block bound at binding 0 (`&Params::LAYOUT`); dispatches must
    /// pass that struct.
    pub params: &'static ParamsLayout,
}

/// A compiled compute pipeline with its bind group layout.
pub(crate) struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    bindings: &'static [Access],
    name: &'static str,
}

impl Kernel {
    pub(crate) fn new(device: &wgpu::Device, spec: &KernelSpec) -> Self {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = spec
            .bindings
            .iter()
            .enumerate()
            .map(|(i, access)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match access {
                    Access::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Access::Read | Access::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: *access == Access::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(spec.name),
            entries: &entries,
        });
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(spec.name),
            source: wgpu::ShaderSource::Wgsl(spec.source.into()),
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(spec.name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(spec.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        Kernel {
            pipeline,
            layout,
            bindings: spec.bindings,
            name: spec.name,
        }
    }
}

/// One recorded kernel launch (pipeline, bound buffers with their own parameter block, workgroup
/// counts), or a short sequence of launches that together make one op ([`Dispatch::then`]).
/// Build once, record into many command buffers.
#[derive(Clone)]
pub struct Dispatch {
    launches: Vec<Launch>,
    /// The kernel's name, for profiling.
    pub name: &'static str,
}

#[derive(Clone)]
struct Launch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

impl Dispatch {
    pub(crate) fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for l in &self.launches {
            pass.set_pipeline(&l.pipeline);
            pass.set_bind_group(0, &l.bind_group, &[]);
            let [x, y, z] = l.workgroups;
            pass.dispatch_workgroups(x, y, z);
        }
    }

    /// This op followed by `next` (run in order, profiled under this one's name).
    pub fn then(mut self, next: Dispatch) -> Dispatch {
        self.launches.extend(next.launches);
        self
    }
}

impl Gpu {
    /// Builds a dispatch of `spec` with `params` as its uniform block and `buffers` bound to
    /// bindings 1.. in order. Panics if the buffer count or the parameter struct does not match
    /// the spec (a programming error, not a data error).
    pub fn dispatch<P: UniformParams>(
        &self,
        spec: &KernelSpec,
        params: &P,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Dispatch {
        assert_eq!(
            P::LAYOUT.name,
            spec.params.name,
            "{}: dispatched with the wrong parameter struct",
            spec.name
        );
        let kernel = self.kernel(spec);
        assert_eq!(
            kernel.bindings.first(),
            Some(&Access::Uniform),
            "{}: binding 0 must be the uniform parameter block",
            kernel.name
        );
        assert_eq!(
            buffers.len() + 1,
            kernel.bindings.len(),
            "{}: wrong number of buffers",
            kernel.name
        );
        let uniform = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(kernel.name),
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        entries.extend(
            buffers
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: b.as_entire_binding(),
                }),
        );
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &kernel.layout,
            entries: &entries,
        });
        Dispatch {
            launches: vec![Launch {
                pipeline: kernel.pipeline.clone(),
                bind_group,
                workgroups,
            }],
            name: kernel.name,
        }
    }
}

/// Workgroup counts for a 1-D job of `n_workgroups` groups, folded into x and y so that each
/// stays within [`MAX_WORKGROUPS_PER_DIM`].
pub fn grid(n_workgroups: u32) -> [u32; 3] {
    let n = n_workgroups.max(1);
    if n <= MAX_WORKGROUPS_PER_DIM {
        [n, 1, 1]
    } else {
        let y = n.div_ceil(MAX_WORKGROUPS_PER_DIM);
        [n.div_ceil(y), y, 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_covers_and_fits() {
        for n in [0, 1, 255, 65535, 65536, 200_000, 10_000_000] {
            let [x, y, z] = grid(n);
            assert!(x <= MAX_WORKGROUPS_PER_DIM && y <= MAX_WORKGROUPS_PER_DIM && z == 1);
            assert!(x as u64 * y as u64 >= n as u64);
        }
    }
}
