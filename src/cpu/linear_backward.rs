//! Reference for `shaders/linear_backward.wgsl`: the gradient of [`crate::cpu::linear::linear`].

use crate::cpu::linear::LinearInputs;
use crate::options::LinearOptions;

/// Gradients of a linear layer: dx `[n, in_f]`, dw `[out_f, in_f]`, db `[out_f]`.
#[derive(Clone, Debug)]
pub struct LinearGrads {
    pub dx: Vec<f32>,
    pub dw: Vec<f32>,
    pub db: Vec<f32>,
}

/// d SiLU(v) / dv = σ(v)·(1 + v·(1 − σ(v))).
pub fn silu_grad(v: f64) -> f64 {
    let s = 1.0 / (1.0 + (-v).exp());
    s * (1.0 + v * (1.0 - s))
}

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// d(Σ dy·y)/d(x, w, b) for y = linear(inputs, opts); dy [n, out_f]. Fresh gradients (callers
/// add them for accumulation). f64 inside.
pub fn linear_backward(inputs: LinearInputs, dy: &[f32], opts: LinearOptions) -> LinearGrads {
    let LinearInputs {
        x,
        n,
        in_f,
        w,
        out_f,
        b,
    } = inputs;
    let LinearOptions { silu_in, silu_out } = opts;
    assert_eq!(x.len(), n * in_f, "linear_backward: x length");
    assert_eq!(w.len(), out_f * in_f, "linear_backward: w length");
    assert_eq!(b.len(), out_f, "linear_backward: b length");
    assert_eq!(dy.len(), n * out_f, "linear_backward: dy length");
    let u: Vec<f64> = x
        .iter()
        .map(|&v| if silu_in { silu(v as f64) } else { v as f64 })
        .collect();
    // da = dy·g'(a), recomputing a = u·wᵀ + b.
    let mut da = vec![0f64; n * out_f];
    for r in 0..n {
        for o in 0..out_f {
            let mut g = dy[r * out_f + o] as f64;
            if silu_out {
                let a: f64 = (0..in_f)
                    .map(|i| u[r * in_f + i] * w[o * in_f + i] as f64)
                    .sum::<f64>()
                    + b[o] as f64;
                g *= silu_grad(a);
            }
            da[r * out_f + o] = g;
        }
    }
    let mut dx = vec![0f32; n * in_f];
    for r in 0..n {
        for i in 0..in_f {
            let mut s: f64 = (0..out_f)
                .map(|o| da[r * out_f + o] * w[o * in_f + i] as f64)
                .sum();
            if silu_in {
                s *= silu_grad(x[r * in_f + i] as f64);
            }
            dx[r * in_f + i] = s as f32;
        }
    }
    let mut dw = vec![0f32; out_f * in_f];
    for o in 0..out_f {
        for i in 0..in_f {
            let s: f64 = (0..n).map(|r| da[r * out_f + o] * u[r * in_f + i]).sum();
            dw[o * in_f + i] = s as f32;
        }
    }
    let db = (0..out_f)
        .map(|o| (0..n).map(|r| da[r * out_f + o]).sum::<f64>() as f32)
        .collect();
    LinearGrads { dx, dw, db }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::linear::linear;
    use crate::testing::Rng;

    /// Analytic gradients vs central finite differences of the forward, on a projection.
    #[test]
    fn matches_finite_differences() {
        let mut rng = Rng::new(71);
        for (n, in_f, out_f, si, so) in [
            (2, 3, 4, false, false),
            (3, 4, 2, true, false),
            (2, 5, 3, false, true),
            (1, 3, 3, true, true),
        ] {
            let x = rng.normals(n * in_f, 1.5);
            let w = rng.normals(out_f * in_f, 0.7);
            let b = rng.normals(out_f, 0.5);
            let r = rng.normals(n * out_f, 1.0);
            let opts = LinearOptions {
                silu_in: si,
                silu_out: so,
            };
            let inputs = LinearInputs {
                x: &x,
                n,
                in_f,
                w: &w,
                out_f,
                b: &b,
            };
            let g = linear_backward(inputs, &r, opts);
            let f = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
                let y = linear(LinearInputs { x, w, b, ..inputs }, opts);
                y.iter().zip(&r).map(|(&a, &c)| a as f64 * c as f64).sum()
            };
            let h = 1e-2f32;
            let fd = |p: f64, m: f64| ((p - m) / (2.0 * h as f64)) as f32;
            let check = |what: &str, i: usize, got: f32, want: f32| {
                assert!(
                    (got - want).abs() <= 2e-3 + 1e-2 * want.abs(),
                    "{what}[{i}] n {n} in {in_f} out {out_f} silu {si}/{so}: analytic {got}, fd {want}"
                );
            };
            let bump = |v: &[f32], i: usize, d: f32| {
                let mut v = v.to_vec();
                v[i] += d;
                v
            };
            for i in 0..x.len() {
                let want = fd(f(&bump(&x, i, h), &w, &b), f(&bump(&x, i, -h), &w, &b));
                check("dx", i, g.dx[i], want);
            }
            for i in 0..w.len() {
                let want = fd(f(&x, &bump(&w, i, h), &b), f(&x, &bump(&w, i, -h), &b));
                check("dw", i, g.dw[i], want);
            }
            for i in 0..b.len() {
                let want = fd(f(&x, &w, &bump(&b, i, h)), f(&x, &w, &bump(&b, i, -h)));
                check("db", i, g.db[i], want);
            }
        }
    }

    #[test]
    fn hand_checked() {
        // y = x·wᵀ + b with x = [[1, 2]], w = [[3, 4]]: dx = dy·w, dw = dyᵀ·x, db = dy.
        let inputs = LinearInputs {
            x: &[1.0, 2.0],
            n: 1,
            in_f: 2,
            w: &[3.0, 4.0],
            out_f: 1,
            b: &[0.0],
        };
        let g = linear_backward(inputs, &[0.5], LinearOptions::default());
        assert_eq!(
            (g.dx, g.dw, g.db),
            (vec![1.5, 2.0], vec![0.5, 1.0], vec![0.5])
        );
        // SiLU'(0) = 1/2.
        assert!((silu_grad(0.0) - 0.5).abs() < 1e-15);
    }
}
