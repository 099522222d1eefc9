//! The two crops of the recognition network (Zou et al., §III.B and Fig. 3): the
//! "Normal-crop", the smallest rectangle holding a garment's landmarks, and the "Neck-crop",
//! the region around its neckline, for the upper-body design tasks. Both are boxes in image
//! pixels; the network reads them through the same affine crop as the refiners
//! (`refine::codec::crop_transform`).

use std::ops::Range;

use image::RgbImage;

use super::Crop;
use crate::refine::codec::{CropJitter, crop_pixels, crop_transform};

/// The local landmarks that trace a DeepFashion2 category's neckline: 1–6 for every top,
/// outwear, vest, sling and dress; for shorts, trousers and skirts (ids 7–9), which have no
/// neckline, their top edge, the waistband's 1–3 (DeepFashion2's landmark definitions,
/// Ge et al. 2019, Fig. 2).
pub fn neck_range(category_id: usize) -> Range<usize> {
    if (7..=9).contains(&category_id) {
        0..3
    } else {
        0..6
    }
}

/// The box `[x, y, w, h]` of the points whose third value is positive, when there are at
/// least two and they span a positive area.
fn points_box(points: &[[f32; 3]]) -> Option<[f32; 4]> {
    let mut n = 0;
    let (mut x1, mut y1, mut x2, mut y2) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for p in points
        .iter()
        .filter(|p| p[2] > 0.0 && p[0].is_finite() && p[1].is_finite())
    {
        n += 1;
        (x1, y1, x2, y2) = (x1.min(p[0]), y1.min(p[1]), x2.max(p[0]), y2.max(p[1]));
    }
    (n >= 2 && (x2 - x1) * (y2 - y1) > 0.0).then_some([x1, y1, x2 - x1, y2 - y1])
}

/// The Normal-crop's box: the smallest rectangle holding the landmarks whose third value is
/// positive (labelled, or predicted), or the garment's box `bbox` when fewer than two are.
pub fn normal_box(bbox: [f32; 4], landmarks: &[[f32; 3]]) -> [f32; 4] {
    points_box(landmarks).unwrap_or(bbox)
}

/// The Neck-crop's box: a square centred on the neckline landmarks (`neck_range`) with the
/// larger of their span and half the Normal-crop's width as its side; without two neckline
/// landmarks, the square of half the Normal-crop's width at the middle of its top edge.
/// `landmarks` are the category's, in local order.
pub fn neck_box(bbox: [f32; 4], category_id: usize, landmarks: &[[f32; 3]]) -> [f32; 4] {
    let normal = normal_box(bbox, landmarks);
    let range = neck_range(category_id);
    let neck = landmarks
        .get(range.start..range.end.min(landmarks.len()))
        .and_then(points_box);
    let min_side = 0.5 * normal[2].max(1.0);
    let (cx, cy, side) = match neck {
        Some([x, y, w, h]) => (x + w / 2.0, y + h / 2.0, w.max(h).max(min_side)),
        None => (
            normal[0] + normal[2] / 2.0,
            normal[1] + min_side / 2.0,
            min_side,
        ),
    };
    [cx - side / 2.0, cy - side / 2.0, side, side]
}

/// The box of `crop` for a garment.
pub fn crop_box(
    crop: Crop,
    bbox: [f32; 4],
    category_id: usize,
    landmarks: &[[f32; 3]],
) -> [f32; 4] {
    match crop {
        Crop::Normal => normal_box(bbox, landmarks),
        Crop::Neck => neck_box(bbox, category_id, landmarks),
    }
}

/// The crop of `bx` (`[x, y, w, h]`) as the network's input: `3 × h × w`, BGR, normalised as
/// the detector's input, the box grown to the input's aspect and by `box_scale`.
pub fn crop_input(
    image: &RgbImage,
    bx: [f32; 4],
    input: [usize; 2],
    box_scale: f32,
    jitter: CropJitter,
) -> Vec<f32> {
    crop_pixels(image, &crop_transform(bx, input, box_scale, jitter), input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_follow_the_landmarks() {
        let bbox = [0.0, 0.0, 100.0, 200.0];
        // Two labelled landmarks, one unlabelled far away.
        let lm = [[10.0, 20.0, 2.0], [50.0, 60.0, 1.0], [900.0, 900.0, 0.0]];
        assert_eq!(normal_box(bbox, &lm), [10.0, 20.0, 40.0, 40.0]);
        assert_eq!(normal_box(bbox, &lm[..1]), bbox, "one landmark: the box");
        // Neckline = the first two here: centre (30, 40), span 40 > half of 40.
        assert_eq!(neck_box(bbox, 1, &lm), [10.0, 20.0, 40.0, 40.0]);
        // A skirt's neck crop reads its waistband (landmarks 1–3) only.
        let mut skirt = vec![[0.0, 0.0, 0.0]; 8];
        skirt[0] = [40.0, 10.0, 2.0];
        skirt[2] = [60.0, 12.0, 2.0];
        skirt[5] = [50.0, 190.0, 2.0];
        let n = neck_box(bbox, 9, &skirt);
        // Span 20 × 2; normal box 20 wide → min side 10 → side 20, centred at (50, 11).
        assert_eq!(n, [40.0, 1.0, 20.0, 20.0]);
        // No neckline landmarks: the top middle of the box, half its width.
        assert_eq!(neck_box(bbox, 1, &[]), [25.0, 0.0, 50.0, 50.0]);
    }
}
