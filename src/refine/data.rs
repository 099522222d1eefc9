//! Training samples for one category's refiner on Burn's data API: every ground-truth garment
//! of the category becomes a crop with an input pose — the detector's own prediction matched
//! to it (`predict`'s output, when given) or errors synthesized from its ground truth
//! ([`super::errors`]) — and PoseFix's target. Augmentation as PoseFix (scale ±0.3, rotation
//! ±40° with probability 0.6, mirroring 0.5), drawn from `(seed, epoch, index)`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::codec::{CropJitter, Target, encode_target, make_input, to_input};
use super::config::RefinerConfig;
use super::errors::{ErrorRates, synthesize};
use crate::codec::decode::iou;
use crate::data::deepfashion2::Sample;
use crate::error::{DataError, Result};
use crate::garment::Category;
use crate::infer::output::DetectionRecord;
use crate::io::Limits;

/// PoseFix's training augmentation and the share of detector predictions among input poses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RefineAugment {
    /// The crop's side is multiplied by `1 + U(−scale, scale)`.
    pub scale: f64,
    /// Rotation `U(−rotation, rotation)` degrees …
    pub rotation: f64,
    /// … applied with this probability.
    pub rotation_prob: f64,
    /// Probability of a horizontal flip.
    pub flip: f64,
    /// Crop centre shift `U(−shift, shift)` of the box's size (the detector's boxes are not
    /// exact at test time).
    pub shift: f64,
    /// Where a garment has a matched detector prediction, it is the input pose with this
    /// probability (otherwise errors are synthesized).
    pub prediction: f64,
}

impl Default for RefineAugment {
    fn default() -> Self {
        RefineAugment {
            scale: 0.3,
            rotation: 40.0,
            rotation_prob: 0.6,
            flip: 0.5,
            shift: 0.05,
            prediction: 0.5,
        }
    }
}

impl RefineAugment {
    /// No augmentation and no detector predictions: every crop is the box as it is.
    pub const NONE: RefineAugment = RefineAugment {
        scale: 0.0,
        rotation: 0.0,
        rotation_prob: 0.0,
        flip: 0.0,
        shift: 0.0,
        prediction: 0.0,
    };

    /// A crop's scale, rotation (with its probability), shift and mirroring drawn from `rng`.
    pub fn draw_jitter(&self, rng: &mut StdRng) -> CropJitter {
        let mut u = |r: f64| {
            if r > 0.0 {
                rng.random_range(-r..r)
            } else {
                0.0
            }
        };
        let jitter = CropJitter {
            scale: 1.0 + u(self.scale),
            rotation: u(self.rotation),
            flip: false,
            shift: [u(self.shift), u(self.shift)],
        };
        CropJitter {
            rotation: if rng.random::<f64>() < self.rotation_prob {
                jitter.rotation
            } else {
                0.0
            },
            flip: rng.random::<f64>() < self.flip,
            ..jitter
        }
    }
}

/// The augmentation generator of sample `index` in `epoch` of a run seeded `seed` (a pure
/// function of the three, so that loader workers and resumed runs draw the same crops).
pub fn sample_rng(seed: u64, epoch: u64, index: usize) -> StdRng {
    StdRng::seed_from_u64(
        seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (index as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9),
    )
}

/// One garment to learn from.
#[derive(Debug, Clone)]
struct Entry {
    sample: usize,
    item: usize,
    /// The matched prediction's landmarks (local order, image pixels, score).
    prediction: Option<Vec<[f32; 3]>>,
}

/// One prepared training sample (host memory).
#[derive(Debug, Clone)]
pub struct RefineItem {
    /// `(3 + J) × H × W`.
    pub input: Vec<f32>,
    /// The heatmap and coordinate targets.
    pub target: Target,
}

/// The garments of one category with their images.
pub struct RefineDataset {
    samples: Vec<Sample>,
    image_dir: PathBuf,
    limits: Limits,
    entries: Vec<Entry>,
    cat: &'static Category,
    cfg: RefinerConfig,
    augment: RefineAugment,
    rates: ErrorRates,
    seed: u64,
    epoch: AtomicU64,
}

/// The prediction of each image's garments matched to them: per `(image, item index)`, the
/// best-IoU prediction of the same category with IoU ≥ 0.5 (each used once, best score first).
fn match_predictions(
    taxonomy: &crate::garment::Taxonomy,
    samples: &[Sample],
    predictions: &[DetectionRecord],
) -> HashMap<(u64, usize), Vec<[f32; 3]>> {
    let mut by_image: HashMap<u64, Vec<&DetectionRecord>> = HashMap::new();
    for p in predictions {
        by_image.entry(p.image_id).or_default().push(p);
    }
    let mut out = HashMap::new();
    for s in samples {
        let Some(preds) = by_image.get_mut(&s.image_id) else {
            continue;
        };
        preds.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut used = vec![false; preds.len()];
        for (i, it) in s.items.iter().enumerate() {
            let gt = xyxy(it.bbox);
            let best = preds
                .iter()
                .enumerate()
                .filter(|(k, p)| !used[*k] && p.category_id == it.category_id)
                .map(|(k, p)| (k, iou(&gt, &xyxy(p.bbox))))
                .filter(|(_, o)| *o >= 0.5)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((k, _)) = best {
                used[k] = true;
                if let Some(pose) = preds[k].local_landmarks(taxonomy) {
                    out.insert((s.image_id, i), pose);
                }
            }
        }
    }
    out
}

fn xyxy(b: [f32; 4]) -> [f32; 4] {
    [b[0], b[1], b[0] + b[2], b[1] + b[3]]
}

impl RefineDataset {
    /// The garments of `cfg`'s category in `samples` (images in `image_dir`) with at least one
    /// labelled landmark, and their matched `predictions`.
    pub fn new(
        samples: Vec<Sample>,
        image_dir: &Path,
        predictions: &[DetectionRecord],
        cfg: RefinerConfig,
        augment: RefineAugment,
        rates: ErrorRates,
        seed: u64,
    ) -> Result<Self> {
        let cat = cfg.category()?;
        let matched = match_predictions(cfg.taxonomy()?, &samples, predictions);
        let mut entries = Vec::new();
        for (si, s) in samples.iter().enumerate() {
            for (ii, it) in s.items.iter().enumerate() {
                if it.category_id == cat.id && it.num_labelled() > 0 {
                    entries.push(Entry {
                        sample: si,
                        item: ii,
                        prediction: matched.get(&(s.image_id, ii)).cloned(),
                    });
                }
            }
        }
        Ok(RefineDataset {
            samples,
            image_dir: image_dir.to_path_buf(),
            limits: Limits::default(),
            entries,
            cat,
            cfg,
            augment,
            rates,
            seed,
            epoch: AtomicU64::new(0),
        })
    }

    /// Garments of the category.
    pub fn garments(&self) -> usize {
        self.entries.len()
    }

    /// Of those, with a matched detector prediction.
    pub fn with_predictions(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.prediction.is_some())
            .count()
    }

    /// Reads the images within `limits` (default: [`Limits::default`]).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Augmentation draws depend on the epoch: set it before each pass.
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// Prepares garment `index`: decode, draw the input pose and the crop, encode the target.
    pub fn prepare(&self, index: usize) -> std::result::Result<RefineItem, DataError> {
        let e = &self.entries[index];
        let s = &self.samples[e.sample];
        let item = &s.items[e.item];
        let image = s.open_image(&self.image_dir, &self.limits)?;
        let epoch = self.epoch.load(Ordering::Relaxed);
        let mut rng = sample_rng(self.seed, epoch, index);
        let a = &self.augment;
        let jitter = a.draw_jitter(&mut rng);
        let pose: Vec<[f32; 3]> = match &e.prediction {
            Some(p) if rng.random::<f64>() < a.prediction => {
                p.iter().map(|q| [q[0], q[1], 1.0]).collect()
            }
            _ => synthesize(&s.items, e.item, self.cat, &self.rates, &mut rng)
                .into_iter()
                .map(|(p, _)| p)
                .collect(),
        };
        let (input, m) = make_input(&image, item.bbox, &pose, self.cat, &self.cfg, jitter);
        let gt = &item.keypoints[self.cat.range()];
        let target = encode_target(&to_input(gt, self.cat, &m, jitter.flip), self.cfg.output());
        Ok(RefineItem { input, target })
    }
}

impl Dataset<RefineItem> for RefineDataset {
    fn get(&self, index: usize) -> std::result::Result<RefineItem, DatasetError> {
        self.prepare(index).map_err(DatasetError::new)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A batch of refiner inputs and targets.
#[derive(Debug, Clone)]
pub struct RefineBatch {
    /// `(B, 3 + J, H, W)`: image and input-pose channels.
    pub input: Tensor<4>,
    /// `(B, J, h·w)`.
    pub target: Tensor<3>,
    /// `(B, J, 2)`.
    pub xy: Tensor<3>,
    /// `(B, J)`.
    pub valid: Tensor<2>,
}

/// Stacks [`RefineItem`]s of one refiner (`cfg` gives the shapes).
#[derive(Debug, Clone)]
pub struct RefineBatcher {
    /// The refiner the batches are for.
    pub cfg: RefinerConfig,
}

impl Batcher<RefineItem, RefineBatch> for RefineBatcher {
    fn batch(&self, items: Vec<RefineItem>, device: &Device) -> RefineBatch {
        let b = items.len();
        let j = self.cfg.num_landmarks;
        let [h, w] = self.cfg.input;
        let [oh, ow] = self.cfg.output();
        let cat = |f: &dyn Fn(&RefineItem) -> &Vec<f32>| -> Vec<f32> {
            items.iter().flat_map(|i| f(i).iter().copied()).collect()
        };
        RefineBatch {
            input: Tensor::from_data(
                TensorData::new(cat(&|i| &i.input), [b, 3 + j, h, w]),
                device,
            ),
            target: Tensor::from_data(
                TensorData::new(cat(&|i| &i.target.dist), [b, j, oh * ow]),
                device,
            ),
            xy: Tensor::from_data(TensorData::new(cat(&|i| &i.target.xy), [b, j, 2]), device),
            valid: Tensor::from_data(TensorData::new(cat(&|i| &i.target.valid), [b, j]), device),
        }
    }
}
