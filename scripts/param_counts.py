"""Print the parameter counts of the full-size PyTorch reference models (used in
tests/full_size.rs): python scripts/param_counts.py"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import centernet_ref as R  # noqa: E402

FULL = {
    "res18": ({"type": "resnet", "bottleneck": False, "layers": [2, 2, 2, 2], "planes": [64, 128, 256, 512],
               "stem": 64, "deconv": [256] * 3}, 64),
    "res50": ({"type": "resnet", "bottleneck": True, "layers": [3, 4, 6, 3], "planes": [64, 128, 256, 512],
               "stem": 64, "deconv": [256] * 3}, 64),
    "dla34": ({"type": "dla", "channels": [16, 32, 64, 128, 256, 512], "deformable": True}, 256),
    "mdla34": ({"type": "dla", "channels": [16, 32, 64, 128, 256, 512], "deformable": False}, 256),
    "hourglass104": ({"type": "hourglass", "num_stacks": 2, "dims": [256, 256, 384, 384, 384, 512],
                      "modules": [2, 2, 2, 2, 2, 4], "pre_dim": 128, "cnv_dim": 256}, 256),
}

if __name__ == "__main__":
    for name, (bb, hc) in FULL.items():
        for layout, (nc, nl) in {"deepmark62": (13, 62), "coco17": (1, 17)}.items():
            m = R.build({"backbone": bb, "layout": {"num_classes": nc, "num_landmarks": nl}, "head_conv": hc})
            n = sum(p.numel() for k, p in m.named_parameters() if not k.startswith("base.fc"))
            print(f"{name} {layout}: {n}")
