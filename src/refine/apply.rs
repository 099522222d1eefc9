//! A folder of per-category refiners ([`RefinerSet`]) applied to detections: each detection
//! whose category has a refiner is cropped from its box, its landmarks rendered as the input
//! pose, and the refiner's integral coordinates replace its landmark positions (averaged with
//! the mirrored crop's, PoseFix's flip test). Scores are kept (PoseFix: output score = input
//! score).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::codec::{CropJitter, decode_integral, make_input, to_image};
use super::config::RefinerConfig;
use super::net::Refiner;
use crate::checkpoint::load_listed;
use crate::codec::Detection;
use crate::error::{Error, Result};
use crate::garment::{DEEPFASHION2, Taxonomy};
use crate::infer::output::{DetectionRecord, update_landmarks};
use crate::io::{Limits, read_json};
use crate::model::cast::cast_module;

/// The index of a refiner folder (`refiners.json`): what was trained, on what, with which
/// settings (kept as JSON so that a folder explains itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefinerIndex {
    /// The trained refiners, by category.
    pub refiners: Vec<RefinerEntry>,
    /// The training settings (`RefinerTrainConfig` as JSON; informational).
    #[serde(default)]
    pub train: serde_json::Value,
}

/// One trained refiner in a folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefinerEntry {
    /// 1-based category id.
    pub category_id: usize,
    /// Weights file name inside the folder (config and checksums beside it).
    pub weights: String,
    /// Garments it was trained on, and how many had a matched detector prediction.
    pub garments: usize,
    /// Of `garments`, those with a matched detector prediction.
    pub with_predictions: usize,
    /// Mean loss (cross-entropy + L1) of the last epoch.
    pub final_loss: f32,
}

/// The index file of a refiner folder.
pub fn index_path(dir: &Path) -> PathBuf {
    dir.join("refiners.json")
}

/// Refiners per category, ready to refine detections.
pub struct RefinerSet {
    /// One slot per category of the taxonomy, by class.
    refiners: Vec<Option<(Refiner, RefinerConfig)>>,
    taxonomy: &'static Taxonomy,
    device: Device,
    /// Average with the mirrored crop (PoseFix's flip test).
    pub flip: bool,
    /// Detections scoring below are left as they are (their landmarks barely move AP and each
    /// costs a forward pass).
    pub min_score: f32,
    /// Crops per forward pass.
    pub batch: usize,
    /// The float type the refiners compute in ([`set_float_dtype`](Self::set_float_dtype)).
    dtype: FloatDType,
}

impl RefinerSet {
    /// Loads every refiner listed in `dir/refiners.json` (weights verified against their
    /// checksums).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let index: RefinerIndex = read_json(&index_path(dir), "refiner index")?;
        let list = load_listed(
            dir,
            &index_path(dir),
            "refiners",
            index
                .refiners
                .iter()
                .map(|e| (e.category_id, e.weights.clone())),
            "refiner config",
            |c: &RefinerConfig| {
                c.check()?;
                Ok(c.init(device))
            },
            |c| c.category_id,
            |k| format!("category {k}"),
        )?;
        Self::from_refiners(list, device)
    }

    /// Wraps refiners built in memory (the last one wins where two refine one category), with
    /// the defaults: flip test on, detections from score 0.05, 16 crops per pass. Every
    /// refiner must be of one taxonomy.
    pub fn from_refiners(list: Vec<(Refiner, RefinerConfig)>, device: &Device) -> Result<Self> {
        let taxonomy = match list.first() {
            Some((_, c)) => c.taxonomy()?,
            None => &DEEPFASHION2,
        };
        let mut refiners: Vec<Option<(Refiner, RefinerConfig)>> =
            (0..taxonomy.num_categories()).map(|_| None).collect();
        for (m, c) in list {
            c.check()?;
            if c.taxonomy()? != taxonomy {
                return Err(crate::Error::Invalid(format!(
                    "refiners of two taxonomies in one set: {} and {}",
                    taxonomy.name,
                    c.taxonomy()?.name
                )));
            }
            let i = taxonomy.class_of(c.category_id).expect("checked");
            refiners[i] = Some((m, c));
        }
        Ok(RefinerSet {
            refiners,
            taxonomy,
            device: device.clone(),
            flip: true,
            min_score: 0.05,
            batch: 16,
            dtype: FloatDType::F32,
        })
    }

    /// Runs every refiner in `dtype` (`infer --precision`): weights cast, crops cast on the way
    /// in, heatmaps read back as f32.
    pub fn set_float_dtype(&mut self, dtype: FloatDType) {
        for (m, _) in self.refiners.iter_mut().flatten() {
            *m = cast_module(m.clone(), dtype);
        }
        self.dtype = dtype;
    }

    /// The taxonomy of the refined categories.
    pub fn taxonomy(&self) -> &'static Taxonomy {
        self.taxonomy
    }

    /// Category ids with a refiner.
    pub fn categories(&self) -> Vec<usize> {
        self.taxonomy
            .categories
            .iter()
            .zip(&self.refiners)
            .filter(|(_, r)| r.is_some())
            .map(|(c, _)| c.id)
            .collect()
    }

    /// Refines the landmarks of `dets` (image pixels) found in `image`.
    pub fn refine(&self, image: &RgbImage, dets: &mut [Detection]) -> Result<()> {
        for cat_id in self.categories() {
            let class = self.taxonomy.class_of(cat_id).expect("listed");
            let (model, cfg) = self.refiners[class].as_ref().expect("listed");
            let cat = self.taxonomy.category(cat_id).expect("checked at load");
            let chosen: Vec<usize> = (0..dets.len())
                .filter(|&i| {
                    let d = &dets[i];
                    d.category_id == cat_id
                        && d.score >= self.min_score
                        && d.landmarks.len() == cat.num_landmarks
                })
                .collect();
            let flips: &[bool] = if self.flip { &[false, true] } else { &[false] };
            for chunk in chosen.chunks(self.batch.max(1)) {
                let mut input = Vec::new();
                let mut crops = Vec::new();
                for &i in chunk {
                    let d = &dets[i];
                    for &flip in flips {
                        let jitter = CropJitter {
                            flip,
                            ..CropJitter::NONE
                        };
                        let (x, m) =
                            make_input(image, d.bbox_xywh(), &d.landmarks, cat, cfg, jitter);
                        input.extend(x);
                        crops.push((i, m, flip));
                    }
                }
                let [h, w] = cfg.input;
                let j = cfg.num_landmarks;
                let x = Tensor::<4>::from_data(
                    TensorData::new(input, [crops.len(), 3 + j, h, w]),
                    &self.device,
                )
                .cast(self.dtype);
                let logits = model
                    .forward(x)
                    .cast(FloatDType::F32)
                    .into_data()
                    .try_into_vec::<f32>()
                    .map_err(|e| {
                        Error::Backend(format!("reading the refiner's heatmaps: {e:?}"))
                    })?;
                let per = j * cfg.output()[0] * cfg.output()[1];
                let mut sums = vec![vec![[0.0f32; 2]; j]; chunk.len()];
                for (k, (_, m, flip)) in crops.iter().enumerate() {
                    let pts = decode_integral(&logits[k * per..(k + 1) * per], cfg.output());
                    for (s, p) in sums[k / flips.len()]
                        .iter_mut()
                        .zip(to_image(&pts, cat, m, *flip))
                    {
                        s[0] += p[0] / flips.len() as f32;
                        s[1] += p[1] / flips.len() as f32;
                    }
                }
                for (&i, s) in chunk.iter().zip(sums) {
                    for (l, p) in dets[i].landmarks.iter_mut().zip(s) {
                        if p[0].is_finite() && p[1].is_finite() {
                            l[0] = p[0];
                            l[1] = p[1];
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Refines a list of detections (any method's, e.g. `predict`'s output) of the images of
/// `samples` (files in `images`, read within `limits`): records of images not in `samples` are
/// refused. Returns the records in their order with refined landmarks.
pub fn refine_records(
    set: &RefinerSet,
    samples: &[crate::data::deepfashion2::Sample],
    images: &Path,
    limits: &Limits,
    records: &[DetectionRecord],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<DetectionRecord>> {
    update_landmarks(
        set.taxonomy,
        samples,
        images,
        limits,
        records,
        progress,
        &mut |image, dets| set.refine(image, dets),
    )
}
