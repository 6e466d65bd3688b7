// requires: group_norm_serial_sums.wgsl
// GroupNorm (torch.nn.GroupNorm: affine, biased variance) with optional fused SiLU.
//
// x, out: [N, C, S] (S = H·W), the C channels split into `groups` groups of `cpg` channels, so
// group (n, g) is the contiguous run of cpg·S values starting at (n·groups + g)·cpg·S.
// Pass 1: mean. Pass 2: sums of the deviations d = x − mean and of d² (corrected two-pass
// algorithm: the Σd term removes the rounding error of the first mean; no E[x²]−E[x]²
// cancellation). Pass 3 writes the output. Two entry points, same bindings and results:
// - `group_norm` (GPUs): one workgroup per (n, g); every invocation strides through the group
//   accumulating privately, then a two-level shared-memory reduction (2 barriers per pass).
// - `group_norm_serial` (CPU drivers such as lavapipe, which run a workgroup's invocations as
//   SIMD lanes and make barriers costly): one invocation per (n, g), no barriers, blocked sums
//   (`serial_sums`, group_norm_serial_sums.wgsl).

struct Params {
    n_groups: u32, // N·groups
    groups: u32,
    cpg: u32,      // channels per group
    spatial: u32,  // S
    eps: f32,
    silu: u32,     // 1: apply SiLU after the affine
    step_c: u32,   // WG / S (`group_norm` only)
    step_s: u32,   // WG % S (`group_norm` only)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
const CHUNK: u32 = 16u; // WG = CHUNK · CHUNK

var<workgroup> partial: array<vec2<f32>, WG>;
var<workgroup> chunk_sums: array<vec2<f32>, CHUNK>;

// Sum of `v` over the workgroup, returned to every invocation.
fn workgroup_sum(lid: u32, v: vec2<f32>) -> vec2<f32> {
    partial[lid] = v;
    workgroupBarrier();
    if lid < CHUNK {
        var s = vec2(0.0);
        for (var k = 0u; k < CHUNK; k++) {
            s += partial[lid * CHUNK + k];
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

@compute @workgroup_size(WG)
fn group_norm(
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

    // Pass 3 walks i = lid, lid + WG, ... tracking (channel c, position sp) of i without a
    // per-element division (slow on CPU drivers): WG = step_c·S + step_s.
    var c = (grp % p.groups) * p.cpg + lid / p.spatial;
    var sp = lid % p.spatial;
    for (var i = lid; i < len; i += WG) {
        let scale = gamma[c] * rstd;
        // (x − mean0) − E[d]: keeps the correction's precision (x − mean0 is exact near the mean).
        var y = ((x[base + i] - mean0) - sq.x) * scale + beta[c];
        if p.silu != 0u {
            y = y / (1.0 + exp(-y));
        }
        out[base + i] = y;
        c += p.step_c;
        sp += p.step_s;
        if sp >= p.spatial {
            sp -= p.spatial;
            c += 1u;
        }
    }
}

const SERIAL_WG: u32 = 8u;

@compute @workgroup_size(SERIAL_WG)
fn group_norm_serial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let grp = gid.x + gid.y * nwg.x * SERIAL_WG;
    if grp >= p.n_groups {
        return;
    }
    let len = p.cpg * p.spatial;
    let base = grp * len;
    let inv_len = 1.0 / f32(len);

    let mean0 = serial_sums(base, len, 0.0).x * inv_len;
    let sq = serial_sums(base, len, mean0) * inv_len; // (E[d], E[d²])
    let rstd = inverseSqrt(max(sq.y - sq.x * sq.x, 0.0) + p.eps);

    let c0 = (grp % p.groups) * p.cpg;
    var i = base;
    for (var c = c0; c < c0 + p.cpg; c++) {
        let scale = gamma[c] * rstd;
        let shift = beta[c];
        let end = i + p.spatial;
        if p.silu != 0u {
            for (; i < end; i++) {
                let y = ((x[i] - mean0) - sq.x) * scale + shift;
                out[i] = y / (1.0 + exp(-y));
            }
        } else {
            for (; i < end; i++) {
                out[i] = ((x[i] - mean0) - sq.x) * scale + shift;
            }
        }
    }
}
