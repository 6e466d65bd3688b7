#!/usr/bin/env bash
# Installs the Python side of scripts/peer_bench.py (and scripts/make_fixtures.py) into a venv,
# from PyPI only (no download.pytorch.org). Idempotent: does nothing when the pinned versions
# are already there. Usage: scripts/peer_setup.sh   (or source it and call peer_setup)
#   PEER_VENV      venv directory        (default /opt/dvenv, the path make_fixtures.py names)
#   PEER_PYTHON    interpreter for it    (default python3)
#   TORCH_VERSION  DIFFUSERS_VERSION     (default 2.15.0, 0.42.1 = the Rust DIFFUSERS_VERSION)
# The commands it runs on a fresh machine:
#   python3 -m venv /opt/dvenv
#   /opt/dvenv/bin/pip install torch==2.15.0
#   /opt/dvenv/bin/pip install diffusers==0.42.1 safetensors numpy
# PyPI's Linux torch wheel is the CUDA build: it pulls the nvidia-* CUDA 13 wheels (the venv
# ends up ~5 GB). `pip install --no-deps torch` plus its pure-Python deps (filelock
# typing-extensions sympy networkx jinja2 fsspec) was tried and does not import:
# "ValueError: libcublasLt.so.*[0-9] not found in the system path". Nothing here needs a GPU.

peer_setup() {
    local venv="${PEER_VENV:-/opt/dvenv}"
    local python="${PEER_PYTHON:-python3}"
    local torch_v="${TORCH_VERSION:-2.15.0}"
    local diffusers_v="${DIFFUSERS_VERSION:-0.42.1}"
    local py="$venv/bin/python"
    if [[ ! -x "$py" ]]; then
        "$python" -m venv "$venv"
    fi
    if ! "$py" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_v')" 2>/dev/null; then
        "$py" -m pip install -q "torch==$torch_v"
    fi
    if ! "$py" -c "import diffusers, safetensors, numpy, sys; sys.exit(diffusers.__version__ != '$diffusers_v')" 2>/dev/null; then
        "$py" -m pip install -q "diffusers==$diffusers_v" safetensors numpy
    fi
    "$py" -c "import torch, diffusers; torch.randn(2) @ torch.randn(2); print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'threads', torch.get_num_threads())"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    peer_setup "$@"
fi
