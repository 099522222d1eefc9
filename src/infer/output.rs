//! Detections as DeepFashion2 challenge results (bbox and keypoints JSON) and as drawings.

use serde::{Deserialize, Serialize};

use crate::codec::Detection;

/// A bbox result (`evaluation.md`: `{image_id, category_id, bbox: [x, y, w, h], score}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BboxResult {
    pub image_id: u64,
    pub category_id: usize,
    pub bbox: [f32; 4],
    pub score: f32,
}

/// A landmark result: 294 `x, y, v` triplets, the category's slice filled (`v` = 1), zeros
/// elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeypointResult {
    pub image_id: u64,
    pub category_id: usize,
    pub keypoints: Vec<f32>,
    pub score: f32,
}

/// The challenge results of one image's detections.
pub fn results(image_id: u64, dets: &[Detection]) -> (Vec<BboxResult>, Vec<KeypointResult>) {
    let boxes = dets
        .iter()
        .map(|d| BboxResult {
            image_id,
            category_id: d.category_id,
            bbox: d.bbox_xywh(),
            score: d.score,
        })
        .collect();
    let kps = dets
        .iter()
        .map(|d| KeypointResult {
            image_id,
            category_id: d.category_id,
            keypoints: d.landmarks_294(|_| 1.0).into_iter().flatten().collect(),
            score: d.score,
        })
        .collect();
    (boxes, kps)
}

#[cfg(feature = "draw")]
/// Draws detections: box, outline through the landmarks, landmarks (filled where their score
/// is ≥ 0.1) and a `CATEGORY NAME .87` label.
pub fn draw_detections(img: &mut image::RgbImage, dets: &[Detection]) {
    use crate::draw::{draw_item, draw_text, palette};
    use crate::garment::category;
    let s = (img.width().max(img.height()) / 400).max(1);
    for d in dets.iter().rev() {
        draw_item(img, &d.to_item(0.1), None, s);
        let name = category(d.category_id)
            .map_or("?", |c| c.name)
            .replace('_', " ");
        let label = format!("{name} {:.2}", d.score);
        let label = label.replace("0.", ".");
        let y = (d.bbox[1] as i32 - 8 * s as i32).max(s as i32);
        draw_text(
            img,
            d.bbox[0].max(0.0) as i32 + s as i32,
            y,
            &label,
            s,
            palette(d.category_id.saturating_sub(1)),
        );
    }
}
