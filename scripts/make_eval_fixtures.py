"""Expected COCOeval numbers for tests/eval.rs, computed with pycocotools (PyPI 2.0.x).

1. COCO person keypoints (../shared/data/coco_person_keypoints): keypoints and bbox stats at full
   precision (pycocotools_reference.txt rounds them).
2. DeepFashion2 (../shared/data/deepfashion2/kgdet_demo32): predictions derived from the real GT by
   the deterministic rule in `perturb()` (noise, swapped categories, missing and extra detections;
   tests/eval.rs implements the same rule), evaluated as DeepFashion2's evaluator does: pycocotools
   COCOeval with the 294 OKS sigmas (its only change; deepfashion2_api/PythonAPI/pycocotools/
   cocoeval.py), parsed from the table of them in the reference notes beside the repository
   (../shared/reference/FACTS.md).

Only the numbers are written (tests/fixtures/eval/expected.json); the DeepFashion2 data stays out
of the repository. Run: python scripts/make_eval_fixtures.py
"""
import json
import math
import os
import re
import sys
import tempfile

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")


def df2_sigmas():
    text = open(os.path.join(SHARED, "reference", "FACTS.md")).read()
    rows = re.findall(r"^\| (\d+) \| ([0-9., ]+) \|$", text, re.M)
    sig = []
    for cid, vals in sorted(rows, key=lambda r: int(r[0])):
        sig += [float(v) for v in vals.split(",")]
    assert len(sig) == 294, len(sig)
    return np.array(sig)


def perturb(gt):
    """Deterministic predictions from GT annotations (same rule as tests/eval.rs)."""
    anns = gt["annotations"]
    kps_out, box_out = [], []
    for i, a in enumerate(anns):
        if i % 7 == 3:
            continue  # missing detection
        cat = a["category_id"]
        if i % 5 == 1:
            cat = cat % 13 + 1  # swapped category
        x, y, w, h = a["bbox"]
        s = math.sqrt(a["area"])
        kp = []
        for j in range(294):
            gx, gy, gv = a["keypoints"][3 * j: 3 * j + 3]
            if gv > 0:
                ox = ((i * 131 + j * 17) % 21 - 10) * 0.004 * s
                oy = ((i * 71 + j * 29) % 19 - 9) * 0.004 * s
                kp += [gx + ox, gy + oy, 1]
            else:
                kp += [0, 0, 0]
        score = 0.5 + ((i * 53) % 47) / 100.0
        dx = ((i * 37) % 11 - 5) * 0.01 * w
        dy = ((i * 43) % 13 - 6) * 0.01 * h
        box = [x + dx, y + dy, w * (1 + ((i % 3) - 1) * 0.05), h]
        kps_out.append({"image_id": a["image_id"], "category_id": cat, "keypoints": kp, "score": score})
        box_out.append({"image_id": a["image_id"], "category_id": cat, "bbox": box, "score": score})
        if i % 4 == 0:  # an extra, worse detection
            ekp = [v + (0.3 * w if t % 3 == 0 and v != 0 else 0) for t, v in enumerate(kp)]
            kps_out.append({"image_id": a["image_id"], "category_id": cat, "keypoints": ekp, "score": 0.3})
            box_out.append({"image_id": a["image_id"], "category_id": cat,
                            "bbox": [x + 0.6 * w, y, w, h], "score": 0.3})
    return kps_out, box_out


def run(gt_path, dt, iou_type, sigmas=None):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(dt, f)
        dt_path = f.name
    gt = COCO(gt_path)
    res = gt.loadRes(dt_path)
    e = COCOeval(gt, res, iou_type)
    if sigmas is not None:
        e.params.kpt_oks_sigmas = sigmas
    e.evaluate()
    e.accumulate()
    e.summarize()
    os.unlink(dt_path)
    return [float(v) for v in e.stats]


def main():
    from importlib.metadata import version
    out = {"pycocotools": version("pycocotools"), "numpy": np.__version__}
    coco = os.path.join(SHARED, "data", "coco_person_keypoints")
    gt_path = os.path.join(coco, "test_coco.json")
    out["coco_keypoints"] = run(gt_path, json.load(open(os.path.join(coco, "xtcocoapi_example_coco_preds.json"))), "keypoints")
    out["coco_bbox"] = run(gt_path, json.load(open(os.path.join(coco, "test_coco_det_AP_H_56.json"))), "bbox")
    df2 = os.path.join(SHARED, "data", "deepfashion2", "kgdet_demo32", "demo_dataset-32.json")
    kps, boxes = perturb(json.load(open(df2)))
    out["df2_keypoints"] = run(df2, kps, "keypoints", df2_sigmas())
    out["df2_bbox"] = run(df2, boxes, "bbox")
    out["df2_num_results"] = len(kps)
    path = os.path.join(ROOT, "tests", "fixtures", "eval", "expected.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
