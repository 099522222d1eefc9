//! The paper's recognition network (Zou et al., §III.B, Fig. 3; "joint learning" of Table 2):
//! one ResNet trunk shared by every task and both crops, global average pooling of its last
//! stage, and one linear softmax head per task reading the pooled features of the task's crop
//! (the Normal-crop for length tasks, the Neck-crop for the upper-body design tasks). The paper
//! used NASNet at 399×399; here the trunk is one of this crate's ResNets.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{AttributeTask, Crop, check_tasks};
use crate::error::{Result, invalid};
use crate::model::resnet::{ResNet, ResNetConfig};
use crate::refine::RefinerArch;

/// Everything needed to rebuild a recognition network; saved as JSON beside its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeNetConfig {
    /// The trunk's architecture (`res18`, `res50`, `res18-slim`).
    pub arch: RefinerArch,
    /// Its shape (the deconvolutions are not built).
    pub backbone: ResNetConfig,
    /// Crop `[height, width]`, both crops.
    pub input: [usize; 2],
    /// Each crop's box is grown to the input's aspect ratio, then by this factor.
    pub box_scale: f32,
    /// The tasks, one head each.
    pub tasks: Vec<AttributeTask>,
}

impl AttributeNetConfig {
    /// A network for `tasks` on `input` crops, boxes grown by 1.1.
    pub fn new(arch: RefinerArch, tasks: Vec<AttributeTask>, input: [usize; 2]) -> Result<Self> {
        let cfg = AttributeNetConfig {
            arch,
            backbone: arch.backbone(),
            input,
            box_scale: 1.1,
            tasks,
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Refuses settings the network cannot run.
    pub fn check(&self) -> Result<()> {
        check_tasks(&self.tasks)?;
        self.backbone.check()?;
        let [h, w] = self.input;
        if h < 32 || w < 32 || h % 32 != 0 || w % 32 != 0 || h > 2048 || w > 2048 {
            invalid!(
                "attribute network input {h}x{w}: both sides must be multiples of 32 in 32..=2048"
            );
        }
        if !(self.box_scale > 0.0 && self.box_scale < 100.0) {
            invalid!(
                "attribute crop box scale {} must be positive",
                self.box_scale
            );
        }
        Ok(())
    }

    /// Whether any task reads the Neck-crop.
    pub fn uses_neck(&self) -> bool {
        self.tasks.iter().any(|t| t.crop == Crop::Neck)
    }

    /// A network with random weights.
    pub fn init(&self, device: &Device) -> AttributeNet {
        let c5 = self.backbone.stage_channels()[3];
        AttributeNet {
            trunk: self.backbone.init_trunk(device),
            heads: self
                .tasks
                .iter()
                .map(|t| LinearConfig::new(c5, t.classes).init(device))
                .collect(),
            neck: self.tasks.iter().map(|t| t.crop == Crop::Neck).collect(),
        }
    }
}

/// The recognition network: a shared trunk and one linear head per task.
#[derive(Module, Debug)]
pub struct AttributeNet {
    pub(crate) trunk: ResNet,
    /// One head per task, in the config's order.
    pub heads: Vec<Linear>,
    /// Per head: reads the Neck-crop (else the Normal-crop).
    neck: Vec<bool>,
}

impl AttributeNet {
    /// Pooled trunk features `(B, C)` of crops `(B, 3, H, W)`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let [.., c5] = self.trunk.stages(x);
        let [b, c, h, w] = c5.dims();
        c5.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
    }

    /// Logits per task, `(B, classes)`, of the garments' Normal-crops `(B, 3, H, W)` and
    /// Neck-crops (`None` when no task reads them). Both crops go through the trunk as one
    /// batch.
    pub fn forward(&self, normal: Tensor<4>, neck: Option<Tensor<4>>) -> Vec<Tensor<2>> {
        let b = normal.dims()[0];
        let (f_normal, f_neck) = match neck {
            Some(n) => {
                let f = self.features(Tensor::cat(vec![normal, n], 0));
                let c = f.dims()[1];
                (
                    f.clone().slice([0..b, 0..c]),
                    Some(f.slice([b..2 * b, 0..c])),
                )
            }
            None => (self.features(normal), None),
        };
        self.heads
            .iter()
            .zip(&self.neck)
            .map(|(h, &neck)| {
                let f = match (&f_neck, neck) {
                    (Some(n), true) => n.clone(),
                    _ => f_normal.clone(),
                };
                h.forward(f)
            })
            .collect()
    }
}

/// Reads a recognition network's config JSON, refusing settings it cannot run; errors name the
/// file.
pub fn read_attribute_config(path: &std::path::Path) -> Result<AttributeNetConfig> {
    let config: AttributeNetConfig = crate::io::read_json(path, "attribute network config")?;
    config.check().map_err(|e| {
        crate::Error::file(path, format!("not a usable attribute network config: {e}"))
    })?;
    Ok(config)
}
