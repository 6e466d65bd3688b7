// requires: conv2d_weights_f32.wgsl, conv2d_common.wgsl, conv2d_flat.wgsl
// conv2d forward, `reg` variant: every invocation loads its own weights (one `wquad` per tap and
// channel quad) and owns one (image, channel block, tile) of a flat 1-D job; 64 invocations per
// workgroup (conv2d_flat.wgsl). With conv2d_weights_f16.wgsl instead of the f32 fragment it
// reads f16 weights.

// Tile: 4 rows × 8 columns × 2 channel quads.
const TC: u32 = 8u;
const TQ: u32 = 2u;

@compute @workgroup_size(64)
fn conv_k3s1(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(lid, wid, nwg);
    if idx >= p.total {
        return;
    }
    var t = tile_of(idx, 9u);
    conv_k3s1_body(&t, 0u, true);
}

@compute @workgroup_size(64)
fn conv_k3s2(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(lid, wid, nwg);
    if idx >= p.total {
        return;
    }
    var t = tile_of(idx, 9u);
    conv_k3s2_body(&t, 0u, true);
}

@compute @workgroup_size(64)
fn conv_k1(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(lid, wid, nwg);
    if idx >= p.total {
        return;
    }
    var t = tile_of(idx, 1u);
    conv_k1_body(&t, 0u, true);
}

@compute @workgroup_size(64)
fn conv_up3(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(lid, wid, nwg);
    if idx >= p.total {
        return;
    }
    var t = tile_of(idx, 9u);
    conv_up3_body(&t, 0u, true);
}
