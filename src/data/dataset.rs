//! Training samples on Burn's data API: [`Df2Dataset`] (a `burn::data::dataset::Dataset`)
//! decodes an image, augments it ([`super::augment`]) with a seed derived from
//! `(seed, epoch, index)` — so every epoch differs and every run repeats — normalises it as
//! CenterNet does and encodes the [`Targets`]; [`TrainBatcher`] stacks samples into tensors on
//! any device. Burn's `DataLoaderBuilder::num_workers` runs `get` in parallel; build the loader
//! from an `Arc<Df2Dataset>` to keep calling [`Df2Dataset::set_epoch`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::augment::{AugmentConfig, augment, color_aug};
use super::deepfashion2::{Sample, SkipReport, load_coco_in};
use crate::codec::STRIDE;
use crate::codec::grouping::Grouping;
use crate::codec::targets::{Targets, objects_from_output};
use crate::error::DataError;
use crate::garment::TaxonomyChoice;
use crate::io::Limits;
use crate::preprocess::{bgr_unit, normalize_hwc};

/// One prepared training sample (host memory).
#[derive(Debug, Clone)]
pub struct TrainItem {
    /// `3 × S × S`, BGR, normalised.
    pub input: Vec<f32>,
    /// CenterNet's training targets of the sample.
    pub targets: Targets,
    /// The image's id in the annotations.
    pub image_id: u64,
}

/// Objects per image kept in the targets: CenterNet's `max_objs` (`xingyizhou/CenterNet`,
/// `src/lib/datasets/dataset/coco_hp.py`).
pub const MAX_OBJS: usize = 32;

/// How samples become network inputs and targets.
#[derive(Debug, Clone)]
pub struct SampleConfig {
    /// Input size and CenterNet's augmentation (or none).
    pub augment: AugmentConfig,
    /// The landmark grouping of the model's head layout.
    pub grouping: Grouping,
    /// Centre-heatmap classes (13 for DeepFashion2).
    pub num_classes: usize,
    /// Objects per image kept in the targets (CenterNet: 32).
    pub max_objs: usize,
    /// Seed of the augmentation's random draws.
    pub seed: u64,
}

impl SampleConfig {
    /// DeepFashion2 samples for a model of `scheme` at `input_size`, with CenterNet's
    /// augmentation when `augment` is set, [`MAX_OBJS`] objects per image and seed 0.
    pub fn new(
        input_size: usize,
        scheme: crate::codec::Scheme,
        augment: bool,
    ) -> crate::Result<Self> {
        Ok(SampleConfig {
            augment: if augment {
                AugmentConfig::train(input_size)
            } else {
                AugmentConfig::plain(input_size)
            },
            grouping: Grouping::of_scheme(scheme)?,
            num_classes: scheme.layout().num_classes,
            max_objs: MAX_OBJS,
            seed: 0,
        })
    }
}

/// A COCO-style keypoints dataset (DeepFashion2's by default; the taxonomy is the grouping's,
/// and the file's categories must agree with it) with CenterNet augmentation and targets.
pub struct Df2Dataset {
    samples: Vec<Sample>,
    image_dir: PathBuf,
    cfg: SampleConfig,
    limits: Limits,
    epoch: AtomicU64,
}

impl Df2Dataset {
    /// Load `json` (images in `image_dir`). Every image header is read up front, so a missing or
    /// corrupt image is reported now (or skipped with `skip_bad`), not in the middle of training.
    /// Files over `limits` are refused (the annotations) or reported (an image).
    pub fn open(
        json: &Path,
        image_dir: &Path,
        cfg: SampleConfig,
        skip_bad: bool,
        limits: &Limits,
    ) -> Result<(Self, SkipReport), DataError> {
        Self::open_category(json, image_dir, cfg, skip_bad, limits, None)
    }

    /// [`Df2Dataset::open`] keeping, with `Some(id)`, only the garments of category `id` and the
    /// images that have one (per-category fine-tuning); only those images' headers are read.
    pub fn open_category(
        json: &Path,
        image_dir: &Path,
        cfg: SampleConfig,
        skip_bad: bool,
        limits: &Limits,
        category: Option<usize>,
    ) -> Result<(Self, SkipReport), DataError> {
        let taxonomy = cfg.grouping.taxonomy();
        let data = load_coco_in(json, &TaxonomyChoice::Given(taxonomy), skip_bad, limits)?;
        let (mut samples, mut report) = (data.samples, data.report);
        if let Some(id) = category {
            for s in &mut samples {
                s.items.retain(|i| i.category_id == id);
            }
            samples.retain(|s| !s.items.is_empty());
        }
        let mut kept = Vec::with_capacity(samples.len());
        for s in samples {
            let path = image_dir.join(&s.file_name);
            // The header only (bad and oversized images are reported now, not mid-training).
            // An image whose size differs from the annotations' would put every box and
            // landmark in the wrong place.
            let problem = match limits.image_size(&path) {
                Err(e) => Some((
                    "file_name",
                    format!("missing, unreadable or too large image: {e}"),
                )),
                Ok((w, h)) if (w, h) != (s.width, s.height) => Some((
                    "width",
                    format!(
                        "the image is {w}×{h} pixels, the annotations ({}) say {}×{}",
                        json.display(),
                        s.width,
                        s.height
                    ),
                )),
                Ok(_) => None,
            };
            match problem {
                None => kept.push(s),
                Some((field, message)) => {
                    let err = DataError {
                        file: path,
                        place: format!("image {}: ", s.image_id),
                        field: field.into(),
                        message,
                    };
                    if skip_bad {
                        report.skipped.push(err);
                        report.unusable_images += 1;
                    } else {
                        return Err(err);
                    }
                }
            }
        }
        Ok((
            Self {
                samples: kept,
                image_dir: image_dir.to_path_buf(),
                cfg,
                limits: *limits,
                epoch: AtomicU64::new(0),
            },
            report,
        ))
    }

    /// The taxonomy of the samples (the grouping's).
    pub fn taxonomy(&self) -> &'static crate::garment::Taxonomy {
        self.cfg.grouping.taxonomy()
    }

    /// The images and their garments, in the annotations' order.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Augmentation draws depend on the epoch: set it before each pass.
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// Prepare sample `index` (decode, augment, normalise, encode targets).
    pub fn prepare(&self, index: usize) -> Result<TrainItem, DataError> {
        let s = &self.samples[index];
        let img = s.open_image(&self.image_dir, &self.limits)?;
        let epoch = self.epoch.load(Ordering::Relaxed);
        let seed =
            mix(mix(self.cfg.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ index as u64);
        let aug = augment(
            self.cfg.grouping.taxonomy(),
            &img,
            &s.items,
            &self.cfg.augment,
            seed,
        );
        // HWC BGR in [0, 1], colour augmentation, then CenterNet normalisation to CHW.
        let n = self.cfg.augment.input_size;
        let mut hwc = bgr_unit(&aug.image);
        if let Some(j) = &aug.color {
            color_aug(&mut hwc, j);
        }
        let input = normalize_hwc(&hwc);
        // Boxes and landmarks on the output map as CenterNet's `MultiPoseDataset` computes them.
        let objects = objects_from_output(&aug.output, &self.cfg.grouping);
        let out = n / STRIDE;
        let targets = Targets::encode(
            &objects,
            self.cfg.num_classes,
            self.cfg.grouping.num_groups(),
            self.cfg.max_objs,
            [out, out],
        );
        Ok(TrainItem {
            input,
            targets,
            image_id: s.image_id,
        })
    }
}

/// SplitMix64 finaliser: decorrelates nearby seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Dataset<TrainItem> for Df2Dataset {
    /// A sample whose image fails to decode (headers were checked at open) is an error naming
    /// the file ([`DataError`] inside Burn's `DatasetError`).
    fn get(&self, index: usize) -> Result<TrainItem, DatasetError> {
        self.prepare(index).map_err(DatasetError::new)
    }

    fn len(&self) -> usize {
        self.samples.len()
    }
}

/// A batch of inputs and CenterNet targets.
///
/// Shapes for a batch of `B` images of size `S`, a stride-4 map `H × W`, `C` classes, `G`
/// landmark channels and `M` objects per image (CenterNet's `MultiPoseDataset` names).
#[derive(Debug, Clone)]
pub struct TrainBatch {
    /// The network input, `(B, 3, S, S)`, BGR, normalised.
    pub input: Tensor<4>,
    /// Centre heatmaps, `(B, C, H, W)`.
    pub hm: Tensor<4>,
    /// Landmark heatmaps, `(B, G, H, W)`.
    pub hm_hp: Tensor<4>,
    /// Box sizes, `(B, M, 2)`.
    pub wh: Tensor<3>,
    /// Centre sub-pixel offsets, `(B, M, 2)`.
    pub reg: Tensor<3>,
    /// Flat map index of each object's centre, `(B, M)`.
    pub ind: Tensor<2, Int>,
    /// 1 for real objects, `(B, M)`.
    pub reg_mask: Tensor<2>,
    /// Landmark offsets from the integer centre, `(B, M, 2G)`.
    pub hps: Tensor<3>,
    /// 1 where a landmark is visible, `(B, M, 2G)`.
    pub hps_mask: Tensor<3>,
    /// Landmark sub-pixel offsets, `(B, M·G, 2)`.
    pub hp_offset: Tensor<3>,
    /// Flat map index of each landmark, `(B, M·G)`.
    pub hp_ind: Tensor<2, Int>,
    /// 1 for landmarks with a target, `(B, M·G)`.
    pub hp_mask: Tensor<2>,
}

/// Stacks [`TrainItem`]s into a [`TrainBatch`] on the requested device.
#[derive(Debug, Clone, Default)]
pub struct TrainBatcher;

impl Batcher<TrainItem, TrainBatch> for TrainBatcher {
    fn batch(&self, items: Vec<TrainItem>, device: &Device) -> TrainBatch {
        let b = items.len();
        let t0 = &items[0].targets;
        let [h, w] = t0.size;
        let (c, g, m) = (t0.num_classes, t0.num_groups, t0.max_objs);
        let side = (items[0].input.len() / 3).isqrt();
        let cat_f = |f: &dyn Fn(&TrainItem) -> &Vec<f32>| -> Vec<f32> {
            items.iter().flat_map(|i| f(i).iter().copied()).collect()
        };
        let cat_i = |f: &dyn Fn(&TrainItem) -> &Vec<i64>| -> Vec<i64> {
            items.iter().flat_map(|i| f(i).iter().copied()).collect()
        };
        let f4 = |v: Vec<f32>, s: [usize; 4]| Tensor::<4>::from_data(TensorData::new(v, s), device);
        let f3 = |v: Vec<f32>, s: [usize; 3]| Tensor::<3>::from_data(TensorData::new(v, s), device);
        let f2 = |v: Vec<f32>, s: [usize; 2]| Tensor::<2>::from_data(TensorData::new(v, s), device);
        let i2 =
            |v: Vec<i64>, s: [usize; 2]| Tensor::<2, Int>::from_data(TensorData::new(v, s), device);
        TrainBatch {
            input: f4(cat_f(&|i| &i.input), [b, 3, side, side]),
            hm: f4(cat_f(&|i| &i.targets.hm), [b, c, h, w]),
            hm_hp: f4(cat_f(&|i| &i.targets.hm_hp), [b, g, h, w]),
            wh: f3(cat_f(&|i| &i.targets.wh), [b, m, 2]),
            reg: f3(cat_f(&|i| &i.targets.reg), [b, m, 2]),
            ind: i2(cat_i(&|i| &i.targets.ind), [b, m]),
            reg_mask: f2(cat_f(&|i| &i.targets.reg_mask), [b, m]),
            hps: f3(cat_f(&|i| &i.targets.hps), [b, m, 2 * g]),
            hps_mask: f3(cat_f(&|i| &i.targets.hps_mask), [b, m, 2 * g]),
            hp_offset: f3(cat_f(&|i| &i.targets.hp_offset), [b, m * g, 2]),
            hp_ind: i2(cat_i(&|i| &i.targets.hp_ind), [b, m * g]),
            hp_mask: f2(cat_f(&|i| &i.targets.hp_mask), [b, m * g]),
        }
    }
}

/// Splits each batch into `shards` consecutive parts for data-parallel training: part `i` is
/// stacked on `devices[i % devices.len()]` (in the loader's worker threads, so the copies to
/// the devices overlap the step). Part sizes differ by at most one; empty parts (a batch
/// smaller than `shards`) are left out. Each part keeps its shard index.
#[derive(Debug, Clone)]
pub struct ShardBatcher {
    /// The devices the parts go to, in turn.
    pub devices: Vec<Device>,
    /// Parts per batch.
    pub shards: usize,
}

/// One part of a batch: which shard it is, the device it was stacked on (as given, with its
/// autodiff context: the data tensors themselves are untracked) and its images.
#[derive(Debug, Clone)]
pub struct Shard {
    /// The part's index within its batch.
    pub index: usize,
    /// The device the part lives on.
    pub device: Device,
    /// The part itself.
    pub batch: TrainBatch,
}

/// `n` items in `shards` consecutive ranges whose sizes differ by at most one.
pub fn shard_ranges(n: usize, shards: usize) -> Vec<std::ops::Range<usize>> {
    let shards = shards.max(1);
    let (base, extra) = (n / shards, n % shards);
    let mut start = 0;
    (0..shards)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

impl Batcher<TrainItem, Vec<Shard>> for ShardBatcher {
    fn batch(&self, mut items: Vec<TrainItem>, _device: &Device) -> Vec<Shard> {
        let ranges = shard_ranges(items.len(), self.shards);
        let mut parts = Vec::with_capacity(ranges.len());
        // Split from the back so each part is moved out, not copied.
        for (index, r) in ranges.into_iter().enumerate().rev() {
            let part = items.split_off(r.start);
            if !part.is_empty() {
                let device = &self.devices[index % self.devices.len()];
                parts.push(Shard {
                    index,
                    device: device.clone(),
                    batch: TrainBatcher.batch(part, device),
                });
            }
        }
        parts.reverse();
        parts
    }
}
