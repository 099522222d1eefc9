"""CenterNet's multi-pose training, step by step, as the reference for tests/train_parity.rs.

Written from the rules of xingyizhou/CenterNet (MIT): MultiPoseDataset's targets
(src/lib/datasets/sample/multi_pose.py with src/lib/utils/image.py: no random crop, flip or
colour augmentation), MultiPoseLoss (src/lib/trains/multi_pose.py and src/lib/models/losses.py:
focal loss on sigmoid(hm) and sigmoid(hm_hp) clamped to [1e-4, 1 - 1e-4], RegL1Loss on wh, reg,
hp_offset, RegWeightedL1Loss on hps; weights 1, 0.1, 1, 1, 1, 1) and main.py's optimiser
(torch.optim.Adam with only the learning rate set). Not CenterNet's code.

The network is the reduced ResNet-18 CenterNet of tests/fixtures/parity/res18.{pth,config.json}
(294 landmarks, scheme "none") with CenterNet's head initialisation on top (msra_resnet.py:
the heatmap heads' last bias -2.19, the other heads' last convolution N(0, 0.001) with bias 0),
saved as tests/fixtures/train_parity/init.pth. On the four synthetic PNG images of
tests/fixtures/train_parity (one batch of all four, the network in training mode) it records
every loss term of each of STEPS steps (each step's loss is computed before its update) into
tests/fixtures/train_parity/losses.json.

    python -m venv /tmp/cv4 && /tmp/cv4/bin/pip install numpy opencv-python-headless==4.10.0.84 torch
    /tmp/cv4/bin/python scripts/centernet_train_ref.py [--make-images]

--make-images first writes the PNGs and train.json from the synthetic set (datasets/synthetic,
made by `cargo xtask synth --out datasets/synthetic --n 256`).
"""
import json
import math
import os
import sys

import cv2
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIX = os.path.join(ROOT, "tests", "fixtures", "train_parity")
sys.path.insert(0, HERE)
from centernet_ref import build  # noqa: E402
from centernet_rules import affine_transform, draw_gaussian, gaussian_radius, get_affine_transform  # noqa: E402

INPUT = 128
OUTPUT = INPUT // 4
STEPS = 30
LR = 1e-4
MAX_OBJS = 32
NUM_JOINTS = 294
MEAN = np.array([0.40789654, 0.44719302, 0.47026115], np.float32).reshape(1, 1, 3)  # BGR
STD = np.array([0.28863828, 0.27408164, 0.27809835], np.float32).reshape(1, 1, 3)


def make_images():
    src = os.path.join(ROOT, "datasets", "synthetic")
    d = json.load(open(os.path.join(src, "train.json")))
    images = d["images"][:4]
    ids = {i["id"] for i in images}
    os.makedirs(os.path.join(FIX, "image"), exist_ok=True)
    for im in images:
        png = im["file_name"].rsplit(".", 1)[0] + ".png"
        pixels = cv2.imread(os.path.join(src, "image", im["file_name"]))
        cv2.imwrite(os.path.join(FIX, "image", png), pixels, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        im["file_name"] = png
    d["images"] = images
    d["annotations"] = [a for a in d["annotations"] if a["image_id"] in ids]
    for a in d["annotations"]:
        a.pop("segmentation", None)
    json.dump(d, open(os.path.join(FIX, "train.json"), "w"))


def sample(image, anns):
    img = cv2.imread(os.path.join(FIX, "image", image["file_name"]))
    c = np.array([img.shape[1] / 2., img.shape[0] / 2.], dtype=np.float32)
    s = max(img.shape[0], img.shape[1]) * 1.0
    inp = cv2.warpAffine(img, get_affine_transform(c, s, 0, [INPUT, INPUT]), (INPUT, INPUT),
                         flags=cv2.INTER_LINEAR)
    inp = ((inp.astype(np.float32) / 255. - MEAN) / STD).transpose(2, 0, 1)
    trans_output = get_affine_transform(c, s, 0, [OUTPUT, OUTPUT])
    t = {
        "hm": np.zeros((13, OUTPUT, OUTPUT), np.float32),
        "hm_hp": np.zeros((NUM_JOINTS, OUTPUT, OUTPUT), np.float32),
        "wh": np.zeros((MAX_OBJS, 2), np.float32),
        "hps": np.zeros((MAX_OBJS, NUM_JOINTS * 2), np.float32),
        "reg": np.zeros((MAX_OBJS, 2), np.float32),
        "ind": np.zeros(MAX_OBJS, np.int64),
        "reg_mask": np.zeros(MAX_OBJS, np.uint8),
        "hps_mask": np.zeros((MAX_OBJS, NUM_JOINTS * 2), np.uint8),
        "hp_offset": np.zeros((MAX_OBJS * NUM_JOINTS, 2), np.float32),
        "hp_ind": np.zeros(MAX_OBJS * NUM_JOINTS, np.int64),
        "hp_mask": np.zeros(MAX_OBJS * NUM_JOINTS, np.int64),
    }
    for k, ann in enumerate(anns[:MAX_OBJS]):
        b = ann["bbox"]
        bbox = np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]], dtype=np.float32)
        cls_id = int(ann["category_id"]) - 1
        pts = np.array(ann["keypoints"], np.float32).reshape(NUM_JOINTS, 3)
        bbox[:2] = affine_transform(bbox[:2], trans_output)
        bbox[2:] = affine_transform(bbox[2:], trans_output)
        bbox = np.clip(bbox, 0, OUTPUT - 1)
        h, w = bbox[3] - bbox[1], bbox[2] - bbox[0]
        if not (h > 0 and w > 0):
            continue
        radius = max(0, int(gaussian_radius((math.ceil(h), math.ceil(w)))))
        ct = np.array([(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2], dtype=np.float32)
        ct_int = ct.astype(np.int32)
        t["wh"][k] = 1. * w, 1. * h
        t["ind"][k] = ct_int[1] * OUTPUT + ct_int[0]
        t["reg"][k] = ct - ct_int
        t["reg_mask"][k] = 1
        if pts[:, 2].sum() == 0:
            t["hm"][cls_id, ct_int[1], ct_int[0]] = 0.9999
            t["reg_mask"][k] = 0
        for j in range(NUM_JOINTS):
            if pts[j, 2] > 0:
                pts[j, :2] = affine_transform(pts[j, :2], trans_output)
                if 0 <= pts[j, 0] < OUTPUT and 0 <= pts[j, 1] < OUTPUT:
                    t["hps"][k, j * 2:j * 2 + 2] = pts[j, :2] - ct_int
                    t["hps_mask"][k, j * 2:j * 2 + 2] = 1
                    pt_int = pts[j, :2].astype(np.int32)
                    t["hp_offset"][k * NUM_JOINTS + j] = pts[j, :2] - pt_int
                    t["hp_ind"][k * NUM_JOINTS + j] = pt_int[1] * OUTPUT + pt_int[0]
                    t["hp_mask"][k * NUM_JOINTS + j] = 1
                    draw_gaussian(t["hm_hp"][j], pt_int, radius)
        draw_gaussian(t["hm"][cls_id], ct_int, radius)
    return inp, t


def gather(feat, ind):
    b, c = feat.shape[:2]
    feat = feat.permute(0, 2, 3, 1).reshape(b, -1, c)
    return feat.gather(1, ind.unsqueeze(2).expand(b, ind.shape[1], c))


def focal(pred, gt):
    pos = gt.eq(1).float()
    neg = gt.lt(1).float()
    pos_loss = (torch.log(pred) * torch.pow(1 - pred, 2) * pos).sum()
    neg_loss = (torch.log(1 - pred) * torch.pow(pred, 2) * torch.pow(1 - gt, 4) * neg).sum()
    num_pos = pos.sum()
    return -neg_loss if num_pos == 0 else -(pos_loss + neg_loss) / num_pos


def reg_l1(output, mask, ind, target):
    pred = gather(output, ind)
    mask = mask.unsqueeze(2).expand_as(pred).float()
    return torch.nn.functional.l1_loss(pred * mask, target * mask, reduction="sum") / (mask.sum() + 1e-4)


def reg_weighted_l1(output, mask, ind, target):
    pred = gather(output, ind)
    mask = mask.float()
    return torch.nn.functional.l1_loss(pred * mask, target * mask, reduction="sum") / (mask.sum() + 1e-4)


def main():
    if "--make-images" in sys.argv:
        make_images()
    torch.set_num_threads(1)
    d = json.load(open(os.path.join(FIX, "train.json")))
    samples = [sample(im, [a for a in d["annotations"] if a["image_id"] == im["id"]]) for im in d["images"]]
    inputs = torch.from_numpy(np.stack([s[0] for s in samples]))
    batch = {k: torch.from_numpy(np.stack([s[1][k] for s in samples])) for k in samples[0][1]}
    parity = os.path.join(ROOT, "tests", "fixtures", "parity")
    model = build(json.load(open(os.path.join(parity, "res18.config.json"))))
    ckpt = torch.load(os.path.join(parity, "res18.pth"), map_location="cpu")
    model.load_state_dict(ckpt.get("state_dict", ckpt))
    gen = torch.Generator().manual_seed(317)
    with torch.no_grad():
        for name in model.heads:
            last = getattr(model, name)[-1]
            if name in ("hm", "hm_hp"):
                last.bias.fill_(-2.19)
            else:
                last.weight.copy_(torch.randn(last.weight.shape, generator=gen) * 0.001)
                last.bias.zero_()
    torch.save({"epoch": 0, "state_dict": model.state_dict()}, os.path.join(FIX, "init.pth"))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps = []
    for step in range(STEPS):
        out = model(inputs)
        out = out[-1] if isinstance(out, list) else out
        hm = torch.clamp(out["hm"].sigmoid(), min=1e-4, max=1 - 1e-4)
        hm_hp = torch.clamp(out["hm_hp"].sigmoid(), min=1e-4, max=1 - 1e-4)
        parts = {
            "hm": focal(hm, batch["hm"]),
            "wh": reg_l1(out["wh"], batch["reg_mask"], batch["ind"], batch["wh"]),
            "reg": reg_l1(out["reg"], batch["reg_mask"], batch["ind"], batch["reg"]),
            "hps": reg_weighted_l1(out["hps"], batch["hps_mask"], batch["ind"], batch["hps"]),
            "hm_hp": focal(hm_hp, batch["hm_hp"]),
            "hp_offset": reg_l1(out["hp_offset"], batch["hp_mask"], batch["hp_ind"], batch["hp_offset"]),
        }
        loss = (parts["hm"] + 0.1 * parts["wh"] + parts["reg"] + parts["hps"] + parts["hm_hp"]
                + parts["hp_offset"])
        steps.append({"loss": loss.item(), **{k: v.item() for k, v in parts.items()}})
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(step, {k: round(v, 5) for k, v in steps[-1].items()})
    json.dump({"torch": torch.__version__, "opencv": cv2.__version__, "input_size": INPUT, "lr": LR,
               "steps": steps}, open(os.path.join(FIX, "losses.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
