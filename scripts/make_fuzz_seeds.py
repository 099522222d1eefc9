"""Seeds of the `image` and `pth` fuzz targets (fuzz/corpus/), made from scratch.

Images: tiny pictures in every format a user might feed (JPEG baseline and progressive, PNG
RGB/gray/palette/16-bit/RGBA/interlaced, and BMP, GIF, WebP, TIFF, which deepmark must refuse
cleanly). Checkpoints: state_dicts of `deepmark::fuzz::FuzzNet` (conv 3→4 3×3 with bias,
BatchNorm(4), head 4→2 1×1 without bias) in the layouts CenterNet's checkpoints use: bare,
`{'epoch', 'state_dict'}`, and with DataParallel's `module.` prefix; one float64, one legacy
(non-zip) file. Run: python3 scripts/make_fuzz_seeds.py (needs torch and Pillow).
"""
import io
import os

import torch
from PIL import Image

root = os.path.join(os.path.dirname(__file__), "..", "fuzz", "corpus")
img_dir = os.path.join(root, "image")
pth_dir = os.path.join(root, "pth")
os.makedirs(img_dir, exist_ok=True)
os.makedirs(pth_dir, exist_ok=True)

rgb = Image.new("RGB", (7, 5))
for x in range(7):
    for y in range(5):
        rgb.putpixel((x, y), (x * 36, y * 50, (x + y) * 20))
rgb.save(os.path.join(img_dir, "rgb.jpg"), quality=80)
rgb.save(os.path.join(img_dir, "progressive.jpg"), quality=80, progressive=True)
rgb.save(os.path.join(img_dir, "rgb.png"))
rgb.convert("L").save(os.path.join(img_dir, "gray.png"))
rgb.convert("P").save(os.path.join(img_dir, "palette.png"))
rgb.convert("RGBA").save(os.path.join(img_dir, "rgba.png"))
rgb.save(os.path.join(img_dir, "interlaced.png"), interlace=1)
Image.new("I;16", (4, 3), 1000).save(os.path.join(img_dir, "gray16.png"))
rgb.save(os.path.join(img_dir, "rgb.bmp"))
rgb.save(os.path.join(img_dir, "rgb.gif"))
rgb.save(os.path.join(img_dir, "rgb.webp"))
rgb.save(os.path.join(img_dir, "rgb.tiff"))

torch.manual_seed(0)
sd = {
    "conv.weight": torch.randn(4, 3, 3, 3),
    "conv.bias": torch.randn(4),
    "bn.weight": torch.rand(4) + 0.5,
    "bn.bias": torch.randn(4),
    "bn.running_mean": torch.randn(4),
    "bn.running_var": torch.rand(4) + 0.5,
    "bn.num_batches_tracked": torch.tensor(7),
    "head.weight": torch.randn(2, 4, 1, 1),
}
torch.save(sd, os.path.join(pth_dir, "bare.pth"))
torch.save({"epoch": 3, "state_dict": sd}, os.path.join(pth_dir, "centernet.pth"))
torch.save({"module." + k: v for k, v in sd.items()}, os.path.join(pth_dir, "dataparallel.pth"))
torch.save({k: v.double() if v.is_floating_point() else v for k, v in sd.items()},
           os.path.join(pth_dir, "float64.pth"))
torch.save(sd, os.path.join(pth_dir, "legacy.pth"), _use_new_zipfile_serialization=False)
