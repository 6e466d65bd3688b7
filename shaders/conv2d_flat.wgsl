// fragment: the flat job of the `reg` and `unrolled` conv2d variants (conv2d.wgsl and
// conv2d_unrolled.wgsl require it after conv2d_common.wgsl and set the tile, `TC` × `TQ`): 64
// invocations per workgroup, each owning one (image, channel block, tile), and the weight loaders
// by which every invocation reads its own weights (one `wquad` per tap and channel quad).

const WG: u32 = 64u;

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
