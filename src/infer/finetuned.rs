//! A CenterNet **model set** (Aggregation §2.2 applied to CenterNet's landmark heads): runs
//! fine-tuned for one category each (`train --finetune-category N --init <universal.bpk>`)
//! kept side by side in one folder. The universal detector finds the garments; each detection
//! of a category that has a fine-tuned model takes its landmarks from that model's matching
//! detection (same category, box IoU ≥ 0.5); other categories keep the universal model's.

use std::path::{Path, PathBuf};

use image::RgbImage;

use super::detector::Detector;
use crate::codec::Detection;
use crate::codec::decode::iou;
use crate::error::{Error, Result};
use crate::garment::{NUM_CATEGORIES, category};

/// Box IoU from which a fine-tuned model's detection counts as the same garment.
pub const MATCH_IOU: f32 = 0.5;

/// The one field of a run's `train.json` the set needs (the training module, and its
/// config type, is behind the `train` feature).
#[derive(serde::Deserialize)]
struct RunCategory {
    #[serde(default)]
    finetune_category: Option<usize>,
}

/// Fine-tuned CenterNet models by category.
pub struct FineTunedSet {
    models: Vec<Option<(Detector, PathBuf)>>,
}

impl FineTunedSet {
    /// Loads every run folder inside `dir` whose `train.json` names a fine-tuning category
    /// (its weights: `model.bpk`, with their saved inference defaults). Two runs for one
    /// category, or none at all, are errors naming the folders.
    pub fn load(dir: &Path, device: &burn::tensor::Device) -> Result<Self> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::file(dir, format!("cannot read the model-set folder: {e}")))?;
        let mut runs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("train.json").is_file())
            .collect();
        runs.sort();
        let mut list = Vec::new();
        for run in runs {
            let cfg: RunCategory =
                crate::io::read_json(&run.join("train.json"), "training config")?;
            let Some(c) = cfg.finetune_category else {
                continue;
            };
            if category(c).is_none() {
                return Err(Error::file(
                    &run.join("train.json"),
                    format!("field `finetune_category`: {c} is not a category id 1..=13"),
                ));
            }
            let weights = run.join("model.bpk");
            list.push((c, Detector::from_weights(&weights, device)?, weights));
        }
        if list.is_empty() {
            return Err(Error::file(
                dir,
                "holds no fine-tuned run (a folder with a train.json whose `finetune_category` is set, and its model.bpk)",
            ));
        }
        Self::from_detectors(list)
    }

    /// Wraps detectors built in memory: `(category id, detector, where it came from)`.
    pub fn from_detectors(list: Vec<(usize, Detector, PathBuf)>) -> Result<Self> {
        let mut models: Vec<Option<(Detector, PathBuf)>> =
            (0..NUM_CATEGORIES).map(|_| None).collect();
        for (c, det, from) in list {
            let Some(slot) = models.get_mut(c.wrapping_sub(1)) else {
                return Err(Error::Invalid(format!(
                    "{}: category {c} is not 1..=13",
                    from.display()
                )));
            };
            if let Some((_, other)) = slot {
                return Err(Error::Invalid(format!(
                    "two fine-tuned models for category {c}: {} and {}",
                    other.display(),
                    from.display()
                )));
            }
            *slot = Some((det, from));
        }
        Ok(FineTunedSet { models })
    }

    /// Runs every fine-tuned detector in `dtype` (`infer --precision`; see
    /// [`Detector::set_float_dtype`]).
    pub fn set_float_dtype(&mut self, dtype: burn::tensor::FloatDType) {
        for (det, _) in self.models.iter_mut().flatten() {
            det.set_float_dtype(dtype);
        }
    }

    /// Category ids with a fine-tuned model.
    pub fn categories(&self) -> Vec<usize> {
        (1..=NUM_CATEGORIES)
            .filter(|&c| self.models[c - 1].is_some())
            .collect()
    }

    /// Gives each detection of a served category the landmarks of the fine-tuned model's best
    /// matching detection (each used once, highest score first); returns how many changed.
    pub fn apply(&self, image: &RgbImage, dets: &mut [Detection]) -> Result<usize> {
        let mut changed = 0;
        for c in self.categories() {
            let mut mine: Vec<usize> = (0..dets.len())
                .filter(|&i| dets[i].category_id == c)
                .collect();
            if mine.is_empty() {
                continue;
            }
            mine.sort_by(|&a, &b| dets[b].score.total_cmp(&dets[a].score));
            let (model, _) = self.models[c - 1].as_ref().expect("listed");
            let theirs: Vec<Detection> = model
                .detect(image)?
                .into_iter()
                .filter(|d| d.category_id == c)
                .collect();
            let mut used = vec![false; theirs.len()];
            for i in mine {
                let best = theirs
                    .iter()
                    .enumerate()
                    .filter(|(k, t)| !used[*k] && t.landmarks.len() == dets[i].landmarks.len())
                    .map(|(k, t)| (k, iou(&dets[i].bbox, &t.bbox)))
                    .filter(|(_, o)| *o >= MATCH_IOU)
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((k, _)) = best {
                    used[k] = true;
                    dets[i].landmarks = theirs[k].landmarks.clone();
                    changed += 1;
                }
            }
        }
        Ok(changed)
    }
}
