//! The top-down landmark network's shape: which CPN, which landmark layout, which input size,
//! which Gaussian widths; saved as JSON beside each model's weights, so a model-set folder is
//! self-describing.

use serde::{Deserialize, Serialize};

use super::net::Cpn;
use crate::codec::grouping::{Grouping, ModelTaxonomy};
use crate::codec::scheme::Scheme;
use crate::error::{Result, invalid};
use crate::model::resnet::ResNetConfig;
use burn::tensor::Device;

/// Output heatmap stride relative to the crop (C2's stride).
pub const CPN_STRIDE: f32 = 4.0;

/// The CPN variants: CPN's ResNet-50 (256-channel pyramid), ResNet-18, and a slim ResNet-18
/// (quarter width, 64-channel pyramid) for CPU demos and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CpnArch {
    #[serde(rename = "cpn-res50")]
    /// ResNet-50 trunk (CPN's).
    CpnRes50,
    #[serde(rename = "cpn-res18")]
    /// ResNet-18 trunk.
    CpnRes18,
    #[serde(rename = "cpn-res18-slim")]
    /// ResNet-18 at a quarter of the width (quick CPU runs).
    CpnRes18Slim,
}

impl CpnArch {
    /// Every architecture.
    pub const ALL: [CpnArch; 3] = [CpnArch::CpnRes50, CpnArch::CpnRes18, CpnArch::CpnRes18Slim];

    /// The name used by the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            CpnArch::CpnRes50 => "cpn-res50",
            CpnArch::CpnRes18 => "cpn-res18",
            CpnArch::CpnRes18Slim => "cpn-res18-slim",
        }
    }

    /// The ResNet trunk (its deconvolutions are not built).
    pub fn backbone(self) -> ResNetConfig {
        match self {
            CpnArch::CpnRes50 => ResNetConfig::resnet50(),
            CpnArch::CpnRes18 => ResNetConfig::resnet18(),
            CpnArch::CpnRes18Slim => ResNetConfig {
                planes: [16, 32, 64, 128],
                stem: 16,
                ..ResNetConfig::resnet18()
            },
        }
    }

    /// GlobalNet's channels (CPN: 256; RefineNet's bottlenecks use half inside).
    pub fn width(self) -> usize {
        match self {
            CpnArch::CpnRes18Slim => 64,
            _ => 256,
        }
    }
}

crate::named::impl_named!(CpnArch, "top-down architecture");

/// σ of OpenCV's Gaussian kernel of side `k` when σ is left to it (`0.3·((k−1)/2 − 1) + 0.8`):
/// CPN blurs its targets with `cv2.GaussianBlur(kernel, 0)` (chenyilun95/tf-cpn,
/// `models/COCO.res50.256x192.CPN/dataset.py`).
pub fn kernel_sigma(k: usize) -> f32 {
    0.3 * ((k as f32 - 1.0) * 0.5 - 1.0) + 0.8
}

/// CPN's target kernels for GlobalNet's levels C2..C5 at a 64-row heatmap (tf-cpn's
/// `config.py` and `network.py`, paired with the levels as coded there); the
/// refine target uses the smallest.
pub const CPN_KERNELS: [usize; 4] = [15, 11, 9, 7];

/// Everything needed to rebuild one top-down model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpnConfig {
    /// The architecture.
    pub arch: CpnArch,
    /// Its trunk's shape.
    pub backbone: ResNetConfig,
    /// GlobalNet's channels.
    pub width: usize,
    /// The landmark layout of the heatmaps (Aggregation: `agg81`); `none` (unused) when
    /// `taxonomy` is given.
    pub scheme: Scheme,
    /// The taxonomy and grouping of the heatmaps, when not one of DeepFashion2's schemes
    /// (absent from the JSON for those).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxonomy: Option<ModelTaxonomy>,
    /// Heatmaps: the scheme's group count.
    pub num_joints: usize,
    /// `Some(id)`: fine-tuned for that DeepFashion2 category (Aggregation §2.2); `None`: the
    /// universal model.
    pub category_id: Option<usize>,
    /// Crop `[height, width]` (CPN: 256×192 or 384×288).
    pub input: [usize; 2],
    /// The garment box is grown to the input's aspect ratio, then by this factor.
    pub box_scale: f32,
    /// σ of the Gaussian targets of GlobalNet's levels C2..C5, heatmap pixels.
    pub global_sigmas: [f32; 4],
    /// σ of RefineNet's target, heatmap pixels.
    pub refine_sigma: f32,
    /// Online hard keypoint mining: the share of each sample's labelled landmarks whose losses
    /// are kept (CPN: 8 of 17).
    pub ohkm: f32,
}

impl CpnConfig {
    /// CPN's defaults for `input`: the kernels 15/11/9/7 (CPN's at 64 heatmap rows), grown
    /// with taller heatmaps but never shrunk (on 8 fixture crops at 128×96, σ halved to the
    /// 32-row heatmap left 48 px of error after 150 steps, CPN's σ 4 px), box ×1.25, OHKM 8/17.
    pub fn new(arch: CpnArch, scheme: Scheme, input: [usize; 2]) -> Result<Self> {
        let grouping = Grouping::of_scheme(scheme)?;
        if !grouping.taxonomy().is_deepfashion2() {
            invalid!(
                "scheme {scheme}: the top-down models group DeepFashion2's landmarks (deepmark62, \
                 agg81, none), or another taxonomy's (CpnConfig::for_grouping)"
            );
        }
        Self::for_grouping(arch, &grouping, input)
    }

    /// [`CpnConfig::new`] with the heatmaps of `grouping` (any taxonomy).
    pub fn for_grouping(arch: CpnArch, grouping: &Grouping, input: [usize; 2]) -> Result<Self> {
        let df2_scheme = grouping
            .taxonomy()
            .is_deepfashion2()
            .then(|| grouping.name().parse::<Scheme>().ok())
            .flatten()
            .filter(|s| Grouping::of_scheme(*s).is_ok_and(|g| g == *grouping));
        let scale = (input[0] as f32 / CPN_STRIDE / 64.0).max(1.0);
        let cfg = CpnConfig {
            arch,
            backbone: arch.backbone(),
            width: arch.width(),
            scheme: df2_scheme.unwrap_or(Scheme::None),
            taxonomy: df2_scheme.is_none().then(|| ModelTaxonomy::of(grouping)),
            num_joints: grouping.num_groups(),
            category_id: None,
            input,
            box_scale: 1.25,
            global_sigmas: CPN_KERNELS.map(|k| kernel_sigma(k) * scale),
            refine_sigma: kernel_sigma(CPN_KERNELS[3]) * scale,
            ohkm: 8.0 / 17.0,
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// The same model fine-tuned for `category_id`.
    pub fn for_category(&self, category_id: Option<usize>) -> Result<Self> {
        let cfg = CpnConfig {
            category_id,
            ..self.clone()
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Output heatmap `[height, width]`.
    pub fn output(&self) -> [usize; 2] {
        [self.input[0] / 4, self.input[1] / 4]
    }

    /// The landmark-to-channel grouping of the heatmaps: the saved taxonomy's, or the
    /// DeepFashion2 scheme's.
    pub fn grouping(&self) -> Result<Grouping> {
        if let Some(t) = &self.taxonomy {
            return t.grouping();
        }
        let g = Grouping::of_scheme(self.scheme)?;
        if !g.taxonomy().is_deepfashion2() {
            invalid!(
                "scheme {}: the top-down models group DeepFashion2's landmarks (deepmark62, \
                 agg81, none)",
                self.scheme
            );
        }
        Ok(g)
    }

    /// Refuses settings the network cannot run.
    pub fn check(&self) -> Result<()> {
        let grouping = self.grouping()?;
        if grouping.num_groups() != self.num_joints {
            invalid!(
                "top-down model has {} heatmaps; scheme {} has {} landmark groups",
                self.num_joints,
                grouping.name(),
                grouping.num_groups()
            );
        }
        if let Some(c) = self.category_id
            && grouping.taxonomy().category(c).is_none()
        {
            invalid!(
                "top-down model fine-tuned for unknown category {c} (the taxonomy {} has {})",
                grouping.taxonomy().name,
                grouping.taxonomy().category_list()
            );
        }
        self.backbone.check()?;
        if self.width < 2 || !self.width.is_multiple_of(2) || self.width > 4096 {
            invalid!(
                "top-down pyramid width {} must be even, 2..=4096",
                self.width
            );
        }
        let [h, w] = self.input;
        if h == 0 || w == 0 || h % 32 != 0 || w % 32 != 0 || h > 2048 || w > 2048 {
            invalid!(
                "top-down input {h}x{w}: both sides must be positive multiples of 32 (at most 2048)"
            );
        }
        let positive = |v: f32| v > 0.0 && v.is_finite() && v < 1e4;
        if !(self.global_sigmas.iter().all(|&s| positive(s))
            && positive(self.refine_sigma)
            && positive(self.box_scale))
        {
            invalid!(
                "top-down sigmas {:?}, {} and box scale {} must be positive",
                self.global_sigmas,
                self.refine_sigma,
                self.box_scale
            );
        }
        if !(self.ohkm > 0.0 && self.ohkm <= 1.0) {
            invalid!("top-down OHKM share {} must be in (0, 1]", self.ohkm);
        }
        Ok(())
    }

    /// A model with random weights.
    pub fn init(&self, device: &Device) -> Cpn {
        Cpn::new(self, device)
    }
}

/// Reads a top-down model config JSON file, refusing settings the network cannot run; errors
/// name the file.
pub fn read_cpn_config(path: &std::path::Path) -> Result<CpnConfig> {
    let config: CpnConfig = crate::io::read_json(path, "top-down model config")?;
    config
        .check()
        .map_err(|e| crate::Error::file(path, format!("not a usable top-down config: {e}")))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_give_opencv_sigmas_and_scale_with_the_heatmap() {
        assert!((kernel_sigma(7) - 1.4).abs() < 1e-6);
        assert!((kernel_sigma(15) - 2.6).abs() < 1e-6);
        let c = CpnConfig::new(CpnArch::CpnRes50, Scheme::Agg81, [256, 192]).unwrap();
        assert_eq!(c.num_joints, 81);
        assert_eq!(c.output(), [64, 48]);
        assert!((c.global_sigmas[0] - 2.6).abs() < 1e-6 && (c.refine_sigma - 1.4).abs() < 1e-6);
        let big = CpnConfig::new(CpnArch::CpnRes50, Scheme::Agg81, [384, 288]).unwrap();
        assert!((big.refine_sigma - 2.1).abs() < 1e-5);
        let small = CpnConfig::new(CpnArch::CpnRes18Slim, Scheme::Agg81, [128, 96]).unwrap();
        assert_eq!(small.global_sigmas, c.global_sigmas);
        assert!(CpnConfig::new(CpnArch::CpnRes50, Scheme::Coco17, [256, 192]).is_err());
        assert!(c.for_category(Some(14)).is_err());
        assert!(CpnConfig::new(CpnArch::CpnRes50, Scheme::Agg81, [250, 192]).is_err());
    }
}
