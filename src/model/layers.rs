//! Small building blocks shared by the backbones: convolution + BatchNorm pairs with the
//! PyTorch defaults (BN eps 1e-5, momentum 0.1) that CenterNet uses everywhere.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::Device;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

/// A `k×k` convolution with symmetric padding `(k-1)/2` (CenterNet never uses anything else).
pub fn conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    let pad = (kernel - 1) / 2;
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(bias)
        .init(device)
}

/// BatchNorm with PyTorch's defaults.
pub fn bn(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels)
        .with_epsilon(1e-5)
        .with_momentum(0.1)
        .init(device)
}

/// BatchNorm of `x` in the type of the layer's statistics (f32). Reduced-precision training
/// ([`train::amp`](crate::train::amp)) runs the convolutions in f16/bf16 but keeps BatchNorm —
/// its weights, its running statistics and the mean/variance arithmetic — in f32, as PyTorch's
/// autocast does; the result goes on in `x`'s type. An f32 `x` is a plain call.
pub fn norm(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let dtype = x.dtype();
    let stats = bn.gamma.val().dtype();
    if dtype == stats {
        return bn.forward(x);
    }
    bn.forward(x.cast(stats)).cast(dtype)
}

/// `conv → BN` (optionally followed by ReLU at the call site). In PyTorch this is an
/// `nn.Sequential(conv, bn[, relu])`, i.e. keys `.0.*` and `.1.*`; the checkpoint loader remaps
/// those indices to `.conv.*` / `.bn.*`.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub(crate) conv: Conv2d,
    pub(crate) bn: BatchNorm,
}

impl ConvBn {
    /// A `kernel × kernel` convolution (padding `kernel / 2`, no bias) with BatchNorm.
    pub fn new(channels: [usize; 2], kernel: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv: conv(channels, kernel, stride, false, device),
            bn: bn(channels[1], device),
        }
    }

    /// Convolution and BatchNorm.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        norm(&self.bn, self.conv.forward(x))
    }

    /// Convolution, BatchNorm and ReLU.
    pub fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.forward(x))
    }
}
