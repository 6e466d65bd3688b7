//! Reference for `shaders/timestep.wgsl`: diffusers `get_timestep_embedding` (scale 1,
//! max_period 10000), computed in f64.

use crate::options::timestep_frequency;

/// Embedding [t.len(), dim]: row = [sin(t·f) ‖ cos(t·f)] over the `dim / 2` frequencies f
/// ([cos ‖ sin] when `flip_sin_to_cos`), with a zero last column when `dim` is odd.
pub fn timestep_embedding(
    t: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f32,
) -> Vec<f32> {
    let half = dim / 2;
    let mut out = vec![0f32; t.len() * dim];
    for (row, &tv) in out.chunks_mut(dim.max(1)).zip(t) {
        for i in 0..half {
            let arg = tv as f64 * timestep_frequency(i, half, freq_shift);
            let (s, c) = (arg.sin() as f32, arg.cos() as f32);
            let (first, second) = if flip_sin_to_cos { (c, s) } else { (s, c) };
            row[i] = first;
            row[half + i] = second;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked() {
        // dim 4, shift 0: frequencies 1 and 10000^(-1/2) = 0.01.
        let e = timestep_embedding(&[1.0], 4, false, 0.0);
        let want = [0.841_470_96, 0.009_999_833, 0.540_302_3, 0.999_95];
        for (g, w) in e.iter().zip(want) {
            assert!((g - w).abs() < 1e-7, "{e:?}");
        }
        // flip → [cos ‖ sin]; odd dim → zero last column; shift 1 → frequencies 1, 1e-4.
        let e = timestep_embedding(&[2.0, 0.0], 5, true, 1.0);
        let want = [
            -0.416_146_84,
            1.0,
            0.909_297_4,
            0.000_2,
            0.0,
            1.0,
            1.0,
            0.0,
            0.0,
            0.0,
        ];
        for (g, w) in e.iter().zip(want) {
            assert!((g - w).abs() < 1e-7, "{e:?}");
        }
    }
}
