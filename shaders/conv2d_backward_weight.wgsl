// Gradients of shaders/conv2d.wgsl with respect to its weight and bias:
//   dw[co, ci, ky, kx] (+)= out_scale · Σ_{n, oy, ox} dy[n, co, oy, ox] · xv[n, ci, oy·S + ky - pt, ox·S + kx - pl]
//   db[co]             (+)= out_scale · Σ_{n, oy, ox} dy[n, co, oy, ox]
// where xv is the (optionally nearest ×2 upsampled) input, zero in the padding. NCHW f32,
// k = 1 or 3, stride 1 or 2.
//
// Two passes, no atomics, no shared memory, no barriers:
// 1. dw_partial: the reduction over the N·Ho dy rows is split into `chunks` chunks of
//    `rows_per_chunk` rows (workgroup id x). Each invocation owns CO_T output channels (its lane
//    in the workgroup; dy loads differ per lane) × CIB input channels (workgroup id z, so every x
//    load is uniform across the workgroup) × K² taps, accumulated in registers. It walks its
//    rows PX output pixels at a time: loads PX dy values per output channel, then per input
//    channel and kernel row the SEG = (PX-1)·S + K input values the PX pixels touch, and reuses
//    each for every kernel column and output channel. Partial sums go to
//    part[chunk][co][ci][ky][kx], followed by part[chunk][Cout·Cin·K² + co] for the bias.
// 2. dw_reduce: one invocation per gradient element sums the chunks, scales and writes
//    (or adds to) dw / db.

struct Params {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    upsample: u32,
    pad_top: u32,
    pad_left: u32,
    rows_per_chunk: u32,
    chunks: u32,
    // Weight elements (Cout·Cin·K²) and all gradient elements (+ Cout) per chunk.
    nw: u32,
    total: u32,
    accumulate: u32,
    out_scale: f32,
    // dw_tile3: 4 × 4 dy tiles per image row and column, and channel blocks of output and input
    // channels (the lanes cover chunks × ci blocks × co blocks, co block fastest).
    tiles_x: u32,
    tiles_y: u32,
    co_blocks: u32,
    ci_blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read_write> dw: array<f32>;
@group(0) @binding(5) var<storage, read_write> db: array<f32>;

// Lanes per workgroup, output channels per lane, output pixels per step.
const WGW: u32 = 8u;
const CO_T: u32 = 4u;
const PX: u32 = 4u;
// Input channels per invocation for k = 3 and k = 1.
const CIB3: u32 = 2u;
const CIB1: u32 = 16u;
// CO_T · CIB · K², the larger of the two.
const ACC: u32 = 72u;
// Largest segment: (PX - 1) · 2 + 3.
const SEG_MAX: u32 = 9u;

fn partial(lid: u32, wid: vec3<u32>, K: u32, S: u32) {
    let CIB = select(CIB3, CIB1, K == 1u);
    let kk = K * K;
    let chunk = wid.x;
    let co0 = (wid.y * WGW + lid) * CO_T;
    let ci0 = wid.z * CIB;
    let up = select(0u, 1u, p.upsample != 0u);
    let vh = p.h << up;
    let vw = p.w << up;
    let plane = p.h * p.w;
    let opix = p.ho * p.wo;
    let seg = (PX - 1u) * S + K;
    // Output channels past cout read channel cout-1 and are not stored.
    var gco: array<u32, CO_T>;
    for (var t = 0u; t < CO_T; t++) {
        gco[t] = min(co0 + t, p.cout - 1u) * opix;
    }

    var acc: array<f32, ACC>;
    var bsum: array<vec4<f32>, CO_T>;
    let r0 = chunk * p.rows_per_chunk;
    let r1 = min(r0 + p.rows_per_chunk, p.n * p.ho);
    for (var row = r0; row < r1; row++) {
        let oy = row % p.ho;
        let n = row / p.ho;
        var roff: array<u32, 3>;
        var rmask: array<f32, 3>;
        for (var ky = 0u; ky < K; ky++) {
            let vy = i32(oy * S + ky) - i32(p.pad_top);
            let ok = vy >= 0 && vy < i32(vh);
            roff[ky] = select(0u, (u32(vy) >> up) * p.w, ok);
            rmask[ky] = select(0.0, 1.0, ok);
        }
        let xb = (n * p.cin + ci0) * plane;
        let gb = n * p.cout * opix + oy * p.wo;
        for (var ox0 = 0u; ox0 < p.wo; ox0 += PX) {
            var g: array<vec4<f32>, CO_T>;
            for (var i = 0u; i < PX; i++) {
                let ox = ox0 + i;
                let ok = ox < p.wo;
                let m = select(0.0, 1.0, ok);
                let oc = select(0u, ox, ok);
                for (var t = 0u; t < CO_T; t++) {
                    g[t][i] = dy[gb + gco[t] + oc] * m;
                }
            }
            for (var t = 0u; t < CO_T; t++) {
                bsum[t] += g[t];
            }
            var coff: array<u32, SEG_MAX>;
            var cmask: array<f32, SEG_MAX>;
            for (var j = 0u; j < seg; j++) {
                let vx = i32(ox0 * S + j) - i32(p.pad_left);
                let ok = vx >= 0 && vx < i32(vw);
                coff[j] = select(0u, u32(vx) >> up, ok);
                cmask[j] = select(0.0, 1.0, ok);
            }
            for (var c = 0u; c < CIB; c++) {
                // Channels past cin read channel 0 of the block's image; they are not stored.
                let cb = xb + select(c * plane, 0u, ci0 + c >= p.cin);
                for (var ky = 0u; ky < K; ky++) {
                    let rb = cb + roff[ky];
                    var v: array<f32, SEG_MAX>;
                    for (var j = 0u; j < seg; j++) {
                        v[j] = x[rb + coff[j]] * (rmask[ky] * cmask[j]);
                    }
                    for (var kx = 0u; kx < K; kx++) {
                        let xv = vec4<f32>(v[kx], v[S + kx], v[2u * S + kx], v[3u * S + kx]);
                        for (var t = 0u; t < CO_T; t++) {
                            let a = (t * CIB + c) * kk + ky * K + kx;
                            acc[a] += dot(xv, g[t]);
                        }
                    }
                }
            }
        }
    }

    let base = chunk * p.total;
    // (Constant trip counts with guarded bodies, so the loops unroll and acc stays in registers.)
    for (var t = 0u; t < CO_T; t++) {
        let co = co0 + t;
        for (var c = 0u; c < CIB; c++) {
            let ci = ci0 + c;
            if co < p.cout && ci < p.cin {
                let o = base + (co * p.cin + ci) * kk;
                for (var k = 0u; k < kk; k++) {
                    part[o + k] = acc[(t * CIB + c) * kk + k];
                }
            }
        }
        if co < p.cout && wid.z == 0u {
            let b = bsum[t];
            part[base + p.nw + co] = (b.x + b.y) + (b.z + b.w);
        }
    }
}

// Stride 1, k = 3 (upsampling allowed): each invocation owns T3_CO output channels × T3_CI
// input channels × 9 taps and walks the 4 × 4 dy tiles of its chunk. Per tile it loads the
// 4 × 4 dy values of its output channels and, per input channel, the 6 × 6 input tile they
// touch; 144 FMAs per (output, input) channel pair. Written out (rows as vec4) so that the
// driver's compiler keeps everything in registers.
const T3_CO: u32 = 16u;
const T3_CI: u32 = 8u;
const T3_WG: u32 = 8u;

// Row r of a 6 × 6 input tile: base + coff[j], zero where masked.
fn x_row6(base: u32, coff: array<u32, 6>, cmask: array<f32, 6>, m: f32) -> array<f32, 6> {
    return array<f32, 6>(
        x[base + coff[0]] * (m * cmask[0]),
        x[base + coff[1]] * (m * cmask[1]),
        x[base + coff[2]] * (m * cmask[2]),
        x[base + coff[3]] * (m * cmask[3]),
        x[base + coff[4]] * (m * cmask[4]),
        x[base + coff[5]] * (m * cmask[5]),
    );
}

// (Σ_tx g[tx] · xr[tx + kx]) for kx = 0, 1, 2.
fn corr3(xr: array<f32, 6>, g: vec4<f32>) -> vec3<f32> {
    return vec3<f32>(
        dot(g, vec4<f32>(xr[0], xr[1], xr[2], xr[3])),
        dot(g, vec4<f32>(xr[1], xr[2], xr[3], xr[4])),
        dot(g, vec4<f32>(xr[2], xr[3], xr[4], xr[5])),
    );
}

fn dw_tile3(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) {
    let lane = (wid.x + wid.y * nwg.x) * T3_WG + lid;
    let cob = lane % p.co_blocks;
    let rest = lane / p.co_blocks;
    let cib = rest % p.ci_blocks;
    let chunk = rest / p.ci_blocks;
    if chunk >= p.chunks {
        return;
    }
    let co0 = cob * T3_CO;
    let ci0 = cib * T3_CI;
    let up = select(0u, 1u, p.upsample != 0u);
    let vh = p.h << up;
    let vw = p.w << up;
    let plane = p.h * p.w;
    let opix = p.ho * p.wo;
    // Channels past cout / cin read the last channel and are not stored.
    var gco: array<u32, T3_CO>;
    for (var t = 0u; t < T3_CO; t++) {
        gco[t] = min(co0 + t, p.cout - 1u) * opix;
    }
    var xci: array<u32, T3_CI>;
    for (var c = 0u; c < T3_CI; c++) {
        xci[c] = min(ci0 + c, p.cin - 1u) * plane;
    }

    // acc[t][c][ky] = taps kx = 0, 1, 2 of (co0 + t, ci0 + c, ky).
    var acc: array<array<array<vec3<f32>, 3>, T3_CI>, T3_CO>;
    var bsum: array<vec4<f32>, T3_CO>;
    let tiles_img = p.tiles_x * p.tiles_y;
    let t0 = chunk * p.rows_per_chunk;
    let t1 = min(t0 + p.rows_per_chunk, p.n * tiles_img);
    for (var tile = t0; tile < t1; tile++) {
        let n = tile / tiles_img;
        let ti = tile % tiles_img;
        let oy0 = (ti / p.tiles_x) * 4u;
        let ox0 = (ti % p.tiles_x) * 4u;
        // dy rows/columns of the tile (masked past Ho / Wo).
        var gro: array<u32, 4>;
        var grm: array<f32, 4>;
        var gcm: vec4<f32>;
        var gcol: array<u32, 4>;
        for (var i = 0u; i < 4u; i++) {
            let oy = oy0 + i;
            let ox = ox0 + i;
            gro[i] = min(oy, p.ho - 1u) * p.wo;
            grm[i] = select(0.0, 1.0, oy < p.ho);
            gcol[i] = min(ox, p.wo - 1u);
            gcm[i] = select(0.0, 1.0, ox < p.wo);
        }
        // Input tile rows vy = oy0 - pad_top + r and columns vx = ox0 - pad_left + j (virtual).
        var xro: array<u32, 6>;
        var xrm: array<f32, 6>;
        var xco: array<u32, 6>;
        var xcm: array<f32, 6>;
        for (var r = 0u; r < 6u; r++) {
            let vy = i32(oy0 + r) - i32(p.pad_top);
            let oky = vy >= 0 && vy < i32(vh);
            xro[r] = select(0u, (u32(vy) >> up) * p.w, oky);
            xrm[r] = select(0.0, 1.0, oky);
            let vx = i32(ox0 + r) - i32(p.pad_left);
            let okx = vx >= 0 && vx < i32(vw);
            xco[r] = select(0u, u32(vx) >> up, okx);
            xcm[r] = select(0.0, 1.0, okx);
        }
        let gb = n * p.cout * opix;
        var g: array<array<vec4<f32>, 4>, T3_CO>;
        for (var t = 0u; t < T3_CO; t++) {
            let b = gb + gco[t];
            var rows: array<vec4<f32>, 4>;
            for (var i = 0u; i < 4u; i++) {
                let rb = b + gro[i];
                rows[i] = vec4<f32>(dy[rb + gcol[0]], dy[rb + gcol[1]], dy[rb + gcol[2]], dy[rb + gcol[3]])
                    * (gcm * grm[i]);
            }
            g[t] = rows;
            bsum[t] += (rows[0] + rows[1]) + (rows[2] + rows[3]);
        }
        let xb = n * p.cin * plane;
        for (var c = 0u; c < T3_CI; c++) {
            let b = xb + xci[c];
            let x0 = x_row6(b + xro[0], xco, xcm, xrm[0]);
            let x1 = x_row6(b + xro[1], xco, xcm, xrm[1]);
            let x2 = x_row6(b + xro[2], xco, xcm, xrm[2]);
            let x3 = x_row6(b + xro[3], xco, xcm, xrm[3]);
            let x4 = x_row6(b + xro[4], xco, xcm, xrm[4]);
            let x5 = x_row6(b + xro[5], xco, xcm, xrm[5]);
            for (var t = 0u; t < T3_CO; t++) {
                let gt = g[t];
                var a = acc[t][c];
                // Output row ty with kernel row ky reads input tile row ty + ky.
                a[0] += corr3(x0, gt[0]) + corr3(x1, gt[1]) + corr3(x2, gt[2]) + corr3(x3, gt[3]);
                a[1] += corr3(x1, gt[0]) + corr3(x2, gt[1]) + corr3(x3, gt[2]) + corr3(x4, gt[3]);
                a[2] += corr3(x2, gt[0]) + corr3(x3, gt[1]) + corr3(x4, gt[2]) + corr3(x5, gt[3]);
                acc[t][c] = a;
            }
        }
    }

    let base = chunk * p.total;
    for (var t = 0u; t < T3_CO; t++) {
        let co = co0 + t;
        for (var c = 0u; c < T3_CI; c++) {
            let ci = ci0 + c;
            if co < p.cout && ci < p.cin {
                let o = base + (co * p.cin + ci) * 9u;
                let a = acc[t][c];
                for (var ky = 0u; ky < 3u; ky++) {
                    let k = a[ky];
                    part[o + ky * 3u] = k.x;
                    part[o + ky * 3u + 1u] = k.y;
                    part[o + ky * 3u + 2u] = k.z;
                }
            }
        }
        if co < p.cout && cib == 0u {
            let b = bsum[t];
            part[base + p.nw + co] = (b.x + b.y) + (b.z + b.w);
        }
    }
}

@compute @workgroup_size(8)
fn dw_tile_k3s1(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dw_tile3(lid, wid, nwg);
}

@compute @workgroup_size(8)
fn dw_k3s2(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    partial(lid, wid, 3u, 2u);
}

@compute @workgroup_size(8)
fn dw_k1s1(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    partial(lid, wid, 1u, 1u);
}

@compute @workgroup_size(8)
fn dw_k1s2(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    partial(lid, wid, 1u, 2u);
}

// One invocation per gradient element e < total: dw[e] (e < nw) or db[e - nw].
@compute @workgroup_size(64)
fn dw_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if e >= p.total {
        return;
    }
    var s = 0.0;
    for (var c = 0u; c < p.chunks; c++) {
        s += part[c * p.total + e];
    }
    s *= p.out_scale;
    if e < p.nw {
        dw[e] = select(s, dw[e] + s, p.accumulate != 0u);
    } else {
        let b = e - p.nw;
        db[b] = select(s, db[b] + s, p.accumulate != 0u);
    }
}
