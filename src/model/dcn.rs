//! CenterNet's `DeformConv` block: a modulated deformable 3×3 convolution (DCNv2) followed by
//! BatchNorm and ReLU — or, for DeepMark++'s edge model mDLA-34, the same block with a plain
//! 3×3 convolution.
//!
//! DCNv2 semantics (CenterNet `DCNv2/dcn_v2.py`): `conv_offset_mask` (a 3×3 conv with 27 outputs,
//! zero-initialised) predicts, per output pixel, 9 (Δy, Δx) pairs — channels 0..18, interleaved
//! per kernel tap — and 9 modulation logits (channels 18..27, passed through a sigmoid). Burn's
//! `deform_conv2d` uses the same offset layout.

use burn::module::{Module, Param};
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::{conv2d, deform_conv2d};
use burn::tensor::ops::{ConvOptions, DeformConvOptions};
use burn::tensor::{Device, Tensor};

use super::layers::{bn, conv, norm};

/// A 3×3, stride-1, pad-1 convolution with bias that is deformable when `conv_offset_mask` is
/// present (PyTorch keys `weight`, `bias`, `conv_offset_mask.{weight,bias}`).
#[derive(Module, Debug)]
pub struct Dcn {
    pub(crate) weight: Param<Tensor<4>>,
    pub(crate) bias: Param<Tensor<1>>,
    pub(crate) conv_offset_mask: Option<Conv2d>,
}

impl Dcn {
    /// A 3×3 convolution `channels[0] → channels[1]`, deformable or plain.
    pub fn new(channels: [usize; 2], deformable: bool, device: &Device) -> Self {
        // Same initialisation as a PyTorch conv (kaiming-uniform, bias uniform in ±1/sqrt(fan_in)).
        let plain = conv(channels, 3, 1, true, device);
        let conv_offset_mask = deformable.then(|| {
            let mut c = conv([channels[0], 27], 3, 1, true, device);
            c.weight = Param::from_tensor(Tensor::zeros([27, channels[0], 3, 3], device));
            c.bias = Some(Param::from_tensor(Tensor::zeros([27], device)));
            c
        });
        Self {
            weight: plain.weight,
            bias: plain.bias.expect("conv with bias"),
            conv_offset_mask,
        }
    }

    /// The convolution of `x` (offsets and mask predicted from `x` when deformable).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match &self.conv_offset_mask {
            None => conv2d(
                x,
                self.weight.val(),
                Some(self.bias.val()),
                ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
            ),
            Some(om) => {
                let out = om.forward(x.clone());
                let offset = out.clone().narrow(1, 0, 18);
                let mask = sigmoid(out.narrow(1, 18, 9));
                deform_conv2d(
                    x,
                    offset,
                    self.weight.val(),
                    Some(mask),
                    Some(self.bias.val()),
                    DeformConvOptions::new([1, 1], [1, 1], [1, 1], 1, 1),
                )
            }
        }
    }
}

/// `DeformConv(chi, cho)` of `pose_dla_dcn.py`: `conv` (DCN) → `actf` (BN → ReLU). The PyTorch
/// key `actf.0.*` is remapped to `actf.*` on import.
#[derive(Module, Debug)]
pub struct DeformConvBlock {
    pub(crate) conv: Dcn,
    pub(crate) actf: BatchNorm,
}

impl DeformConvBlock {
    /// The convolution followed by BatchNorm and ReLU.
    pub fn new(channels: [usize; 2], deformable: bool, device: &Device) -> Self {
        Self {
            conv: Dcn::new(channels, deformable, device),
            actf: bn(channels[1], device),
        }
    }

    /// Convolution, BatchNorm, ReLU.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(norm(&self.actf, self.conv.forward(x)))
    }
}
