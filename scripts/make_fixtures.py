#!/usr/bin/env python3
"""Parity fixtures for the ddpm crate, generated with real diffusers (0.42) + torch.

Run:  /opt/dvenv/bin/python scripts/make_fixtures.py --out tests/fixtures

Writes, per model fixture (`unet_tiny`, `unet_ddpm_style`, `unet_celebahq_style`,
`unet_class_cond` (+ labels.npy); `--only NAME` regenerates one):
  config.json, diffusion_pytorch_model.safetensors   (diffusers' save_pretrained)
  x.npy        [N, C, H, W] float32 input
  t.npy        [N] float32 timesteps (integers)
  eps.npy      [N, C, H, W] float32: model(x, t).sample with the float32 model
  eps_f64.npy  [N, C, H, W] float64: the same with model.double() (diffusers still computes the
               sinusoidal timestep embedding in float32, then casts it)
  params.json  [[name, shape], ...] in state_dict order
and, for more configs (no weights), params/<name>/{config.json, params.json} so the Rust
`expected_params` can be checked against diffusers' state_dict without storing the weights.

`unet_ddpm_style` stores its weights as float16 with pre-0.13 attention names
(query/key/value/proj_attn); its reference outputs come from the float16-rounded weights,
loaded back through diffusers' own legacy-name conversion.
"""

import argparse
import json
import os
import shutil

import numpy as np
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file

WEIGHTS = "diffusion_pytorch_model.safetensors"

LEGACY = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def perturb(model: UNet2DModel, seed: int) -> None:
    """Move GroupNorm affine params off 1/0 and jitter all biases, so every parameter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if isinstance(model.get_submodule(name.rsplit(".", 1)[0]), torch.nn.GroupNorm):
                p.add_(0.2 * noise)
            elif name.endswith(".bias"):
                p.add_(0.05 * noise)


def params_list(model: UNet2DModel):
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def write_json(path, rows):
    """A JSON list, one compact row per line."""
    with open(path, "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")


def reference(model: UNet2DModel, x: torch.Tensor, t: torch.Tensor):
    """eps in float32 and float64."""
    model = model.float().eval()
    with torch.no_grad():
        eps = model(x, t).sample
        eps64 = model.double()(x.double(), t).sample
    model.float()
    return eps.numpy().astype(np.float32), eps64.numpy().astype(np.float64)


def save_io(d, x, t, eps, eps64):
    np.save(os.path.join(d, "x.npy"), x.numpy().astype(np.float32))
    np.save(os.path.join(d, "t.npy"), t.numpy().astype(np.float32))
    np.save(os.path.join(d, "eps.npy"), eps)
    np.save(os.path.join(d, "eps_f64.npy"), eps64)


def check_params(model, d):
    """The saved file holds exactly the state_dict (modulo renames done by the caller)."""
    sd = model.state_dict()
    loaded = UNet2DModel.from_pretrained(d, torch_dtype=torch.float32)
    for k, v in loaded.state_dict().items():
        assert v.dtype == torch.float32, k
        assert v.shape == sd[k].shape, k
    return loaded


# The `unet_tiny` architecture (also `unet_class_cond`'s, with a class embedding).
TINY = dict(
    sample_size=16,
    in_channels=1,
    out_channels=1,
    block_out_channels=(16, 32, 32),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1,
    norm_num_groups=8,
    attention_head_dim=8,
)


def make_tiny(out):
    d = os.path.join(out, "unet_tiny")
    shutil.rmtree(d, ignore_errors=True)
    torch.manual_seed(0)
    model = UNet2DModel(**TINY)
    perturb(model, 1)
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    write_json(os.path.join(d, "params.json"), params_list(model))

    loaded = check_params(model, d)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k

    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1, 16, 16, generator=g)
    t = torch.tensor([0, 999], dtype=torch.long)
    eps, eps64 = reference(model, x, t)
    save_io(d, x, t, eps, eps64)
    return d, eps, eps64


def make_ddpm_style(out):
    d = os.path.join(out, "unet_ddpm_style")
    shutil.rmtree(d, ignore_errors=True)
    torch.manual_seed(10)
    model = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        norm_num_groups=8,
        attention_head_dim=None,
        flip_sin_to_cos=False,
        freq_shift=1,
        downsample_padding=0,
        norm_eps=1e-6,
    )
    perturb(model, 11)
    model.eval()
    os.makedirs(d)
    write_json(os.path.join(d, "params.json"), params_list(model))

    # float16 weights with the legacy attention names.
    model.half().save_pretrained(d, safe_serialization=True)
    model.float()
    path = os.path.join(d, WEIGHTS)
    sd = load_file(path)
    renamed = {}
    n_renamed = 0
    for k, v in sd.items():
        assert v.dtype == torch.float16, k
        new = k
        if ".attentions." in k:
            for cur, old in LEGACY.items():
                if f".{cur}." in k:
                    new = k.replace(f".{cur}.", f".{old}.")
                    n_renamed += 1
        renamed[new] = v
    n_attn = sum(k.endswith(".to_q.weight") for k in sd)
    assert n_attn == 6 and n_renamed == 8 * n_attn, (n_attn, n_renamed)  # 2 down, 3 up, 1 mid
    save_file(renamed, path, metadata={"format": "pt"})

    # Reference from the float16-rounded weights, loaded back through diffusers (which maps the
    # legacy names itself).
    loaded = check_params(model, d)
    for k, v in model.state_dict().items():
        assert torch.equal(v.half().float(), loaded.state_dict()[k]), k

    g = torch.Generator().manual_seed(12)
    x = torch.randn(3, 3, 8, 8, generator=g)
    t = torch.tensor([1, 500, 999], dtype=torch.long)
    eps, eps64 = reference(loaded, x, t)
    save_io(d, x, t, eps, eps64)
    return d, eps, eps64


# Configs whose parameter lists are checked (no weights stored); built on the meta device.
PARAM_CONFIGS = {
    "ddpm_cifar10_32": dict(
        sample_size=32,
        block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=None,
        downsample_padding=0,
        flip_sin_to_cos=False,
        freq_shift=1,
        norm_eps=1e-6,
    ),
    "diffusers_defaults": dict(sample_size=64),
    "all_attention_lpb3": dict(
        sample_size=16,
        in_channels=2,
        out_channels=5,
        block_out_channels=(32, 64, 96),
        down_block_types=("AttnDownBlock2D",) * 3,
        up_block_types=("AttnUpBlock2D",) * 3,
        layers_per_block=3,
        norm_num_groups=16,
        attention_head_dim=16,
    ),
    "single_level": dict(
        sample_size=8,
        block_out_channels=(24,),
        down_block_types=("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",),
        layers_per_block=1,
        norm_num_groups=4,
        attention_head_dim=None,
    ),
    "no_mid_attention_time_dim": dict(
        sample_size=[8, 16],
        block_out_channels=(16, 16, 48),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        norm_num_groups=8,
        attn_norm_num_groups=4,
        add_attention=False,
        time_embedding_dim=40,
    ),
    "mid_attn_groups": dict(
        sample_size=8,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        attn_norm_num_groups=2,
        attention_head_dim=4,
    ),
}


def make_celebahq_style(out):
    """google/ddpm-celebahq-256 (and the LSUN models) in miniature: six levels, attention only
    at the fifth (16×16 at 256 px, 4×4 here), two resnets per level, positional embedding without
    flip, downsample padding 0; float16 weights in current names."""
    d = os.path.join(out, "unet_celebahq_style")
    shutil.rmtree(d, ignore_errors=True)
    torch.manual_seed(20)
    model = UNet2DModel(
        sample_size=64,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 16, 16, 32, 32),
        down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
        layers_per_block=2,
        norm_num_groups=4,
        attention_head_dim=None,
        flip_sin_to_cos=False,
        freq_shift=1,
        downsample_padding=0,
        norm_eps=1e-6,
    )
    perturb(model, 21)
    model.eval()
    os.makedirs(d)
    write_json(os.path.join(d, "params.json"), params_list(model))
    model.half().save_pretrained(d, safe_serialization=True)
    model.float()
    # The reference runs the float16-rounded weights, as loaded back.
    model = UNet2DModel.from_pretrained(d, torch_dtype=torch.float32)
    model.eval()
    g = torch.Generator().manual_seed(22)
    x = torch.randn(2, 3, 64, 64, generator=g)
    t = torch.tensor([3, 871], dtype=torch.long)
    eps, eps64 = reference(model, x, t)
    save_io(d, x, t, eps, eps64)
    return d, eps, eps64


def make_class_cond(out):
    """unet_tiny with a class embedding (num_class_embeds 11: ten classes and the "no class" row
    of classifier-free guidance), run with labels 3, 10 and 7; labels.npy holds them (f32)."""
    d = os.path.join(out, "unet_class_cond")
    shutil.rmtree(d, ignore_errors=True)
    torch.manual_seed(30)
    model = UNet2DModel(**TINY, num_class_embeds=11)
    perturb(model, 31)
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    write_json(os.path.join(d, "params.json"), params_list(model))
    g = torch.Generator().manual_seed(32)
    x = torch.randn(3, 1, 16, 16, generator=g)
    t = torch.tensor([10, 500, 999], dtype=torch.long)
    labels = torch.tensor([3, 10, 7], dtype=torch.long)
    with torch.no_grad():
        eps = model(x, t, class_labels=labels).sample.numpy().astype(np.float32)
        eps64 = model.double()(x.double(), t, class_labels=labels).sample.numpy()
    model.float()
    save_io(d, x, t, eps, eps64)
    np.save(os.path.join(d, "labels.npy"), labels.numpy().astype(np.float32))
    return d, eps, eps64


def make_param_configs(out):
    root = os.path.join(out, "params")
    shutil.rmtree(root, ignore_errors=True)
    for name, kw in PARAM_CONFIGS.items():
        d = os.path.join(root, name)
        os.makedirs(d)
        with torch.device("meta"):
            model = UNet2DModel(**kw)
        model.save_config(d)
        write_json(os.path.join(d, "params.json"), params_list(model))
        n = sum(p.numel() for p in model.parameters())
        print(f"params/{name}: {len(model.state_dict())} tensors, {n} parameters")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures")
    ap.add_argument("--only", help="regenerate one fixture (e.g. unet_celebahq_style)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)
    makers = {
        "unet_tiny": make_tiny,
        "unet_ddpm_style": make_ddpm_style,
        "unet_celebahq_style": make_celebahq_style,
        "unet_class_cond": make_class_cond,
    }
    for name, make in makers.items():
        if args.only and name != args.only:
            continue
        d, eps, eps64 = make(args.out)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        diff = np.abs(eps.astype(np.float64) - eps64).max()
        print(
            f"{d}: {size} bytes, eps std {eps.std():.4f}, max |eps - eps_f64| {diff:.2e}"
        )
    if not args.only:
        make_param_configs(args.out)


if __name__ == "__main__":
    main()
