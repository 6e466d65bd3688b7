// Winograd F(2×2, 3×3) for the stride-1 3×3 convolutions (variants `winograd` and `winograd16`,
// src/ops/conv2d_winograd.rs): out = Aᵀ [Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B)] A per 2×2 output tile, 16
// multiplies per tile and channel pair where the direct convolution does 36. Three passes around
// a batched 1×1 convolution (the GEMM, run by a conv2d `conv_k1` kernel with one weight group per
// component):
//   input_tiles   x [N, Cin, H, W] → V [16, Cin, plane]: the 4×4 input patch of every tile,
//                 transformed (Bᵀ d B), one invocation per (channel, tile);
//   (GEMM)        M [16, Cout, plane] = U [16] · V [16] (conv2d_winograd_weights.wgsl makes U);
//   output_tiles  M → out [N, Cout, Ho, Wo]: Aᵀ m A plus the conv epilogue
//                 (bias, temb, residual, scale, accumulate), one invocation per (channel, tile).
// Tile j = (n · th + ty) · tw + tx covers output rows 2·ty, 2·ty + 1 and columns 2·tx, 2·tx + 1;
// its patch starts at input (2·ty - pad_top, 2·tx - pad_left), zeros outside the image. A plane
// holds n · th · tw tiles and is padded to `plane` (the GEMM's 4 × plane/4 image); the padding is
// never read back.

struct Params {
    n: u32,
    // Channels of the tensor this pass reads (input_tiles: Cin) or writes (output_tiles: Cout).
    c: u32,
    // Input height and width (input_tiles).
    h: u32,
    w: u32,
    // Output height and width (output_tiles).
    ho: u32,
    wo: u32,
    // Tiles per column and per row: ceil(ho / 2), ceil(wo / 2).
    th: u32,
    tw: u32,
    pad_top: u32,
    pad_left: u32,
    // Elements per (component, channel) plane of V and M.
    plane: u32,
    // Invocations: c · n · th · tw.
    total: u32,
    has_temb: u32,
    has_residual: u32,
    out_scale: f32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// input_tiles: x; output_tiles: M.
@group(0) @binding(1) var<storage, read> src: array<f32>;
// output_tiles only (the input pass binds placeholders).
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> temb: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
// input_tiles: V; output_tiles: out.
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;

const WG: u32 = 64u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Invocation i of a pass: channel c (of the tensor read or written), tile j of the plane, and
// that tile's image and position.
struct TileIndex {
    c: u32,
    j: u32,
    n: u32,
    ty: u32,
    tx: u32,
}

fn tile_of(i: u32) -> TileIndex {
    let per_img = p.th * p.tw;
    let tiles = p.n * per_img;
    let j = i % tiles;
    return TileIndex(i / tiles, j, j / per_img, (j % per_img) / p.tw, j % p.tw);
}

// Input row y, columns x0 .. x0 + 3 of channel plane `base`, zeros outside the image: every load
// is unconditional (indices clamped into the image, the value masked), no branches.
fn patch_row(base: u32, y: i32, x0: i32) -> vec4<f32> {
    let yc = u32(clamp(y, 0, i32(p.h) - 1));
    let ym = select(0.0, 1.0, y >= 0 && y < i32(p.h));
    let rb = base + yc * p.w;
    let xs = vec4<i32>(x0, x0 + 1, x0 + 2, x0 + 3);
    let xc = vec4<u32>(clamp(xs, vec4<i32>(0), vec4<i32>(i32(p.w) - 1)));
    let xm = select(vec4<f32>(0.0), vec4<f32>(ym), xs >= vec4<i32>(0) & xs < vec4<i32>(i32(p.w)));
    return vec4<f32>(src[rb + xc.x], src[rb + xc.y], src[rb + xc.z], src[rb + xc.w]) * xm;
}

// Bᵀ r B applied along one row: (r0 - r2, r1 + r2, r2 - r1, r1 - r3).
fn bt(r: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(r.x - r.z, r.y + r.z, r.z - r.y, r.y - r.w);
}

@compute @workgroup_size(64)
fn input_tiles(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let t = tile_of(i);
    let base = (t.n * p.c + t.c) * p.h * p.w;
    let y0 = i32(2u * t.ty) - i32(p.pad_top);
    let x0 = i32(2u * t.tx) - i32(p.pad_left);
    let d0 = patch_row(base, y0, x0);
    let d1 = patch_row(base, y0 + 1, x0);
    let d2 = patch_row(base, y0 + 2, x0);
    let d3 = patch_row(base, y0 + 3, x0);
    // Bᵀ d (rows), then each row · B.
    let v = array<vec4<f32>, 4>(bt(d0 - d2), bt(d1 + d2), bt(d2 - d1), bt(d1 - d3));
    let stride = p.c * p.plane;
    var o = t.c * p.plane + t.j;
    for (var r = 0u; r < 4u; r++) {
        for (var s = 0u; s < 4u; s++) {
            dst[o] = v[r][s];
            o += stride;
        }
    }
}

// Aᵀ r A along one row of 4: (r0 + r1 + r2, r1 - r2 - r3).
fn at(r: vec4<f32>) -> vec2<f32> {
    return vec2<f32>(r.x + r.y + r.z, r.y - r.z - r.w);
}

@compute @workgroup_size(64)
fn output_tiles(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.total {
        return;
    }
    let t = tile_of(i);
    let k = t.c;
    let n = t.n;
    let ty = t.ty;
    let tx = t.tx;
    let stride = p.c * p.plane;
    var m: array<vec4<f32>, 4>;
    var o = k * p.plane + t.j;
    for (var r = 0u; r < 4u; r++) {
        for (var s = 0u; s < 4u; s++) {
            m[r][s] = src[o];
            o += stride;
        }
    }
    // Aᵀ m (2 rows of 4), then each row · A.
    let y0 = at(m[0] + m[1] + m[2]);
    let y1 = at(m[1] - m[2] - m[3]);
    let y = array<vec2<f32>, 2>(y0, y1);
    var add = bias[k];
    if p.has_temb != 0u {
        add += temb[n * p.c + k];
    }
    let plane_out = (n * p.c + k) * p.ho;
    let whole = 2u * ty + 1u < p.ho && 2u * tx + 1u < p.wo;
    if whole && p.has_residual == 0u && p.accumulate == 0u {
        // The common case without per-element conditions.
        let ob = (plane_out + 2u * ty) * p.wo + 2u * tx;
        dst[ob] = (y0.x + add) * p.out_scale;
        dst[ob + 1u] = (y0.y + add) * p.out_scale;
        dst[ob + p.wo] = (y1.x + add) * p.out_scale;
        dst[ob + p.wo + 1u] = (y1.y + add) * p.out_scale;
        return;
    }
    for (var r = 0u; r < 2u; r++) {
        let oy = 2u * ty + r;
        if oy >= p.ho {
            break;
        }
        let ob = (plane_out + oy) * p.wo;
        for (var s = 0u; s < 2u; s++) {
            let ox = 2u * tx + s;
            if ox < p.wo {
                var val = y[r][s] + add;
                if p.has_residual != 0u {
                    val += residual[ob + ox];
                }
                dst[ob + ox] = select(0.0, dst[ob + ox], p.accumulate != 0u) + val * p.out_scale;
            }
        }
    }
}
