//! The CenterNet model: a backbone (with its up-sampling neck) producing a stride-4 feature map
//! and CenterNet's six heads on it (one set per Hourglass stack).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::dla_up::DlaSeg;
use super::heads::{HeadOutputs, HeadSet};
use super::hourglass::{Hourglass, HourglassConfig};
use super::resnet::{ResNet, ResNetConfig};
use crate::codec::{Grouping, HeadLayout, ModelTaxonomy, Scheme};
use crate::error::{Result, invalid};

/// Backbone architecture and its shape parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BackboneConfig {
    /// `msra_resnet` (ResNet + three deconvolutions).
    Resnet(ResNetConfig),
    /// `pose_dla_dcn` DLA-34 with DLAUp/IDAUp; `deformable: false` is mDLA-34.
    Dla {
        /// Channels of the six DLA levels (DLA-34: 16, 32, 64, 128, 256, 512).
        channels: [usize; 6],
        /// Modulated deformable convolutions in the up-sampling path (DLA-34) or plain 3×3 (mDLA-34).
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
    /// ResNet-18 with three deconvolution stages (CenterNet's `res_18`).
    Res18,
    /// ResNet-50 (CenterNet's `res_50`).
    Res50,
    /// DLA-34 with modulated deformable convolutions in the up path (CenterNet's `dla_34`).
    Dla34,
    /// DLA-34 with plain convolutions in place of the deformable ones (DeepMark++'s mDLA-34).
    Mdla34,
    /// Hourglass-104, two stacks (CenterNet's `hourglass`).
    Hourglass104,
    /// A slim ResNet-18 (quarter width, 64-channel deconvolutions): the CPU demo and test model
    /// (not a published CenterNet architecture; random init only).
    #[serde(rename = "res18-slim")]
    Res18Slim,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 6] = [
        Arch::Res18,
        Arch::Res50,
        Arch::Dla34,
        Arch::Mdla34,
        Arch::Hourglass104,
        Arch::Res18Slim,
    ];

    /// The name used in configs and on the command line (`res18`, `dla34`, `res18-slim`, …).
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

    /// The backbone configuration of this architecture.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CenterNetConfig {
    /// The feature extractor.
    pub backbone: BackboneConfig,
    /// The heads' output channels (classes and landmark channels).
    pub layout: HeadLayout,
    /// Channels of each head's first 3×3 convolution.
    pub head_conv: usize,
    /// What the classes and landmark channels mean, when not the layout's default
    /// (DeepFashion2's schemes, or COCO people for `coco17`'s 1 × 17); absent in configs of
    /// those, so their files read and write as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxonomy: Option<ModelTaxonomy>,
}

/// Configs declaring more parameters than this are refused before anything is allocated
/// (Hourglass-104, the largest published CenterNet, has about 0.19 G).
pub const MAX_PARAMS: f64 = 2e9;

/// Widths, depths and counts beyond these are refused by [`CenterNetConfig::check`]: none of
/// the published architectures comes near, and a hostile config could otherwise ask for
/// terabytes or overflow a size computation.
pub const MAX_WIDTH: usize = 16_384;

/// A config value outside `1..=max` (`0..=max` when `zero_ok`).
fn check_dim(what: &str, v: usize, max: usize, zero_ok: bool) -> Result<()> {
    if (v == 0 && !zero_ok) || v > max {
        invalid!(
            "{what} is {v}; it must be in {}..={max}",
            if zero_ok { 0 } else { 1 }
        );
    }
    Ok(())
}

impl ResNetConfig {
    /// Refuses widths and depths no network could have, and returns an estimate of the
    /// parameter count (an upper bound within a small factor).
    pub fn check(&self) -> Result<f64> {
        check_dim("resnet stem", self.stem, MAX_WIDTH, false)?;
        for i in 0..4 {
            check_dim("resnet planes", self.planes[i], MAX_WIDTH, false)?;
            check_dim("resnet blocks per stage", self.layers[i], 1000, false)?;
        }
        for &d in &self.deconv {
            check_dim("resnet deconvolution width", d, MAX_WIDTH, false)?;
        }
        let e = if self.bottleneck { 4.0 } else { 1.0 };
        // Per block, with w the wider of its input and output: a basic block (two 3×3 convs
        // and a 1×1 projection) has at most 19 w² weights; a bottleneck (1×1 to p = w/4, 3×3,
        // 1×1 to 4p, and the projection) at most 2.06 w².
        let per_block = if self.bottleneck { 2.1 } else { 20.0 };
        let mut inp = self.stem as f64;
        let mut params = 49.0 * 3.0 * inp;
        for i in 0..4 {
            let p = self.planes[i] as f64;
            let w = inp.max(e * p);
            params += self.layers[i] as f64 * per_block * w * w;
            inp = e * p;
        }
        for &d in &self.deconv {
            params += 16.0 * inp * d as f64;
            inp = d as f64;
        }
        Ok(params)
    }
}

impl BackboneConfig {
    /// [`ResNetConfig::check`] for every backbone.
    pub fn check(&self) -> Result<f64> {
        match self {
            BackboneConfig::Resnet(c) => c.check(),
            BackboneConfig::Dla { channels, .. } => {
                for &c in channels {
                    check_dim("dla channels", c, MAX_WIDTH, false)?;
                }
                Ok(60.0 * channels.iter().map(|&c| (c * c) as f64).sum::<f64>())
            }
            BackboneConfig::Hourglass(c) => {
                if c.dims.len() < 2 || c.dims.len() != c.modules.len() {
                    invalid!(
                        "hourglass dims ({}) and modules ({}) must have the same length, at least 2",
                        c.dims.len(),
                        c.modules.len()
                    );
                }
                check_dim("hourglass depth", c.dims.len() - 1, 10, false)?;
                check_dim("hourglass stacks", c.num_stacks, 16, false)?;
                check_dim("hourglass pre_dim", c.pre_dim, MAX_WIDTH, false)?;
                check_dim("hourglass cnv_dim", c.cnv_dim, MAX_WIDTH, false)?;
                let mut per_stack = 0.0;
                for (&d, &m) in c.dims.iter().zip(&c.modules) {
                    check_dim("hourglass width", d, MAX_WIDTH, false)?;
                    check_dim("hourglass modules", m, 1000, false)?;
                    per_stack += m as f64 * 60.0 * (d * d) as f64;
                }
                let cnv = c.cnv_dim as f64;
                Ok(c.num_stacks as f64 * (per_stack + 9.0 * cnv * cnv * 2.0)
                    + 49.0 * 3.0 * c.pre_dim as f64)
            }
        }
    }
}

impl CenterNetConfig {
    /// A full-size named architecture with the given head layout.
    pub fn new(arch: Arch, layout: HeadLayout) -> Self {
        Self {
            backbone: arch.backbone(),
            layout,
            head_conv: arch.head_conv(),
            taxonomy: None,
        }
    }

    /// A full-size named architecture whose heads fit `grouping` (its taxonomy's categories,
    /// its channels); the taxonomy is saved in the config unless the layout implies it.
    pub fn for_grouping(arch: Arch, grouping: &Grouping) -> Self {
        let mut c = Self::new(arch, HeadLayout::default());
        c.set_grouping(grouping);
        c
    }

    /// Fit the heads' layout to `grouping` and record its taxonomy (unless the layout's
    /// default scheme is this grouping).
    pub fn set_grouping(&mut self, grouping: &Grouping) {
        self.layout = HeadLayout {
            num_classes: grouping.taxonomy().num_categories(),
            num_landmarks: grouping.num_groups(),
        };
        let implied = Scheme::from_layout(&self.layout)
            .and_then(Scheme::grouping)
            .is_some_and(|g| g.taxonomy() == grouping.taxonomy() && g.table() == grouping.table());
        self.taxonomy = (!implied).then(|| ModelTaxonomy::of(grouping));
    }

    /// The landmark grouping (and through it the taxonomy) of the heads: the saved taxonomy's,
    /// or the layout's scheme (DeepFashion2's `deepmark62`, `agg81`, `none`; COCO's `coco17`).
    pub fn grouping(&self) -> Result<Grouping> {
        let g = match &self.taxonomy {
            Some(t) => t.grouping()?,
            None => match Scheme::from_layout(&self.layout).and_then(Scheme::grouping) {
                Some(g) => g,
                None => invalid!(
                    "the head layout ({} classes, {} landmark channels) is none of the \
                     landmark schemes ({}) and the config names no taxonomy",
                    self.layout.num_classes,
                    self.layout.num_landmarks,
                    Scheme::ALL.map(|s| s.name()).join(", ")
                ),
            },
        };
        if g.taxonomy().num_categories() != self.layout.num_classes
            || g.num_groups() != self.layout.num_landmarks
        {
            invalid!(
                "the head layout ({} classes, {} landmark channels) does not fit the taxonomy \
                 {} grouped by {} ({} categories, {} channels)",
                self.layout.num_classes,
                self.layout.num_landmarks,
                g.taxonomy().name,
                g.name(),
                g.taxonomy().num_categories(),
                g.num_groups()
            );
        }
        Ok(g)
    }

    /// Refuses configs that no network could have (zero or absurd widths, inconsistent
    /// Hourglass lists, more than [`MAX_PARAMS`] parameters) before anything is allocated.
    pub fn check(&self) -> Result<()> {
        self.estimated_params().map(drop)
    }

    /// An estimate of the parameter count from the config alone (nothing is built): an upper
    /// bound within a small factor. Errors as [`check`](Self::check).
    pub fn estimated_params(&self) -> Result<f64> {
        let backbone = self.backbone.check()?;
        check_dim("num_classes", self.layout.num_classes, 10_000, false)?;
        check_dim("num_landmarks", self.layout.num_landmarks, 10_000, true)?;
        // CenterNet's `head_conv 0` (heads without their 3×3 layer) is not built here: every
        // head is 3×3 → ReLU → 1×1.
        check_dim("head_conv", self.head_conv, MAX_WIDTH, false)?;
        let in_ch = self.backbone.out_channels() as f64;
        let hc = self.head_conv.max(1) as f64;
        let out: f64 = self
            .layout
            .channels()
            .into_array()
            .iter()
            .map(|&c| c as f64)
            .sum();
        let heads = self.backbone.num_stacks() as f64 * (6.0 * 9.0 * in_ch * hc + hc * out);
        let params = backbone + heads;
        if params > MAX_PARAMS {
            invalid!(
                "the config declares about {:.2} G parameters, over the limit of {:.1} G",
                params / 1e9,
                MAX_PARAMS / 1e9
            );
        }
        Ok(params)
    }

    /// Builds the network on `device` with CenterNet's initialisation (heatmap biases −2.19,
    /// regression heads' bias 0; `xingyizhou/CenterNet`, `src/lib/models/networks/*.py`).
    /// Weights are drawn lazily; [`CenterNet::initialize`] draws them all at once.
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
    /// ResNet with deconvolution stages.
    Resnet(ResNet),
    /// DLA-34 with its up-sampling path (deformable or not).
    Dla(DlaSeg),
    /// Stacked hourglasses (one feature map per stack).
    Hourglass(Hourglass),
}

impl Backbone {
    /// The features of every stack (one, except for Hourglass-104's two).
    pub fn forward(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        match self {
            Backbone::Resnet(m) => vec![m.forward(x)],
            Backbone::Dla(m) => vec![m.forward(x)],
            Backbone::Hourglass(m) => m.forward(x),
        }
    }
}

/// The CenterNet network: a backbone and, per stack, the six heads
/// ([`HeadOutputs`]: `hm`, `wh`, `reg`, `hps`, `hm_hp`, `hp_offset`) on a stride-4 map. Build it
/// with [`CenterNetConfig::init`] or load it with [`crate::checkpoint::load`].
#[derive(Module, Debug)]
pub struct CenterNet {
    /// The feature extractor.
    pub backbone: Backbone,
    /// One head set per stack.
    pub heads: Vec<HeadSet>,
}

impl CenterNet {
    /// Draws every lazily initialized weight now, on this thread, in the module's order.
    /// Burn draws a weight's initial value when it is first read, so without this the initial
    /// weights of a seeded run would depend on the order of the first reads: on the forward
    /// pass, on a reduced-precision copy (`train::amp`), or on the timing of shard threads.
    pub fn initialize(&self) {
        struct Touch;
        impl ModuleVisitor for Touch {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let _ = param.val();
            }
        }
        self.visit(&mut Touch);
    }

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
