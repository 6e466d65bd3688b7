// Row repacking around shaders/attention_backward.wgsl, which needs rows whose length is a
// multiple of 4 (vec4 loads), for L that is not: Lp = L rounded up to 4, l4 = Lp / 4.
//
// `pack`: a: [Ra, L] → pa: [Ra, Lp] and b: [Rb, L] → pb: [Rb, Lp], zero-padded; one invocation
//   per vec4 group of pa, then of pb.
// `unpack`: dst[r, x] = (accumulate ? dst[r, x] : 0) + src[r, x] for src: [R, Lp], dst: [R, L];
//   one invocation per vec4 group of src (up to 4 elements of dst).

struct Params {
    groups_a: u32,   // pack: Ra * l4 (groups of pa); unpack: unused
    total: u32,      // pack: (Ra + Rb) * l4; unpack: R * l4
    l: u32,          // L
    l4: u32,         // Lp / 4
    accumulate: u32, // unpack: 1 adds to dst, 0 overwrites it
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// pack
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> pa: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> pb: array<vec4<f32>>;
// unpack
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn pack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.total {
        return;
    }
    let in_a = i < p.groups_a;
    let gi = select(i - p.groups_a, i, in_a);
    let r = gi / p.l4;
    let x = vec4<u32>((gi - r * p.l4) * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    let live = x < vec4<u32>(p.l);
    // Indices clamped so the (discarded) loads past L stay in bounds.
    let s = vec4<u32>(r * p.l) + min(x, vec4<u32>(p.l - 1u));
    if in_a {
        let v = vec4<f32>(a[s.x], a[s.y], a[s.z], a[s.w]);
        pa[gi] = select(vec4<f32>(0.0), v, live);
    } else {
        let v = vec4<f32>(b[s.x], b[s.y], b[s.z], b[s.w]);
        pb[gi] = select(vec4<f32>(0.0), v, live);
    }
}

@compute @workgroup_size(WG)
fn unpack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.total {
        return;
    }
    let r = i / p.l4;
    let x0 = (i - r * p.l4) * 4u;
    let g = src[i];
    let base = r * p.l + x0;
    let n = min(p.l - x0, 4u);
    let acc = p.accumulate != 0u;
    for (var e = 0u; e < n; e++) {
        dst[base + e] = select(g[e], dst[base + e] + g[e], acc);
    }
}
