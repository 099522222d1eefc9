//! CenterNet `multi_pose` training targets, generalised to C classes and G landmark groups
//! (xingyizhou/CenterNet, `src/lib/datasets/sample/multi_pose.py` and `src/lib/utils/image.py`), and their exact inverse for tests.
//!
//! All coordinates are in output-map pixels (input / 4). For object k (at most `max_objs`):
//! the box is clipped to the map; if it has a positive size, its CornerNet radius `r` is
//! computed, `wh[k] = (w, h)`, `ind[k] = ⌊cy⌋·W + ⌊cx⌋`, `reg[k] = c − ⌊c⌋`, `reg_mask[k] = 1`;
//! an object with no labelled landmark gets `hm = 0.9999` at its centre and `reg_mask = 0`
//! (exactly CenterNet's order: the Gaussian drawn afterwards still peaks at 1). Each labelled
//! landmark inside the map, in group g: `hps[k, 2g..2g+2] = p − ⌊c⌋` with its mask,
//! `hp_offset[k·G+g] = p − ⌊p⌋`, `hp_ind`, `hp_mask`, and a Gaussian of radius `r` in
//! `hm_hp[g]`. Finally the centre Gaussian goes into `hm[class]` (element-wise max).
//!
//! [`objects_from_items`] maps garments (network-input pixels, 294 layout) to these objects
//! through a [`Grouping`]; [`TargetObject::to_item`] is its inverse.

use super::STRIDE;
use super::grouping::Grouping;
use crate::garment::Item;

/// One object in output-map coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetObject {
    /// 0-based class.
    pub class: usize,
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// `(group, [x, y])` of each labelled landmark.
    pub landmarks: Vec<(usize, [f32; 2])>,
}

/// The target objects of garments given in network-input pixels: boxes and labelled landmarks
/// divided by [`STRIDE`], landmarks moved to their groups. Items of an unknown category are left
/// out (the readers reject them before this point).
pub fn objects_from_items(items: &[Item], grouping: &Grouping) -> Vec<TargetObject> {
    let scale = 1.0 / STRIDE as f32;
    let garments: Vec<OutputGarment> = items
        .iter()
        .map(|it| {
            let [x, y, w, h] = it.bbox.map(|v| v * scale);
            OutputGarment {
                category_id: it.category_id,
                corners: [x, y, x + w, y + h],
                keypoints: it
                    .keypoints
                    .iter()
                    .map(|k| [k[0] * scale, k[1] * scale, k[2]])
                    .collect(),
            }
        })
        .collect();
    objects_from_output(&garments, grouping)
}

/// A garment on the output map, as CenterNet's `MultiPoseDataset`
/// (`src/lib/datasets/sample/multi_pose.py`) computes it for the targets.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputGarment {
    /// Category id in the taxonomy (DeepFashion2: 1–13).
    pub category_id: usize,
    /// `[x1, y1, x2, y2]`, not clipped.
    pub corners: [f32; 4],
    /// The global layout's landmarks `[x, y, v]` (labelled ones moved to the output map).
    pub keypoints: Vec<[f32; 3]>,
}

/// The target objects of garments already on the output map (CenterNet's rule, as
/// `data::augment::output_garment` computes them): corners as they are, labelled landmarks
/// moved to their groups. Items of an unknown category are left out.
pub fn objects_from_output(garments: &[OutputGarment], grouping: &Grouping) -> Vec<TargetObject> {
    garments
        .iter()
        .filter_map(|g| {
            let tax = grouping.taxonomy();
            let cat = tax.category(g.category_id)?;
            let class = tax.class_of(g.category_id)?;
            let landmarks = grouping
                .encode(cat, &g.keypoints)
                .into_iter()
                .enumerate()
                .filter_map(|(g, p)| p.filter(|p| p[2] > 0.0).map(|p| (g, [p[0], p[1]])))
                .collect();
            Some(TargetObject {
                class,
                bbox: g.corners,
                landmarks,
            })
        })
        .collect()
}

impl TargetObject {
    /// The garment this object encodes, back in network-input pixels (landmarks "visible").
    pub fn to_item(&self, grouping: &Grouping) -> Option<Item> {
        let cat = grouping.taxonomy().of_class(self.class)?;
        let s = STRIDE as f32;
        let mut groups = vec![None; grouping.num_groups()];
        for &(g, p) in &self.landmarks {
            groups[g] = Some([p[0] * s, p[1] * s, 2.0]);
        }
        let b = self.bbox.map(|v| v * s);
        Some(Item {
            category_id: cat.id,
            bbox: [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            keypoints: grouping.decode(cat, &groups),
        })
    }
}

/// Dense targets of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Centre-heatmap channels (categories).
    pub num_classes: usize,
    /// Landmark groups.
    pub num_groups: usize,
    /// Object slots (CenterNet's `max_objs`).
    pub max_objs: usize,
    /// Output map height and width.
    pub size: [usize; 2],
    /// `C × H × W`.
    pub hm: Vec<f32>,
    /// `G × H × W`.
    pub hm_hp: Vec<f32>,
    /// `max_objs × 2`.
    pub wh: Vec<f32>,
    /// `max_objs × 2`.
    pub reg: Vec<f32>,
    /// `max_objs`: flat index `y·W + x` of each object's integer centre on the output map.
    pub ind: Vec<i64>,
    /// `max_objs`: 1 for the slots that hold an object.
    pub reg_mask: Vec<f32>,
    /// Class of each object slot (not used by the losses; the centre heatmap alone is ambiguous
    /// when two objects of different classes share a centre cell, and this keeps decoding exact).
    pub class: Vec<i64>,
    /// `max_objs × 2G`.
    pub hps: Vec<f32>,
    /// `max_objs × 2G`: 1 where the landmark offset is labelled.
    pub hps_mask: Vec<f32>,
    /// `max_objs·G × 2`.
    pub hp_offset: Vec<f32>,
    /// `max_objs·G`: flat index of each landmark's integer position on the output map.
    pub hp_ind: Vec<i64>,
    /// `max_objs·G`: 1 where a visible landmark falls inside the map.
    pub hp_mask: Vec<f32>,
}

/// CornerNet's `gaussian_radius` as CenterNet codes it (including its known deviation from the
/// paper), for a box of `height × width` and minimum IoU `min_overlap`.
pub fn gaussian_radius(height: f64, width: f64, min_overlap: f64) -> f64 {
    let b1 = height + width;
    let c1 = width * height * (1.0 - min_overlap) / (1.0 + min_overlap);
    let r1 = (b1 + (b1 * b1 - 4.0 * c1).sqrt()) / 2.0;
    let b2 = 2.0 * (height + width);
    let c2 = (1.0 - min_overlap) * width * height;
    let r2 = (b2 + (b2 * b2 - 16.0 * c2).sqrt()) / 2.0;
    let a3 = 4.0 * min_overlap;
    let b3 = -2.0 * min_overlap * (height + width);
    let c3 = (min_overlap - 1.0) * width * height;
    let r3 = (b3 + (b3 * b3 - 4.0 * a3 * c3).sqrt()) / 2.0;
    r1.min(r2).min(r3)
}

/// CenterNet's `draw_umich_gaussian`: a `(2r+1)²` Gaussian with σ = (2r+1)/6 (values below
/// `f32::EPSILON · max` zeroed) written with element-wise max at integer `center`, clipped.
pub fn draw_gaussian(map: &mut [f32], size: [usize; 2], center: [i64; 2], radius: i64) {
    let [h, w] = [size[0] as i64, size[1] as i64];
    let [x, y] = center;
    if x < 0 || y < 0 || x >= w || y >= h {
        return;
    }
    let d = 2 * radius + 1;
    let sigma = d as f64 / 6.0;
    let (left, right) = (x.min(radius), (w - x).min(radius + 1));
    let (top, bottom) = (y.min(radius), (h - y).min(radius + 1));
    for dy in -top..bottom {
        for dx in -left..right {
            let g = (-((dx * dx + dy * dy) as f64) / (2.0 * sigma * sigma)).exp();
            // numpy's eps for float64 in `gaussian2D`: h[h < eps * h.max()] = 0 (max is 1).
            let g = if g < f64::EPSILON { 0.0 } else { g } as f32;
            let cell = &mut map[((y + dy) * w + (x + dx)) as usize];
            *cell = cell.max(g);
        }
    }
}

impl Targets {
    /// Encode `objects` (in output-map coordinates) into CenterNet's targets.
    pub fn encode(
        objects: &[TargetObject],
        num_classes: usize,
        num_groups: usize,
        max_objs: usize,
        size: [usize; 2],
    ) -> Self {
        let [h, w] = size;
        let (g_n, hw) = (num_groups, h * w);
        let mut t = Targets {
            num_classes,
            num_groups,
            max_objs,
            size,
            hm: vec![0.0; num_classes * hw],
            hm_hp: vec![0.0; num_groups * hw],
            wh: vec![0.0; max_objs * 2],
            reg: vec![0.0; max_objs * 2],
            ind: vec![0; max_objs],
            reg_mask: vec![0.0; max_objs],
            class: vec![0; max_objs],
            hps: vec![0.0; max_objs * 2 * g_n],
            hps_mask: vec![0.0; max_objs * 2 * g_n],
            hp_offset: vec![0.0; max_objs * g_n * 2],
            hp_ind: vec![0; max_objs * g_n],
            hp_mask: vec![0.0; max_objs * g_n],
        };
        for (k, obj) in objects.iter().take(max_objs).enumerate() {
            let clip = |v: f32, hi: usize| v.clamp(0.0, (hi - 1) as f32);
            let [x1, y1, x2, y2] = [
                clip(obj.bbox[0], w),
                clip(obj.bbox[1], h),
                clip(obj.bbox[2], w),
                clip(obj.bbox[3], h),
            ];
            let (bh, bw) = (y2 - y1, x2 - x1);
            if bh <= 0.0 || bw <= 0.0 {
                continue;
            }
            let radius =
                gaussian_radius((bh as f64).ceil(), (bw as f64).ceil(), 0.7).max(0.0) as i64;
            let ct = [(x1 + x2) / 2.0, (y1 + y2) / 2.0];
            let ct_int = [ct[0] as i64, ct[1] as i64];
            t.wh[2 * k] = bw;
            t.wh[2 * k + 1] = bh;
            t.ind[k] = ct_int[1] * w as i64 + ct_int[0];
            t.reg[2 * k] = ct[0] - ct_int[0] as f32;
            t.reg[2 * k + 1] = ct[1] - ct_int[1] as f32;
            t.reg_mask[k] = 1.0;
            t.class[k] = obj.class as i64;
            let hm_c = &mut t.hm[obj.class * hw..(obj.class + 1) * hw];
            if obj.landmarks.is_empty() {
                hm_c[t.ind[k] as usize] = 0.9999;
                t.reg_mask[k] = 0.0;
            }
            for &(g, p) in &obj.landmarks {
                if p[0] < 0.0 || p[1] < 0.0 || p[0] >= w as f32 || p[1] >= h as f32 {
                    continue;
                }
                let j = k * g_n + g;
                t.hps[k * 2 * g_n + 2 * g] = p[0] - ct_int[0] as f32;
                t.hps[k * 2 * g_n + 2 * g + 1] = p[1] - ct_int[1] as f32;
                t.hps_mask[k * 2 * g_n + 2 * g] = 1.0;
                t.hps_mask[k * 2 * g_n + 2 * g + 1] = 1.0;
                let p_int = [p[0] as i64, p[1] as i64];
                t.hp_offset[2 * j] = p[0] - p_int[0] as f32;
                t.hp_offset[2 * j + 1] = p[1] - p_int[1] as f32;
                t.hp_ind[j] = p_int[1] * w as i64 + p_int[0];
                t.hp_mask[j] = 1.0;
                draw_gaussian(&mut t.hm_hp[g * hw..(g + 1) * hw], size, p_int, radius);
            }
            draw_gaussian(
                &mut t.hm[obj.class * hw..(obj.class + 1) * hw],
                size,
                ct_int,
                radius,
            );
        }
        t
    }

    /// Exact inverse for perfect targets: every object with `reg_mask`, its box from
    /// `ind + reg ± wh/2`, and each landmark twice — coarse from `hps` and refined from
    /// `hp_ind + hp_offset` — which must agree.
    pub fn decode(&self) -> Vec<TargetObject> {
        let [_, w] = self.size;
        let hw = self.size[0] * w;
        let g_n = self.num_groups;
        let mut out = Vec::new();
        for k in 0..self.max_objs {
            if self.reg_mask[k] == 0.0 {
                continue;
            }
            let ind = self.ind[k] as usize;
            let (cx, cy) = ((ind % w) as f32, (ind / w) as f32);
            let class = self.class[k] as usize;
            debug_assert_eq!(self.hm[class * hw + ind], 1.0);
            let ct = [cx + self.reg[2 * k], cy + self.reg[2 * k + 1]];
            let (bw, bh) = (self.wh[2 * k], self.wh[2 * k + 1]);
            let bbox = [
                ct[0] - bw / 2.0,
                ct[1] - bh / 2.0,
                ct[0] + bw / 2.0,
                ct[1] + bh / 2.0,
            ];
            let mut landmarks = Vec::new();
            for g in 0..g_n {
                let j = k * g_n + g;
                if self.hp_mask[j] == 0.0 {
                    continue;
                }
                let coarse = [
                    cx + self.hps[k * 2 * g_n + 2 * g],
                    cy + self.hps[k * 2 * g_n + 2 * g + 1],
                ];
                let pi = self.hp_ind[j] as usize;
                let refined = [
                    (pi % w) as f32 + self.hp_offset[2 * j],
                    (pi / w) as f32 + self.hp_offset[2 * j + 1],
                ];
                debug_assert!(
                    (coarse[0] - refined[0]).abs() < 1e-3 && (coarse[1] - refined[1]).abs() < 1e-3
                );
                landmarks.push((g, refined));
            }
            out.push(TargetObject {
                class,
                bbox,
                landmarks,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_matches_centernet_values() {
        // numpy: gaussian_radius((ceil(h), ceil(w)), 0.7) for a few boxes.
        let r = gaussian_radius(10.0, 20.0, 0.7);
        let r1 = (30.0 + (900.0f64 - 4.0 * 200.0 * 0.3 / 1.7).sqrt()) / 2.0;
        assert!(r <= r1);
        // The third root is the binding one for square boxes.
        let s = gaussian_radius(16.0, 16.0, 0.7);
        let b3: f64 = -2.0 * 0.7 * 32.0;
        let c3 = -0.3 * 256.0;
        let r3 = (b3 + (b3 * b3 - 4.0 * 2.8 * c3).sqrt()) / 2.0;
        assert!((s - r3).abs() < 1e-12, "{s} vs {r3}");
        assert!(s > 0.0 && s < 16.0);
    }

    #[test]
    fn gaussian_peaks_at_one_and_clips_at_borders() {
        let mut m = vec![0.0; 5 * 6];
        draw_gaussian(&mut m, [5, 6], [0, 4], 2);
        assert_eq!(m[4 * 6], 1.0);
        let sigma = 5.0 / 6.0;
        let expect = (-1.0f64 / (2.0 * sigma * sigma)).exp() as f32;
        assert!((m[3 * 6] - expect).abs() < 1e-7);
        assert_eq!(m[4 * 6 + 3], 0.0); // outside the 5×5 window
        // Element-wise max, not sum.
        draw_gaussian(&mut m, [5, 6], [0, 4], 2);
        assert_eq!(m[4 * 6], 1.0);
    }

    #[test]
    fn perfect_targets_decode_to_the_objects() {
        let objs = vec![
            TargetObject {
                class: 2,
                bbox: [10.3, 20.7, 40.1, 60.9],
                landmarks: vec![(0, [12.25, 22.5]), (5, [39.0, 59.75])],
            },
            TargetObject {
                class: 0,
                bbox: [70.0, 5.5, 90.5, 30.0],
                landmarks: vec![(5, [80.5, 6.0])],
            },
        ];
        let t = Targets::encode(&objs, 3, 6, 32, [128, 128]);
        let dec = t.decode();
        assert_eq!(dec.len(), 2);
        for (a, b) in dec.iter().zip(&objs) {
            assert_eq!(a.class, b.class);
            for i in 0..4 {
                assert!(
                    (a.bbox[i] - b.bbox[i]).abs() < 1e-4,
                    "{:?} vs {:?}",
                    a.bbox,
                    b.bbox
                );
            }
            assert_eq!(a.landmarks.len(), b.landmarks.len());
            for ((ga, pa), (gb, pb)) in a.landmarks.iter().zip(&b.landmarks) {
                assert_eq!(ga, gb);
                assert!((pa[0] - pb[0]).abs() < 1e-4 && (pa[1] - pb[1]).abs() < 1e-4);
            }
        }
        assert_eq!(t.hm_hp[5 * 128 * 128 + 59 * 128 + 39], 1.0);
    }

    #[test]
    fn unlabelled_objects_are_centres_without_regression() {
        let objs = vec![TargetObject {
            class: 1,
            bbox: [10.0, 10.0, 30.0, 20.0],
            landmarks: vec![],
        }];
        let t = Targets::encode(&objs, 2, 4, 8, [64, 64]);
        assert_eq!(t.reg_mask[0], 0.0);
        assert_eq!(t.hm[64 * 64 + 15 * 64 + 20], 1.0);
        assert!(t.hm_hp.iter().all(|v| *v == 0.0));
        assert!(t.decode().is_empty());
    }

    #[test]
    fn garments_round_trip_through_groups_and_targets() {
        use crate::codec::Scheme;
        use crate::garment::{NUM_LANDMARKS, category};
        let grouping = Grouping::of_scheme(Scheme::Deepmark62).unwrap();
        // A long-sleeved top (category 2) and trousers (category 8), every landmark labelled, on
        // the quarter-pixel grid so the stride-4 round trip is exact.
        let item = |category_id: usize, x0: f32| {
            let cat = category(category_id).unwrap();
            let mut keypoints = vec![[0.0; 3]; NUM_LANDMARKS];
            for (l, k) in keypoints[cat.range()].iter_mut().enumerate() {
                *k = [x0 + 4.0 * l as f32 + 1.0, 100.0 + 2.0 * l as f32, 2.0];
            }
            Item {
                category_id,
                bbox: [x0, 90.0, 4.0 * cat.num_landmarks as f32 + 4.0, 100.0],
                keypoints,
            }
        };
        let items = vec![item(2, 8.0), item(8, 200.0)];
        let objects = objects_from_items(&items, &grouping);
        assert_eq!(objects[0].landmarks.len(), 33);
        let t = Targets::encode(&objects, 13, grouping.num_groups(), 32, [128, 128]);
        let back: Vec<Item> = t
            .decode()
            .iter()
            .map(|o| o.to_item(&grouping).unwrap())
            .collect();
        assert_eq!(back.len(), 2);
        for (a, b) in back.iter().zip(&items) {
            assert_eq!(a.category_id, b.category_id);
            for i in 0..4 {
                assert!(
                    (a.bbox[i] - b.bbox[i]).abs() < 1e-3,
                    "{:?} {:?}",
                    a.bbox,
                    b.bbox
                );
            }
            for (p, q) in a.keypoints.iter().zip(&b.keypoints) {
                assert_eq!(p[2], q[2]);
                assert!((p[0] - q[0]).abs() < 1e-3 && (p[1] - q[1]).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn landmarks_outside_the_map_are_dropped_and_max_objs_is_respected() {
        let objs: Vec<TargetObject> = (0..5)
            .map(|i| TargetObject {
                class: 0,
                bbox: [i as f32 * 10.0, 0.0, i as f32 * 10.0 + 8.0, 8.0],
                landmarks: vec![(0, [-1.0, 3.0]), (1, [2.0 + i as f32 * 10.0, 3.0])],
            })
            .collect();
        let t = Targets::encode(&objs, 1, 2, 3, [32, 64]);
        assert_eq!(t.reg_mask.iter().sum::<f32>(), 3.0);
        assert_eq!(t.hp_mask, vec![0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
    }
}
