//! Detections as challenge results (bbox and keypoints JSON, the landmarks in the taxonomy's
//! global layout: DeepFashion2's 294 by default) and as drawings.

use serde::{Deserialize, Serialize};

use std::path::Path;

use crate::attributes::apply::AttributeGuess;
use crate::codec::Detection;
use crate::error::{Error, Result};
use crate::garment::Taxonomy;
use crate::io::Limits;

/// A bbox result (`evaluation.md`: `{image_id, category_id, bbox: [x, y, w, h], score}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BboxResult {
    /// The image's id in the annotations (or the id `infer` gave the file).
    pub image_id: u64,
    /// Category id (DeepFashion2: 1–13).
    pub category_id: usize,
    /// `[x, y, w, h]` in image pixels.
    pub bbox: [f32; 4],
    /// The detection's score.
    pub score: f32,
    /// Attribute predictions (absent without an attribute model).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AttributeGuess>,
}

/// A landmark result: the global layout's `x, y, v` triplets (294 for DeepFashion2), the
/// category's slice filled (`v` = 1), zeros elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeypointResult {
    /// The image's id.
    pub image_id: u64,
    /// Category id (DeepFashion2: 1–13).
    pub category_id: usize,
    /// The global layout's `[x, y, v]` (294 for DeepFashion2), flattened.
    pub keypoints: Vec<f32>,
    /// The detection's score.
    pub score: f32,
    /// Attribute predictions (absent without an attribute model).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AttributeGuess>,
}

/// The challenge results of one image's detections, landmarks in `taxonomy`'s global layout.
pub fn results(
    image_id: u64,
    dets: &[Detection],
    taxonomy: &crate::garment::Taxonomy,
) -> (Vec<BboxResult>, Vec<KeypointResult>) {
    let boxes = dets
        .iter()
        .map(|d| BboxResult {
            image_id,
            category_id: d.category_id,
            bbox: d.bbox_xywh(),
            score: d.score,
            attributes: d.attributes.clone(),
        })
        .collect();
    let kps = dets
        .iter()
        .map(|d| KeypointResult {
            image_id,
            category_id: d.category_id,
            keypoints: d
                .landmarks_global(taxonomy, |_| 1.0)
                .into_iter()
                .flatten()
                .collect(),
            score: d.score,
            attributes: d.attributes.clone(),
        })
        .collect();
    (boxes, kps)
}

/// One detection with everything a later stage needs (`predict`'s output, the PoseFix
/// refiners' input): `bbox` `[x, y, w, h]`, and the taxonomy's global layout of `x, y, score`
/// triplets (294 for DeepFashion2) with the category's slice filled. A list of them is also a valid keypoints results file for `eval`
/// (the third values are not used by OKS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionRecord {
    /// The image's id.
    pub image_id: u64,
    /// Category id (DeepFashion2: 1–13).
    pub category_id: usize,
    /// `[x, y, w, h]` in image pixels.
    pub bbox: [f32; 4],
    /// The global layout's `[x, y, score]`, flattened; zeros outside the category's landmarks.
    pub keypoints: Vec<f32>,
    /// The detection's score.
    pub score: f32,
}

impl DetectionRecord {
    /// The record of detection `d` of `taxonomy` in image `image_id`.
    pub fn new(image_id: u64, d: &Detection, taxonomy: &Taxonomy) -> Self {
        DetectionRecord {
            image_id,
            category_id: d.category_id,
            bbox: d.bbox_xywh(),
            keypoints: d
                .landmarks_global(taxonomy, |s| s)
                .into_iter()
                .flatten()
                .collect(),
            score: d.score,
        }
    }

    /// The category's landmarks in local order (`None` for an unknown category or a short
    /// keypoint list; [`read_detections`] refuses those).
    pub fn local_landmarks(&self, taxonomy: &Taxonomy) -> Option<Vec<[f32; 3]>> {
        let cat = taxonomy.category(self.category_id)?;
        let k = self
            .keypoints
            .get(cat.start * 3..(cat.start + cat.num_landmarks) * 3)?;
        Some(k.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
    }

    /// Back to a [`Detection`] in image pixels.
    pub fn detection(&self, taxonomy: &Taxonomy) -> Option<Detection> {
        let [x, y, w, h] = self.bbox;
        Some(Detection {
            category_id: self.category_id,
            score: self.score,
            box_score: self.score,
            bbox: [x, y, x + w, y + h],
            landmarks: self.local_landmarks(taxonomy)?,
            attributes: Vec::new(),
        })
    }

    /// Refuses what no later stage could use, naming the entry and the field.
    fn check(&self, path: &Path, index: usize, taxonomy: &Taxonomy) -> Result<()> {
        let bad = |field: &str, why: String| {
            Err(Error::file(
                path,
                format!(
                    "detection {index} (image {}): {field}: {why}",
                    self.image_id
                ),
            ))
        };
        if taxonomy.category(self.category_id).is_none() {
            return bad(
                "category_id",
                format!(
                    "unknown category {} (the taxonomy {} has {})",
                    self.category_id,
                    taxonomy.name,
                    taxonomy.category_list()
                ),
            );
        }
        if self.keypoints.len() != taxonomy.num_landmarks * 3 {
            return bad(
                "keypoints",
                format!(
                    "{} values; expected {} (the taxonomy {})",
                    self.keypoints.len(),
                    taxonomy.num_landmarks * 3,
                    taxonomy
                ),
            );
        }
        if !self.score.is_finite() {
            return bad("score", format!("{} is not a finite number", self.score));
        }
        if self.bbox.iter().any(|v| !v.is_finite()) || self.bbox[2] < 0.0 || self.bbox[3] < 0.0 {
            return bad(
                "bbox",
                format!("{:?}: needs finite x, y and non-negative w, h", self.bbox),
            );
        }
        if self.keypoints.iter().any(|v| !v.is_finite()) {
            return bad("keypoints", "holds a non-finite number".into());
        }
        Ok(())
    }
}

/// Reads a list of [`DetectionRecord`]s (`predict`'s output) of `taxonomy`, checking every
/// entry; a file over `limits` is refused unread.
pub fn read_detections(
    path: &Path,
    limits: &Limits,
    taxonomy: &Taxonomy,
) -> Result<Vec<DetectionRecord>> {
    let list: Vec<DetectionRecord> =
        limits.read_json(path, "detections file (predict's output)")?;
    for (i, d) in list.iter().enumerate() {
        d.check(path, i, taxonomy)?;
    }
    Ok(list)
}

#[cfg(feature = "draw")]
/// Draws detections of `taxonomy`: box, the skeleton (or an outline through the landmarks),
/// landmarks (filled where their score is ≥ 0.1) and a `CATEGORY NAME .87` label.
pub fn draw_detections(
    img: &mut image::RgbImage,
    dets: &[Detection],
    taxonomy: &'static crate::garment::Taxonomy,
) {
    use crate::draw::{draw_item_of, draw_text, palette};
    let s = (img.width().max(img.height()) / 400).max(1);
    for d in dets.iter().rev() {
        draw_item_of(img, taxonomy, &d.to_item(taxonomy, 0.1), None, s);
        let name = taxonomy
            .category(d.category_id)
            .map_or("?", |c| c.name)
            .replace('_', " ");
        let label = format!("{name} {:.2}", d.score);
        let label = label.replace("0.", ".");
        let y = (d.bbox[1] as i32 - 8 * s as i32).max(s as i32);
        let x = d.bbox[0].max(0.0) as i32 + s as i32;
        let colour = palette(taxonomy.class_of(d.category_id).unwrap_or(0));
        draw_text(img, x, y, &label, s, colour);
        // Attributes, one line each, inside the box's top edge.
        for (i, a) in d.attributes.iter().enumerate() {
            let line = format!("{} {}", a.task, a.name).replace('_', " ");
            let ya = d.bbox[1].max(0.0) as i32 + (2 + 9 * i as i32) * s as i32;
            draw_text(img, x, ya, &line, s, colour);
        }
    }
}

/// Runs a landmark stage (`apply`: PoseFix refiners, top-down models) over a list of
/// detections of the images of `samples` (files in `images`, read within `limits`), one image at a time; records of
/// images not in `samples` are refused. Returns the records in their order with the new
/// landmark positions: box, score and the landmarks' third values stay as they were.
pub fn update_landmarks(
    taxonomy: &Taxonomy,
    samples: &[crate::data::deepfashion2::Sample],
    images: &Path,
    limits: &Limits,
    records: &[DetectionRecord],
    progress: &mut dyn FnMut(usize, usize),
    apply: &mut dyn FnMut(&image::RgbImage, &mut [Detection]) -> Result<()>,
) -> Result<Vec<DetectionRecord>> {
    let files: std::collections::HashMap<u64, &str> = samples
        .iter()
        .map(|s| (s.image_id, s.file_name.as_str()))
        .collect();
    let mut by_image: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
    for (i, r) in records.iter().enumerate() {
        by_image.entry(r.image_id).or_default().push(i);
    }
    let mut out = records.to_vec();
    let total = by_image.len();
    for (n, (id, idx)) in by_image.into_iter().enumerate() {
        let Some(file) = files.get(&id) else {
            return Err(Error::Invalid(format!(
                "detection {} is of image {id}, which the dataset does not list",
                idx[0]
            )));
        };
        let image = limits.open_rgb(&images.join(file))?;
        let mut dets: Vec<Detection> = idx
            .iter()
            .map(|&i| {
                records[i].detection(taxonomy).ok_or_else(|| {
                    Error::Invalid(format!(
                        "detection {i}: unknown category {} or too few keypoints",
                        records[i].category_id
                    ))
                })
            })
            .collect::<Result<_>>()?;
        apply(&image, &mut dets)?;
        for (&i, d) in idx.iter().zip(&dets) {
            let start = taxonomy.category(d.category_id).map_or(0, |c| c.start);
            for (slot, p) in out[i].keypoints[3 * start..]
                .chunks_exact_mut(3)
                .zip(&d.landmarks)
            {
                slot[0] = p[0];
                slot[1] = p[1];
            }
        }
        progress(n, total);
    }
    Ok(out)
}
