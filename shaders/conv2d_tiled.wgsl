// requires: conv2d_weights_f32.wgsl
// 2-D convolution as a tiled implicit GEMM, for GPUs with fast workgroup memory. Same contract as
// conv2d.wgsl: NCHW f32, k = 1 or 3, stride 1 or 2, zero padding, optional fused nearest ×2
// upsampling of the input, fused epilogue
//   out[n, co, oy, ox] = (conv + bias[co] + temb[n, co] + residual[n, co, oy, ox]) * out_scale.
// Weights are packed [ceil(Cout / 4), Cin, k, k] × vec4 (see `cpu::conv2d::pack_weight`), i.e. a
// [Cout / 4, K] matrix of channel quads with K = Cin · k · k and kidx = (ci · k + ky) · k + kx,
// read through `wquad` (conv2d_weights_f32.wgsl, or conv2d_weights_f16.wgsl for f16 storage).
//
// GEMM view: C[co, pix] = Σ_kidx W[co, kidx] · X[kidx, pix], pix flattened over (n, oy, ox).
// A workgroup of 16 × 16 invocations computes a BM = 64 channel × BN = 64 pixel tile of C. Per
// K-step of BK = 16 it cooperatively loads the 64 × 16 weight tile (one vec4 per invocation,
// consecutive invocations reading consecutive quads of K) and the 16 × 64 im2col input tile
// (gathered on the fly, padding / stride / upsampling resolved, zeros outside; consecutive
// invocations reading consecutive output pixels) into workgroup memory, then every invocation
// accumulates a 4 channel × 4 pixel register micro-tile from it. The micro-tile's pixels are
// strided by 16 (tx, tx + 16, ...), so the input-tile reads of neighbouring invocations hit
// neighbouring banks and the output / residual accesses of a row of invocations are contiguous.

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
    stride: u32,
    // K = cin · k · k, output pixels n · ho · wo, channel quads ceil(cout / 4).
    kdim: u32,
    pixels: u32,
    quads: u32,
    // Channel tiles ceil(cout / BM) and all tiles (co_tiles · ceil(pixels / BN)).
    co_tiles: u32,
    tiles: u32,
    has_temb: u32,
    has_residual: u32,
    out_scale: f32,
    // 1: add the result to `out` instead of overwriting it.
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// Binding 2 (the packed weights) comes with the weights fragment.
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// temb [N, Cout] and residual [N, Cout, Ho, Wo]; a dummy (bias) when the flag is 0.
@group(0) @binding(4) var<storage, read> temb: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// Workgroup 16 × 16; tile BM channels (BQ quads) × BN pixels; K-step BK. The Rust side mirrors
// these (ops::conv2d_tiled).
const TX: u32 = 16u;
const TY: u32 = 16u;
const WG: u32 = TX * TY;
const BM: u32 = 64u;
const BQ: u32 = BM / 4u;
const BN: u32 = 64u;
const BK: u32 = 16u;
// Row stride (in vec4) of the weight tile: one quad of padding so that the transposing stores
// (consecutive invocations = consecutive kidx of one quad) spread over the banks.
const AS: u32 = BQ + 1u;

// Weight tile [BK][AS] of channel quads and im2col tile [BK][BN]: 4352 + 4096 bytes.
var<workgroup> a_tile: array<vec4<f32>, BK * AS>;
var<workgroup> b_tile: array<f32, BK * BN>;

// Loads K-step k0 into the workgroup tiles. Weight load: invocation lid reads quad q0 + lid / BK,
// kidx k0 + lid % BK. Input load: invocation lid gathers pixel lid % BN (precomputed: valid, its
// image's input base xb, its virtual input origin iy0 / ix0) at kidx k0 + lid / BN + 4·j.
fn load_tiles(k: u32, k0: u32, q0: u32, lid: u32, valid: bool, xb: u32, iy0: i32, ix0: i32) {
    let wk = k0 + lid % BK;
    let wq = q0 + lid / BK;
    var wv = vec4<f32>(0.0);
    if wq < p.quads && wk < p.kdim {
        wv = wquad(wq * p.kdim + wk);
    }
    a_tile[(lid % BK) * AS + lid / BK] = wv;

    let kk2 = k * k;
    let plane = p.h * p.w;
    let up = p.upsample;
    let vh = i32(p.h << up);
    let vw = i32(p.w << up);
    let col = lid % BN;
    for (var j = 0u; j < BK * BN / WG; j++) {
        let kk = lid / BN + j * (WG / BN);
        let kidx = k0 + kk;
        var v = 0.0;
        if valid && kidx < p.kdim {
            let ci = kidx / kk2;
            let r = kidx - ci * kk2;
            let ky = r / k;
            let kx = r - ky * k;
            let vy = iy0 + i32(ky);
            let vx = ix0 + i32(kx);
            if vy >= 0 && vy < vh && vx >= 0 && vx < vw {
                v = x[xb + ci * plane + (u32(vy) >> up) * p.w + (u32(vx) >> up)];
            }
        }
        b_tile[kk * BN + col] = v;
    }
}

// Adds bias, temb and residual to micro-tile pixel pix (4 channels from co0), scales, stores.
fn store_pixel(pix: u32, co0: u32, acc: vec4<f32>) {
    if pix >= p.pixels {
        return;
    }
    let hw = p.ho * p.wo;
    let n = pix / hw;
    let rem = pix - n * hw;
    for (var e = 0u; e < 4u; e++) {
        let co = co0 + e;
        if co >= p.cout {
            return;
        }
        var val = acc[e] + bias[co];
        if p.has_temb != 0u {
            val += temb[n * p.cout + co];
        }
        let o = (n * p.cout + co) * hw + rem;
        if p.has_residual != 0u {
            val += residual[o];
        }
        out[o] = select(0.0, out[o], p.accumulate != 0u) + val * p.out_scale;
    }
}

// The whole kernel for kernel size k (a constant at each call site).
fn conv_tiled(k: u32, lid: u32, wid: vec3<u32>, nwg: vec3<u32>) {
    // Workgroup-uniform: the early return keeps the barriers in uniform control flow.
    let tile = wid.x + wid.y * nwg.x;
    if tile >= p.tiles {
        return;
    }
    let q0 = (tile % p.co_tiles) * BQ;
    let pix0 = (tile / p.co_tiles) * BN;

    // This invocation's pixel for the im2col loads.
    let lpix = pix0 + lid % BN;
    let valid = lpix < p.pixels;
    let hw = p.ho * p.wo;
    let ln = lpix / hw;
    let lrem = lpix - ln * hw;
    let loy = lrem / p.wo;
    let lox = lrem - loy * p.wo;
    let iy0 = i32(loy * p.stride) - i32(p.pad_top);
    let ix0 = i32(lox * p.stride) - i32(p.pad_left);
    let xb = select(0u, ln * p.cin * p.h * p.w, valid);

    // Micro-tile: channel quad ty, pixels tx + 16·j.
    let tx = lid % TX;
    let ty = lid / TX;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let steps = (p.kdim + BK - 1u) / BK;
    for (var s = 0u; s < steps; s++) {
        load_tiles(k, s * BK, q0, lid, valid, xb, iy0, ix0);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a = a_tile[kk * AS + ty];
            let b = kk * BN + tx;
            acc0 = fma(a, vec4<f32>(b_tile[b]), acc0);
            acc1 = fma(a, vec4<f32>(b_tile[b + TX]), acc1);
            acc2 = fma(a, vec4<f32>(b_tile[b + 2u * TX]), acc2);
            acc3 = fma(a, vec4<f32>(b_tile[b + 3u * TX]), acc3);
        }
        workgroupBarrier();
    }

    let co0 = (q0 + ty) * 4u;
    let px = pix0 + tx;
    store_pixel(px, co0, acc0);
    store_pixel(px + TX, co0, acc1);
    store_pixel(px + 2u * TX, co0, acc2);
    store_pixel(px + 3u * TX, co0, acc3);
}

@compute @workgroup_size(TX, TY)
fn conv_tiled_k1(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    conv_tiled(1u, lid, wid, nwg);
}

@compute @workgroup_size(TX, TY)
fn conv_tiled_k3(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    conv_tiled(3u, lid, wid, nwg);
}
