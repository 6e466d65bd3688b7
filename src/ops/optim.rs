//! `shaders/optim.wgsl`: global gradient norm (two-stage, no readback), AdamW with gradient
//! clipping and a non-finite guard, and the EMA of the weights; reference [`crate::cpu::optim`].

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};
use crate::ops::same_shape;
use crate::ops::{check_no_alias, to_u32};
use crate::options::AdamWParams;

const SOURCE: &str = include_str!("../../shaders/optim.wgsl");

const GRAD_NORM_PARTIAL: KernelSpec = KernelSpec {
    name: "optim",
    source: SOURCE,
    entry: "grad_norm_partial",
    bindings: &[Access::Uniform, Access::Read, Access::ReadWrite],
    params: &Params::LAYOUT,
};

const GRAD_NORM_FINISH: KernelSpec = KernelSpec {
    name: "optim",
    source: SOURCE,
    entry: "grad_norm_finish",
    bindings: &[Access::Uniform, Access::ReadWrite],
    params: &Params::LAYOUT,
};

const ADAMW: KernelSpec = KernelSpec {
    name: "optim",
    source: SOURCE,
    entry: "adamw",
    bindings: &[
        Access::Uniform,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    params: &Params::LAYOUT,
};

const EMA_UPDATE: KernelSpec = KernelSpec {
    name: "optim",
    source: SOURCE,
    entry: "ema_update",
    bindings: &[Access::Uniform, Access::Read, Access::ReadWrite],
    params: &Params::LAYOUT,
};

/// Elements summed per invocation of `grad_norm_partial` (at most).
const NORM_PER_LANE: usize = 512;
/// Invocations per workgroup of `grad_norm_partial` (its `@workgroup_size`).
const PARTIAL_WG: u32 = 64;
/// Invocations per workgroup of `adamw` and `ema_update` (its `@workgroup_size`).
const WG: u32 = 256;

uniform_params! {
    #[derive(Default)]
    struct Params {
        numel: u32,
        lanes: u32,
        offset: u32,
        _pad0: u32,
        wd_mul: f32,
        one_minus_b1: f32,
        beta2: f32,
        one_minus_b2: f32,
        step_size: f32,
        bc2_sqrt: f32,
        eps: f32,
        max_norm: f32,
        decay: f32,
        _pad1: [u32; 3],
    }
}

/// Lanes (partial slots) `grad_norm_partial` uses for a tensor of `numel` elements.
fn norm_lanes(numel: usize) -> usize {
    numel.div_ceil(NORM_PER_LANE)
}

/// Elements the `partials` buffer of [`grad_norm_sq`] needs for these gradients.
pub fn grad_norm_partials_len(grads: &[&Tensor]) -> usize {
    1 + grads.iter().map(|g| norm_lanes(g.numel())).sum::<usize>()
}

/// Total squared gradient norm Σ_k ‖grads[k]‖² into `partials[0]`, on the GPU (no readback):
/// one barrier-free dispatch per tensor writing per-invocation partial sums to disjoint slots of
/// `partials` (≥ [`grad_norm_partials_len`] elements), then one single-workgroup dispatch summing
/// them. Run the dispatches in order; pass `partials` as the `norm_sq` of [`adamw_step`].
pub fn grad_norm_sq(gpu: &Gpu, grads: &[&Tensor], partials: &Tensor) -> Result<Vec<Dispatch>> {
    let need = grad_norm_partials_len(grads);
    if partials.numel() < need {
        return Err(Error::operand(
            "grad_norm_sq",
            "partials",
            format!(
                "has {} elements, these {} gradients need {need}",
                partials.numel(),
                grads.len()
            ),
        ));
    }
    let mut dispatches = Vec::with_capacity(grads.len() + 1);
    let mut offset = 1;
    for (k, g) in grads.iter().enumerate() {
        let name = format!("grads[{k}]");
        check_no_alias("grad_norm_sq", &[("partials", partials)], &[(&name, g)])?;
        let lanes = norm_lanes(g.numel());
        if lanes == 0 {
            continue;
        }
        let lanes_u32 = to_u32("grad_norm_sq", "lanes", lanes)?;
        let params = Params {
            numel: to_u32("grad_norm_sq", &format!("{name} elements"), g.numel())?,
            lanes: lanes_u32,
            offset: to_u32("grad_norm_sq", "partials offset", offset)?,
            ..Default::default()
        };
        dispatches.push(gpu.dispatch(
            &GRAD_NORM_PARTIAL,
            &params,
            &[&g.buffer, &partials.buffer],
            grid(lanes_u32.div_ceil(PARTIAL_WG)),
        ));
        offset += lanes;
    }
    let params = Params {
        offset: to_u32("grad_norm_sq", "partial slots", need - 1)?,
        ..Default::default()
    };
    dispatches.push(gpu.dispatch(&GRAD_NORM_FINISH, &params, &[&partials.buffer], [1, 1, 1]));
    Ok(dispatches)
}

/// One AdamW step (torch.optim.AdamW semantics) updating `param`, `m`, `v` (same shape as
/// `grad`) in place. Reads the global ‖g‖² from `norm_sq[0]` (e.g. the partials of
/// [`grad_norm_sq`]): clips the gradient by min(1, max_grad_norm/(‖g‖ + 1e-6)) when
/// `max_grad_norm > 0`, and skips the update entirely (param, m, v unchanged) when ‖g‖² is inf
/// or NaN. The hyper-parameters (step, lr) are baked in: rebuild the dispatch each step.
pub fn adamw_step(
    gpu: &Gpu,
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    norm_sq: &Tensor,
    hp: &AdamWParams,
) -> Result<Dispatch> {
    hp.validate()?;
    same_shape("adamw_step grad", &param.shape, &grad.shape)?;
    same_shape("adamw_step m", &param.shape, &m.shape)?;
    same_shape("adamw_step v", &param.shape, &v.shape)?;
    if norm_sq.numel() == 0 {
        return Err(Error::operand("adamw_step", "norm_sq", "is empty"));
    }
    check_no_alias(
        "adamw_step",
        &[("param", param), ("m", m), ("v", v)],
        &[("grad", grad), ("norm_sq", norm_sq)],
    )?;
    let k = hp.coefficients();
    let numel = to_u32("adamw_step", "elements", param.numel())?;
    let params = Params {
        numel,
        wd_mul: k.wd_mul,
        one_minus_b1: k.one_minus_b1,
        beta2: k.beta2,
        one_minus_b2: k.one_minus_b2,
        step_size: k.step_size,
        bc2_sqrt: k.bc2_sqrt,
        eps: k.eps,
        max_norm: k.max_grad_norm,
        ..Default::default()
    };
    Ok(gpu.dispatch(
        &ADAMW,
        &params,
        &[
            &norm_sq.buffer,
            &grad.buffer,
            &param.buffer,
            &m.buffer,
            &v.buffer,
        ],
        grid(numel.div_ceil(WG)),
    ))
}

/// ema = decay·ema + (1 − decay)·param in place (as diffusers' EMAModel:
/// ema −= (1 − decay)·(ema − param)); `decay` in [0, 1].
pub fn ema_update(gpu: &Gpu, ema: &Tensor, param: &Tensor, decay: f32) -> Result<Dispatch> {
    if !(0.0..=1.0).contains(&decay) {
        return Err(Error::operand(
            "ema_update",
            "decay",
            format!("must be in [0, 1], got {decay}"),
        ));
    }
    same_shape("ema_update param", &ema.shape, &param.shape)?;
    check_no_alias("ema_update", &[("ema", ema)], &[("param", param)])?;
    let numel = to_u32("ema_update", "elements", ema.numel())?;
    let params = Params {
        numel,
        decay,
        ..Default::default()
    };
    Ok(gpu.dispatch(
        &EMA_UPDATE,
        &params,
        &[&param.buffer, &ema.buffer],
        grid(numel.div_ceil(WG)),
    ))
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![
        kernel_check!(GRAD_NORM_PARTIAL).workgroup_size([PARTIAL_WG]),
        // One workgroup.
        kernel_check!(GRAD_NORM_FINISH),
        kernel_check!(ADAMW).workgroup_size([WG]),
        kernel_check!(EMA_UPDATE).workgroup_size([WG]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{assert_close, err_text, gpu, operand_err_text, Rng};

    fn upload(gpu: &Gpu, data: &[f32], what: &str) -> Tensor {
        Tensor::from_slice(gpu, &[data.len()], data, what).unwrap()
    }

    #[test]
    fn grad_norm_sq_matches_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(101);
        // Many small tensors, one empty, a few larger than one lane's share, awkward sizes.
        let mut sizes: Vec<usize> = (0..40).map(|_| rng.range(1, 300)).collect();
        sizes.extend([0, 511, 512, 513, 4096 * 9 + 7, 100_003]);
        let data: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.normals(n, 0.1)).collect();
        let tensors: Vec<Tensor> = data.iter().map(|d| upload(gpu, d, "g")).collect();
        let refs: Vec<&Tensor> = tensors.iter().collect();
        let len = grad_norm_partials_len(&refs);
        // Stale contents beyond the used slots must not matter.
        let partials = Tensor::from_slice(gpu, &[len + 3], &vec![7.0; len + 3], "p").unwrap();
        let ds = grad_norm_sq(gpu, &refs, &partials).unwrap();
        assert_eq!(ds.len(), sizes.len()); // one per non-empty tensor + the final sum
        pollster::block_on(gpu.run(&ds)).unwrap();
        let got = partials.read_blocking(gpu).unwrap()[0];
        let slices: Vec<&[f32]> = data.iter().map(|d| d.as_slice()).collect();
        let want = cpu::optim::grad_norm_sq(&slices);
        assert_close(&[got], &[want], 0.0, 1e-5, "grad_norm_sq");

        let small = Tensor::zeros(gpu, &[len - 1], "small").unwrap();
        let e = operand_err_text(
            grad_norm_sq(gpu, &refs, &small),
            "partials too small",
            "partials",
        );
        assert!(e.contains("grad_norm_sq: partials: has"), "{e}");
        let e = err_text(
            grad_norm_sq(gpu, &[&partials], &partials),
            "partials as a grad",
        );
        assert!(
            e.contains("grad_norm_sq: partials and grads[0] are the same buffer"),
            "{e}"
        );
    }

    /// Several steps with fresh random gradients, clipping active on some: GPU = CPU reference.
    #[test]
    fn adamw_steps_match_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(102);
        let sizes = [1, 7, 300, 1025];
        let mut params: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.normals(n, 1.0)).collect();
        let mut ms: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
        let mut vs = ms.clone();
        let tp: Vec<Tensor> = params.iter().map(|d| upload(gpu, d, "param")).collect();
        let tm: Vec<Tensor> = ms.iter().map(|d| upload(gpu, d, "m")).collect();
        let tv: Vec<Tensor> = vs.iter().map(|d| upload(gpu, d, "v")).collect();
        let tg: Vec<Tensor> = sizes
            .iter()
            .map(|&n| Tensor::zeros(gpu, &[n], "g").unwrap())
            .collect();
        let grefs: Vec<&Tensor> = tg.iter().collect();
        let partials = Tensor::zeros(gpu, &[grad_norm_partials_len(&grefs)], "p").unwrap();
        for step in 1..=5u32 {
            let grads: Vec<Vec<f32>> = sizes
                .iter()
                .map(|&n| rng.normals(n, 0.05 * step as f32))
                .collect();
            for (t, g) in tg.iter().zip(&grads) {
                t.write(gpu, g).unwrap();
            }
            let hp = AdamWParams {
                lr: 1e-2 / step as f64,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
                step,
                max_grad_norm: if step % 2 == 0 { 1.0 } else { 0.0 },
            };
            let mut ds = grad_norm_sq(gpu, &grefs, &partials).unwrap();
            for k in 0..sizes.len() {
                ds.push(adamw_step(gpu, &tp[k], &tg[k], &tm[k], &tv[k], &partials, &hp).unwrap());
            }
            pollster::block_on(gpu.run(&ds)).unwrap();
            let slices: Vec<&[f32]> = grads.iter().map(|d| d.as_slice()).collect();
            let nsq = cpu::optim::grad_norm_sq(&slices);
            for k in 0..sizes.len() {
                assert!(cpu::optim::adamw_step(
                    &mut params[k],
                    &grads[k],
                    &mut ms[k],
                    &mut vs[k],
                    nsq,
                    &hp
                ));
                let what = format!("adamw step {step} tensor {k}");
                assert_close(
                    &tp[k].read_blocking(gpu).unwrap(),
                    &params[k],
                    1e-6,
                    1e-5,
                    &what,
                );
                assert_close(
                    &tm[k].read_blocking(gpu).unwrap(),
                    &ms[k],
                    1e-7,
                    1e-5,
                    &what,
                );
                assert_close(
                    &tv[k].read_blocking(gpu).unwrap(),
                    &vs[k],
                    1e-9,
                    1e-5,
                    &what,
                );
            }
        }
    }

    /// Two steps on two elements, expected values derived by hand from torch.optim.AdamW's
    /// update (lr 0.1, betas (0.9, 0.999), eps 1e-8, weight_decay 0.1):
    /// step 1, g = (0.2, −0.4): m = 0.1·g, v = 0.001·g², m̂ = g, √v̂ = |g|, so
    ///   p = 0.99·p − 0.1·sign(g) = (0.89, −0.395) (up to eps-sized terms).
    /// step 2, g = (0.2, 0.4): m = 0.9·m + 0.1·g = (0.038, 0.004), v = 0.999·v + 0.001·g²
    ///   = (7.996e-5, 3.1984e-4); bc1 = 0.19, bc2 = 0.001999, so √v̂ = (0.2, 0.4) exactly and
    ///   m̂ = (0.2, 0.4/19); p = 0.99·p − 0.1·m̂/√v̂ = (0.8811 − 0.1, −0.39105 − 0.1/19).
    #[test]
    fn adamw_hand_derived() {
        let gpu = gpu();
        let mut p = vec![1.0f32, -0.5];
        let (mut m, mut v) = (vec![0.0f32; 2], vec![0.0f32; 2]);
        let (tp, tm, tv) = (
            upload(gpu, &p, "p"),
            upload(gpu, &m, "m"),
            upload(gpu, &v, "v"),
        );
        let tg = upload(gpu, &[0.0, 0.0], "g");
        let partials = Tensor::zeros(gpu, &[grad_norm_partials_len(&[&tg])], "norm").unwrap();
        for (step, g) in [(1, [0.2f32, -0.4]), (2, [0.2, 0.4])] {
            let hp = AdamWParams {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.1,
                step,
                max_grad_norm: 0.0,
            };
            tg.write(gpu, &g).unwrap();
            let mut ds = grad_norm_sq(gpu, &[&tg], &partials).unwrap();
            ds.push(adamw_step(gpu, &tp, &tg, &tm, &tv, &partials, &hp).unwrap());
            pollster::block_on(gpu.run(&ds)).unwrap();
            assert!(cpu::optim::adamw_step(&mut p, &g, &mut m, &mut v, 0.2, &hp));
        }
        let want_p = [0.7811, -0.39105 - 0.1 / 19.0];
        let (want_m, want_v) = ([0.038, 0.004], [7.996e-5, 3.1984e-4]);
        for (got, what) in [(tp.read_blocking(gpu).unwrap(), "gpu"), (p, "cpu")] {
            assert_close(&got, &want_p, 1e-6, 1e-6, &format!("{what} param"));
        }
        assert_close(
            &tm.read_blocking(gpu).unwrap(),
            &want_m,
            1e-8,
            1e-6,
            "gpu m",
        );
        assert_close(&m, &want_m, 1e-8, 1e-6, "cpu m");
        assert_close(
            &tv.read_blocking(gpu).unwrap(),
            &want_v,
            1e-11,
            1e-6,
            "gpu v",
        );
        assert_close(&v, &want_v, 1e-11, 1e-6, "cpu v");
    }

    /// ‖g‖ = 5 clipped to max norm 1: the moments see g·1/(5 + 1e-6).
    #[test]
    fn adamw_clips_by_global_norm() {
        let gpu = gpu();
        let (tp, tm, tv) = (
            upload(gpu, &[1.0, 1.0], "p"),
            upload(gpu, &[0.0; 2], "m"),
            upload(gpu, &[0.0; 2], "v"),
        );
        let tg = upload(gpu, &[3.0, 4.0], "g");
        let partials = Tensor::zeros(gpu, &[grad_norm_partials_len(&[&tg])], "norm").unwrap();
        let hp = AdamWParams {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step: 1,
            max_grad_norm: 1.0,
        };
        let mut ds = grad_norm_sq(gpu, &[&tg], &partials).unwrap();
        ds.push(adamw_step(gpu, &tp, &tg, &tm, &tv, &partials, &hp).unwrap());
        pollster::block_on(gpu.run(&ds)).unwrap();
        assert_close(
            &partials.read_blocking(gpu).unwrap()[..1],
            &[25.0],
            0.0,
            1e-6,
            "norm",
        );
        assert_close(
            &tm.read_blocking(gpu).unwrap(),
            &[0.06, 0.08],
            1e-8,
            1e-5,
            "m",
        );
        assert_close(
            &tv.read_blocking(gpu).unwrap(),
            &[3.6e-4, 6.4e-4],
            1e-10,
            1e-5,
            "v",
        );
        // Step 1 moves each weight by lr·sign(g) whatever the scale.
        assert_close(
            &tp.read_blocking(gpu).unwrap(),
            &[0.9, 0.9],
            1e-6,
            0.0,
            "param",
        );
    }

    /// A NaN or inf anywhere in the gradients makes the step a no-op.
    #[test]
    fn adamw_skips_non_finite_gradients() {
        let gpu = gpu();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30] {
            let (p0, m0, v0) = ([1.0, -2.0, 3.0], [0.1, 0.2, 0.3], [0.01, 0.02, 0.03]);
            let (tp, tm, tv) = (
                upload(gpu, &p0, "p"),
                upload(gpu, &m0, "m"),
                upload(gpu, &v0, "v"),
            );
            let good = upload(gpu, &[0.5; 700], "good");
            let tg = upload(gpu, &[0.1, bad, 0.2], "g");
            let refs = [&good, &tg];
            let partials = Tensor::zeros(gpu, &[grad_norm_partials_len(&refs)], "norm").unwrap();
            for max_grad_norm in [0.0, 1.0] {
                let hp = AdamWParams {
                    lr: 0.1,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.1,
                    step: 3,
                    max_grad_norm,
                };
                let mut ds = grad_norm_sq(gpu, &refs, &partials).unwrap();
                ds.push(adamw_step(gpu, &tp, &tg, &tm, &tv, &partials, &hp).unwrap());
                pollster::block_on(gpu.run(&ds)).unwrap();
                let nsq = partials.read_blocking(gpu).unwrap()[0];
                assert!(!nsq.is_finite(), "{bad}: norm² {nsq}");
                assert_eq!(tp.read_blocking(gpu).unwrap(), p0, "{bad}: param changed");
                assert_eq!(tm.read_blocking(gpu).unwrap(), m0, "{bad}: m changed");
                assert_eq!(tv.read_blocking(gpu).unwrap(), v0, "{bad}: v changed");
                let (mut p, mut m, mut v) = (p0, m0, v0);
                assert!(!cpu::optim::adamw_step(
                    &mut p,
                    &[0.1, bad, 0.2],
                    &mut m,
                    &mut v,
                    nsq,
                    &hp
                ));
                assert_eq!((p, m, v), (p0, m0, v0));
            }
        }
    }

    #[test]
    fn ema_update_matches_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(103);
        for (n, decay) in [(1, 0.5), (257, 0.999), (70_001, 0.9999), (3, 0.0), (3, 1.0)] {
            let mut e = rng.normals(n, 1.0);
            let p = rng.normals(n, 1.0);
            let (te, tp) = (upload(gpu, &e, "ema"), upload(gpu, &p, "param"));
            let d = ema_update(gpu, &te, &tp, decay).unwrap();
            pollster::block_on(gpu.run(&[d])).unwrap();
            cpu::optim::ema_update(&mut e, &p, decay);
            assert_close(
                &te.read_blocking(gpu).unwrap(),
                &e,
                1e-7,
                1e-6,
                &format!("ema n {n} decay {decay}"),
            );
        }
    }

    #[test]
    fn optim_rejects_bad_args() {
        let gpu = gpu();
        let t = |n: usize| Tensor::zeros(gpu, &[n], "t").unwrap();
        let (p, g, m, v, nsq) = (t(4), t(4), t(4), t(4), t(1));
        let hp = AdamWParams {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step: 1,
            max_grad_norm: 0.0,
        };
        assert!(adamw_step(gpu, &p, &g, &m, &v, &nsq, &hp).is_ok());
        let adamw = |hp: &AdamWParams, what: &str| {
            err_text(adamw_step(gpu, &p, &g, &m, &v, &nsq, hp), what)
        };
        let e = adamw(&AdamWParams { step: 0, ..hp }, "step 0");
        assert!(e.contains("AdamW: step is 1-based"), "{e}");
        let e = adamw(&AdamWParams { beta1: 1.0, ..hp }, "beta1 1");
        assert!(e.contains("AdamW: betas must be in [0, 1)"), "{e}");
        let e = adamw(&AdamWParams { lr: f64::NAN, ..hp }, "lr NaN");
        assert!(e.contains("AdamW: lr must be finite"), "{e}");
        let e = adamw(
            &AdamWParams {
                max_grad_norm: -1.0,
                ..hp
            },
            "max_grad_norm < 0",
        );
        assert!(
            e.contains("AdamW: max_grad_norm must be finite and ≥ 0"),
            "{e}"
        );
        let e = err_text(adamw_step(gpu, &p, &t(3), &m, &v, &nsq, &hp), "grad of 3");
        assert!(e.contains("shape mismatch for adamw_step grad"), "{e}");
        let e = err_text(adamw_step(gpu, &p, &g, &m, &m, &nsq, &hp), "v = m");
        assert!(e.contains("adamw_step: m and v are the same buffer"), "{e}");
        let e = err_text(adamw_step(gpu, &p, &p, &m, &v, &nsq, &hp), "grad = param");
        assert!(
            e.contains("adamw_step: param and grad are the same buffer"),
            "{e}"
        );
        let e = operand_err_text(
            adamw_step(gpu, &p, &g, &m, &v, &t(0), &hp),
            "empty norm_sq",
            "norm_sq",
        );
        assert!(e.contains("adamw_step: norm_sq: is empty"), "{e}");
        let e = operand_err_text(ema_update(gpu, &p, &g, 1.5), "decay 1.5", "decay");
        assert!(e.contains("ema_update: decay: must be in [0, 1]"), "{e}");
        let e = err_text(ema_update(gpu, &p, &t(3), 0.9), "param of 3");
        assert!(e.contains("shape mismatch for ema_update param"), "{e}");
        let e = err_text(ema_update(gpu, &p, &p, 0.9), "param = ema");
        assert!(
            e.contains("ema_update: ema and param are the same buffer"),
            "{e}"
        );
    }
}
