//! PoseFix's network on Burn (Moon et al., 2019; mks0601/PoseFix_RELEASE, `main/model.py`): a
//! ResNet whose first convolution reads the crop and one heatmap per input landmark (`3 + J` channels), three 4×4 stride-2 deconvolutions
//! (BN + ReLU) and a 1×1 convolution to `J` heatmaps at a quarter of the input resolution.
//! The heatmaps are logits of a spatial softmax; the landmark is its expectation (integral
//! regression, "soft-argmax"). The loss is PoseFix's: softmax cross-entropy against a one-hot
//! target whose mass is split bilinearly among the four pixels around the true point, plus L1
//! on the integral coordinates, both over the landmarks the ground truth labels.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};

use super::config::RefinerConfig;
use crate::model::layers::conv;
use crate::model::resnet::ResNet;

#[derive(Module, Debug)]
/// PoseFix's refiner: a ResNet on the image and the input pose, with heatmap and coordinate outputs.
pub struct Refiner {
    pub(crate) backbone: ResNet,
    /// 1×1 convolution to one heatmap per landmark.
    pub head: Conv2d,
}

impl Refiner {
    /// A refiner with random weights.
    pub fn new(cfg: &RefinerConfig, device: &Device) -> Self {
        let j = cfg.num_landmarks;
        Refiner {
            backbone: cfg.backbone.init_with_input(3 + j, device),
            head: conv([cfg.backbone.out_channels(), j], 1, 1, true, device),
        }
    }

    /// `(B, 3 + J, H, W)` → heatmap logits `(B, J, H/4, W/4)`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.head.forward(self.backbone.forward(x))
    }
}

/// Soft-argmax of heatmap logits `(B, J, h, w)`: the log-probabilities of the spatial softmax
/// `(B, J, h·w)` and the expected `(x, y)` in heatmap pixels `(B, J, 2)`.
pub fn integral(logits: Tensor<4>) -> (Tensor<3>, Tensor<3>) {
    let [b, j, h, w] = logits.dims();
    let device = logits.device();
    let logp = log_softmax(logits.reshape([b, j, h * w]), 2);
    let p = logp.clone().exp();
    let grid = |f: &dyn Fn(usize) -> f32| {
        let v: Vec<f32> = (0..h * w).map(f).collect();
        Tensor::<3>::from_data(TensorData::new(v, [1, 1, h * w]), &device)
    };
    let xs = grid(&|i| (i % w) as f32);
    let ys = grid(&|i| (i / w) as f32);
    let x = (p.clone() * xs).sum_dim(2);
    let y = (p * ys).sum_dim(2);
    (logp, Tensor::cat(vec![x, y], 2))
}

/// The two loss terms of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RefinerLoss {
    /// Softmax cross-entropy against the bilinear one-hot target.
    pub ce: f32,
    /// L1 of the integral coordinates, heatmap pixels.
    pub l1: f32,
}

impl RefinerLoss {
    /// The sum of both terms.
    pub fn total(&self) -> f32 {
        self.ce + self.l1
    }
}

/// PoseFix's loss of logits `(B, J, h, w)` against the target distribution `(B, J, h·w)`, the
/// target coordinates `(B, J, 2)` (heatmap pixels) and the validity mask `(B, J)`: both terms
/// are averaged over valid landmarks.
pub fn refiner_loss(
    logits: Tensor<4>,
    target: Tensor<3>,
    xy: Tensor<3>,
    valid: Tensor<2>,
) -> (Tensor<1>, RefinerLoss) {
    let (logp, coords) = integral(logits);
    let mask = valid.unsqueeze_dim::<3>(2);
    let count = mask.clone().sum().clamp_min(1.0);
    let ce = (target * logp).sum_dim(2).neg() * mask.clone();
    let ce = ce.sum() / count.clone();
    let l1 = ((coords - xy).abs() * mask).sum() / count;
    let parts = RefinerLoss {
        ce: ce.clone().into_scalar::<f32>(),
        l1: l1.clone().into_scalar::<f32>(),
    };
    (ce + l1, parts)
}
