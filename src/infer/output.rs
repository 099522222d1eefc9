//! Detections as DeepFashion2 challenge results (bbox and keypoints JSON) and as drawings.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::decode::Detection;
use crate::data::deepfashion2::Item;
use crate::data::taxonomy::{NUM_LANDMARKS, category};
use crate::draw::{draw_item, draw_text, palette};

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
        .map(|d| {
            let mut k = vec![0.0; 3 * NUM_LANDMARKS];
            if let Some(cat) = category(d.category_id) {
                for (l, p) in d.landmarks.iter().enumerate() {
                    let g = cat.start + l;
                    k[3 * g] = p[0];
                    k[3 * g + 1] = p[1];
                    k[3 * g + 2] = 1.0;
                }
            }
            KeypointResult {
                image_id,
                category_id: d.category_id,
                keypoints: k,
                score: d.score,
            }
        })
        .collect();
    (boxes, kps)
}

/// A detection as an annotation-like item (`[x, y, w, h]`, 294 layout; landmarks scoring at
/// least `landmark_threshold` are "visible", the rest "occluded").
pub fn to_item(d: &Detection, landmark_threshold: f32) -> Item {
    let mut keypoints = vec![[0.0; 3]; NUM_LANDMARKS];
    if let Some(cat) = category(d.category_id) {
        for (l, p) in d.landmarks.iter().enumerate() {
            let v = if p[2] >= landmark_threshold { 2.0 } else { 1.0 };
            keypoints[cat.start + l] = [p[0], p[1], v];
        }
    }
    Item {
        category_id: d.category_id,
        bbox: d.bbox_xywh(),
        keypoints,
    }
}

/// Draws detections: box, outline through the landmarks, landmarks (filled where their score
/// is ≥ 0.1) and a `CATEGORY NAME .87` label.
pub fn draw_detections(img: &mut RgbImage, dets: &[Detection]) {
    let s = (img.width().max(img.height()) / 400).max(1);
    for d in dets.iter().rev() {
        draw_item(img, &to_item(d, 0.1), None, s);
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
