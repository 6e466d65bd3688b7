//! `shaders/group_norm.wgsl`: GroupNorm (torch semantics) with optional fused SiLU.

use crate::error::{Error, Result};
use crate::gpu::{grid, uniform_params, Access, Dispatch, Gpu, KernelSpec, Tensor};
use crate::options::GroupNormOptions;

const BINDINGS: &[Access] = &[
    Access::Uniform,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
];

const SOURCE: &str = concat!(
    include_str!("../../shaders/group_norm_serial_sums.wgsl"),
    include_str!("../../shaders/group_norm.wgsl"),
);

/// One workgroup per (n, group), shared-memory reduction: for GPUs.
const GROUP_NORM: KernelSpec = KernelSpec {
    name: "group_norm",
    source: SOURCE,
    entry: "group_norm",
    bindings: BINDINGS,
    params: &Params::LAYOUT,
};

/// One invocation per (n, group), no barriers: for CPU drivers (lavapipe), where it is 2–4×
/// faster than [`GROUP_NORM`] on the U-Net's group sizes.
const GROUP_NORM_SERIAL: KernelSpec = KernelSpec {
    name: "group_norm",
    source: SOURCE,
    entry: "group_norm_serial",
    bindings: BINDINGS,
    params: &Params::LAYOUT,
};

/// Invocations per workgroup of `group_norm_serial`.
const SERIAL_WG: u32 = 8;

uniform_params! {
    struct Params {
        n_groups: u32,
        groups: u32,
        cpg: u32,
        spatial: u32,
        eps: f32,
        silu: u32,
        step_c: u32,
        step_s: u32,
    }
}

/// Invocations per workgroup of `group_norm`.
const WG: usize = 256;

/// The operands of a GroupNorm: `x [N, C, ...]` (e.g. `[N, C, H, W]` or `[N, C, L]`) and the
/// per-channel affine `gamma`, `beta [C]` (also what
/// [`crate::ops::group_norm_backward`] differentiates). CPU twin:
/// `cpu::group_norm::GroupNormInputs`.
#[derive(Clone, Copy, Debug)]
pub struct GroupNormInputs<'a> {
    pub x: &'a Tensor,
    pub gamma: &'a Tensor,
    pub beta: &'a Tensor,
}

/// out = GroupNorm(x)·gamma + beta per channel, then SiLU when `opts.silu`; out has x's shape,
/// C % groups == 0. Picks the kernel variant suited to the adapter (CPU driver or GPU); both
/// give the same result.
pub fn group_norm(
    gpu: &Gpu,
    inputs: GroupNormInputs,
    opts: GroupNormOptions,
    out: &Tensor,
) -> Result<Dispatch> {
    let serial = gpu.is_cpu();
    build(gpu, inputs, opts, out, serial)
}

/// Checks the operands [`group_norm`] and its backward share: x `[N, C, ...]`, `groups` dividing
/// C, eps ≥ 0, gamma and beta `[C]`. Returns (N, C, spatial size).
pub(crate) fn check_operands(
    op: &str,
    inputs: GroupNormInputs,
    opts: GroupNormOptions,
) -> Result<(usize, usize, usize)> {
    let GroupNormInputs { x, gamma, beta } = inputs;
    let GroupNormOptions { groups, eps, .. } = opts;
    if x.shape.len() < 2 {
        return Err(Error::operand(
            op,
            "x",
            format!("must be [N, C, ...], got shape {:?}", x.shape),
        ));
    }
    let (n, c) = (x.shape[0], x.shape[1]);
    let spatial: usize = x.shape[2..].iter().product();
    if groups == 0 || !c.is_multiple_of(groups) {
        return Err(Error::operand(
            op,
            "groups",
            format!("{c} channels do not split into {groups} groups"),
        ));
    }
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(Error::operand(op, "eps", format!("must be ≥ 0, got {eps}")));
    }
    crate::ops::same_shape(&format!("{op} gamma"), &[c], &gamma.shape)?;
    crate::ops::same_shape(&format!("{op} beta"), &[c], &beta.shape)?;
    Ok((n, c, spatial))
}

/// [`group_norm`] with an explicit variant: `serial` selects `group_norm_serial`.
fn build(
    gpu: &Gpu,
    inputs: GroupNormInputs,
    opts: GroupNormOptions,
    out: &Tensor,
    serial: bool,
) -> Result<Dispatch> {
    let (n, c, spatial) = check_operands("group_norm", inputs, opts)?;
    let GroupNormInputs { x, gamma, beta } = inputs;
    let GroupNormOptions { groups, eps, silu } = opts;
    crate::ops::same_shape("group_norm out", &x.shape, &out.shape)?;
    let n_groups = to_u32("N·groups", n * groups)?;
    let params = Params {
        n_groups,
        groups: to_u32("groups", groups)?,
        cpg: to_u32("channels per group", c / groups)?,
        spatial: to_u32("spatial size", spatial)?,
        eps,
        silu: silu as u32,
        step_c: (WG / spatial.max(1)) as u32,
        step_s: (WG % spatial.max(1)) as u32,
    };
    let (spec, workgroups) = if serial {
        (&GROUP_NORM_SERIAL, grid(n_groups.div_ceil(SERIAL_WG)))
    } else {
        (&GROUP_NORM, grid(n_groups))
    };
    Ok(gpu.dispatch(
        spec,
        &params,
        &[&x.buffer, &gamma.buffer, &beta.buffer, &out.buffer],
        workgroups,
    ))
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    crate::ops::to_u32("group_norm", what, v)
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    vec![
        kernel_check!(GROUP_NORM)
            .workgroup_size([WG])
            .shader_const("WG", WG),
        kernel_check!(GROUP_NORM_SERIAL)
            .workgroup_size([SERIAL_WG])
            .shader_const("SERIAL_WG", SERIAL_WG),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{assert_close, err_text, gpu, operand_err_text, Rng};

    fn check(rng: &mut Rng, shape: &[usize], groups: usize, eps: f32, silu: bool, offset: f32) {
        let gpu = gpu();
        let (n, c) = (shape[0], shape[1]);
        let spatial: usize = shape[2..].iter().product();
        let numel = n * c * spatial;
        // A large common offset tests the two-pass variance (E[x²]−E[x]² would cancel badly).
        let x: Vec<f32> = rng.normals(numel, 2.0).iter().map(|v| v + offset).collect();
        let gamma = rng.normals(c, 1.0);
        let beta = rng.normals(c, 1.0);
        let tx = Tensor::from_slice(gpu, shape, &x, "x").unwrap();
        let tg = Tensor::from_slice(gpu, &[c], &gamma, "gamma").unwrap();
        let tb = Tensor::from_slice(gpu, &[c], &beta, "beta").unwrap();
        let opts = GroupNormOptions { groups, eps, silu };
        let cpu_inputs = cpu::group_norm::GroupNormInputs {
            x: &x,
            n,
            c,
            spatial,
            gamma: &gamma,
            beta: &beta,
        };
        let want = cpu::group_norm::group_norm(cpu_inputs, opts);
        let inputs = GroupNormInputs {
            x: &tx,
            gamma: &tg,
            beta: &tb,
        };
        for serial in [false, true] {
            let out = Tensor::zeros(gpu, shape, "out").unwrap();
            let d = build(gpu, inputs, opts, &out, serial).unwrap();
            pollster::block_on(gpu.run(&[d])).unwrap();
            let got = out.read_blocking(gpu).unwrap();
            let what = format!(
                "group_norm {shape:?} groups {groups} silu {silu} offset {offset} serial {serial}"
            );
            assert_close(&got, &want, 1e-5, 1e-5, &what);
        }
    }

    #[test]
    fn group_norm_matches_cpu() {
        let mut rng = Rng::new(7);
        // (shape, groups): group sizes from 1 element to 32·1024.
        let cases: &[(&[usize], usize)] = &[
            (&[1, 1, 1, 1], 1),
            (&[2, 8, 4, 4], 2),
            (&[1, 128, 4, 4], 32),
            (&[3, 6, 5, 7], 3),
            (&[2, 12, 17], 4),
            (&[1, 64, 33, 31], 32),
            (&[1, 32, 1, 1], 32),
            (&[1, 32, 32, 32], 1),
            (&[2, 6], 3),
        ];
        for (i, (shape, groups)) in cases.iter().enumerate() {
            check(&mut rng, shape, *groups, 1e-5, i % 2 == 1, 0.0);
        }
    }

    #[test]
    fn group_norm_large_offset_and_eps() {
        let mut rng = Rng::new(8);
        check(&mut rng, &[2, 16, 9, 9], 4, 1e-6, false, 1000.0);
        check(&mut rng, &[1, 8, 16, 16], 8, 1e-6, true, -300.0);
        check(&mut rng, &[1, 4, 3, 3], 2, 0.5, false, 0.0);
    }

    #[test]
    fn group_norm_hand_checked() {
        let gpu = gpu();
        let x = Tensor::from_slice(gpu, &[1, 2, 2], &[1.0, 2.0, 3.0, 6.0], "x").unwrap();
        let g = Tensor::from_slice(gpu, &[2], &[1.0, 2.0], "g").unwrap();
        let b = Tensor::from_slice(gpu, &[2], &[0.0, 1.0], "b").unwrap();
        let out = Tensor::zeros(gpu, &[1, 2, 2], "out").unwrap();
        let inputs = GroupNormInputs {
            x: &x,
            gamma: &g,
            beta: &b,
        };
        let opts = GroupNormOptions {
            groups: 1,
            eps: 0.0,
            silu: false,
        };
        let d = group_norm(gpu, inputs, opts, &out).unwrap();
        pollster::block_on(gpu.run(&[d])).unwrap();
        let s = 3.5f32.sqrt();
        let want = [-2.0 / s, -1.0 / s, 1.0, 6.0 / s + 1.0];
        assert_close(&out.read_blocking(gpu).unwrap(), &want, 1e-6, 1e-6, "hand");
    }

    #[test]
    fn group_norm_rejects_bad_args() {
        let gpu = gpu();
        let x = Tensor::zeros(gpu, &[1, 6, 2, 2], "x").unwrap();
        let g = Tensor::zeros(gpu, &[6], "g").unwrap();
        let out = Tensor::zeros(gpu, &[1, 6, 2, 2], "out").unwrap();
        let run = |x: &Tensor, gamma: &Tensor, groups: usize, out: &Tensor| {
            let inputs = GroupNormInputs { x, gamma, beta: &g };
            let opts = GroupNormOptions {
                groups,
                eps: 1e-5,
                silu: false,
            };
            group_norm(gpu, inputs, opts, out)
        };
        let Err(err) = run(&x, &g, 4, &out) else {
            panic!("6 channels in 4 groups accepted");
        };
        assert!(
            err.to_string()
                .contains("6 channels do not split into 4 groups"),
            "{err}"
        );
        let e = operand_err_text(run(&x, &g, 0, &out), "0 groups", "groups");
        assert!(
            e.contains("group_norm: groups: 6 channels do not split into 0 groups"),
            "{e}"
        );
        let g5 = Tensor::zeros(gpu, &[5], "g5").unwrap();
        let e = err_text(run(&x, &g5, 3, &out), "gamma of 5");
        assert!(e.contains("shape mismatch for group_norm gamma"), "{e}");
        let bad_out = Tensor::zeros(gpu, &[1, 6, 4], "bad").unwrap();
        let e = err_text(run(&x, &g, 3, &bad_out), "out of the wrong shape");
        assert!(e.contains("shape mismatch for group_norm out"), "{e}");
        let flat = Tensor::zeros(gpu, &[6], "flat").unwrap();
        let e = operand_err_text(run(&flat, &g, 3, &flat), "x of rank 1", "x");
        assert!(e.contains("group_norm: x: must be [N, C, ...]"), "{e}");
    }
}
