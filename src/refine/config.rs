//! The refiner's shape: which category, which ResNet, which input size. Saved as JSON beside
//! each refiner's weights, so a refiner folder is self-describing.

use serde::{Deserialize, Serialize};

use super::net::Refiner;
use crate::error::{Result, invalid};
use crate::garment::{Category, DEEPFASHION2, Taxonomy, TaxonomyDef};
use crate::model::resnet::ResNetConfig;
use burn::tensor::Device;

/// The refiner backbones: PoseFix's ResNet (50 by default), ResNet-18, and a slim ResNet-18
/// (quarter width, 64-channel deconvolutions) for CPU demos and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefinerArch {
    /// ResNet-18 backbone.
    Res18,
    /// ResNet-50 backbone (PoseFix's).
    Res50,
    #[serde(rename = "res18-slim")]
    /// ResNet-18 at a quarter of the width (quick CPU runs).
    Res18Slim,
}

impl RefinerArch {
    /// Every architecture.
    pub const ALL: [RefinerArch; 3] = [
        RefinerArch::Res18,
        RefinerArch::Res50,
        RefinerArch::Res18Slim,
    ];

    /// The name used by the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            RefinerArch::Res18 => "res18",
            RefinerArch::Res50 => "res50",
            RefinerArch::Res18Slim => "res18-slim",
        }
    }

    /// ResNet + three 4×4 stride-2 deconvolutions (256 channels; 64 for the slim one).
    pub fn backbone(self) -> ResNetConfig {
        match self {
            RefinerArch::Res18 => ResNetConfig::resnet18(),
            RefinerArch::Res50 => ResNetConfig::resnet50(),
            RefinerArch::Res18Slim => ResNetConfig {
                planes: [16, 32, 64, 128],
                stem: 16,
                deconv: [64; 3],
                ..ResNetConfig::resnet18()
            },
        }
    }
}

crate::named::impl_named!(RefinerArch, "refiner architecture");

/// Parses `HxW` (e.g. `384x288`): the refiner's input height and width.
pub fn parse_input_size(s: &str) -> Result<[usize; 2]> {
    let parts: Vec<&str> = s.split(['x', 'X']).collect();
    match parts.as_slice() {
        [h, w] => match (h.trim().parse(), w.trim().parse()) {
            (Ok(h), Ok(w)) => Ok([h, w]),
            _ => invalid!("input size '{s}': expected HEIGHTxWIDTH, e.g. 384x288"),
        },
        _ => invalid!("input size '{s}': expected HEIGHTxWIDTH, e.g. 384x288"),
    }
}

/// Everything needed to rebuild one category's refiner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RefinerConfig {
    /// Category id in the taxonomy (DeepFashion2: 1–13).
    pub category_id: usize,
    /// The taxonomy, when not DeepFashion2's (absent from the JSON for DeepFashion2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxonomy: Option<TaxonomyDef>,
    /// The category's landmark count `J` (input channels `3 + J`, output heatmaps `J`).
    pub num_landmarks: usize,
    /// The architecture.
    pub arch: RefinerArch,
    /// Its backbone's shape.
    pub backbone: ResNetConfig,
    /// Input `[height, width]` (PoseFix: 384×288, or 256×192).
    pub input: [usize; 2],
    /// σ of the input-pose Gaussians, in input pixels (PoseFix: 9 at 384×288, 7 at 256×192).
    pub sigma: f32,
    /// The garment box is grown to the input's aspect ratio, then by this factor (PoseFix 1.25).
    pub box_scale: f32,
}

impl RefinerConfig {
    /// The refiner of `category_id` with PoseFix's defaults for `input`: σ = 3 + height/64
    /// (9 at 384, 7 at 256), box ×1.25.
    pub fn new(arch: RefinerArch, category_id: usize, input: [usize; 2]) -> Result<Self> {
        Self::new_in(&DEEPFASHION2, arch, category_id, input)
    }

    /// [`RefinerConfig::new`] for a category of `taxonomy`.
    pub fn new_in(
        taxonomy: &'static Taxonomy,
        arch: RefinerArch,
        category_id: usize,
        input: [usize; 2],
    ) -> Result<Self> {
        let Some(cat) = taxonomy.category(category_id) else {
            invalid!(
                "unknown category {category_id} (the taxonomy {} has {})",
                taxonomy.name,
                taxonomy.category_list()
            );
        };
        let cfg = RefinerConfig {
            category_id,
            taxonomy: (!taxonomy.is_deepfashion2()).then(|| taxonomy.def()),
            num_landmarks: cat.num_landmarks,
            arch,
            backbone: arch.backbone(),
            input,
            sigma: 3.0 + input[0] as f32 / 64.0,
            box_scale: 1.25,
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// The taxonomy of the refined category (DeepFashion2's unless the config names one).
    pub fn taxonomy(&self) -> Result<&'static Taxonomy> {
        match &self.taxonomy {
            Some(def) => def.intern(),
            None => Ok(&DEEPFASHION2),
        }
    }

    /// The category this refiner refines.
    pub fn category(&self) -> Result<&'static Category> {
        let tax = self.taxonomy()?;
        match tax.category(self.category_id) {
            Some(c) => Ok(c),
            None => invalid!(
                "refiner for unknown category {} of the taxonomy {}",
                self.category_id,
                tax.name
            ),
        }
    }

    /// Output heatmap `[height, width]` (stride 4).
    pub fn output(&self) -> [usize; 2] {
        [self.input[0] / 4, self.input[1] / 4]
    }

    /// Refuses settings the network cannot run.
    pub fn check(&self) -> Result<()> {
        let cat = self.category()?;
        if cat.num_landmarks != self.num_landmarks {
            invalid!(
                "refiner for {} has {} landmarks; the category has {}",
                cat.name,
                self.num_landmarks,
                cat.num_landmarks
            );
        }
        self.backbone.check()?;
        let [h, w] = self.input;
        if h == 0 || w == 0 || h % 32 != 0 || w % 32 != 0 || h > 2048 || w > 2048 {
            invalid!(
                "refiner input {h}x{w}: both sides must be positive multiples of 32 (at most 2048)"
            );
        }
        if !(self.sigma > 0.0
            && self.sigma.is_finite()
            && self.box_scale > 0.0
            && self.box_scale.is_finite())
        {
            invalid!(
                "refiner sigma {} and box scale {} must be positive",
                self.sigma,
                self.box_scale
            );
        }
        Ok(())
    }

    /// A refiner with random weights.
    pub fn init(&self, device: &Device) -> Refiner {
        Refiner::new(self, device)
    }
}

/// Reads a refiner config JSON file (as saved beside each refiner's weights), refusing
/// settings the network cannot run; errors name the file.
pub fn read_refiner_config(path: &std::path::Path) -> Result<RefinerConfig> {
    let config: RefinerConfig = crate::io::read_json(path, "refiner config")?;
    config
        .check()
        .map_err(|e| crate::Error::file(path, format!("not a usable refiner config: {e}")))?;
    Ok(config)
}
