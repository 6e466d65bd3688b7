//! `shaders/concat.wgsl`: concatenation along channels (diffusers up blocks'
//! `torch.cat([h, skip], dim=1)`).

use crate::error::{Error, Result};
use crate::gpu::{
    uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor, MAX_WORKGROUPS_PER_DIM,
};

const BINDINGS: &[Access] = &[Access::Uniform, Access::Read, Access::ReadWrite];

const CONCAT: KernelSpec = block_spec("concat", "copy_block");

/// A block copy kernel of `shaders/concat.wgsl` (`copy_block` or `add_block`) under the
/// profiling name `name`.
pub(crate) const fn block_spec(name: &'static str, entry: &'static str) -> KernelSpec {
    KernelSpec {
        name,
        source: include_str!("../../shaders/concat.wgsl"),
        entry,
        bindings: BINDINGS,
        params: &Params::LAYOUT,
    }
}

/// Invocations per workgroup of the shader's entry points (its `@workgroup_size`).
pub(crate) const WG: u32 = 256;
/// Consecutive values per invocation (`PER` in the shader).
const PER: u32 = 4;

uniform_params! {
    struct Params {
        n: u32,
        len: u32,
        src_row: u32,
        src_off: u32,
        dst_row: u32,
        dst_off: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// One block of a concatenation or its gradient: for every batch item `n < batch`,
/// `len` values of `src` from `src_row·n + src_off` to `dst` at `dst_row·n + dst_off`, copied or
/// (with [`block_spec`]`(_, "add_block")`) added. Every row/offset is in values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn block_copy(
    gpu: &Gpu,
    spec: &'static KernelSpec,
    op: &str,
    src: &Tensor,
    dst: &Tensor,
    batch: usize,
    len: usize,
    (src_row, src_off): (usize, usize),
    (dst_row, dst_off): (usize, usize),
) -> Result<Dispatch> {
    let u = |what: &str, v: usize| crate::ops::to_u32(op, what, v);
    if batch > MAX_WORKGROUPS_PER_DIM as usize {
        return Err(Error::unsupported(
            op,
            format!("batch {batch} exceeds {MAX_WORKGROUPS_PER_DIM}"),
        ));
    }
    let groups = len.div_ceil((PER * WG) as usize).max(1);
    if groups > MAX_WORKGROUPS_PER_DIM as usize {
        return Err(Error::unsupported(
            op,
            format!("{len} values per batch item exceed {MAX_WORKGROUPS_PER_DIM} workgroups"),
        ));
    }
    let params = Params {
        n: u("N", batch)?,
        len: u("values per item", len)?,
        src_row: u("values per item", src_row)?,
        src_off: u("offset", src_off)?,
        dst_row: u("values per item", dst_row)?,
        dst_off: u("offset", dst_off)?,
        _pad0: 0,
        _pad1: 0,
    };
    // The largest index either side touches must fit in u32 as well.
    u("elements", src.numel().max(dst.numel()))?;
    Ok(gpu.dispatch(
        spec,
        &params,
        &[&src.buffer, &dst.buffer],
        [groups as u32, batch.max(1) as u32, 1],
    ))
}

/// out [N, Ca + Cb, ...] = a [N, Ca, ...] ‖ b [N, Cb, ...] along dim 1 (e.g. [N, C, H, W]);
/// a and b must agree on N and the trailing dims.
pub fn concat_channels(gpu: &Gpu, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Dispatch> {
    if a.shape.len() < 2 {
        return Err(Error::operand(
            "concat_channels",
            "a",
            format!("must be [N, C, ...], got shape {:?}", a.shape),
        ));
    }
    let ca = a.shape[1];
    let cb = b.shape.get(1).copied().unwrap_or(0);
    let mut b_want = a.shape.clone();
    b_want[1] = cb;
    crate::ops::same_shape(
        "concat_channels b (N and trailing dims of a)",
        &b_want,
        &b.shape,
    )?;
    let mut out_want = a.shape.clone();
    out_want[1] = ca + cb;
    crate::ops::same_shape("concat_channels out", &out_want, &out.shape)?;
    let spatial: usize = a.shape[2..].iter().product();
    let (n, la, lb) = (a.shape[0], ca * spatial, cb * spatial);
    let op = "concat_channels";
    let row = la + lb;
    let da = block_copy(gpu, &CONCAT, op, a, out, n, la, (la, 0), (row, 0))?;
    let db = block_copy(gpu, &CONCAT, op, b, out, n, lb, (lb, 0), (row, la))?;
    Ok(da.then(db))
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![kernel_check!(CONCAT)
        .workgroup_size([WG])
        .shader_const("PER", PER)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{err_text, gpu, operand_err_text, Rng};

    fn run(a: &[f32], b: &[f32], n: usize, ca: usize, cb: usize, hw: [usize; 2]) -> Vec<f32> {
        let gpu = gpu();
        let [h, w] = hw;
        let ta = Tensor::from_slice(gpu, &[n, ca, h, w], a, "a").unwrap();
        let tb = Tensor::from_slice(gpu, &[n, cb, h, w], b, "b").unwrap();
        let out = Tensor::zeros(gpu, &[n, ca + cb, h, w], "out").unwrap();
        let d = concat_channels(gpu, &ta, &tb, &out).unwrap();
        pollster::block_on(gpu.run(&[d])).unwrap();
        out.read_blocking(gpu).unwrap()
    }

    #[test]
    fn concat_matches_cpu() {
        let mut rng = Rng::new(9);
        for (n, ca, cb, hw) in [
            (1, 1, 1, [1, 1]),
            (2, 3, 5, [4, 4]),
            (3, 1, 7, [5, 3]),
            (1, 64, 32, [16, 16]),
            (2, 13, 11, [9, 17]),
            (4, 128, 128, [8, 8]),
        ] {
            let s = hw[0] * hw[1];
            let a = rng.normals(n * ca * s, 1.0);
            let b = rng.normals(n * cb * s, 1.0);
            assert_eq!(
                run(&a, &b, n, ca, cb, hw),
                cpu::concat::concat_channels(&a, &b, n, ca, cb, s),
                "concat n {n} ca {ca} cb {cb} hw {hw:?}"
            );
        }
    }

    #[test]
    fn concat_hand_checked() {
        let a = [1.0, 2.0, 10.0, 20.0];
        let b = [3.0, 4.0, 5.0, 6.0, 30.0, 40.0, 50.0, 60.0];
        let want = [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0,
        ];
        assert_eq!(run(&a, &b, 2, 1, 2, [1, 2]), want);
    }

    #[test]
    fn concat_rejects_bad_shapes() {
        let gpu = gpu();
        let a = Tensor::zeros(gpu, &[2, 3, 4, 4], "a").unwrap();
        let b = Tensor::zeros(gpu, &[2, 5, 4, 4], "b").unwrap();
        let out = Tensor::zeros(gpu, &[2, 8, 4, 4], "out").unwrap();
        assert!(concat_channels(gpu, &a, &b, &out).is_ok());
        let b_hw = Tensor::zeros(gpu, &[2, 5, 4, 3], "b").unwrap();
        let e = err_text(concat_channels(gpu, &a, &b_hw, &out), "b of another W");
        assert!(
            e.contains("shape mismatch for concat_channels b (N and trailing dims of a)"),
            "{e}"
        );
        let b_n = Tensor::zeros(gpu, &[1, 5, 4, 4], "b").unwrap();
        let e = err_text(concat_channels(gpu, &a, &b_n, &out), "b of another N");
        assert!(
            e.contains("shape mismatch for concat_channels b (N and trailing dims of a)"),
            "{e}"
        );
        let out_bad = Tensor::zeros(gpu, &[2, 7, 4, 4], "o").unwrap();
        let e = err_text(concat_channels(gpu, &a, &b, &out_bad), "out of 7 channels");
        assert!(e.contains("shape mismatch for concat_channels out"), "{e}");
        let flat = Tensor::zeros(gpu, &[4], "flat").unwrap();
        let e = operand_err_text(concat_channels(gpu, &flat, &b, &out), "a of rank 1", "a");
        assert!(e.contains("concat_channels: a: must be [N, C, ...]"), "{e}");
    }
}
