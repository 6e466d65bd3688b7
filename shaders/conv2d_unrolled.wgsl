// requires: conv2d_weights_f32.wgsl, conv2d_common.wgsl, conv2d_flat.wgsl
// conv2d forward, `unrolled` variant: for shader compilers that neither unroll loops nor keep
// private arrays in registers (SwiftShader's Subzero JIT, the browser's software WebGPU). The
// other forward kernels index their accumulator rows in small constant-count loops, which LLVM
// (lavapipe) unrolls into registers; Subzero keeps those loops and turns every indexed access into
// a per-lane memory access, so they reach ~2 % of its FMA peak. Here the per-input-channel work is
// straight-line code over named values (every array index a literal), as in
// conv2d_backward_input.wgsl's tile kernels, which reach ~20 % there.
//
// Each invocation computes a 4 × 4 pixel × 8 channel output tile (two channel quads; a quad's
// output row of 4 pixels is one mat4x4, column = pixel, vec4 = the quad's 4 channels). Per input
// channel it loads the tile's input window once (zeros in the padding, upsampling folded into
// the window offsets) and the weights of both quads (9 vec4 per quad for 3×3).
// The invocation → tile mapping is conv2d_flat.wgsl's (64 invocations per workgroup over a flat
// job, as `reg`), the epilogue conv2d_common.wgsl's (`store_row`).

const TC: u32 = 4u;
const TQ: u32 = 2u;

// The 4 output rows of one channel quad: [ty] column tx = 4 channels at pixel (ty, tx).
alias QuadTile = array<mat4x4<f32>, 4>;

// Window columns 0..3 / 0..5 / 0..8 of the input row starting at b; m is the row's mask.
fn row4(win: ptr<function, Window>, b: u32, m: f32) -> array<f32, 4> {
    return array<f32, 4>(
        x[b + (*win).coff[0]] * (m * (*win).cmask[0]),
        x[b + (*win).coff[1]] * (m * (*win).cmask[1]),
        x[b + (*win).coff[2]] * (m * (*win).cmask[2]),
        x[b + (*win).coff[3]] * (m * (*win).cmask[3]),
    );
}

fn row6(win: ptr<function, Window>, b: u32, m: f32) -> array<f32, 6> {
    return array<f32, 6>(
        x[b + (*win).coff[0]] * (m * (*win).cmask[0]),
        x[b + (*win).coff[1]] * (m * (*win).cmask[1]),
        x[b + (*win).coff[2]] * (m * (*win).cmask[2]),
        x[b + (*win).coff[3]] * (m * (*win).cmask[3]),
        x[b + (*win).coff[4]] * (m * (*win).cmask[4]),
        x[b + (*win).coff[5]] * (m * (*win).cmask[5]),
    );
}

fn row9(win: ptr<function, Window>, b: u32, m: f32) -> array<f32, 9> {
    return array<f32, 9>(
        x[b + (*win).coff[0]] * (m * (*win).cmask[0]),
        x[b + (*win).coff[1]] * (m * (*win).cmask[1]),
        x[b + (*win).coff[2]] * (m * (*win).cmask[2]),
        x[b + (*win).coff[3]] * (m * (*win).cmask[3]),
        x[b + (*win).coff[4]] * (m * (*win).cmask[4]),
        x[b + (*win).coff[5]] * (m * (*win).cmask[5]),
        x[b + (*win).coff[6]] * (m * (*win).cmask[6]),
        x[b + (*win).coff[7]] * (m * (*win).cmask[7]),
        x[b + (*win).coff[8]] * (m * (*win).cmask[8]),
    );
}

// One output row through one kernel row (k0, k1, k2 = taps kx = 0, 1, 2 of a quad):
// pixel tx reads input columns tx + kx (stride 1) or 2·tx + kx (stride 2).
fn tap_row3(r: array<f32, 6>, k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(
        k0 * r[0] + k1 * r[1] + k2 * r[2],
        k0 * r[1] + k1 * r[2] + k2 * r[3],
        k0 * r[2] + k1 * r[3] + k2 * r[4],
        k0 * r[3] + k1 * r[4] + k2 * r[5],
    );
}

fn tap_row3s2(r: array<f32, 9>, k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(
        k0 * r[0] + k1 * r[1] + k2 * r[2],
        k0 * r[2] + k1 * r[3] + k2 * r[4],
        k0 * r[4] + k1 * r[5] + k2 * r[6],
        k0 * r[6] + k1 * r[7] + k2 * r[8],
    );
}

fn tap_row1(r: array<f32, 4>, k: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(k * r[0], k * r[1], k * r[2], k * r[3]);
}

// a += one input channel's 3×3 taps (weights from packed position wb) over input rows d0..d5.
fn quad_k3s1(a: ptr<function, QuadTile>, wb: u32, d0: array<f32, 6>, d1: array<f32, 6>, d2: array<f32, 6>, d3: array<f32, 6>, d4: array<f32, 6>, d5: array<f32, 6>) {
    let w0 = wquad(wb);
    let w1 = wquad(wb + 1u);
    let w2 = wquad(wb + 2u);
    let w3 = wquad(wb + 3u);
    let w4 = wquad(wb + 4u);
    let w5 = wquad(wb + 5u);
    let w6 = wquad(wb + 6u);
    let w7 = wquad(wb + 7u);
    let w8 = wquad(wb + 8u);
    (*a)[0] += tap_row3(d0, w0, w1, w2) + tap_row3(d1, w3, w4, w5) + tap_row3(d2, w6, w7, w8);
    (*a)[1] += tap_row3(d1, w0, w1, w2) + tap_row3(d2, w3, w4, w5) + tap_row3(d3, w6, w7, w8);
    (*a)[2] += tap_row3(d2, w0, w1, w2) + tap_row3(d3, w3, w4, w5) + tap_row3(d4, w6, w7, w8);
    (*a)[3] += tap_row3(d3, w0, w1, w2) + tap_row3(d4, w3, w4, w5) + tap_row3(d5, w6, w7, w8);
}

// Stride 2: output row ty reads input rows 2·ty + ky of d0..d8.
fn quad_k3s2(a: ptr<function, QuadTile>, wb: u32, d0: array<f32, 9>, d1: array<f32, 9>, d2: array<f32, 9>, d3: array<f32, 9>, d4: array<f32, 9>, d5: array<f32, 9>, d6: array<f32, 9>, d7: array<f32, 9>, d8: array<f32, 9>) {
    let w0 = wquad(wb);
    let w1 = wquad(wb + 1u);
    let w2 = wquad(wb + 2u);
    let w3 = wquad(wb + 3u);
    let w4 = wquad(wb + 4u);
    let w5 = wquad(wb + 5u);
    let w6 = wquad(wb + 6u);
    let w7 = wquad(wb + 7u);
    let w8 = wquad(wb + 8u);
    (*a)[0] += tap_row3s2(d0, w0, w1, w2) + tap_row3s2(d1, w3, w4, w5) + tap_row3s2(d2, w6, w7, w8);
    (*a)[1] += tap_row3s2(d2, w0, w1, w2) + tap_row3s2(d3, w3, w4, w5) + tap_row3s2(d4, w6, w7, w8);
    (*a)[2] += tap_row3s2(d4, w0, w1, w2) + tap_row3s2(d5, w3, w4, w5) + tap_row3s2(d6, w6, w7, w8);
    (*a)[3] += tap_row3s2(d6, w0, w1, w2) + tap_row3s2(d7, w3, w4, w5) + tap_row3s2(d8, w6, w7, w8);
}

fn quad_k1(a: ptr<function, QuadTile>, wb: u32, d0: array<f32, 4>, d1: array<f32, 4>, d2: array<f32, 4>, d3: array<f32, 4>) {
    let w = wquad(wb);
    (*a)[0] += tap_row1(d0, w);
    (*a)[1] += tap_row1(d1, w);
    (*a)[2] += tap_row1(d2, w);
    (*a)[3] += tap_row1(d3, w);
}

// Upsample2D (nearest ×2, 3×3, padding 1): each output parity is a 2×2 conv of the original
// input with summed taps. Sums of taps (k0, k1, k2) by combo: 0 → k0, 1 → k1 + k2,
// 2 → k0 + k1, 3 → k2; parity 0 reads (input - 1: combo 0, input: combo 1), parity 1
// (input: combo 2, input + 1: combo 3), in rows and in columns.
fn up_combos(k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32>) -> array<vec4<f32>, 4> {
    return array<vec4<f32>, 4>(k0, k1 + k2, k0 + k1, k2);
}

// One output row (4 pixels = 2 input columns × 2 parities) from input row r (columns
// ox0 / 2 - 1 + j) with the column combos u of one row combo.
fn tap_row_up(r: array<f32, 4>, u: array<vec4<f32>, 4>) -> mat4x4<f32> {
    return mat4x4<f32>(
        u[0] * r[0] + u[1] * r[1],
        u[2] * r[1] + u[3] * r[2],
        u[0] * r[1] + u[1] * r[2],
        u[2] * r[2] + u[3] * r[3],
    );
}

// Output rows 2·i + parity of input rows d0..d3 (input rows oy0 / 2 - 1 + r).
fn quad_up3(a: ptr<function, QuadTile>, wb: u32, d0: array<f32, 4>, d1: array<f32, 4>, d2: array<f32, 4>, d3: array<f32, 4>) {
    // Row combos of each kernel column, then column combos of each row combo.
    let c0 = up_combos(wquad(wb), wquad(wb + 3u), wquad(wb + 6u));
    let c1 = up_combos(wquad(wb + 1u), wquad(wb + 4u), wquad(wb + 7u));
    let c2 = up_combos(wquad(wb + 2u), wquad(wb + 5u), wquad(wb + 8u));
    let u0 = up_combos(c0[0], c1[0], c2[0]);
    let u1 = up_combos(c0[1], c1[1], c2[1]);
    let u2 = up_combos(c0[2], c1[2], c2[2]);
    let u3 = up_combos(c0[3], c1[3], c2[3]);
    (*a)[0] += tap_row_up(d0, u0) + tap_row_up(d1, u1);
    (*a)[1] += tap_row_up(d1, u2) + tap_row_up(d2, u3);
    (*a)[2] += tap_row_up(d1, u0) + tap_row_up(d2, u1);
    (*a)[3] += tap_row_up(d2, u2) + tap_row_up(d3, u3);
}

// Stores the tile (both quads) through conv2d_common's epilogue.
fn store_quads(t: ptr<function, Tile>, a0: ptr<function, QuadTile>, a1: ptr<function, QuadTile>) {
    for (var ty = 0u; ty < TR; ty++) {
        var r: Row;
        for (var c = 0u; c < TC; c++) {
            r[c] = (*a0)[ty][c];
            r[TC + c] = (*a1)[ty][c];
        }
        store_row(t, &r, ty);
    }
}

// 3×3, stride 1 (with or without upsampling: the window maps virtual to input pixels).
@compute @workgroup_size(64)
fn conv_k3s1(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(lid, wid, nwg);
    if idx >= p.total {
        return;
    }
    var t = tile_of(idx, 9u);
    var win = window(i32(t.oy0) - i32(p.pad_top), i32(t.ox0) - i32(p.pad_left), TR + 2u, TC + 2u, 1u, 1u, p.upsample);
    var a0: QuadTile;
    var a1: QuadTile;
    let plane = p.h * p.w;
    var xb = t.n * p.cin * plane;
    var wb0 = t.wbase[0];
    var wb1 = t.wbase[1];
    for (var ci = 0u; ci < p.cin; ci++) {
        let d0 = row6(&win, xb + win.roff[0], win.rmask[0]);
        let d1 = row6(&win, xb + win.roff[1], win.rmask[1]);
        let d2 = row6(&win, xb + win.roff[2], win.rmask[2]);
        let d3 = row6(&win, xb + win.roff[3], win.rmask[3]);
        let d4 = row6(&win, xb + win.roff[4], win.rmask[4]);
        let d5 = row6(&win, xb + win.roff[5], win.rmask[5]);
        quad_k3s1(&a0, wb0, d0, d1, d2, d3, d4, d5);
        quad_k3s1(&a1, wb1, d0, d1, d2, d3, d4, d5);
        xb += plane;
        wb0 += 9u;
        wb1 += 9u;
    }
    store_quads(&t, &a0, &a1);
}

@compute @workgroup_size(64)
fn conv_k3s2(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(lid, wid, nwg);
    if idx >= p.total {
        return;
    }
    var t = tile_of(idx, 9u);
    var win = window(2 * i32(t.oy0) - i32(p.pad_top), 2 * i32(t.ox0) - i32(p.pad_left), 2u * TR + 1u, 2u * TC + 1u, 1u, 1u, p.upsample);
    var a0: QuadTile;
    var a1: QuadTile;
    let plane = p.h * p.w;
    var xb = t.n * p.cin * plane;
    var wb0 = t.wbase[0];
    var wb1 = t.wbase[1];
    for (var ci = 0u; ci < p.cin; ci++) {
        let d0 = row9(&win, xb + win.roff[0], win.rmask[0]);
        let d1 = row9(&win, xb + win.roff[1], win.rmask[1]);
        let d2 = row9(&win, xb + win.roff[2], win.rmask[2]);
        let d3 = row9(&win, xb + win.roff[3], win.rmask[3]);
        let d4 = row9(&win, xb + win.roff[4], win.rmask[4]);
        let d5 = row9(&win, xb + win.roff[5], win.rmask[5]);
        let d6 = row9(&win, xb + win.roff[6], win.rmask[6]);
        let d7 = row9(&win, xb + win.roff[7], win.rmask[7]);
        let d8 = row9(&win, xb + win.roff[8], win.rmask[8]);
        quad_k3s2(&a0, wb0, d0, d1, d2, d3, d4, d5, d6, d7, d8);
        quad_k3s2(&a1, wb1, d0, d1, d2, d3, d4, d5, d6, d7, d8);
        xb += plane;
        wb0 += 9u;
        wb1 += 9u;
    }
    store_quads(&t, &a0, &a1);
}

// 1×1, any stride: output pixel (ty, tx) reads window row ty, column tx.
@compute @workgroup_size(64)
fn conv_k1(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(lid, wid, nwg);
    if idx >= p.total {
        return;
    }
    var t = tile_of(idx, 1u);
    let s = p.stride;
    var win = window(i32(t.oy0 * s) - i32(p.pad_top), i32(t.ox0 * s) - i32(p.pad_left), TR, TC, s, s, p.upsample);
    var a0: QuadTile;
    var a1: QuadTile;
    let plane = p.h * p.w;
    var xb = t.n * p.cin * plane;
    var wb0 = t.wbase[0];
    var wb1 = t.wbase[1];
    for (var ci = 0u; ci < p.cin; ci++) {
        let d0 = row4(&win, xb + win.roff[0], win.rmask[0]);
        let d1 = row4(&win, xb + win.roff[1], win.rmask[1]);
        let d2 = row4(&win, xb + win.roff[2], win.rmask[2]);
        let d3 = row4(&win, xb + win.roff[3], win.rmask[3]);
        quad_k1(&a0, wb0, d0, d1, d2, d3);
        quad_k1(&a1, wb1, d0, d1, d2, d3);
        xb += plane;
        wb0 += 1u;
        wb1 += 1u;
    }
    store_quads(&t, &a0, &a1);
}

// Upsample2D: the 4 × 4 output tile reads input rows oy0 / 2 - 1 .. + 3 and columns
// ox0 / 2 - 1 .. + 3 (4/9 of the general path's FLOPs).
@compute @workgroup_size(64)
fn conv_up3(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(lid, wid, nwg);
    if idx >= p.total {
        return;
    }
    var t = tile_of(idx, 9u);
    var win = window(i32(t.oy0 / 2u) - 1, i32(t.ox0 / 2u) - 1, TR / 2u + 2u, TC / 2u + 2u, 1u, 1u, 0u);
    var a0: QuadTile;
    var a1: QuadTile;
    let plane = p.h * p.w;
    var xb = t.n * p.cin * plane;
    var wb0 = t.wbase[0];
    var wb1 = t.wbase[1];
    for (var ci = 0u; ci < p.cin; ci++) {
        let d0 = row4(&win, xb + win.roff[0], win.rmask[0]);
        let d1 = row4(&win, xb + win.roff[1], win.rmask[1]);
        let d2 = row4(&win, xb + win.roff[2], win.rmask[2]);
        let d3 = row4(&win, xb + win.roff[3], win.rmask[3]);
        quad_up3(&a0, wb0, d0, d1, d2, d3);
        quad_up3(&a1, wb1, d0, d1, d2, d3);
        xb += plane;
        wb0 += 9u;
        wb1 += 9u;
    }
    store_quads(&t, &a0, &a1);
}
