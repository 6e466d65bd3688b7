#!/usr/bin/env bash
# Installs everything ddpm needs on a fresh Debian 12 (bookworm) machine, as root:
#   apt:    mesa-vulkan-drivers + libvulkan1 from bookworm-backports (lavapipe, a CPU Vulkan
#           driver: the tests' GPU when there is no real one), chromium (browser tests)
#   rustup: the wasm32-unknown-unknown target, rustfmt, clippy
#   cargo:  trunk and wasm-bindgen-cli (pinned versions, see web/e2e/run.sh)
#   npm:    playwright-core (web/package-lock.json)
# Idempotent: skips what is already there. Usage: scripts/setup.sh [--no-web]
set -euo pipefail
cd "$(dirname "$0")/.."
web=1
[[ "${1:-}" == "--no-web" ]] && web=0
TRUNK_VERSION=0.21.14  # trunk 0.22 needs a newer rustc than this machine's 1.95

export DEBIAN_FRONTEND=noninteractive
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"

apt_pkgs=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || apt_pkgs+=(mesa-vulkan-drivers)
dpkg -s libvulkan1 >/dev/null 2>&1 || apt_pkgs+=(libvulkan1)
[[ $web == 1 ]] && { dpkg -s chromium >/dev/null 2>&1 || apt_pkgs+=(chromium); }
if ((${#apt_pkgs[@]})); then
    if grep -q bookworm /etc/os-release 2>/dev/null; then
        echo 'deb http://deb.debian.org/debian bookworm-backports main' | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
    $SUDO apt-get update -q
    if grep -q bookworm /etc/os-release 2>/dev/null; then
        # Mesa 25 from backports: lavapipe is about 2x faster than bookworm's Mesa 22.
        $SUDO apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers libvulkan1
    fi
    $SUDO apt-get install -y -q "${apt_pkgs[@]}"
fi

rustup target add wasm32-unknown-unknown
rustup component add rustfmt clippy

# Web tools, at the versions the build expects (see Trunk.toml and the wasm-bindgen pin in
# Cargo.toml). Built from crates.io: trunk takes ~15 min on 2 cores, wasm-bindgen-cli ~2 min.
if [[ $web == 1 ]]; then
    bindgen_version="$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' Cargo.toml)"
    if [[ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$bindgen_version" ]]; then
        # Not --locked: its lockfile pins a webpki-roots version the registry no longer serves.
        cargo install wasm-bindgen-cli --version "$bindgen_version"
    fi
    if [[ "$(trunk --version 2>/dev/null | awk '{print $2}')" != "$TRUNK_VERSION" ]]; then
        cargo install trunk --locked --version "$TRUNK_VERSION"
    fi
    (cd web && npm ci --no-audit --no-fund)
fi
echo "setup: done"
