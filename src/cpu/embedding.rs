//! Reference for `shaders/embedding.wgsl`.

/// The class of `label` as the shader computes it: rounded, clamped to 0..rows.
fn class_of(label: f32, rows: usize) -> usize {
    (label.round().max(0.0) as usize).min(rows.saturating_sub(1))
}

/// dL/d(table) `[rows, dim]` from dL/d(out) `dy` `[N, dim]`: each row sums the samples of its
/// class.
pub fn class_embedding_grad(dy: &[f32], labels: &[f32], rows: usize, dim: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows * dim];
    for (g, &l) in dy.chunks(dim).zip(labels) {
        let c = class_of(l, rows);
        for (o, v) in out[c * dim..(c + 1) * dim].iter_mut().zip(g) {
            *o += v;
        }
    }
    out
}

/// emb `[N, dim]` + the rows of `table` `[rows, dim]` named by `labels` `[N]` (f32 class
/// indices, rounded and clamped to 0..rows as the shader does).
pub fn add_class_embedding(emb: &[f32], table: &[f32], labels: &[f32], dim: usize) -> Vec<f32> {
    let rows = table.len() / dim.max(1);
    emb.chunks(dim)
        .zip(labels)
        .flat_map(|(e, &l)| {
            let c = class_of(l, rows);
            e.iter()
                .zip(&table[c * dim..(c + 1) * dim])
                .map(|(a, b)| a + b)
                .collect::<Vec<_>>()
        })
        .collect()
}
