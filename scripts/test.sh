#!/usr/bin/env bash
# The project's checks: formatting, lints, the wasm build, every native test (kernels against
# their CPU references on the local Vulkan device — lavapipe without a GPU), and the browser
# end-to-end test. Assumes scripts/setup.sh has run.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo; echo "== $* =="; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --all-targets -- -D warnings
step "cargo build (wasm32)"
cargo build --lib --target wasm32-unknown-unknown
# src/web/ compiles only for wasm32: lint it there too (the page's build, default features off).
step "cargo clippy (wasm32)"
cargo clippy --lib --target wasm32-unknown-unknown --no-default-features -- -D warnings
step "cargo test"
cargo test
if [[ -f web/e2e/run.sh ]]; then
    step "browser end-to-end"
    bash web/e2e/run.sh
fi
