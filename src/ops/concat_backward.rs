//! The gradient of channel concatenation ([`super::concat`]) for the training tape: the block
//! copies of `shaders/concat.wgsl`, reference [`crate::cpu::concat_backward`].

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, KernelSpec, Tensor};
use crate::ops::concat::{block_copy, block_spec};
use crate::ops::{check_no_alias, same_shape};

/// The gradient's block copies: overwrite or accumulate.
const COPY: KernelSpec = block_spec("concat_backward", "copy_block");
const ADD: KernelSpec = block_spec("concat_backward", "add_block");

/// Gradient of `concat_channels(a, b)`: dy [N, Ca + Cb, ...] → da [N, Ca, ...] and
/// db [N, Cb, ...] (overwritten, or added to when `accumulate_a` / `accumulate_b`).
pub fn concat_backward(
    gpu: &Gpu,
    dy: &Tensor,
    accumulate_a: bool,
    da: &Tensor,
    accumulate_b: bool,
    db: &Tensor,
) -> Result<Dispatch> {
    if dy.shape.len() < 2 || da.shape.len() != dy.shape.len() {
        let operand = if dy.shape.len() < 2 { "dy" } else { "da" };
        return Err(Error::operand(
            "concat_backward",
            operand,
            format!(
                "dy and da must be [N, C, ...] of the same rank, got {:?} and {:?}",
                dy.shape, da.shape
            ),
        ));
    }
    let ca = da.shape[1];
    let c = dy.shape[1];
    if ca > c {
        return Err(Error::operand(
            "concat_backward",
            "da",
            format!("has {ca} channels but dy only {c}"),
        ));
    }
    let mut want = dy.shape.clone();
    want[1] = ca;
    same_shape("concat_backward da", &want, &da.shape)?;
    want[1] = c - ca;
    same_shape("concat_backward db", &want, &db.shape)?;
    check_no_alias("concat_backward", &[("da", da), ("db", db)], &[("dy", dy)])?;
    let spatial: usize = dy.shape[2..].iter().product();
    let (n, la, lb) = (dy.shape[0], ca * spatial, (c - ca) * spatial);
    let op = "concat_backward";
    let spec = |acc: bool| if acc { &ADD } else { &COPY };
    let row = la + lb;
    let pa = block_copy(
        gpu,
        spec(accumulate_a),
        op,
        dy,
        da,
        n,
        la,
        (row, 0),
        (la, 0),
    )?;
    let pb = block_copy(
        gpu,
        spec(accumulate_b),
        op,
        dy,
        db,
        n,
        lb,
        (row, la),
        (lb, 0),
    )?;
    Ok(pa.then(pb))
}

/// This module's kernels, for the naga check of Rust against WGSL (`gpu::check`).
#[cfg(test)]
pub(crate) fn kernels() -> Vec<crate::gpu::KernelCheck> {
    use crate::gpu::kernel_check;
    use crate::ops::concat::WG;
    vec![
        kernel_check!(COPY).workgroup_size([WG]),
        kernel_check!(ADD).workgroup_size([WG]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu;
    use crate::testing::{accumulated as plus, assert_close, gpu, initial_output as init, Rng};

    #[test]
    fn concat_backward_matches_cpu() {
        let gpu = gpu();
        let mut rng = Rng::new(51);
        for (i, (n, ca, cb, hw)) in [
            (1, 1, 1, vec![1, 1]),
            (2, 3, 5, vec![4, 4]),
            (3, 1, 7, vec![5, 3]),
            (2, 13, 11, vec![9, 17]),
            (2, 4, 0, vec![3, 3]),
            (2, 6, 5, vec![]),
        ]
        .into_iter()
        .enumerate()
        {
            let s: usize = hw.iter().product();
            let shape = |ch: usize| [&[n, ch][..], &hw].concat();
            let dy = rng.normals(n * (ca + cb) * s, 1.0);
            let (acc_a, acc_b) = (i % 2 == 1, i % 3 == 1);
            let a0 = init(&mut rng, n * ca * s, acc_a);
            let b0 = init(&mut rng, n * cb * s, acc_b);
            let tdy = Tensor::from_slice(gpu, &shape(ca + cb), &dy, "dy").unwrap();
            let ta = Tensor::from_slice(gpu, &shape(ca), &a0, "da").unwrap();
            let tb = Tensor::from_slice(gpu, &shape(cb), &b0, "db").unwrap();
            let d = concat_backward(gpu, &tdy, acc_a, &ta, acc_b, &tb).unwrap();
            pollster::block_on(gpu.run(&[d])).unwrap();
            let (wa, wb) = cpu::concat_backward::concat_backward(&dy, n, ca, cb, s);
            let what = format!("concat_backward n {n} ca {ca} cb {cb} hw {hw:?}");
            assert_close(
                &ta.read_blocking(gpu).unwrap(),
                &plus(&a0, &wa, acc_a),
                1e-6,
                1e-6,
                &what,
            );
            assert_close(
                &tb.read_blocking(gpu).unwrap(),
                &plus(&b0, &wb, acc_b),
                1e-6,
                1e-6,
                &what,
            );
        }
    }

    #[test]
    fn concat_backward_rejects_bad_args() {
        let gpu = gpu();
        let dy = Tensor::zeros(gpu, &[2, 5, 3, 3], "dy").unwrap();
        let da = Tensor::zeros(gpu, &[2, 2, 3, 3], "da").unwrap();
        let db = Tensor::zeros(gpu, &[2, 3, 3, 3], "db").unwrap();
        assert!(concat_backward(gpu, &dy, false, &da, false, &db).is_ok());
        assert!(concat_backward(gpu, &dy, false, &db, false, &da).is_ok());
        let err = |a: &Tensor, b: &Tensor| match concat_backward(gpu, &dy, false, a, false, b) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        };
        let even = Tensor::zeros(gpu, &[2, 4, 3, 3], "dy").unwrap();
        let e = match concat_backward(gpu, &even, false, &da, false, &da) {
            Ok(_) => panic!("aliased outputs accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("da and db are the same buffer"), "{e}");
        let big = Tensor::zeros(gpu, &[2, 6, 3, 3], "big").unwrap();
        let e = err(&big, &db);
        assert!(
            e.contains("concat_backward: da: has 6 channels but dy only 5"),
            "{e}"
        );
        let hw = Tensor::zeros(gpu, &[2, 2, 3, 4], "hw").unwrap();
        let e = err(&hw, &db);
        assert!(e.contains("concat_backward da"), "{e}");
        let e = err(&dy, &db);
        assert!(e.contains("concat_backward db"), "{e}");
    }
}
