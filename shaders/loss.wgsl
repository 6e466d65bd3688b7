// L = mean((pred − target)²) over all numel elements of pred, target [N, ...], and its gradient
// dpred = 2·(pred − target)/numel (the binding is `tgt`: `target` is reserved in WGSL).
// - `mse_partial`: one workgroup per sample n (barrier-light: 2 barriers); writes dpred and
//   out[n] = out_scale·Σ_sample (pred − target)² (out_scale = 1/per_sample gives the per-sample
//   mean loss, 1/numel the sample's share of L).
// - `mse_finish`: one invocation: loss[0] = Σ_n partial[n] (the shares, summing to L).

struct Params {
    per_sample: u32, // elements per sample
    n: u32,          // N
    grad_scale: f32, // 2/numel
    out_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dpred: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// `mse_finish` bindings.
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;

const WG: u32 = 256u;
const CHUNK: u32 = 16u; // WG = CHUNK · CHUNK

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn mse_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let n = wid.x + wid.y * nwg.x;
    if n >= p.n {
        return; // uniform across the workgroup
    }
    let base = n * p.per_sample;
    var s = 0.0;
    for (var i = lid; i < p.per_sample; i += WG) {
        let d = pred[base + i] - tgt[base + i];
        dpred[base + i] = p.grad_scale * d;
        s += d * d;
    }
    red[lid] = s;
    workgroupBarrier();
    if lid < CHUNK {
        var t = 0.0;
        for (var k = 0u; k < CHUNK; k++) {
            t += red[lid * CHUNK + k];
        }
        red[lid * CHUNK] = t;
    }
    workgroupBarrier();
    if lid == 0u {
        var t = 0.0;
        for (var k = 0u; k < CHUNK; k++) {
            t += red[k * CHUNK];
        }
        out[n] = p.out_scale * t;
    }
}

@compute @workgroup_size(1)
fn mse_finish() {
    var t = 0.0;
    for (var k = 0u; k < p.n; k++) {
        t += partial[k];
    }
    loss[0] = t;
}
