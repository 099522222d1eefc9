#!/usr/bin/env bash
# The CPU measurements of benches/RESULTS.md in one run, on whatever CPU this is: the pipeline
# against ONNX Runtime (res18 and mdla34 at 512 and 256, back to back per round), every
# architecture per operation (`deepmark profile --by-shape`), the `gemm` crate's sgemm peak on 1
# and 2 threads, and where the CPU has AVX-512F all of it again with the AVX2 copies forced
# (`DEEPMARK_SIMD=avx2`), alternated round by round, so that the AVX-512 kernels are timed
# against the AVX2 ones on the same machine. From the repository root; logs and summary.md go to
# $OUT (or ./cpu-bench-out).
#
# Usage: bash scripts/cpu_bench.sh [ROUNDS]     (default 3; about 2 minutes a round and level)
# The first run makes ~/.cache/deepmark/venv-bench (torch, torchvision, onnx, onnxruntime,
# opencv-python-headless and numpy from PyPI) for scripts/bench_pipeline_pytorch.py.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
out="${OUT:-$PWD/cpu-bench-out}"
mkdir -p "$out"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deepmark/target}"
venv="$HOME/.cache/deepmark/venv-bench"
py="$venv/bin/python"
if ! "$py" -c "import torch, torchvision, cv2, onnx, onnxruntime" >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$py" -m pip install -q --disable-pip-version-check torch torchvision onnx onnxruntime \
    opencv-python-headless numpy
fi
cargo build --release -p deepmark-cli
bin="$CARGO_TARGET_DIR/release/deepmark"

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with local changes)')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) ($(nproc) cores)"
  echo "features: $(grep -m1 -o -w -E 'avx2|fma|avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
} > "$out/machine.txt"
cat "$out/machine.txt"

levels=(native)
if grep -q -w avx512f /proc/cpuinfo; then levels+=(avx2); fi
run_level() {
  if [ "$1" = avx2 ]; then DEEPMARK_SIMD=avx2 "${@:2}"; else env -u DEEPMARK_SIMD "${@:2}"; fi
}

# The `gemm` crate's peak: sgemm 1024 × 1024 × 256, best of 5 × 10 calls, the version and
# features deepmark builds it with; before and after the rounds (a busy neighbour on a shared
# machine lowers one of them).
peak="$out/gemmpeak"
mkdir -p "$peak/src"
gemm_version=$(cargo metadata --format-version 1 2>/dev/null \
  | "$py" -c "import json,sys; print(next(p['version'] for p in json.load(sys.stdin)['packages'] if p['name'] == 'gemm'))")
cat > "$peak/Cargo.toml" <<EOF
[package]
name = "gemmpeak"
version = "0.1.0"
edition = "2024"
[dependencies]
gemm = { version = "=$gemm_version", features = ["x86-v4"] }
[workspace]
EOF
cat > "$peak/src/main.rs" <<'EOF'
fn main() {
    let (m, n, k) = (1024usize, 1024usize, 256usize);
    let (a, b, mut c) = (vec![0.5f32; m * k], vec![0.25f32; k * n], vec![0.0f32; m * n]);
    for threads in [1usize, 2] {
        let par = match threads {
            1 => gemm::Parallelism::None,
            t => gemm::Parallelism::Rayon(t),
        };
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..10 {
                // Safety: the three buffers hold m×k, k×n and m×n floats, row-major.
                unsafe {
                    gemm::gemm(m, n, k, c.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), 1,
                        k as isize, b.as_ptr(), 1, n as isize, 0.0, 1.0, false, false, false, par);
                }
            }
            best = best.min(t.elapsed().as_secs_f64() / 10.0);
        }
        println!("gemm peak, {threads} thread(s): {:.1} GFLOP/s", 2.0 * (m * n * k) as f64 / best / 1e9);
    }
}
EOF
gemm_peak() { (cd "$peak" && CARGO_TARGET_DIR="$peak/target" cargo run -q --release) | tee -a "$out/gemm-peak.txt"; }
: > "$out/gemm-peak.txt"
gemm_peak

for r in $(seq 1 "$rounds"); do
  for level in "${levels[@]}"; do
    echo "round $r, $level: pipeline against ONNX Runtime"
    run_level "$level" "$py" scripts/bench_pipeline_pytorch.py --archs res18,mdla34 \
      --sizes 512,256 --runtimes onnxruntime --iters 5 --rounds 1 --ours "$bin" \
      | sed "s/round 1)/round $r)/" >> "$out/pipeline-$level.log"
    echo "round $r, $level: every architecture per operation"
    for a in res18 res50 dla34 mdla34 hourglass104; do
      for s in 256 512; do
        { echo "=== $a $s round $r"; run_level "$level" "$bin" profile --arch "$a" --input-size "$s" \
            --runs 3 --by-shape; } >> "$out/profile-$level.log" 2>&1
      done
    done
  done
done

gemm_peak   # again after the rounds: the summary takes the best of both

"$py" - "$out" "${levels[@]}" <<'EOF' | tee "$out/summary.md"
import re, statistics, sys
out, levels = sys.argv[1], sys.argv[2:]
print(open(f"{out}/machine.txt").read())
print(open(f"{out}/gemm-peak.txt").read())
line = re.compile(r"^(ours|onnxruntime)-pipeline/(\w+)/(\d+): median ([\d.]+) ms .*forward ([\d.]+).*round (\d+)\)")
fwd = re.compile(r"^forward\s+[\d.]+\s+([\d.]+)")
head = re.compile(r"^=== (\w+) (\d+) round (\d+)")
def span(xs):
    return f"{min(xs):.2f}–{max(xs):.2f} (median {statistics.median(xs):.2f})"
forwards = {}
for level in levels:
    runs = {}
    for l in open(f"{out}/pipeline-{level}.log"):
        m = line.match(l)
        if m:
            who, arch, size, total, forward, r = m.groups()
            runs.setdefault((arch, int(size), int(r)), {})[who] = (float(total), float(forward))
    print(f"## ours ÷ ONNX Runtime, {level} ({'DEEPMARK_SIMD=avx2' if level == 'avx2' else 'the widest level the CPU has'})\n")
    print("| model | whole pipeline | forward |\n|---|---|---|")
    for arch, size in sorted({(a, s) for a, s, _ in runs}, key=lambda k: (k[0], -k[1])):
        pairs = [v for (a, s, _), v in sorted(runs.items()) if (a, s) == (arch, size) and len(v) == 2]
        whole = [o[0] / x[0] for o, x in ((p["ours"], p["onnxruntime"]) for p in pairs)]
        fw = [o[1] / x[1] for o, x in ((p["ours"], p["onnxruntime"]) for p in pairs)]
        if pairs:
            print(f"| {arch}@{size} | {span(whole)} | {span(fw)} |")
    print()
    cur = None
    for l in open(f"{out}/profile-{level}.log"):
        if m := head.match(l):
            cur = (m[1], int(m[2]))
        elif cur and (m := fwd.match(l)):
            forwards.setdefault(level, {}).setdefault(cur, []).append(float(m[1]))
print("## forward pass per architecture (`deepmark profile`, median of 3 runs, ms; per round)\n")
print("| model | " + " | ".join(levels) + (" | native ÷ avx2 |" if len(levels) == 2 else " |"))
print("|---|" + "---|" * (len(levels) + (len(levels) == 2)))
for key in sorted(forwards[levels[0]]):
    cells = [" / ".join(f"{v:.1f}" for v in forwards[l].get(key, [])) for l in levels]
    row = f"| {key[0]}@{key[1]} | " + " | ".join(cells)
    if len(levels) == 2:
        ratios = [a / b for a, b in zip(forwards[levels[0]][key], forwards[levels[1]].get(key, []))]
        row += f" | {span(ratios)}" if ratios else " | "
    print(row + " |")
peak = max(map(float, re.findall(r"2 thread\(s\): ([\d.]+)", open(f"{out}/gemm-peak.txt").read())))
op = re.compile(r"^(\S.*?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+|-)$")
for level in levels:
    # Each model's fastest round: the machine's drift only ever slows a round down.
    best = {k: 1 + min(range(len(v)), key=v.__getitem__) for k, v in forwards[level].items()}
    print(f"\n## operations of at least 3 % of the forward pass, each model's fastest round, {level}: share, GFLOP/s "
          f"(direct multiply-adds × 2; Winograd rows exceed the GEMM rate), fraction of the "
          f"two-thread GEMM peak ({peak:.0f} GFLOP/s)\n")
    print("| model | operations |\n|---|---|")
    cur, rows, table = None, {}, False
    for l in open(f"{out}/profile-{level}.log"):
        if m := head.match(l):
            key = (m[1], int(m[2]))
            cur = key if best.get(key) == int(m[3]) else None
            table = False
        elif l.startswith("operation"):
            table = True
        elif cur and table and (m := op.match(l.rstrip())) and float(m[4]) >= 3.0:
            g = "" if m[5] == "-" else f", {float(m[5]):.0f} ({float(m[5]) / peak:.0%})"
            rows.setdefault(cur, []).append(f"{m[1]} {float(m[4]):.0f} %{g}")
    for key in sorted(rows):
        print(f"| {key[0]}@{key[1]} (round {best[key]}) | " + "; ".join(rows[key]) + " |")
print(f"\nPer-operation tables: {out}/profile-*.log")
EOF
