// fragment: the shared part of the conv2d forward kernels; conv2d.wgsl, conv2d_subgroup.wgsl and
// conv2d_subgroup16.wgsl each prepend it and complete it with their tile size (`TC`, `TQ`),
// weight loaders (`load_weights3`, `load_weights1`) and entry points (how invocations map to
// tiles). Binding 2 (the packed weights) and its readers `wquad` / `welem` come from the weights
// fragment prepended first (conv2d_weights_f32.wgsl or conv2d_weights_f16.wgsl).
//
// 2-D convolution, NCHW f32, k = 1 or 3, stride 1 or 2, zero padding, optional fused nearest ×2
// upsampling of the input, fused epilogue
//   out[n, co, oy, ox] (+)= (conv + bias[co] + temb[n, co] + residual[n, co, oy, ox]) * out_scale
// (added to the old value when `accumulate` is set).
// Weights are packed [ceil(Cout / 4), Cin, k, k] × vec4 (4 output channels, zero padded; see
// `cpu::conv2d::pack_weight`).
//
// Register blocking, no shared memory, no barriers: each invocation computes an output tile of
// 4 rows × TC columns × 4·TQ channels. For each input channel it loads the tile's weights once and
// each input value of the tile's receptive field once, and accumulates in registers. On lavapipe
// every buffer load becomes a per-lane gather, so loads per FMA is what matters; on GPUs the same
// blocking gives good reuse from registers. (More than 256 accumulators per invocation is far
// slower on lavapipe: 4 × 8 × 8 is the largest tile that stays fast.)
//
// The row schedules are written out (helpers take constant row/kernel indices) so that every
// private array is indexed by constants once the small inner loops unroll: a dynamically
// indexed private array would live in scratch memory.
//
// Padding and upsampling are resolved once per invocation by a window of row/column offsets
// (clamped in range) and 0/1 masks, so the inner loops are loads, a mask multiply and FMAs.
// `conv_up3` is the diffusers Upsample2D case (nearest ×2 then 3×3, padding 1): every output
// pixel parity is a 2×2 convolution of the original input with summed weights (4/9 of the FLOPs).
//
// The `*_body` functions run one invocation's tile: `lane` is passed through to the weight
// loaders, `store` says whether the tile is real (an invocation past the end may still have to
// run, to take part in subgroup operations).

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
    // Output tiles per tile row (ceil(wo / tile cols)), per image, channel blocks
    // (ceil(cout / (4 · TQ))) and in total (n · co_blocks · tiles_img).
    tiles_x: u32,
    tiles_img: u32,
    co_blocks: u32,
    total: u32,
    has_temb: u32,
    has_residual: u32,
    out_scale: f32,
    // 1: add the result to `out` instead of overwriting it.
    accumulate: u32,
    // Packed-weight positions between the weights of image n and n + 1: 0 (one weight for the
    // batch), or the size of one weight for the Winograd GEMM (a weight group per component).
    group_stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// Binding 2 (the packed weights) is declared by the weights fragment.
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// temb [N, Cout] and residual [N, Cout, Ho, Wo]; a dummy (bias) when the flag is 0.
@group(0) @binding(4) var<storage, read> temb: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// Output tile: TR = 4 rows × TC columns × TQ channel quads (conv_up3: 4 × TC outputs from
// 2 × TC / 2 inputs). TC (even) and TQ are set by each variant (TC · TQ ≤ 16: more than 256
// accumulators per invocation is far slower on lavapipe).
const TR: u32 = 4u;
// Input rows / columns of a tile's window: at most (TR - 1)·2 + 3 and (TC - 1)·2 + 3.
const MAX_ROWS: u32 = (TR - 1u) * 2u + 3u;
const MAX_COLS: u32 = (TC - 1u) * 2u + 3u;

// One output row of the tile: [q · TC + c] = 4 channels of quad q at column c.
alias Row = array<vec4<f32>, TC * TQ>;
// 3×3 weights of one input channel: [q · 9 + ky · 3 + kx].
alias Weights3 = array<vec4<f32>, 9u * TQ>;
// Input values of one window row.
alias InRow = array<f32, MAX_COLS>;

struct Tile {
    n: u32,
    // First channel quad, output origin.
    q0: u32,
    oy0: u32,
    ox0: u32,
    // Packed-weight index of (quad q0 + q, ci = 0, tap 0) in image n's weight group; quads past
    // cout are clamped (computed, never stored).
    wbase: array<u32, TQ>,
}

// The tile of image n, channel quads q0.., output tile `tile` (row-major over tiles_x).
fn tile_at(n: u32, q0: u32, tile: u32, kk: u32, rows: u32, cols: u32) -> Tile {
    var t: Tile;
    t.n = n;
    t.q0 = q0;
    t.oy0 = (tile / p.tiles_x) * rows;
    t.ox0 = (tile % p.tiles_x) * cols;
    let last_q = (p.cout + 3u) / 4u - 1u;
    for (var q = 0u; q < TQ; q++) {
        t.wbase[q] = n * p.group_stride + min(t.q0 + q, last_q) * p.cin * kk;
    }
    return t;
}

// Offsets (row start within a channel plane, column) and 0/1 masks of the window's input rows
// y0 + i·ystep and columns x0 + j·xstep, in virtual (upsampled when up = 1) coordinates.
struct Window {
    roff: array<u32, MAX_ROWS>,
    rmask: array<f32, MAX_ROWS>,
    coff: array<u32, MAX_COLS>,
    cmask: array<f32, MAX_COLS>,
}

fn window(y0: i32, x0: i32, nr: u32, nc: u32, ystep: u32, xstep: u32, up: u32) -> Window {
    var win: Window;
    let vh = i32(p.h << up);
    let vw = i32(p.w << up);
    for (var i = 0u; i < nr; i++) {
        let v = y0 + i32(i * ystep);
        let ok = v >= 0 && v < vh;
        win.roff[i] = select(0u, (u32(v) >> up) * p.w, ok);
        win.rmask[i] = select(0.0, 1.0, ok);
    }
    for (var j = 0u; j < nc; j++) {
        let v = x0 + i32(j * xstep);
        let ok = v >= 0 && v < vw;
        win.coff[j] = select(0u, u32(v) >> up, ok);
        win.cmask[j] = select(0.0, 1.0, ok);
    }
    return win;
}

// Window row i (nc columns) of the channel plane starting at xb; zeros in the padding.
fn load_row(win: ptr<function, Window>, xb: u32, i: u32, nc: u32) -> InRow {
    var v: InRow;
    let rb = xb + (*win).roff[i];
    let rm = (*win).rmask[i];
    for (var j = 0u; j < nc; j++) {
        v[j] = x[rb + (*win).coff[j]] * (rm * (*win).cmask[j]);
    }
    return v;
}

// Output row a += kernel row ky applied to input row v (column stride S).
fn taps3(a: ptr<function, Row>, v: InRow, S: u32, w: ptr<function, Weights3>, ky: u32) {
    for (var q = 0u; q < TQ; q++) {
        let w0 = (*w)[q * 9u + ky * 3u];
        let w1 = (*w)[q * 9u + ky * 3u + 1u];
        let w2 = (*w)[q * 9u + ky * 3u + 2u];
        for (var c = 0u; c < TC; c++) {
            var s = (*a)[q * TC + c];
            s = fma(w0, vec4<f32>(v[c * S]), s);
            s = fma(w1, vec4<f32>(v[c * S + 1u]), s);
            (*a)[q * TC + c] = fma(w2, vec4<f32>(v[c * S + 2u]), s);
        }
    }
}

// Adds bias, temb and residual to output row oy0 + r of the tile, scales and stores it.
fn store_row(t: ptr<function, Tile>, a: ptr<function, Row>, r: u32) {
    let oy = (*t).oy0 + r;
    if oy >= p.ho {
        return;
    }
    for (var q = 0u; q < TQ; q++) {
        for (var e = 0u; e < 4u; e++) {
            let co = ((*t).q0 + q) * 4u + e;
            if co >= p.cout {
                return;
            }
            var add = bias[co];
            if p.has_temb != 0u {
                add += temb[(*t).n * p.cout + co];
            }
            let ob = (((*t).n * p.cout + co) * p.ho + oy) * p.wo;
            for (var c = 0u; c < TC; c++) {
                let ox = (*t).ox0 + c;
                if ox < p.wo {
                    var val = (*a)[q * TC + c][e] + add;
                    if p.has_residual != 0u {
                        val += residual[ob + ox];
                    }
                    out[ob + ox] = select(0.0, out[ob + ox], p.accumulate != 0u) + val * p.out_scale;
                }
            }
        }
    }
}

fn store_tile(t: ptr<function, Tile>, a0: ptr<function, Row>, a1: ptr<function, Row>, a2: ptr<function, Row>, a3: ptr<function, Row>) {
    store_row(t, a0, 0u);
    store_row(t, a1, 1u);
    store_row(t, a2, 2u);
    store_row(t, a3, 3u);
}

// 3×3, stride 1: the window's 6 input rows each feed up to 3 output rows.
fn conv_k3s1_body(t: ptr<function, Tile>, lane: u32, store: bool) {
    let nc = TC + 2u;
    var win = window(i32((*t).oy0) - i32(p.pad_top), i32((*t).ox0) - i32(p.pad_left), TR + 2u, nc, 1u, 1u, p.upsample);
    var a0: Row;
    var a1: Row;
    var a2: Row;
    var a3: Row;
    let plane = p.h * p.w;
    var xb = (*t).n * p.cin * plane;
    for (var ci = 0u; ci < p.cin; ci++) {
        var w = load_weights3(t, ci, lane);
        var v = load_row(&win, xb, 0u, nc);
        taps3(&a0, v, 1u, &w, 0u);
        v = load_row(&win, xb, 1u, nc);
        taps3(&a0, v, 1u, &w, 1u);
        taps3(&a1, v, 1u, &w, 0u);
        v = load_row(&win, xb, 2u, nc);
        taps3(&a0, v, 1u, &w, 2u);
        taps3(&a1, v, 1u, &w, 1u);
        taps3(&a2, v, 1u, &w, 0u);
        v = load_row(&win, xb, 3u, nc);
        taps3(&a1, v, 1u, &w, 2u);
        taps3(&a2, v, 1u, &w, 1u);
        taps3(&a3, v, 1u, &w, 0u);
        v = load_row(&win, xb, 4u, nc);
        taps3(&a2, v, 1u, &w, 2u);
        taps3(&a3, v, 1u, &w, 1u);
        v = load_row(&win, xb, 5u, nc);
        taps3(&a3, v, 1u, &w, 2u);
        xb += plane;
    }
    if store {
        store_tile(t, &a0, &a1, &a2, &a3);
    }
}

// 3×3, stride 2: input row i feeds output row i / 2 (ky = i % 2) and, for even i ≥ 2, output
// row i / 2 - 1 (ky = 2).
fn conv_k3s2_body(t: ptr<function, Tile>, lane: u32, store: bool) {
    let nc = 2u * TC + 1u;
    var win = window(2 * i32((*t).oy0) - i32(p.pad_top), 2 * i32((*t).ox0) - i32(p.pad_left), 2u * TR + 1u, nc, 1u, 1u, p.upsample);
    var a0: Row;
    var a1: Row;
    var a2: Row;
    var a3: Row;
    let plane = p.h * p.w;
    var xb = (*t).n * p.cin * plane;
    for (var ci = 0u; ci < p.cin; ci++) {
        var w = load_weights3(t, ci, lane);
        var v = load_row(&win, xb, 0u, nc);
        taps3(&a0, v, 2u, &w, 0u);
        v = load_row(&win, xb, 1u, nc);
        taps3(&a0, v, 2u, &w, 1u);
        v = load_row(&win, xb, 2u, nc);
        taps3(&a0, v, 2u, &w, 2u);
        taps3(&a1, v, 2u, &w, 0u);
        v = load_row(&win, xb, 3u, nc);
        taps3(&a1, v, 2u, &w, 1u);
        v = load_row(&win, xb, 4u, nc);
        taps3(&a1, v, 2u, &w, 2u);
        taps3(&a2, v, 2u, &w, 0u);
        v = load_row(&win, xb, 5u, nc);
        taps3(&a2, v, 2u, &w, 1u);
        v = load_row(&win, xb, 6u, nc);
        taps3(&a2, v, 2u, &w, 2u);
        taps3(&a3, v, 2u, &w, 0u);
        v = load_row(&win, xb, 7u, nc);
        taps3(&a3, v, 2u, &w, 1u);
        v = load_row(&win, xb, 8u, nc);
        taps3(&a3, v, 2u, &w, 2u);
        xb += plane;
    }
    if store {
        store_tile(t, &a0, &a1, &a2, &a3);
    }
}

// Output row a += w · v (1×1 kernel; the window already applies the stride).
fn taps1(a: ptr<function, Row>, v: InRow, w: ptr<function, array<vec4<f32>, TQ>>) {
    for (var q = 0u; q < TQ; q++) {
        for (var c = 0u; c < TC; c++) {
            (*a)[q * TC + c] = fma((*w)[q], vec4<f32>(v[c]), (*a)[q * TC + c]);
        }
    }
}

// 1×1, any stride: output row r reads window row r (rows and columns stepped by the stride).
fn conv_k1_body(t: ptr<function, Tile>, lane: u32, store: bool) {
    let s = p.stride;
    var win = window(i32((*t).oy0 * s) - i32(p.pad_top), i32((*t).ox0 * s) - i32(p.pad_left), TR, TC, s, s, p.upsample);
    var a0: Row;
    var a1: Row;
    var a2: Row;
    var a3: Row;
    let plane = p.h * p.w;
    var xb = (*t).n * p.cin * plane;
    for (var ci = 0u; ci < p.cin; ci++) {
        var w = load_weights1(t, ci, lane);
        taps1(&a0, load_row(&win, xb, 0u, TC), &w);
        taps1(&a1, load_row(&win, xb, 1u, TC), &w);
        taps1(&a2, load_row(&win, xb, 2u, TC), &w);
        taps1(&a3, load_row(&win, xb, 3u, TC), &w);
        xb += plane;
    }
    if store {
        store_tile(t, &a0, &a1, &a2, &a3);
    }
}

// Upsample2D weights of one input channel: [q · 16 + ry · 4 + rx] where ry / rx pick a sum of
// kernel rows / columns: 0 → {0}, 1 → {1, 2}, 2 → {0, 1}, 3 → {2}. Output parity 0 uses
// (input - 1: combo 0, input: combo 1); parity 1 uses (input: combo 2, input + 1: combo 3).
alias WeightsUp = array<vec4<f32>, 16u * TQ>;

fn up_weights(w: ptr<function, Weights3>) -> WeightsUp {
    var u: WeightsUp;
    for (var q = 0u; q < TQ; q++) {
        for (var kx = 0u; kx < 3u; kx++) {
            let k0 = (*w)[q * 9u + kx];
            let k1 = (*w)[q * 9u + 3u + kx];
            let k2 = (*w)[q * 9u + 6u + kx];
            // Row combos of column kx, stored temporarily at rx = kx.
            u[q * 16u + kx] = k0;
            u[q * 16u + 4u + kx] = k1 + k2;
            u[q * 16u + 8u + kx] = k0 + k1;
            u[q * 16u + 12u + kx] = k2;
        }
        for (var ry = 0u; ry < 4u; ry++) {
            let b = q * 16u + ry * 4u;
            let c0 = u[b];
            let c1 = u[b + 1u];
            let c2 = u[b + 2u];
            u[b] = c0;
            u[b + 1u] = c1 + c2;
            u[b + 2u] = c0 + c1;
            u[b + 3u] = c2;
        }
    }
    return u;
}

// Output row a (8 columns = 4 input columns × 2 parities) += row combo ry over input row v,
// where v[j] is input column ox0 / 2 - 1 + j.
fn taps_up(a: ptr<function, Row>, v: InRow, u: ptr<function, WeightsUp>, ry: u32) {
    for (var q = 0u; q < TQ; q++) {
        let b = q * 16u + ry * 4u;
        let u0 = (*u)[b];
        let u1 = (*u)[b + 1u];
        let u2 = (*u)[b + 2u];
        let u3 = (*u)[b + 3u];
        for (var c = 0u; c < TC / 2u; c++) {
            let i0 = q * TC + 2u * c;
            (*a)[i0] = fma(u1, vec4<f32>(v[c + 1u]), fma(u0, vec4<f32>(v[c]), (*a)[i0]));
            (*a)[i0 + 1u] = fma(u3, vec4<f32>(v[c + 2u]), fma(u2, vec4<f32>(v[c + 1u]), (*a)[i0 + 1u]));
        }
    }
}

// Nearest ×2 upsampling then 3×3 conv with padding 1 (Upsample2D): the 4 × 8 output tile reads
// input rows oy0 / 2 - 1 .. + 3 and columns ox0 / 2 - 1 .. + 5 of the original input.
fn conv_up3_body(t: ptr<function, Tile>, lane: u32, store: bool) {
    let nc = TC / 2u + 2u;
    var win = window(i32((*t).oy0 / 2u) - 1, i32((*t).ox0 / 2u) - 1, TR / 2u + 2u, nc, 1u, 1u, 0u);
    // Output rows 2·r + parity of the two input rows r of the tile.
    var a0: Row;
    var a1: Row;
    var a2: Row;
    var a3: Row;
    let plane = p.h * p.w;
    var xb = (*t).n * p.cin * plane;
    for (var ci = 0u; ci < p.cin; ci++) {
        var w = load_weights3(t, ci, lane);
        var u = up_weights(&w);
        var v = load_row(&win, xb, 0u, nc);
        taps_up(&a0, v, &u, 0u);
        v = load_row(&win, xb, 1u, nc);
        taps_up(&a0, v, &u, 1u);
        taps_up(&a1, v, &u, 2u);
        taps_up(&a2, v, &u, 0u);
        v = load_row(&win, xb, 2u, nc);
        taps_up(&a1, v, &u, 3u);
        taps_up(&a2, v, &u, 1u);
        taps_up(&a3, v, &u, 2u);
        v = load_row(&win, xb, 3u, nc);
        taps_up(&a3, v, &u, 3u);
        xb += plane;
    }
    if store {
        store_tile(t, &a0, &a1, &a2, &a3);
    }
}
