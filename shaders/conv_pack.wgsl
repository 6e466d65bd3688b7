// Packs PyTorch conv weights [Cout, Cin, k, k] into the conv kernel's layout
// [ceil(Cout/4), Cin, k, k, 4]: out[((co/4)·inner + i)·4 + co%4] = w[co·inner + i], where
// inner = Cin·k·k; lanes past Cout are zero. One invocation per packed element.

struct Params {
    // Output channels and inner size (input channels · k · k) of the packed weight.
    cout: u32,
    inner: u32,
    total: u32, // ceil(cout/4)·inner·4
    // Kernel size (pack_flipped_transposed only).
    k: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> packed: array<f32>;

@compute @workgroup_size(256)
fn pack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * 256u;
    if o >= p.total {
        return;
    }
    let lane = o % 4u;
    let rest = o / 4u;
    let i = rest % p.inner;
    let co = (rest / p.inner) * 4u + lane;
    if co < p.cout {
        packed[o] = w[co * p.inner + i];
    } else {
        packed[o] = 0.0;
    }
}

// The weight of the convolution that computes a stride-1 conv's input gradient:
// w' [Cin, Cout, k, k] with w'[ci, co, ky, kx] = w[co, ci, k-1-ky, k-1-kx] (flipping both taps
// is flipping the flat tap index), packed like any conv weight: [ceil(Cin/4), Cout, k, k, 4].
@compute @workgroup_size(256)
fn pack_flipped_transposed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * 256u;
    if o >= p.total {
        return;
    }
    let lane = o % 4u;
    let rest = o / 4u;
    let i = rest % p.inner;
    let ci = (rest / p.inner) * 4u + lane; // an output channel of w'
    let kk = p.k * p.k;
    let co = i / kk;
    let tap = i % kk;
    let flipped = kk - 1u - tap;
    if ci < p.cout {
        packed[o] = w[(co * p.cout + ci) * kk + flipped];
    } else {
        packed[o] = 0.0;
    }
}
