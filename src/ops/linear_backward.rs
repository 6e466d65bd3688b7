//! `shaders/linear_backward.wgsl`: gradient of [`crate::ops::linear::linear`]
//! (y = g(f(x)·wᵀ + b), f, g = SiLU or identity), reference [`crate::cpu::linear_backward`].

use crate::error::Result;
use crate::gpu::{grid, Access, Dispatch, Gpu, KernelSpec, Tensor};
use crate::ops::linear::{LinearInputs, Params, WG};
use crate::ops::{check_no_alias, same_shape, Accumulate};
use crate::options::LinearOptions;

const SOURCE: &str = include_str!("../../shaders/linear_backward.wgsl");

/// da = dy·SiLU'(a) (only when the output has a SiLU).
const LINEAR_BACKWARD_DA: KernelSpec = KernelSpec {
    name: "linear_backward",
    source: SOURCE,
    entry: "linear_backward_da",
    bindings: &[
        Access::Uniform,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
    ],
    params: &Params::LAYOUT,
};

/// dx, dw and db in one dispatch.
const LINEAR_BACKWARD: KernelSpec = KernelSpec {
    name: "linear_backward",
    source: SOURCE,
    entry: "linear_backward",
    bindings: &[
        Access::Uniform,
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    params: &Params::LAYOUT,
};

/// The gradients [`linear_backward`] writes: `dx [N, In]` (skipped when `None`, e.g. for a
/// network input), `dw [Out, In]`, `db [Out]`.
#[derive(Clone, Copy, Debug)]
pub struct LinearGrads<'a> {
    pub dx: Option<&'a Tensor>,
    pub dw: &'a Tensor,
    pub db: &'a Tensor,
}

/// Gradient of `y [N, Out] = linear(inputs, opts)` from dy [N, Out]: writes `grads`, each
/// overwritten or added to as `acc` says (`acc.dx` for dx, `acc.params` for dw, db).
/// One dispatch, two when `opts.silu_out` (the pre-activation is recomputed into an internal
/// [N, Out] scratch buffer first); run them in order.
pub fn linear_backward(
    gpu: &Gpu,
    inputs: LinearInputs,
    dy: &Tensor,
    opts: LinearOptions,
    grads: LinearGrads,
    acc: Accumulate,
) -> Result<Vec<Dispatch>> {
    let (n, in_f, out_f) = crate::ops::linear::check_operands("linear_backward", inputs)?;
    let LinearInputs { x, w, b } = inputs;
    let LinearGrads { dx, dw, db } = grads;
    let LinearOptions { silu_in, silu_out } = opts;
    same_shape("linear_backward dy", &[n, out_f], &dy.shape)?;
    same_shape("linear_backward dw", &w.shape, &dw.shape)?;
    same_shape("linear_backward db", &[out_f], &db.shape)?;
    let mut outs = vec![("dw", dw), ("db", db)];
    if let Some(dx) = dx {
        same_shape("linear_backward dx", &x.shape, &dx.shape)?;
        outs.push(("dx", dx));
    }
    check_no_alias(
        "linear_backward",
        &outs,
        &[("x", x), ("w", w), ("b", b), ("dy", dy)],
    )?;

    let params = Params {
        n: to_u32("N", n)?,
        in_f: to_u32("In", in_f)?,
        out_f: to_u32("Out", out_f)?,
        flags: silu_in as u32
            | (silu_out as u32) << 1
            | (acc.dx as u32) << 2
            | (acc.params as u32) << 3
            | (dx.is_some() as u32) << 4,
    };
    let n_dx = if dx.is_some() { n * in_f } else { 0 };
    let total = to_u32("dx + dw + db elements", n_dx + out_f * in_f + out_f)?;
    let mut dispatches = Vec::with_capacity(2);
    let scratch;
    let da = if silu_out {
        scratch = Tensor::zeros(gpu, &[n, out_f], "linear_backward da")?;
        dispatches.push(gpu.dispatch(
            &LINEAR_BACKWARD_DA,
            &params,
            &[&x.buffer, &w.buffer, &b.buffer, &dy.buffer, &scratch.buffer],
            grid(to_u32("N·Out", n * out_f)?.div_ceil(WG)),
        ));
        &scratch
    } else {
        dy
    };
    // Without dx the shared placeholder fills its binding (never touched).
    let dx_buf = match dx {
        Some(dx) => dx,
        None => gpu.placeholder()?,
    };
    dispatches.push(gpu.dispatch(
        &LINEAR_BACKWARD,
        &params,
        &[
            &x.buffer,
            &w.buffer,
            &da.buffer,
            &dx_buf.buffer,
            &dw.buffer,
            &db.buffer,
        ],
        grid(total.div_ceil(WG)),
    ));
    Ok(dispatches)
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("linear_backward", what, v)
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![
        kernel_check!(LINEAR_BACKWARD_DA).workgroup_size([WG]),
        kernel_check!(LINEAR_BACKWARD).workgroup_size([WG]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{
        accumulated as plus, assert_close, err_text, gpu, initial_output as init, operand_err_text,
        Rng,
    };

    #[test]
    fn linear_backward_matches_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(61);
        let cases = [
            (1, 1, 1),
            (1, 32, 128),
            (2, 128, 64),
            (3, 7, 65),
            (5, 129, 33),
            (4, 64, 256),
            (1, 3, 100),
            (7, 5, 3),
        ];
        for (i, &(n, in_f, out_f)) in cases.iter().enumerate() {
            let x = rng.normals(n * in_f, 2.0);
            let w = rng.normals(out_f * in_f, 1.0 / (in_f as f32).sqrt());
            let b = rng.normals(out_f, 0.5);
            let dy = rng.normals(n * out_f, 1.0);
            let (si, so) = (i % 2 == 1, i % 4 >= 2);
            let (acc_dx, acc_p, with_dx) = (i % 3 == 1, i % 3 == 2, i != 5);
            let opts = LinearOptions {
                silu_in: si,
                silu_out: so,
            };
            let cpu_inputs = cpu::linear::LinearInputs {
                x: &x,
                n,
                in_f,
                w: &w,
                out_f,
                b: &b,
            };
            let want = cpu::linear_backward::linear_backward(cpu_inputs, &dy, opts);
            let dx0 = init(&mut rng, n * in_f, acc_dx);
            let dw0 = init(&mut rng, out_f * in_f, acc_p);
            let db0 = init(&mut rng, out_f, acc_p);
            let tx = Tensor::from_slice(gpu, &[n, in_f], &x, "x").unwrap();
            let tw = Tensor::from_slice(gpu, &[out_f, in_f], &w, "w").unwrap();
            let tb = Tensor::from_slice(gpu, &[out_f], &b, "b").unwrap();
            let tdy = Tensor::from_slice(gpu, &[n, out_f], &dy, "dy").unwrap();
            let tdx = Tensor::from_slice(gpu, &[n, in_f], &dx0, "dx").unwrap();
            let tdw = Tensor::from_slice(gpu, &[out_f, in_f], &dw0, "dw").unwrap();
            let tdb = Tensor::from_slice(gpu, &[out_f], &db0, "db").unwrap();
            let inputs = LinearInputs {
                x: &tx,
                w: &tw,
                b: &tb,
            };
            let grads = LinearGrads {
                dx: with_dx.then_some(&tdx),
                dw: &tdw,
                db: &tdb,
            };
            let acc = Accumulate {
                dx: acc_dx,
                params: acc_p,
            };
            let ds = linear_backward(gpu, inputs, &tdy, opts, grads, acc).unwrap();
            assert_eq!(ds.len(), 1 + so as usize);
            pollster::block_on(gpu.run(&ds)).unwrap();
            let what = format!("linear_backward n {n} in {in_f} out {out_f} silu {si}/{so}");
            let dx = tdx.read_blocking(gpu).unwrap();
            if with_dx {
                assert_close(
                    &dx,
                    &plus(&dx0, &want.dx, acc_dx),
                    1e-4,
                    1e-4,
                    &format!("{what} dx"),
                );
            } else {
                assert!(
                    dx.iter().all(|v| v.is_nan()),
                    "{what}: dx written without dx"
                );
            }
            let dw = tdw.read_blocking(gpu).unwrap();
            assert_close(
                &dw,
                &plus(&dw0, &want.dw, acc_p),
                1e-4,
                1e-4,
                &format!("{what} dw"),
            );
            let db = tdb.read_blocking(gpu).unwrap();
            assert_close(
                &db,
                &plus(&db0, &want.db, acc_p),
                1e-4,
                1e-4,
                &format!("{what} db"),
            );
        }
    }

    #[test]
    fn linear_backward_rejects_bad_shapes() {
        let gpu = gpu();
        let t = |shape: &[usize]| Tensor::zeros(gpu, shape, "t").unwrap();
        let (x, w, b, dy) = (t(&[2, 3]), t(&[4, 3]), t(&[4]), t(&[2, 4]));
        let (dx, dw, db) = (t(&[2, 3]), t(&[4, 3]), t(&[4]));
        let silu = LinearOptions {
            silu_in: true,
            silu_out: true,
        };
        let run = |x: &Tensor, w: &Tensor, dy: &Tensor, dx: &Tensor, dw: &Tensor, db: &Tensor| {
            let grads = LinearGrads {
                dx: Some(dx),
                dw,
                db,
            };
            let inputs = LinearInputs { x, w, b: &b };
            linear_backward(gpu, inputs, dy, silu, grads, Accumulate::default())
        };
        assert!(run(&x, &w, &dy, &dx, &dw, &db).is_ok());
        let e = err_text(
            run(&x, &t(&[4, 2]), &dy, &dx, &dw, &db),
            "w of the wrong in-features",
        );
        assert!(
            e.contains("shape mismatch for linear_backward weight (x has 3 features)"),
            "{e}"
        );
        let e = err_text(
            run(&x, &w, &t(&[2, 3]), &dx, &dw, &db),
            "dy of the wrong shape",
        );
        assert!(e.contains("shape mismatch for linear_backward dy"), "{e}");
        let e = err_text(
            run(&x, &w, &dy, &t(&[3, 2]), &dw, &db),
            "dx of the wrong shape",
        );
        assert!(e.contains("shape mismatch for linear_backward dx"), "{e}");
        let e = err_text(
            run(&x, &w, &dy, &dx, &t(&[3, 4]), &db),
            "dw of the wrong shape",
        );
        assert!(e.contains("shape mismatch for linear_backward dw"), "{e}");
        let e = err_text(
            run(&x, &w, &dy, &dx, &dw, &t(&[3])),
            "db of the wrong shape",
        );
        assert!(e.contains("shape mismatch for linear_backward db"), "{e}");
        let e = operand_err_text(
            run(&t(&[1, 2, 3]), &w, &dy, &dx, &dw, &db),
            "x of rank 3",
            "x",
        );
        assert!(e.contains("linear_backward: x: must be [N, In]"), "{e}");
        // Outputs must not alias inputs or each other.
        let e = err_text(run(&x, &w, &dy, &x, &dw, &db), "dx = x");
        assert!(
            e.contains("linear_backward: dx and x are the same buffer"),
            "{e}"
        );
        let e = err_text(run(&x, &w, &dy, &dx, &w, &db), "dw = w");
        assert!(
            e.contains("linear_backward: dw and w are the same buffer"),
            "{e}"
        );
        let e = err_text(run(&x, &w, &dy, &dx, &dw, &b), "db = b");
        assert!(
            e.contains("linear_backward: db and b are the same buffer"),
            "{e}"
        );
        let sq = t(&[3, 3]);
        let (xs, ws, dys) = (t(&[3, 3]), t(&[3, 3]), t(&[3, 3]));
        let b3 = t(&[3]);
        let inputs = LinearInputs {
            x: &xs,
            w: &ws,
            b: &b3,
        };
        let grads = LinearGrads {
            dx: Some(&sq),
            dw: &sq,
            db: &t(&[3]),
        };
        let r = linear_backward(
            gpu,
            inputs,
            &dys,
            LinearOptions::default(),
            grads,
            Accumulate::default(),
        );
        let e = err_text(r, "dx = dw");
        assert!(
            e.contains("linear_backward: dw and dx are the same buffer"),
            "{e}"
        );
    }
}
