"""Generate the PyTorch parity fixtures in tests/fixtures/parity/ (torch from PyPI needed only
here). For each architecture: a reduced-width CenterNet with random weights (non-zero DCN
offsets and masks, non-trivial BatchNorm statistics), saved as a CenterNet checkpoint; a random
input; the raw heads of every stack; the deepmark model config.

    python scripts/make_parity_fixtures.py [out_dir]
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from centernet_ref import HEAD_NAMES, DCN, build  # noqa: E402

LAYOUTS = {"none": (13, 294), "agg81": (13, 81), "deepmark62": (13, 62), "coco17": (1, 17)}

FIXTURES = {
    # name: (config, input side, layout, checkpoint style)
    "res18": ({"type": "resnet", "bottleneck": False, "layers": [2, 2, 2, 2], "planes": [8, 16, 32, 64],
               "stem": 8, "deconv": [16, 16, 16]}, 8, 64, "none", "epoch_state_dict"),
    "res50": ({"type": "resnet", "bottleneck": True, "layers": [3, 4, 6, 3], "planes": [4, 8, 16, 32],
               "stem": 8, "deconv": [16, 16, 16]}, 8, 64, "coco17", "module_prefix"),
    "dla34": ({"type": "dla", "channels": [4, 4, 8, 16, 32, 64], "deformable": True}, 8, 64, "deepmark62",
              "epoch_state_dict"),
    "mdla34": ({"type": "dla", "channels": [4, 4, 8, 16, 32, 64], "deformable": False}, 8, 64, "agg81",
               "bare"),
    "hourglass104": ({"type": "hourglass", "num_stacks": 2, "dims": [8, 8, 12, 12, 12, 16],
                      "modules": [2, 2, 2, 2, 2, 4], "pre_dim": 8, "cnv_dim": 16}, None, 128, "coco17",
                     "epoch_state_dict"),
}


def randomise(model, gen):
    """Random weights that keep activations O(1) and exercise every code path."""
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=gen) + 0.5
            m.bias.data = torch.randn(n, generator=gen) * 0.1
            m.running_mean.data = torch.randn(n, generator=gen) * 0.1
            m.running_var.data = torch.rand(n, generator=gen) + 0.5
            m.num_batches_tracked.fill_(7)
        elif isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and not name.endswith("conv_offset_mask"):
            w = m.weight
            fan_in = w[0].numel() if isinstance(m, torch.nn.Conv2d) else w.shape[1] * w.shape[2] * w.shape[3]
            w.data = torch.randn(w.shape, generator=gen) * math.sqrt(1.0 / fan_in)
            if m.bias is not None:
                m.bias.data = torch.randn(m.bias.shape, generator=gen) * 0.1
        elif isinstance(m, DCN):
            cin = m.weight.shape[1]
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * math.sqrt(1.0 / (9 * cin))
            m.bias.data = torch.randn(m.bias.shape, generator=gen) * 0.1
            om = m.conv_offset_mask
            # Offsets of about ±1 px (fractional, so bilinear sampling matters) and masks away from 0.5.
            om.weight.data = torch.randn(om.weight.shape, generator=gen) * (0.8 / math.sqrt(9 * cin))
            om.bias.data = torch.randn(om.bias.shape, generator=gen) * 0.7


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests",
                                                                   "fixtures", "parity")
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(2)
    for i, (name, (backbone, head_conv, side, layout, style)) in enumerate(FIXTURES.items()):
        gen = torch.Generator().manual_seed(317 + i)
        nc, nl = LAYOUTS[layout]
        cfg = {"backbone": backbone, "layout": {"num_classes": nc, "num_landmarks": nl},
               "head_conv": head_conv if head_conv is not None else backbone["dims"][0]}
        model = build(cfg)
        randomise(model, gen)
        model.eval()
        x = torch.randn(1, 3, side, side, generator=gen)
        with torch.no_grad():
            outs = model(x)
        sd = model.state_dict()
        if style == "epoch_state_dict":
            ckpt = {"epoch": 3, "state_dict": sd}
        elif style == "module_prefix":
            ckpt = {"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}
        else:
            ckpt = sd
        torch.save(ckpt, os.path.join(out_dir, f"{name}.pth"))
        tensors = {"input": x.contiguous()}
        for s, o in enumerate(outs):
            for h in HEAD_NAMES:
                tensors[f"stack{s}.{h}"] = o[h].contiguous()
        save_file(tensors, os.path.join(out_dir, f"{name}.io.safetensors"))
        with open(os.path.join(out_dir, f"{name}.config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n_params} params, {len(sd)} keys, heads {[tuple(outs[-1][h].shape) for h in HEAD_NAMES]}")

    # A CenterNet `ctdet` COCO checkpoint (80-class hm, wh, reg only), the kind DeepMark++ starts
    # from: importing it into a 13-class multi-pose model must re-initialise exactly `hm.2.*` and
    # report the three landmark heads as missing.
    backbone, head_conv = FIXTURES["res18"][0], FIXTURES["res18"][1]
    cfg = {"backbone": backbone, "layout": {"num_classes": 80, "num_landmarks": 1}, "head_conv": head_conv}
    model = build(cfg)
    for h in ["hps", "hm_hp", "hp_offset"]:
        delattr(model, h)
    model.heads = {"hm": 80, "wh": 2, "reg": 2}
    randomise(model, torch.Generator().manual_seed(80))
    torch.save({"epoch": 230, "state_dict": model.state_dict()}, os.path.join(out_dir, "res18_ctdet_coco80.pth"))
    print("res18_ctdet_coco80: written")


if __name__ == "__main__":
    main()
