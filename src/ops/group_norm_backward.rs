//! `shaders/group_norm_backward.wgsl`: gradient of [`crate::ops::group_norm::group_norm`]
//! (affine, optional fused SiLU), reference [`crate::cpu::group_norm_backward`].

use crate::error::Result;
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};
use crate::ops::group_norm::GroupNormInputs;
use crate::ops::{check_no_alias, same_shape, Accumulate};
use crate::options::GroupNormOptions;

const SOURCE: &str = concat!(
    include_str!("../../shaders/group_norm_serial_sums.wgsl"),
    include_str!("../../shaders/group_norm_backward.wgsl"),
);

const MAIN_BINDINGS: &[Access] = &[
    Access::Uniform,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
];

/// One workgroup per (n, group), shared-memory reductions: for GPUs.
const GN_BACKWARD: KernelSpec = KernelSpec {
    name: "group_norm_backward",
    source: SOURCE,
    entry: "gn_backward",
    bindings: MAIN_BINDINGS,
    params: &Params::LAYOUT,
};

/// One invocation per (n, group), no barriers: for CPU drivers (lavapipe).
const GN_BACKWARD_SERIAL: KernelSpec = KernelSpec {
    name: "group_norm_backward",
    source: SOURCE,
    entry: "gn_backward_serial",
    bindings: MAIN_BINDINGS,
    params: &Params::LAYOUT,
};

/// dγ, dβ from the per-(n, c) partial sums.
const GN_BACKWARD_PARAMS: KernelSpec = KernelSpec {
    name: "group_norm_backward",
    source: SOURCE,
    entry: "gn_backward_params",
    bindings: &[
        Access::Uniform,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    params: &Params::LAYOUT,
};

/// Invocations per workgroup of `gn_backward_serial`.
const SERIAL_WG: u32 = 8;
/// Invocations per workgroup of `gn_backward_params` (its `@workgroup_size`).
const PARAMS_WG: u32 = 64;

uniform_params! {
    struct Params {
        n_groups: u32,
        groups: u32,
        cpg: u32,
        spatial: u32,
        eps: f32,
        flags: u32,
        n: u32,
        c: u32,
    }
}

/// The gradients [`group_norm_backward`] writes: `dx` (x's shape), `dgamma`, `dbeta [C]`.
#[derive(Clone, Copy, Debug)]
pub struct GroupNormGrads<'a> {
    pub dx: &'a Tensor,
    pub dgamma: &'a Tensor,
    pub dbeta: &'a Tensor,
}

/// Gradient of `y = group_norm(inputs, opts)`: from dy (x's shape [N, C, ...]) writes `grads`.
/// Each is overwritten, or added to as `acc` says (`acc.dx` for dx, `acc.params` for dγ, dβ).
/// Two dispatches (run them in order): statistics, dx and per-(n, c) partial sums (an internal
/// [N, C, 2] scratch buffer), then dγ/dβ over N. Picks the kernel variant suited to the
/// adapter, like the forward.
pub fn group_norm_backward(
    gpu: &Gpu,
    inputs: GroupNormInputs,
    dy: &Tensor,
    opts: GroupNormOptions,
    grads: GroupNormGrads,
    acc: Accumulate,
) -> Result<Vec<Dispatch>> {
    let serial = gpu.is_cpu();
    build(gpu, inputs, dy, opts, grads, acc, serial)
}

/// [`group_norm_backward`] with an explicit variant: `serial` selects `gn_backward_serial`.
fn build(
    gpu: &Gpu,
    inputs: GroupNormInputs,
    dy: &Tensor,
    opts: GroupNormOptions,
    grads: GroupNormGrads,
    acc: Accumulate,
    serial: bool,
) -> Result<Vec<Dispatch>> {
    let (n, c, spatial) =
        crate::ops::group_norm::check_operands("group_norm_backward", inputs, opts)?;
    let GroupNormInputs { x, gamma, beta } = inputs;
    let GroupNormGrads { dx, dgamma, dbeta } = grads;
    let GroupNormOptions { groups, eps, silu } = opts;
    same_shape("group_norm_backward dy", &x.shape, &dy.shape)?;
    same_shape("group_norm_backward dx", &x.shape, &dx.shape)?;
    same_shape("group_norm_backward dgamma", &[c], &dgamma.shape)?;
    same_shape("group_norm_backward dbeta", &[c], &dbeta.shape)?;
    check_no_alias(
        "group_norm_backward",
        &[("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta)],
        &[("x", x), ("gamma", gamma), ("beta", beta), ("dy", dy)],
    )?;

    let n_groups = to_u32("N·groups", n * groups)?;
    let c_u32 = to_u32("C", c)?;
    let params = Params {
        n_groups,
        groups: to_u32("groups", groups)?,
        cpg: to_u32("channels per group", c / groups)?,
        spatial: to_u32("spatial size", spatial)?,
        eps,
        flags: silu as u32 | (acc.dx as u32) << 1 | (acc.params as u32) << 2,
        n: to_u32("N", n)?,
        c: c_u32,
    };
    let partial = Tensor::zeros(gpu, &[n, c, 2], "group_norm_backward partial")?;
    let (spec, workgroups) = if serial {
        (&GN_BACKWARD_SERIAL, grid(n_groups.div_ceil(SERIAL_WG)))
    } else {
        (&GN_BACKWARD, grid(n_groups))
    };
    let main = gpu.dispatch(
        spec,
        &params,
        &[
            &x.buffer,
            &gamma.buffer,
            &beta.buffer,
            &dy.buffer,
            &dx.buffer,
            &partial.buffer,
        ],
        workgroups,
    );
    let reduce = gpu.dispatch(
        &GN_BACKWARD_PARAMS,
        &params,
        &[&partial.buffer, &dgamma.buffer, &dbeta.buffer],
        grid(c_u32.div_ceil(PARAMS_WG)),
    );
    Ok(vec![main, reduce])
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("group_norm_backward", what, v)
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![
        kernel_check!(GN_BACKWARD),
        kernel_check!(GN_BACKWARD_SERIAL)
            .workgroup_size([SERIAL_WG])
            .shader_const("SERIAL_WG", SERIAL_WG),
        kernel_check!(GN_BACKWARD_PARAMS).workgroup_size([PARAMS_WG]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{assert_close, err_text, gpu, operand_err_text, Rng};

    fn check(rng: &mut Rng, shape: &[usize], opts: GroupNormOptions, acc: bool, offset: f32) {
        let GroupNormOptions { groups, silu, .. } = opts;
        let gpu = gpu();
        let (n, c) = (shape[0], shape[1]);
        let spatial: usize = shape[2..].iter().product();
        let numel = n * c * spatial;
        let x: Vec<f32> = rng.normals(numel, 2.0).iter().map(|v| v + offset).collect();
        let gamma = rng.normals(c, 1.0);
        let beta = rng.normals(c, 1.0);
        let dy = rng.normals(numel, 1.0);
        let cpu_inputs = cpu::group_norm::GroupNormInputs {
            x: &x,
            n,
            c,
            spatial,
            gamma: &gamma,
            beta: &beta,
        };
        let want = cpu::group_norm_backward::group_norm_backward(cpu_inputs, &dy, opts);
        // Accumulation: outputs start from random values the gradients are added to.
        let dx0 = if acc {
            rng.normals(numel, 1.0)
        } else {
            vec![f32::NAN; numel]
        };
        let dg0 = if acc {
            rng.normals(c, 1.0)
        } else {
            vec![f32::NAN; c]
        };
        let db0 = if acc {
            rng.normals(c, 1.0)
        } else {
            vec![f32::NAN; c]
        };
        let plus = |a: &[f32], b: &[f32]| -> Vec<f32> {
            if acc {
                a.iter().zip(b).map(|(u, v)| u + v).collect()
            } else {
                b.to_vec()
            }
        };
        let tx = Tensor::from_slice(gpu, shape, &x, "x").unwrap();
        let tg = Tensor::from_slice(gpu, &[c], &gamma, "gamma").unwrap();
        let tb = Tensor::from_slice(gpu, &[c], &beta, "beta").unwrap();
        let tdy = Tensor::from_slice(gpu, shape, &dy, "dy").unwrap();
        for serial in [false, true] {
            let tdx = Tensor::from_slice(gpu, shape, &dx0, "dx").unwrap();
            let tdg = Tensor::from_slice(gpu, &[c], &dg0, "dgamma").unwrap();
            let tdb = Tensor::from_slice(gpu, &[c], &db0, "dbeta").unwrap();
            let inputs = GroupNormInputs {
                x: &tx,
                gamma: &tg,
                beta: &tb,
            };
            let grads = GroupNormGrads {
                dx: &tdx,
                dgamma: &tdg,
                dbeta: &tdb,
            };
            let both = Accumulate {
                dx: acc,
                params: acc,
            };
            let ds = build(gpu, inputs, &tdy, opts, grads, both, serial).unwrap();
            pollster::block_on(gpu.run(&ds)).unwrap();
            let what = format!(
                "group_norm_backward {shape:?} groups {groups} silu {silu} acc {acc} serial {serial}"
            );
            let dx = tdx.read_blocking(gpu).unwrap();
            assert_close(
                &dx,
                &plus(&dx0, &want.dx),
                1e-4,
                1e-4,
                &format!("{what} dx"),
            );
            // dγ, dβ are sums over N·S terms: scale the tolerance with their count.
            let tol = 1e-5 * (n * spatial) as f32;
            let dg = tdg.read_blocking(gpu).unwrap();
            assert_close(
                &dg,
                &plus(&dg0, &want.dgamma),
                tol,
                1e-4,
                &format!("{what} dgamma"),
            );
            let db = tdb.read_blocking(gpu).unwrap();
            assert_close(
                &db,
                &plus(&db0, &want.dbeta),
                tol,
                1e-4,
                &format!("{what} dbeta"),
            );
        }
    }

    #[test]
    fn group_norm_backward_matches_cpu() {
        let mut rng = Rng::new(31);
        let cases: &[(&[usize], usize)] = &[
            (&[1, 1, 1, 1], 1),
            (&[2, 8, 4, 4], 2),
            (&[3, 6, 5, 7], 3),
            (&[2, 12, 17], 4),
            (&[1, 64, 9, 11], 32),
            (&[1, 32, 1, 1], 32),
            (&[1, 4, 19, 17], 1),
            (&[2, 6], 3),
        ];
        for (i, (shape, groups)) in cases.iter().enumerate() {
            let opts = GroupNormOptions {
                groups: *groups,
                eps: 1e-5,
                silu: i % 2 == 1,
            };
            check(&mut rng, shape, opts, i % 3 != 0, 0.0);
        }
    }

    #[test]
    fn group_norm_backward_offset_and_eps() {
        let mut rng = Rng::new(32);
        let opts = |groups, eps, silu| GroupNormOptions { groups, eps, silu };
        check(&mut rng, &[2, 16, 9, 9], opts(4, 1e-6, true), false, 100.0);
        check(&mut rng, &[1, 4, 3, 3], opts(2, 0.5, false), true, 0.0);
    }

    #[test]
    fn group_norm_backward_rejects_bad_args() {
        let gpu = gpu();
        let x = Tensor::zeros(gpu, &[1, 6, 2, 2], "x").unwrap();
        let dy = Tensor::zeros(gpu, &[1, 6, 2, 2], "dy").unwrap();
        let dx = Tensor::zeros(gpu, &[1, 6, 2, 2], "dx").unwrap();
        let g = Tensor::zeros(gpu, &[6], "g").unwrap();
        let dg = Tensor::zeros(gpu, &[6], "dg").unwrap();
        let db = Tensor::zeros(gpu, &[6], "db").unwrap();
        let run = |x: &Tensor, dy: &Tensor, dx: &Tensor, groups: usize, dg: &Tensor| {
            let inputs = GroupNormInputs {
                x,
                gamma: &g,
                beta: &g,
            };
            let opts = GroupNormOptions {
                groups,
                eps: 1e-5,
                silu: true,
            };
            let grads = GroupNormGrads {
                dx,
                dgamma: dg,
                dbeta: &db,
            };
            group_norm_backward(gpu, inputs, dy, opts, grads, Accumulate::default())
        };
        assert!(run(&x, &dy, &dx, 3, &dg).is_ok());
        let Err(err) = run(&x, &dy, &dx, 4, &dg) else {
            panic!("6 channels in 4 groups accepted");
        };
        assert!(
            err.to_string()
                .contains("6 channels do not split into 4 groups"),
            "{err}"
        );
        let e = operand_err_text(run(&x, &dy, &dx, 0, &dg), "0 groups", "groups");
        assert!(
            e.contains("group_norm_backward: groups: 6 channels do not split into 0 groups"),
            "{e}"
        );
        let bad = Tensor::zeros(gpu, &[1, 6, 4], "bad").unwrap();
        let e = err_text(run(&x, &bad, &dx, 3, &dg), "dy of the wrong shape");
        assert!(
            e.contains("shape mismatch for group_norm_backward dy"),
            "{e}"
        );
        let e = err_text(run(&x, &dy, &bad, 3, &dg), "dx of the wrong shape");
        assert!(
            e.contains("shape mismatch for group_norm_backward dx"),
            "{e}"
        );
        let dg5 = Tensor::zeros(gpu, &[5], "dg5").unwrap();
        let e = err_text(run(&x, &dy, &dx, 3, &dg5), "dgamma of 5");
        assert!(
            e.contains("shape mismatch for group_norm_backward dgamma"),
            "{e}"
        );
        // dx aliasing dy would be a read/write hazard within one dispatch.
        let Err(err) = run(&x, &dy, &dy, 3, &dg) else {
            panic!("dx aliasing dy accepted");
        };
        assert!(err.to_string().contains("same buffer"), "{err}");
        let flat = Tensor::zeros(gpu, &[6], "flat").unwrap();
        let e = operand_err_text(run(&flat, &flat, &dx, 3, &dg), "x of rank 1", "x");
        assert!(
            e.contains("group_norm_backward: x: must be [N, C, ...]"),
            "{e}"
        );
    }
}
