// fragment: the subgroup conv2d variants; conv2d_subgroup_c8.wgsl and conv2d_subgroup_c16.wgsl
// complete it with their tile size (TC columns × TQ channel quads).
// features: subgroup
// conv2d forward, `subgroup` variants, for CPU drivers with 8-wide subgroups (lavapipe on AVX2):
// the 8 invocations of a workgroup (= one subgroup) share one channel block (workgroup id y) and
// hold 8 different (image, tile) pairs. Per input channel each lane loads 1/8 of the block's
// weights as scalars and `subgroupBroadcast` hands every value to all lanes: 8× fewer weight
// loads than the `reg` variant, where every lane loads all its weights (on lavapipe a load costs a
// per-lane gather, a broadcast one instruction). Lanes past the last tile run a clamped copy of
// it without storing, so that every broadcast has its source lane active. The weights are read
// as scalars through `welem` (conv2d_weights_f32.wgsl or conv2d_weights_f16.wgsl).

const WG: u32 = 8u;

// All 8 lanes' values of v.
fn lanes8(v: f32) -> array<f32, 8> {
    let l0 = subgroupBroadcast(v, 0u);
    let l1 = subgroupBroadcast(v, 1u);
    let l2 = subgroupBroadcast(v, 2u);
    let l3 = subgroupBroadcast(v, 3u);
    let l4 = subgroupBroadcast(v, 4u);
    let l5 = subgroupBroadcast(v, 5u);
    let l6 = subgroupBroadcast(v, 6u);
    let l7 = subgroupBroadcast(v, 7u);
    return array<f32, 8>(l0, l1, l2, l3, l4, l5, l6, l7);
}

fn quad(l: array<f32, 8>, half: u32) -> vec4<f32> {
    return vec4<f32>(l[half * 4u], l[half * 4u + 1u], l[half * 4u + 2u], l[half * 4u + 3u]);
}

// The 36 floats (9 taps × 4 channels) at packed vec4 index `base`: lane l loads floats l, l + 8,
// …, l + 32 (the last clamped into range; lanes ≥ 4 load a duplicate there).
fn quad_weights3(base: u32, lane: u32, w: ptr<function, Weights3>, q: u32) {
    let f = base * 4u + lane;
    let l0 = lanes8(welem(f));
    let l1 = lanes8(welem(f + 8u));
    let l2 = lanes8(welem(f + 16u));
    let l3 = lanes8(welem(f + 24u));
    let l4 = lanes8(welem(min(f + 32u, base * 4u + 35u)));
    (*w)[q * 9u] = quad(l0, 0u);
    (*w)[q * 9u + 1u] = quad(l0, 1u);
    (*w)[q * 9u + 2u] = quad(l1, 0u);
    (*w)[q * 9u + 3u] = quad(l1, 1u);
    (*w)[q * 9u + 4u] = quad(l2, 0u);
    (*w)[q * 9u + 5u] = quad(l2, 1u);
    (*w)[q * 9u + 6u] = quad(l3, 0u);
    (*w)[q * 9u + 7u] = quad(l3, 1u);
    (*w)[q * 9u + 8u] = quad(l4, 0u);
}

fn load_weights3(t: ptr<function, Tile>, ci: u32, lane: u32) -> Weights3 {
    var w: Weights3;
    for (var q = 0u; q < TQ; q++) {
        quad_weights3((*t).wbase[q] + ci * 9u, lane, &w, q);
    }
    return w;
}

// 1×1: the 4 · TQ floats of the tile's quads at ci, 8 at a time: lane l of round j loads
// channel 4 · ((8j + l) / 4) + l % 4.
fn load_weights1(t: ptr<function, Tile>, ci: u32, lane: u32) -> array<vec4<f32>, TQ> {
    var w: array<vec4<f32>, TQ>;
    for (var j = 0u; j < TQ / 2u; j++) {
        let wb = (*t).wbase;
        let l = lanes8(welem((wb[2u * j + lane / 4u] + ci) * 4u + lane % 4u));
        w[2u * j] = quad(l, 0u);
        w[2u * j + 1u] = quad(l, 1u);
    }
    return w;
}

// Workgroup (x + z · nwg.x, y) → channel block y, (image, tile) = 8 · (x + z · nwg.x) + lid,
// clamped to the last tile (such a lane computes a copy of it and does not store).
fn job_index(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.z * nwg.x) * WG + lid;
}

fn job_tile(i: u32, wid: vec3<u32>, kk: u32) -> Tile {
    let idx = min(i, p.n * p.tiles_img - 1u);
    return tile_at(idx / p.tiles_img, wid.y * TQ, idx % p.tiles_img, kk, TR, TC);
}

@compute @workgroup_size(8)
fn conv_k3s1(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = job_index(lid, wid, nwg);
    var t = job_tile(i, wid, 9u);
    conv_k3s1_body(&t, lane, i < p.n * p.tiles_img);
}

@compute @workgroup_size(8)
fn conv_k3s2(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = job_index(lid, wid, nwg);
    var t = job_tile(i, wid, 9u);
    conv_k3s2_body(&t, lane, i < p.n * p.tiles_img);
}

@compute @workgroup_size(8)
fn conv_k1(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = job_index(lid, wid, nwg);
    var t = job_tile(i, wid, 1u);
    conv_k1_body(&t, lane, i < p.n * p.tiles_img);
}

@compute @workgroup_size(8)
fn conv_up3(@builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = job_index(lid, wid, nwg);
    var t = job_tile(i, wid, 9u);
    conv_up3_body(&t, lane, i < p.n * p.tiles_img);
}
