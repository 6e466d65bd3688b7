// fragment: how the conv2d forward kernels read their packed weights (binding 2), f32 storage;
// conv2d_weights_f16.wgsl is the f16 twin. Every forward kernel requires one of the two first and
// reads its weights only through `wquad` and `welem`.
//
// Packed layout [ceil(Cout / 4), Cin, k, k] × 4 output channels (see `cpu::conv2d::pack_weight`).

@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>;

// The 4 channels of packed position i.
fn wquad(i: u32) -> vec4<f32> {
    return wt[i];
}

// Scalar e of the packed weights (position e / 4, channel e % 4).
fn welem(e: u32) -> f32 {
    return wt[e / 4u][e % 4u];
}
