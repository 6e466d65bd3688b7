// requires: group_norm_serial_sums.wgsl
// Backward of GroupNorm (affine, biased variance) with optional fused SiLU after the affine
// (shaders/group_norm.wgsl). Per group (n, g) of len = cpg·S values:
//   x̂ = (x − μ)·r, r = 1/√(σ² + eps), z = γ_c·x̂ + β_c, y = SiLU(z) or z;
//   dz = dy·SiLU'(z) (or dy), A_nc = Σ_s dz, B_nc = Σ_s dz·x̂ (per channel);
//   dx = r·(γ_c·dz − mean(γ·dz) − x̂·mean(γ·dz·x̂)), the group means being Σ_c γ_c·A_nc / len and
//   Σ_c γ_c·B_nc / len; dγ_c = Σ_n B_nc, dβ_c = Σ_n A_nc.
// Dispatch 1 (`gn_backward` or `gn_backward_serial`) computes the statistics exactly as the forward
// does, writes dx (overwrite or accumulate) and the per-(n, c) pairs (A, B) to `partial` [N, C, 2].
// Dispatch 2 (`gn_backward_params`) sums the pairs over N into dγ, dβ (overwrite or accumulate).
// - `gn_backward` (GPUs): one workgroup per (n, g), shared-memory reductions (2 barriers each).
// - `gn_backward_serial` (CPU drivers such as lavapipe): one invocation per (n, g), no barriers,
//   conditionals hoisted out of the inner loops; statistics from group_norm_serial_sums.wgsl.

struct Params {
    n_groups: u32, // N·groups
    groups: u32,
    cpg: u32,      // channels per group
    spatial: u32,  // S
    eps: f32,
    flags: u32,    // bit 0: SiLU after the affine, bit 1: accumulate dx, bit 2: accumulate dγ/dβ
    n: u32,        // N
    c: u32,        // C
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> partial: array<f32>;

// `gn_backward_params` bindings.
@group(0) @binding(1) var<storage, read> partial_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbeta: array<f32>;

const WG: u32 = 256u;
const CHUNK: u32 = 16u; // WG = CHUNK · CHUNK

var<workgroup> red: array<vec2<f32>, WG>;
var<workgroup> chunk_sums: array<vec2<f32>, CHUNK>;

// Sum of `v` over the workgroup, returned to every invocation.
fn workgroup_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    if lid < CHUNK {
        var s = vec2(0.0);
        for (var k = 0u; k < CHUNK; k++) {
            s += red[lid * CHUNK + k];
        }
        chunk_sums[lid] = s;
    }
    workgroupBarrier();
    var total = vec2(0.0);
    for (var k = 0u; k < CHUNK; k++) {
        total += chunk_sums[k];
    }
    return total;
}

// dL/dz from dL/dy at normalized value `xh` of channel `c`.
fn grad_z(dyv: f32, xh: f32, c: u32) -> f32 {
    if (p.flags & 1u) == 0u {
        return dyv;
    }
    return silu_grad(dyv, gamma[c] * xh + beta[c]);
}

// dL/dz = dL/dy · SiLU'(z).
fn silu_grad(dyv: f32, z: f32) -> f32 {
    let s = 1.0 / (1.0 + exp(-z));
    return dyv * s * (1.0 + z * (1.0 - s));
}

fn store_dx(i: u32, v: f32) {
    if (p.flags & 2u) != 0u {
        dx[i] += v;
    } else {
        dx[i] = v;
    }
}

@compute @workgroup_size(WG)
fn gn_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grp = wid.x + wid.y * nwg.x;
    if grp >= p.n_groups {
        return; // uniform across the workgroup
    }
    let len = p.cpg * p.spatial;
    let base = grp * len;
    let inv_len = 1.0 / f32(len);

    // Statistics, exactly as the forward's `group_norm`.
    var s = 0.0;
    for (var i = lid; i < len; i += WG) {
        s += x[base + i];
    }
    let mean0 = workgroup_sum(lid, vec2(s, 0.0)).x * inv_len;
    var q = vec2(0.0);
    for (var i = lid; i < len; i += WG) {
        let d = x[base + i] - mean0;
        q += vec2(d, d * d);
    }
    let sq = workgroup_sum(lid, q) * inv_len; // (E[d], E[d²])
    let rstd = inverseSqrt(max(sq.y - sq.x * sq.x, 0.0) + p.eps);

    // Per-channel (A, B) and the group sums Σ γ_c·(A, B).
    let c0 = (grp % p.groups) * p.cpg;
    let pbase = (grp / p.groups) * p.c;
    var gsum = vec2(0.0);
    for (var ch = 0u; ch < p.cpg; ch++) {
        let c = c0 + ch;
        let cb = base + ch * p.spatial;
        var ab = vec2(0.0);
        for (var k = lid; k < p.spatial; k += WG) {
            let xh = ((x[cb + k] - mean0) - sq.x) * rstd;
            let dz = grad_z(dy[cb + k], xh, c);
            ab += vec2(dz, dz * xh);
        }
        let t = workgroup_sum(lid, ab);
        if lid == 0u {
            partial[(pbase + c) * 2u] = t.x;
            partial[(pbase + c) * 2u + 1u] = t.y;
        }
        gsum += gamma[c] * t;
    }
    let m = gsum * inv_len;

    for (var ch = 0u; ch < p.cpg; ch++) {
        let c = c0 + ch;
        let cb = base + ch * p.spatial;
        let g = gamma[c];
        for (var k = lid; k < p.spatial; k += WG) {
            let xh = ((x[cb + k] - mean0) - sq.x) * rstd;
            let dz = grad_z(dy[cb + k], xh, c);
            store_dx(cb + k, rstd * (g * dz - m.x - xh * m.y));
        }
    }
}

const SERIAL_WG: u32 = 8u;

// Σ_s (dz, dz·x̂) over one channel's values [i, end) (statistics mean0, E[d], rstd), in
// blocks of BLOCK values (group_norm_serial_sums.wgsl). `silu` is a constant at each call, so
// the inner loop has no conditional.
fn channel_ab(i: u32, end: u32, mean0: f32, ed: f32, rstd: f32, c: u32, silu: bool) -> vec2<f32> {
    let g = gamma[c];
    let bt = beta[c];
    var ab = vec2(0.0);
    for (var b0 = i; b0 < end; b0 += BLOCK) {
        let bend = min(b0 + BLOCK, end);
        var blk = vec2(0.0);
        for (var k = b0; k < bend; k++) {
            let xh = ((x[k] - mean0) - ed) * rstd;
            var dz = dy[k];
            if silu {
                dz = silu_grad(dz, g * xh + bt);
            }
            blk += vec2(dz, dz * xh);
        }
        ab += blk;
    }
    return ab;
}

// dx over one channel's values [i, end) given the group means m of γ·(dz, dz·x̂).
fn channel_dx(i: u32, end: u32, mean0: f32, ed: f32, rstd: f32, c: u32, m: vec2<f32>, silu: bool, acc: bool) {
    let g = gamma[c];
    let bt = beta[c];
    for (var k = i; k < end; k++) {
        let xh = ((x[k] - mean0) - ed) * rstd;
        var dz = dy[k];
        if silu {
            dz = silu_grad(dz, g * xh + bt);
        }
        let v = rstd * (g * dz - m.x - xh * m.y);
        if acc {
            dx[k] += v;
        } else {
            dx[k] = v;
        }
    }
}

@compute @workgroup_size(SERIAL_WG)
fn gn_backward_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let grp = gid.x + gid.y * nwg.x * SERIAL_WG;
    if grp >= p.n_groups {
        return;
    }
    let len = p.cpg * p.spatial;
    let base = grp * len;
    let inv_len = 1.0 / f32(len);

    // Statistics, exactly as the forward's `group_norm_serial`.
    let mean0 = serial_sums(base, len, 0.0).x * inv_len;
    let sq = serial_sums(base, len, mean0) * inv_len; // (E[d], E[d²])
    let rstd = inverseSqrt(max(sq.y - sq.x * sq.x, 0.0) + p.eps);

    let silu = (p.flags & 1u) != 0u;
    let c0 = (grp % p.groups) * p.cpg;
    let pbase = (grp / p.groups) * p.c;
    var gsum = vec2(0.0);
    for (var c = c0; c < c0 + p.cpg; c++) {
        let i = base + (c - c0) * p.spatial;
        var ab: vec2<f32>;
        if silu {
            ab = channel_ab(i, i + p.spatial, mean0, sq.x, rstd, c, true);
        } else {
            ab = channel_ab(i, i + p.spatial, mean0, sq.x, rstd, c, false);
        }
        partial[(pbase + c) * 2u] = ab.x;
        partial[(pbase + c) * 2u + 1u] = ab.y;
        gsum += gamma[c] * ab;
    }
    let m = gsum * inv_len;

    let acc = (p.flags & 2u) != 0u;
    for (var c = c0; c < c0 + p.cpg; c++) {
        let i = base + (c - c0) * p.spatial;
        let end = i + p.spatial;
        if silu {
            if acc {
                channel_dx(i, end, mean0, sq.x, rstd, c, m, true, true);
            } else {
                channel_dx(i, end, mean0, sq.x, rstd, c, m, true, false);
            }
        } else if acc {
            channel_dx(i, end, mean0, sq.x, rstd, c, m, false, true);
        } else {
            channel_dx(i, end, mean0, sq.x, rstd, c, m, false, false);
        }
    }
}

// dγ_c (+)= Σ_n B_nc, dβ_c (+)= Σ_n A_nc. One invocation per channel.
@compute @workgroup_size(64)
fn gn_backward_params(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = gid.x + gid.y * nwg.x * 64u;
    if c >= p.c {
        return;
    }
    var ab = vec2(0.0);
    for (var n = 0u; n < p.n; n++) {
        let j = (n * p.c + c) * 2u;
        ab += vec2(partial_in[j], partial_in[j + 1u]);
    }
    if (p.flags & 4u) != 0u {
        dgamma[c] += ab.y;
        dbeta[c] += ab.x;
    } else {
        dgamma[c] = ab.y;
        dbeta[c] = ab.x;
    }
}
