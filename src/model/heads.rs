//! CenterNet's output heads, named exactly as CenterNet names them so that PyTorch keys map
//! one-to-one: `hm` (class centre heatmaps), `wh` (box size), `reg` (centre sub-pixel offset),
//! `hps` (landmark offsets from the integer centre, x/y interleaved), `hm_hp` (landmark
//! heatmaps) and `hp_offset` (landmark sub-pixel offset).

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::layers::conv;
use crate::codec::heads::{HeadLayout, Heads, is_heatmap};

/// Raw head tensors (before any sigmoid), each `(B, C, H/4, W/4)`.
pub type HeadOutputs = Heads<Tensor<4>>;

/// Bias of the final `hm`/`hm_hp` convolution: `-ln((1-0.1)/0.1)`, so that sigmoid ≈ 0.1 at
/// initialisation (CenterNet, `pose_dla_dcn.py`).
pub const HEATMAP_PRIOR_BIAS: f32 = -2.19;

/// One head: `3×3 conv (+bias) → ReLU → 1×1 conv`. PyTorch keys `<name>.0.*` / `<name>.2.*`
/// (Hourglass: `<name>.<stack>.0.conv.*` / `<name>.<stack>.1.*`) are remapped to
/// `conv` / `out` on import.
#[derive(Module, Debug)]
pub struct Head {
    pub(crate) conv: Conv2d,
    pub(crate) out: Conv2d,
}

impl Head {
    /// A head `in_channels → head_conv` (3×3, ReLU) `→ out` (1×1); a heatmap head's last bias starts at −2.19 (CenterNet's prior).
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

    /// The head's map.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.out.forward(relu(self.conv.forward(x)))
    }
}

/// The six heads of one stack.
#[derive(Module, Debug)]
pub struct HeadSet {
    pub(crate) hm: Head,
    pub(crate) wh: Head,
    pub(crate) reg: Head,
    pub(crate) hps: Head,
    pub(crate) hm_hp: Head,
    pub(crate) hp_offset: Head,
}

impl HeadSet {
    /// The six heads of `layout` on features of `in_channels` channels.
    pub fn new(layout: HeadLayout, in_channels: usize, head_conv: usize, device: &Device) -> Self {
        let h = Heads::from_fn(|name| name)
            .zip(layout.channels())
            .map(|(name, c)| Head::new(in_channels, head_conv, c, is_heatmap(name), device));
        Self {
            hm: h.hm,
            wh: h.wh,
            reg: h.reg,
            hps: h.hps,
            hm_hp: h.hm_hp,
            hp_offset: h.hp_offset,
        }
    }

    /// The six heads as a [`Heads`] record.
    pub fn as_heads(&self) -> Heads<&Head> {
        Heads {
            hm: &self.hm,
            wh: &self.wh,
            reg: &self.reg,
            hps: &self.hps,
            hm_hp: &self.hm_hp,
            hp_offset: &self.hp_offset,
        }
    }

    /// The six maps of a feature batch (raw logits; the heatmaps' sigmoid is decoding's).
    pub fn forward(&self, x: Tensor<4>) -> HeadOutputs {
        self.as_heads().map(|h| h.forward(x.clone()))
    }
}
