//! The DLA-34 base network of CenterNet's `pose_dla_dcn.py` (Yu et al., "Deep Layer
//! Aggregation"): `levels = [1, 1, 1, 2, 2, 1]`, BasicBlocks, hierarchical `Tree`s with `Root`
//! aggregation nodes. Returns the six level outputs (strides 1, 2, 4, 8, 16, 32).
//!
//! PyTorch builds trees recursively; DLA-34 only has depth-1 trees (two blocks + a root) and
//! depth-2 trees (two depth-1 trees, the second one holding the root), modelled here as
//! [`Tree1`] and [`Tree2`]. The `project` of a depth-2 tree is computed by PyTorch but never
//! influences the output (its depth-1 `tree1` recomputes its own residual); it is kept so that
//! checkpoints load key for key and parameter counts match.

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};

use super::layers::{ConvBn, bn, conv, norm};

/// `conv3×3(stride) → BN → ReLU → conv3×3 → BN → (+ residual) → ReLU`.
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: BatchNorm,
    pub(crate) conv2: Conv2d,
    pub(crate) bn2: BatchNorm,
}

impl BasicBlock {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv1: conv([cin, cout], 3, stride, false, device),
            bn1: bn(cout, device),
            conv2: conv([cout, cout], 3, 1, false, device),
            bn2: bn(cout, device),
        }
    }

    fn forward(&self, x: Tensor<4>, residual: Tensor<4>) -> Tensor<4> {
        let y = relu(norm(&self.bn1, self.conv1.forward(x)));
        relu(norm(&self.bn2, self.conv2.forward(y)) + residual)
    }
}

fn downsample(x: Tensor<4>, stride: usize) -> Tensor<4> {
    if stride > 1 {
        max_pool2d(x, MaxPoolOptions::new([stride, stride]))
    } else {
        x
    }
}

/// A depth-1 tree: `tree1` (strided block), `tree2`, and `root` = 1×1 conv + BN + ReLU over the
/// concatenation `[x2, x1, *children]`.
#[derive(Module, Debug)]
pub struct Tree1 {
    pub(crate) tree1: BasicBlock,
    pub(crate) tree2: BasicBlock,
    pub(crate) root: ConvBn,
    pub(crate) project: Option<ConvBn>,
    pub(crate) stride: usize,
    pub(crate) level_root: bool,
}

impl Tree1 {
    fn new(
        cin: usize,
        cout: usize,
        stride: usize,
        level_root: bool,
        root_dim: usize,
        device: &Device,
    ) -> Self {
        let root_dim =
            if root_dim == 0 { 2 * cout } else { root_dim } + if level_root { cin } else { 0 };
        Self {
            tree1: BasicBlock::new(cin, cout, stride, device),
            tree2: BasicBlock::new(cout, cout, 1, device),
            root: ConvBn::new([root_dim, cout], 1, 1, device),
            project: (cin != cout).then(|| ConvBn::new([cin, cout], 1, 1, device)),
            stride,
            level_root,
        }
    }

    fn forward(&self, x: Tensor<4>, mut children: Vec<Tensor<4>>) -> Tensor<4> {
        let bottom = downsample(x.clone(), self.stride);
        let residual = match &self.project {
            Some(p) => p.forward(bottom.clone()),
            None => bottom.clone(),
        };
        if self.level_root {
            children.push(bottom);
        }
        let x1 = self.tree1.forward(x, residual);
        let x2 = self.tree2.forward(x1.clone(), x1.clone());
        let mut parts = vec![x2, x1];
        parts.extend(children);
        self.root.forward_relu(Tensor::cat(parts, 1))
    }
}

/// A depth-2 tree: two depth-1 trees; the second one aggregates everything.
#[derive(Module, Debug)]
pub struct Tree2 {
    pub(crate) tree1: Tree1,
    pub(crate) tree2: Tree1,
    pub(crate) project: Option<ConvBn>,
    pub(crate) stride: usize,
    pub(crate) level_root: bool,
}

impl Tree2 {
    fn new(cin: usize, cout: usize, stride: usize, level_root: bool, device: &Device) -> Self {
        let root_dim = 2 * cout + if level_root { cin } else { 0 };
        Self {
            tree1: Tree1::new(cin, cout, stride, false, 0, device),
            tree2: Tree1::new(cout, cout, 1, false, root_dim + cout, device),
            project: (cin != cout).then(|| ConvBn::new([cin, cout], 1, 1, device)),
            stride,
            level_root,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut children = Vec::new();
        if self.level_root {
            children.push(downsample(x.clone(), self.stride));
        }
        // `self.project` is dead in the reference implementation (see module docs).
        let x1 = self.tree1.forward(x, Vec::new());
        children.push(x1.clone());
        self.tree2.forward(x1, children)
    }
}

/// DLA-34 base. `channels` is `[16, 32, 64, 128, 256, 512]` in the full model.
#[derive(Module, Debug)]
pub struct Dla {
    pub(crate) base_layer: ConvBn,
    pub(crate) level0: ConvBn,
    pub(crate) level1: ConvBn,
    pub(crate) level2: Tree1,
    pub(crate) level3: Tree2,
    pub(crate) level4: Tree2,
    pub(crate) level5: Tree1,
}

impl Dla {
    /// DLA-34 with these level channels.
    pub fn new(channels: [usize; 6], device: &Device) -> Self {
        let c = channels;
        Self {
            base_layer: ConvBn::new([3, c[0]], 7, 1, device),
            level0: ConvBn::new([c[0], c[0]], 3, 1, device),
            level1: ConvBn::new([c[0], c[1]], 3, 2, device),
            level2: Tree1::new(c[1], c[2], 2, false, 0, device),
            level3: Tree2::new(c[2], c[3], 2, true, device),
            level4: Tree2::new(c[3], c[4], 2, true, device),
            level5: Tree1::new(c[4], c[5], 2, true, 0, device),
        }
    }

    /// The six level outputs.
    pub fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let x = self.base_layer.forward_relu(x);
        let l0 = self.level0.forward_relu(x);
        let l1 = self.level1.forward_relu(l0.clone());
        let l2 = self.level2.forward(l1.clone(), Vec::new());
        let l3 = self.level3.forward(l2.clone());
        let l4 = self.level4.forward(l3.clone());
        let l5 = self.level5.forward(l4.clone(), Vec::new());
        vec![l0, l1, l2, l3, l4, l5]
    }
}
