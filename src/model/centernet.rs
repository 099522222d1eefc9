//! The CenterNet model: a backbone (with its up-sampling neck) producing a stride-4 feature map
//! and CenterNet's six heads on it (one set per Hourglass stack).

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::dla_up::DlaSeg;
use super::heads::{HeadOutputs, HeadSet};
use super::hourglass::{Hourglass, HourglassConfig};
use super::resnet::{ResNet, ResNetConfig};
use crate::codec::HeadLayout;
use crate::error::{Result, invalid};

/// Backbone architecture and its shape parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BackboneConfig {
    /// `msra_resnet` (ResNet + three deconvolutions).
    Resnet(ResNetConfig),
    /// `pose_dla_dcn` DLA-34 with DLAUp/IDAUp; `deformable: false` is mDLA-34.
    Dla {
        channels: [usize; 6],
        deformable: bool,
    },
    /// `large_hourglass`.
    Hourglass(HourglassConfig),
}

impl BackboneConfig {
    /// Channels of the feature map the heads read.
    pub fn out_channels(&self) -> usize {
        match self {
            Self::Resnet(c) => c.out_channels(),
            Self::Dla { channels, .. } => channels[2],
            Self::Hourglass(c) => c.cnv_dim,
        }
    }

    /// Number of head sets (2 for Hourglass-104, else 1).
    pub fn num_stacks(&self) -> usize {
        match self {
            Self::Hourglass(c) => c.num_stacks,
            _ => 1,
        }
    }

    /// The input side must be a multiple of this.
    pub fn input_multiple(&self) -> usize {
        match self {
            Self::Hourglass(c) => 4 << c.depth(),
            _ => 32,
        }
    }

    /// Checks a network input side against [`input_multiple`](Self::input_multiple).
    pub fn check_input_size(&self, size: usize) -> Result<()> {
        let m = self.input_multiple();
        if size == 0 || !size.is_multiple_of(m) {
            invalid!("input size {size} must be a positive multiple of {m} for this backbone");
        }
        Ok(())
    }
}

/// The named full-size architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Res18,
    Res50,
    Dla34,
    Mdla34,
    Hourglass104,
    /// A slim ResNet-18 (quarter width, 64-channel deconvolutions): the CPU demo and test model
    /// (not a published CenterNet architecture; random init only).
    #[serde(rename = "res18-slim")]
    Res18Slim,
}

impl Arch {
    pub const ALL: [Arch; 6] = [
        Arch::Res18,
        Arch::Res50,
        Arch::Dla34,
        Arch::Mdla34,
        Arch::Hourglass104,
        Arch::Res18Slim,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Arch::Res18 => "res18",
            Arch::Res50 => "res50",
            Arch::Dla34 => "dla34",
            Arch::Mdla34 => "mdla34",
            Arch::Hourglass104 => "hourglass104",
            Arch::Res18Slim => "res18-slim",
        }
    }

    pub fn backbone(self) -> BackboneConfig {
        const DLA: [usize; 6] = [16, 32, 64, 128, 256, 512];
        match self {
            Arch::Res18 => BackboneConfig::Resnet(ResNetConfig::resnet18()),
            Arch::Res50 => BackboneConfig::Resnet(ResNetConfig::resnet50()),
            Arch::Dla34 => BackboneConfig::Dla {
                channels: DLA,
                deformable: true,
            },
            Arch::Mdla34 => BackboneConfig::Dla {
                channels: DLA,
                deformable: false,
            },
            Arch::Hourglass104 => BackboneConfig::Hourglass(HourglassConfig::hourglass104()),
            Arch::Res18Slim => BackboneConfig::Resnet(ResNetConfig {
                planes: [16, 32, 64, 128],
                stem: 16,
                deconv: [64; 3],
                ..ResNetConfig::resnet18()
            }),
        }
    }

    /// CenterNet's `head_conv` default: 256 for DLA, 64 for ResNets; Hourglass heads are always
    /// as wide as the hourglass (256).
    pub fn head_conv(self) -> usize {
        match self {
            Arch::Res18 | Arch::Res50 => 64,
            Arch::Res18Slim => 32,
            Arch::Dla34 | Arch::Mdla34 | Arch::Hourglass104 => 256,
        }
    }
}

crate::named::impl_named!(Arch, "architecture");

/// Everything needed to rebuild a [`CenterNet`]; saved as JSON beside the weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CenterNetConfig {
    pub backbone: BackboneConfig,
    pub layout: HeadLayout,
    pub head_conv: usize,
}

impl CenterNetConfig {
    /// A full-size named architecture with the given head layout.
    pub fn new(arch: Arch, layout: HeadLayout) -> Self {
        Self {
            backbone: arch.backbone(),
            layout,
            head_conv: arch.head_conv(),
        }
    }

    pub fn init(&self, device: &Device) -> CenterNet {
        let backbone = match &self.backbone {
            BackboneConfig::Resnet(c) => Backbone::Resnet(c.init(device)),
            BackboneConfig::Dla {
                channels,
                deformable,
            } => Backbone::Dla(DlaSeg::new(*channels, *deformable, device)),
            BackboneConfig::Hourglass(c) => Backbone::Hourglass(c.init(device)),
        };
        let in_ch = self.backbone.out_channels();
        let heads = (0..self.backbone.num_stacks())
            .map(|_| HeadSet::new(self.layout, in_ch, self.head_conv, device))
            .collect();
        CenterNet { backbone, heads }
    }
}

/// The DLA variant is much larger than the others, but a model holds exactly one backbone and
/// Burn's `Module` derive does not support `Box`ed fields.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Backbone {
    Resnet(ResNet),
    Dla(DlaSeg),
    Hourglass(Hourglass),
}

impl Backbone {
    fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        match self {
            Backbone::Resnet(m) => vec![m.forward(x)],
            Backbone::Dla(m) => vec![m.forward(x)],
            Backbone::Hourglass(m) => m.forward(x),
        }
    }
}

#[derive(Module, Debug)]
pub struct CenterNet {
    pub backbone: Backbone,
    /// One head set per stack.
    pub heads: Vec<HeadSet>,
}

impl CenterNet {
    /// Raw heads of every stack (training supervises all of them).
    pub fn forward_stacks(&self, x: Tensor<4>) -> Vec<HeadOutputs> {
        self.backbone
            .forward(x)
            .into_iter()
            .zip(&self.heads)
            .map(|(feat, heads)| heads.forward(feat))
            .collect()
    }

    /// Trainable parameters, as PyTorch counts them: Burn's `num_params` also counts the
    /// BatchNorm running statistics, which PyTorch keeps as buffers.
    pub fn num_trainable_params(&self) -> usize {
        use burn::store::ModuleSnapshot;
        self.collect(None, None, false)
            .iter()
            .filter(|t| !t.name.ends_with(".running_mean") && !t.name.ends_with(".running_var"))
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }

    /// Raw heads of the last stack (inference).
    pub fn forward(&self, x: Tensor<4>) -> HeadOutputs {
        let feats = self.backbone.forward(x);
        let last = feats.len() - 1;
        let feat = feats.into_iter().nth(last).expect("at least one stack");
        self.heads[last].forward(feat)
    }
}
