#!/usr/bin/env bash
# Sets up a fresh machine (scripts/setup.sh) and serves the browser demo on
# http://127.0.0.1:8080 with trunk (Ctrl-C to stop).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec trunk serve --release
