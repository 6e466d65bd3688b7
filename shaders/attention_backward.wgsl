// Backward of the multi-head self-attention core (shaders/attention.wgsl), flash-attention style:
// the probabilities are recomputed from q and k, never stored, and no pass uses atomics.
//
// qkv: [N, 3C, Lp] channel-major (q = channels 0..C, k = C..2C, v = 2C..3C; head h owns channels
// h*d .. (h+1)*d of each), dout: [N, C, Lp], dqkv: [N, 3C, Lp] (same layout as qkv). Rows are
// Lp = L rounded up to a multiple of 4 long, so every row starts on a vec4 and all loads are vec4
// (the Rust side repacks inputs whose L is not a multiple of 4). Positions L..Lp are ignored.
// With s_ij = scale * q_i·k_j, P = softmax_j(s), O = P·V:
//   dV = Pᵀ·dO, dP = dO·Vᵀ, D_i = Σ_j P_ij dP_ij (= Σ_e dO_ei O_ei),
//   dS = P ∘ (dP − D), dQ = scale · dS·K, dK = scale · dSᵀ·Q.
//
// Three passes, each with one invocation per (n, head, tile of 8 positions) and no shared memory:
// - `attn_bwd_stats`: per query, the log-sum-exp of the scores and D (an online softmax over key
//   blocks of 16, as in the forward; D accumulates Σ_e dO·(P̃·v) rescaled like the sum) →
//   stats: [N, heads, 2, Lp] (row 0 lse, row 1 D);
// - `attn_bwd_dq`: a tile of 8 queries walks the keys in blocks of 16: S and dP tiles, dS, then
//   dq += dS·k, read-modify-written in the invocation's own 8 columns of dqkv;
// - `attn_bwd_dkv`: a tile of 8 keys walks the queries in blocks of 16: Sᵀ tile → Pᵀ, dPᵀ tile
//   with dv += Pᵀ·dO on the way, then dk += dSᵀ·q.
// Register blocking as in the forward: 8 × 16 tiles held as eight mat4x4, so a loaded value feeds
// 8 or 16 multiply-adds (on lavapipe storage loads, not arithmetic, set the speed).
//
// Tiles past L are clamped onto the last vec4 (loads stay in bounds): a duplicated tile half
// computes exactly the values of the half it duplicates and every read-modify-write loads both
// halves before storing, so duplicate stores write identical values. Block columns past L (clamped
// duplicates or padding) get probability 0. `accumulate` (dq/dkv): 1 adds to dqkv, 0 overwrites.

struct Params {
    l: u32,          // positions
    l4: u32,         // row length in vec4s (Lp / 4)
    d: u32,          // channels per head
    c: u32,          // channels (heads * d)
    heads: u32,
    tiles: u32,      // ceil(L / 8): tiles per (n, head)
    total: u32,      // N * heads * tiles
    accumulate: u32, // dq/dkv: 1 adds to dqkv, 0 overwrites it
    scale: f32,      // 1 / sqrt(d)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dout: array<vec4<f32>>;
// stats: written by `attn_bwd_stats`, read by the other two.
@group(0) @binding(3) var<storage, read_write> stats_out: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> stats: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dqkv: array<vec4<f32>>;

const WG: u32 = 16u;
const NEG_INF: f32 = -3.0e38;

// 8 rows × 16 columns: a<g> holds rows 0..3, b<g> rows 4..7, against columns 4g..4g+3 of the
// block (one column per matrix column).
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

// 16 values, one per column of a block (4 per group).
struct Cols {
    k0: vec4<f32>,
    k1: vec4<f32>,
    k2: vec4<f32>,
    k3: vec4<f32>,
}

// Column j is a * b[j].
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a * b.x, a * b.y, a * b.z, a * b.w);
}

// Adds the outer product of one channel's row values (r0: rows 0..3, r1: rows 4..7) and the
// block's column values.
fn accumulate(t: ptr<function, Tile>, r0: vec4<f32>, r1: vec4<f32>, k: Cols) {
    (*t).a0 += outer(r0, k.k0);
    (*t).a1 += outer(r0, k.k1);
    (*t).a2 += outer(r0, k.k2);
    (*t).a3 += outer(r0, k.k3);
    (*t).b0 += outer(r1, k.k0);
    (*t).b1 += outer(r1, k.k1);
    (*t).b2 += outer(r1, k.k2);
    (*t).b3 += outer(r1, k.k3);
}

// Per row: Σ_j t_ij v_j over the block (rows 0..3 from the a-matrices, 4..7 from the b-ones).
fn weigh(a0: mat4x4<f32>, a1: mat4x4<f32>, a2: mat4x4<f32>, a3: mat4x4<f32>, v: Cols) -> vec4<f32> {
    return (a0 * v.k0 + a1 * v.k1) + (a2 * v.k2 + a3 * v.k3);
}

// Which columns 4g..4g+3 of the block starting at j0 are real positions (< L).
fn live_cols(j0: u32, g: u32) -> vec4<bool> {
    return vec4<u32>(j0 + 4u * g) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.l);
}

// --- Loads (vec4 groups of a row; a block of 16 columns clamps to the row's last group). -------

fn qkv16(row: u32, j0: u32) -> Cols {
    let last = row + p.l4 - 1u;
    let g = row + j0 / 4u;
    return Cols(qkv[g], qkv[min(g + 1u, last)], qkv[min(g + 2u, last)], qkv[min(g + 3u, last)]);
}

fn dout16(row: u32, j0: u32) -> Cols {
    let last = row + p.l4 - 1u;
    let g = row + j0 / 4u;
    return Cols(dout[g], dout[min(g + 1u, last)], dout[min(g + 2u, last)], dout[min(g + 3u, last)]);
}

fn stats16(row: u32, j0: u32) -> Cols {
    let last = row + p.l4 - 1u;
    let g = row + j0 / 4u;
    return Cols(stats[g], stats[min(g + 1u, last)], stats[min(g + 2u, last)], stats[min(g + 3u, last)]);
}

// --- Jobs ------------------------------------------------------------------------------------

// Which (n, head, tile of 8 positions) an invocation owns, and where its data lives (in vec4s).
struct Job {
    live: bool,
    g0: u32,     // vec4 group of the tile's positions 0..3
    g1: u32,     // ... and 4..7 (clamped to the last group)
    q_base: u32, // q[n, h*d, 0] (also dq in dqkv); k and v follow at +C*Lp, +2C*Lp
    o_base: u32, // dout[n, h*d, 0]
    s_base: u32, // stats[n, h, 0, 0]
}

fn job(gid: vec3<u32>, nwg: vec3<u32>) -> Job {
    let t = gid.x + gid.y * nwg.x * WG;
    let tile = t % p.tiles;
    let nh = t / p.tiles;
    let h = nh % p.heads;
    let n = nh / p.heads;
    let head = h * p.d * p.l4;
    let g0 = tile * 2u;
    return Job(
        t < p.total,
        g0,
        min(g0 + 1u, p.l4 - 1u),
        n * 3u * p.c * p.l4 + head,
        n * p.c * p.l4 + head,
        nh * 2u * p.l4,
    );
}

// --- Pass 1: log-sum-exp and D per query -------------------------------------------------------

// Scales scores; columns past L get -inf.
fn scale_mask(s: mat4x4<f32>, j0: u32, g: u32) -> mat4x4<f32> {
    let live = live_cols(j0, g);
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

// Online-softmax state of the tile's queries (0..3 in `*0`, 4..7 in `*1`): running max and sum,
// and the factor earlier partial sums must be rescaled by for the current block.
struct Softmax {
    m0: vec4<f32>,
    m1: vec4<f32>,
    sum0: vec4<f32>,
    sum1: vec4<f32>,
    alpha0: vec4<f32>,
    alpha1: vec4<f32>,
}

// Turns the raw scores of the key block at j0 into exp(s - running max), updating the state.
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

// stats[n, h, 0, i] = lse_i = max_j s_ij + ln Σ_j exp(s_ij - max), stats[n, h, 1, i] = D_i.
@compute @workgroup_size(WG)
fn attn_bwd_stats(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let jb = job(gid, nwg);
    if !jb.live {
        return;
    }
    let l4 = p.l4;
    let d = p.d;
    let cl4 = p.c * l4;
    let ninf = vec4<f32>(NEG_INF);
    let zero = vec4<f32>(0.0);
    var sm = Softmax(ninf, ninf, zero, zero, zero, zero);
    // Σ_j exp(s_ij - m_i) dP_ij, rescaled with the sum.
    var dt0 = zero;
    var dt1 = zero;
    for (var j0 = 0u; j0 < p.l; j0 += 16u) {
        var t = Tile();
        for (var c = 0u; c < d; c++) {
            let qr = jb.q_base + c * l4;
            accumulate(&t, qkv[qr + jb.g0], qkv[qr + jb.g1], qkv16(qr + cl4, j0));
        }
        softmax_block(&t, &sm, j0);
        // Σ_j p̃_ij dP_ij = Σ_e dO_ei (Σ_j p̃_ij v_ej).
        var b0 = zero;
        var b1 = zero;
        for (var e = 0u; e < d; e++) {
            let v = qkv16(jb.q_base + 2u * cl4 + e * l4, j0);
            let orow = jb.o_base + e * l4;
            b0 += dout[orow + jb.g0] * weigh(t.a0, t.a1, t.a2, t.a3, v);
            b1 += dout[orow + jb.g1] * weigh(t.b0, t.b1, t.b2, t.b3, v);
        }
        dt0 = dt0 * sm.alpha0 + b0;
        dt1 = dt1 * sm.alpha1 + b1;
    }
    stats_out[jb.s_base + jb.g0] = sm.m0 + log(sm.sum0);
    stats_out[jb.s_base + jb.g1] = sm.m1 + log(sm.sum1);
    stats_out[jb.s_base + l4 + jb.g0] = dt0 / sm.sum0;
    stats_out[jb.s_base + l4 + jb.g1] = dt1 / sm.sum1;
}

// --- Pass 2: dq --------------------------------------------------------------------------------

// Rows = queries (lse, dd per row), columns = keys j0+4g.. : scale * P ∘ (dP - D), 0 past L.
fn ds_rows(s: mat4x4<f32>, dp: mat4x4<f32>, lse: vec4<f32>, dd: vec4<f32>, j0: u32, g: u32) -> mat4x4<f32> {
    let live = live_cols(j0, g);
    let z = vec4<f32>(0.0);
    return mat4x4<f32>(
        select(z, exp(s[0] * p.scale - lse) * (dp[0] - dd) * p.scale, live.x),
        select(z, exp(s[1] * p.scale - lse) * (dp[1] - dd) * p.scale, live.y),
        select(z, exp(s[2] * p.scale - lse) * (dp[2] - dd) * p.scale, live.z),
        select(z, exp(s[3] * p.scale - lse) * (dp[3] - dd) * p.scale, live.w),
    );
}

@compute @workgroup_size(WG)
fn attn_bwd_dq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let jb = job(gid, nwg);
    if !jb.live {
        return;
    }
    let l4 = p.l4;
    let d = p.d;
    let cl4 = p.c * l4;
    let g0 = jb.g0;
    let g1 = jb.g1;
    let lse0 = stats[jb.s_base + g0];
    let lse1 = stats[jb.s_base + g1];
    let dd0 = stats[jb.s_base + l4 + g0];
    let dd1 = stats[jb.s_base + l4 + g1];
    for (var j0 = 0u; j0 < p.l; j0 += 16u) {
        var s = Tile();
        for (var c = 0u; c < d; c++) {
            let qr = jb.q_base + c * l4;
            accumulate(&s, qkv[qr + g0], qkv[qr + g1], qkv16(qr + cl4, j0));
        }
        var dp = Tile();
        for (var e = 0u; e < d; e++) {
            let orow = jb.o_base + e * l4;
            accumulate(&dp, dout[orow + g0], dout[orow + g1], qkv16(jb.q_base + 2u * cl4 + e * l4, j0));
        }
        let ds = Tile(
            ds_rows(s.a0, dp.a0, lse0, dd0, j0, 0u),
            ds_rows(s.a1, dp.a1, lse0, dd0, j0, 1u),
            ds_rows(s.a2, dp.a2, lse0, dd0, j0, 2u),
            ds_rows(s.a3, dp.a3, lse0, dd0, j0, 3u),
            ds_rows(s.b0, dp.b0, lse1, dd1, j0, 0u),
            ds_rows(s.b1, dp.b1, lse1, dd1, j0, 1u),
            ds_rows(s.b2, dp.b2, lse1, dd1, j0, 2u),
            ds_rows(s.b3, dp.b3, lse1, dd1, j0, 3u),
        );
        // The first block overwrites dq unless accumulating.
        let keep = j0 != 0u || p.accumulate != 0u;
        for (var c = 0u; c < d; c++) {
            let qr = jb.q_base + c * l4;
            let k = qkv16(qr + cl4, j0);
            let o0 = select(vec4<f32>(0.0), dqkv[qr + g0], keep);
            let o1 = select(vec4<f32>(0.0), dqkv[qr + g1], keep);
            dqkv[qr + g0] = o0 + weigh(ds.a0, ds.a1, ds.a2, ds.a3, k);
            dqkv[qr + g1] = o1 + weigh(ds.b0, ds.b1, ds.b2, ds.b3, k);
        }
    }
}

// --- Pass 3: dk and dv -------------------------------------------------------------------------

// Rows = keys, columns = queries i0+4g.. (lse per column): Pᵀ, 0 past L.
fn p_cols(s: mat4x4<f32>, lse: vec4<f32>, i0: u32, g: u32) -> mat4x4<f32> {
    let live = live_cols(i0, g);
    let z = vec4<f32>(0.0);
    return mat4x4<f32>(
        select(z, exp(s[0] * p.scale - lse.x), live.x),
        select(z, exp(s[1] * p.scale - lse.y), live.y),
        select(z, exp(s[2] * p.scale - lse.z), live.z),
        select(z, exp(s[3] * p.scale - lse.w), live.w),
    );
}

// scale * Pᵀ ∘ (dPᵀ - D) with D per column (query).
fn ds_cols(pt: mat4x4<f32>, dp: mat4x4<f32>, dd: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(
        pt[0] * (dp[0] - dd.x) * p.scale,
        pt[1] * (dp[1] - dd.y) * p.scale,
        pt[2] * (dp[2] - dd.z) * p.scale,
        pt[3] * (dp[3] - dd.w) * p.scale,
    );
}

@compute @workgroup_size(WG)
fn attn_bwd_dkv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let jb = job(gid, nwg);
    if !jb.live {
        return;
    }
    let l4 = p.l4;
    let d = p.d;
    let cl4 = p.c * l4;
    // The tile is 8 keys here (g0, g1); blocks of 16 queries are the columns.
    let g0 = jb.g0;
    let g1 = jb.g1;
    let k_base = jb.q_base + cl4;
    let v_base = jb.q_base + 2u * cl4;
    for (var i0 = 0u; i0 < p.l; i0 += 16u) {
        let first = i0 == 0u;
        let keep = !first || p.accumulate != 0u;
        var s = Tile();
        for (var c = 0u; c < d; c++) {
            let kr = k_base + c * l4;
            accumulate(&s, qkv[kr + g0], qkv[kr + g1], qkv16(jb.q_base + c * l4, i0));
        }
        let lse = stats16(jb.s_base, i0);
        let pt = Tile(
            p_cols(s.a0, lse.k0, i0, 0u),
            p_cols(s.a1, lse.k1, i0, 1u),
            p_cols(s.a2, lse.k2, i0, 2u),
            p_cols(s.a3, lse.k3, i0, 3u),
            p_cols(s.b0, lse.k0, i0, 0u),
            p_cols(s.b1, lse.k1, i0, 1u),
            p_cols(s.b2, lse.k2, i0, 2u),
            p_cols(s.b3, lse.k3, i0, 3u),
        );
        // dPᵀ = V·dOᵀ, and dv += Pᵀ·dO on the way.
        var dp = Tile();
        for (var e = 0u; e < d; e++) {
            let vr = v_base + e * l4;
            let o = dout16(jb.o_base + e * l4, i0);
            accumulate(&dp, qkv[vr + g0], qkv[vr + g1], o);
            let o0 = select(vec4<f32>(0.0), dqkv[vr + g0], keep);
            let o1 = select(vec4<f32>(0.0), dqkv[vr + g1], keep);
            dqkv[vr + g0] = o0 + weigh(pt.a0, pt.a1, pt.a2, pt.a3, o);
            dqkv[vr + g1] = o1 + weigh(pt.b0, pt.b1, pt.b2, pt.b3, o);
        }
        let dd = stats16(jb.s_base + l4, i0);
        let ds = Tile(
            ds_cols(pt.a0, dp.a0, dd.k0),
            ds_cols(pt.a1, dp.a1, dd.k1),
            ds_cols(pt.a2, dp.a2, dd.k2),
            ds_cols(pt.a3, dp.a3, dd.k3),
            ds_cols(pt.b0, dp.b0, dd.k0),
            ds_cols(pt.b1, dp.b1, dd.k1),
            ds_cols(pt.b2, dp.b2, dd.k2),
            ds_cols(pt.b3, dp.b3, dd.k3),
        );
        for (var c = 0u; c < d; c++) {
            let kr = k_base + c * l4;
            let q = qkv16(jb.q_base + c * l4, i0);
            let o0 = select(vec4<f32>(0.0), dqkv[kr + g0], keep);
            let o1 = select(vec4<f32>(0.0), dqkv[kr + g1], keep);
            dqkv[kr + g0] = o0 + weigh(ds.a0, ds.a1, ds.a2, ds.a3, q);
            dqkv[kr + g1] = o1 + weigh(ds.b0, ds.b1, ds.b2, ds.b3, q);
        }
    }
}
