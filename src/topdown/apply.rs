//! A **model set**: a folder of top-down models — a universal one and up to 13 fine-tuned for
//! one category each (Aggregation §2.2) — listed in `topdown.json`. Each detection is served
//! by its category's model, or the universal one where its category has none. The model
//! estimates the garment's landmarks on the crop of its box (averaged with the mirrored crop),
//! which replace CenterNet's or are averaged with them.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::codec::{decode_heatmaps, to_category};
use super::config::CpnConfig;
use super::net::Cpn;
use crate::checkpoint::load_listed;
use crate::codec::Detection;
use crate::codec::grouping::Grouping;
use crate::error::{Error, Result};
use crate::garment::{DEEPFASHION2, Taxonomy};
use crate::io::read_json;
use crate::model::cast::cast_module;
use crate::refine::codec::{CropJitter, crop_pixels, crop_transform};

/// The index of a model-set folder (`topdown.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSetIndex {
    /// The trained models: the universal one and the fine-tuned ones.
    pub models: Vec<ModelEntry>,
    /// The training settings (`TopDownTrainConfig` as JSON; informational).
    #[serde(default)]
    pub train: serde_json::Value,
}

/// One model of a set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// `None`: the universal model; `Some(id)`: fine-tuned for category `id`.
    pub category_id: Option<usize>,
    /// Weights file inside the folder (config and checksums beside it).
    pub weights: String,
    /// Garments it was trained on.
    pub garments: usize,
    /// Mean loss of the last epoch.
    pub final_loss: f32,
    /// The weights it started from (fine-tuning), if any.
    #[serde(default)]
    pub init: Option<String>,
}

/// The index file of a model-set folder.
pub fn index_path(dir: &Path) -> PathBuf {
    dir.join("topdown.json")
}

/// Which model serves a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The universal model (no fine-tuned one for the category).
    Universal,
    /// The category's fine-tuned model.
    FineTuned,
}

/// What becomes of the detector's own landmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Combine {
    /// The top-down landmarks replace them.
    #[default]
    Replace,
    /// Positions and scores are the mean of both.
    Average,
}

struct Loaded {
    model: Cpn,
    cfg: CpnConfig,
    grouping: Grouping,
}

/// Top-down models by category, ready to estimate landmarks.
pub struct TopDownSet {
    taxonomy: &'static Taxonomy,
    universal: Option<Loaded>,
    /// One slot per category of the taxonomy, by class.
    fine_tuned: Vec<Option<Loaded>>,
    device: Device,
    /// What becomes of the detector's own landmarks.
    pub combine: Combine,
    /// Average with the mirrored crop.
    pub flip: bool,
    /// Detections scoring below are left as they are.
    pub min_score: f32,
    /// Crops per forward pass.
    pub batch: usize,
    /// The float type the networks compute in ([`set_float_dtype`](Self::set_float_dtype)).
    dtype: FloatDType,
}

impl TopDownSet {
    /// Loads every model listed in `dir/topdown.json` (weights verified against their
    /// checksums; a model's config must name the category the index lists it for).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let index: ModelSetIndex = read_json(&index_path(dir), "top-down model set index")?;
        let list = load_listed(
            dir,
            &index_path(dir),
            "models",
            index
                .models
                .iter()
                .map(|e| (e.category_id, e.weights.clone())),
            "top-down model config",
            |c: &CpnConfig| {
                c.check()?;
                Ok(c.init(device))
            },
            |c| c.category_id,
            |k| served_name(*k),
        )?;
        Self::from_models(list, device)
    }

    /// Wraps models built in memory (the last one wins where two serve the same category),
    /// with the defaults: replace, flip test on, detections from score 0.05 (as the refiners:
    /// lower ones barely move AP and each costs two crops), 16 crops per pass.
    pub fn from_models(list: Vec<(Cpn, CpnConfig)>, device: &Device) -> Result<Self> {
        let taxonomy = match list.first() {
            Some((_, c)) => c.grouping()?.taxonomy(),
            None => &DEEPFASHION2,
        };
        let mut set = TopDownSet {
            taxonomy,
            universal: None,
            fine_tuned: (0..taxonomy.num_categories()).map(|_| None).collect(),
            device: device.clone(),
            combine: Combine::Replace,
            flip: true,
            min_score: 0.05,
            batch: 16,
            dtype: FloatDType::F32,
        };
        for (model, cfg) in list {
            cfg.check()?;
            let grouping = cfg.grouping()?;
            if grouping.taxonomy() != taxonomy {
                return Err(Error::Invalid(format!(
                    "top-down models of two taxonomies in one set: {} and {}",
                    taxonomy.name,
                    grouping.taxonomy().name
                )));
            }
            let loaded = Loaded {
                grouping,
                model,
                cfg,
            };
            match loaded.cfg.category_id {
                None => set.universal = Some(loaded),
                Some(c) => {
                    let class = taxonomy.class_of(c).expect("checked");
                    set.fine_tuned[class] = Some(loaded)
                }
            }
        }
        Ok(set)
    }

    /// Forgets the fine-tuned models (the "before fine-tuning" numbers); an error, changing
    /// nothing, when the set has no universal model.
    pub fn retain_universal(&mut self) -> Result<()> {
        if self.universal.is_none() {
            return Err(Error::Invalid(
                "the model set has no universal model".into(),
            ));
        }
        self.fine_tuned.iter_mut().for_each(|m| *m = None);
        Ok(())
    }

    /// Runs every model in `dtype` (`infer --precision`): weights cast, crops cast on the way
    /// in, heatmaps read back as f32.
    pub fn set_float_dtype(&mut self, dtype: FloatDType) {
        let models = self
            .fine_tuned
            .iter_mut()
            .chain(std::iter::once(&mut self.universal));
        for m in models.flatten() {
            m.model = cast_module(m.model.clone(), dtype);
        }
        self.dtype = dtype;
    }

    /// The taxonomy of the set's models.
    pub fn taxonomy(&self) -> &'static Taxonomy {
        self.taxonomy
    }

    /// Which model serves category `id` (`None`: no model does).
    pub fn served(&self, id: usize) -> Option<Served> {
        let class = self.taxonomy.class_of(id);
        match (class.and_then(|c| self.fine_tuned.get(c)), &self.universal) {
            (Some(Some(_)), _) => Some(Served::FineTuned),
            (Some(None), Some(_)) => Some(Served::Universal),
            _ => None,
        }
    }

    fn model_for(&self, id: usize) -> Option<&Loaded> {
        match self.served(id)? {
            Served::FineTuned => self.fine_tuned[self.taxonomy.class_of(id)?].as_ref(),
            Served::Universal => self.universal.as_ref(),
        }
    }

    /// The landmarks of garments `(category id, box [x, y, w, h])` in `image`: each garment's
    /// category's landmarks in local order, image pixels, third value the heatmap peak (`None`
    /// for a category no model serves).
    pub fn estimate(
        &self,
        image: &RgbImage,
        garments: &[(usize, [f32; 4])],
    ) -> Result<Vec<Option<Vec<[f32; 3]>>>> {
        let mut out: Vec<Option<Vec<[f32; 3]>>> = vec![None; garments.len()];
        let flips: &[bool] = if self.flip { &[false, true] } else { &[false] };
        for cat in self.taxonomy.categories {
            let id = cat.id;
            let Some(m) = self.model_for(id) else {
                continue;
            };
            let chosen: Vec<usize> = (0..garments.len())
                .filter(|&i| garments[i].0 == id)
                .collect();
            for chunk in chosen.chunks(self.batch.max(1)) {
                let mut input = Vec::new();
                let mut crops = Vec::new();
                for &i in chunk {
                    for &flip in flips {
                        let jitter = CropJitter {
                            flip,
                            ..CropJitter::NONE
                        };
                        let t = crop_transform(garments[i].1, m.cfg.input, m.cfg.box_scale, jitter);
                        input.extend(crop_pixels(image, &t, m.cfg.input));
                        crops.push((t, flip));
                    }
                }
                let [h, w] = m.cfg.input;
                let x = Tensor::<4>::from_data(
                    TensorData::new(input, [crops.len(), 3, h, w]),
                    &self.device,
                )
                .cast(self.dtype);
                let maps = m
                    .model
                    .heatmaps(x)
                    .cast(FloatDType::F32)
                    .into_data()
                    .try_into_vec::<f32>()
                    .map_err(|e| Error::Backend(format!("reading the top-down heatmaps: {e:?}")))?;
                let [oh, ow] = m.cfg.output();
                let per = m.cfg.num_joints * oh * ow;
                let n = flips.len() as f32;
                for (k, &i) in chunk.iter().enumerate() {
                    let mut sum = vec![[0.0f32; 3]; cat.num_landmarks];
                    for f in 0..flips.len() {
                        let c = k * flips.len() + f;
                        let (t, flip) = &crops[c];
                        let peaks = decode_heatmaps(&maps[c * per..(c + 1) * per], [oh, ow]);
                        for (s, p) in
                            sum.iter_mut()
                                .zip(to_category(&peaks, cat, &m.grouping, t, *flip))
                        {
                            for d in 0..3 {
                                s[d] += p[d] / n;
                            }
                        }
                    }
                    out[i] = Some(sum);
                }
            }
        }
        Ok(out)
    }

    /// Replaces (or averages with) the landmarks of `dets` (image pixels) found in `image`;
    /// detections below `min_score`, of a category no model serves, or whose estimate is not
    /// finite keep theirs.
    pub fn apply(&self, image: &RgbImage, dets: &mut [Detection]) -> Result<()> {
        let picked: Vec<usize> = (0..dets.len())
            .filter(|&i| dets[i].score >= self.min_score)
            .collect();
        let garments: Vec<(usize, [f32; 4])> = picked
            .iter()
            .map(|&i| (dets[i].category_id, dets[i].bbox_xywh()))
            .collect();
        let estimates = self.estimate(image, &garments)?;
        for (&i, est) in picked.iter().zip(estimates) {
            let Some(est) = est else { continue };
            let d = &mut dets[i];
            if d.landmarks.len() != est.len() {
                continue;
            }
            for (l, p) in d.landmarks.iter_mut().zip(est) {
                if !p.iter().all(|v| v.is_finite()) {
                    continue;
                }
                *l = match self.combine {
                    Combine::Replace => p,
                    Combine::Average => [
                        (l[0] + p[0]) / 2.0,
                        (l[1] + p[1]) / 2.0,
                        (l[2] + p[2]) / 2.0,
                    ],
                };
            }
        }
        Ok(())
    }
}

fn served_name(c: Option<usize>) -> String {
    match c {
        None => "the universal model".into(),
        Some(c) => format!("category {c}"),
    }
}
