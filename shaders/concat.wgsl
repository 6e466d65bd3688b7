// Channel concatenation (diffusers up blocks: torch.cat([h, skip], dim=1)):
// a: [N, Ca, S], b: [N, Cb, S] → out: [N, Ca + Cb, S] (S = H·W). Per batch item, out is a's
// Ca·S values followed by b's Cb·S values. One invocation per output element.

struct Params {
    numel: u32,  // N·(Ca + Cb)·S
    a_len: u32,  // Ca·S
    b_len: u32,  // Cb·S
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const PER: u32 = 4u; // consecutive output elements per invocation

@compute @workgroup_size(256)
fn concat_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = (gid.x + gid.y * nwg.x * 256u) * PER;
    if i0 >= p.numel {
        return;
    }
    let row = p.a_len + p.b_len;
    var n = i0 / row;
    var j = i0 - n * row;
    let end = min(i0 + PER, p.numel);
    for (var i = i0; i < end; i++) {
        if j < p.a_len {
            out[i] = a[n * p.a_len + j];
        } else {
            out[i] = b[n * p.b_len + (j - p.a_len)];
        }
        j++;
        if j == row {
            j = 0u;
            n++;
        }
    }
}
