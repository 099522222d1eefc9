"""Whole-pipeline CPU latency of CenterNet's own multi_pose test path, the reference that
benches/infer.rs's `pipeline-file` rows are compared with (issue 11): per image, cv2.imread,
CenterNet's `pre_process` (fix_res affine warp to the input size, BGR normalisation, NCHW),
the network (eval, no_grad), sigmoid of hm and hm_hp, `multi_pose_decode` (K = 100, hard
landmark replacement) and `post_process` (decoded boxes and landmarks mapped back to the image).
Same full-size models and random weights as scripts/bench_pytorch.py; 62 landmark groups.

`--runtimes pytorch,onnxruntime` also runs the same network exported with `torch.onnx` (opset
17, the six heads as named outputs) in ONNX Runtime (PyPI `onnxruntime`, CPU provider, all graph
optimisations, `intra_op_num_threads` = --threads, one inter-op thread), around the same
pre-processing and decoding; the runtimes alternate per round so that both see the same machine
state. DCN models (dla34) have no ONNX export (torchvision's deform_conv2d exports only to
opset 19's DeformConv, which ONNX Runtime's CPU provider lacks) and run in PyTorch only.

Written from the steps of xingyizhou/CenterNet's src/lib/models/decode.py (multi_pose_decode),
src/lib/detectors/base_detector.py and src/lib/utils/image.py; not CenterNet's code.

    python scripts/bench_pipeline_pytorch.py [--threads 2] [--archs mdla34,res18] [--sizes 256,512]
        [--runtimes pytorch,onnxruntime] [--rounds 3] [--ours target/release/deepmark]
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import centernet_ref as R  # noqa: E402
from param_counts import FULL  # noqa: E402

MEAN = np.array([0.408, 0.447, 0.470], np.float32).reshape(1, 1, 3)
STD = np.array([0.289, 0.274, 0.278], np.float32).reshape(1, 1, 3)
SAMPLE = os.path.join(os.path.dirname(__file__), "..", "datasets", "samples", "matplotlib_grace_hopper.jpg")


def third_point(a, b):
    d = a - b
    return b + np.array([-d[1], d[0]], np.float32)


def affine(c, s, out, inv=False):
    """fix_res transform (rotation 0): centre c, source side s -> out x out."""
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = c
    src[1] = c + np.array([0, -0.5 * s], np.float32)
    dst[0] = [0.5 * out, 0.5 * out]
    dst[1] = dst[0] + np.array([0, -0.5 * out], np.float32)
    src[2] = third_point(src[0], src[1])
    dst[2] = third_point(dst[0], dst[1])
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


def pre_process(img, size):
    h, w = img.shape[:2]
    c = np.array([w / 2.0, h / 2.0], np.float32)
    s = float(max(h, w))
    inp = cv2.warpAffine(img, affine(c, s, size), (size, size), flags=cv2.INTER_LINEAR)
    inp = ((inp.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)[None]
    return torch.from_numpy(np.ascontiguousarray(inp)), c, s


def nms(h):
    return h * (F.max_pool2d(h, 3, 1, 1) == h).float()


def gather(feat, ind):
    """feat [B,C,H,W], ind [B,K] flat pixel indices -> [B,K,C]."""
    b, c = feat.shape[:2]
    f = feat.view(b, c, -1).permute(0, 2, 1)
    return f.gather(1, ind.unsqueeze(2).expand(-1, -1, c))


def multi_pose_decode(hm, wh, hps, reg, hm_hp, hp_offset, K=100, thresh=0.1):
    b, c, h, w = hm.shape
    j = hps.shape[1] // 2
    hm = nms(hm)
    s, inds = torch.topk(hm.view(b, c, -1), K)
    score, ind = torch.topk(s.view(b, -1), K)
    cls = (ind // K).float()
    inds = inds.view(b, -1).gather(1, ind)
    ys, xs = (inds // w).float(), (inds % w).float()
    kps = gather(hps, inds)
    kps[..., ::2] += xs.unsqueeze(2)
    kps[..., 1::2] += ys.unsqueeze(2)
    r = gather(reg, inds)
    xs, ys = xs + r[..., 0], ys + r[..., 1]
    sz = gather(wh, inds)
    boxes = torch.stack([xs - sz[..., 0] / 2, ys - sz[..., 1] / 2, xs + sz[..., 0] / 2, ys + sz[..., 1] / 2], 2)
    # Landmark heatmap peaks, per joint.
    hm_hp = nms(hm_hp)
    kps = kps.view(b, K, j, 2).permute(0, 2, 1, 3)  # [B,J,K,2]
    hs, hi = torch.topk(hm_hp.view(b, j, -1), K)  # [B,J,K]
    hy, hx = (hi // w).float(), (hi % w).float()
    off = gather(hp_offset, hi.view(b, -1)).view(b, j, K, 2)
    hx, hy = hx + off[..., 0], hy + off[..., 1]
    keep = (hs > thresh).float()
    hs = keep * hs - (1 - keep)
    hx = keep * hx - 10000 * (1 - keep)
    hy = keep * hy - 10000 * (1 - keep)
    peaks = torch.stack([hx, hy], -1)  # [B,J,K,2]
    dist = ((kps.unsqueeze(3) - peaks.unsqueeze(2)) ** 2).sum(4).sqrt()  # [B,J,K(det),K(peak)]
    dmin, imin = dist.min(3)
    hs = hs.gather(2, imin).unsqueeze(-1)
    near = peaks.gather(2, imin.unsqueeze(-1).expand(-1, -1, -1, 2))
    bx = boxes.unsqueeze(1).expand(-1, j, -1, -1)
    l, t, rr, bb = bx[..., 0:1], bx[..., 1:2], bx[..., 2:3], bx[..., 3:4]
    side = torch.max(bb - t, rr - l)
    coarse = ((near[..., 0:1] < l) | (near[..., 0:1] > rr) | (near[..., 1:2] < t) | (near[..., 1:2] > bb)
              | (hs < thresh) | (dmin.unsqueeze(-1) > 0.3 * side)).float()
    kps = coarse * kps + (1 - coarse) * near
    kps = kps.permute(0, 2, 1, 3).reshape(b, K, 2 * j)
    return torch.cat([boxes, score.unsqueeze(2), kps, cls.unsqueeze(2)], 2)


def post_process(dets, c, s, size):
    d = dets[0].numpy().copy()
    inv = affine(c, s, size // 4, inv=True)
    pts = d[:, np.r_[0:4, 5:d.shape[1] - 1]].reshape(-1, 2)
    pts = pts @ inv[:, :2].T + inv[:, 2]
    d[:, np.r_[0:4, 5:d.shape[1] - 1]] = pts.reshape(d.shape[0], -1)
    return d


HEADS = ("hm", "wh", "hps", "reg", "hm_hp", "hp_offset")


class Heads(torch.nn.Module):
    """The network with its head dict flattened to a tuple (ONNX outputs are positional)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        out = self.m(x)[-1]
        return tuple(out[h] for h in HEADS)


def ort_session(model, size, threads, tmp, spinning):
    """Exports `model` at `size` with torch.onnx and opens it in ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    path = os.path.join(tmp, f"model-{size}.onnx")
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    # eval(): the exporter puts the module it is given back into that module's mode afterwards,
    # recursively, so a wrapper in training mode would leave BatchNorm on batch statistics.
    heads = Heads(model).eval()
    torch.onnx.export(heads, (x,), path, input_names=["input"], output_names=list(HEADS),
                      opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        # Without this, ORT's pool keeps spinning after each run and takes the cores from the
        # decoding that follows (decode+post 2-3x slower in a pipeline).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = heads(x)
    got = sess.run(None, {"input": x.numpy()})
    for h, a, b in zip(HEADS, want, got):
        err = float(np.abs(a.numpy() - b).max() / max(1e-6, float(np.abs(a.numpy()).max())))
        assert err < 1e-4, f"onnxruntime's {h} differs from PyTorch's by {err:.2e} (relative)"
    return sess


def forward_ort(sess):
    def run(x):
        outs = sess.run(None, {"input": x.numpy()})
        return {h: torch.from_numpy(o) for h, o in zip(HEADS, outs)}
    return run


def forward_torch(model):
    def run(x):
        return model(x)[-1]
    return run


def timed(forward, path, size, iters):
    """Median stage times (ms) of `iters` runs of the whole pipeline."""
    stages = {"pre": [], "forward": [], "decode+post": [], "total": []}
    for _ in range(iters):
        t0 = time.perf_counter()
        img = cv2.imread(path)
        x, c, s = pre_process(img, size)
        t1 = time.perf_counter()
        with torch.no_grad():
            out = forward(x)
            t2 = time.perf_counter()
            dets = multi_pose_decode(out["hm"].sigmoid_(), out["wh"], out["hps"], out["reg"],
                                     out["hm_hp"].sigmoid_(), out["hp_offset"])
        d = post_process(dets, c, s, size)
        t3 = time.perf_counter()
        assert d.shape == (100, 4 + 1 + 124 + 1), d.shape
        for k, v in zip(stages, [t1 - t0, t2 - t1, t3 - t2, t3 - t0]):
            stages[k].append(v)
    return {k: 1000 * sorted(v)[len(v) // 2] for k, v in stages.items()}


def ours(program, arch, size, iters, image, r):
    """`deepmark profile` of the same architecture, size and image: its median stage times
    (each stage's median over the runs, like the runtimes' medians here; the total is the
    median of the runs' totals)."""
    import subprocess

    out = subprocess.run([program, "profile", "--arch", arch, "--input-size", str(size),
                          "--runs", str(iters), "--image", image],
                         check=True, capture_output=True, text=True).stdout
    ms = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("preprocess", "forward", "decode", "post", "total", "load"):
            ms[parts[0]] = float(parts[-2])  # `stage  mean  median  share%`
    pre = ms["load"] + ms["preprocess"]
    return (f"ours-pipeline/{arch}/{size}: median {ms['total']:.1f} ms (load+pre {pre:.1f}, "
            f"forward {ms['forward']:.1f}, decode+post {ms['decode'] + ms['post']:.1f}; "
            f"{iters} runs, round {r + 1})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--archs", default="mdla34,res18,dla34")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds of the runtimes")
    ap.add_argument("--runtimes", default="pytorch", help="pytorch, onnxruntime or both")
    ap.add_argument("--ort-spinning", action="store_true",
                    help="leave ONNX Runtime's spinning thread pool on (its default)")
    ap.add_argument("--ours", metavar="DEEPMARK",
                    help="also run `DEEPMARK profile` (ours, random weights, same image) in each round")
    ap.add_argument("--image", default=SAMPLE)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    runtimes = a.runtimes.split(",")
    versions = f"torch {torch.__version__}, opencv {cv2.__version__}"
    if "onnxruntime" in runtimes:
        import onnxruntime
        versions += f", onnxruntime {onnxruntime.__version__}"
    print(f"{versions}, {torch.get_num_threads()} threads")
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.archs.split(","):
            bb, hc = FULL[name]
            m = R.build({"backbone": bb, "layout": {"num_classes": 13, "num_landmarks": 62}, "head_conv": hc}).eval()
            for size in [int(s) for s in a.sizes.split(",")]:
                forwards = {}
                for rt in runtimes:
                    if rt == "pytorch":
                        forwards[rt] = forward_torch(m)
                    elif rt == "onnxruntime" and bb.get("deformable"):
                        print(f"onnxruntime-pipeline/{name}/{size}: skipped (DCNv2 has no ONNX Runtime CPU kernel)")
                    elif rt == "onnxruntime":
                        forwards[rt] = forward_ort(ort_session(m, size, a.threads, tmp, a.ort_spinning))
                    else:
                        sys.exit(f"--runtimes: unknown runtime {rt!r} (pytorch, onnxruntime)")
                assert not m.training
                for rt, fwd in forwards.items():  # warm-up
                    with torch.no_grad():
                        timed(fwd, a.image, size, 1)
                for r in range(a.rounds):
                    if a.ours:
                        print(ours(a.ours, name, size, a.iters, a.image, r), flush=True)
                    for rt, fwd in forwards.items():
                        med = timed(fwd, a.image, size, a.iters)
                        print(f"{rt}-pipeline/{name}/{size}: median {med['total']:.1f} ms "
                              f"(load+pre {med['pre']:.1f}, forward {med['forward']:.1f}, "
                              f"decode+post {med['decode+post']:.1f}; {a.iters} runs, round {r + 1})",
                              flush=True)


if __name__ == "__main__":
    main()
