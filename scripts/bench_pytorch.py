"""PyTorch eager CPU forward latency of the same full-size models as benches/forward.rs
(batch 1, random weights, eval mode, no_grad), with the same thread count.

    python scripts/bench_pytorch.py [--threads 2] [--archs res18,dla34] [--sizes 512,256]
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import centernet_ref as R  # noqa: E402
from param_counts import FULL  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--archs", default="res18,res50,dla34,mdla34,hourglass104")
    ap.add_argument("--sizes", default="512,256")
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in a.archs.split(","):
        bb, hc = FULL[name]
        m = R.build({"backbone": bb, "layout": {"num_classes": 13, "num_landmarks": 62}, "head_conv": hc}).eval()
        for size in [int(s) for s in a.sizes.split(",")]:
            x = torch.zeros(1, 3, size, size)
            with torch.no_grad():
                m(x)  # warm-up
                times = []
                for _ in range(a.iters):
                    t = time.perf_counter()
                    m(x)
                    times.append(time.perf_counter() - t)
            times.sort()
            print(f"pytorch/{name}/{size}: median {1000 * times[len(times) // 2]:.1f} ms "
                  f"(min {1000 * times[0]:.1f} ms, {a.iters} runs)")


if __name__ == "__main__":
    main()
