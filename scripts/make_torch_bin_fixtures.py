#!/usr/bin/env python3
"""PyTorch `.bin` (torch.save zip archive) fixtures for the ddpm crate's pickle-free reader.

Run (from the repository root, after scripts/make_fixtures.py has written tests/fixtures/unet_tiny):

    /opt/dvenv/bin/python scripts/make_torch_bin_fixtures.py --out tests/fixtures/torch_bin

Writes, with diffusers' own `save_pretrained(..., safe_serialization=False)` (i.e. `torch.save`):
  f32/, f16/, bf16/   config.json + diffusion_pytorch_model.bin: tests/fixtures/unet_tiny loaded
                      as float32, float16 and bfloat16 (each cast once from the float32 file)
and with `torch.save` directly:
  views.bin           an OrderedDict with `_metadata` (as `module.state_dict()` returns) holding
                      views of one shared storage — transposed, offset, strided — plus float64,
                      float16, bfloat16, 0-dim and empty tensors (values documented in VIEWS below)
  malicious.bin       a valid torch archive whose data.pkl calls `os.system("echo pwned")` when
                      unpickled; it is written here but never loaded
"""

import argparse
import collections
import os
import shutil

import torch
from diffusers import UNet2DModel


class Pwn:
    """Pickles as `os.system("echo pwned")`: what a reader that runs pickles would execute."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def views() -> "collections.OrderedDict[str, torch.Tensor]":
    """Tensors whose values tests/torch_bin.rs recomputes: `base` is arange(12) as [3, 4]."""
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    d = collections.OrderedDict()
    d["base"] = base
    d["transposed"] = base.t()  # [4, 3], strides (1, 4)
    d["row"] = base[1]  # [4], storage offset 4
    d["column"] = base[:, 2]  # [3], offset 2, stride 4
    d["f64"] = torch.arange(5, dtype=torch.float64) / 4
    d["f16"] = (torch.arange(6, dtype=torch.float32) / 3).half().reshape(2, 3)
    d["bf16"] = (torch.arange(6, dtype=torch.float32) / 3).bfloat16().reshape(3, 2)
    d["scalar"] = torch.tensor(2.5)
    d["empty"] = torch.zeros(0, 3)
    d._metadata = collections.OrderedDict([("", {"version": 1})])
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="tests/fixtures/unet_tiny")
    ap.add_argument("--out", default="tests/fixtures/torch_bin")
    args = ap.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    for name, dtype in [("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)]:
        model = UNet2DModel.from_pretrained(args.src, torch_dtype=dtype)
        model.save_pretrained(os.path.join(args.out, name), safe_serialization=False)

    torch.save(views(), os.path.join(args.out, "views.bin"))

    weight = torch.arange(4, dtype=torch.float32)
    torch.save(
        {"conv_in.weight": weight, "payload": Pwn()},
        os.path.join(args.out, "malicious.bin"),
        pickle_protocol=2,
    )


if __name__ == "__main__":
    main()
