// Gradients of shaders/conv2d.wgsl with respect to its weight and bias:
//   dw[co, ci, ky, kx] (+)= out_scale · Σ_{n, oy, ox} dy[n, co, oy, ox] · xv[n, ci, oy·S + ky - pt, ox·S + kx - pl]
//   db[co]             (+)= out_scale · Σ_{n, oy, ox} dy[n, co, oy, ox]
// where xv is the (optionally nearest ×2 upsampled) input, zero in the padding. NCHW f32,
// k = 1 or 3, stride 1 or 2.
//
// Two passes, no atomics, no shared memory, no barriers. The reduction over N·Ho·Wo output
// pixels is split into `chunks` chunks of `per_chunk` units; each invocation accumulates a
// block of gradient elements over its chunk in registers and writes them to
// part[chunk][co][ci][ky][kx], followed by part[chunk][Cout·Cin·K² + co] for the bias; then
// dw_reduce (one invocation per gradient element) sums the chunks, scales and writes (or adds
// to) dw / db.
//
// On CPU drivers every storage load costs far more than an FMA, so the kernels maximise the
// FMAs per loaded value with large register tiles:
// units are 4 × 4 dy tiles; an invocation owns a block of output × input channels (× taps)
// and, per tile, loads the dy values of its output channels once and the input tile of each
// of its input channels once (dw_tile3 for k = 3, dw_tile1 for k = 1).

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
    per_chunk: u32,
    chunks: u32,
    // Weight elements (Cout·Cin·K²) and all gradient elements (+ Cout) per chunk.
    nw: u32,
    total: u32,
    accumulate: u32,
    out_scale: f32,
    // Tiled kernels: 4 × 4 dy tiles per image row and column, and the numbers of output and
    // input channel blocks (invocations cover chunks × ci blocks × co blocks, co fastest).
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

// k = 3, stride S = 1 or 2 (upsampling allowed): each invocation owns T3_CO output channels ×
// T3_CI input channels × 9 taps and walks the 4 × 4 dy tiles of its chunk. Per tile it loads
// the 4 × 4 dy values of its output channels and, per input channel, the 6 × 6 (9 × 9 for
// stride 2) input tile they touch; 144 FMAs per (output, input) channel pair. Written out
// (rows as vec4) so that the driver's compiler keeps everything in registers.
const T3_CO: u32 = 16u;
const T3_CI: u32 = 8u;
const T3_WG: u32 = 8u;

// Row r of a 6 × 6 input tile: base + coff[j], zero where masked.
fn x_row6(base: u32, coff: array<u32, 9>, cmask: array<f32, 9>, m: f32) -> array<f32, 6> {
    return array<f32, 6>(
        x[base + coff[0]] * (m * cmask[0]),
        x[base + coff[1]] * (m * cmask[1]),
        x[base + coff[2]] * (m * cmask[2]),
        x[base + coff[3]] * (m * cmask[3]),
        x[base + coff[4]] * (m * cmask[4]),
        x[base + coff[5]] * (m * cmask[5]),
    );
}

// Row r of a 9 × 9 input tile (stride 2).
fn x_row9(base: u32, coff: array<u32, 9>, cmask: array<f32, 9>, m: f32) -> array<f32, 9> {
    return array<f32, 9>(
        x[base + coff[0]] * (m * cmask[0]),
        x[base + coff[1]] * (m * cmask[1]),
        x[base + coff[2]] * (m * cmask[2]),
        x[base + coff[3]] * (m * cmask[3]),
        x[base + coff[4]] * (m * cmask[4]),
        x[base + coff[5]] * (m * cmask[5]),
        x[base + coff[6]] * (m * cmask[6]),
        x[base + coff[7]] * (m * cmask[7]),
        x[base + coff[8]] * (m * cmask[8]),
    );
}

// (Σ_tx g[tx] · xr[2·tx + kx]) for kx = 0, 1, 2 (stride 2).
fn corr3s2(xr: array<f32, 9>, g: vec4<f32>) -> vec3<f32> {
    return vec3<f32>(
        dot(g, vec4<f32>(xr[0], xr[2], xr[4], xr[6])),
        dot(g, vec4<f32>(xr[1], xr[3], xr[5], xr[7])),
        dot(g, vec4<f32>(xr[2], xr[4], xr[6], xr[8])),
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

fn dw_tile3(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, S: u32) {
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
    let t0 = chunk * p.per_chunk;
    let t1 = min(t0 + p.per_chunk, p.n * tiles_img);
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
        // Input tile rows vy = S·oy0 - pad_top + r and columns vx = S·ox0 - pad_left + j
        // (virtual), r, j < 3·S + 3 - S: 6 for stride 1, 9 for stride 2.
        var xro: array<u32, 9>;
        var xrm: array<f32, 9>;
        var xco: array<u32, 9>;
        var xcm: array<f32, 9>;
        for (var r = 0u; r < 9u; r++) {
            let vy = i32(S * oy0 + r) - i32(p.pad_top);
            let oky = vy >= 0 && vy < i32(vh);
            xro[r] = select(0u, (u32(vy) >> up) * p.w, oky);
            xrm[r] = select(0.0, 1.0, oky);
            let vx = i32(S * ox0 + r) - i32(p.pad_left);
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
            if S == 1u {
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
            } else {
                let x0 = x_row9(b + xro[0], xco, xcm, xrm[0]);
                let x1 = x_row9(b + xro[1], xco, xcm, xrm[1]);
                let x2 = x_row9(b + xro[2], xco, xcm, xrm[2]);
                let x3 = x_row9(b + xro[3], xco, xcm, xrm[3]);
                let x4 = x_row9(b + xro[4], xco, xcm, xrm[4]);
                let x5 = x_row9(b + xro[5], xco, xcm, xrm[5]);
                let x6 = x_row9(b + xro[6], xco, xcm, xrm[6]);
                let x7 = x_row9(b + xro[7], xco, xcm, xrm[7]);
                let x8 = x_row9(b + xro[8], xco, xcm, xrm[8]);
                for (var t = 0u; t < T3_CO; t++) {
                    let gt = g[t];
                    var a = acc[t][c];
                    // Output row ty with kernel row ky reads input tile row 2·ty + ky.
                    a[0] += corr3s2(x0, gt[0]) + corr3s2(x2, gt[1]) + corr3s2(x4, gt[2]) + corr3s2(x6, gt[3]);
                    a[1] += corr3s2(x1, gt[0]) + corr3s2(x3, gt[1]) + corr3s2(x5, gt[2]) + corr3s2(x7, gt[3]);
                    a[2] += corr3s2(x2, gt[0]) + corr3s2(x4, gt[1]) + corr3s2(x6, gt[2]) + corr3s2(x8, gt[3]);
                    acc[t][c] = a;
                }
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

// k = 1 (stride 1 or 2, upsampling allowed), same scheme as dw_tile3: each invocation owns
// T1_CO output × T1_CI input channels and walks the 4 × 4 dy tiles of its chunk; per tile
// 16·T1_CO dy loads, 16·T1_CI input loads and 16·T1_CO·T1_CI FMAs.
const T1_CO: u32 = 16u;
const T1_CI: u32 = 16u;

fn dw_tile1(lid: u32, wid: vec3<u32>, nwg: vec3<u32>, S: u32) {
    let lane = (wid.x + wid.y * nwg.x) * T3_WG + lid;
    let cob = lane % p.co_blocks;
    let rest = lane / p.co_blocks;
    let cib = rest % p.ci_blocks;
    let chunk = rest / p.ci_blocks;
    if chunk >= p.chunks {
        return;
    }
    let co0 = cob * T1_CO;
    let ci0 = cib * T1_CI;
    let up = select(0u, 1u, p.upsample != 0u);
    let vh = p.h << up;
    let vw = p.w << up;
    let plane = p.h * p.w;
    let opix = p.ho * p.wo;
    var gco: array<u32, T1_CO>;
    for (var t = 0u; t < T1_CO; t++) {
        gco[t] = min(co0 + t, p.cout - 1u) * opix;
    }
    var xci: array<u32, T1_CI>;
    for (var c = 0u; c < T1_CI; c++) {
        xci[c] = min(ci0 + c, p.cin - 1u) * plane;
    }

    var acc: array<array<f32, T1_CI>, T1_CO>;
    var bsum: array<vec4<f32>, T1_CO>;
    let tiles_img = p.tiles_x * p.tiles_y;
    let t0 = chunk * p.per_chunk;
    let t1 = min(t0 + p.per_chunk, p.n * tiles_img);
    for (var tile = t0; tile < t1; tile++) {
        let n = tile / tiles_img;
        let ti = tile % tiles_img;
        let oy0 = (ti / p.tiles_x) * 4u;
        let ox0 = (ti % p.tiles_x) * 4u;
        // dy rows / columns of the tile (masked past Ho / Wo) and the input pixel each reads.
        var gro: array<u32, 4>;
        var grm: array<f32, 4>;
        var gcol: array<u32, 4>;
        var gcm: vec4<f32>;
        var xro: array<u32, 4>;
        var xrm: array<f32, 4>;
        var xco: array<u32, 4>;
        var xcm: vec4<f32>;
        for (var i = 0u; i < 4u; i++) {
            let oy = oy0 + i;
            let ox = ox0 + i;
            gro[i] = min(oy, p.ho - 1u) * p.wo;
            grm[i] = select(0.0, 1.0, oy < p.ho);
            gcol[i] = min(ox, p.wo - 1u);
            gcm[i] = select(0.0, 1.0, ox < p.wo);
            let vy = i32(oy * S) - i32(p.pad_top);
            let oky = vy >= 0 && vy < i32(vh);
            xro[i] = select(0u, (u32(vy) >> up) * p.w, oky);
            xrm[i] = select(0.0, 1.0, oky);
            let vx = i32(ox * S) - i32(p.pad_left);
            let okx = vx >= 0 && vx < i32(vw);
            xco[i] = select(0u, u32(vx) >> up, okx);
            xcm[i] = select(0.0, 1.0, okx);
        }
        let gb = n * p.cout * opix;
        var g: array<array<vec4<f32>, 4>, T1_CO>;
        for (var t = 0u; t < T1_CO; t++) {
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
        for (var c = 0u; c < T1_CI; c++) {
            let b = xb + xci[c];
            var xr: array<vec4<f32>, 4>;
            for (var i = 0u; i < 4u; i++) {
                let rb = b + xro[i];
                xr[i] = vec4<f32>(x[rb + xco[0]], x[rb + xco[1]], x[rb + xco[2]], x[rb + xco[3]])
                    * (xcm * xrm[i]);
            }
            for (var t = 0u; t < T1_CO; t++) {
                let gt = g[t];
                acc[t][c] += (dot(gt[0], xr[0]) + dot(gt[1], xr[1])) + (dot(gt[2], xr[2]) + dot(gt[3], xr[3]));
            }
        }
    }

    let base = chunk * p.total;
    for (var t = 0u; t < T1_CO; t++) {
        let co = co0 + t;
        for (var c = 0u; c < T1_CI; c++) {
            let ci = ci0 + c;
            if co < p.cout && ci < p.cin {
                part[base + co * p.cin + ci] = acc[t][c];
            }
        }
        if co < p.cout && cib == 0u {
            let b = bsum[t];
            part[base + p.nw + co] = (b.x + b.y) + (b.z + b.w);
        }
    }
}

@compute @workgroup_size(8)
fn dw_tile_k1s1(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dw_tile1(lid, wid, nwg, 1u);
}

@compute @workgroup_size(8)
fn dw_tile_k1s2(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dw_tile1(lid, wid, nwg, 2u);
}

@compute @workgroup_size(8)
fn dw_tile_k3s1(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dw_tile3(lid, wid, nwg, 1u);
}

@compute @workgroup_size(8)
fn dw_tile_k3s2(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    dw_tile3(lid, wid, nwg, 2u);
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
