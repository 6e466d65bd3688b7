#!/usr/bin/env python3
"""Scheduler fixtures from Hugging Face diffusers for tests/sampling.rs.

Run: /opt/dvenv/bin/python scripts/make_scheduler_fixtures.py   (diffusers 0.42, torch)

Writes tests/fixtures/scheduler/:
  index.json          cases: scheduler config, steps (t, prev_t, row of inputs.npy)
  schedules.npy       [3, 2, 1000] f32: (betas, alphas_cumprod) per index["schedules"]
  inputs.npy          [K, 3, 2, 3, 4, 5] f32: (sample, model_output, noise) per input row
  <case>.npy          [steps, 4, 2, 3, 4, 5] f32 per step: (prev_sample, pred_original_sample)
                      from the stock f32 scheduler, then the same from the scheduler run in f64
                      (f64 betas/alphas_cumprod and inputs): diffusers' f32 arithmetic loses
                      up to ~3e-4 relative at small t (1 - alphas_cumprod cancels)
  add_noise.npy       [3, 2, 3, 4, 5] f32: (x0, noise, DDPMScheduler.add_noise) with per-sample t
  {ddpm,ddim}_scheduler_config.json   as written by save_config
The step noise is supplied (DDIM: variance_noise; DDPM: randn_tensor patched), so our kernels
can take the same z.
"""
import json
import math
import os
import tempfile

import numpy as np
import torch
import diffusers
import diffusers.schedulers.scheduling_ddpm as ddpm_mod
from diffusers import DDIMScheduler, DDPMScheduler

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "scheduler")
SHAPE = (2, 3, 4, 5)
gen = torch.Generator().manual_seed(1234)
index = {"diffusers_version": diffusers.__version__, "shape": list(SHAPE), "schedules": [], "cases": []}


def save(name, array):
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, name + ".npy"), np.ascontiguousarray(np.asarray(array, dtype=np.float32)))
    return name


inputs = {}
input_rows = []


def step_inputs(t):
    """Sample, model output and noise for timestep t (shared by all cases at that t)."""
    if t not in inputs:
        sample = torch.randn(SHAPE, generator=gen) * 1.5
        model_output = torch.randn(SHAPE, generator=gen)
        noise = torch.randn(SHAPE, generator=gen)
        inputs[t] = (len(input_rows), sample, model_output, noise)
        input_rows.append(torch.stack([sample, model_output, noise]))
    return inputs[t]


def save_case(case, outputs, outputs64):
    save(case, torch.stack([
        torch.stack([o.prev_sample, o.pred_original_sample, o64.prev_sample.float(), o64.pred_original_sample.float()])
        for o, o64 in zip(outputs, outputs64)
    ]))


def betas_f64(cfg):
    n = cfg.num_train_timesteps
    if cfg.beta_schedule == "linear":
        return torch.linspace(cfg.beta_start, cfg.beta_end, n, dtype=torch.float64)
    if cfg.beta_schedule == "scaled_linear":
        return torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, n, dtype=torch.float64) ** 2
    assert cfg.beta_schedule == "squaredcos_cap_v2"
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return torch.tensor([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)], dtype=torch.float64)


def to_f64(s):
    """The same scheduler computing in float64 (pass float64 inputs)."""
    s.betas = betas_f64(s.config)
    s.alphas = 1.0 - s.betas
    s.alphas_cumprod = torch.cumprod(s.alphas, dim=0)
    s.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(s, "final_alpha_cumprod"):
        s.final_alpha_cumprod = s.one if s.config.set_alpha_to_one else s.alphas_cumprod[0]
    return s


def plain_config(sched):
    cfg = dict(sched.config)
    cfg["_class_name"] = type(sched).__name__
    return {k: v for k, v in cfg.items() if not k.startswith("_") or k == "_class_name"}


# Schedules.
schedule_arrays = []
for name, kwargs in [
    ("linear", {}),
    ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
    ("squaredcos_cap_v2", {}),
]:
    s = DDPMScheduler(beta_schedule=name, **kwargs)
    schedule_arrays.append(torch.stack([s.betas, s.alphas_cumprod]))
    index["schedules"].append({"name": name, "config": plain_config(s)})
save("schedules", torch.stack(schedule_arrays))

# DDPM steps with supplied noise.
current_noise = [None]
ddpm_mod.randn_tensor = lambda shape, **kw: current_noise[0].clone()


def ddpm_case(case, make, ts, extra):
    s, s64 = make(), to_f64(make())
    steps, outputs, outputs64 = [], [], []
    for t in ts:
        row, sample, model_output, noise = step_inputs(t)
        current_noise[0] = noise
        outputs.append(s.step(model_output, t, sample))
        current_noise[0] = noise.double()
        outputs64.append(s64.step(model_output.double(), t, sample.double()))
        steps.append({"t": t, "prev_t": int(s.previous_timestep(t)), "input": row})
    save_case(case, outputs, outputs64)
    index["cases"].append({"name": case, "kind": "ddpm", "config": plain_config(s), "steps": steps, **extra})


for schedule in ["linear", "squaredcos_cap_v2"]:
    for variance in ["fixed_small", "fixed_large"]:
        for clip in [True, False]:
            case = f"ddpm_{schedule}_{variance}_{'clip' if clip else 'noclip'}"
            make = lambda: DDPMScheduler(beta_schedule=schedule, variance_type=variance, clip_sample=clip)
            ddpm_case(case, make, [999, 500, 10, 1, 0], {})

# Strided DDPM (DDPMScheduler.set_timesteps(50)): prev is the next listed timestep.
def strided():
    s = DDPMScheduler()
    s.set_timesteps(50)
    return s


timesteps = [int(v) for v in strided().timesteps]
ddpm_case("ddpm_strided", strided, [timesteps[0], timesteps[25], timesteps[-1]],
          {"num_inference_steps": 50, "timesteps": timesteps})

# DDIM, 50 steps.
for case, eta, clip, extra in [
    ("ddim_eta0_clip", 0.0, True, {}),
    ("ddim_eta1_clip", 1.0, True, {}),
    ("ddim_eta0_noclip", 0.0, False, {}),
    ("ddim_eta1_noclip", 1.0, False, {}),
    ("ddim_eta05_offset1_alpha0", 0.5, True, {"steps_offset": 1, "set_alpha_to_one": False}),
    ("ddim_eta1_cosine_trailing", 1.0, True, {"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "trailing"}),
    ("ddim_eta0_linspace", 0.0, True, {"timestep_spacing": "linspace"}),
]:
    s = DDIMScheduler(clip_sample=clip, **extra)
    s.set_timesteps(50)
    s64 = to_f64(DDIMScheduler(clip_sample=clip, **extra))
    s64.set_timesteps(50)
    timesteps = [int(v) for v in s.timesteps]
    steps, outputs, outputs64 = [], [], []
    for i in [0, 1, 25, 49]:
        t = timesteps[i]
        row, sample, model_output, noise = step_inputs(t)
        outputs.append(s.step(model_output, t, sample, eta=eta, variance_noise=noise))
        outputs64.append(s64.step(model_output.double(), t, sample.double(), eta=eta, variance_noise=noise.double()))
        prev_t = t - s.config.num_train_timesteps // s.num_inference_steps
        steps.append({"t": t, "prev_t": prev_t, "input": row})
    save_case(case, outputs, outputs64)
    index["cases"].append({"name": case, "kind": "ddim", "eta": eta, "num_inference_steps": 50,
                           "config": plain_config(s), "timesteps": timesteps, "steps": steps})

save("inputs", torch.stack(input_rows))

# Timestep lists for other step counts and spacings.
index["ddim_timesteps"] = []
for spacing, n, offset in [("leading", 1, 0), ("leading", 7, 1), ("linspace", 7, 0), ("trailing", 7, 0),
                           ("trailing", 3, 0), ("linspace", 1000, 0), ("leading", 1000, 0), ("linspace", 50, 0),
                           ("trailing", 50, 0), ("leading", 999, 0), ("linspace", 2, 0), ("trailing", 1, 0)]:
    s = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
    s.set_timesteps(n)
    index["ddim_timesteps"].append({"timestep_spacing": spacing, "steps_offset": offset, "steps": n,
                                    "timesteps": [int(v) for v in s.timesteps]})

# Forward process with per-sample timesteps.
s = DDPMScheduler()
x0 = torch.randn(SHAPE, generator=gen)
noise = torch.randn(SHAPE, generator=gen)
t = torch.tensor([999, 37])
save("add_noise", torch.stack([x0, noise, s.add_noise(x0, noise, t)]))
index["add_noise"] = {"timesteps": [int(v) for v in t]}

# Configs as diffusers writes them.
with tempfile.TemporaryDirectory() as d:
    for name, sched in [("ddpm", DDPMScheduler()), ("ddim", DDIMScheduler(steps_offset=1, clip_sample=False))]:
        sched.save_config(d)
        os.replace(os.path.join(d, "scheduler_config.json"), os.path.join(OUT, f"{name}_scheduler_config.json"))

with open(os.path.join(OUT, "index.json"), "w") as f:
    json.dump(index, f, separators=(",", ":"))
print("wrote", OUT)
