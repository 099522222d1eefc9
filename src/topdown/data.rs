//! Training samples for a top-down model on Burn's data API: every ground-truth garment (of
//! one category when fine-tuning) becomes a crop of its box with CPN's targets in the group
//! layout. Augmentation as the refiner's (scale, rotation, shift, mirroring), drawn from
//! `(seed, epoch, index)`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Tensor, TensorData};

use super::codec::{CpnTarget, encode};
use super::config::CpnConfig;
use super::loss::CpnTargets;
use crate::codec::grouping::Grouping;
use crate::data::deepfashion2::Sample;
use crate::error::{DataError, Result};
use crate::io::Limits;
use crate::refine::codec::{crop_pixels, crop_transform};
use crate::refine::data::{RefineAugment, sample_rng};

/// One prepared training sample (host memory).
#[derive(Debug, Clone)]
pub struct TopDownItem {
    /// `3 × H × W`.
    pub input: Vec<f32>,
    /// GlobalNet's and RefineNet's targets.
    pub target: CpnTarget,
}

/// The garments to learn from, with their images.
pub struct TopDownDataset {
    samples: Vec<Sample>,
    image_dir: PathBuf,
    limits: Limits,
    /// `(sample, item)`.
    entries: Vec<(usize, usize)>,
    cfg: CpnConfig,
    grouping: Grouping,
    augment: RefineAugment,
    seed: u64,
    epoch: AtomicU64,
}

impl TopDownDataset {
    /// The garments of `samples` (images in `image_dir`) with at least one labelled landmark:
    /// all of them for a universal model, those of `cfg.category_id` for a fine-tuned one.
    pub fn new(
        samples: Vec<Sample>,
        image_dir: &Path,
        cfg: CpnConfig,
        augment: RefineAugment,
        seed: u64,
    ) -> Result<Self> {
        let grouping = cfg.grouping()?;
        let mut entries = Vec::new();
        for (si, s) in samples.iter().enumerate() {
            for (ii, it) in s.items.iter().enumerate() {
                let wanted = cfg.category_id.is_none_or(|c| c == it.category_id);
                if wanted
                    && grouping.taxonomy().category(it.category_id).is_some()
                    && it.num_labelled() > 0
                {
                    entries.push((si, ii));
                }
            }
        }
        Ok(TopDownDataset {
            samples,
            image_dir: image_dir.to_path_buf(),
            limits: Limits::default(),
            entries,
            cfg,
            grouping,
            augment,
            seed,
            epoch: AtomicU64::new(0),
        })
    }

    /// Garments to learn from.
    pub fn garments(&self) -> usize {
        self.entries.len()
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

    /// Prepares garment `index`: decode the image, draw the crop, encode the targets.
    pub fn prepare(&self, index: usize) -> std::result::Result<TopDownItem, DataError> {
        let (si, ii) = self.entries[index];
        let s = &self.samples[si];
        let item = &s.items[ii];
        let cat = self
            .grouping
            .taxonomy()
            .category(item.category_id)
            .expect("checked when listed");
        let image = s.open_image(&self.image_dir, &self.limits)?;
        let mut rng = sample_rng(self.seed, self.epoch.load(Ordering::Relaxed), index);
        let jitter = self.augment.draw_jitter(&mut rng);
        let m = crop_transform(item.bbox, self.cfg.input, self.cfg.box_scale, jitter);
        let target = encode(
            &item.keypoints[cat.range()],
            cat,
            &self.grouping,
            &m,
            jitter.flip,
            &self.cfg,
        );
        Ok(TopDownItem {
            input: crop_pixels(&image, &m, self.cfg.input),
            target,
        })
    }
}

impl Dataset<TopDownItem> for TopDownDataset {
    fn get(&self, index: usize) -> std::result::Result<TopDownItem, DatasetError> {
        self.prepare(index).map_err(DatasetError::new)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A batch of crops and their targets.
#[derive(Debug, Clone)]
pub struct TopDownBatch {
    /// `(B, 3, H, W)` crops.
    pub input: Tensor<4>,
    /// Their targets on the device.
    pub targets: CpnTargets,
}

/// Stacks [`TopDownItem`]s of one model (`cfg` gives the shapes).
#[derive(Debug, Clone)]
pub struct TopDownBatcher {
    /// The model the batches are for.
    pub cfg: CpnConfig,
}

impl Batcher<TopDownItem, TopDownBatch> for TopDownBatcher {
    fn batch(&self, items: Vec<TopDownItem>, device: &Device) -> TopDownBatch {
        let b = items.len();
        let j = self.cfg.num_joints;
        let [h, w] = self.cfg.input;
        let [oh, ow] = self.cfg.output();
        let cat = |f: &dyn Fn(&TopDownItem) -> &Vec<f32>| -> Vec<f32> {
            items.iter().flat_map(|i| f(i).iter().copied()).collect()
        };
        let maps = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [b, j, oh, ow]), device);
        let labelled_host = cat(&|i| &i.target.labelled);
        TopDownBatch {
            input: Tensor::from_data(TensorData::new(cat(&|i| &i.input), [b, 3, h, w]), device),
            targets: CpnTargets {
                global: (0..4)
                    .map(|l| maps(cat(&|i| &i.target.global[l])))
                    .collect(),
                refine: maps(cat(&|i| &i.target.refine)),
                visible: Tensor::from_data(
                    TensorData::new(cat(&|i| &i.target.visible), [b, j]),
                    device,
                ),
                labelled: Tensor::from_data(TensorData::new(labelled_host.clone(), [b, j]), device),
                labelled_host,
            },
        }
    }
}
