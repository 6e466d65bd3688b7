// Backward of shaders/linear.wgsl: y = g(a), a = u·wᵀ + b, u = f(x); f, g = SiLU or identity.
// x: [N, In], w: [Out, In], b: [Out], dy: [N, Out].
// - `linear_backward_da` (only when g = SiLU): da [N, Out] = dy·SiLU'(a), recomputing a.
// - `linear_backward`: one invocation per element of dx [N, In], then dw [Out, In], then
//   db [Out] (a single flattened index range):
//     dx[n, i] = f'(x[n, i])·Σ_o da[n, o]·w[o, i],  dw[o, i] = Σ_n da[n, o]·u[n, i],
//     db[o] = Σ_n da[n, o]; da = dy when g is the identity.
// Outputs are overwritten, or added to when their accumulate flag is set.

struct Params {
    n: u32,
    in_f: u32,
    out_f: u32,
    flags: u32, // bit 0: SiLU on the input, 1: on the output, 2: accumulate dx, 3: accumulate dw/db, 4: compute dx
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;

// `linear_backward_da` bindings.
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> da_out: array<f32>;

// `linear_backward` bindings.
@group(0) @binding(3) var<storage, read> da: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> dw: array<f32>;
@group(0) @binding(6) var<storage, read_write> db: array<f32>;

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

fn silu(v: f32) -> f32 {
    return v * sigmoid(v);
}

// d SiLU(v) / dv = σ(v)·(1 + v·(1 − σ(v))).
fn silu_grad(v: f32) -> f32 {
    let s = sigmoid(v);
    return s * (1.0 + v * (1.0 - s));
}

fn input(k: u32) -> f32 {
    let v = x[k];
    if (p.flags & 1u) != 0u {
        return silu(v);
    }
    return v;
}

@compute @workgroup_size(64)
fn linear_backward_da(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= p.n * p.out_f {
        return;
    }
    let row = idx / p.out_f;
    let o = idx - row * p.out_f;
    let xb = row * p.in_f;
    let wb = o * p.in_f;
    var acc = 0.0;
    for (var i = 0u; i < p.in_f; i++) {
        acc += input(xb + i) * w[wb + i];
    }
    da_out[idx] = dy[idx] * silu_grad(acc + b[o]);
}

fn store(acc_flag: u32, v: f32, k: u32, which: u32) {
    let add = (p.flags & acc_flag) != 0u;
    switch which {
        case 0u: {
            if add { dx[k] += v; } else { dx[k] = v; }
        }
        case 1u: {
            if add { dw[k] += v; } else { dw[k] = v; }
        }
        default: {
            if add { db[k] += v; } else { db[k] = v; }
        }
    }
}

@compute @workgroup_size(64)
fn linear_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    var idx = gid.x + gid.y * nwg.x * 64u;
    let n_dx = select(0u, p.n * p.in_f, (p.flags & 16u) != 0u);
    if idx < n_dx {
        let row = idx / p.in_f;
        let i = idx - row * p.in_f;
        var acc = 0.0;
        for (var o = 0u; o < p.out_f; o++) {
            acc += da[row * p.out_f + o] * w[o * p.in_f + i];
        }
        if (p.flags & 1u) != 0u {
            acc *= silu_grad(x[idx]);
        }
        store(4u, acc, idx, 0u);
        return;
    }
    idx -= n_dx;
    let n_dw = p.out_f * p.in_f;
    if idx < n_dw {
        let o = idx / p.in_f;
        let i = idx - o * p.in_f;
        var acc = 0.0;
        for (var r = 0u; r < p.n; r++) {
            acc += da[r * p.out_f + o] * input(r * p.in_f + i);
        }
        store(8u, acc, idx, 1u);
        return;
    }
    idx -= n_dw;
    if idx < p.out_f {
        var acc = 0.0;
        for (var r = 0u; r < p.n; r++) {
            acc += da[r * p.out_f + idx];
        }
        store(8u, acc, idx, 2u);
    }
}
