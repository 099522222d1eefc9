"""CenterNet's COCO person decoding on the PyTorch heads of the coco17 parity fixtures
(tests/fixtures/parity/{res50,hourglass104}.io.safetensors, written by make_parity_fixtures.py):
writes tests/fixtures/parity/<arch>.dets.json, the detections `multi_pose_decode` makes of the
last stack (K = 100, map coordinates, before `post_process`).

Written from the steps of xingyizhou/CenterNet `src/lib/models/decode.py` (`multi_pose_decode`,
`_nms`, `_topk`, `_topk_channel`) and `src/lib/detectors/multi_pose.py` (`hm` and `hm_hp` through a
sigmoid), in NumPy float32 (numpy only: `python scripts/make_decode_fixture.py`).
"""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "parity")


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        assert v["dtype"] == "F32"
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype="<f4").reshape(v["shape"])
    return out


def sigmoid(x):
    return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)


def nms(heat):
    """3×3 max pool (padding 1, -inf outside); keep the maxima."""
    c, h, w = heat.shape
    pad = np.full((c, h + 2, w + 2), -np.inf, dtype=np.float32)
    pad[:, 1:-1, 1:-1] = heat
    hmax = np.max(np.stack([pad[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]), 0)
    return heat * (hmax == heat)


def topk(v, k):
    """Indices of the k largest (stable: equal values keep index order) and their values."""
    idx = np.argsort(-v, kind="stable")[:k]
    return v[idx], idx


def decode(heads, K=100, thresh=0.1):
    hm = nms(sigmoid(heads["hm"][0]))
    hm_hp = nms(sigmoid(heads["hm_hp"][0]))
    wh, reg, hps, hp_off = (heads[n][0] for n in ("wh", "reg", "hps", "hp_offset"))
    c, h, w = hm.shape
    j = hps.shape[0] // 2
    # _topk: per class, then over the classes' candidates.
    per = [topk(hm[ci].reshape(-1), K) for ci in range(c)]
    s_all = np.concatenate([p[0] for p in per])
    i_all = np.concatenate([p[1] for p in per])
    scores, which = topk(s_all, K)
    inds = i_all[which]
    cls = (which // K).astype(np.float32)
    ys, xs = (inds // w).astype(np.float32), (inds % w).astype(np.float32)
    flat = lambda m: m.reshape(m.shape[0], -1)  # noqa: E731
    kps = flat(hps)[:, inds].T.copy()  # [K, 2J]
    kps[:, 0::2] += xs[:, None]
    kps[:, 1::2] += ys[:, None]
    r = flat(reg)[:, inds].T
    cx, cy = xs + r[:, 0], ys + r[:, 1]
    sz = flat(wh)[:, inds].T
    boxes = np.stack([cx - sz[:, 0] / 2, cy - sz[:, 1] / 2, cx + sz[:, 0] / 2, cy + sz[:, 1] / 2], 1)
    # _topk_channel on the landmark heatmaps, with their offsets.
    kps = kps.reshape(K, j, 2).transpose(1, 0, 2)  # [J, K, 2]
    out_kps = np.empty_like(kps)
    out_scores = np.empty((j, K), dtype=np.float32)
    side = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0])
    for g in range(j):
        hs, hi = topk(hm_hp[g].reshape(-1), K)
        hx = (hi % w).astype(np.float32) + flat(hp_off)[0, hi]
        hy = (hi // w).astype(np.float32) + flat(hp_off)[1, hi]
        keep = hs > thresh
        hs = np.where(keep, hs, np.float32(-1))
        hx = np.where(keep, hx, np.float32(-10000))
        hy = np.where(keep, hy, np.float32(-10000))
        d = np.sqrt((kps[g][:, None, 0] - hx[None, :]) ** 2 + (kps[g][:, None, 1] - hy[None, :]) ** 2)
        near = np.argmin(d, 1)  # first minimum, as torch.min
        dmin = d[np.arange(K), near]
        nx, ny, ns = hx[near], hy[near], hs[near]
        coarse = ((nx < boxes[:, 0]) | (nx > boxes[:, 2]) | (ny < boxes[:, 1]) | (ny > boxes[:, 3])
                  | (ns < thresh) | (dmin > side * np.float32(0.3)))
        out_kps[g, :, 0] = np.where(coarse, kps[g, :, 0], nx)
        out_kps[g, :, 1] = np.where(coarse, kps[g, :, 1], ny)
        out_scores[g] = ns
    return [
        {
            "class": int(cls[k]),
            "score": float(scores[k]),
            "bbox": [float(v) for v in boxes[k]],
            "keypoints": [[float(out_kps[g, k, 0]), float(out_kps[g, k, 1])] for g in range(j)],
        }
        for k in range(K)
    ]


def main(out=OUT):
    for arch, stack in (("res50", 0), ("hourglass104", 1)):
        io = read_safetensors(os.path.join(OUT, f"{arch}.io.safetensors"))
        heads = {n: io[f"stack{stack}.{n}"] for n in ("hm", "wh", "reg", "hps", "hm_hp", "hp_offset")}
        dets = decode(heads)
        with open(os.path.join(out, f"{arch}.dets.json"), "w") as f:
            json.dump({"stack": stack, "K": 100, "thresh": 0.1, "detections": dets}, f)
        print(arch, len(dets), "detections; best score", dets[0]["score"])


if __name__ == "__main__":
    main(*sys.argv[1:])
