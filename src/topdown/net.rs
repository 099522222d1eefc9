//! The Cascaded Pyramid Network (Chen et al., 2018; chenyilun95/tf-cpn,
//! `models/COCO.res50.256x192.CPN/network.py`) on Burn.
//!
//! - **Trunk**: a ResNet's stage outputs C2..C5 (strides 4–32).
//! - **GlobalNet**: top-down from C5, each level a lateral `1×1 conv + BN + ReLU`; below C5
//!   the level above is bilinearly upsampled, passed through a `1×1` convolution (no
//!   activation) and added. Each level predicts heatmaps through `1×1 conv + BN + ReLU` and a
//!   `3×3` convolution, resized bilinearly to the output (C2's) size.
//! - **RefineNet**: level `i` (C2..C5) goes through `i` bottlenecks (0, 1, 2, 3; width/2
//!   inside), is upsampled to the output size, the four are concatenated, one more bottleneck
//!   and a `3×3` convolution give the final heatmaps.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

use super::config::CpnConfig;
use crate::model::layers::{ConvBn, conv};
use crate::model::resnet::ResNet;

/// Bilinear resize to `size = [h, w]` with half-pixel centres (TensorFlow's and PyTorch's
/// `align_corners = false`); identity when the size already matches. It is two matrix products
/// with the interpolation weights rather than Burn's `interpolate`, whose bilinear backward the
/// wgpu backend does not implement (training there panicked: "Bilinear interpolation backward is
/// not supported by JIT backend"); a test holds it to `interpolate` on the CPU.
pub fn resize(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    if [h, w] == size {
        return x;
    }
    let [oh, ow] = size;
    let (device, dtype) = (x.device(), x.dtype());
    let weights = |n: usize, out: usize| {
        Tensor::<2>::from_data(
            TensorData::new(interpolation_matrix(n, out), [n, out]),
            &device,
        )
        .cast(dtype)
    };
    // Rows: (B·C·h, w) × (w, ow), then columns: (B·C·ow, h) × (h, oh).
    let x = x.reshape([b * c * h, w]).matmul(weights(w, ow));
    let x = x
        .reshape([b, c, h, ow])
        .swap_dims(2, 3)
        .reshape([b * c * ow, h]);
    let x = x.matmul(weights(h, oh));
    x.reshape([b, c, ow, oh]).swap_dims(2, 3)
}

/// The `n × out` matrix of 1-D linear interpolation from `n` samples to `out` with half-pixel
/// centres: output `o` reads `src = (o + ½)·n/out − ½` (clamped to the ends) from its two
/// neighbours.
pub fn interpolation_matrix(n: usize, out: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; n * out];
    let scale = n as f64 / out as f64;
    for o in 0..out {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n - 1);
        let i1 = (i0 + 1).min(n - 1);
        let l = (src - i0 as f64).clamp(0.0, 1.0) as f32;
        m[i0 * out + o] += 1.0 - l;
        m[i1 * out + o] += l;
    }
    m
}

/// ResNet's bottleneck with CPN's proportions: `1×1 → 3×3 → 1×1` (`inner` channels inside,
/// BN after each, ReLU after the first two and after the sum), a projection shortcut when the
/// channel count changes.
#[derive(Module, Debug)]
pub struct Bottleneck {
    pub(crate) conv1: ConvBn,
    pub(crate) conv2: ConvBn,
    pub(crate) conv3: ConvBn,
    pub(crate) shortcut: Option<ConvBn>,
}

impl Bottleneck {
    /// A bottleneck `input → inner → inner → out`.
    pub fn new(input: usize, inner: usize, out: usize, device: &Device) -> Self {
        Bottleneck {
            conv1: ConvBn::new([input, inner], 1, 1, device),
            conv2: ConvBn::new([inner, inner], 3, 1, device),
            conv3: ConvBn::new([inner, out], 1, 1, device),
            shortcut: (input != out).then(|| ConvBn::new([input, out], 1, 1, device)),
        }
    }

    /// The block's output.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = match &self.shortcut {
            Some(s) => s.forward(x.clone()),
            None => x.clone(),
        };
        let y = self.conv2.forward_relu(self.conv1.forward_relu(x));
        relu(self.conv3.forward(y) + skip)
    }
}

/// One GlobalNet level.
#[derive(Module, Debug)]
pub struct GlobalLevel {
    /// `1×1` conv + BN + ReLU on the trunk's stage output.
    pub lateral: ConvBn,
    /// `1×1` conv on the upsampled level above (absent on C5).
    pub up: Option<Conv2d>,
    /// `1×1` conv + BN + ReLU before the heatmap convolution.
    pub tmp: ConvBn,
    /// `3×3` conv → one heatmap per landmark group.
    pub head: Conv2d,
}

#[derive(Module, Debug)]
/// Cascaded Pyramid Network: a ResNet trunk, GlobalNet's feature pyramid and RefineNet.
pub struct Cpn {
    pub(crate) backbone: ResNet,
    /// Levels C2..C5.
    pub(crate) global: Vec<GlobalLevel>,
    /// RefineNet's per-level bottlenecks: `refine[i]` has `i` blocks.
    pub(crate) refine: Vec<Vec<Bottleneck>>,
    /// The bottleneck after the concatenation.
    pub(crate) fuse: Bottleneck,
    pub(crate) head: Conv2d,
}

/// GlobalNet's four heatmaps (C2..C5, each resized to the output size) and RefineNet's.
#[derive(Debug, Clone)]
pub struct CpnOutput {
    /// GlobalNet's heatmaps of levels C2..C5, `[batch, joints, h, w]` each.
    pub global: Vec<Tensor<4>>,
    /// RefineNet's heatmaps, `[batch, joints, h, w]`: the prediction.
    pub refine: Tensor<4>,
}

impl Cpn {
    /// A model with random weights.
    pub fn new(cfg: &CpnConfig, device: &Device) -> Self {
        let (w, j) = (cfg.width, cfg.num_joints);
        let stages = cfg.backbone.stage_channels();
        let global = stages
            .iter()
            .enumerate()
            .map(|(i, &c)| GlobalLevel {
                lateral: ConvBn::new([c, w], 1, 1, device),
                up: (i < 3).then(|| conv([w, w], 1, 1, true, device)),
                tmp: ConvBn::new([w, w], 1, 1, device),
                head: conv([w, j], 3, 1, true, device),
            })
            .collect();
        let refine = (0..4)
            .map(|i| {
                (0..i)
                    .map(|_| Bottleneck::new(w, w / 2, w, device))
                    .collect()
            })
            .collect();
        Cpn {
            backbone: cfg.backbone.init_trunk(device),
            global,
            refine,
            fuse: Bottleneck::new(4 * w, w / 2, w, device),
            head: conv([w, j], 3, 1, true, device),
        }
    }

    /// Crops `(B, 3, H, W)` → heatmaps `(B, J, H/4, W/4)` of both stages.
    pub fn forward(&self, x: Tensor<4>) -> CpnOutput {
        let (features, size) = self.pyramid(x);
        let global = features
            .iter()
            .zip(&self.global)
            .map(|(f, l)| resize(l.head.forward(l.tmp.forward_relu(f.clone())), size))
            .collect();
        CpnOutput {
            global,
            refine: self.refine_net(features, size),
        }
    }

    /// Only RefineNet's heatmaps (inference: GlobalNet's heads are skipped).
    pub fn heatmaps(&self, x: Tensor<4>) -> Tensor<4> {
        let (features, size) = self.pyramid(x);
        self.refine_net(features, size)
    }

    /// GlobalNet's features of levels C2..C5 (top-down) and the output size (C2's).
    fn pyramid(&self, x: Tensor<4>) -> (Vec<Tensor<4>>, [usize; 2]) {
        let stages = self.backbone.stages(x);
        let [.., oh, ow] = stages[0].dims();
        let mut features: Vec<Tensor<4>> = Vec::with_capacity(4);
        for (i, stage) in stages.into_iter().enumerate().rev() {
            let level = &self.global[i];
            let mut f = level.lateral.forward_relu(stage);
            if let (Some(above), Some(up)) = (features.last(), &level.up) {
                let [.., h, w] = f.dims();
                f = f + up.forward(resize(above.clone(), [h, w]));
            }
            features.push(f);
        }
        features.reverse();
        (features, [oh, ow])
    }

    fn refine_net(&self, features: Vec<Tensor<4>>, size: [usize; 2]) -> Tensor<4> {
        let refined: Vec<Tensor<4>> = features
            .into_iter()
            .zip(&self.refine)
            .map(|(f, blocks)| resize(blocks.iter().fold(f, |x, b| b.forward(x)), size))
            .collect();
        self.head
            .forward(self.fuse.forward(Tensor::cat(refined, 1)))
    }
}

impl crate::model::sync::SyncRunningStats for Bottleneck {
    fn sync_running_stats(&self) {
        for c in [&self.conv1, &self.conv2, &self.conv3] {
            c.sync_running_stats();
        }
        self.shortcut.sync_running_stats();
    }
}

impl crate::model::sync::SyncRunningStats for GlobalLevel {
    fn sync_running_stats(&self) {
        self.lateral.sync_running_stats();
        self.tmp.sync_running_stats();
    }
}

impl crate::model::sync::SyncRunningStats for Cpn {
    fn sync_running_stats(&self) {
        self.backbone.sync_running_stats();
        self.global.sync_running_stats();
        self.refine.sync_running_stats();
        self.fuse.sync_running_stats();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::interpolate;
    use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

    #[test]
    #[cfg(feature = "flex")]
    fn resize_is_burns_bilinear_interpolation() {
        let device = burn::tensor::Device::flex();
        for ([h, w], size) in [([2, 3], [8, 12]), ([4, 3], [16, 12]), ([5, 7], [3, 4])] {
            let n = 2 * 3 * h * w;
            let v: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
            let x = Tensor::<4>::from_data(TensorData::new(v, [2, 3, h, w]), &device);
            let ours = resize(x.clone(), size)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let burn = interpolate(
                x,
                InterpolateOptions::new(InterpolateMode::Bilinear)
                    .with_align_corners(false)
                    .with_output_size(size),
            )
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
            for (a, b) in ours.iter().zip(&burn) {
                assert!((a - b).abs() < 1e-5, "{h}x{w} → {size:?}: {a} vs {b}");
            }
        }
    }
}
