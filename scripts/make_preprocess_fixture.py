"""CenterNet's affine warps done by OpenCV, as the reference for src/preprocess.rs.

The source is a small non-square PNG cut from a bundled sample (so JPEG decoders play no part).
Each case is CenterNet's get_affine_transform (src/lib/utils/image.py: three float32 points,
cv2.getAffineTransform) for a centre, scale, rotation and square output, warped with
cv2.warpAffine(INTER_LINEAR, black border) — case 0 is the test-time fix_res warp, the others
are like the training augmentation's. OpenCV is pinned to 4.10, the last release that
interpolates 8-bit images in fixed point (1/32 pixel, 15-bit weights) as CenterNet's OpenCV
did; 4.11 and later compute in float32 and differ from it on 4-10 % of the values of these
warps, by up to 3 grey levels. Writes tests/fixtures/preprocess/{source.png, warp-<i>.png, cases.json}.

    python -m venv /tmp/cv4 && /tmp/cv4/bin/pip install numpy opencv-python-headless==4.10.0.84
    /tmp/cv4/bin/python scripts/make_preprocess_fixture.py
"""
import json
import os

import cv2
import numpy as np

HERE = os.path.dirname(__file__)
OUT = os.path.join(HERE, "..", "tests", "fixtures", "preprocess")

CASES = [
    {"center": [50.5, 35.0], "scale": 101.0, "rot": 0.0, "out": 64},  # fix_res of the 101 x 70 source
    {"center": [40.3, 30.7], "scale": 80.0, "rot": 0.0, "out": 64},
    {"center": [50.0, 35.0], "scale": 120.0, "rot": 25.0, "out": 64},
    {"center": [60.0, 20.0], "scale": 60.0, "rot": -40.0, "out": 48},
]


def get_affine_transform(center, scale, rot, out):
    # CenterNet's rule (shift 0): the centre, a point half a scale above it (rotated), and the
    # point a quarter turn from the second, onto the output's centre, top-middle and its third.
    rad = np.pi * rot / 180
    sn, cs = np.sin(rad), np.cos(rad)
    src_dir = [-0.5 * scale * -sn, -0.5 * scale * cs]
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = np.float32(center) + src_dir
    dst[0] = [out * 0.5, out * 0.5]
    dst[1] = np.float32([out * 0.5, out * 0.5]) + np.float32([0, out * -0.5])
    for p in (src, dst):
        d = p[0] - p[1]
        p[2] = p[1] + np.float32([-d[1], d[0]])
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


full = cv2.imread(os.path.join(HERE, "..", "datasets", "samples", "matplotlib_grace_hopper.jpg"))  # BGR
img = np.ascontiguousarray(full[100:170, 150:251])  # 101 x 70, odd width
cv2.imwrite(os.path.join(OUT, "source.png"), img)
for i, c in enumerate(CASES):
    t = get_affine_transform(np.float32(c["center"]), c["scale"], c["rot"], c["out"])
    warped = cv2.warpAffine(img, t, (c["out"], c["out"]), flags=cv2.INTER_LINEAR)
    cv2.imwrite(os.path.join(OUT, f"warp-{i}.png"), warped)
with open(os.path.join(OUT, "cases.json"), "w") as f:
    json.dump({"opencv": cv2.__version__, "cases": CASES}, f, indent=1)
print(cv2.__version__, len(CASES), "cases")
