//! Reference for `shaders/elementwise.wgsl`.

/// alpha·a + beta·b + gamma.
pub fn axpby(alpha: f32, a: &[f32], beta: f32, b: &[f32], gamma: f32) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(x, y)| alpha * x + beta * y + gamma)
        .collect()
}
