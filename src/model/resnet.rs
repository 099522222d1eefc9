//! CenterNet's `msra_resnet` ("ResNet with deconvolutions", Simple Baselines): a torchvision-named
//! ResNet (`conv1, bn1, layer1..4`), three `ConvTranspose(k4, s2, p1) → BN → ReLU` up-sampling
//! stages (`deconv_layers`) and the heads on the resulting stride-4 map.

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::conv::{Conv2d, ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::layers::{ConvBn, bn, conv, norm};

/// Shape of a ResNet + deconvolution backbone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// `false`: BasicBlock (ResNet-18/34); `true`: Bottleneck with expansion 4 (ResNet-50+).
    pub bottleneck: bool,
    /// Blocks per stage, e.g. `[2, 2, 2, 2]` for ResNet-18.
    pub layers: [usize; 4],
    /// Planes per stage (64, 128, 256, 512 in the full model).
    pub planes: [usize; 4],
    /// Stem width (64 in the full model).
    pub stem: usize,
    /// Output channels of the three deconvolution stages (256 each in CenterNet).
    pub deconv: [usize; 3],
}

impl ResNetConfig {
    /// ResNet-18 (basic blocks 2, 2, 2, 2).
    pub fn resnet18() -> Self {
        Self {
            bottleneck: false,
            layers: [2, 2, 2, 2],
            planes: [64, 128, 256, 512],
            stem: 64,
            deconv: [256; 3],
        }
    }

    /// ResNet-50 (bottlenecks 3, 4, 6, 3).
    pub fn resnet50() -> Self {
        Self {
            bottleneck: true,
            layers: [3, 4, 6, 3],
            planes: [64, 128, 256, 512],
            stem: 64,
            deconv: [256; 3],
        }
    }

    fn expansion(&self) -> usize {
        if self.bottleneck { 4 } else { 1 }
    }

    /// Channels of the map the heads see.
    pub fn out_channels(&self) -> usize {
        self.deconv[2]
    }

    /// The network with this shape.
    pub fn init(&self, device: &Device) -> ResNet {
        self.init_with_input(3, device)
    }

    /// Channels of the four stages' outputs C2..C5 (256, 512, 1024, 2048 for ResNet-50).
    pub fn stage_channels(&self) -> [usize; 4] {
        self.planes.map(|p| p * self.expansion())
    }

    /// The ResNet alone, without the deconvolutions (CPN reads C2..C5 through
    /// [`ResNet::stages`]).
    pub fn init_trunk(&self, device: &Device) -> ResNet {
        let mut net = self.init_with_input(3, device);
        net.deconv_layers.clear();
        net
    }

    /// The same network reading `in_channels` input channels (PoseFix's refiner reads the image
    /// and one heatmap per landmark).
    pub fn init_with_input(&self, in_channels: usize, device: &Device) -> ResNet {
        let mut inplanes = self.stem;
        let mut stages: Vec<Vec<ResBlock>> = Vec::new();
        for (i, (&n, &planes)) in self.layers.iter().zip(&self.planes).enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            let mut blocks = Vec::with_capacity(n);
            for b in 0..n {
                let s = if b == 0 { stride } else { 1 };
                blocks.push(ResBlock::new(inplanes, planes, s, self.bottleneck, device));
                inplanes = planes * self.expansion();
            }
            stages.push(blocks);
        }
        let [layer1, layer2, layer3, layer4]: [Vec<ResBlock>; 4] =
            stages.try_into().expect("four ResNet stages");
        let mut deconv_layers = Vec::new();
        for &out in &self.deconv {
            let up = ConvTranspose2dConfig::new([inplanes, out], [4, 4])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_bias(false)
                .init(device);
            deconv_layers.push(Deconv {
                up,
                bn: bn(out, device),
            });
            inplanes = out;
        }
        ResNet {
            conv1: conv([in_channels, self.stem], 7, 2, false, device),
            bn1: bn(self.stem, device),
            layer1,
            layer2,
            layer3,
            layer4,
            deconv_layers,
        }
    }
}

/// torchvision's BasicBlock / Bottleneck (stride on the 3×3 conv), with an optional
/// `downsample` (1×1 conv + BN).
#[derive(Module, Debug)]
pub struct ResBlock {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: BatchNorm,
    pub(crate) conv2: Conv2d,
    pub(crate) bn2: BatchNorm,
    pub(crate) conv3: Option<Conv2d>,
    pub(crate) bn3: Option<BatchNorm>,
    pub(crate) downsample: Option<ConvBn>,
}

impl ResBlock {
    fn new(
        inplanes: usize,
        planes: usize,
        stride: usize,
        bottleneck: bool,
        device: &Device,
    ) -> Self {
        let expansion = if bottleneck { 4 } else { 1 };
        let out = planes * expansion;
        let downsample = (stride != 1 || inplanes != out)
            .then(|| ConvBn::new([inplanes, out], 1, stride, device));
        if bottleneck {
            Self {
                conv1: conv([inplanes, planes], 1, 1, false, device),
                bn1: bn(planes, device),
                conv2: conv([planes, planes], 3, stride, false, device),
                bn2: bn(planes, device),
                conv3: Some(conv([planes, out], 1, 1, false, device)),
                bn3: Some(bn(out, device)),
                downsample,
            }
        } else {
            Self {
                conv1: conv([inplanes, planes], 3, stride, false, device),
                bn1: bn(planes, device),
                conv2: conv([planes, planes], 3, 1, false, device),
                bn2: bn(planes, device),
                conv3: None,
                bn3: None,
                downsample,
            }
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let residual = match &self.downsample {
            Some(d) => d.forward(x.clone()),
            None => x.clone(),
        };
        let mut y = relu(norm(&self.bn1, self.conv1.forward(x)));
        y = norm(&self.bn2, self.conv2.forward(y));
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            y = norm(bn3, conv3.forward(relu(y)));
        }
        relu(y + residual)
    }
}

/// One up-sampling stage: `ConvTranspose2d(k4, s2, p1, no bias) → BN → ReLU`
/// (PyTorch `deconv_layers.{3i}` / `deconv_layers.{3i+1}`).
#[derive(Module, Debug)]
pub struct Deconv {
    pub(crate) up: ConvTranspose2d,
    pub(crate) bn: BatchNorm,
}

#[derive(Module, Debug)]
/// ResNet with CenterNet's three deconvolution layers (`msra_resnet`).
pub struct ResNet {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: BatchNorm,
    pub(crate) layer1: Vec<ResBlock>,
    pub(crate) layer2: Vec<ResBlock>,
    pub(crate) layer3: Vec<ResBlock>,
    pub(crate) layer4: Vec<ResBlock>,
    pub(crate) deconv_layers: Vec<Deconv>,
}

impl ResNet {
    /// Image `(B, 3, H, W)` → features `(B, deconv[2], H/4, W/4)`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [.., c5] = self.stages(x);
        let mut x = c5;
        for d in &self.deconv_layers {
            x = relu(norm(&d.bn, d.up.forward(x)));
        }
        x
    }

    /// Image `(B, 3, H, W)` → the outputs of the four stages, C2..C5 (strides 4, 8, 16, 32).
    pub fn stages(&self, x: Tensor<4>) -> [Tensor<4>; 4] {
        let x = relu(norm(&self.bn1, self.conv1.forward(x)));
        let x = max_pool2d(
            x,
            MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1]),
        );
        let run = |x: Tensor<4>, layer: &[ResBlock]| layer.iter().fold(x, |x, b| b.forward(x));
        let c2 = run(x, &self.layer1);
        let c3 = run(c2.clone(), &self.layer2);
        let c4 = run(c3.clone(), &self.layer3);
        let c5 = run(c4.clone(), &self.layer4);
        [c2, c3, c4, c5]
    }
}
