//! CenterNet's `large_hourglass` (Hourglass-104, from CornerNet/ExtremeNet): a stride-4 stem
//! (`convolution(7, 3→128, s2)` + `residual(128→256, s2)`), `num_stacks` hourglass modules of
//! depth 5 with residual blocks, and intermediate supervision. Every stack has its own heads;
//! training supervises all stacks, inference reads the last.
//!
//! PyTorch nests the hourglass recursively (`kps.0.low2.low2.…`); here each depth is one entry
//! of `KpModule::levels` and the innermost `low2` is `KpModule::inner`. The checkpoint
//! loader rewrites the nested keys accordingly.

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::layers::{ConvBn, bn, conv, norm};

/// Shape of an Hourglass network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourglassConfig {
    pub(crate) num_stacks: usize,
    /// Channel widths per depth, `n + 1` entries (`[256, 256, 384, 384, 384, 512]`).
    pub dims: Vec<usize>,
    /// Residual blocks per depth, `n + 1` entries (`[2, 2, 2, 2, 2, 4]`).
    pub modules: Vec<usize>,
    /// Width of the 7×7 stem convolution (128).
    pub pre_dim: usize,
    /// Width of the per-stack `cnvs` layer the heads read (256).
    pub cnv_dim: usize,
}

impl HourglassConfig {
    /// CenterNet's Hourglass-104: two stacks of depth 5.
    pub fn hourglass104() -> Self {
        Self {
            num_stacks: 2,
            dims: vec![256, 256, 384, 384, 384, 512],
            modules: vec![2, 2, 2, 2, 2, 4],
            pre_dim: 128,
            cnv_dim: 256,
        }
    }

    /// Depth `n` of the hourglass (5 for Hourglass-104).
    pub fn depth(&self) -> usize {
        self.dims.len() - 1
    }

    /// The network with this shape.
    pub fn init(&self, device: &Device) -> Hourglass {
        let curr = self.dims[0];
        let n = self.num_stacks;
        Hourglass {
            pre_conv: Convolution::new(7, [3, self.pre_dim], 2, true, device),
            pre_res: Residual::new([self.pre_dim, curr], 2, device),
            kps: (0..n)
                .map(|_| KpModule::new(&self.dims, &self.modules, device))
                .collect(),
            cnvs: (0..n)
                .map(|_| Convolution::new(3, [curr, self.cnv_dim], 1, true, device))
                .collect(),
            inters: (0..n - 1)
                .map(|_| Residual::new([curr, curr], 1, device))
                .collect(),
            inters_: (0..n - 1)
                .map(|_| ConvBn::new([curr, curr], 1, 1, device))
                .collect(),
            cnvs_: (0..n - 1)
                .map(|_| ConvBn::new([self.cnv_dim, curr], 1, 1, device))
                .collect(),
        }
    }
}

/// CornerNet's `convolution`: `k×k` conv (bias only without BN) → BN (optional) → ReLU.
#[derive(Module, Debug)]
pub struct Convolution {
    pub(crate) conv: Conv2d,
    pub(crate) bn: Option<BatchNorm>,
}

impl Convolution {
    fn new(k: usize, channels: [usize; 2], stride: usize, with_bn: bool, device: &Device) -> Self {
        Self {
            conv: conv(channels, k, stride, !with_bn, device),
            bn: with_bn.then(|| bn(channels[1], device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv.forward(x);
        relu(match &self.bn {
            Some(bn) => norm(bn, y),
            None => y,
        })
    }
}

/// CornerNet's `residual`: two 3×3 conv+BN with a 1×1 conv+BN `skip` when the shape changes.
#[derive(Module, Debug)]
pub struct Residual {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: BatchNorm,
    pub(crate) conv2: Conv2d,
    pub(crate) bn2: BatchNorm,
    pub(crate) skip: Option<ConvBn>,
}

impl Residual {
    fn new(channels: [usize; 2], stride: usize, device: &Device) -> Self {
        let [cin, cout] = channels;
        Self {
            conv1: conv([cin, cout], 3, stride, false, device),
            bn1: bn(cout, device),
            conv2: conv([cout, cout], 3, 1, false, device),
            bn2: bn(cout, device),
            skip: (stride != 1 || cin != cout).then(|| ConvBn::new([cin, cout], 1, stride, device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = match &self.skip {
            Some(s) => s.forward(x.clone()),
            None => x.clone(),
        };
        let y = relu(norm(&self.bn1, self.conv1.forward(x)));
        relu(norm(&self.bn2, self.conv2.forward(y)) + skip)
    }
}

fn run(blocks: &[Residual], mut x: Tensor<4>) -> Tensor<4> {
    for b in blocks {
        x = b.forward(x);
    }
    x
}

/// One depth of the hourglass: `up1` (same resolution), `low1` (first block strided), and
/// `low3` (back to the outer width); `low2` is the next level (or `KpModule::inner`).
#[derive(Module, Debug)]
pub struct KpLevel {
    pub(crate) up1: Vec<Residual>,
    pub(crate) low1: Vec<Residual>,
    pub(crate) low3: Vec<Residual>,
}

#[derive(Module, Debug)]
/// One hourglass: `levels` down and up around the `inner` residuals.
pub struct KpModule {
    pub(crate) levels: Vec<KpLevel>,
    pub(crate) inner: Vec<Residual>,
}

impl KpModule {
    fn new(dims: &[usize], modules: &[usize], device: &Device) -> Self {
        let n = dims.len() - 1;
        let levels = (0..n)
            .map(|d| {
                let (curr, next, m) = (dims[d], dims[d + 1], modules[d]);
                // make_layer(curr→curr) / make_hg_layer (first stride 2) / make_layer_revr.
                let up1 = (0..m)
                    .map(|_| Residual::new([curr, curr], 1, device))
                    .collect();
                let low1 = (0..m)
                    .map(|i| {
                        if i == 0 {
                            Residual::new([curr, next], 2, device)
                        } else {
                            Residual::new([next, next], 1, device)
                        }
                    })
                    .collect();
                let low3 = (0..m)
                    .map(|i| {
                        if i + 1 < m {
                            Residual::new([next, next], 1, device)
                        } else {
                            Residual::new([next, curr], 1, device)
                        }
                    })
                    .collect();
                KpLevel { up1, low1, low3 }
            })
            .collect();
        let inner = (0..modules[n])
            .map(|_| Residual::new([dims[n], dims[n]], 1, device))
            .collect();
        Self { levels, inner }
    }

    fn forward_from(&self, depth: usize, x: Tensor<4>) -> Tensor<4> {
        let Some(level) = self.levels.get(depth) else {
            return run(&self.inner, x);
        };
        let up1 = run(&level.up1, x.clone());
        let low1 = run(&level.low1, x);
        let low2 = self.forward_from(depth + 1, low1);
        let low3 = run(&level.low3, low2);
        let up2 = interpolate(
            low3,
            InterpolateOptions::new(InterpolateMode::Nearest).with_scale_factor([2.0, 2.0]),
        );
        up1 + up2
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_from(0, x)
    }
}

#[derive(Module, Debug)]
/// CenterNet's stacked Hourglass backbone (`large_hourglass`).
pub struct Hourglass {
    pub(crate) pre_conv: Convolution,
    pub(crate) pre_res: Residual,
    pub(crate) kps: Vec<KpModule>,
    pub(crate) cnvs: Vec<Convolution>,
    pub(crate) inters: Vec<Residual>,
    pub(crate) inters_: Vec<ConvBn>,
    pub(crate) cnvs_: Vec<ConvBn>,
}

impl Hourglass {
    /// Feature maps for every stack (the heads of stack `i` read element `i`).
    pub fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let mut inter = self.pre_res.forward(self.pre_conv.forward(x));
        let n = self.kps.len();
        let mut outs = Vec::with_capacity(n);
        for i in 0..n {
            let kp = self.kps[i].forward(inter.clone());
            let cnv = self.cnvs[i].forward(kp);
            if i + 1 < n {
                let merged = self.inters_[i].forward(inter) + self.cnvs_[i].forward(cnv.clone());
                inter = self.inters[i].forward(relu(merged));
            }
            outs.push(cnv);
        }
        outs
    }
}
