// requires: conv2d_weights_f32.wgsl
// The weights of Winograd F(2×2, 3×3) (see conv2d_winograd.wgsl): U = G g Gᵀ for every (output
// channel quad, input channel) of a packed 3×3 conv weight (read through `wquad`, so f32 or f16
// storage), written as 16 packed 1×1 conv weights, one per component ξ = 4·r + s:
// u[(ξ · Kq + kq) · Cin + ci] (vec4 of 4 output channels), what the GEMM's `conv_k1` reads as
// weight group ξ. G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]. Always f32.

struct Params {
    // Output channel quads and input channels of the packed weight.
    kq: u32,
    cin: u32,
    // kq · cin.
    total: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> u: array<vec4<f32>>;
// Binding 2 (the packed weights) is declared by the weights fragment.

@compute @workgroup_size(64)
fn transform(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.total {
        return;
    }
    let base = i * 9u;
    var g: array<vec4<f32>, 9>;
    for (var t = 0u; t < 9u; t++) {
        g[t] = wquad(base + t);
    }
    // G g: 4 rows of 3 taps.
    var a: array<vec4<f32>, 12>;
    for (var x = 0u; x < 3u; x++) {
        let g0 = g[x];
        let g1 = g[3u + x];
        let g2 = g[6u + x];
        a[x] = g0;
        a[3u + x] = 0.5 * (g0 + g1 + g2);
        a[6u + x] = 0.5 * (g0 - g1 + g2);
        a[9u + x] = g2;
    }
    // (G g) Gᵀ, component ξ = 4·r + s.
    let step = p.total;
    var o = i;
    for (var r = 0u; r < 4u; r++) {
        let a0 = a[3u * r];
        let a1 = a[3u * r + 1u];
        let a2 = a[3u * r + 2u];
        u[o] = a0;
        u[o + step] = 0.5 * (a0 + a1 + a2);
        u[o + 2u * step] = 0.5 * (a0 - a1 + a2);
        u[o + 3u * step] = a2;
        o += 4u * step;
    }
}
