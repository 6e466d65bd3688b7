// Nearest-neighbour ×2 upsampling (diffusers Upsample2D before its conv):
// out[n, c, y, x] = in[n, c, y / 2, x / 2]. in: [N, C, H, W], out: [N, C, 2H, 2W].
// One invocation per input element, writing its 2×2 block. Input row r (= (n·C + c)·H + y)
// maps to output rows 2r and 2r + 1.

struct Params {
    numel: u32, // N·C·H·W (input elements)
    w: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn upsample_nearest2x(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.numel {
        return;
    }
    let r = i / p.w;
    let col = i - r * p.w;
    let v = x[i];
    let o = 4u * r * p.w + 2u * col; // (2r)·2W + 2·col
    out[o] = v;
    out[o + 1u] = v;
    out[o + 2u * p.w] = v;
    out[o + 2u * p.w + 1u] = v;
}
