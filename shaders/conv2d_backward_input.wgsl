// Gradient of shaders/conv2d.wgsl with respect to its input:
//   dx[n, ci, iy, ix] (+)= out_scale · Σ dy[n, co, oy, ox] · w[co, ci, ky, kx]
// over every (co, oy, ox, ky, kx) whose tap reads input pixel (iy, ix) — i.e. a transposed conv.
// NCHW f32, w [Cout, Cin, k, k], k = 1 or 3, stride 1 or 2, zero padding, optional fused
// nearest ×2 upsampling (an input pixel then sums the gradients of its 2×2 virtual pixels).
//
// Register blocking, no shared memory, no barriers; each invocation computes CI input channels
// (a block chosen by workgroup id y) × a few dx pixels, summing over all output channels.
// On CPU drivers every storage load costs far more than an FMA, so the kernels reuse each
// loaded value as often as registers allow:
// - k = 3, stride 1 (dx_tile3) and with upsampling (dx_tile3_up): a 4 × 4 dx tile per
//   invocation; see those functions.
// - Otherwise (k = 1; stride 2) the row kernels below: PX dx pixels of one row per invocation.
//   Per output channel and dy row they load the segment of dy values the PX pixels need once
//   and reuse each for every kernel column and input channel.
//
// Row kernels: per dimension, a dx pixel i sees virtual pixels v = UP·i + u (u < UP) and the
// dy position of tap k is (v + pad - k) / S when that divides exactly.
// - Stride 1 (dx_s1): the PX pixels of a block are consecutive; tap (u, kx) of pixel i reads
//   dy column UP·ix0 + pad - (K-1) + UP·i + u + (K-1-kx): one segment, constant indices.
// - Stride 2 (dx_s2): only taps k ≡ v + pad (mod 2) contribute, k = a + 2t, t < T = (K+1)/2,
//   reading dy at c0 - t with c0 = (v + pad - a) / 2. Without upsampling the pixels of a block
//   share one parity (ix = ix0 + 2i) and the parities (py, px) come from workgroup id y, so the
//   taps are the same for the whole workgroup; with upsampling v's parity is u's.

struct Params {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    pad_top: u32,
    pad_left: u32,
    // Pixel blocks (tiles for the tile kernels) per dx row, block rows per image (both per
    // parity for dx_s2 without upsampling) and blocks in total (n · rows · row_blocks).
    row_blocks: u32,
    rows: u32,
    blocks: u32,
    accumulate: u32,
    out_scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

const WG: u32 = 64u;
const PX: u32 = 4u;
const CI: u32 = 8u;
// Largest stride-1 segment: UP · PX + K - 1 with UP = 2, K = 3.
const SEG_MAX: u32 = 10u;
// Largest stride-2 segment: PX + T - 1 with T = 2.
const SEG2: u32 = 5u;

// dx (+)= acc · out_scale for the valid channels and pixels of a block (pixels ix0 + step·i).
fn store(acc: ptr<function, array<vec4<f32>, CI>>, n: u32, ci0: u32, iy: u32, ix0: u32, step: u32) {
    // (Constant trip counts with guarded bodies, so the loops unroll and acc stays in registers.)
    for (var c = 0u; c < CI; c++) {
        let ci = ci0 + c;
        let rb = ((n * p.cin + ci) * p.h + iy) * p.w;
        for (var i = 0u; i < PX; i++) {
            let ix = ix0 + step * i;
            if ci < p.cin && ix < p.w {
                let g = (*acc)[c][i] * p.out_scale;
                dx[rb + ix] = select(g, dx[rb + ix] + g, p.accumulate != 0u);
            }
        }
    }
}

fn dx_s1(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, K: u32, UP: u32) {
    let blk = (wid.x + wid.z * nwg.x) * WG + lid;
    if blk >= p.blocks {
        return;
    }
    let ci0 = wid.y * CI;
    let bx = blk % p.row_blocks;
    let t = blk / p.row_blocks;
    let iy = t % p.h;
    let n = t / p.h;
    let ix0 = bx * PX;

    // dy row of entry r = uy·K + ky: oy = UP·iy + uy + pad_top - ky.
    var roff: array<u32, 6>;
    var rmask: array<f32, 6>;
    for (var uy = 0u; uy < UP; uy++) {
        for (var ky = 0u; ky < K; ky++) {
            let oy = i32(UP * iy + uy + p.pad_top) - i32(ky);
            let ok = oy >= 0 && oy < i32(p.ho);
            roff[uy * K + ky] = select(0u, u32(oy) * p.wo, ok);
            rmask[uy * K + ky] = select(0.0, 1.0, ok);
        }
    }
    // dy columns of the segment: ox = UP·ix0 + pad_left - (K-1) + j.
    let seg = UP * PX + K - 1u;
    var coff: array<u32, SEG_MAX>;
    var cmask: array<f32, SEG_MAX>;
    for (var j = 0u; j < seg; j++) {
        let ox = i32(UP * ix0 + p.pad_left + j) - i32(K - 1u);
        let ok = ox >= 0 && ox < i32(p.wo);
        coff[j] = select(0u, u32(ox), ok);
        cmask[j] = select(0.0, 1.0, ok);
    }
    // Weight offset of each input channel (clamped: channels ≥ cin are computed, not stored).
    let kk = K * K;
    var wcol: array<u32, CI>;
    for (var c = 0u; c < CI; c++) {
        wcol[c] = min(ci0 + c, p.cin - 1u) * kk;
    }

    var acc: array<vec4<f32>, CI>;
    let opix = p.ho * p.wo;
    var gb = n * p.cout * opix;
    var wb = 0u;
    for (var co = 0u; co < p.cout; co++) {
        for (var r = 0u; r < UP * K; r++) {
            if rmask[r] == 0.0 {
                continue;
            }
            let ky = r % K;
            let rb = gb + roff[r];
            var v: array<f32, SEG_MAX>;
            for (var j = 0u; j < seg; j++) {
                v[j] = dy[rb + coff[j]] * cmask[j];
            }
            for (var ux = 0u; ux < UP; ux++) {
                for (var kx = 0u; kx < K; kx++) {
                    let o = ux + K - 1u - kx;
                    let gv = vec4<f32>(v[o], v[UP + o], v[2u * UP + o], v[3u * UP + o]);
                    let wi = wb + ky * K + kx;
                    for (var c = 0u; c < CI; c++) {
                        acc[c] = fma(gv, vec4<f32>(wt[wi + wcol[c]]), acc[c]);
                    }
                }
            }
        }
        gb += opix;
        wb += p.cin * kk;
    }
    store(&acc, n, ci0, iy, ix0, 1u);
}

// Stride 1, k = 3, no upsampling: each invocation computes CI input channels × a 4 × 4 tile of
// dx pixels, reading the 6 × 6 dy tile of every output channel once (36 loads, 9·CI weight
// loads, 144·CI FMAs). The tile arithmetic is written out (rows as vec4) rather than left to
// loops, so the driver's compiler never falls back to indexed private arrays.

// The six values of one dy tile row: base + coff[j], zero where masked.
fn dy_row6(base: u32, coff: array<u32, 6>, cmask: array<f32, 6>, m: f32) -> array<f32, 6> {
    return array<f32, 6>(
        dy[base + coff[0]] * (m * cmask[0]),
        dy[base + coff[1]] * (m * cmask[1]),
        dy[base + coff[2]] * (m * cmask[2]),
        dy[base + coff[3]] * (m * cmask[3]),
        dy[base + coff[4]] * (m * cmask[4]),
        dy[base + coff[5]] * (m * cmask[5]),
    );
}

// Contribution of one dy row to a row of 4 dx pixels through one kernel row w (kx = 0, 1, 2):
// out[tx] = Σ_kx w[kx] · row[tx + 2 - kx].
fn taps3(row: array<f32, 6>, w: vec3<f32>) -> vec4<f32> {
    return w.z * vec4<f32>(row[0], row[1], row[2], row[3])
        + w.y * vec4<f32>(row[1], row[2], row[3], row[4])
        + w.x * vec4<f32>(row[2], row[3], row[4], row[5]);
}

fn dx_tile3(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) {
    let blk = (wid.x + wid.z * nwg.x) * WG + lid;
    if blk >= p.blocks {
        return;
    }
    let ci0 = wid.y * CI;
    let bx = blk % p.row_blocks;
    let t = blk / p.row_blocks;
    let by = t % p.rows;
    let n = t / p.rows;
    let iy0 = by * 4u;
    let ix0 = bx * 4u;

    // dy tile rows oy = iy0 + pad_top - 2 + r and columns ox = ix0 + pad_left - 2 + j.
    var roff: array<u32, 6>;
    var rmask: array<f32, 6>;
    var coff: array<u32, 6>;
    var cmask: array<f32, 6>;
    for (var r = 0u; r < 6u; r++) {
        let oy = i32(iy0 + p.pad_top + r) - 2;
        let oky = oy >= 0 && oy < i32(p.ho);
        roff[r] = select(0u, u32(oy) * p.wo, oky);
        rmask[r] = select(0.0, 1.0, oky);
        let ox = i32(ix0 + p.pad_left + r) - 2;
        let okx = ox >= 0 && ox < i32(p.wo);
        coff[r] = select(0u, u32(ox), okx);
        cmask[r] = select(0.0, 1.0, okx);
    }
    var wcol: array<u32, CI>;
    for (var c = 0u; c < CI; c++) {
        wcol[c] = min(ci0 + c, p.cin - 1u) * 9u;
    }

    // acc[c][ty] holds dx pixels (ty, 0..3) of channel ci0 + c.
    var acc: array<array<vec4<f32>, 4>, CI>;
    let opix = p.ho * p.wo;
    var gb = n * p.cout * opix;
    var wb = 0u;
    for (var co = 0u; co < p.cout; co++) {
        let d0 = dy_row6(gb + roff[0], coff, cmask, rmask[0]);
        let d1 = dy_row6(gb + roff[1], coff, cmask, rmask[1]);
        let d2 = dy_row6(gb + roff[2], coff, cmask, rmask[2]);
        let d3 = dy_row6(gb + roff[3], coff, cmask, rmask[3]);
        let d4 = dy_row6(gb + roff[4], coff, cmask, rmask[4]);
        let d5 = dy_row6(gb + roff[5], coff, cmask, rmask[5]);
        for (var c = 0u; c < CI; c++) {
            let o = wb + wcol[c];
            let k0 = vec3<f32>(wt[o], wt[o + 1u], wt[o + 2u]);
            let k1 = vec3<f32>(wt[o + 3u], wt[o + 4u], wt[o + 5u]);
            let k2 = vec3<f32>(wt[o + 6u], wt[o + 7u], wt[o + 8u]);
            // dx row ty reads dy rows ty + 2 - ky.
            var a = acc[c];
            a[0] += taps3(d2, k0) + taps3(d1, k1) + taps3(d0, k2);
            a[1] += taps3(d3, k0) + taps3(d2, k1) + taps3(d1, k2);
            a[2] += taps3(d4, k0) + taps3(d3, k1) + taps3(d2, k2);
            a[3] += taps3(d5, k0) + taps3(d4, k1) + taps3(d3, k2);
            acc[c] = a;
        }
        gb += opix;
        wb += p.cin * 9u;
    }

    for (var c = 0u; c < CI; c++) {
        let ci = ci0 + c;
        for (var ty = 0u; ty < 4u; ty++) {
            let iy = iy0 + ty;
            let rb = ((n * p.cin + ci) * p.h + iy) * p.w;
            for (var tx = 0u; tx < 4u; tx++) {
                let ix = ix0 + tx;
                if ci < p.cin && iy < p.h && ix < p.w {
                    let g = acc[c][ty][tx] * p.out_scale;
                    dx[rb + ix] = select(g, dx[rb + ix] + g, p.accumulate != 0u);
                }
            }
        }
    }
}

// Stride 1, k = 3, fused ×2 upsampling: dx[iy, ix] = Σ_{uy, ux, ky, kx} w[ky, kx] ·
// dy[2·iy + uy + pt - ky, 2·ix + ux + pl - kx]. Summing each 2 × 2 block of dy first (once per
// output channel, shared by all CI channels) leaves a stride-2 3 × 3 correlation of those
// sums: a 4 × 4 dx tile reads a 10 × 10 dy tile, 9 × 9 block sums, and costs 144 FMAs per
// channel — a quarter of the direct sum.

fn dy_row10(base: u32, coff: array<u32, 10>, cmask: array<f32, 10>, m: f32) -> array<f32, 10> {
    return array<f32, 10>(
        dy[base + coff[0]] * (m * cmask[0]),
        dy[base + coff[1]] * (m * cmask[1]),
        dy[base + coff[2]] * (m * cmask[2]),
        dy[base + coff[3]] * (m * cmask[3]),
        dy[base + coff[4]] * (m * cmask[4]),
        dy[base + coff[5]] * (m * cmask[5]),
        dy[base + coff[6]] * (m * cmask[6]),
        dy[base + coff[7]] * (m * cmask[7]),
        dy[base + coff[8]] * (m * cmask[8]),
        dy[base + coff[9]] * (m * cmask[9]),
    );
}

// 2 × 2 block sums of two adjacent dy rows: b[j] = a[j] + a[j+1] + c[j] + c[j+1].
fn box9(a: array<f32, 10>, c: array<f32, 10>) -> array<f32, 9> {
    var v: array<f32, 10>;
    v[0] = a[0] + c[0];
    v[1] = a[1] + c[1];
    v[2] = a[2] + c[2];
    v[3] = a[3] + c[3];
    v[4] = a[4] + c[4];
    v[5] = a[5] + c[5];
    v[6] = a[6] + c[6];
    v[7] = a[7] + c[7];
    v[8] = a[8] + c[8];
    v[9] = a[9] + c[9];
    return array<f32, 9>(
        v[0] + v[1], v[1] + v[2], v[2] + v[3], v[3] + v[4], v[4] + v[5],
        v[5] + v[6], v[6] + v[7], v[7] + v[8], v[8] + v[9],
    );
}

// out[tx] = Σ_kx w[kx] · b[2·tx + 2 - kx] for tx = 0..3.
fn taps3s2(b: array<f32, 9>, w: vec3<f32>) -> vec4<f32> {
    return w.z * vec4<f32>(b[0], b[2], b[4], b[6])
        + w.y * vec4<f32>(b[1], b[3], b[5], b[7])
        + w.x * vec4<f32>(b[2], b[4], b[6], b[8]);
}

fn dx_tile3_up(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) {
    let blk = (wid.x + wid.z * nwg.x) * WG + lid;
    if blk >= p.blocks {
        return;
    }
    let ci0 = wid.y * CI;
    let bx = blk % p.row_blocks;
    let t = blk / p.row_blocks;
    let by = t % p.rows;
    let n = t / p.rows;
    let iy0 = by * 4u;
    let ix0 = bx * 4u;

    // dy tile rows oy = 2·iy0 + pad_top - 2 + r and columns ox = 2·ix0 + pad_left - 2 + j.
    var roff: array<u32, 10>;
    var rmask: array<f32, 10>;
    var coff: array<u32, 10>;
    var cmask: array<f32, 10>;
    for (var r = 0u; r < 10u; r++) {
        let oy = i32(2u * iy0 + p.pad_top + r) - 2;
        let oky = oy >= 0 && oy < i32(p.ho);
        roff[r] = select(0u, u32(oy) * p.wo, oky);
        rmask[r] = select(0.0, 1.0, oky);
        let ox = i32(2u * ix0 + p.pad_left + r) - 2;
        let okx = ox >= 0 && ox < i32(p.wo);
        coff[r] = select(0u, u32(ox), okx);
        cmask[r] = select(0.0, 1.0, okx);
    }
    var wcol: array<u32, CI>;
    for (var c = 0u; c < CI; c++) {
        wcol[c] = min(ci0 + c, p.cin - 1u) * 9u;
    }

    // acc[c][ty] holds dx pixels (ty, 0..3) of channel ci0 + c.
    var acc: array<array<vec4<f32>, 4>, CI>;
    let opix = p.ho * p.wo;
    var gb = n * p.cout * opix;
    var wb = 0u;
    for (var co = 0u; co < p.cout; co++) {
        var d: array<array<f32, 10>, 10>;
        for (var r = 0u; r < 10u; r++) {
            d[r] = dy_row10(gb + roff[r], coff, cmask, rmask[r]);
        }
        let b0 = box9(d[0], d[1]);
        let b1 = box9(d[1], d[2]);
        let b2 = box9(d[2], d[3]);
        let b3 = box9(d[3], d[4]);
        let b4 = box9(d[4], d[5]);
        let b5 = box9(d[5], d[6]);
        let b6 = box9(d[6], d[7]);
        let b7 = box9(d[7], d[8]);
        let b8 = box9(d[8], d[9]);
        for (var c = 0u; c < CI; c++) {
            let o = wb + wcol[c];
            let k0 = vec3<f32>(wt[o], wt[o + 1u], wt[o + 2u]);
            let k1 = vec3<f32>(wt[o + 3u], wt[o + 4u], wt[o + 5u]);
            let k2 = vec3<f32>(wt[o + 6u], wt[o + 7u], wt[o + 8u]);
            // dx row ty reads block-sum rows 2·ty + 2 - ky.
            var a = acc[c];
            a[0] += taps3s2(b2, k0) + taps3s2(b1, k1) + taps3s2(b0, k2);
            a[1] += taps3s2(b4, k0) + taps3s2(b3, k1) + taps3s2(b2, k2);
            a[2] += taps3s2(b6, k0) + taps3s2(b5, k1) + taps3s2(b4, k2);
            a[3] += taps3s2(b8, k0) + taps3s2(b7, k1) + taps3s2(b6, k2);
            acc[c] = a;
        }
        gb += opix;
        wb += p.cin * 9u;
    }

    for (var c = 0u; c < CI; c++) {
        let ci = ci0 + c;
        for (var ty = 0u; ty < 4u; ty++) {
            let iy = iy0 + ty;
            let rb = ((n * p.cin + ci) * p.h + iy) * p.w;
            for (var tx = 0u; tx < 4u; tx++) {
                let ix = ix0 + tx;
                if ci < p.cin && iy < p.h && ix < p.w {
                    let g = acc[c][ty][tx] * p.out_scale;
                    dx[rb + ix] = select(g, dx[rb + ix] + g, p.accumulate != 0u);
                }
            }
        }
    }
}

fn dx_s2(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, K: u32, UP: u32) {
    let blk = (wid.x + wid.z * nwg.x) * WG + lid;
    if blk >= p.blocks {
        return;
    }
    // Without upsampling, workgroup id y = channel block · 4 + py · 2 + px (dx pixel parities).
    let nph = select(1u, 4u, UP == 1u);
    let ci0 = (wid.y / nph) * CI;
    let ph = wid.y % nph;
    let py = ph / 2u;
    let px = ph % 2u;
    let step = select(1u, 2u, UP == 1u);
    let T = (K + 1u) / 2u;
    let bx = blk % p.row_blocks;
    let t = blk / p.row_blocks;
    let iy = step * (t % p.rows) + py;
    let n = t / p.rows;
    let ix0 = step * bx * PX + px;
    if iy >= p.h {
        return;
    }

    // Row entries r = uy·T + t: virtual row UP·iy + uy, tap ky = ay + 2t, dy row cy0 - t.
    var roff: array<u32, 4>;
    var rmask: array<f32, 4>;
    var rky: array<u32, 4>;
    for (var uy = 0u; uy < UP; uy++) {
        let ay = (py + uy + p.pad_top) & 1u;
        let cy0 = i32((UP * iy + uy + p.pad_top - ay) / 2u);
        for (var tt = 0u; tt < T; tt++) {
            let ky = ay + 2u * tt;
            let oy = cy0 - i32(tt);
            let ok = ky < K && oy >= 0 && oy < i32(p.ho);
            roff[uy * T + tt] = select(0u, u32(oy) * p.wo, ok);
            rmask[uy * T + tt] = select(0.0, 1.0, ok);
            rky[uy * T + tt] = min(ky, K - 1u);
        }
    }
    // Per virtual column phase ux: parity ax and the segment of dy columns cx0 - (T-1) + j.
    var cax: array<u32, 2>;
    var coff: array<u32, 10>;
    var cmask: array<f32, 10>;
    for (var ux = 0u; ux < UP; ux++) {
        let ax = (px + ux + p.pad_left) & 1u;
        cax[ux] = ax;
        let cx0 = (UP * ix0 + ux + p.pad_left - ax) / 2u;
        for (var j = 0u; j < PX + T - 1u; j++) {
            let ox = i32(cx0 + j) - i32(T - 1u);
            let ok = ox >= 0 && ox < i32(p.wo);
            coff[ux * SEG2 + j] = select(0u, u32(ox), ok);
            cmask[ux * SEG2 + j] = select(0.0, 1.0, ok);
        }
    }
    let kk = K * K;
    var wcol: array<u32, CI>;
    for (var c = 0u; c < CI; c++) {
        wcol[c] = min(ci0 + c, p.cin - 1u) * kk;
    }

    var acc: array<vec4<f32>, CI>;
    let opix = p.ho * p.wo;
    var gb = n * p.cout * opix;
    var wb = 0u;
    for (var co = 0u; co < p.cout; co++) {
        for (var r = 0u; r < UP * T; r++) {
            if rmask[r] == 0.0 {
                continue;
            }
            let rb = gb + roff[r];
            let wr = wb + rky[r] * K;
            for (var ux = 0u; ux < UP; ux++) {
                var v: array<f32, SEG2>;
                for (var j = 0u; j < PX + T - 1u; j++) {
                    v[j] = dy[rb + coff[ux * SEG2 + j]] * cmask[ux * SEG2 + j];
                }
                for (var tt = 0u; tt < T; tt++) {
                    let kx = cax[ux] + 2u * tt;
                    if kx >= K {
                        continue;
                    }
                    let o = T - 1u - tt;
                    let gv = vec4<f32>(v[o], v[o + 1u], v[o + 2u], v[o + 3u]);
                    let wi = wr + kx;
                    for (var c = 0u; c < CI; c++) {
                        acc[c] = fma(gv, vec4<f32>(wt[wi + wcol[c]]), acc[c]);
                    }
                }
            }
        }
        gb += opix;
        wb += p.cin * kk;
    }
    store(&acc, n, ci0, iy, ix0, step);
}

@compute @workgroup_size(64)
fn dx_k3s1(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dx_tile3(lid, wid, nwg);
}

@compute @workgroup_size(64)
fn dx_k1s1(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dx_s1(lid, wid, nwg, 1u, 1u);
}

@compute @workgroup_size(64)
fn dx_k3s1_up(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dx_tile3_up(lid, wid, nwg);
}

@compute @workgroup_size(64)
fn dx_k1s1_up(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dx_s1(lid, wid, nwg, 1u, 2u);
}

@compute @workgroup_size(64)
fn dx_k3s2(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dx_s2(lid, wid, nwg, 3u, 1u);
}

@compute @workgroup_size(64)
fn dx_k1s2(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dx_s2(lid, wid, nwg, 1u, 1u);
}

@compute @workgroup_size(64)
fn dx_k3s2_up(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dx_s2(lid, wid, nwg, 3u, 2u);
}

@compute @workgroup_size(64)
fn dx_k1s2_up(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dx_s2(lid, wid, nwg, 1u, 2u);
}
