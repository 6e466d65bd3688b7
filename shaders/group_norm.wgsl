// GroupNorm (torch.nn.GroupNorm: affine, biased variance) with optional fused SiLU.
//
// x, out: [N, C, S] (S = H·W), the C channels split into `groups` groups of `cpg` channels, so
// group (n, g) is the contiguous run of cpg·S values starting at (n·groups + g)·cpg·S.
// One workgroup per (n, g): every invocation strides through the group accumulating privately,
// then one two-level shared-memory reduction (2 barriers). Pass 1: mean. Pass 2: sums of the
// deviations d = x − mean and of d² (corrected two-pass algorithm: the Σd term removes the
// rounding error of the first mean; no E[x²]−E[x]² cancellation). Pass 3 writes the output.

struct Params {
    n_groups: u32, // N·groups: number of workgroups doing work
    groups: u32,
    cpg: u32,      // channels per group
    spatial: u32,  // S
    eps: f32,
    silu: u32,     // 1: apply SiLU after the affine
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
const CHUNK: u32 = 16u; // WG = CHUNK · CHUNK

var<workgroup> partial: array<vec2<f32>, 256>;
var<workgroup> chunk_sums: array<vec2<f32>, 16>;

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

@compute @workgroup_size(256)
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

    let c0 = (grp % p.groups) * p.cpg;
    for (var i = lid; i < len; i += WG) {
        let c = c0 + i / p.spatial;
        let scale = gamma[c] * rstd;
        // (x − mean0) − E[d]: keeps the correction's precision (x − mean0 is exact near the mean).
        var y = ((x[base + i] - mean0) - sq.x) * scale + beta[c];
        if p.silu != 0u {
            y = y / (1.0 + exp(-y));
        }
        out[base + i] = y;
    }
}
