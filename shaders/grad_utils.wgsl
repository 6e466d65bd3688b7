// Small gradient kernels for the training tape. Every output is overwritten, or added to when its
// accumulate flag is set: out = (accumulate ? out : 0) + contribution.
// - `concat_backward`: dy [N, Ca + Cb, S] → da [N, Ca, S], db [N, Cb, S] (one invocation per dy
//   element).
// - `scale_into`: dst (+)= scale·src (residual gradients, output_scale_factor).
// - `reduce_spatial`: out [N, C] (+)= scale·Σ_s dy [N, C, S] (gradient of a per-(n, c) broadcast
//   such as the conv epilogue's time-embedding term), one invocation per (n, c), no barriers.

struct Params {
    numel: u32, // elements of the job (dy for concat_backward, src for scale_into, N·C for reduce_spatial)
    len_a: u32, // concat_backward: Ca·S; reduce_spatial: S
    len_b: u32, // concat_backward: Cb·S
    flags: u32, // bit 0: accumulate into the (first) output, bit 1: accumulate into db
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst_b: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn concat_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.numel {
        return;
    }
    let row = p.len_a + p.len_b;
    let n = i / row;
    let j = i - n * row;
    let g = src[i];
    if j < p.len_a {
        let k = n * p.len_a + j;
        if (p.flags & 1u) != 0u {
            dst[k] += g;
        } else {
            dst[k] = g;
        }
    } else {
        let k = n * p.len_b + (j - p.len_a);
        if (p.flags & 2u) != 0u {
            dst_b[k] += g;
        } else {
            dst_b[k] = g;
        }
    }
}

@compute @workgroup_size(256)
fn scale_into(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.numel {
        return;
    }
    let v = p.scale * src[i];
    if (p.flags & 1u) != 0u {
        dst[i] += v;
    } else {
        dst[i] = v;
    }
}

@compute @workgroup_size(64)
fn reduce_spatial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.numel {
        return;
    }
    let base = i * p.len_a;
    // Blocked summation (partial sums of 64 values) keeps the rounding error small for large S.
    var s = 0.0;
    var block = 0.0;
    for (var k = 0u; k < p.len_a; k++) {
        block += src[base + k];
        if (k & 63u) == 63u {
            s += block;
            block = 0.0;
        }
    }
    let v = p.scale * (s + block);
    if (p.flags & 1u) != 0u {
        dst[i] += v;
    } else {
        dst[i] = v;
    }
}
