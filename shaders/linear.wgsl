// torch.nn.Linear with optional SiLU on the input and/or the output:
// y[n, o] = g(Σ_i f(x[n, i]) · w[o, i] + b[o]), f, g = SiLU or identity.
// x: [N, In], w: [Out, In], b: [Out], y: [N, Out]. One invocation per output element.

struct Params {
    n: u32,
    in_f: u32,
    out_f: u32,
    flags: u32, // bit 0: SiLU on the input, bit 1: SiLU on the output
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

@compute @workgroup_size(64)
fn linear(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= p.n * p.out_f {
        return;
    }
    let row = idx / p.out_f;
    let o = idx - row * p.out_f;
    let xb = row * p.in_f;
    let wb = o * p.in_f;
    let silu_in = (p.flags & 1u) != 0u;
    var acc = 0.0;
    for (var i = 0u; i < p.in_f; i++) {
        var v = x[xb + i];
        if silu_in {
            v = silu(v);
        }
        acc += v * w[wb + i];
    }
    acc += b[o];
    if (p.flags & 2u) != 0u {
        acc = silu(acc);
    }
    y[idx] = acc;
}
