//! The top-down codec, apart from the network: a garment's landmarks (its category's local
//! order) → the crop → the scheme's landmark groups (`agg81`: 81 heatmaps) as Gaussian targets,
//! and the heatmaps back to the category's landmarks in image pixels. Crops, mirroring and the
//! stride follow the refiner's codec ([`crate::refine::codec`]), so the two stages share one
//! geometry. Encoding then decoding returns the landmarks (tested by round trip).

use super::config::{CPN_STRIDE, CpnConfig};
use crate::codec::grouping::Grouping;
use crate::garment::Category;
use crate::preprocess::Affine;
use crate::refine::codec::{render_pose, to_image, to_input};

/// One garment's training targets in the group layout.
#[derive(Debug, Clone, PartialEq)]
pub struct CpnTarget {
    /// GlobalNet's four targets (levels C2..C5), each `J × h·w`; RefineNet's is
    /// [`CpnTarget::refine`].
    pub global: [Vec<f32>; 4],
    /// RefineNet's target, `J × h·w`.
    pub refine: Vec<f32>,
    /// `J`: 1 where the group holds a *visible* landmark (DeepFashion2 `v = 2`) on the heatmap
    /// (GlobalNet's loss: CPN's `valid > 1.1`).
    pub visible: Vec<f32>,
    /// `J`: 1 where the group holds a labelled landmark (`v ≥ 1`) on the heatmap (RefineNet's
    /// loss: CPN's `valid > 0.1`).
    pub labelled: Vec<f32>,
}

/// A category's landmarks in crop pixels and channel order (see
/// [`crate::refine::codec::to_input`]) → the group layout on the heatmap: `J` points
/// `[x, y, v]` in heatmap pixels; groups the category does not use, unlabelled landmarks and
/// landmarks off the heatmap get `v = 0`.
pub fn to_groups(
    points: &[[f32; 3]],
    cat: &Category,
    grouping: &Grouping,
    size: [usize; 2],
) -> Vec<[f32; 3]> {
    let [h, w] = size;
    let mut out = vec![[0.0f32; 3]; grouping.num_groups()];
    for (j, p) in points.iter().enumerate() {
        let (x, y) = (p[0] / CPN_STRIDE, p[1] / CPN_STRIDE);
        let inside = x >= 0.0 && y >= 0.0 && x <= (w - 1) as f32 && y <= (h - 1) as f32;
        if p[2] > 0.0 && inside {
            out[grouping.group(cat, j)] = [x, y, p[2]];
        }
    }
    out
}

/// Encodes one garment: `landmarks` in image pixels, local order, third value DeepFashion2's
/// visibility; `m` the image → crop transform (mirrored when `flipped`).
pub fn encode(
    landmarks: &[[f32; 3]],
    cat: &Category,
    grouping: &Grouping,
    m: &Affine,
    flipped: bool,
    cfg: &CpnConfig,
) -> CpnTarget {
    let size = cfg.output();
    let groups = to_groups(&to_input(landmarks, cat, m, flipped), cat, grouping, size);
    let render = |sigma: f32| render_pose(&groups, size, sigma);
    CpnTarget {
        global: cfg.global_sigmas.map(render),
        refine: render(cfg.refine_sigma),
        visible: groups
            .iter()
            .map(|p| if p[2] >= 2.0 { 1.0 } else { 0.0 })
            .collect(),
        labelled: groups
            .iter()
            .map(|p| if p[2] > 0.0 { 1.0 } else { 0.0 })
            .collect(),
    }
}

/// The peak of each of `J` heatmaps (`J × h·w`) with sub-pixel precision: the second-order
/// (log-quadratic) fit through the maximum and its neighbours on each axis — exact for a
/// Gaussian, the distribution-aware decoding of Zhang et al. (DARK, 2020) — falling back to
/// CPN's quarter-pixel shift towards the larger neighbour where a neighbour is not positive
/// (none at the border).
/// Returns `[x, y, peak]` in crop pixels.
pub fn decode_heatmaps(maps: &[f32], size: [usize; 2]) -> Vec<[f32; 3]> {
    let [h, w] = size;
    maps.chunks_exact(h * w)
        .map(|map| {
            let (i, peak) =
                map.iter()
                    .copied()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
                        if v > best.1 { (i, v) } else { best }
                    });
            let (x, y) = (i % w, i / w);
            let at = |x: usize, y: usize| map[y * w + x];
            let dx = offset(
                peak,
                (x > 0).then(|| at(x - 1, y)),
                (x + 1 < w).then(|| at(x + 1, y)),
            );
            let dy = offset(
                peak,
                (y > 0).then(|| at(x, y - 1)),
                (y + 1 < h).then(|| at(x, y + 1)),
            );
            [
                (x as f32 + dx) * CPN_STRIDE,
                (y as f32 + dy) * CPN_STRIDE,
                peak,
            ]
        })
        .collect()
}

/// Sub-pixel offset of a peak from its value and its two neighbours on one axis.
fn offset(peak: f32, before: Option<f32>, after: Option<f32>) -> f32 {
    match (before, after) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 && peak > 0.0 => {
            let (la, lp, lb) = (a.ln(), peak.ln(), b.ln());
            let curvature = la - 2.0 * lp + lb;
            if curvature < -1e-6 {
                (0.5 * (la - lb) / curvature).clamp(-0.5, 0.5)
            } else {
                0.0
            }
        }
        (Some(a), Some(b)) if b > a => 0.25,
        (Some(a), Some(b)) if a > b => -0.25,
        // At the border, or a flat top: the peak pixel itself.
        _ => 0.0,
    }
}

/// Decoded group peaks (crop pixels, `J` entries) → the category's landmarks in image pixels,
/// local order, third value the peak: each landmark reads its group's heatmap; a mirrored
/// crop's channels hold the flip partners.
pub fn to_category(
    peaks: &[[f32; 3]],
    cat: &Category,
    grouping: &Grouping,
    m: &Affine,
    flipped: bool,
) -> Vec<[f32; 3]> {
    let groups = grouping.groups_of(cat);
    let xy: Vec<[f32; 2]> = groups.iter().map(|&g| [peaks[g][0], peaks[g][1]]).collect();
    let image = to_image(&xy, cat, m, flipped);
    (0..cat.num_landmarks)
        .map(|l| {
            let channel = if flipped { cat.flip_local(l) } else { l };
            let score = peaks[groups[channel]][2];
            [image[l][0], image[l][1], score]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::scheme::Scheme;
    use crate::garment::{CATEGORIES, category};
    use crate::refine::codec::{CropJitter, crop_transform};
    use crate::topdown::config::{CpnArch, CpnConfig, kernel_sigma};

    fn cfg() -> CpnConfig {
        CpnConfig::new(CpnArch::CpnRes18Slim, Scheme::Agg81, [256, 192]).unwrap()
    }

    /// A garment of `cat` in the box `[100, 80, 120, 160]`: landmarks on a spiral inside it,
    /// visibility cycling 2, 1, 0 (0: not labelled).
    fn garment(cat: &Category) -> Vec<[f32; 3]> {
        (0..cat.num_landmarks)
            .map(|l| {
                let t = l as f32 / cat.num_landmarks as f32;
                let (r, a) = (0.45 * t, 11.0 * t);
                [
                    160.0 + 120.0 * r * a.cos(),
                    160.0 + 160.0 * r * a.sin(),
                    [2.0, 1.0, 0.0][l % 3],
                ]
            })
            .collect()
    }

    #[test]
    fn targets_are_gaussians_of_the_level_widths_in_the_landmarks_groups() {
        let c = cfg();
        let grouping = c.grouping().unwrap();
        let cat = category(2).unwrap();
        let pts = garment(cat);
        let m = crop_transform(
            [100.0, 80.0, 120.0, 160.0],
            c.input,
            c.box_scale,
            CropJitter::NONE,
        );
        let t = encode(&pts, cat, &grouping, &m, false, &c);
        let [h, w] = c.output();
        // Kernels 15/11/9/7 at 64 rows: OpenCV's σ.
        for (s, k) in c.global_sigmas.iter().zip([15, 11, 9, 7]) {
            assert!((s - kernel_sigma(k)).abs() < 1e-6);
        }
        for (l, p) in pts.iter().enumerate() {
            let g = grouping.group(cat, l);
            assert_eq!(
                t.labelled[g],
                if p[2] > 0.0 { 1.0 } else { 0.0 },
                "landmark {l}"
            );
            assert_eq!(
                t.visible[g],
                if p[2] >= 2.0 { 1.0 } else { 0.0 },
                "landmark {l}"
            );
            let q = m.apply([p[0] as f64, p[1] as f64]);
            let (x, y) = (q[0] as f32 / 4.0, q[1] as f32 / 4.0);
            let (xi, yi) = (x.round() as usize, y.round() as usize);
            let maps = [&t.global[0], &t.global[3], &t.refine];
            let sigmas = [c.global_sigmas[0], c.global_sigmas[3], c.refine_sigma];
            for (map, sigma) in maps.into_iter().zip(sigmas) {
                let map = &map[g * h * w..(g + 1) * h * w];
                if p[2] <= 0.0 {
                    assert!(
                        map.iter().all(|&v| v == 0.0),
                        "unlabelled landmark {l} drawn"
                    );
                    continue;
                }
                let argmax = (0..h * w)
                    .max_by(|&a, &b| map[a].total_cmp(&map[b]))
                    .unwrap();
                assert_eq!((argmax % w, argmax / w), (xi, yi), "landmark {l}");
                let d2 = (xi as f32 - x).powi(2) + (yi as f32 - y).powi(2);
                let want = (-d2 / (2.0 * sigma * sigma)).exp();
                assert!((map[yi * w + xi] - want).abs() < 1e-5);
            }
        }
        // Groups the category does not use stay empty.
        let used: Vec<usize> = grouping.groups_of(cat).to_vec();
        for g in (0..81).filter(|g| !used.contains(g)) {
            assert_eq!(t.labelled[g], 0.0);
            assert!(
                t.refine[g * h * w..(g + 1) * h * w]
                    .iter()
                    .all(|&v| v == 0.0)
            );
        }
    }

    #[test]
    fn every_category_round_trips_through_crops_and_the_81_groups() {
        let c = cfg();
        let grouping = c.grouping().unwrap();
        let size = c.output();
        for cat in CATEGORIES.iter() {
            let pts = garment(cat);
            for jitter in [
                CropJitter::NONE,
                CropJitter {
                    flip: true,
                    ..CropJitter::NONE
                },
                CropJitter {
                    scale: 1.1,
                    rotation: 17.0,
                    flip: true,
                    shift: [0.03, -0.02],
                },
            ] {
                let m = crop_transform([100.0, 80.0, 120.0, 160.0], c.input, c.box_scale, jitter);
                let t = encode(&pts, cat, &grouping, &m, jitter.flip, &c);
                let peaks = decode_heatmaps(&t.refine, size);
                let back = to_category(&peaks, cat, &grouping, &m, jitter.flip);
                assert_eq!(back.len(), cat.num_landmarks);
                for (l, (p, q)) in pts.iter().zip(&back).enumerate() {
                    if p[2] <= 0.0 {
                        continue;
                    }
                    let err = ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
                    assert!(
                        err < 0.02,
                        "{} landmark {l} {jitter:?}: {p:?} → {q:?}",
                        cat.name
                    );
                    // The sampled peak: at most half a pixel from the point on each axis.
                    let s = c.refine_sigma;
                    assert!(
                        q[2] >= (-0.5f32 / (2.0 * s * s)).exp() - 1e-6,
                        "peak {}",
                        q[2]
                    );
                }
            }
        }
    }

    #[test]
    fn log_quadratic_peak_is_exact_for_a_gaussian() {
        let size = [20, 16];
        let maps = render_pose(&[[7.3, 11.6, 1.0], [0.0, 0.0, 1.0]], size, 1.4);
        let d = decode_heatmaps(&maps, size);
        assert!((d[0][0] - 7.3 * CPN_STRIDE).abs() < 1e-3, "{:?}", d[0]);
        assert!((d[0][1] - 11.6 * CPN_STRIDE).abs() < 1e-3, "{:?}", d[0]);
        // At the border a neighbour is missing: the peak pixel itself.
        assert_eq!([d[1][0], d[1][1]], [0.0, 0.0]);
        assert!((d[1][2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn quarter_shift_where_the_fit_is_impossible() {
        // A one-hot map with one positive neighbour: CPN's quarter towards it.
        let mut map = vec![0.0f32; 25];
        map[12] = 1.0;
        map[13] = 0.5;
        let d = decode_heatmaps(&map, [5, 5]);
        assert_eq!([d[0][0], d[0][1]], [2.25 * CPN_STRIDE, 2.0 * CPN_STRIDE]);
    }
}
