// Small gradient kernels for the training tape. Every output is overwritten, or added to when its
// accumulate flag is set: out = (accumulate ? out : 0) + contribution.
// - `scale_into`: dst (+)= scale·src (residual gradients, output_scale_factor).
// - `reduce_spatial`: out [N, C] (+)= scale·Σ_s dy [N, C, S] (gradient of a per-(n, c) broadcast
//   such as the conv epilogue's time-embedding term), one invocation per (n, c), no barriers.

struct Params {
    numel: u32, // elements of the job (src for scale_into, N·C for reduce_spatial)
    len_a: u32, // reduce_spatial: S
    len_b: u32, // unused
    flags: u32, // bit 0: accumulate into the output
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
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
