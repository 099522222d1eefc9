"""PyTorch reference models for parity tests: CenterNet's msra_resnet, pose_dla_dcn (DLA-34 and
mDLA-34) and large_hourglass, written from the structure of xingyizhou/CenterNet's
src/lib/models/networks/{msra_resnet,pose_dla_dcn,large_hourglass}.py (module names chosen so
that state_dict keys are CenterNet's).

Widths are parameters so that fixtures can use reduced models. Not a copy of CenterNet's code.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

HEAD_NAMES = ["hm", "wh", "reg", "hps", "hm_hp", "hp_offset"]


def head_channels(num_classes, num_landmarks):
    return {"hm": num_classes, "wh": 2, "reg": 2, "hps": 2 * num_landmarks,
            "hm_hp": num_landmarks, "hp_offset": 2}


def conv(cin, cout, k, stride=1, bias=False):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, bias=bias)


# ----------------------------------------------------------------------------------- heads
def make_head(cin, head_conv, cout):
    return nn.Sequential(conv(cin, head_conv, 3, bias=True), nn.ReLU(inplace=True),
                         nn.Conv2d(head_conv, cout, 1))


# ---------------------------------------------------------------------------------- resnet
class BasicBlockR(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, downsample):
        super().__init__()
        self.conv1 = conv(cin, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        r = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + r)


class BottleneckR(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, downsample):
        super().__init__()
        self.conv1 = conv(cin, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        r = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + r)


class PoseResNet(nn.Module):
    def __init__(self, bottleneck, layers, planes, stem, deconv, heads, head_conv):
        super().__init__()
        block = BottleneckR if bottleneck else BasicBlockR
        self.conv1 = conv(3, stem, 7, 2)
        self.bn1 = nn.BatchNorm2d(stem)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = stem
        for i, (n, p) in enumerate(zip(layers, planes)):
            blocks = []
            for b in range(n):
                s = (1 if i == 0 else 2) if b == 0 else 1
                ds = None
                if s != 1 or inplanes != p * block.expansion:
                    ds = nn.Sequential(conv(inplanes, p * block.expansion, 1, s),
                                       nn.BatchNorm2d(p * block.expansion))
                blocks.append(block(inplanes, p, s, ds))
                inplanes = p * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        mods = []
        for out in deconv:
            mods += [nn.ConvTranspose2d(inplanes, out, 4, 2, 1, 0, bias=False), nn.BatchNorm2d(out),
                     nn.ReLU(inplace=True)]
            inplanes = out
        self.deconv_layers = nn.Sequential(*mods)
        self.heads = heads
        for h, c in heads.items():
            setattr(self, h, make_head(inplanes, head_conv, c))

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.deconv_layers(x)
        return [{h: getattr(self, h)(x) for h in self.heads}]


# ------------------------------------------------------------------------------------- DLA
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = conv(cin, cout, 3, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv(cout, cout, 3)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x, residual=None):
        residual = x if residual is None else residual
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + residual)


class Root(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = conv(cin, cout, 1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, *xs):
        return F.relu(self.bn(self.conv(torch.cat(xs, 1))))


class Tree(nn.Module):
    def __init__(self, levels, cin, cout, stride=1, level_root=False, root_dim=0):
        super().__init__()
        if root_dim == 0:
            root_dim = 2 * cout
        if level_root:
            root_dim += cin
        if levels == 1:
            self.tree1 = BasicBlock(cin, cout, stride)
            self.tree2 = BasicBlock(cout, cout, 1)
            self.root = Root(root_dim, cout)
        else:
            self.tree1 = Tree(levels - 1, cin, cout, stride, root_dim=0)
            self.tree2 = Tree(levels - 1, cout, cout, root_dim=root_dim + cout)
        self.levels = levels
        self.level_root = level_root
        self.downsample = nn.MaxPool2d(stride, stride) if stride > 1 else None
        self.project = (nn.Sequential(conv(cin, cout, 1), nn.BatchNorm2d(cout))
                        if cin != cout else None)

    def forward(self, x, residual=None, children=None):
        children = [] if children is None else children
        bottom = self.downsample(x) if self.downsample is not None else x
        residual = self.project(bottom) if self.project is not None else bottom
        if self.level_root:
            children.append(bottom)
        x1 = self.tree1(x, residual)
        if self.levels == 1:
            x2 = self.tree2(x1)
            return self.root(x2, x1, *children)
        children.append(x1)
        return self.tree2(x1, children=children)


def conv_level(cin, cout, stride=1):
    return nn.Sequential(conv(cin, cout, 3, stride), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DLA(nn.Module):
    def __init__(self, c, with_fc=True):
        super().__init__()
        self.base_layer = nn.Sequential(conv(3, c[0], 7), nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True))
        self.level0 = conv_level(c[0], c[0])
        self.level1 = conv_level(c[0], c[1], 2)
        self.level2 = Tree(1, c[1], c[2], 2, level_root=False)
        self.level3 = Tree(2, c[2], c[3], 2, level_root=True)
        self.level4 = Tree(2, c[3], c[4], 2, level_root=True)
        self.level5 = Tree(1, c[4], c[5], 2, level_root=True)
        if with_fc:  # ImageNet classifier that CenterNet checkpoints carry but never use
            self.fc = nn.Conv2d(c[5], 10, 1)

    def forward(self, x):
        x = self.base_layer(x)
        ys = []
        for i in range(6):
            x = getattr(self, f"level{i}")(x)
            ys.append(x)
        return ys


class DCN(nn.Module):
    """Modulated deformable conv v2 as CenterNet's DCNv2 (3x3, stride 1, pad 1)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.conv_offset_mask = nn.Conv2d(cin, 27, 3, 1, 1, bias=True)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x):
        o1, o2, m = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        return torchvision.ops.deform_conv2d(x, offset, self.weight, self.bias, padding=1,
                                             mask=torch.sigmoid(m))


class DeformConv(nn.Module):
    def __init__(self, cin, cout, deformable):
        super().__init__()
        self.actf = nn.Sequential(nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.conv = DCN(cin, cout) if deformable else nn.Conv2d(cin, cout, 3, 1, 1, bias=True)

    def forward(self, x):
        return self.actf(self.conv(x))


def bilinear_(up):
    w = up.weight.data
    f = math.ceil(w.size(2) / 2)
    c = (2 * f - 1 - f % 2) / (2. * f)
    for i in range(w.size(2)):
        for j in range(w.size(3)):
            w[0, 0, i, j] = (1 - math.fabs(i / f - c)) * (1 - math.fabs(j / f - c))
    for ch in range(1, w.size(0)):
        w[ch, 0] = w[0, 0]


class IDAUp(nn.Module):
    def __init__(self, o, channels, up_f, deformable):
        super().__init__()
        for i in range(1, len(channels)):
            f = int(up_f[i])
            setattr(self, f"proj_{i}", DeformConv(channels[i], o, deformable))
            up = nn.ConvTranspose2d(o, o, f * 2, stride=f, padding=f // 2, output_padding=0,
                                    groups=o, bias=False)
            bilinear_(up)
            setattr(self, f"up_{i}", up)
            setattr(self, f"node_{i}", DeformConv(o, o, deformable))

    def forward(self, layers, startp, endp):
        for i in range(startp + 1, endp):
            k = i - startp
            up = getattr(self, f"up_{k}")(getattr(self, f"proj_{k}")(layers[i]))
            layers[i] = getattr(self, f"node_{k}")(up + layers[i - 1])


class DLAUp(nn.Module):
    def __init__(self, startp, channels, deformable):
        super().__init__()
        self.startp = startp
        channels = list(channels)
        in_channels = list(channels)
        scales = [2 ** i for i in range(len(channels))]
        for i in range(len(channels) - 1):
            j = -i - 2
            setattr(self, f"ida_{i}", IDAUp(channels[j], in_channels[j:],
                                            [s // scales[j] for s in scales[j:]], deformable))
            scales[j + 1:] = [scales[j]] * len(scales[j + 1:])
            in_channels[j + 1:] = [channels[j]] * len(in_channels[j + 1:])

    def forward(self, layers):
        out = [layers[-1]]
        for i in range(len(layers) - self.startp - 1):
            getattr(self, f"ida_{i}")(layers, len(layers) - i - 2, len(layers))
            out.insert(0, layers[-1])
        return out


class DLASeg(nn.Module):
    def __init__(self, channels, deformable, heads, head_conv):
        super().__init__()
        self.first_level, self.last_level = 2, 5
        self.base = DLA(channels)
        self.dla_up = DLAUp(2, channels[2:], deformable)
        self.ida_up = IDAUp(channels[2], channels[2:5], [1, 2, 4], deformable)
        self.heads = heads
        for h, c in heads.items():
            setattr(self, h, make_head(channels[2], head_conv, c))

    def forward(self, x):
        x = self.dla_up(self.base(x))
        y = [x[i].clone() for i in range(self.last_level - self.first_level)]
        self.ida_up(y, 0, len(y))
        return [{h: getattr(self, h)(y[-1]) for h in self.heads}]


# ------------------------------------------------------------------------------- hourglass
class Convolution(nn.Module):
    def __init__(self, k, cin, cout, stride=1, with_bn=True):
        super().__init__()
        p = (k - 1) // 2
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=p, bias=not with_bn)
        self.bn = nn.BatchNorm2d(cout) if with_bn else nn.Sequential()

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Sequential())

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


class KP(nn.Module):
    def __init__(self, n, dims, modules):
        super().__init__()
        cur, nxt, m = dims[0], dims[1], modules[0]
        self.up1 = nn.Sequential(*[Residual(cur, cur) for _ in range(m)])
        self.low1 = nn.Sequential(Residual(cur, nxt, 2), *[Residual(nxt, nxt) for _ in range(m - 1)])
        self.low2 = (KP(n - 1, dims[1:], modules[1:]) if n > 1
                     else nn.Sequential(*[Residual(nxt, nxt) for _ in range(modules[1])]))
        self.low3 = nn.Sequential(*[Residual(nxt, nxt) for _ in range(m - 1)], Residual(nxt, cur))

    def forward(self, x):
        up1 = self.up1(x)
        low3 = self.low3(self.low2(self.low1(x)))
        return up1 + F.interpolate(low3, scale_factor=2, mode="nearest")


class HourglassNet(nn.Module):
    def __init__(self, num_stacks, dims, modules, pre_dim, cnv_dim, heads):
        super().__init__()
        n = len(dims) - 1
        cur = dims[0]
        self.nstack = num_stacks
        self.pre = nn.Sequential(Convolution(7, 3, pre_dim, 2), Residual(pre_dim, cur, 2))
        self.kps = nn.ModuleList([KP(n, dims, modules) for _ in range(num_stacks)])
        self.cnvs = nn.ModuleList([Convolution(3, cur, cnv_dim) for _ in range(num_stacks)])
        self.inters = nn.ModuleList([Residual(cur, cur) for _ in range(num_stacks - 1)])
        self.inters_ = nn.ModuleList([nn.Sequential(nn.Conv2d(cur, cur, 1, bias=False), nn.BatchNorm2d(cur))
                                      for _ in range(num_stacks - 1)])
        self.cnvs_ = nn.ModuleList([nn.Sequential(nn.Conv2d(cnv_dim, cur, 1, bias=False), nn.BatchNorm2d(cur))
                                    for _ in range(num_stacks - 1)])
        self.heads = heads
        for h, c in heads.items():
            setattr(self, h, nn.ModuleList([
                nn.Sequential(Convolution(3, cnv_dim, cur, with_bn=False), nn.Conv2d(cur, c, 1))
                for _ in range(num_stacks)]))

    def forward(self, x):
        inter = self.pre(x)
        outs = []
        for i in range(self.nstack):
            cnv = self.cnvs[i](self.kps[i](inter))
            outs.append({h: getattr(self, h)[i](cnv) for h in self.heads})
            if i < self.nstack - 1:
                inter = self.inters[i](F.relu(self.inters_[i](inter) + self.cnvs_[i](cnv)))
        return outs


def build(cfg):
    """Build the reference model from a deepmark CenterNetConfig dict."""
    bb = cfg["backbone"]
    heads = head_channels(cfg["layout"]["num_classes"], cfg["layout"]["num_landmarks"])
    if bb["type"] == "resnet":
        return PoseResNet(bb["bottleneck"], bb["layers"], bb["planes"], bb["stem"], bb["deconv"], heads,
                          cfg["head_conv"])
    if bb["type"] == "dla":
        return DLASeg(bb["channels"], bb["deformable"], heads, cfg["head_conv"])
    if bb["type"] == "hourglass":
        return HourglassNet(bb["num_stacks"], bb["dims"], bb["modules"], bb["pre_dim"], bb["cnv_dim"], heads)
    raise ValueError(bb["type"])
