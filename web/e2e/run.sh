#!/usr/bin/env bash
# End-to-end test of the browser demo: trunk build (index.html, Trunk.toml) → serve dist/ on
# 127.0.0.1 → headless Debian chromium driven by playwright-core (node --test). Prints the
# screenshot paths; exits non-zero on any failure. Nothing is downloaded at build or test time.
#
# One-time installs (exact commands; wall times measured on the shared 2-core dev machine):
#   rustup target add wasm32-unknown-unknown
#   cargo install wasm-bindgen-cli --version 0.2.130   # 2 min 10 s; = the wasm-bindgen pin in Cargo.toml
#       (not --locked: its lock pins webpki-roots 1.0.11, which the registry mirror lacks)
#   cargo install trunk --locked --version 0.21.14     # 14 min 35 s (trunk 0.22 needs rustc >= 1.96)
#   apt-get install -y chromium                        # Debian's /usr/bin/chromium
#   (cd web && npm ci)                                 # 2 s; playwright-core 1.65.1, pinned in web/package-lock.json
#                                                      # never `npx playwright install`: we use /usr/bin/chromium
# First wasm32 build of the crate and its dependencies: ~3.5 min release, ~6.5 min dev; later
# builds seconds. The tests themselves take ~25 s.
#
# Env: PROFILE=release|debug (default release), PORT (default: a free one), E2E_OUT (default
# target/e2e), CHROMIUM (default /usr/bin/chromium).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
profile="${PROFILE:-release}"
out="${E2E_OUT:-$root/target/e2e}"
dist="$root/target/web-dist"
mkdir -p "$out"

need() { command -v "$1" >/dev/null || { echo "e2e: missing $1 — $2" >&2; exit 2; }; }
need trunk "cargo install trunk --locked --version 0.21.14"
need wasm-bindgen "cargo install wasm-bindgen-cli --version 0.2.130"
need node "install Node.js ≥ 20"
need python3 "needed to serve dist/"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "e2e: missing ${CHROMIUM:-/usr/bin/chromium} — apt-get install -y chromium" >&2; exit 2; }
if [ ! -d web/node_modules/playwright-core ]; then
  (cd web && npm ci --no-audit --no-fund)
fi

echo "== trunk build ($profile)"
start=$(date +%s)
if [ "$profile" = release ]; then trunk build --release; else trunk build; fi
wasm="$(ls "$dist"/ddpm-*_bg.wasm)"
echo "built in $(( $(date +%s) - start )) s: $(stat -c %s "$wasm") bytes wasm," \
     "$(gzip -9c "$wasm" | wc -c) gzipped"

port="${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$dist" >"$out/http.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break
  sleep 0.1
done

echo "== e2e tests against http://127.0.0.1:$port/"
status=0
DDPM_URL="http://127.0.0.1:$port/" E2E_OUT="$out" node --test --test-concurrency=1 web/e2e/demo.test.mjs || status=$?
echo "screenshots: $out/demo.png $out/no-webgpu.png"
exit "$status"
