//! The compiled forms of the three backbone families and the heads. Each mirrors the
//! `forward` of its Burn module in `model::{resnet, dla, dla_up, hourglass, heads}`; the
//! equality tests in `tests/fast_cpu.rs` hold them to it.

use super::dcn::FDcnBlock;
use super::deconv::{FDeconv, FDepthwiseDeconv};
use super::layers::{FConv, deconv, depthwise_deconv};
use super::map::{Map, View};
use super::profile::module;
use crate::codec::heads::Heads;
use crate::error::Result;
use crate::model::dla::{BasicBlock, Dla, Tree1, Tree2};
use crate::model::dla_up::{DlaSeg, IdaUp};
use crate::model::heads::{Head, HeadSet};
use crate::model::hourglass::{Convolution, Hourglass, KpModule, Residual};
use crate::model::layers::ConvBn;
use crate::model::resnet::{ResBlock, ResNet};

fn conv_bn(c: &ConvBn, relu: bool) -> Result<FConv> {
    FConv::new(&c.conv, Some(&c.bn), relu)
}

// ---------------------------------------------------------------- ResNet (msra_resnet)

struct FResBlock {
    c1: FConv,
    c2: FConv,
    c3: Option<FConv>,
    down: Option<FConv>,
}

impl FResBlock {
    fn new(b: &ResBlock) -> Result<Self> {
        // Basic block: ReLU after conv2 + residual; bottleneck: ReLU after conv2, then
        // conv3 + residual + ReLU. Either way conv2's output goes through a ReLU.
        Ok(FResBlock {
            c1: FConv::new(&b.conv1, Some(&b.bn1), true)?,
            c2: FConv::new(&b.conv2, Some(&b.bn2), true)?,
            c3: match (&b.conv3, &b.bn3) {
                (Some(c), Some(bn)) => Some(FConv::new(c, Some(bn), true)?),
                _ => None,
            },
            down: b
                .downsample
                .as_ref()
                .map(|d| conv_bn(d, false))
                .transpose()?,
        })
    }

    fn forward(&self, x: Map) -> Map {
        let y = self.c1.forward(&x);
        let residual = match &self.down {
            Some(d) => d.forward(&x),
            None => x,
        };
        match &self.c3 {
            Some(c3) => c3.forward_res(&self.c2.forward(&y), &residual),
            None => self.c2.forward_res(&y, &residual),
        }
    }
}

pub struct FResNet {
    stem: FConv,
    /// layer1..layer4, each a list of blocks.
    layers: [Vec<FResBlock>; 4],
    deconvs: Vec<FDeconv>,
}

const RESNET_LAYERS: [&str; 4] = ["layer1", "layer2", "layer3", "layer4"];

impl FResNet {
    pub fn new(m: &ResNet) -> Result<Self> {
        let layer = |l: &[ResBlock]| l.iter().map(FResBlock::new).collect::<Result<Vec<_>>>();
        Ok(FResNet {
            stem: FConv::new(&m.conv1, Some(&m.bn1), true)?,
            layers: [
                layer(&m.layer1)?,
                layer(&m.layer2)?,
                layer(&m.layer3)?,
                layer(&m.layer4)?,
            ],
            deconvs: m
                .deconv_layers
                .iter()
                .map(|d| deconv(&d.up, Some(&d.bn), true))
                .collect::<Result<_>>()?,
        })
    }

    pub fn forward(&self, x: View<'_>) -> Map {
        let mut x = module("stem", || self.stem.forward_view(x, None).max_pool(3, 2, 1));
        for (name, blocks) in RESNET_LAYERS.iter().zip(&self.layers) {
            x = module(name, || blocks.iter().fold(x, |x, b| b.forward(x)));
        }
        module("deconv", || {
            self.deconvs.iter().fold(x, |x, d| d.forward(&x))
        })
    }
}

// ---------------------------------------------------------------- DLA-34 + DLAUp/IDAUp

struct FBasic {
    c1: FConv,
    c2: FConv,
}

impl FBasic {
    fn new(b: &BasicBlock) -> Result<Self> {
        Ok(FBasic {
            c1: FConv::new(&b.conv1, Some(&b.bn1), true)?,
            c2: FConv::new(&b.conv2, Some(&b.bn2), true)?,
        })
    }

    fn forward(&self, x: &Map, residual: &Map) -> Map {
        self.c2.forward_res(&self.c1.forward(x), residual)
    }
}

fn downsample(x: &Map, stride: usize) -> Option<Map> {
    (stride > 1).then(|| x.max_pool(stride, stride, 0))
}

struct FTree1 {
    tree1: FBasic,
    tree2: FBasic,
    root: FConv,
    project: Option<FConv>,
    stride: usize,
    level_root: bool,
}

impl FTree1 {
    fn new(t: &Tree1) -> Result<Self> {
        Ok(FTree1 {
            tree1: FBasic::new(&t.tree1)?,
            tree2: FBasic::new(&t.tree2)?,
            root: conv_bn(&t.root, true)?,
            project: t.project.as_ref().map(|p| conv_bn(p, false)).transpose()?,
            stride: t.stride,
            level_root: t.level_root,
        })
    }

    fn forward(&self, x: &Map, mut children: Vec<Map>) -> Map {
        let pooled = downsample(x, self.stride);
        let bottom = pooled.as_ref().unwrap_or(x);
        let projected = self.project.as_ref().map(|p| p.forward(bottom));
        let residual = projected.as_ref().unwrap_or(bottom);
        let x1 = self.tree1.forward(x, residual);
        let x2 = self.tree2.forward(&x1, &x1);
        if self.level_root {
            children.push(bottom.clone());
        }
        let mut parts = vec![&x2, &x1];
        parts.extend(children.iter());
        self.root.forward(&Map::cat(&parts))
    }
}

struct FTree2 {
    tree1: FTree1,
    tree2: FTree1,
    stride: usize,
    level_root: bool,
}

impl FTree2 {
    fn new(t: &Tree2) -> Result<Self> {
        // `project` of a depth-2 tree never reaches the output (see `model::dla`).
        Ok(FTree2 {
            tree1: FTree1::new(&t.tree1)?,
            tree2: FTree1::new(&t.tree2)?,
            stride: t.stride,
            level_root: t.level_root,
        })
    }

    fn forward(&self, x: &Map) -> Map {
        let mut children = Vec::new();
        if self.level_root {
            children.push(downsample(x, self.stride).unwrap_or_else(|| x.clone()));
        }
        let x1 = self.tree1.forward(x, Vec::new());
        children.push(x1.clone());
        self.tree2.forward(&x1, children)
    }
}

struct FDla {
    base: FConv,
    level0: FConv,
    level1: FConv,
    level2: FTree1,
    level3: FTree2,
    level4: FTree2,
    level5: FTree1,
}

impl FDla {
    fn new(d: &Dla) -> Result<Self> {
        Ok(FDla {
            base: conv_bn(&d.base_layer, true)?,
            level0: conv_bn(&d.level0, true)?,
            level1: conv_bn(&d.level1, true)?,
            level2: FTree1::new(&d.level2)?,
            level3: FTree2::new(&d.level3)?,
            level4: FTree2::new(&d.level4)?,
            level5: FTree1::new(&d.level5)?,
        })
    }

    /// Levels 2..=5 (the ones DLASeg reads, `startp = 2`).
    fn forward(&self, x: View<'_>) -> Vec<Map> {
        let l1 = self
            .level1
            .forward(&self.level0.forward(&self.base.forward_view(x, None)));
        let l2 = self.level2.forward(&l1, Vec::new());
        let l3 = self.level3.forward(&l2);
        let l4 = self.level4.forward(&l3);
        let l5 = self.level5.forward(&l4, Vec::new());
        vec![l2, l3, l4, l5]
    }
}

struct FIdaUp {
    proj: Vec<FDcnBlock>,
    up: Vec<FDepthwiseDeconv>,
    node: Vec<FDcnBlock>,
}

impl FIdaUp {
    fn new(m: &IdaUp) -> Result<Self> {
        Ok(FIdaUp {
            proj: m.proj.iter().map(FDcnBlock::new).collect::<Result<_>>()?,
            up: m.up.iter().map(depthwise_deconv).collect::<Result<_>>()?,
            node: m.node.iter().map(FDcnBlock::new).collect::<Result<_>>()?,
        })
    }

    fn forward(&self, layers: &mut [Map], startp: usize, endp: usize) {
        for i in startp + 1..endp {
            let s = i - startp - 1;
            let mut up = self.up[s].forward(self.proj[s].forward(&layers[i]).view());
            up.add_assign(&layers[i - 1]);
            layers[i] = self.node[s].forward(&up);
        }
    }
}

pub struct FDlaSeg {
    base: FDla,
    dla_up: Vec<FIdaUp>,
    ida_up: FIdaUp,
}

impl FDlaSeg {
    pub fn new(m: &DlaSeg) -> Result<Self> {
        Ok(FDlaSeg {
            base: FDla::new(&m.base)?,
            dla_up: m
                .dla_up
                .ida
                .iter()
                .map(FIdaUp::new)
                .collect::<Result<_>>()?,
            ida_up: FIdaUp::new(&m.ida_up)?,
        })
    }

    pub fn forward(&self, x: View<'_>) -> Map {
        // DLAUp over levels 2..=5: after stage i, layers[len-1] is the next output (stride 4
        // is the last one written).
        let mut layers = module("base", || self.base.forward(x));
        let len = layers.len();
        let mut out = vec![layers[len - 1].clone()];
        module("dla_up", || {
            for (i, ida) in self.dla_up.iter().enumerate() {
                ida.forward(&mut layers, len - i - 2, len);
                out.insert(0, layers[len - 1].clone());
            }
        });
        out.truncate(3);
        let n = out.len();
        module("ida_up", || self.ida_up.forward(&mut out, 0, n));
        out.pop().expect("three fused maps")
    }
}

// ---------------------------------------------------------------- Hourglass-104

fn convolution(c: &Convolution) -> Result<FConv> {
    FConv::new(&c.conv, c.bn.as_ref(), true)
}

struct FResidual {
    c1: FConv,
    c2: FConv,
    skip: Option<FConv>,
}

impl FResidual {
    fn new(r: &Residual) -> Result<Self> {
        Ok(FResidual {
            c1: FConv::new(&r.conv1, Some(&r.bn1), true)?,
            c2: FConv::new(&r.conv2, Some(&r.bn2), true)?,
            skip: r.skip.as_ref().map(|s| conv_bn(s, false)).transpose()?,
        })
    }

    fn forward(&self, x: &Map) -> Map {
        let y = self.c1.forward(x);
        match &self.skip {
            Some(s) => self.c2.forward_res(&y, &s.forward(x)),
            None => self.c2.forward_res(&y, x),
        }
    }
}

fn residuals(rs: &[Residual]) -> Result<Vec<FResidual>> {
    rs.iter().map(FResidual::new).collect()
}

fn run(blocks: &[FResidual], x: &Map) -> Map {
    let mut it = blocks.iter();
    let mut y = match it.next() {
        Some(b) => b.forward(x),
        None => return x.clone(),
    };
    for b in it {
        y = b.forward(&y);
    }
    y
}

struct FKpModule {
    levels: Vec<[Vec<FResidual>; 3]>,
    inner: Vec<FResidual>,
}

impl FKpModule {
    fn new(k: &KpModule) -> Result<Self> {
        Ok(FKpModule {
            levels: k
                .levels
                .iter()
                .map(|l| Ok([residuals(&l.up1)?, residuals(&l.low1)?, residuals(&l.low3)?]))
                .collect::<Result<_>>()?,
            inner: residuals(&k.inner)?,
        })
    }

    fn forward_from(&self, depth: usize, x: &Map) -> Map {
        let Some([up1, low1, low3]) = self.levels.get(depth) else {
            return run(&self.inner, x);
        };
        let low = run(low3, &self.forward_from(depth + 1, &run(low1, x)));
        run(up1, x).add_upsampled2(&low)
    }
}

pub struct FHourglass {
    pre_conv: FConv,
    pre_res: FResidual,
    kps: Vec<FKpModule>,
    cnvs: Vec<FConv>,
    inters: Vec<FResidual>,
    inters_: Vec<FConv>,
    /// `cnvs_` with the merge's ReLU fused (its residual is `inters_(inter)`).
    cnvs_: Vec<FConv>,
}

impl FHourglass {
    pub fn new(m: &Hourglass) -> Result<Self> {
        Ok(FHourglass {
            pre_conv: convolution(&m.pre_conv)?,
            pre_res: FResidual::new(&m.pre_res)?,
            kps: m.kps.iter().map(FKpModule::new).collect::<Result<_>>()?,
            cnvs: m.cnvs.iter().map(convolution).collect::<Result<_>>()?,
            inters: residuals(&m.inters)?,
            inters_: m
                .inters_
                .iter()
                .map(|c| conv_bn(c, false))
                .collect::<Result<_>>()?,
            cnvs_: m
                .cnvs_
                .iter()
                .map(|c| conv_bn(c, true))
                .collect::<Result<_>>()?,
        })
    }

    /// The last stack's feature map (inference reads only that one).
    pub fn forward(&self, x: View<'_>) -> Map {
        let mut inter = module("pre", || {
            self.pre_res.forward(&self.pre_conv.forward_view(x, None))
        });
        let n = self.kps.len();
        for i in 0..n {
            let kp = module("hourglass", || self.kps[i].forward_from(0, &inter));
            let cnv = module("merge", || self.cnvs[i].forward(&kp));
            if i + 1 == n {
                return cnv;
            }
            inter = module("merge", || {
                let merged = self.cnvs_[i].forward_res(&cnv, &self.inters_[i].forward(&inter));
                self.inters[i].forward(&merged)
            });
        }
        unreachable!("at least one stack")
    }
}

// ---------------------------------------------------------------- Heads

/// One head (3×3 → ReLU → 1×1) on the fast form: the attribute heads beside the detector's.
pub struct FHead {
    first: FConv,
    out: FConv,
}

impl FHead {
    pub fn new(h: &Head) -> Result<Self> {
        Ok(FHead {
            first: FConv::new(&h.conv, None, true)?,
            out: FConv::new(&h.out, None, false)?,
        })
    }

    pub fn forward(&self, x: &Map) -> Map {
        module("attribute heads", || {
            self.out.forward(&self.first.forward(x))
        })
    }
}

/// The six heads: their first 3×3 convolutions stacked into one (one column buffer for all),
/// then each head's 1×1 output convolution on its slice of channels.
pub struct FHeads {
    first: FConv,
    outs: Heads<FConv>,
}

impl FHeads {
    pub fn new(h: &HeadSet) -> Result<Self> {
        let heads = h.as_heads();
        let first = heads.try_map(|h| FConv::new(&h.conv, None, true))?;
        let outs = heads.try_map(|h| FConv::new(&h.out, None, false))?;
        let first = FConv::stack(&first.into_array());
        Ok(FHeads { first, outs })
    }

    pub fn forward(&self, x: &Map) -> Heads<Map> {
        module("heads", || self.run(x))
    }

    fn run(&self, x: &Map) -> Heads<Map> {
        // Where the stacked first convolutions run as Winograd, each head's output convolution
        // reads its slice block by block while it is in cache: the hidden map (6 × 256 channels
        // at a quarter of the input size for DLA-34: 100 MB at 512) is never written out.
        let outs = self.outs.as_ref().into_array();
        if let Some(maps) = self.first.forward_then_pointwise(x.view(), &outs) {
            let maps: [Map; 6] = maps.try_into().expect("one map per head");
            return Heads::from_array(maps);
        }
        let hidden = self.first.forward(x);
        let mut start = 0;
        // Each output convolution reads its own head's slice of the stacked hidden channels.
        self.outs.as_ref().map(|conv| {
            let w = conv.in_channels();
            let y = conv.forward_view(hidden.channels(start, w), None);
            start += w;
            y
        })
    }
}
