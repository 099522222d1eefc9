"""CenterNet's test pre-processing done by OpenCV, as a reference for src/preprocess.rs:
fix_res affine (centre (w/2, h/2), scale max(w, h)) warped to 64x64 with cv2.warpAffine
(INTER_LINEAR, black border). The source is a small non-square PNG cut from a bundled sample (so
JPEG decoders play no part). Writes tests/fixtures/preprocess/{source.png, fixres64.png}.

    python scripts/make_preprocess_fixture.py
"""
import os

import cv2
import numpy as np

HERE = os.path.dirname(__file__)


def affine(center, scale, out):
    # CenterNet get_affine_transform with rot = 0 (three points: centre, top-middle, left-middle).
    src = np.float32([center, center + [0, -0.5 * scale], center + [-0.5 * scale, 0]])
    d = np.float32([out / 2, out / 2])
    dst = np.float32([d, d + [0, -0.5 * out], d + [-0.5 * out, 0]])
    return cv2.getAffineTransform(src, dst)


full = cv2.imread(os.path.join(HERE, "..", "datasets", "samples", "matplotlib_grace_hopper.jpg"))  # BGR
img = np.ascontiguousarray(full[100:170, 150:251])  # 101 x 70, odd width
h, w = img.shape[:2]
t = affine(np.float32([w / 2.0, h / 2.0]), float(max(h, w)), 64)
warped = cv2.warpAffine(img, t, (64, 64), flags=cv2.INTER_LINEAR)
out = os.path.join(HERE, "..", "tests", "fixtures", "preprocess")
cv2.imwrite(os.path.join(out, "source.png"), img)
cv2.imwrite(os.path.join(out, "fixres64.png"), warped)
print(warped.shape, t.tolist())
