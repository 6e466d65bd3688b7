// Row repacking around shaders/attention_backward.wgsl, which needs rows whose length is a
// multiple of 4 (vec4 loads) when L is not.
//
// `pack`:   dst[r, x] = x < L ? src[r, x] : 0 for src: [R, L], dst: [R, Lp];
// `unpack`: dst[r, x] = (accumulate ? dst[r, x] : 0) + src[r, x] for src: [R, Lp], dst: [R, L].
// One invocation per dst element.

struct Params {
    total: u32,      // dst elements: R * Lp (pack) or R * L (unpack)
    l: u32,          // L
    lp: u32,         // Lp
    accumulate: u32, // unpack: 1 adds to dst, 0 overwrites it
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn pack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.total {
        return;
    }
    let r = i / p.lp;
    let x = i - r * p.lp;
    // Index clamped so the (discarded) load stays in bounds.
    let v = src[r * p.l + min(x, p.l - 1u)];
    dst[i] = select(0.0, v, x < p.l);
}

@compute @workgroup_size(WG)
fn unpack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.total {
        return;
    }
    let r = i / p.l;
    let x = i - r * p.l;
    let g = src[r * p.lp + x];
    dst[i] = select(g, dst[i] + g, p.accumulate != 0u);
}
