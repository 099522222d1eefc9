#!/usr/bin/env bash
# Packs what a lent GPU machine needs for issue 12's measurements. Its image has no Rust
# toolchain, so everything is built here: the `deepmark` binary and the train/forward bench
# binaries, all with the `vulkan` feature and the SPIR-V fix (docs/install.md, "The SPIR-V fix"). They
# are stripped and xz-compressed into gpu/. The Vulkan loader's Debian packages go into .gl/,
# as the device tool's README prescribes. Both folders are in .gitignore and are meant for the
# device tool's `carry`. Then, on the device: `bash scripts/gpu_run.sh <step>`.
#
# Usage: bash scripts/gpu_pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deepmark/target}"
export CARGO_TERM_COLOR=never

fix="$(cargo xtask spirv-fix)"
# Building with a [patch] path rewrites cubecl-spirv's entry in Cargo.lock: put it back.
cp Cargo.lock /tmp/deepmark-gpu-pack.lock
trap 'cp /tmp/deepmark-gpu-pack.lock Cargo.lock' EXIT

cargo build --release -p deepmark-cli --features vulkan --config "$fix" --bin deepmark
# Each bench target's executable, read from cargo's JSON messages.
benches=$(cargo bench --no-run -p deepmark-cli --features vulkan --config "$fix" --bench train \
  --bench forward --message-format=json |
  python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and "bench" in m["target"]["kind"] and m.get("executable"):
        print(m["target"]["name"], m["executable"])')

mkdir -p gpu
pack() { # name path
  strip -o "gpu/$1" "$2"
  xz -T0 -6 -f "gpu/$1"
  echo "gpu/$1.xz: $(du -h "gpu/$1.xz" | cut -f1)"
}
pack deepmark "$CARGO_TARGET_DIR/release/deepmark"
while read -r name exe; do pack "bench-$name" "$exe"; done <<<"$benches"

if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update -qq
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -ch gpu/*.xz .gl/*.deb | tail -1
# The device tool carries at most 64 MiB per call: name the files one call needs, e.g.
# ["gpu/deepmark.xz", ".gl"] for `check`, then ["gpu/bench-train.xz", ".gl"] for `train`;
# gpu_run.sh keeps what it unpacked in /tmp/gpu while the machine stays warm.
echo "carry per call: .gl plus the one gpu/*.xz the step needs (check: deepmark; train: bench-train; forward: bench-forward)"
