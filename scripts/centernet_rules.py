"""CenterNet's training-target geometry, written from the rules of xingyizhou/CenterNet (MIT),
src/lib/utils/image.py: get_affine_transform (its three point pairs are float32 arrays, the map
solved by cv2.getAffineTransform), affine_transform (float64 product), gaussian_radius (CornerNet's
radius as CenterNet codes it) and draw_umich_gaussian. Shared by the reference scripts
make_box_rule_fixture.py and centernet_train_ref.py. Not CenterNet's code.
"""
import cv2
import numpy as np


def get_affine_transform(center, scale, rot, output_size):
    rad = np.pi * rot / 180
    sn, cs = np.sin(rad), np.cos(rad)
    src_point = [0, scale * -0.5]
    src_dir = [src_point[0] * cs - src_point[1] * sn, src_point[0] * sn + src_point[1] * cs]
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = center + src_dir
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5], np.float32) + np.array([0, dst_w * -0.5], np.float32)
    for p in (src, dst):
        direct = p[0] - p[1]
        p[2] = p[1] + np.array([-direct[1], direct[0]], dtype=np.float32)
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def affine_transform(pt, t):
    return np.dot(t, np.array([pt[0], pt[1], 1.], dtype=np.float32).T)[:2]


def gaussian_radius(det_size, min_overlap=0.7):
    height, width = det_size
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + np.sqrt(b2 ** 2 - 4 * 4 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heatmap, center, radius):
    diameter = 2 * radius + 1
    m = (diameter - 1.) / 2.
    y, x = np.ogrid[-m:m + 1, -m:m + 1]
    sigma = diameter / 6
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape[0:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    mh = heatmap[y - top:y + bottom, x - left:x + right]
    mg = g[radius - top:radius + bottom, radius - left:radius + right]
    if min(mg.shape) > 0 and min(mh.shape) > 0:
        np.maximum(mh, mg, out=mh)
