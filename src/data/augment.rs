//! CenterNet's training augmentation (`datasets/sample/multi_pose.py`, `utils/image.py`), seeded
//! and reproducible:
//!
//! * one affine warp: scale `max(w, h) · s` with `s` drawn from 0.6, 0.7, …, 1.3, a random centre
//!   kept `get_border(128, ·)` away from the image edges, output `input × input`;
//! * horizontal flip with probability ½ (`x' = w − x − 1`, paired landmarks swapped through the
//!   category flip table, so groups follow);
//! * colour jitter — brightness, contrast and saturation (±0.4, in random order, around the
//!   grey image of the BGR input) — then PCA lighting (σ 0.1) with CenterNet's fixed COCO
//!   eigen-decomposition.
//!
//! The transform (image → network input) is returned so predictions map back to image pixels.

use image::RgbImage;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::codec::STRIDE;
use crate::codec::targets::OutputGarment;
use crate::garment::{Item, Taxonomy};
use crate::preprocess::{Affine, get_affine_transform, warp_affine};

/// CenterNet's COCO colour eigen-values (`_eig_val`).
pub const EIG_VAL: [f32; 3] = [0.214_178_8, 0.018_176_99, 0.003_415_71];
/// CenterNet's COCO colour eigen-vectors (`_eig_vec`, rows; BGR space).
pub const EIG_VEC: [[f32; 3]; 3] = [
    [-0.587_528_5, -0.695_634_8, 0.413_403_5],
    [-0.583_274_7, 0.009_945_35, -0.812_214_1],
    [-0.560_893, 0.718_326_7, 0.411_589_4],
];

/// Augmentation settings (CenterNet's defaults).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AugmentConfig {
    /// Network input side.
    pub input_size: usize,
    /// Random scale and centre (`not_rand_crop` off).
    pub random_crop: bool,
    /// Horizontal flip probability.
    pub flip: f64,
    /// Colour jitter + PCA lighting.
    pub color: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self::train(512)
    }
}

impl AugmentConfig {
    /// CenterNet's training augmentation at `input_size`: random scale/shift, flip with
    /// probability 0.5, colour.
    pub fn train(input_size: usize) -> Self {
        Self {
            input_size,
            random_crop: true,
            flip: 0.5,
            color: true,
        }
    }

    /// No augmentation (plain resize), for overfitting small sets.
    pub fn plain(input_size: usize) -> Self {
        Self {
            input_size,
            random_crop: false,
            flip: 0.0,
            color: false,
        }
    }
}

/// CenterNet's `_get_border`: the largest `border / 2^k` that leaves room inside `size`.
pub fn get_border(border: u32, size: u32) -> u32 {
    let mut i = 1;
    while size.saturating_sub(border / i) <= border / i {
        i *= 2;
    }
    border / i
}

/// An augmented training sample: the warped image and its items, in input pixels.
#[derive(Debug, Clone)]
pub struct Augmented {
    /// The warped input image (`input_size` square).
    pub image: RgbImage,
    /// Items with boxes `[x1, y1, x2, y2]`-derived `[x, y, w, h]` and landmarks in input pixels
    /// (flipped and pair-swapped when `flipped`).
    pub items: Vec<Item>,
    /// Image (after the optional flip) → input transform.
    pub transform: Affine,
    /// Whether the sample was mirrored (flip pairs swapped in `items`).
    pub flipped: bool,
    /// Colour jitter factors applied to the normalised image (see [`color_aug`]).
    pub color: Option<ColorJitter>,
    /// The garments on the output map (input / [`STRIDE`]), computed as CenterNet computes the
    /// training targets' boxes and landmarks ([`output_garment`]).
    pub output: Vec<OutputGarment>,
}

/// The landmarks of an image `width` pixels wide, mirrored left–right as CenterNet mirrors them
/// (`x ↦ width − x − 1`), each landmark taking its flip partner's place (`perm`, from
/// [`Taxonomy::flip_permutation`]).
fn mirrored_keypoints(keypoints: &[[f32; 3]], perm: &[usize], width: f32) -> Vec<[f32; 3]> {
    (0..keypoints.len())
        .map(|g| {
            let k = keypoints[perm[g]];
            [width - k[0] - 1.0, k[1], k[2]]
        })
        .collect()
}

/// CenterNet's box and landmark rule for the targets: the box's corners `[x, y, x + w, y + h]`
/// in `f32`, mirrored as `width − x − 1` when `flipped` (landmarks too, with their flip
/// partners swapped), then each corner and each labelled landmark mapped by the image → output
/// transform in `f64` and stored as `f32`. The width and height come later from the clipped
/// corners, so the Gaussian's radius is rounded from them (not from a width carried through
/// another transform).
pub fn output_garment(
    taxonomy: &Taxonomy,
    item: &Item,
    image_width: u32,
    flipped: bool,
    to_output: &Affine,
) -> OutputGarment {
    // `_coco_box_to_bbox`: the sums in f64 (JSON numbers), the corners stored as f32.
    let b = item.bbox.map(f64::from);
    let mut corners = [b[0], b[1], b[0] + b[2], b[1] + b[3]].map(|v| v as f32);
    let mut keypoints = item.keypoints.clone();
    let w = image_width as f32;
    if flipped {
        corners = [
            w - corners[2] - 1.0,
            corners[1],
            w - corners[0] - 1.0,
            corners[3],
        ];
        keypoints = mirrored_keypoints(&item.keypoints, &taxonomy.flip_permutation(), w);
    }
    let map = |x: f32, y: f32| {
        let p = to_output.apply([f64::from(x), f64::from(y)]);
        [p[0] as f32, p[1] as f32]
    };
    let (p1, p2) = (map(corners[0], corners[1]), map(corners[2], corners[3]));
    for k in keypoints.iter_mut().filter(|k| k[2] > 0.0) {
        let p = map(k[0], k[1]);
        (k[0], k[1]) = (p[0], p[1]);
    }
    OutputGarment {
        category_id: item.category_id,
        corners: [p1[0], p1[1], p2[0], p2[1]],
        keypoints,
    }
}

/// Random factors of one colour augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorJitter {
    /// Order of brightness (0), contrast (1), saturation (2).
    pub order: [usize; 3],
    /// `1 + U(−0.4, 0.4)` for brightness, contrast, saturation.
    pub alphas: [f32; 3],
    /// PCA lighting coefficients `N(0, 0.1)`.
    pub lighting: [f32; 3],
}

fn normal(rng: &mut StdRng) -> f32 {
    // Box–Muller.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Draw the transform, flip and colour factors and apply them to an image and its objects of
/// `taxonomy` (whose flip pairs swap when the image is mirrored).
pub fn augment(
    taxonomy: &Taxonomy,
    img: &RgbImage,
    items: &[Item],
    cfg: &AugmentConfig,
    seed: u64,
) -> Augmented {
    let mut rng = StdRng::seed_from_u64(seed);
    let (w, h) = (img.width(), img.height());
    let mut c = [w as f64 / 2.0, h as f64 / 2.0];
    let mut s = w.max(h) as f64;
    if cfg.random_crop {
        let scales = [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3];
        s *= scales[rng.random_range(0..scales.len())];
        let (wb, hb) = (get_border(128, w), get_border(128, h));
        c[0] = rng.random_range(wb..(w - wb).max(wb + 1)) as f64;
        c[1] = rng.random_range(hb..(h - hb).max(hb + 1)) as f64;
    }
    let flipped = rng.random::<f64>() < cfg.flip;
    let source = if flipped {
        c[0] = w as f64 - c[0] - 1.0;
        image::imageops::flip_horizontal(img)
    } else {
        img.clone()
    };
    let n = cfg.input_size;
    let transform = get_affine_transform(c, s, 0.0, [n, n], false);
    let out = n / STRIDE;
    let to_output = get_affine_transform(c, s, 0.0, [out, out], false);
    let output = items
        .iter()
        .map(|it| output_garment(taxonomy, it, w, flipped, &to_output))
        .collect();
    let image = warp_affine(&source, &transform, n as u32, n as u32);
    let perm = taxonomy.flip_permutation();
    let items = items
        .iter()
        .map(|it| {
            let [x, y, bw, bh] = it.bbox.map(f64::from);
            let (mut x1, mut x2) = (x, x + bw);
            let mut kps = it.keypoints.clone();
            if flipped {
                (x1, x2) = (w as f64 - x2 - 1.0, w as f64 - x1 - 1.0);
                kps = mirrored_keypoints(&it.keypoints, &perm, w as f32);
            }
            let p1 = transform.apply([x1, y]);
            let p2 = transform.apply([x2, y + bh]);
            for k in kps.iter_mut().filter(|k| k[2] > 0.0) {
                let p = transform.apply([k[0] as f64, k[1] as f64]);
                k[0] = p[0] as f32;
                k[1] = p[1] as f32;
            }
            Item {
                category_id: it.category_id,
                bbox: [
                    p1[0] as f32,
                    p1[1] as f32,
                    (p2[0] - p1[0]) as f32,
                    (p2[1] - p1[1]) as f32,
                ],
                keypoints: kps,
            }
        })
        .collect();
    let color = cfg.color.then(|| {
        let mut order = [0, 1, 2];
        for i in (1..3).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let alphas = [0; 3].map(|_| 1.0 + rng.random_range(-0.4f32..0.4));
        let lighting = [0; 3].map(|_| 0.1 * normal(&mut rng));
        ColorJitter {
            order,
            alphas,
            lighting,
        }
    });
    Augmented {
        image,
        items,
        transform,
        flipped,
        color,
        output,
    }
}

/// CenterNet's `color_aug` on a BGR image in `[0, 1]`, HWC: brightness `x·α`, contrast
/// `α·x + (1−α)·mean(grey)`, saturation `α·x + (1−α)·grey` in the drawn order (grey computed
/// once, before), then `x += EIG_VEC · (EIG_VAL ⊙ lighting)`.
pub fn color_aug(bgr: &mut [f32], jitter: &ColorJitter) {
    let n = bgr.len() / 3;
    // OpenCV's BGR→grey weights.
    let grey: Vec<f32> = bgr
        .chunks_exact(3)
        .map(|p| 0.114 * p[0] + 0.587 * p[1] + 0.299 * p[2])
        .collect();
    let mean = grey.iter().sum::<f32>() / n.max(1) as f32;
    for &f in &jitter.order {
        let a = jitter.alphas[f];
        for (p, g) in bgr.chunks_exact_mut(3).zip(&grey) {
            for v in p.iter_mut() {
                *v = match f {
                    0 => *v * a,
                    1 => *v * a + (1.0 - a) * mean,
                    _ => *v * a + (1.0 - a) * g,
                };
            }
        }
    }
    let mut shift = [0.0f32; 3];
    for (i, s) in shift.iter_mut().enumerate() {
        *s = (0..3)
            .map(|j| EIG_VEC[i][j] * EIG_VAL[j] * jitter.lighting[j])
            .sum();
    }
    for p in bgr.chunks_exact_mut(3) {
        for (v, s) in p.iter_mut().zip(shift) {
            *v += s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::garment::taxonomy::{CATEGORIES, DEEPFASHION2, NUM_LANDMARKS};

    fn shirt() -> Item {
        let c = CATEGORIES[0];
        let mut kps = vec![[0.0; 3]; NUM_LANDMARKS];
        kps[c.start + 1] = [30.0, 10.0, 2.0]; // local 2, left collar
        kps[c.start + 5] = [70.0, 12.0, 1.0]; // local 6, its mirror
        Item {
            category_id: 1,
            bbox: [20.0, 5.0, 60.0, 80.0],
            keypoints: kps,
        }
    }

    #[test]
    fn border_matches_centernet() {
        assert_eq!(get_border(128, 600), 128);
        assert_eq!(get_border(128, 200), 64);
        assert_eq!(get_border(128, 100), 32);
    }

    #[test]
    fn same_seed_same_sample_and_inverse_maps_back() {
        let img = RgbImage::from_fn(120, 90, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let cfg = AugmentConfig {
            input_size: 64,
            ..Default::default()
        };
        let a = augment(&DEEPFASHION2, &img, &[shirt()], &cfg, 42);
        let b = augment(&DEEPFASHION2, &img, &[shirt()], &cfg, 42);
        assert_eq!(a.image, b.image);
        assert_eq!(a.items, b.items);
        assert_eq!(a.color, b.color);
        // Landmarks map back through the inverse transform (and the flip) to the originals.
        let inv = a.transform.inverse();
        let c = CATEGORIES[0];
        let k = a.items[0].keypoints[c.start + 1];
        let p = inv.apply([k[0] as f64, k[1] as f64]);
        let orig = shirt().keypoints[if a.flipped { c.start + 5 } else { c.start + 1 }];
        let x = if a.flipped { 120.0 - p[0] - 1.0 } else { p[0] };
        assert!(
            (x - orig[0] as f64).abs() < 1e-3 && (p[1] - orig[1] as f64).abs() < 1e-3,
            "{p:?} {orig:?}"
        );
    }

    #[test]
    fn flip_swaps_paired_landmarks_and_keeps_visibility() {
        let img = RgbImage::new(100, 100);
        let cfg = AugmentConfig {
            input_size: 100,
            random_crop: false,
            flip: 1.0,
            color: false,
        };
        let a = augment(&DEEPFASHION2, &img, &[shirt()], &cfg, 1);
        assert!(a.flipped);
        let c = CATEGORIES[0];
        let k = &a.items[0].keypoints;
        // The centre flips too (c = w − c − 1 = 49), so the warp shifts x by +1 after the
        // mirror x → 100 − x − 1. Left collar (30, 10, v2) becomes the right one.
        assert_eq!(a.transform.apply([0.0, 0.0]), [1.0, 0.0]);
        assert_eq!(k[c.start + 5], [70.0, 10.0, 2.0]);
        assert_eq!(k[c.start + 1], [30.0, 12.0, 1.0]);
        // Box [20, 5, 60, 80]: x2 = 80 → 100 − 80 − 1 + 1 = 20.
        assert_eq!(a.items[0].bbox, [20.0, 5.0, 60.0, 80.0]);
    }

    #[test]
    fn color_aug_formulas() {
        let mut px = vec![0.2, 0.4, 0.6];
        let j = ColorJitter {
            order: [0, 1, 2],
            alphas: [1.5, 1.0, 1.0],
            lighting: [0.0; 3],
        };
        color_aug(&mut px, &j);
        assert!((px[0] - 0.3).abs() < 1e-6 && (px[2] - 0.9).abs() < 1e-6);
        // Saturation 0 gives the grey value everywhere.
        let mut px = vec![0.2, 0.4, 0.6];
        color_aug(
            &mut px,
            &ColorJitter {
                order: [2, 0, 1],
                alphas: [1.0, 1.0, 0.0],
                lighting: [0.0; 3],
            },
        );
        let g = 0.114 * 0.2 + 0.587 * 0.4 + 0.299 * 0.6;
        assert!(px.iter().all(|v| (v - g).abs() < 1e-6));
        // Lighting adds the eigen-vector combination.
        let mut px = vec![0.0; 3];
        color_aug(
            &mut px,
            &ColorJitter {
                order: [0, 1, 2],
                alphas: [1.0; 3],
                lighting: [1.0, 0.0, 0.0],
            },
        );
        assert!((px[0] - EIG_VEC[0][0] * EIG_VAL[0]).abs() < 1e-7);
    }
}
