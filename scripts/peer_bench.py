#!/usr/bin/env python3
"""Peer benchmark: PyTorch on this machine's CPU, for the models and inputs `ddpm bench` times.

Run:  /opt/dvenv/bin/python scripts/peer_bench.py [--cases LIST] [--iters N] [--warmup N]
          [--threads N] [--gflop auto|none|PRESET=GFLOP,...] [--json OUT] [--check-presets]

Cases (`--cases`, comma list of KIND:PRESET:BATCH; default: all of DEFAULT_CASES below):
  forward:mnist:1, forward:mnist:16, forward:mnist:64, forward:cifar10:1  (forward:cifar10:16
      optional): eps = UNet2DModel(x, t).sample under torch.inference_mode(), random weights
      (torch.manual_seed(--seed), diffusers' default init), x ~ N(0, 1), t random integers in
      [0, 1000). `ddpm bench` uses the same shapes (its t_i = i*997 % 1000; the timing does
      not depend on t).
  train:mnist:32: one training step exactly as src/train/mod.rs `Trainer::step` does it (with
      its TrainOptions defaults): t ~ U{0..999}, eps ~ N(0, 1),
      x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (linear beta 1e-4 -> 0.02, T = 1000),
      forward, MSE(eps_hat, eps), backward, clip_grad_norm_(1.0), AdamW (lr 1e-3 with ddpm's
      100-step linear warm-up, betas (0.9, 0.999), eps 1e-8, weight_decay 0 as ddpm's trainer
      (torch's own default would be 0.01), foreach/fused left at torch defaults), EMA of a
      copy of the parameters (decay 0.999), loss.item(). x0 is fixed N(0, 0.5^2) data, as in
      `ddpm bench --train`. The noise and timesteps are drawn inside the timed step.
Each case: `--warmup` untimed runs, then the median (and min) of `--iters` timed runs.

GFLOP/s use the forward FLOP count of src/model/config.rs `forward_flops` (2 per multiply-add
in convolutions, linears and the attention core; norms/activations not counted). By default
(`--gflop auto`) it is computed here with torch.utils.flop_counter on the meta device (no
compute; it equals `ddpm info --preset NAME`'s figure: 0.147 GFLOP per mnist sample, 12.444 per
cifar10 sample); `--gflop mnist=0.147,cifar10=12.444` (GFLOP per sample) passes it in instead,
`--gflop none` leaves it out. Training steps report steps/s and images/s only.

Output, one line each (stable, whitespace-separated, key=value after the first four tokens):
  peer pytorch info torch=2.15.0+cu132 diffusers=0.42.1 threads=2 cpus=2 python=3.11.7
  peer pytorch forward mnist batch=16 ms=45.10 min_ms=44.80 gflop=2.350 gflops=52.11 iters=5 warmup=1
  peer pytorch train mnist batch=32 ms=123.40 min_ms=120.00 steps_per_s=8.10 images_per_s=259.3 iters=5 warmup=1
`--json OUT` also writes {"framework", "torch", "diffusers", "threads", ..., "results": [...]}
with every timed run in ms.

Model configs: `ddpm info` has no `--json` flag (src/cli/info.rs), so the three presets are
embedded below (PRESETS), mirroring src/model/presets.rs; keep them in sync. `--check-presets`
compares them with what the Rust side prints (`ddpm info --preset NAME`, run from
target/release/ddpm when it exists, else `cargo run --release -q --`, or `--ddpm CMD`): the
resulting diffusers configs, parameter counts and GFLOP per sample; it exits 1 on a mismatch.

Setup (what scripts/peer_setup.sh does, idempotently; PyPI only, no download.pytorch.org):
  python3 -m venv /opt/dvenv
  /opt/dvenv/bin/pip install torch==2.15.0        # pulls the nvidia-* CUDA 13 wheels (~5 GB
      # venv): PyPI's Linux wheel is the CUDA build, and `pip install --no-deps torch` (plus
      # filelock typing-extensions sympy networkx jinja2 fsspec) does not import without them:
      # "ValueError: libcublasLt.so.*[0-9] not found in the system path". CPU use is unaffected.
  /opt/dvenv/bin/pip install diffusers==0.42.1 safetensors numpy
"""

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import diffusers
from diffusers import UNet2DModel

# Mirror of src/model/presets.rs (diffusers UNet2DModel keyword arguments; everything not given
# is diffusers' default, as in the Rust JSON). Keep in sync; `--check-presets` verifies.
PRESETS = {
    # google/ddpm-cifar10-32 (Ho et al.'s CIFAR-10 model, 35.7 M parameters).
    "cifar10": dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=[128, 256, 256, 256],
        down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        layers_per_block=2,
        attention_head_dim=None,
        norm_num_groups=32,
        norm_eps=1e-6,
        downsample_padding=0,
        flip_sin_to_cos=False,
        freq_shift=1,
        act_fn="silu",
        center_input_sample=False,
        mid_block_scale_factor=1,
        resnet_time_scale_shift="default",
        time_embedding_type="positional",
    ),
    # The small 1x28x28 model this project trains and ships (0.69 M parameters).
    "mnist": dict(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=[16, 32, 64],
        down_block_types=["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
        up_block_types=["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        layers_per_block=1,
        attention_head_dim=32,
        norm_num_groups=8,
        norm_eps=1e-5,
        downsample_padding=1,
        flip_sin_to_cos=True,
        freq_shift=0,
    ),
    # Its 3x32x32 colour sibling (32/64/64 channels) for the emoji dataset.
    "emoji": dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=[32, 64, 64],
        down_block_types=["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
        up_block_types=["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        layers_per_block=1,
        attention_head_dim=32,
        norm_num_groups=8,
        norm_eps=1e-5,
        downsample_padding=1,
        flip_sin_to_cos=True,
        freq_shift=0,
    ),
}

DEFAULT_CASES = (
    "forward:mnist:1,forward:mnist:16,forward:mnist:64,forward:cifar10:1,train:mnist:32"
)

# src/train/mod.rs TrainOptions::default() and schedule::SchedulerConfig::default().
TRAIN = dict(
    lr=1e-3,
    warmup=100,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    max_grad_norm=1.0,
    ema_decay=0.999,
    beta_start=1e-4,
    beta_end=0.02,
    timesteps=1000,
)


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def build(preset: str, device=None) -> UNet2DModel:
    kw = PRESETS[preset]
    if device is None:
        return UNet2DModel(**kw)
    with torch.device(device):
        return UNet2DModel(**kw)


def sample_shape(preset: str, batch: int):
    kw = PRESETS[preset]
    s = kw["sample_size"]
    h, w = (s, s) if isinstance(s, int) else s
    return (batch, kw["in_channels"], h, w)


def gflop_per_sample(preset: str) -> float:
    """Forward GFLOP of one sample, counted as src/model/config.rs does (conv, linear and
    attention matmuls; 2 per multiply-add), from shapes alone on the meta device."""
    model = build(preset, "meta")
    x = torch.empty(sample_shape(preset, 1), device="meta")
    t = torch.zeros(1, dtype=torch.long, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, t)
    return counter.get_total_flops() / 1e9


def parse_gflop(arg: str, presets):
    """{preset: GFLOP per sample or None}."""
    if arg == "none":
        return {p: None for p in presets}
    if arg == "auto":
        return {p: gflop_per_sample(p) for p in presets}
    given = {}
    for item in arg.split(","):
        name, _, value = item.partition("=")
        if not value:
            sys.exit(f"--gflop: expected auto, none or PRESET=GFLOP,..., got `{item}`")
        given[name.strip()] = float(value)
    return {p: given.get(p) for p in presets}


def parse_cases(arg: str):
    cases = []
    for item in arg.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 3 or parts[0] not in ("forward", "train") or parts[1] not in PRESETS:
            sys.exit(
                f"--cases: `{item}` is not KIND:PRESET:BATCH with KIND forward|train and "
                f"PRESET one of {', '.join(PRESETS)}"
            )
        try:
            batch = int(parts[2])
        except ValueError:
            sys.exit(f"--cases: batch of `{item}` is not an integer")
        if batch < 1:
            sys.exit(f"--cases: batch of `{item}` must be at least 1")
        cases.append((parts[0], parts[1], batch))
    if not cases:
        sys.exit("--cases: no cases given")
    return cases


def timed(fn, iters: int, warmup: int):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(iters, 1)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def bench_forward(preset, batch, iters, warmup, seed):
    torch.manual_seed(seed)
    model = build(preset).eval()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(sample_shape(preset, batch), generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g, dtype=torch.long)

    def run():
        with torch.inference_mode():
            model(x, t).sample

    return timed(run, iters, warmup), sum(p.numel() for p in model.parameters())


def alphas_cumprod():
    c = TRAIN
    betas = torch.linspace(c["beta_start"], c["beta_end"], c["timesteps"], dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0).float()


def bench_train(preset, batch, iters, warmup, seed):
    c = TRAIN
    torch.manual_seed(seed)
    model = build(preset).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=c["lr"], betas=c["betas"], eps=c["eps"], weight_decay=c["weight_decay"]
    )
    ema = [p.detach().clone() for p in params]
    abar = alphas_cumprod()
    g = torch.Generator().manual_seed(seed + 1)
    x0 = 0.5 * torch.randn(sample_shape(preset, batch), generator=g)
    shape = (batch,) + (1,) * (x0.dim() - 1)
    state = {"step": 0}
    decay = c["ema_decay"]

    def step():
        s = state["step"]
        lr = c["lr"] * min(1.0, (s + 1) / c["warmup"]) if c["warmup"] else c["lr"]
        for group in opt.param_groups:
            group["lr"] = lr
        t = torch.randint(0, c["timesteps"], (batch,), generator=g, dtype=torch.long)
        noise = torch.randn(x0.shape, generator=g)
        a = abar[t].view(shape)
        xt = a.sqrt() * x0 + (1.0 - a).sqrt() * noise
        loss = torch.nn.functional.mse_loss(model(xt, t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, c["max_grad_norm"])
        opt.step()
        with torch.no_grad():
            if hasattr(torch, "_foreach_lerp_"):
                torch._foreach_lerp_(ema, params, 1.0 - decay)
            else:
                for e, p in zip(ema, params):
                    e.lerp_(p, 1.0 - decay)
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError(f"loss became {value} at step {s}")
        state["step"] = s + 1

    return timed(step, iters, warmup), sum(p.numel() for p in params)


def ddpm_command(arg):
    if arg:
        return shlex.split(arg)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = os.path.join(root, "target", "release", "ddpm")
    if os.path.exists(exe):
        return [exe]
    return ["cargo", "run", "--release", "-q", "--"]


def check_presets(cmd) -> bool:
    """Compares PRESETS with `ddpm info --preset NAME` (config, parameters, GFLOP)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ok = True
    for name in PRESETS:
        out = subprocess.run(
            cmd + ["info", "--preset", name], cwd=root, check=True, capture_output=True, text=True
        ).stdout
        rust, end = json.JSONDecoder().raw_decode(out.lstrip())
        rest = out.lstrip()[end:]
        with torch.device("meta"):
            theirs = UNet2DModel.from_config(rust)
        ours = build(name, "meta")
        diffs = []
        for k in sorted(set(ours.config) | set(theirs.config)):
            if k.startswith("_"):
                continue
            a, b = ours.config.get(k), theirs.config.get(k)
            if isinstance(a, tuple):
                a = list(a)
            if isinstance(b, tuple):
                b = list(b)
            if a != b:
                diffs.append(f"{k}: script {a!r} vs rust {b!r}")
        n = sum(p.numel() for p in ours.parameters())
        rust_n = gf = None
        for line in rest.splitlines():
            if line.startswith("parameters:"):
                rust_n = int(line.split()[1])
            if "GFLOP per sample" in line:
                gf = float(line.split(":")[1].split()[0])
        if rust_n != n:
            diffs.append(f"parameters: script {n} vs rust {rust_n}")
        mine = gflop_per_sample(name)
        if gf is not None and abs(mine - gf) > 0.0005 + 1e-3 * gf:
            diffs.append(f"GFLOP per sample: script {mine:.3f} vs rust {gf:.3f}")
        status = "ok" if not diffs else "MISMATCH"
        print(f"peer pytorch check {name} status={status} params={n} gflop={mine:.3f}")
        for d in diffs:
            print(f"    {d}")
        ok = ok and not diffs
    return ok


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", default=DEFAULT_CASES, help="comma list of KIND:PRESET:BATCH")
    ap.add_argument("--iters", type=int, default=5, help="timed runs per case (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    ap.add_argument("--threads", type=int, default=default_threads(), help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gflop", default="auto", help="auto | none | PRESET=GFLOP_PER_SAMPLE,...")
    ap.add_argument("--json", metavar="OUT", help="also write the results here")
    ap.add_argument(
        "--check-presets",
        action="store_true",
        help="only compare PRESETS with `ddpm info --preset NAME`, then exit",
    )
    ap.add_argument("--ddpm", help="command that runs the ddpm binary (for --check-presets)")
    args = ap.parse_args()

    torch.set_num_threads(max(args.threads, 1))
    threads = torch.get_num_threads()
    info = dict(
        torch=torch.__version__,
        diffusers=diffusers.__version__,
        threads=threads,
        cpus=default_threads(),
        python=platform.python_version(),
    )
    print("peer pytorch info " + " ".join(f"{k}={v}" for k, v in info.items()), flush=True)

    if args.check_presets:
        sys.exit(0 if check_presets(ddpm_command(args.ddpm)) else 1)

    cases = parse_cases(args.cases)
    gflop = parse_gflop(args.gflop, sorted({p for _, p, _ in cases}))
    results = []
    for kind, preset, batch in cases:
        bench = bench_forward if kind == "forward" else bench_train
        times, params = bench(preset, batch, args.iters, args.warmup, args.seed)
        ms = statistics.median(times)
        row = dict(kind=kind, preset=preset, batch=batch, ms=ms, min_ms=min(times))
        fields = [f"ms={ms:.2f}", f"min_ms={min(times):.2f}"]
        if kind == "forward":
            per = gflop[preset]
            if per is not None:
                row["gflop"] = per * batch
                row["gflops"] = per * batch / (ms / 1e3)
                fields += [f"gflop={row['gflop']:.3f}", f"gflops={row['gflops']:.2f}"]
        else:
            row["steps_per_s"] = 1e3 / ms
            row["images_per_s"] = batch * 1e3 / ms
            fields += [
                f"steps_per_s={row['steps_per_s']:.2f}",
                f"images_per_s={row['images_per_s']:.1f}",
            ]
        fields += [f"iters={len(times)}", f"warmup={args.warmup}"]
        row.update(params=params, iters=len(times), warmup=args.warmup, times_ms=times)
        results.append(row)
        print(f"peer pytorch {kind} {preset} batch={batch} " + " ".join(fields), flush=True)

    if args.json:
        doc = dict(
            framework="pytorch",
            device="cpu",
            **info,
            machine=platform.machine(),
            processor=platform.processor(),
            seed=args.seed,
            gflop_source=args.gflop,
            train=dict(TRAIN, betas=list(TRAIN["betas"])),
            results=results,
        )
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
