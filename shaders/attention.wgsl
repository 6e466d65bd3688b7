// Multi-head self-attention core (diffusers `Attention`, f32 softmax) on a fused projection.
//
// qkv: [N, 3C, L] channel-major: q = channels 0..C, k = C..2C, v = 2C..3C; head h owns channels
// h*d .. (h+1)*d of each (d = C / heads). out: [N, C, L]:
//   out[n, h*d + e, i] = sum_j softmax_j(scale * sum_c q[n, h*d+c, i] * k[n, h*d+c, j]) * v[n, h*d+e, j]
//
// One invocation per (n, h, tile of 8 queries), flattened over the grid. It walks the keys in
// blocks of 8 with an online (flash-style) softmax: per query a running max m and sum, and the
// d-long output accumulator kept in the invocation's own 8 columns of `out` (read-modify-write per
// key block; no other invocation touches them). No shared memory, no barriers.
//
// Register blocking: scores of the 8×8 (query × key) tile are four mat4x4 (columns = keys, rows =
// queries), so each loaded q and k value feeds 8 multiply-adds. On lavapipe every storage load is a
// per-lane loop, so loads, not arithmetic, set the speed: `attention_vec4` (L % 4 == 0) reads
// 4 positions per load through vec4 views of the same buffers; `attention` takes any L with
// scalar loads. The two entry points share binding numbers but never touch each other's views.
//
// Queries past L are clamped to L-1 (so loads stay in bounds). The duplicate columns then hold the
// same values as column L-1 of the same invocation, and every read-modify-write loads all 8
// columns before storing any, so the duplicate stores write identical values.

struct Params {
    l: u32,      // positions
    d: u32,      // channels per head
    c: u32,      // channels (heads * d)
    heads: u32,
    tiles: u32,  // ceil(L / 8): query tiles per (n, head)
    total: u32,  // N * heads * tiles
    scale: f32,  // 1 / sqrt(d)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
// The same buffers seen 4 positions at a time (`attention_vec4` only; needs L % 4 == 0).
@group(0) @binding(1) var<storage, read> qkv4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out4: array<vec4<f32>>;

const WG: u32 = 16u;
const NEG_INF: f32 = -3.0e38;

// The 8×8 score / probability tile: s<query half><key half>, columns = keys, rows = queries.
struct Tile {
    s00: mat4x4<f32>,
    s01: mat4x4<f32>,
    s10: mat4x4<f32>,
    s11: mat4x4<f32>,
}

// Column j is a * b[j].
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a * b.x, a * b.y, a * b.z, a * b.w);
}

// Scores of 8 queries (q0, q1) against 8 keys (k0, k1) for one channel, added to t.
fn accumulate(t: ptr<function, Tile>, q0: vec4<f32>, q1: vec4<f32>, k0: vec4<f32>, k1: vec4<f32>) {
    (*t).s00 += outer(q0, k0);
    (*t).s01 += outer(q0, k1);
    (*t).s10 += outer(q1, k0);
    (*t).s11 += outer(q1, k1);
}

// Scales the scores and sets the columns of keys j >= l to -inf.
fn scale_mask(s: mat4x4<f32>, j: vec4<u32>) -> mat4x4<f32> {
    let live = j < vec4<u32>(p.l);
    let ninf = vec4<f32>(NEG_INF);
    return mat4x4<f32>(
        select(ninf, s[0] * p.scale, live.x),
        select(ninf, s[1] * p.scale, live.y),
        select(ninf, s[2] * p.scale, live.z),
        select(ninf, s[3] * p.scale, live.w),
    );
}

fn row_max(s: mat4x4<f32>) -> vec4<f32> {
    return max(max(s[0], s[1]), max(s[2], s[3]));
}

fn row_sum(s: mat4x4<f32>) -> vec4<f32> {
    return (s[0] + s[1]) + (s[2] + s[3]);
}

fn exp_sub(s: mat4x4<f32>, m: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(exp(s[0] - m), exp(s[1] - m), exp(s[2] - m), exp(s[3] - m));
}

// Online-softmax state of the 8 queries (halves 0 and 1).
struct Softmax {
    m0: vec4<f32>,
    m1: vec4<f32>,
    sum0: vec4<f32>,
    sum1: vec4<f32>,
    alpha0: vec4<f32>, // factor the accumulator must be rescaled by for this block
    alpha1: vec4<f32>,
}

// Turns the raw scores of the key block starting at j0 into probabilities relative to the
// updated running max, updating the running sums.
fn softmax_block(t: ptr<function, Tile>, sm: ptr<function, Softmax>, j0: u32) {
    let ja = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
    let jb = vec4<u32>(j0) + vec4<u32>(4u, 5u, 6u, 7u);
    let s00 = scale_mask((*t).s00, ja);
    let s01 = scale_mask((*t).s01, jb);
    let s10 = scale_mask((*t).s10, ja);
    let s11 = scale_mask((*t).s11, jb);
    let m0 = max((*sm).m0, max(row_max(s00), row_max(s01)));
    let m1 = max((*sm).m1, max(row_max(s10), row_max(s11)));
    (*sm).alpha0 = exp((*sm).m0 - m0);
    (*sm).alpha1 = exp((*sm).m1 - m1);
    (*sm).m0 = m0;
    (*sm).m1 = m1;
    (*t).s00 = exp_sub(s00, m0);
    (*t).s01 = exp_sub(s01, m0);
    (*t).s10 = exp_sub(s10, m1);
    (*t).s11 = exp_sub(s11, m1);
    (*sm).sum0 = (*sm).sum0 * (*sm).alpha0 + row_sum((*t).s00) + row_sum((*t).s01);
    (*sm).sum1 = (*sm).sum1 * (*sm).alpha1 + row_sum((*t).s10) + row_sum((*t).s11);
}

fn softmax_init() -> Softmax {
    let ninf = vec4<f32>(NEG_INF);
    let zero = vec4<f32>(0.0);
    return Softmax(ninf, ninf, zero, zero, zero, zero);
}

// Which (n, head, query tile) an invocation owns, and where its data lives.
struct Job {
    live: bool,
    i0: u32,     // first query of the tile
    q_base: u32, // offset of q[n, h*d, 0]; k and v follow at +C*L and +2C*L
    o_base: u32, // offset of out[n, h*d, 0]
}

fn job(gid: vec3<u32>, nwg: vec3<u32>) -> Job {
    let t = gid.x + gid.y * nwg.x * WG;
    let tile = t % p.tiles;
    let nh = t / p.tiles;
    let h = nh % p.heads;
    let n = nh / p.heads;
    let head = h * p.d * p.l;
    return Job(t < p.total, tile * 8u, n * 3u * p.c * p.l + head, n * p.c * p.l + head);
}

fn load4(base: u32, idx: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(qkv[base + idx.x], qkv[base + idx.y], qkv[base + idx.z], qkv[base + idx.w]);
}

fn load_out4(base: u32, idx: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(out[base + idx.x], out[base + idx.y], out[base + idx.z], out[base + idx.w]);
}

fn store_out4(base: u32, idx: vec4<u32>, v: vec4<f32>) {
    out[base + idx.x] = v.x;
    out[base + idx.y] = v.y;
    out[base + idx.z] = v.z;
    out[base + idx.w] = v.w;
}

// Any L: scalar loads.
@compute @workgroup_size(WG)
fn attention(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let jb = job(gid, nwg);
    if !jb.live {
        return;
    }
    let l = p.l;
    let d = p.d;
    let cl = p.c * l;
    let last = vec4<u32>(l - 1u);
    let iq0 = min(vec4<u32>(jb.i0) + vec4<u32>(0u, 1u, 2u, 3u), last);
    let iq1 = min(vec4<u32>(jb.i0) + vec4<u32>(4u, 5u, 6u, 7u), last);
    var sm = softmax_init();
    for (var j0 = 0u; j0 < l; j0 += 8u) {
        let ik0 = min(vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u), last);
        let ik1 = min(vec4<u32>(j0) + vec4<u32>(4u, 5u, 6u, 7u), last);
        var t = Tile();
        for (var c = 0u; c < d; c++) {
            let qr = jb.q_base + c * l;
            accumulate(&t, load4(qr, iq0), load4(qr, iq1), load4(qr + cl, ik0), load4(qr + cl, ik1));
        }
        softmax_block(&t, &sm, j0);
        let first = j0 == 0u;
        for (var e = 0u; e < d; e++) {
            let vr = jb.q_base + 2u * cl + e * l;
            let v0 = load4(vr, ik0);
            let v1 = load4(vr, ik1);
            let orow = jb.o_base + e * l;
            let o0 = select(load_out4(orow, iq0) * sm.alpha0, vec4<f32>(0.0), first);
            let o1 = select(load_out4(orow, iq1) * sm.alpha1, vec4<f32>(0.0), first);
            store_out4(orow, iq0, o0 + t.s00 * v0 + t.s01 * v1);
            store_out4(orow, iq1, o1 + t.s10 * v0 + t.s11 * v1);
        }
    }
    let inv0 = 1.0 / sm.sum0;
    let inv1 = 1.0 / sm.sum1;
    for (var e = 0u; e < d; e++) {
        let orow = jb.o_base + e * l;
        let o0 = load_out4(orow, iq0);
        let o1 = load_out4(orow, iq1);
        store_out4(orow, iq0, o0 * inv0);
        store_out4(orow, iq1, o1 * inv1);
    }
}

// L % 4 == 0: every row starts on a vec4 boundary, and so does every tile half (i0 is a multiple
// of 8). A tile half past L is clamped onto the last vec4, which the same invocation also owns.
@compute @workgroup_size(WG)
fn attention_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let jb = job(gid, nwg);
    if !jb.live {
        return;
    }
    let l4 = p.l / 4u;
    let d = p.d;
    let cl4 = p.c * l4;
    let q_base = jb.q_base / 4u;
    let o_base = jb.o_base / 4u;
    let iq0 = jb.i0 / 4u;
    let iq1 = min(iq0 + 1u, l4 - 1u);
    var sm = softmax_init();
    for (var j0 = 0u; j0 < p.l; j0 += 8u) {
        let ik0 = j0 / 4u;
        let ik1 = min(ik0 + 1u, l4 - 1u);
        var t = Tile();
        for (var c = 0u; c < d; c++) {
            let qr = q_base + c * l4;
            let kr = qr + cl4;
            accumulate(&t, qkv4[qr + iq0], qkv4[qr + iq1], qkv4[kr + ik0], qkv4[kr + ik1]);
        }
        softmax_block(&t, &sm, j0);
        let first = j0 == 0u;
        for (var e = 0u; e < d; e++) {
            let vr = q_base + 2u * cl4 + e * l4;
            let v0 = qkv4[vr + ik0];
            let v1 = qkv4[vr + ik1];
            let orow = o_base + e * l4;
            let o0 = select(out4[orow + iq0] * sm.alpha0, vec4<f32>(0.0), first);
            let o1 = select(out4[orow + iq1] * sm.alpha1, vec4<f32>(0.0), first);
            out4[orow + iq0] = o0 + t.s00 * v0 + t.s01 * v1;
            out4[orow + iq1] = o1 + t.s10 * v0 + t.s11 * v1;
        }
    }
    let inv0 = 1.0 / sm.sum0;
    let inv1 = 1.0 / sm.sum1;
    for (var e = 0u; e < d; e++) {
        let orow = o_base + e * l4;
        let o0 = out4[orow + iq0];
        let o1 = out4[orow + iq1];
        out4[orow + iq0] = o0 * inv0;
        out4[orow + iq1] = o1 * inv1;
    }
}
