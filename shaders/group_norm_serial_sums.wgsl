// fragment: the blocked sums of the CPU-driver GroupNorm kernels (`group_norm_serial` in
// group_norm.wgsl, `gn_backward_serial` in group_norm_backward.wgsl, which require this file),
// so that forward and backward compute bit-identical statistics. Reads the `x` binding those
// shaders declare.

const BLOCK: u32 = 256u; // blocked summation: partial sums of BLOCK values, then their sum

// Σ x[base + i] and, with `shift` = the mean, (Σ d, Σ d²) of d = x[base + i] − shift over
// i < len, in blocks of BLOCK values (each summed in 4 running sums), then the blocks' sum. The
// inner loops have no conditionals: on CPU drivers every loop-carried value costs a masked
// blend per conditional.
fn serial_sums(base: u32, len: u32, shift: f32) -> vec2<f32> {
    var total = vec2(0.0);
    for (var b0 = 0u; b0 < len; b0 += BLOCK) {
        let end = base + b0 + min(BLOCK, len - b0);
        let end4 = end - ((end - base - b0) & 3u);
        var s = vec4(0.0);
        var q = vec4(0.0);
        var k = base + b0;
        for (; k < end4; k += 4u) {
            let d = vec4(x[k], x[k + 1u], x[k + 2u], x[k + 3u]) - shift;
            s += d;
            q += d * d;
        }
        var blk = vec2((s.x + s.y) + (s.z + s.w), (q.x + q.y) + (q.z + q.w));
        for (; k < end; k++) {
            let d = x[k] - shift;
            blk += vec2(d, d * d);
        }
        total += blk;
    }
    return total;
}

