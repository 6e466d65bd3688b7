//! `shaders/embedding.wgsl`: the class embedding added to the time embedding.

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};

const ADD_CLASS_EMBEDDING: KernelSpec = KernelSpec {
    name: "embedding",
    source: include_str!("../../shaders/embedding.wgsl"),
    entry: "add_class_embedding",
    bindings: &[
        Access::Uniform,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
    ],
    params: &Params::LAYOUT,
};

const CLASS_EMBEDDING_GRAD: KernelSpec = KernelSpec {
    entry: "class_embedding_grad",
    ..ADD_CLASS_EMBEDDING
};

/// Invocations per workgroup of the shader's entry points (its `@workgroup_size`).
const WG: u32 = 256;

uniform_params! {
    struct Params {
        n: u32,
        dim: u32,
        rows: u32,
        _pad: u32,
    }
}

/// out `[N, dim]` = emb `[N, dim]` + table `[rows, dim]` at rows `labels` `[N]` (class indices
/// as f32; out-of-range indices are clamped, so check them on the host first).
pub fn add_class_embedding(
    gpu: &Gpu,
    emb: &Tensor,
    table: &Tensor,
    labels: &Tensor,
    out: &Tensor,
) -> Result<Dispatch> {
    let (n, dim) = match emb.shape.as_slice() {
        &[n, dim] if n > 0 && dim > 0 => (n, dim),
        s => {
            return Err(Error::operand(
                "add_class_embedding",
                "emb",
                format!("must be [N, dim], got {s:?}"),
            ))
        }
    };
    let rows = match table.shape.as_slice() {
        &[rows, d] if d == dim && rows > 0 => rows,
        s => {
            return Err(Error::Shape {
                what: "add_class_embedding table".into(),
                expected: vec![table.shape.first().copied().unwrap_or(1).max(1), dim],
                got: s.to_vec(),
            })
        }
    };
    crate::ops::same_shape("add_class_embedding labels", &[n], &labels.shape)?;
    crate::ops::same_shape("add_class_embedding out", &emb.shape, &out.shape)?;
    let total = crate::ops::to_u32("add_class_embedding", "elements", n * dim)?;
    let params = Params {
        n: crate::ops::to_u32("add_class_embedding", "samples", n)?,
        dim: crate::ops::to_u32("add_class_embedding", "dim", dim)?,
        rows: crate::ops::to_u32("add_class_embedding", "rows", rows)?,
        _pad: 0,
    };
    Ok(gpu.dispatch(
        &ADD_CLASS_EMBEDDING,
        &params,
        &[&emb.buffer, &table.buffer, &labels.buffer, &out.buffer],
        grid(total.div_ceil(WG)),
    ))
}

/// dtable `[rows, dim]` = dL/d(table) of [`add_class_embedding`] from its output gradient `dy`
/// `[N, dim]` and `labels` `[N]` (overwritten; the gradient of `emb` is `dy` itself).
pub fn class_embedding_grad(
    gpu: &Gpu,
    dy: &Tensor,
    labels: &Tensor,
    dtable: &Tensor,
) -> Result<Dispatch> {
    let (n, dim) = match dy.shape.as_slice() {
        &[n, dim] if n > 0 && dim > 0 => (n, dim),
        s => {
            return Err(Error::operand(
                "class_embedding_grad",
                "dy",
                format!("must be [N, dim], got {s:?}"),
            ))
        }
    };
    let rows = match dtable.shape.as_slice() {
        &[rows, d] if d == dim && rows > 0 => rows,
        s => {
            return Err(Error::Shape {
                what: "class_embedding_grad dtable".into(),
                expected: vec![dtable.shape.first().copied().unwrap_or(1).max(1), dim],
                got: s.to_vec(),
            })
        }
    };
    crate::ops::same_shape("class_embedding_grad labels", &[n], &labels.shape)?;
    let total = crate::ops::to_u32("class_embedding_grad", "elements", rows * dim)?;
    let params = Params {
        n: crate::ops::to_u32("class_embedding_grad", "samples", n)?,
        dim: crate::ops::to_u32("class_embedding_grad", "dim", dim)?,
        rows: crate::ops::to_u32("class_embedding_grad", "rows", rows)?,
        _pad: 0,
    };
    Ok(gpu.dispatch(
        &CLASS_EMBEDDING_GRAD,
        &params,
        &[&dy.buffer, &dy.buffer, &labels.buffer, &dtable.buffer],
        grid(total.div_ceil(WG)),
    ))
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![
        kernel_check!(ADD_CLASS_EMBEDDING).workgroup_size([WG]),
        kernel_check!(CLASS_EMBEDDING_GRAD).workgroup_size([WG]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{err_text, gpu, operand_err_text, Rng};

    #[test]
    fn matches_cpu_on_awkward_shapes() {
        let gpu = gpu();
        let mut rng = Rng::new(4);
        for (n, dim, rows) in [(1, 1, 1), (3, 7, 2), (5, 128, 11), (2, 300, 1), (9, 257, 4)] {
            let emb = rng.normals(n * dim, 1.0);
            let table = rng.normals(rows * dim, 1.0);
            // Every class, plus values that round and clamp (as the shader documents).
            let labels: Vec<f32> = (0..n).map(|i| (i % rows) as f32).collect();
            let te = Tensor::from_slice(gpu, &[n, dim], &emb, "emb").unwrap();
            let tt = Tensor::from_slice(gpu, &[rows, dim], &table, "table").unwrap();
            let tl = Tensor::from_slice(gpu, &[n], &labels, "labels").unwrap();
            let out = Tensor::zeros(gpu, &[n, dim], "out").unwrap();
            let d = add_class_embedding(gpu, &te, &tt, &tl, &out).unwrap();
            pollster::block_on(gpu.run(&[d])).unwrap();
            let want = cpu::embedding::add_class_embedding(&emb, &table, &labels, dim);
            assert_eq!(
                out.read_blocking(gpu).unwrap(),
                want,
                "{n}×{dim}, {rows} rows"
            );
        }
        let want = cpu::embedding::add_class_embedding(&[0.0; 2], &[1.0, 2.0], &[7.0, -3.0], 1);
        assert_eq!(want, vec![2.0, 1.0], "clamped to the last and first rows");
    }

    #[test]
    fn gradient_matches_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(5);
        for (n, dim, rows) in [(1, 1, 1), (4, 7, 3), (9, 128, 11), (3, 257, 5)] {
            let dy = rng.normals(n * dim, 1.0);
            // Repeated classes, and classes nobody uses (zero rows).
            let labels: Vec<f32> = (0..n).map(|i| ((i * 2) % rows) as f32).collect();
            let tdy = Tensor::from_slice(gpu, &[n, dim], &dy, "dy").unwrap();
            let tl = Tensor::from_slice(gpu, &[n], &labels, "labels").unwrap();
            let out = Tensor::from_slice(gpu, &[rows, dim], &vec![9.0; rows * dim], "dt").unwrap();
            let d = class_embedding_grad(gpu, &tdy, &tl, &out).unwrap();
            pollster::block_on(gpu.run(&[d])).unwrap();
            let want = cpu::embedding::class_embedding_grad(&dy, &labels, rows, dim);
            crate::testing::assert_close(
                &out.read_blocking(gpu).unwrap(),
                &want,
                1e-6,
                1e-6,
                "grad",
            );
        }
    }

    #[test]
    fn rejects_mismatched_shapes() {
        let gpu = gpu();
        let z = |s: &[usize]| Tensor::zeros(gpu, s, "t").unwrap();
        let (emb, table, labels) = (z(&[2, 4]), z(&[3, 4]), z(&[2]));
        let e = err_text(
            add_class_embedding(gpu, &emb, &z(&[3, 5]), &labels, &emb),
            "table of the wrong dim",
        );
        assert!(
            e.contains("shape mismatch for add_class_embedding table"),
            "{e}"
        );
        let e = err_text(
            add_class_embedding(gpu, &emb, &table, &z(&[3]), &z(&[2, 4])),
            "3 labels for 2 rows",
        );
        assert!(
            e.contains("shape mismatch for add_class_embedding labels"),
            "{e}"
        );
        let e = err_text(
            add_class_embedding(gpu, &emb, &table, &labels, &z(&[2, 5])),
            "out of the wrong shape",
        );
        assert!(
            e.contains("shape mismatch for add_class_embedding out"),
            "{e}"
        );
        let e = operand_err_text(
            add_class_embedding(gpu, &z(&[8]), &table, &labels, &z(&[8])),
            "emb of rank 1",
            "emb",
        );
        assert!(
            e.contains("add_class_embedding: emb: must be [N, dim]"),
            "{e}"
        );
    }
}
