// fragment: how the conv2d forward kernels read their packed weights (binding 2), f16 storage.
// replaces: conv2d_weights_f32.wgsl
// features: f16-in-f32
//
// The same packed order as conv2d_weights_f32.wgsl, each position's 4 channels as 4 halves in two
// u32 (`pack2x16float` order: the low half is the first channel). Core WGSL `unpack2x16float`
// widens them to f32, so this needs no `shader-f16` device feature, only wgpu's SHADER_F16_IN_F32
// downlevel flag (every browser, most native drivers; lavapipe only with shader-f16, see
// `Gpu::reads_f16`). The arithmetic stays f32.

@group(0) @binding(2) var<storage, read> wt: array<vec2<u32>>;

// The 4 channels of packed position i.
fn wquad(i: u32) -> vec4<f32> {
    let h = wt[i];
    return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
}

// Scalar e of the packed weights (position e / 4, channel e % 4).
fn welem(e: u32) -> f32 {
    return unpack2x16float(wt[e / 4u][(e / 2u) % 2u])[e % 2u];
}
