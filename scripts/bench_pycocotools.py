"""Times pycocotools (DeepFashion2's evaluator logic: COCOeval with the 294 OKS sigmas) on the
files written by `cargo bench --bench eval` and prints its stats, for benches/RESULTS.md.

Usage: python scripts/bench_pycocotools.py /tmp/deepmark-eval-bench-32153
"""
import contextlib
import io
import os
import sys
import time

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_eval_fixtures import df2_sigmas  # noqa: E402


def main(d):
    for kind, f in [("keypoints", "keypoints.json"), ("bbox", "bbox.json")]:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(os.path.join(d, "gt.json"))
            dt = gt.loadRes(os.path.join(d, f))
            e = COCOeval(gt, dt, kind)
            e.params.kpt_oks_sigmas = df2_sigmas()
            t1 = time.perf_counter()
            e.evaluate()
            e.accumulate()
            e.summarize()
        t2 = time.perf_counter()
        print(f"{kind}: load {t1 - t0:.2f} s, evaluate+accumulate+summarize {t2 - t1:.2f} s, total {t2 - t0:.2f} s")
        print(f"{kind} stats: {[float(v) for v in e.stats]}")


if __name__ == "__main__":
    main(sys.argv[1])
