//! Host-side decoding of CenterNet multi-pose heads into detections, with DeepMark++'s four
//! post-processing techniques (each switchable; `PostConfig`).
//!
//! Decoding follows CenterNet's `multi_pose_decode` (xingyizhou/CenterNet,
//! `src/lib/models/decode.py`): 3×3 max-pool peaks of the centre heatmap, top-K over classes, boxes from `wh` + `reg`, coarse landmarks = `hps` added
//! to the *integer* centre, refined landmarks from `hm_hp` peaks (+ `hp_offset`), and the rule
//! that keeps the coarse point unless the chosen peak lies inside the box, scores ≥ 0.1 and is
//! within 0.3·max(w, h). Landmark groups are mapped back to the detected category's landmarks.
//!
//! DeepMark++ §3.2 (defaults from its Table 4):
//! 1. centre rescoring: `score = α·score_box + (1−α)·mean landmark score` (α 0.8);
//! 2. 3×3 Gaussian smoothing of the centre (σ 0.40) and landmark (σ 0.85) heatmaps;
//! 3. landmark blending: `γ·refined + (1−γ)·coarse` where a refined point was accepted (γ 0.75);
//! 4. landmark heatmap rescoring: each candidate peak's score is multiplied by a Gaussian mask
//!    centred on the coarse point, σ = min(w, h)/9, and the best rescored peak is chosen
//!    (without it, CenterNet's nearest peak). We evaluate the mask at the heatmap's 3×3 peaks,
//!    which is the masked heatmap's maximum wherever the mask is flat on the peak's scale.
//!
//! A landmark's score is its accepted peak's (rescored) score, else the heatmap value at the
//! coarse point. Technique (5), symmetric-axis refinement (New-key-detection), is in
//! [`super::symmetry`] and runs per detection when `PostConfig::symmetry` is set.

use serde::{Deserialize, Serialize};

use super::grouping::Grouping;
use super::heads::{HeadLayout, Heads};
use super::symmetry::{SymmetryConfig, refine_symmetric};
use crate::garment::{Item, Taxonomy};

/// The heads of one image on the host, `hm` and `hm_hp` already through a sigmoid. Each map is
/// channel-major `(channels, H, W)` with the channels of [`HeadLayout::channels`]: `hm` C,
/// `wh`/`reg`/`hp_offset` 2, `hps` 2G (x, y offsets of each group from the integer centre),
/// `hm_hp` G.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadMaps {
    /// Map height and width.
    pub size: [usize; 2],
    /// Centre-heatmap channels (clothing categories).
    pub num_classes: usize,
    /// Landmark groups (channels of `hm_hp`; half the channels of `hps`).
    pub num_groups: usize,
    /// The six maps, each channel-major `(channels, H, W)`.
    pub maps: Heads<Vec<f32>>,
}

impl HeadMaps {
    /// All-zero maps of a layout.
    pub fn zeros(layout: HeadLayout, size: [usize; 2]) -> Self {
        let hw = size[0] * size[1];
        HeadMaps {
            size,
            num_classes: layout.num_classes,
            num_groups: layout.num_landmarks,
            maps: layout.channels().map(|c| vec![0.0; c * hw]),
        }
    }
}

/// Post-processing settings; `None` switches a technique off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PostConfig {
    /// Detections kept from the centre heatmap (top-K).
    pub top_k: usize,
    /// (1) centre rescoring weight α of the box score.
    pub alpha: Option<f32>,
    /// (2) σ of the 3×3 Gaussian applied to the centre heatmap.
    pub center_sigma: Option<f32>,
    /// (2) σ of the 3×3 Gaussian applied to the landmark heatmaps.
    pub landmark_sigma: Option<f32>,
    /// (3) weight γ of the refined landmark.
    pub gamma: Option<f32>,
    /// (4) landmark heatmap rescoring with a Gaussian mask on the coarse point.
    pub landmark_mask: bool,
    /// Box NMS per category.
    pub nms: Nms,
    /// (5) symmetric-axis refinement of the landmarks (New-key-detection); off by default.
    #[serde(default)]
    pub symmetry: Option<SymmetryConfig>,
}

/// Box suppression after decoding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Nms {
    /// No suppression (CenterNet's default: the 3×3 max-pool already keeps one peak per object).
    None,
    /// Hard NMS per category at this IoU.
    Hard {
        /// Boxes overlapping a better one of the same category by more than this are dropped.
        iou: f32,
    },
    /// Gaussian soft-NMS per category (CenterNet's `soft_nms_39`: σ 0.5, drop below 0.001).
    Soft {
        /// Width of the Gaussian score decay, `exp(−IoU² / σ)`.
        sigma: f32,
        /// Detections whose decayed score falls below this are dropped.
        threshold: f32,
    },
}

impl Default for PostConfig {
    /// DeepMark++'s Table 4 settings, all techniques on, hard NMS at IoU 0.5.
    fn default() -> Self {
        PostConfig {
            top_k: 100,
            alpha: Some(0.8),
            center_sigma: Some(0.40),
            landmark_sigma: Some(0.85),
            gamma: Some(0.75),
            landmark_mask: true,
            nms: Nms::Hard { iou: 0.5 },
            symmetry: None,
        }
    }
}

impl PostConfig {
    /// Refuses settings that are not numbers decoding can use (a hostile or hand-edited
    /// options file): the error names the setting.
    pub fn check(&self) -> crate::error::Result<()> {
        use crate::error::invalid;
        if self.top_k == 0 || self.top_k > 10_000 {
            invalid!("post.top_k is {}; it must be in 1..=10000", self.top_k);
        }
        let unit = |name: &str, v: Option<f32>| -> crate::error::Result<()> {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                invalid!("post.{name} is {v}; it must be in 0..=1");
            }
            Ok(())
        };
        unit("alpha", self.alpha)?;
        unit("gamma", self.gamma)?;
        for (name, v) in [
            ("center_sigma", self.center_sigma),
            ("landmark_sigma", self.landmark_sigma),
        ] {
            if let Some(v) = v
                && !(v > 0.0 && v <= 100.0)
            {
                invalid!("post.{name} is {v}; it must be in (0, 100]");
            }
        }
        match self.nms {
            Nms::None => {}
            Nms::Hard { iou } => {
                if !(0.0..=1.0).contains(&iou) {
                    invalid!("post.nms.iou is {iou}; it must be in 0..=1");
                }
            }
            Nms::Soft { sigma, threshold } => {
                if !(sigma > 0.0 && sigma.is_finite() && (0.0..=1.0).contains(&threshold)) {
                    invalid!(
                        "post.nms: sigma {sigma} must be positive and threshold {threshold} in 0..=1"
                    );
                }
            }
        }
        if let Some(s) = &self.symmetry {
            let fractions = [s.inlier_distance, s.min_inliers, s.alpha, s.min_score_gap];
            if s.iterations > 100_000
                || s.sample < 2
                || s.sample > 1000
                || !fractions
                    .iter()
                    .all(|v| v.is_finite() && *v >= 0.0 && *v <= 1.0)
            {
                invalid!(
                    "post.symmetry {s:?}: iterations ≤ 100000, sample in 2..=1000 and fractions in 0..=1"
                );
            }
        }
        Ok(())
    }

    /// Plain CenterNet decoding: no DeepMark++ technique, no NMS.
    pub fn plain() -> Self {
        PostConfig {
            top_k: 100,
            alpha: None,
            center_sigma: None,
            landmark_sigma: None,
            gamma: None,
            landmark_mask: false,
            nms: Nms::None,
            symmetry: None,
        }
    }
}

/// One detection in map (stride-4 output) or image coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Category id in the model's taxonomy (DeepFashion2: 1–13).
    pub category_id: usize,
    /// Final score (after DeepMark++'s rescoring with the landmark scores, when on).
    pub score: f32,
    /// Centre-heatmap score before rescoring.
    pub box_score: f32,
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// The category's landmarks in local order: `[x, y, score]`.
    pub landmarks: Vec<[f32; 3]>,
    /// Attribute predictions, one per task, when an attribute model ran (empty otherwise).
    pub attributes: Vec<crate::attributes::apply::AttributeGuess>,
}

impl Detection {
    /// The box as `[x, y, w, h]` (COCO / DeepFashion2 results).
    pub fn bbox_xywh(&self) -> [f32; 4] {
        let b = self.bbox;
        [b[0], b[1], b[2] - b[0], b[3] - b[1]]
    }

    /// The landmarks in the global layout of `taxonomy` (DeepFashion2's 294): the category's
    /// slots are `[x, y, third(score)]`, every other slot zero. `third` chooses what the third
    /// value is: the score itself, `1` for challenge results, a visibility flag for drawing.
    pub fn landmarks_global(
        &self,
        taxonomy: &Taxonomy,
        third: impl Fn(f32) -> f32,
    ) -> Vec<[f32; 3]> {
        let mut out = vec![[0.0; 3]; taxonomy.num_landmarks];
        if let Some(cat) = taxonomy.category(self.category_id) {
            for (slot, p) in out[cat.range()].iter_mut().zip(&self.landmarks) {
                *slot = [p[0], p[1], third(p[2])];
            }
        }
        out
    }

    /// The detection as an annotation-like [`Item`]: landmarks scoring at least
    /// `landmark_threshold` are "visible" (2), the rest "occluded" (1).
    pub fn to_item(&self, taxonomy: &Taxonomy, landmark_threshold: f32) -> Item {
        Item {
            category_id: self.category_id,
            bbox: self.bbox_xywh(),
            keypoints: self.landmarks_global(taxonomy, |s| {
                if s >= landmark_threshold { 2.0 } else { 1.0 }
            }),
        }
    }
}

/// 3×3 Gaussian kernel with standard deviation `sigma`, normalised to sum 1.
pub fn gaussian_kernel3(sigma: f32) -> [[f32; 3]; 3] {
    let mut k = [[0.0f32; 3]; 3];
    let mut sum = 0.0;
    for (dy, row) in k.iter_mut().enumerate() {
        for (dx, v) in row.iter_mut().enumerate() {
            let (x, y) = (dx as f32 - 1.0, dy as f32 - 1.0);
            *v = (-(x * x + y * y) / (2.0 * sigma * sigma)).exp();
            sum += *v;
        }
    }
    k.iter_mut().flatten().for_each(|v| *v /= sum);
    k
}

/// Convolves every `(H, W)` channel of `maps` with a 3×3 kernel (zero padding). Every output
/// sums its in-map taps row by row, left to right, starting from zero: interior pixels take the
/// branch-free loop, border pixels skip the taps outside the map.
pub fn smooth3(maps: &[f32], size: [usize; 2], sigma: f32) -> Vec<f32> {
    let k = gaussian_kernel3(sigma);
    let [h, w] = size;
    let mut out = vec![0.0; maps.len()];
    for (src, dst) in maps.chunks(h * w).zip(out.chunks_mut(h * w)) {
        let border = |y: usize, x: usize| {
            let mut acc = 0.0;
            for (ky, krow) in k.iter().enumerate() {
                let yy = y as isize + ky as isize - 1;
                if yy < 0 || yy >= h as isize {
                    continue;
                }
                for (kx, kv) in krow.iter().enumerate() {
                    let xx = x as isize + kx as isize - 1;
                    if xx < 0 || xx >= w as isize {
                        continue;
                    }
                    acc += kv * src[yy as usize * w + xx as usize];
                }
            }
            acc
        };
        for y in 0..h {
            if y == 0 || y + 1 >= h || w < 3 {
                for x in 0..w {
                    dst[y * w + x] = border(y, x);
                }
                continue;
            }
            let rows = [
                &src[(y - 1) * w..y * w],
                &src[y * w..(y + 1) * w],
                &src[(y + 1) * w..(y + 2) * w],
            ];
            let out_row = &mut dst[y * w..(y + 1) * w];
            out_row[0] = border(y, 0);
            out_row[w - 1] = border(y, w - 1);
            for (i, o) in out_row[1..w - 1].iter_mut().enumerate() {
                let mut acc = 0.0;
                for (row, krow) in rows.iter().zip(&k) {
                    acc += krow[0] * row[i];
                    acc += krow[1] * row[i + 1];
                    acc += krow[2] * row[i + 2];
                }
                *o = acc;
            }
        }
    }
    out
}

/// Positions `(index in the channel)` that equal the maximum of their 3×3 neighbourhood
/// (CenterNet's `_nms`: max-pool stride 1, pad 1, keep where equal): no neighbour is greater.
pub fn peaks(map: &[f32], size: [usize; 2]) -> Vec<usize> {
    let [h, w] = size;
    let mut out = Vec::new();
    let border = |y: usize, x: usize| {
        let v = map[y * w + x];
        !(y.saturating_sub(1)..=(y + 1).min(h - 1))
            .any(|yy| (x.saturating_sub(1)..=(x + 1).min(w - 1)).any(|xx| map[yy * w + xx] > v))
    };
    let mut flags = vec![false; w];
    for y in 0..h {
        if y == 0 || y + 1 >= h || w < 3 {
            out.extend((0..w).filter(|&x| border(y, x)).map(|x| y * w + x));
            continue;
        }
        let rows = [
            &map[(y - 1) * w..y * w],
            &map[y * w..(y + 1) * w],
            &map[(y + 1) * w..(y + 2) * w],
        ];
        flags[0] = border(y, 0);
        flags[w - 1] = border(y, w - 1);
        // Branch-free over the interior; a comparison with NaN is false, so a NaN never
        // disqualifies and a NaN centre is kept, as in the definition.
        for (i, f) in flags[1..w - 1].iter_mut().enumerate() {
            let v = rows[1][i + 1];
            let mut greater = false;
            for row in rows {
                greater |= (row[i] > v) | (row[i + 1] > v) | (row[i + 2] > v);
            }
            *f = !greater;
        }
        out.extend(
            flags
                .iter()
                .enumerate()
                .filter(|&(_, &f)| f)
                .map(|(x, _)| y * w + x),
        );
    }
    out
}

/// Top-`k` `(score, channel, index)` over peaks of all channels, best first (ties: lower
/// channel, then lower index).
pub fn top_peaks(maps: &[f32], size: [usize; 2], k: usize) -> Vec<(f32, usize, usize)> {
    let hw = size[0] * size[1];
    let mut all: Vec<(f32, usize, usize)> = maps
        .chunks(hw)
        .enumerate()
        .flat_map(|(c, m)| peaks(m, size).into_iter().map(move |i| (m[i], c, i)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    all.truncate(k);
    all
}

/// Candidate peaks of a landmark channel: `(x, y, score)` with `hp_offset` added; CenterNet keeps
/// the top-K per channel and drops those scoring ≤ 0.1.
fn landmark_candidates(heads: &HeadMaps, map: &[f32], k: usize) -> Vec<[f32; 3]> {
    let [_, w] = heads.size;
    let hw = heads.size[0] * w;
    let offset = &heads.maps.hp_offset;
    let mut c: Vec<(f32, usize)> = peaks(map, heads.size)
        .into_iter()
        .map(|i| (map[i], i))
        .filter(|&(s, _)| s > 0.1)
        .collect();
    c.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    c.truncate(k);
    c.into_iter()
        .map(|(s, i)| {
            let (x, y) = ((i % w) as f32, (i / w) as f32);
            [x + offset[i], y + offset[hw + i], s]
        })
        .collect()
}

/// Decodes one image's heads (map coordinates). `grouping` maps each category's landmarks to
/// landmark channels.
pub fn decode(heads: &HeadMaps, grouping: &Grouping, cfg: &PostConfig) -> Vec<Detection> {
    let [h, w] = heads.size;
    let hw = h * w;
    let m = &heads.maps;
    let hm = match cfg.center_sigma {
        Some(s) => smooth3(&m.hm, heads.size, s),
        None => m.hm.clone(),
    };
    let hm_hp = match cfg.landmark_sigma {
        Some(s) => smooth3(&m.hm_hp, heads.size, s),
        None => m.hm_hp.clone(),
    };
    let top = top_peaks(&hm, heads.size, cfg.top_k);
    // Landmark candidates per channel, computed lazily.
    let mut candidates: Vec<Option<Vec<[f32; 3]>>> = vec![None; heads.num_groups];
    let mut out = Vec::with_capacity(top.len());
    for (score, class, ind) in top {
        let Some(cat) = grouping.taxonomy().of_class(class) else {
            continue;
        };
        let (xi, yi) = ((ind % w) as f32, (ind / w) as f32);
        let (bw, bh) = (m.wh[ind], m.wh[hw + ind]);
        let (cx, cy) = (xi + m.reg[ind], yi + m.reg[hw + ind]);
        let bbox = [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0];
        let mut landmarks = Vec::with_capacity(cat.num_landmarks);
        for &g in grouping.groups_of(cat) {
            let coarse = [
                xi + m.hps[2 * g * hw + ind],
                yi + m.hps[(2 * g + 1) * hw + ind],
            ];
            let cands = candidates[g].get_or_insert_with(|| {
                landmark_candidates(heads, &hm_hp[g * hw..(g + 1) * hw], cfg.top_k)
            });
            landmarks.push(refine(
                coarse,
                cands,
                &hm_hp[g * hw..(g + 1) * hw],
                heads.size,
                bbox,
                cfg,
            ));
        }
        if let Some(sym) = &cfg.symmetry {
            refine_symmetric(&mut landmarks, cat, bbox, sym);
        }
        let box_score = score;
        let score = match cfg.alpha {
            Some(a) if !landmarks.is_empty() => {
                let mean = landmarks.iter().map(|p| p[2]).sum::<f32>() / landmarks.len() as f32;
                a * box_score + (1.0 - a) * mean
            }
            _ => box_score,
        };
        out.push(Detection {
            category_id: cat.id,
            score,
            box_score,
            bbox,
            landmarks,
            attributes: Vec::new(),
        });
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// `e^x`, with the arguments whose float32 result rounds to zero (`x < -104`, below half the
/// smallest subnormal) answered without calling into libm's slow underflow path: far
/// candidates are common in the landmark mask and each one would take it.
fn exp_or_zero(x: f32) -> f32 {
    if x < -104.0 { 0.0 } else { x.exp() }
}

/// Chooses a landmark position for one detection (CenterNet's rule + techniques 3 and 4).
fn refine(
    coarse: [f32; 2],
    cands: &[[f32; 3]],
    map: &[f32],
    size: [usize; 2],
    bbox: [f32; 4],
    cfg: &PostConfig,
) -> [f32; 3] {
    let (bw, bh) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    let d2 = |p: &[f32; 3]| (p[0] - coarse[0]).powi(2) + (p[1] - coarse[1]).powi(2);
    let chosen: Option<[f32; 3]> = if cfg.landmark_mask {
        let sigma = (bw.min(bh) / 9.0).max(1e-3);
        cands
            .iter()
            .map(|p| {
                [
                    p[0],
                    p[1],
                    p[2] * exp_or_zero(-d2(p) / (2.0 * sigma * sigma)),
                ]
            })
            .max_by(|a, b| a[2].total_cmp(&b[2]))
    } else {
        cands.iter().min_by(|a, b| d2(a).total_cmp(&d2(b))).copied()
    };
    let accepted = chosen.filter(|p| {
        p[0] >= bbox[0]
            && p[0] <= bbox[2]
            && p[1] >= bbox[1]
            && p[1] <= bbox[3]
            && p[2] >= 0.1
            && d2(p).sqrt() <= 0.3 * bw.max(bh)
    });
    match accepted {
        Some(p) => {
            let g = cfg.gamma.unwrap_or(1.0);
            [
                g * p[0] + (1.0 - g) * coarse[0],
                g * p[1] + (1.0 - g) * coarse[1],
                p[2],
            ]
        }
        None => {
            let [h, w] = size;
            let x = (coarse[0].round() as isize).clamp(0, w as isize - 1) as usize;
            let y = (coarse[1].round() as isize).clamp(0, h as isize - 1) as usize;
            [coarse[0], coarse[1], map[y * w + x]]
        }
    }
}

/// IoU of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Per-category NMS (hard or Gaussian soft); the result is sorted by score.
pub fn suppress(mut dets: Vec<Detection>, nms: Nms) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    match nms {
        Nms::None => dets,
        Nms::Hard { iou: thr } => {
            let mut keep: Vec<Detection> = Vec::with_capacity(dets.len());
            for d in dets {
                if keep
                    .iter()
                    .all(|k| k.category_id != d.category_id || iou(&k.bbox, &d.bbox) <= thr)
                {
                    keep.push(d);
                }
            }
            keep
        }
        Nms::Soft { sigma, threshold } => {
            let mut rest = dets;
            let mut keep = Vec::with_capacity(rest.len());
            while !rest.is_empty() {
                let best = rest
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.score.total_cmp(&b.1.score))
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                let top = rest.swap_remove(best);
                for d in rest.iter_mut().filter(|d| d.category_id == top.category_id) {
                    let o = iou(&top.bbox, &d.bbox);
                    d.score *= (-(o * o) / sigma).exp();
                }
                rest.retain(|d| d.score >= threshold);
                keep.push(top);
            }
            keep
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::garment::{DEEPFASHION2, NUM_LANDMARKS, category};

    /// The definitions: every pixel through the bounds-checked loop.
    fn smooth3_naive(src: &[f32], [h, w]: [usize; 2], sigma: f32) -> Vec<f32> {
        let k = gaussian_kernel3(sigma);
        let mut out = vec![0.0; h * w];
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (ky, krow) in k.iter().enumerate() {
                    for (kx, kv) in krow.iter().enumerate() {
                        let (yy, xx) = (y as isize + ky as isize - 1, x as isize + kx as isize - 1);
                        if yy >= 0 && xx >= 0 && yy < h as isize && xx < w as isize {
                            acc += kv * src[yy as usize * w + xx as usize];
                        }
                    }
                }
                out[y * w + x] = acc;
            }
        }
        out
    }

    fn peaks_naive(map: &[f32], [h, w]: [usize; 2]) -> Vec<usize> {
        (0..h * w)
            .filter(|&i| {
                let (y, x) = ((i / w) as isize, (i % w) as isize);
                !(-1..=1).any(|dy| {
                    (-1..=1).any(|dx| {
                        let (yy, xx) = (y + dy, x + dx);
                        yy >= 0
                            && xx >= 0
                            && yy < h as isize
                            && xx < w as isize
                            && map[yy as usize * w + xx as usize] > map[i]
                    })
                })
            })
            .collect()
    }

    #[test]
    fn exp_or_zero_equals_exp() {
        for i in 0..40_000 {
            let x = -120.0 + i as f32 * 1e-3;
            assert_eq!(exp_or_zero(x).to_bits(), x.exp().to_bits(), "{x}");
        }
    }

    #[test]
    fn smoothing_and_peaks_equal_their_definitions_bit_for_bit() {
        for (h, w) in [(1, 1), (1, 6), (5, 1), (2, 2), (3, 3), (7, 9), (16, 13)] {
            // Coarse values make ties (plateaus) common; a NaN tests the comparisons.
            let mut map: Vec<f32> = (0..h * w)
                .map(|i| ((i * 7919 + 13) % 11) as f32 / 10.0)
                .collect();
            if h * w > 4 {
                map[h * w / 2] = f32::NAN;
            }
            assert_eq!(peaks(&map, [h, w]), peaks_naive(&map, [h, w]), "{h}×{w}");
            map.iter_mut().filter(|v| v.is_nan()).for_each(|v| *v = 0.3);
            let two = [map.clone(), map.iter().map(|v| 1.0 - v).collect()].concat();
            let got = smooth3(&two, [h, w], 0.8);
            for (c, ch) in two.chunks(h * w).enumerate() {
                let want = smooth3_naive(ch, [h, w], 0.8);
                let got = &got[c * h * w..(c + 1) * h * w];
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{h}×{w} channel {c}"
                );
            }
        }
    }

    #[test]
    fn detections_write_their_category_slice_of_the_294_layout() {
        let cat = category(8).unwrap(); // trousers
        let landmarks: Vec<[f32; 3]> = (0..cat.num_landmarks)
            .map(|l| {
                [
                    l as f32,
                    2.0 * l as f32,
                    if l % 2 == 0 { 0.9 } else { 0.05 },
                ]
            })
            .collect();
        let d = Detection {
            category_id: 8,
            score: 0.8,
            box_score: 0.7,
            bbox: [10.0, 20.0, 50.0, 100.0],
            landmarks,
            attributes: Vec::new(),
        };
        let scores = d.landmarks_global(&DEEPFASHION2, |s| s);
        assert_eq!(scores.len(), NUM_LANDMARKS);
        assert_eq!(scores[cat.start + 3], [3.0, 6.0, 0.05]);
        let outside = scores
            .iter()
            .enumerate()
            .filter(|(i, _)| !cat.range().contains(i));
        assert!(outside.into_iter().all(|(_, p)| *p == [0.0; 3]));
        let item = d.to_item(&DEEPFASHION2, 0.1);
        assert_eq!(item.bbox, [10.0, 20.0, 40.0, 80.0]);
        assert_eq!(item.keypoints[cat.start][2], 2.0);
        assert_eq!(item.keypoints[cat.start + 1][2], 1.0);
        assert_eq!(item.num_labelled(), cat.num_landmarks);
        let ones = d.landmarks_global(&DEEPFASHION2, |_| 1.0);
        assert_eq!(
            ones.iter().filter(|p| p[2] == 1.0).count(),
            cat.num_landmarks
        );
    }
}
