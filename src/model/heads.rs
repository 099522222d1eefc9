//! CenterNet's output heads, named exactly as CenterNet names them so that PyTorch keys map
//! one-to-one: `hm` (class centre heatmaps), `wh` (box size), `reg` (centre sub-pixel offset),
//! `hps` (landmark offsets from the integer centre, x/y interleaved), `hm_hp` (landmark
//! heatmaps) and `hp_offset` (landmark sub-pixel offset).

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::layers::conv;

/// Bias of the final `hm`/`hm_hp` convolution: `-ln((1-0.1)/0.1)`, so that sigmoid ≈ 0.1 at
/// initialisation (CenterNet, `pose_dla_dcn.py`).
pub const HEATMAP_PRIOR_BIAS: f32 = -2.19;

/// Output channel counts of the six heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadLayout {
    /// Object classes (`hm` channels): 13 for DeepFashion2, 1 for COCO people.
    pub num_classes: usize,
    /// Landmark channels (`hm_hp` channels; `hps` has twice as many).
    pub num_landmarks: usize,
}

/// The six head names in CenterNet's order.
pub const HEAD_NAMES: [&str; 6] = ["hm", "wh", "reg", "hps", "hm_hp", "hp_offset"];

impl HeadLayout {
    /// Channels of each head, in [`HEAD_NAMES`] order.
    pub fn channels(&self) -> [usize; 6] {
        let (c, j) = (self.num_classes, self.num_landmarks);
        [c, 2, 2, 2 * j, j, 2]
    }

    /// Total output channels (e.g. 13 classes + 62 groups → 205).
    pub fn total_channels(&self) -> usize {
        self.channels().iter().sum()
    }
}

/// One head: `3×3 conv (+bias) → ReLU → 1×1 conv`. PyTorch keys `<name>.0.*` / `<name>.2.*`
/// (Hourglass: `<name>.<stack>.0.conv.*` / `<name>.<stack>.1.*`) are remapped to
/// `conv` / `out` on import.
#[derive(Module, Debug)]
pub struct Head {
    pub conv: Conv2d,
    pub out: Conv2d,
}

impl Head {
    pub fn new(
        in_channels: usize,
        head_conv: usize,
        out: usize,
        heatmap: bool,
        device: &Device,
    ) -> Self {
        let conv3 = conv([in_channels, head_conv], 3, 1, true, device);
        let mut out = conv([head_conv, out], 1, 1, true, device);
        let fill = if heatmap { HEATMAP_PRIOR_BIAS } else { 0.0 };
        if let Some(bias) = out.bias.take() {
            let shape = bias.shape();
            out.bias = Some(Param::from_tensor(Tensor::full(shape, fill, device)));
        }
        Self { conv: conv3, out }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.out.forward(relu(self.conv.forward(x)))
    }
}

/// The six heads of one stack.
#[derive(Module, Debug)]
pub struct HeadSet {
    pub hm: Head,
    pub wh: Head,
    pub reg: Head,
    pub hps: Head,
    pub hm_hp: Head,
    pub hp_offset: Head,
}

impl HeadSet {
    pub fn new(layout: HeadLayout, in_channels: usize, head_conv: usize, device: &Device) -> Self {
        let [c_hm, c_wh, c_reg, c_hps, c_hmhp, c_off] = layout.channels();
        let head = |c, heatmap| Head::new(in_channels, head_conv, c, heatmap, device);
        Self {
            hm: head(c_hm, true),
            wh: head(c_wh, false),
            reg: head(c_reg, false),
            hps: head(c_hps, false),
            hm_hp: head(c_hmhp, true),
            hp_offset: head(c_off, false),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> HeadOutputs {
        HeadOutputs {
            hm: self.hm.forward(x.clone()),
            wh: self.wh.forward(x.clone()),
            reg: self.reg.forward(x.clone()),
            hps: self.hps.forward(x.clone()),
            hm_hp: self.hm_hp.forward(x.clone()),
            hp_offset: self.hp_offset.forward(x),
        }
    }
}

/// Raw head tensors (before any sigmoid), each `(B, C, H/4, W/4)`.
#[derive(Debug, Clone)]
pub struct HeadOutputs {
    pub hm: Tensor<4>,
    pub wh: Tensor<4>,
    pub reg: Tensor<4>,
    pub hps: Tensor<4>,
    pub hm_hp: Tensor<4>,
    pub hp_offset: Tensor<4>,
}

impl HeadOutputs {
    /// `(name, tensor)` pairs in [`HEAD_NAMES`] order.
    pub fn named(&self) -> [(&'static str, &Tensor<4>); 6] {
        [
            ("hm", &self.hm),
            ("wh", &self.wh),
            ("reg", &self.reg),
            ("hps", &self.hps),
            ("hm_hp", &self.hm_hp),
            ("hp_offset", &self.hp_offset),
        ]
    }
}
