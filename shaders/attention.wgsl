// Multi-head self-attention core (diffusers `Attention`, f32 softmax) on a fused projection.
//
// qkv: [N, 3C, L] channel-major (q = channels 0..C, k = C..2C, v = 2C..3C; head h owns channels
// h*d..(h+1)*d of each). out: [N, C, L]:
//   out[n, h*d + e, i] = sum_j softmax_j(scale * sum_c q[n, h*d+c, i] * k[n, h*d+c, j]) * v[n, h*d+e, j]
//
// One invocation per (n, h, query i); a workgroup holds WG consecutive queries of one (n, h), so
// every k and v load is the same address in all invocations (uniform: one scalar load on
// lavapipe). Keys are visited in blocks of 8 with an online (flash-style) softmax: running max m,
// running sum l, and the d-long accumulator kept in the invocation's own column of `out`
// (out[n, h*d + e, i], e = 0..d), which no other invocation touches. No barriers, no shared memory.
// Lanes past L compute on a clamped query and skip the final store, so control flow stays uniform.

struct Params {
    l: u32,           // positions per head
    d: u32,           // channels per head
    c: u32,           // channels (heads * d)
    heads: u32,
    qblocks: u32,     // ceil(L / WG)
    groups: u32,      // N * heads * qblocks
    scale: f32,       // 1 / sqrt(d)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 32u;
const NEG_INF: f32 = -3.0e38;

@compute @workgroup_size(WG)
fn attention(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let g = wid.x + wid.y * nwg.x;
    if g >= p.groups {
        return;
    }
    let l = p.l;
    let d = p.d;
    let qb = g % p.qblocks;
    let nh = g / p.qblocks;
    let h = nh % p.heads;
    let n = nh / p.heads;
    let i_raw = qb * WG + lid.x;
    let live = i_raw < l;
    let i = min(i_raw, l - 1u);

    let head = h * d * l;
    let q_base = n * 3u * p.c * l + head;
    let k_base = q_base + p.c * l;
    let v_base = k_base + p.c * l;
    let o_base = n * p.c * l + head + i;

    var m = NEG_INF;
    var sum = 0.0;
    for (var j0 = 0u; j0 < l; j0 += 8u) {
        // Key indices of this block, clamped (the scores of keys past L are masked below).
        let ja = min(vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(l - 1u));
        let jb = min(vec4<u32>(j0) + vec4<u32>(4u, 5u, 6u, 7u), vec4<u32>(l - 1u));
        var sa = vec4<f32>(0.0);
        var sb = vec4<f32>(0.0);
        for (var c = 0u; c < d; c++) {
            let qc = qkv[q_base + c * l + i];
            let kr = k_base + c * l;
            sa += qc * vec4<f32>(qkv[kr + ja.x], qkv[kr + ja.y], qkv[kr + ja.z], qkv[kr + ja.w]);
            sb += qc * vec4<f32>(qkv[kr + jb.x], qkv[kr + jb.y], qkv[kr + jb.z], qkv[kr + jb.w]);
        }
        let live_a = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(l);
        let live_b = vec4<u32>(j0) + vec4<u32>(4u, 5u, 6u, 7u) < vec4<u32>(l);
        sa = select(vec4<f32>(NEG_INF), sa * p.scale, live_a);
        sb = select(vec4<f32>(NEG_INF), sb * p.scale, live_b);
        let mx = max(sa, sb);
        let m_new = max(m, max(max(mx.x, mx.y), max(mx.z, mx.w)));
        let alpha = exp(m - m_new);
        let pa = exp(sa - m_new);
        let pb = exp(sb - m_new);
        sum = sum * alpha + dot(pa + pb, vec4<f32>(1.0));
        m = m_new;
        let first = j0 == 0u;
        for (var e = 0u; e < d; e++) {
            let vr = v_base + e * l;
            let va = vec4<f32>(qkv[vr + ja.x], qkv[vr + ja.y], qkv[vr + ja.z], qkv[vr + ja.w]);
            let vb = vec4<f32>(qkv[vr + jb.x], qkv[vr + jb.y], qkv[vr + jb.z], qkv[vr + jb.w]);
            let o = o_base + e * l;
            if live {
                let prev = select(out[o] * alpha, 0.0, first);
                out[o] = prev + dot(pa, va) + dot(pb, vb);
            }
        }
    }
    if live {
        let inv = 1.0 / sum;
        for (var e = 0u; e < d; e++) {
            let o = o_base + e * l;
            out[o] *= inv;
        }
    }
}
