//! A dense f32 tensor living in a GPU storage buffer (row-major, PyTorch's NCHW for images).

use wgpu::util::DeviceExt;

use super::Gpu;
use crate::error::{Error, Result};

/// A contiguous f32 tensor on the GPU.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub buffer: wgpu::Buffer,
    pub shape: Vec<usize>,
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl Tensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.numel() as u64 * 4
    }

    /// A zero-filled tensor. Fails if it would not fit in one storage binding.
    pub fn zeros(gpu: &Gpu, shape: &[usize], label: &str) -> Result<Self> {
        let bytes = check_size(gpu, shape, label)?;
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: USAGE,
            mapped_at_creation: false,
        });
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
        })
    }

    /// Uploads `data` (which must have `shape.product()` elements).
    pub fn from_slice(gpu: &Gpu, shape: &[usize], data: &[f32], label: &str) -> Result<Self> {
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(Error::Shape {
                what: format!("{label} data ({} elements)", data.len()),
                expected: shape.to_vec(),
                got: vec![data.len()],
            });
        }
        check_size(gpu, shape, label)?;
        let contents: &[u8] = if data.is_empty() {
            &[0; 4]
        } else {
            bytemuck::cast_slice(data)
        };
        let buffer = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: USAGE,
            });
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
        })
    }

    /// Overwrites the contents with `data` (queued; visible to the next submission).
    pub fn write(&self, gpu: &Gpu, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::Shape {
                what: "tensor write".into(),
                expected: self.shape.clone(),
                got: vec![data.len()],
            });
        }
        gpu.queue
            .write_buffer(&self.buffer, 0, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Reads the tensor back to the CPU (waits for all submitted work).
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        if self.numel() == 0 {
            return Ok(Vec::new());
        }
        let bytes = gpu.read_bytes(&self.buffer, 0, self.bytes()).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// [`Tensor::read`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        pollster::block_on(self.read(gpu))
    }
}

/// Bytes needed for `shape`, or a clear error if the device cannot bind that much.
fn check_size(gpu: &Gpu, shape: &[usize], label: &str) -> Result<u64> {
    let bytes = shape.iter().product::<usize>() as u64 * 4;
    let binding = gpu.limits.max_storage_buffer_binding_size;
    if bytes > binding {
        return Err(Error::Limit {
            what: format!("tensor {label} {shape:?}"),
            needed: bytes,
            limit: binding,
            limit_name: "maxStorageBufferBindingSize",
        });
    }
    if bytes > gpu.limits.max_buffer_size {
        return Err(Error::Limit {
            what: format!("tensor {label} {shape:?}"),
            needed: bytes,
            limit: gpu.limits.max_buffer_size,
            limit_name: "maxBufferSize",
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{err_text, gpu};

    #[test]
    fn oversized_tensors_are_a_limit_error() {
        let gpu = gpu();
        let too_many = gpu.limits.max_storage_buffer_binding_size as usize / 4 + 1;
        let err = Tensor::zeros(gpu, &[too_many], "huge").unwrap_err();
        assert!(matches!(err, Error::Limit { .. }), "{err}");
        assert!(
            err.to_string().contains("maxStorageBufferBindingSize"),
            "{err}"
        );
    }

    #[test]
    fn roundtrip_and_wrong_length_writes() {
        let gpu = gpu();
        let t = Tensor::from_slice(gpu, &[2, 3], &[1., 2., 3., 4., 5., 6.], "t").unwrap();
        assert_eq!(t.read_blocking(gpu).unwrap(), vec![1., 2., 3., 4., 5., 6.]);
        let e = err_text(t.write(gpu, &[1.0]), "1 value into 6");
        assert!(e.contains("shape mismatch for tensor write"), "{e}");
        let e = err_text(
            Tensor::from_slice(gpu, &[2], &[1.0], "bad"),
            "1 value for [2]",
        );
        assert!(
            e.contains("shape mismatch for bad data (1 elements)"),
            "{e}"
        );
    }
}
