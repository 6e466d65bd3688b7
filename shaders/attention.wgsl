// Multi-head self-attention core (diffusers `Attention`, f32 softmax) on a fused projection.
//
// qkv: [N, 3C, L] channel-major: q = channels 0..C, k = C..2C, v = 2C..3C; head h owns channels
// h*d .. (h+1)*d of each (d = C / heads). out: [N, C, L]:
//   out[n, h*d + e, i] = sum_j softmax_j(scale * sum_c q[n, h*d+c, i] * k[n, h*d+c, j]) * v[n, h*d+e, j]
//
// One invocation per (n, h, tile of 8 queries), flattened over the grid. It walks the keys in
// blocks of 16 with an online (flash-style) softmax: per query a running max m and sum, and the
// d-long output accumulator kept in the invocation's own 8 columns of `out` (read-modify-write once
// per key block; no other invocation touches them). No shared memory, no barriers.
//
// Register blocking: the scores of the 8×16 (query × key) tile are eight mat4x4 (columns = keys,
// rows = queries), so each loaded q value feeds 16 multiply-adds and each k value 8. On lavapipe
// every storage load is a per-lane loop, so loads, not arithmetic, set the speed:
// `attention_vec4` (L % 4 == 0) reads 4 positions per load through vec4 views of the same
// buffers; `attention` takes any L with scalar loads. The two entry points share binding numbers
// but never touch each other's views.
//
// Queries past L are clamped to L-1 (so loads stay in bounds). The duplicate columns then hold the
// same values as column L-1 of the same invocation, and every read-modify-write loads all 8
// columns before storing any, so the duplicate stores write identical values. Keys past L are
// clamped likewise and get probability 0.

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

// Scores, then probabilities, of 8 queries × 16 keys: a<g> holds queries 0..3, b<g> queries
// 4..7, against keys 4g..4g+3 of the block (one key per column).
struct Tile {
    a0: mat4x4<f32>,
    a1: mat4x4<f32>,
    a2: mat4x4<f32>,
    a3: mat4x4<f32>,
    b0: mat4x4<f32>,
    b1: mat4x4<f32>,
    b2: mat4x4<f32>,
    b3: mat4x4<f32>,
}

// 16 values, one per key of a block (4 per group).
struct Keys {
    k0: vec4<f32>,
    k1: vec4<f32>,
    k2: vec4<f32>,
    k3: vec4<f32>,
}

// Column j is a * b[j].
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a * b.x, a * b.y, a * b.z, a * b.w);
}

// Adds one channel's q_i * k_j for queries (q0, q1) and the block's keys.
fn accumulate(t: ptr<function, Tile>, q0: vec4<f32>, q1: vec4<f32>, k: Keys) {
    (*t).a0 += outer(q0, k.k0);
    (*t).a1 += outer(q0, k.k1);
    (*t).a2 += outer(q0, k.k2);
    (*t).a3 += outer(q0, k.k3);
    (*t).b0 += outer(q1, k.k0);
    (*t).b1 += outer(q1, k.k1);
    (*t).b2 += outer(q1, k.k2);
    (*t).b3 += outer(q1, k.k3);
}

// Per query (row): Σ_j p_ij v_j over the block.
fn weigh(a0: mat4x4<f32>, a1: mat4x4<f32>, a2: mat4x4<f32>, a3: mat4x4<f32>, v: Keys) -> vec4<f32> {
    return (a0 * v.k0 + a1 * v.k1) + (a2 * v.k2 + a3 * v.k3);
}

// Scales scores; columns of keys j0 + 4g + 0..3 that are >= L get -inf.
fn scale_mask(s: mat4x4<f32>, j0: u32, g: u32) -> mat4x4<f32> {
    let live = vec4<u32>(j0 + 4u * g) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.l);
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

// Online-softmax state of the tile's queries: running max and sum per query (0..3 in `*0`,
// 4..7 in `*1`), and the factor the accumulator must be rescaled by for the current block.
struct Softmax {
    m0: vec4<f32>,
    m1: vec4<f32>,
    sum0: vec4<f32>,
    sum1: vec4<f32>,
    alpha0: vec4<f32>,
    alpha1: vec4<f32>,
}

fn softmax_init() -> Softmax {
    let ninf = vec4<f32>(NEG_INF);
    let zero = vec4<f32>(0.0);
    return Softmax(ninf, ninf, zero, zero, zero, zero);
}

// Turns the raw scores of the key block starting at j0 into probabilities relative to the
// updated running max, and updates the running sums.
fn softmax_block(t: ptr<function, Tile>, sm: ptr<function, Softmax>, j0: u32) {
    let a0 = scale_mask((*t).a0, j0, 0u);
    let a1 = scale_mask((*t).a1, j0, 1u);
    let a2 = scale_mask((*t).a2, j0, 2u);
    let a3 = scale_mask((*t).a3, j0, 3u);
    let b0 = scale_mask((*t).b0, j0, 0u);
    let b1 = scale_mask((*t).b1, j0, 1u);
    let b2 = scale_mask((*t).b2, j0, 2u);
    let b3 = scale_mask((*t).b3, j0, 3u);
    let m0 = max((*sm).m0, max(max(row_max(a0), row_max(a1)), max(row_max(a2), row_max(a3))));
    let m1 = max((*sm).m1, max(max(row_max(b0), row_max(b1)), max(row_max(b2), row_max(b3))));
    (*sm).alpha0 = exp((*sm).m0 - m0);
    (*sm).alpha1 = exp((*sm).m1 - m1);
    (*sm).m0 = m0;
    (*sm).m1 = m1;
    *t = Tile(
        exp_sub(a0, m0), exp_sub(a1, m0), exp_sub(a2, m0), exp_sub(a3, m0),
        exp_sub(b0, m1), exp_sub(b1, m1), exp_sub(b2, m1), exp_sub(b3, m1),
    );
    let s0 = (row_sum((*t).a0) + row_sum((*t).a1)) + (row_sum((*t).a2) + row_sum((*t).a3));
    let s1 = (row_sum((*t).b0) + row_sum((*t).b1)) + (row_sum((*t).b2) + row_sum((*t).b3));
    (*sm).sum0 = (*sm).sum0 * (*sm).alpha0 + s0;
    (*sm).sum1 = (*sm).sum1 * (*sm).alpha1 + s1;
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

// --- Any L: scalar loads. --------------------------------------------------------------------

fn load4(base: u32, idx: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(qkv[base + idx.x], qkv[base + idx.y], qkv[base + idx.z], qkv[base + idx.w]);
}

fn load16(base: u32, j0: u32) -> Keys {
    let last = vec4<u32>(p.l - 1u);
    let j = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
    return Keys(
        load4(base, min(j, last)),
        load4(base, min(j + 4u, last)),
        load4(base, min(j + 8u, last)),
        load4(base, min(j + 12u, last)),
    );
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
    for (var j0 = 0u; j0 < l; j0 += 16u) {
        var t = Tile();
        for (var c = 0u; c < d; c++) {
            let qr = jb.q_base + c * l;
            accumulate(&t, load4(qr, iq0), load4(qr, iq1), load16(qr + cl, j0));
        }
        softmax_block(&t, &sm, j0);
        let first = j0 == 0u;
        for (var e = 0u; e < d; e++) {
            let v = load16(jb.q_base + 2u * cl + e * l, j0);
            let orow = jb.o_base + e * l;
            let o0 = select(load_out4(orow, iq0) * sm.alpha0, vec4<f32>(0.0), first);
            let o1 = select(load_out4(orow, iq1) * sm.alpha1, vec4<f32>(0.0), first);
            store_out4(orow, iq0, o0 + weigh(t.a0, t.a1, t.a2, t.a3, v));
            store_out4(orow, iq1, o1 + weigh(t.b0, t.b1, t.b2, t.b3, v));
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

// --- L % 4 == 0: vec4 loads. -----------------------------------------------------------------
// Every row starts on a vec4 boundary and so does every tile half (i0 is a multiple of 8); a
// tile half past L is clamped onto the last vec4, which the same invocation also owns.

fn load16_vec4(base: u32, j0: u32) -> Keys {
    let last = p.l / 4u - 1u;
    let g = j0 / 4u;
    return Keys(
        qkv4[base + g],
        qkv4[base + min(g + 1u, last)],
        qkv4[base + min(g + 2u, last)],
        qkv4[base + min(g + 3u, last)],
    );
}

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
    for (var j0 = 0u; j0 < p.l; j0 += 16u) {
        var t = Tile();
        for (var c = 0u; c < d; c++) {
            let qr = q_base + c * l4;
            accumulate(&t, qkv4[qr + iq0], qkv4[qr + iq1], load16_vec4(qr + cl4, j0));
        }
        softmax_block(&t, &sm, j0);
        let first = j0 == 0u;
        for (var e = 0u; e < d; e++) {
            let v = load16_vec4(q_base + 2u * cl4 + e * l4, j0);
            let orow = o_base + e * l4;
            let o0 = select(out4[orow + iq0] * sm.alpha0, vec4<f32>(0.0), first);
            let o1 = select(out4[orow + iq1] * sm.alpha1, vec4<f32>(0.0), first);
            out4[orow + iq0] = o0 + weigh(t.a0, t.a1, t.a2, t.a3, v);
            out4[orow + iq1] = o1 + weigh(t.b0, t.b1, t.b2, t.b3, v);
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
