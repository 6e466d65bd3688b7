// Channel concatenation (diffusers up blocks: torch.cat([h, skip], dim=1)) and its gradient, as
// block copies. For every batch item n < N (workgroup id y) and j < len:
//   dst[n·dst_row + dst_off + j] = src[n·src_row + src_off + j]     (`copy_block`)
//   dst[n·dst_row + dst_off + j] += src[n·src_row + src_off + j]    (`add_block`)
// concat a [N, Ca, S] ‖ b [N, Cb, S] → out: a → out (dst_off 0), then b → out (dst_off Ca·S);
// its gradient: dy → da (src_off 0) and dy → db (src_off Ca·S). One launch per part: no
// per-element branch on which part an element belongs to (CPU drivers run both sides of a
// branch) and no per-element division for the batch index (the grid gives it).

struct Params {
    n: u32,       // N
    len: u32,     // values per batch item: Ca·S or Cb·S
    src_row: u32, // values per batch item of src
    src_off: u32,
    dst_row: u32, // values per batch item of dst
    dst_off: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

const PER: u32 = 4u; // consecutive values per invocation

fn block(gid: vec3<u32>, add: bool) {
    let n = gid.y;
    let j0 = gid.x * PER;
    if n >= p.n || j0 >= p.len {
        return;
    }
    let s = n * p.src_row + p.src_off + j0;
    let d = n * p.dst_row + p.dst_off + j0;
    let m = min(PER, p.len - j0);
    for (var k = 0u; k < m; k++) {
        if add {
            dst[d + k] += src[s + k];
        } else {
            dst[d + k] = src[s + k];
        }
    }
}

@compute @workgroup_size(256)
fn copy_block(@builtin(global_invocation_id) gid: vec3<u32>) {
    block(gid, false);
}

@compute @workgroup_size(256)
fn add_block(@builtin(global_invocation_id) gid: vec3<u32>) {
    block(gid, true);
}
