//! Landmark error metrics: NE (FashionAI's normalised error, as in the CPN clothing paper) and
//! PCK@0.2, per category and overall.
//!
//! `NE = Σ_k v_k·d_k/s / Σ_k v_k` over labelled GT landmarks (`v_k > 0`), where `d_k` is the
//! distance between prediction and GT and `s` the item's normaliser. The CPN paper normalises by
//! the distance between the armpits for tops, coats and dresses and between the two ends of the
//! waistband for trousers and skirts. DeepFashion2 does not name its landmarks, so we take them
//! from the public 81-group aggregation (lzhbrian/deepfashion2-kps-agg-finetune,
//! `deepfashion2agg81kps_util.py`): the first landmark of each body side
//! (agg81 groups 40 and 45, the side seam's top at the armpit) for the ten upper-body and dress
//! categories, and the waistband ends (groups 62 and 64) for shorts, trousers and skirts.
//! Other taxonomies name their landmarks: the normaliser is the first left/right pair among
//! `armpit` (FashionAI's tops, dresses and outwear), `waistband` (its skirts and trousers),
//! `waistline` and `shoulder`, found by name.
//! Items whose two normalising landmarks are not both labelled are skipped (counted).
//!
//! Each GT item is matched to the highest-scoring unmatched detection of its category in the
//! same image with box IoU ≥ 0.5; unmatched items count as misses and do not enter NE/PCK.

use std::collections::HashMap;

use super::coco::bbox_iou;
use crate::codec::grouping::Grouping;
use crate::codec::scheme::Scheme;
use crate::data::deepfashion2::Sample;
use crate::garment::Item;
use crate::garment::taxonomy::{Category, Taxonomy, category};
use crate::infer::output::{BboxResult, KeypointResult};

/// Accumulated errors for one category (or all).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LandmarkStats {
    /// GT items with a usable normaliser.
    pub items: usize,
    /// Of those, matched to a detection.
    pub matched: usize,
    /// Labelled landmarks of matched items.
    pub landmarks: usize,
    /// Σ d/s over those landmarks.
    pub sum_ne: f64,
    /// Landmarks with d/s ≤ 0.2.
    pub within_02: usize,
    /// GT items skipped for lack of a normaliser.
    pub no_normaliser: usize,
}

impl LandmarkStats {
    /// NE: the mean of `d/s` over the labelled landmarks of matched items (module doc).
    pub fn ne(&self) -> f64 {
        self.sum_ne / self.landmarks.max(1) as f64
    }

    /// PCK@0.2: the share of those landmarks with `d/s ≤ 0.2`.
    pub fn pck02(&self) -> f64 {
        self.within_02 as f64 / self.landmarks.max(1) as f64
    }

    fn add(&mut self, o: &LandmarkStats) {
        self.items += o.items;
        self.matched += o.matched;
        self.landmarks += o.landmarks;
        self.sum_ne += o.sum_ne;
        self.within_02 += o.within_02;
        self.no_normaliser += o.no_normaliser;
    }
}

/// The two local (0-based) landmarks whose distance normalises errors of a category of
/// `taxonomy`: DeepFashion2's rule for DeepFashion2, else by name (module doc).
pub fn normaliser_of(taxonomy: &Taxonomy, cat: &Category) -> Option<(usize, usize)> {
    if taxonomy.is_deepfashion2() {
        return normaliser_landmarks(cat.id);
    }
    let names: Vec<String> = (0..cat.num_landmarks)
        .map(|l| cat.landmark_name(l).to_lowercase())
        .collect();
    let pairs: Vec<(usize, usize)> = cat
        .flip_pairs
        .iter()
        .map(|&(a, b)| (a - 1, b - 1))
        .collect();
    ["armpit", "waistband", "waistline", "shoulder"]
        .iter()
        .find_map(|word| {
            pairs
                .iter()
                .find(|(a, b)| names[*a].contains(word) && names[*b].contains(word))
                .copied()
        })
}

/// The distance between an item's two normalising landmarks (0-based local `a`, `b` of `cat`),
/// when both are labelled and apart.
fn normalising_distance(item: &Item, cat: &Category, (a, b): (usize, usize)) -> Option<f64> {
    let (pa, pb) = (item.keypoints[cat.start + a], item.keypoints[cat.start + b]);
    if pa[2] <= 0.0 || pb[2] <= 0.0 {
        return None;
    }
    let norm = ((pa[0] - pb[0]) as f64).hypot((pa[1] - pb[1]) as f64);
    (norm > 0.0).then_some(norm)
}

/// The two local (0-based) landmark indices whose distance normalises DeepFashion2 category
/// `id`'s errors.
pub fn normaliser_landmarks(id: usize) -> Option<(usize, usize)> {
    let agg = Grouping::for_scheme(Scheme::Agg81)?;
    let cat = category(id)?;
    let (a, b) = if matches!(id, 7..=9) {
        (62, 64)
    } else {
        (40, 45)
    };
    let find = |g: usize| agg.local_in_group(cat, g);
    Some((find(a)?, find(b)?))
}

/// NE and PCK@0.2 of DeepFashion2 detections ([`landmark_errors_in`]).
pub fn landmark_errors(
    gt: &[Sample],
    boxes: &[BboxResult],
    kps: &[KeypointResult],
) -> (Vec<LandmarkStats>, LandmarkStats) {
    landmark_errors_in(&crate::garment::DEEPFASHION2, gt, boxes, kps)
}

/// NE and PCK@0.2 per category (index = the category's class, its position in `taxonomy`)
/// and overall. `boxes[i]` and `kps[i]` describe the same detection.
pub fn landmark_errors_in(
    taxonomy: &Taxonomy,
    gt: &[Sample],
    boxes: &[BboxResult],
    kps: &[KeypointResult],
) -> (Vec<LandmarkStats>, LandmarkStats) {
    let mut by_image: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, b) in boxes.iter().enumerate() {
        by_image.entry(b.image_id).or_default().push(i);
    }
    for v in by_image.values_mut() {
        v.sort_by(|&a, &b| boxes[b].score.total_cmp(&boxes[a].score));
    }
    let norms: Vec<Option<(usize, usize)>> = taxonomy
        .categories
        .iter()
        .map(|c| normaliser_of(taxonomy, c))
        .collect();
    let mut per = vec![LandmarkStats::default(); taxonomy.num_categories()];
    for s in gt {
        let dets = by_image.get(&s.image_id).map(Vec::as_slice).unwrap_or(&[]);
        let mut used = vec![false; dets.len()];
        for item in &s.items {
            let (Some(cat), Some(class)) = (
                taxonomy.category(item.category_id),
                taxonomy.class_of(item.category_id),
            ) else {
                continue;
            };
            let st = &mut per[class];
            let Some((a, b)) = norms[class] else {
                st.no_normaliser += 1;
                continue;
            };
            if item.keypoints.len() < cat.start + cat.num_landmarks {
                continue;
            }
            let Some(norm) = normalising_distance(item, cat, (a, b)) else {
                st.no_normaliser += 1;
                continue;
            };
            st.items += 1;
            let gbox = item.bbox.map(|v| v as f64);
            let best = dets.iter().enumerate().position(|(j, &d)| {
                !used[j]
                    && boxes[d].category_id == cat.id
                    && bbox_iou(&boxes[d].bbox.map(f64::from), &gbox, false) >= 0.5
            });
            let Some(j) = best else { continue };
            used[j] = true;
            st.matched += 1;
            let pred = &kps[dets[j]].keypoints;
            if pred.len() < 3 * (cat.start + cat.num_landmarks) {
                continue;
            }
            for l in 0..cat.num_landmarks {
                let g = item.keypoints[cat.start + l];
                if g[2] <= 0.0 {
                    continue;
                }
                let k = 3 * (cat.start + l);
                let d = ((pred[k] - g[0]) as f64).hypot((pred[k + 1] - g[1]) as f64) / norm;
                st.landmarks += 1;
                st.sum_ne += d;
                if d <= 0.2 {
                    st.within_02 += 1;
                }
            }
        }
    }
    let mut all = LandmarkStats::default();
    for p in &per {
        all.add(p);
    }
    (per, all)
}

/// FashionAI's NE (the CPN clothing paper's Eq. 2): each ground-truth garment (`gt`, items of
/// `taxonomy` in its global layout) against the landmarks `pred(image_id, category_id)` gives
/// for it (the global layout: FashionAI scores one prediction per image and category, with no
/// box matching), over its *visible* landmarks, normalised as [`normaliser_of`] says (for
/// FashionAI: the armpits, or the waistband's ends). Returns `(NE, visible landmarks counted,
/// garments without a prediction)`; garments whose normalising landmarks are not both labelled
/// are left out (they cannot be normalised).
pub fn fashionai_ne(
    taxonomy: &Taxonomy,
    gt: &[Sample],
    pred: &dyn Fn(u64, usize) -> Option<Vec<[f32; 3]>>,
) -> (f64, usize, usize) {
    let (mut sum, mut count, mut missed) = (0.0, 0usize, 0usize);
    for s in gt {
        for item in &s.items {
            let Some(cat) = taxonomy.category(item.category_id) else {
                continue;
            };
            let Some(norm) =
                normaliser_of(taxonomy, cat).and_then(|pair| normalising_distance(item, cat, pair))
            else {
                continue;
            };
            let Some(p) = pred(s.image_id, cat.id) else {
                missed += 1;
                continue;
            };
            for l in cat.range() {
                let g = item.keypoints[l];
                if g[2] < 2.0 {
                    continue;
                }
                let d = f64::from(p[l][0] - g[0]).hypot(f64::from(p[l][1] - g[1]));
                sum += d / norm;
                count += 1;
            }
        }
    }
    (sum / count.max(1) as f64, count, missed)
}
