//! Reference for `shaders/embedding.wgsl`.

/// emb `[N, dim]` + the rows of `table` `[rows, dim]` named by `labels` `[N]` (f32 class
/// indices, rounded and clamped to 0..rows as the shader does).
pub fn add_class_embedding(emb: &[f32], table: &[f32], labels: &[f32], dim: usize) -> Vec<f32> {
    let rows = table.len() / dim.max(1);
    emb.chunks(dim)
        .zip(labels)
        .flat_map(|(e, &l)| {
            let c = (l.round().max(0.0) as usize).min(rows.saturating_sub(1));
            e.iter()
                .zip(&table[c * dim..(c + 1) * dim])
                .map(|(a, b)| a + b)
                .collect::<Vec<_>>()
        })
        .collect()
}
