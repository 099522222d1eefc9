#!/usr/bin/env bash
# Runs one step of issue 12's GPU measurements on a lent device (benches/RESULTS.md, "Issue 12"),
# from the repository root, with .gl/ and the step's gpu/*.xz carried (scripts/gpu_pack.sh). Every
# command has its own time limit, so a step fits in the device tool's 10 minutes a call. Logs go
# to $OUT (or ./gpu-out).
#
# Usage: bash scripts/gpu_run.sh check | train PRECISION [BACKEND] | forward PRECISION [BACKEND]
#   check      the adapter, CMMA sizes, one vulkan and one wgpu inference at 512, kernels logged
#   train      training step time and memory at 512: mdla34, dla34 (DCN) and res18 batch 32,
#              hourglass104 batch 8 (the issue's table); ≤ 4 × 130 s
#   forward    forward latency at 512, batch 1: res18, mdla34, dla34, hourglass104; ≤ 500 s
# PRECISION: f32, flex32, f16 or bf16. BACKEND: vulkan (default) or wgpu; in this build both
# compile SPIR-V (WGSL numbers are session 2's, from the cli build).
set -uo pipefail
cd "$(dirname "$0")/.."
step="${1:?usage: gpu_run.sh check | train PRECISION [BACKEND] | forward PRECISION [BACKEND]}"
precision="${2:-f32}"
backend="${3:-vulkan}"
out="${OUT:-$PWD/gpu-out}"
mkdir -p "$out" /tmp/gpu
bin=/tmp/gpu

# The Vulkan loader, as the device README prescribes.
if ls .gl/*.deb >/dev/null 2>&1 && ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nv" ]; then export VK_DRIVER_FILES="$nv"; fi
for f in gpu/*.xz; do
  b="$bin/$(basename "$f" .xz)"
  [ -x "$b" ] || { xz -dc "$f" >"$b" && chmod +x "$b"; }
done
# The binary each step runs, carried now or unpacked by an earlier call on this machine.
case "$step" in check) need=deepmark ;; train) need=bench-train ;; forward) need=bench-forward ;; *) need= ;; esac
if [ -n "$need" ] && [ ! -x "$bin/$need" ]; then
  echo "gpu_run.sh $step needs gpu/$need.xz carried (made by scripts/gpu_pack.sh)" >&2
  exit 2
fi
export DEEPMARK_KERNEL_CACHE="${DEEPMARK_KERNEL_CACHE:-/tmp/gpu/kernels}"

# run LIMIT_S NAME CMD…: one command, its output in $out/NAME.log, its wall time and exit status
# appended to $out/summary.txt.
run() {
  local limit=$1 name=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc, $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
  tail -n 4 "$out/$name.log"
}

photo=$(ls datasets/samples/*.jpg | head -n 1)
case "$step" in
check)
  (nvidia-smi || true) >"$out/nvidia-smi.txt" 2>&1
  RUST_LOG=cubecl_wgpu=debug CUBECL_DEBUG_LOG="$out/cubecl.log" run 240 infer-vulkan \
    "$bin/deepmark" infer "$photo" --weights model-weights/demo.bpk --backend vulkan \
    --input-size 512 --out "$out/infer-vulkan"
  grep -A 40 "Supported CMMA sizes" "$out/infer-vulkan.log" | head -n 60 >"$out/cmma.txt"
  echo "CMMA sizes: $(grep -c "m:" "$out/cmma.txt") (none listed: no VK_KHR_cooperative_matrix)"
  xz -T0 -f "$out/cubecl.log" || true
  run 240 infer-wgpu "$bin/deepmark" infer "$photo" --weights model-weights/demo.bpk \
    --backend wgpu --input-size 512 --out "$out/infer-wgpu"
  ;;
train)
  for ab in mdla34:32 dla34:32 res18:32 hourglass104:8; do
    a=${ab%:*} b=${ab#*:}
    DEEPMARK_BENCH_PRECISION=$precision DEEPMARK_BENCH_BACKEND=$backend \
      DEEPMARK_BENCH_SCHEMES=deepmark62 DEEPMARK_BENCH_SIZE=512 DEEPMARK_BENCH_ARCH=$a \
      DEEPMARK_BENCH_BATCH=$b run 130 "train-$backend-$precision-$a-b$b" "$bin/bench-train" --bench
  done
  ;;
forward)
  DEEPMARK_BENCH_PRECISION=$precision DEEPMARK_BENCH_BACKENDS=$backend \
    DEEPMARK_BENCH_PATHS=generic DEEPMARK_BENCH_ARCHS=res18,mdla34,dla34,hourglass104 \
    DEEPMARK_BENCH_SIZES=512 run 500 "forward-$backend-$precision" "$bin/bench-forward" --bench
  ;;
*)
  echo "unknown step '$step' (check, train, forward)" >&2
  exit 2
  ;;
esac
