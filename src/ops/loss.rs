//! `shaders/loss.wgsl`: the DDPM training loss L_simple = mean((ε̂ − ε)²) and its gradient,
//! reference [`crate::cpu::loss`]. Stays on the GPU: the trainer reads the loss only to log it.

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};
use crate::ops::check_no_alias;
use crate::ops::same_shape;

const SOURCE: &str = include_str!("../../shaders/loss.wgsl");

const MSE_PARTIAL: KernelSpec = KernelSpec {
    name: "mse_loss",
    source: SOURCE,
    entry: "mse_partial",
    bindings: &[
        Access::Uniform,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    params: &Params::LAYOUT,
};

const MSE_FINISH: KernelSpec = KernelSpec {
    name: "mse_loss",
    source: SOURCE,
    entry: "mse_finish",
    bindings: &[Access::Uniform, Access::Read, Access::ReadWrite],
    params: &Params::LAYOUT,
};

uniform_params! {
    struct Params {
        per_sample: u32,
        n: u32,
        grad_scale: f32,
        out_scale: f32,
    }
}

/// L = mean((pred − target)²) over all elements of pred, target [N, ...]; writes
/// dpred = dL/dpred = 2·(pred − target)/numel (overwritten) and the loss: `loss_out` [1] gets L,
/// `loss_out` [N] gets each sample's mean squared error (their mean is L; with N = 1 both are L).
/// One dispatch for [N], two for [1] with N > 1 (run in order; internal [N] scratch).
pub fn mse_loss(
    gpu: &Gpu,
    pred: &Tensor,
    target: &Tensor,
    dpred: &Tensor,
    loss_out: &Tensor,
) -> Result<Vec<Dispatch>> {
    let Some(&n) = pred.shape.first() else {
        return Err(Error::operand(
            "mse_loss",
            "pred",
            "must be [N, ...], got a scalar",
        ));
    };
    let numel = pred.numel();
    if numel == 0 {
        return Err(Error::operand(
            "mse_loss",
            "pred",
            format!("has no elements (shape {:?})", pred.shape),
        ));
    }
    same_shape("mse_loss target", &pred.shape, &target.shape)?;
    same_shape("mse_loss dpred", &pred.shape, &dpred.shape)?;
    if loss_out.shape != [1] && loss_out.shape != [n] {
        return Err(Error::operand(
            "mse_loss",
            "loss_out",
            format!("must be [1] or [N] = [{n}], got {:?}", loss_out.shape),
        ));
    }
    check_no_alias(
        "mse_loss",
        &[("dpred", dpred), ("loss_out", loss_out)],
        &[("pred", pred), ("target", target)],
    )?;
    let per = numel / n;
    let per_sample = loss_out.shape == [n];
    let n_u32 = to_u32("N", n)?;
    let params = Params {
        per_sample: to_u32("elements per sample", per)?,
        n: n_u32,
        grad_scale: 2.0 / numel as f32,
        out_scale: if per_sample {
            1.0 / per as f32
        } else {
            1.0 / numel as f32
        },
    };
    let partial_bufs = |out: &Tensor| {
        gpu.dispatch(
            &MSE_PARTIAL,
            &params,
            &[&pred.buffer, &target.buffer, &dpred.buffer, &out.buffer],
            grid(n_u32),
        )
    };
    if per_sample {
        return Ok(vec![partial_bufs(loss_out)]);
    }
    let scratch = Tensor::zeros(gpu, &[n], "mse_loss partial")?;
    Ok(vec![
        partial_bufs(&scratch),
        gpu.dispatch(
            &MSE_FINISH,
            &params,
            &[&scratch.buffer, &loss_out.buffer],
            [1, 1, 1],
        ),
    ])
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("mse_loss", what, v)
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![
        // One workgroup per sample, and a single invocation: no Rust twins.
        kernel_check!(MSE_PARTIAL),
        kernel_check!(MSE_FINISH),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{assert_close, err_text, gpu, operand_err_text, Rng};

    #[test]
    fn mse_loss_matches_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(91);
        for shape in [
            vec![1, 1],
            vec![1, 3, 32, 32],
            vec![5, 1, 7, 9],
            vec![3, 257],
            vec![8, 3, 16, 16],
        ] {
            let n = shape[0];
            let numel: usize = shape.iter().product();
            let pred = rng.normals(numel, 1.0);
            let target = rng.normals(numel, 1.0);
            let (loss, grad, per) = cpu::loss::mse_loss(&pred, &target, n);
            let tp = Tensor::from_slice(gpu, &shape, &pred, "pred").unwrap();
            let tt = Tensor::from_slice(gpu, &shape, &target, "target").unwrap();
            let tg = Tensor::from_slice(gpu, &shape, &vec![f32::NAN; numel], "dpred").unwrap();
            let tl = Tensor::zeros(gpu, &[1], "loss").unwrap();
            let tn = Tensor::zeros(gpu, &[n], "loss per sample").unwrap();
            let mut ds = mse_loss(gpu, &tp, &tt, &tg, &tl).unwrap();
            assert_eq!(ds.len(), if n == 1 { 1 } else { 2 });
            ds.extend(mse_loss(gpu, &tp, &tt, &tg, &tn).unwrap());
            pollster::block_on(gpu.run(&ds)).unwrap();
            let what = format!("mse_loss {shape:?}");
            assert_close(&tg.read_blocking(gpu).unwrap(), &grad, 1e-7, 1e-5, &what);
            assert_close(&tl.read_blocking(gpu).unwrap(), &[loss], 0.0, 1e-5, &what);
            assert_close(&tn.read_blocking(gpu).unwrap(), &per, 0.0, 1e-5, &what);
        }
    }

    #[test]
    fn mse_loss_rejects_bad_args() {
        let gpu = gpu();
        let t = |shape: &[usize]| Tensor::zeros(gpu, shape, "t").unwrap();
        let (p, g, l) = (t(&[2, 3]), t(&[2, 3]), t(&[1]));
        let target = t(&[2, 3]);
        assert!(mse_loss(gpu, &p, &target, &g, &l).is_ok());
        assert!(mse_loss(gpu, &p, &target, &g, &t(&[2])).is_ok());
        let e = operand_err_text(
            mse_loss(gpu, &p, &target, &g, &t(&[3])),
            "loss_out of 3",
            "loss_out",
        );
        assert!(
            e.contains("mse_loss: loss_out: must be [1] or [N] = [2]"),
            "{e}"
        );
        let e = err_text(
            mse_loss(gpu, &p, &t(&[3, 2]), &g, &l),
            "target of the wrong shape",
        );
        assert!(e.contains("shape mismatch for mse_loss target"), "{e}");
        let e = err_text(
            mse_loss(gpu, &p, &target, &t(&[6]), &l),
            "dpred of the wrong shape",
        );
        assert!(e.contains("shape mismatch for mse_loss dpred"), "{e}");
        let e = err_text(mse_loss(gpu, &p, &target, &p, &l), "dpred = pred");
        assert!(
            e.contains("mse_loss: dpred and pred are the same buffer"),
            "{e}"
        );
        let e = operand_err_text(
            mse_loss(gpu, &t(&[0, 3]), &t(&[0, 3]), &t(&[0, 3]), &l),
            "empty pred",
            "pred",
        );
        assert!(e.contains("mse_loss: pred: has no elements"), "{e}");
    }
}
