"""Per-object training targets as CenterNet's MultiPoseDataset computes them
(xingyizhou/CenterNet, src/lib/datasets/sample/multi_pose.py with src/lib/utils/image.py, written
here from their rules for one garment of DeepFashion2 category 1, 25 landmarks), for random
boxes, landmarks, scale/shift augmentation and flips: the reference for tests/box_rule.rs.

Each case holds the inputs (image width, COCO bbox, keypoints, centre, scale, flip, input size)
and the outputs: the radius, ind, wh, reg, and for each labelled landmark inside the map its
hp_ind, hp_offset and hps. Writes tests/fixtures/targets/box_rule.json.

    python -m venv /tmp/cv4 && /tmp/cv4/bin/pip install numpy opencv-python-headless==4.10.0.84
    /tmp/cv4/bin/python scripts/make_box_rule_fixture.py
"""
import json
import math
import os

import sys

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from centernet_rules import affine_transform, gaussian_radius, get_affine_transform  # noqa: E402
OUT = os.path.join(HERE, "..", "tests", "fixtures", "targets", "box_rule.json")
# Flip pairs of category 1 (short sleeved shirt), 1-based local landmarks (DeepFashion2's layout).
FLIP_1 = [(2, 6), (3, 5), (7, 25), (8, 24), (9, 23), (10, 22), (11, 21), (12, 20), (13, 19),
          (14, 18), (15, 17)]
NUM = 25


def targets(width, box, keypoints, c, s, flipped, input_res):
    output_res = input_res // 4
    trans_output = get_affine_transform(c, s, 0, [output_res, output_res])
    bbox = np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]], dtype=np.float32)
    pts = np.array(keypoints, np.float32).reshape(NUM, 3)
    if flipped:
        bbox[[0, 2]] = width - bbox[[2, 0]] - 1
        pts[:, 0] = width - pts[:, 0] - 1
        for a, b in FLIP_1:
            pts[a - 1], pts[b - 1] = pts[b - 1].copy(), pts[a - 1].copy()
    bbox[:2] = affine_transform(bbox[:2], trans_output)
    bbox[2:] = affine_transform(bbox[2:], trans_output)
    bbox = np.clip(bbox, 0, output_res - 1)
    h, w = bbox[3] - bbox[1], bbox[2] - bbox[0]
    if not (h > 0 and w > 0):
        return None
    radius = max(0, int(gaussian_radius((math.ceil(h), math.ceil(w)))))
    ct = np.array([(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2], dtype=np.float32)
    ct_int = ct.astype(np.int32)
    out = {
        "radius": radius,
        "ind": int(ct_int[1] * output_res + ct_int[0]),
        "wh": [float(np.float32(w)), float(np.float32(h))],
        "reg": [float(v) for v in (ct - ct_int).astype(np.float32)],
        "landmarks": [],
    }
    for j in range(NUM):
        if pts[j, 2] > 0:
            pts[j, :2] = affine_transform(pts[j, :2], trans_output)
            if 0 <= pts[j, 0] < output_res and 0 <= pts[j, 1] < output_res:
                pt_int = pts[j, :2].astype(np.int32)
                out["landmarks"].append({
                    "j": j,
                    "hp_ind": int(pt_int[1] * output_res + pt_int[0]),
                    "hp_offset": [float(v) for v in (pts[j, :2] - pt_int).astype(np.float32)],
                    "hps": [float(v) for v in (pts[j, :2] - ct_int).astype(np.float32)],
                })
    return out


rng = np.random.RandomState(317)
cases = []
while len(cases) < 64:
    width, height = int(rng.randint(200, 900)), int(rng.randint(200, 900))
    input_res = int(rng.choice([128, 256, 512]))
    x, y = int(rng.randint(0, width - 20)), int(rng.randint(0, height - 20))
    bw, bh = int(rng.randint(8, width - x + 1)), int(rng.randint(8, height - y + 1))
    box = [x, y, bw, bh]
    if rng.rand() < 0.25:  # a few fractional boxes, exact in float32
        box = [x + 0.5, y + 0.25, bw - 0.75, bh + 0.5]
    kps = []
    for _ in range(NUM):
        v = int(rng.choice([0, 1, 2], p=[0.3, 0.2, 0.5]))
        kps += [int(rng.randint(x, x + bw)), int(rng.randint(y, y + bh)), v] if v else [0, 0, 0]
    s = max(height, width) * 1.0
    c = np.array([width / 2., height / 2.], dtype=np.float32)
    if rng.rand() < 0.7:  # CenterNet's random crop: scale in 0.6..1.3, centre inside the border
        s = s * rng.choice(np.arange(0.6, 1.4, 0.1))
        w_border = 128 if width > 256 else 64
        h_border = 128 if height > 256 else 64
        c[0] = rng.randint(low=w_border, high=width - w_border)
        c[1] = rng.randint(low=h_border, high=height - h_border)
    flipped = bool(rng.rand() < 0.5)
    out = targets(width, box, kps, c, s, flipped, input_res)
    if out is None:
        continue
    cases.append({"width": width, "height": height, "bbox": box, "keypoints": kps,
                  "center": [float(v) for v in c], "scale": float(s), "flipped": flipped,
                  "input_size": input_res, "expected": out})
os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    json.dump({"numpy": np.__version__, "opencv": cv2.__version__, "cases": cases}, f)
print(len(cases), "cases")
