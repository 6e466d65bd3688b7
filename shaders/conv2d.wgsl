// requires: conv2d_weights_f32.wgsl, conv2d_common.wgsl
// conv2d forward, `reg` variant: every invocation loads its own weights (one `wquad` per tap and
// channel quad) and owns one (image, channel block, tile) of a flat 1-D job; 64 invocations per
// workgroup. With conv2d_weights_f16.wgsl instead of the f32 fragment it reads f16 weights.

const WG: u32 = 64u;
// Tile: 4 rows × 8 columns × 2 channel quads.
const TC: u32 = 8u;
const TQ: u32 = 2u;

// The 3×3 weights of input channel ci for the tile's channel quads.
fn load_weights3(t: ptr<function, Tile>, ci: u32, lane: u32) -> Weights3 {
    var w: Weights3;
    for (var q = 0u; q < TQ; q++) {
        for (var k = 0u; k < 9u; k++) {
            w[q * 9u + k] = wquad((*t).wbase[q] + ci * 9u + k);
        }
    }
    return w;
}

// The 1×1 weights of input channel ci for the tile's channel quads.
fn load_weights1(t: ptr<function, Tile>, ci: u32, lane: u32) -> array<vec4<f32>, TQ> {
    var w: array<vec4<f32>, TQ>;
    for (var q = 0u; q < TQ; q++) {
        w[q] = wquad((*t).wbase[q] + ci);
    }
    return w;
}

// Invocation idx → (image, channel block, tile), tiles fastest.
fn tile_of(idx: u32, kk: u32) -> Tile {
    let nb = idx / p.tiles_img;
    return tile_at(nb / p.co_blocks, (nb % p.co_blocks) * TQ, idx % p.tiles_img, kk, TR, TC);
}

fn flat_index(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

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
