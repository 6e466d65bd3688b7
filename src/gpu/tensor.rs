//! A dense tensor living in a GPU storage buffer (row-major, PyTorch's NCHW for images): f32,
//! or f16 for weights kept at half size (see [`DType`]).

use wgpu::util::DeviceExt;

use super::Gpu;
use crate::error::{Error, Result};

/// How a [`Tensor`] stores its elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DType {
    /// 4-byte floats (`array<f32>` / `array<vec4<f32>>`): every op's activations and parameters.
    #[default]
    F32,
    /// IEEE binary16, two per `u32` (`pack2x16float` order: the low half is the first element),
    /// read with WGSL core `unpack2x16float` (no `shader-f16` device feature needed). Only the
    /// conv kernels' packed weights use it (see `ops::conv2d::upload_weight_as`).
    F16,
}

impl DType {
    /// `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
        }
    }

    /// Buffer bytes of `n` elements (f16: rounded up to whole `u32` words).
    pub fn bytes_of(self, n: usize) -> u64 {
        match self {
            DType::F32 => n as u64 * 4,
            DType::F16 => (n as u64).div_ceil(2) * 4,
        }
    }
}

/// A contiguous tensor on the GPU.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub buffer: wgpu::Buffer,
    pub shape: Vec<usize>,
    /// The element storage (f32 unless made by [`Tensor::from_f16`]).
    pub dtype: DType,
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl Tensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size in bytes (of the data; an empty tensor's buffer still takes 4).
    pub fn bytes(&self) -> u64 {
        self.dtype.bytes_of(self.numel())
    }

    /// Errors, naming the op and operand, unless the tensor stores f32 (every op's operands but
    /// the conv kernels' packed weights).
    pub fn expect_f32(&self, op: &str, operand: &'static str) -> Result<()> {
        match self.dtype {
            DType::F32 => Ok(()),
            d => Err(Error::operand(
                op,
                operand,
                format!("must be an f32 tensor, got {} {:?}", d.name(), self.shape),
            )),
        }
    }

    /// A zero-filled f32 tensor. Fails if it would not fit in one storage binding.
    pub fn zeros(gpu: &Gpu, shape: &[usize], label: &str) -> Result<Self> {
        let bytes = check_size(gpu, shape, DType::F32, label)?;
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: USAGE,
            mapped_at_creation: false,
        });
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
            dtype: DType::F32,
        })
    }

    /// Uploads `data` (which must have `shape.product()` elements) as f32.
    pub fn from_slice(gpu: &Gpu, shape: &[usize], data: &[f32], label: &str) -> Result<Self> {
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(Error::Shape {
                what: format!("{label} data ({} elements)", data.len()),
                expected: shape.to_vec(),
                got: vec![data.len()],
            });
        }
        check_size(gpu, shape, DType::F32, label)?;
        let contents: &[u8] = if data.is_empty() {
            &[0; 4]
        } else {
            bytemuck::cast_slice(data)
        };
        Ok(Self::init(gpu, shape, DType::F32, contents, label))
    }

    /// Uploads `data` (which must have `shape.product()` elements) as f16 (two per `u32`, see
    /// [`DType::F16`]).
    pub fn from_f16(gpu: &Gpu, shape: &[usize], data: &[half::f16], label: &str) -> Result<Self> {
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(Error::Shape {
                what: format!("{label} f16 data ({} elements)", data.len()),
                expected: shape.to_vec(),
                got: vec![data.len()],
            });
        }
        check_size(gpu, shape, DType::F16, label)?;
        let mut bytes: Vec<u8> = data.iter().flat_map(|h| h.to_le_bytes()).collect();
        // Whole u32 words, at least one.
        bytes.resize(DType::F16.bytes_of(n).max(4) as usize, 0);
        Ok(Self::init(gpu, shape, DType::F16, &bytes, label))
    }

    fn init(gpu: &Gpu, shape: &[usize], dtype: DType, contents: &[u8], label: &str) -> Self {
        let buffer = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: USAGE,
            });
        Tensor {
            buffer,
            shape: shape.to_vec(),
            dtype,
        }
    }

    /// Overwrites the contents of an f32 tensor with `data` (queued; visible to the next
    /// submission).
    pub fn write(&self, gpu: &Gpu, data: &[f32]) -> Result<()> {
        self.expect_f32("write", "tensor")?;
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

    /// Reads the tensor back to the CPU as f32 (waits for all submitted work).
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        if self.numel() == 0 {
            return Ok(Vec::new());
        }
        let bytes = gpu.read_bytes(&self.buffer, 0, self.bytes()).await?;
        Ok(match self.dtype {
            DType::F32 => bytemuck::cast_slice(&bytes).to_vec(),
            DType::F16 => bytes
                .chunks_exact(2)
                .take(self.numel())
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }

    /// [`Tensor::read`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        pollster::block_on(self.read(gpu))
    }
}

/// Bytes needed for `shape` stored as `dtype`, or a clear error if the device cannot bind that
/// much.
fn check_size(gpu: &Gpu, shape: &[usize], dtype: DType, label: &str) -> Result<u64> {
    let bytes = dtype.bytes_of(shape.iter().product::<usize>());
    let binding = gpu.limits.max_storage_buffer_binding_size;
    // f32 tensors keep their old wording; others name their storage.
    let kind = match dtype {
        DType::F32 => String::new(),
        d => format!("{} ", d.name()),
    };
    if bytes > binding {
        return Err(Error::Limit {
            what: format!("{kind}tensor {label} {shape:?}"),
            needed: bytes,
            limit: binding,
            limit_name: "maxStorageBufferBindingSize",
        });
    }
    if bytes > gpu.limits.max_buffer_size {
        return Err(Error::Limit {
            what: format!("{kind}tensor {label} {shape:?}"),
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
    fn f16_tensors_take_half_and_read_back() {
        let gpu = gpu();
        let vals = [1.0f32, -2.5, 0.333_251_95, 65504.0, 0.0];
        let halves: Vec<half::f16> = vals.iter().map(|&v| half::f16::from_f32(v)).collect();
        let t = Tensor::from_f16(gpu, &[5], &halves, "h").unwrap();
        assert_eq!(t.dtype, DType::F16);
        // 5 halves fill 3 u32 words.
        assert_eq!((t.bytes(), t.buffer.size()), (12, 12));
        assert_eq!(t.read_blocking(gpu).unwrap(), vals.to_vec());
        assert_eq!(Tensor::zeros(gpu, &[5], "z").unwrap().bytes(), 20);
        let e = err_text(
            Tensor::from_f16(gpu, &[2, 2], &halves, "bad"),
            "5 for [2, 2]",
        );
        assert!(
            e.contains("shape mismatch for bad f16 data (5 elements)"),
            "{e}"
        );
        // The binding limit counts 2 bytes per element and names the storage.
        let limit = gpu.limits.max_storage_buffer_binding_size as usize;
        let e = err_text(
            Tensor::from_f16(gpu, &[limit / 2 + 2], &[], "huge"),
            "too big",
        );
        assert!(e.contains("shape mismatch"), "{e}");
        assert!(check_size(gpu, &[limit / 2], DType::F16, "fits").is_ok());
        let e = err_text(
            check_size(gpu, &[limit / 2 + 2], DType::F16, "huge"),
            "too big",
        );
        assert!(
            e.contains("f16 tensor huge") && e.contains("maxStorageBufferBindingSize"),
            "{e}"
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
