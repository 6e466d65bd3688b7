// Gradient of shaders/concat.wgsl: dy [N, Ca + Cb, S] → da [N, Ca, S], db [N, Cb, S], one
// invocation per dy element. Each output is overwritten, or added to when its accumulate flag
// is set.

struct Params {
    numel: u32, // N·(Ca + Cb)·S
    len_a: u32, // Ca·S
    len_b: u32, // Cb·S
    flags: u32, // bit 0: accumulate into da, bit 1: accumulate into db
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> da: array<f32>;
@group(0) @binding(3) var<storage, read_write> db: array<f32>;

@compute @workgroup_size(256)
fn concat_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.numel {
        return;
    }
    let row = p.len_a + p.len_b;
    let n = i / row;
    let j = i - n * row;
    let g = dy[i];
    if j < p.len_a {
        let k = n * p.len_a + j;
        if (p.flags & 1u) != 0u {
            da[k] += g;
        } else {
            da[k] = g;
        }
    } else {
        let k = n * p.len_b + (j - p.len_a);
        if (p.flags & 2u) != 0u {
            db[k] += g;
        } else {
            db[k] = g;
        }
    }
}
