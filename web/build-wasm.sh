#!/usr/bin/env bash
# Trunk build hook (see Trunk.toml): compiles the `ddpm` lib (src/web/ is its wasm entry point) for
# wasm32 and runs the *installed* wasm-bindgen on it, writing ddpm.js + ddpm_bg.wasm into Trunk's
# staging dir. Nothing is downloaded and wasm-opt is not used.
#
# Why a hook instead of <link data-trunk rel="rust">: the package has a lib and a bin both named
# `ddpm`, so a wasm32 build yields two artifacts named ddpm.wasm and Trunk refuses to choose.
# `cargo build --lib` builds only the cdylib.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="${TRUNK_PROFILE:-debug}"
out="${TRUNK_STAGING_DIR:?run through trunk (or set TRUNK_STAGING_DIR)}"

want="$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' "$root/Cargo.toml")"
have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" || true
if [ -z "$have" ]; then
  echo "error: wasm-bindgen not found; install it with: cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi
if [ -n "$want" ] && [ "$have" != "$want" ]; then
  echo "error: wasm-bindgen $have is installed but Cargo.toml pins wasm-bindgen =$want;" \
       "run: cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi

cargo_flags=(--lib --target wasm32-unknown-unknown --manifest-path "$root/Cargo.toml")
[ "$profile" = release ] && cargo_flags+=(--release)
cargo build "${cargo_flags[@]}"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
# deps/ddpm.wasm is the cdylib (cdylibs carry no hash suffix); the uplifted copy next to deps/
# may have been overwritten by the same-named bin of a plain `cargo build --target wasm32…`.
wasm="$target_dir/wasm32-unknown-unknown/$profile/deps/ddpm.wasm"
[ -f "$wasm" ] || wasm="$target_dir/wasm32-unknown-unknown/$profile/ddpm.wasm"

bindgen_flags=(--target web --no-typescript --out-dir "$out" --out-name ddpm)
[ "$profile" = debug ] && bindgen_flags+=(--debug --keep-debug)
wasm-bindgen "${bindgen_flags[@]}" "$wasm"
echo "build-wasm: $(du -h "$out/ddpm_bg.wasm" | cut -f1) ddpm_bg.wasm ($profile)"
