// Optimizer kernels: global gradient norm, AdamW (torch.optim.AdamW semantics, with
// torch.nn.utils.clip_grad_norm_ folded in and a non-finite guard) and the EMA of the weights.
//
// Global ‖g‖² over many tensors, without readback, into slots[0] of a partials buffer:
// - `grad_norm_partial` (one dispatch per gradient tensor, no barriers): invocation t of the
//   tensor's `lanes` sums g[i]² for i = t, t + lanes, ... (adjacent invocations read adjacent
//   elements) into slots[offset + t]; the tensors' slot ranges are disjoint, from 1.
// - `grad_norm_finish` (one workgroup): slots[0] = Σ slots[1 ..= count].
// `adamw`: reads ‖g‖² = norm_sq[0]; if it is inf or NaN, leaves param, m, v untouched. Else
//   g = grad·min(1, max_norm/(‖g‖ + 1e-6)) (no clip when max_norm = 0);
//   param ·= 1 − lr·wd; m = lerp(m, g, 1 − β1); v = β2·v + (1 − β2)·g²;
//   param −= step_size·m/(√v/√bc2 + eps), step_size = lr/bc1, bc_k = 1 − β_k^step.
// `ema_update`: ema −= (1 − decay)·(ema − param) (diffusers EMAModel).

struct Params {
    numel: u32,
    lanes: u32,  // grad_norm_partial: invocations for this tensor
    offset: u32, // grad_norm_partial: its first slot; grad_norm_finish: number of slots after 0
    _pad0: u32,
    wd_mul: f32,        // 1 − lr·weight_decay
    one_minus_b1: f32,  // 1 − β1
    beta2: f32,
    one_minus_b2: f32,  // 1 − β2
    step_size: f32,     // lr / bc1
    bc2_sqrt: f32,      // √bc2
    eps: f32,
    max_norm: f32,      // 0: no clipping
    decay: f32,         // ema_update
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// `grad_norm_partial`
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;
// `grad_norm_finish`
@group(0) @binding(1) var<storage, read_write> slots: array<f32>;
// `adamw`
@group(0) @binding(1) var<storage, read> norm_sq: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> param: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
// `ema_update`
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> ema: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
    return gid.x + gid.y * nwg.x * wg;
}

@compute @workgroup_size(64)
fn grad_norm_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg, 64u);
    if t >= p.lanes {
        return;
    }
    var s = 0.0;
    for (var i = t; i < p.numel; i += p.lanes) {
        let x = g[i];
        s += x * x;
    }
    partials[p.offset + t] = s;
}

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn grad_norm_finish(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    for (var k = lid; k < p.offset; k += WG) {
        s += slots[1u + k];
    }
    red[lid] = s;
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        workgroupBarrier();
        if lid < stride {
            red[lid] += red[lid + stride];
        }
    }
    if lid == 0u {
        slots[0] = red[0];
    }
}

// True for ±inf and NaN (bit test: immune to fast-math assumptions about comparisons).
fn non_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(256)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg, 256u);
    if i >= p.numel {
        return;
    }
    let nsq = norm_sq[0];
    if non_finite(nsq) {
        return;
    }
    var clip = 1.0;
    if p.max_norm > 0.0 {
        clip = min(1.0, p.max_norm / (sqrt(nsq) + 1e-6));
    }
    let gi = grad[i] * clip;
    let mi = m[i] + p.one_minus_b1 * (gi - m[i]);
    let vi = v[i] * p.beta2 + p.one_minus_b2 * gi * gi;
    let denom = sqrt(vi) / p.bc2_sqrt + p.eps;
    param[i] = param[i] * p.wd_mul - p.step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
}

@compute @workgroup_size(256)
fn ema_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg, 256u);
    if i >= p.numel {
        return;
    }
    ema[i] -= (1.0 - p.decay) * (ema[i] - src[i]);
}
