#!/usr/bin/env bash
# The checks only a machine with a real GPU can run (issue #11's real-GPU figures), as one
# bounded script for a session lent such a machine (the `device` tool), which runs it in a copy
# of the working tree with the release binary carried:
#   run(command="bash scripts/device_checks.sh", carry=["target/release/ddpm"], timeout_s=540)
# Prints the adapter, the whole-model forward and training figures, the per-variant conv table
# (GFLOP/s and % of the measured FMA peak), and the wall time of a 1000-step DDPM generation of
# 16 MNIST samples and of DDIM-50 with the CIFAR-10 net; copies of everything go to $OUT.
# Every step has its own time limit and a failing step does not stop the others.
#
# Env: DDPM (binary, default target/release/ddpm), OUT (default ./device-out), QUICK=1 (tiny
# settings, to try the script on any machine).
set -uo pipefail

bin="${DDPM:-target/release/ddpm}"
out="${OUT:-device-out}"
mkdir -p "$out"
# The benches time the kernel variants of every shape once and keep the choices here, so the
# generations' wall times are the sampling, not the timing.
export DDPM_KERNEL_CACHE="$out/kernel-cache"
if [ "${QUICK:-0}" = 1 ]; then
  batches=1; iters=1; ddpm_steps=ddim; cifar_n=1
else
  batches=1,16,64; iters=5; ddpm_steps=ddpm; cifar_n=16
fi

# step NAME SECONDS COMMAND…: runs COMMAND with a time limit, output to the terminal and $out/NAME.txt.
step() {
  local name="$1" limit="$2"
  shift 2
  echo "== $name: $*"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
}

step machine 20 bash -c 'nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>&1;
  ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1; ldconfig -p | grep -m1 libvulkan.so.1 || echo "no libvulkan.so.1"'
[ -x "$bin" ] || { echo "missing $bin: carry target/release/ddpm (cargo build --release)" >&2; exit 2; }

step forward 120 "$bin" bench --presets mnist,cifar10 --batches "$batches" --iters "$iters"
step train 90 "$bin" bench --train --presets mnist --batches 32 --iters "$iters"
step variants_mnist 90 "$bin" bench --variants --presets mnist --batches 16 --iters "$iters"
step variants_cifar10 120 "$bin" bench --variants --presets cifar10 --batches 1 --iters "$iters"
if [ "$ddpm_steps" = ddpm ]; then
  step ddpm1000_mnist16 90 "$bin" sample --n 16 --sampler ddpm --seed 0 --out "$out/ddpm1000_mnist16.png"
else
  step ddpm1000_mnist16 90 "$bin" sample --n 16 --sampler ddim --steps 5 --seed 0 --out "$out/ddpm1000_mnist16.png"
fi
step ddim50_cifar10 120 "$bin" sample --preset cifar10 --n "$cifar_n" --sampler ddim --steps 50 --seed 0 \
  --out "$out/ddim50_cifar10.png"
