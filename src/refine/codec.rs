//! The refiner's codec, apart from the network (mmpose's split): the crop around a garment,
//! the input pose rendered as Gaussian heatmaps, the training target (a one-hot heatmap split
//! bilinearly, and the coordinates) and the decoding of output heatmaps back to image pixels.
//! Coordinates on the output heatmap are input pixels divided by the stride (4), so encoding
//! and decoding invert each other exactly (tested by round trip).

use image::RgbImage;

use super::config::RefinerConfig;
use crate::garment::Category;
use crate::preprocess::{Affine, get_affine_transform, normalize_bgr, warp_affine};

/// Output heatmap stride relative to the refiner's input.
pub const REFINE_STRIDE: f32 = 4.0;

/// How one crop is drawn: extra scale, rotation and mirroring (all identity at test time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropJitter {
    /// Multiplies the crop's side (> 1 zooms out).
    pub scale: f64,
    /// Degrees, counter-clockwise in the image.
    pub rotation: f64,
    /// Mirror the crop left–right (landmarks then swap with their flip partners).
    pub flip: bool,
    /// Shift of the crop centre, as fractions of the box's width and height.
    pub shift: [f64; 2],
}

impl CropJitter {
    /// No jitter: the plain crop.
    pub const NONE: CropJitter = CropJitter {
        scale: 1.0,
        rotation: 0.0,
        flip: false,
        shift: [0.0, 0.0],
    };
}

/// The image → crop transform for a garment box `[x, y, w, h]`: the box's centre at the
/// crop's centre; the box grown to the input's aspect ratio (`input = [h, w]`), then by
/// `box_scale` (PoseFix 1.25), fills the crop.
pub fn crop_transform(
    bbox: [f32; 4],
    input: [usize; 2],
    box_scale: f32,
    jitter: CropJitter,
) -> Affine {
    let [x, y, w, h] = bbox.map(f64::from);
    let (w, h) = (w.max(1.0), h.max(1.0));
    let center = [
        x + w / 2.0 + jitter.shift[0] * w,
        y + h / 2.0 + jitter.shift[1] * h,
    ];
    let aspect = input[1] as f64 / input[0] as f64;
    let width = if w > aspect * h { w } else { h * aspect };
    let side = width * box_scale as f64 * jitter.scale;
    let m = get_affine_transform(center, side, jitter.rotation, [input[1], input[0]], false);
    if jitter.flip { mirror(&m, input[1]) } else { m }
}

/// `m` followed by the left–right mirror of a `width`-pixel-wide crop (`x → width − 1 − x`).
pub fn mirror(m: &Affine, width: usize) -> Affine {
    let r = m.0;
    let wm1 = width as f64 - 1.0;
    Affine([[-r[0][0], -r[0][1], wm1 - r[0][2]], r[1]])
}

/// The crop's pixels: CHW, BGR, normalised as the detector's input.
pub fn crop_pixels(image: &RgbImage, m: &Affine, input: [usize; 2]) -> Vec<f32> {
    normalize_bgr(&warp_affine(image, m, input[1] as u32, input[0] as u32))
}

/// The refiner's input for one garment: the crop of `bbox` (`[x, y, w, h]`) concatenated with
/// the input pose `pose` (the category's landmarks in local order, image pixels, third value >
/// 0 where present) rendered as heatmaps: `(3 + J) × h × w`, and the image → input transform.
/// In a mirrored crop channel `j` holds the pose's landmark `flip(j)`, so that the crop looks
/// like an ordinary garment to the network.
pub fn make_input(
    image: &RgbImage,
    bbox: [f32; 4],
    pose: &[[f32; 3]],
    cat: &Category,
    cfg: &RefinerConfig,
    jitter: CropJitter,
) -> (Vec<f32>, Affine) {
    let m = crop_transform(bbox, cfg.input, cfg.box_scale, jitter);
    let mut input = crop_pixels(image, &m, cfg.input);
    let points = to_input(pose, cat, &m, jitter.flip);
    input.extend(render_pose(&points, cfg.input, cfg.sigma));
    (input, m)
}

/// Landmarks in image pixels → the crop's pixels, in the crop's channel order (mirrored crops
/// swap flip partners). The third value is kept.
pub fn to_input(points: &[[f32; 3]], cat: &Category, m: &Affine, flipped: bool) -> Vec<[f32; 3]> {
    (0..points.len())
        .map(|j| {
            let p = points[if flipped { cat.flip_local(j) } else { j }];
            let q = m.apply([p[0] as f64, p[1] as f64]);
            [q[0] as f32, q[1] as f32, p[2]]
        })
        .collect()
}

/// The inverse of [`to_input`] for decoded positions: crop pixels in channel order → image
/// pixels in the category's local order.
pub fn to_image(points: &[[f32; 2]], cat: &Category, m: &Affine, flipped: bool) -> Vec<[f32; 2]> {
    let inv = m.inverse();
    let mut out = vec![[0.0; 2]; points.len()];
    for (j, p) in points.iter().enumerate() {
        let q = inv.apply([p[0] as f64, p[1] as f64]);
        out[if flipped { cat.flip_local(j) } else { j }] = [q[0] as f32, q[1] as f32];
    }
    out
}

/// The input pose as `J` Gaussian heatmaps of `size = [h, w]` (`J × h × w`, peak 1): landmark
/// `j` at `points[j] = [x, y, present]` (input pixels); an absent landmark (`present ≤ 0`)
/// leaves its map zero. Values below e⁻⁸ are left zero (the Gaussian's support is 4σ).
pub fn render_pose(points: &[[f32; 3]], size: [usize; 2], sigma: f32) -> Vec<f32> {
    let [h, w] = size;
    let mut out = vec![0.0f32; points.len() * h * w];
    let radius = 4.0 * sigma;
    let inv = 1.0 / (2.0 * sigma * sigma);
    for (j, p) in points.iter().enumerate() {
        if p[2] <= 0.0 || !(p[0].is_finite() && p[1].is_finite()) {
            continue;
        }
        let map = &mut out[j * h * w..(j + 1) * h * w];
        let x0 = ((p[0] - radius).floor().max(0.0)) as usize;
        let y0 = ((p[1] - radius).floor().max(0.0)) as usize;
        let x1 = ((p[0] + radius).ceil().min(w as f32 - 1.0)).max(-1.0);
        let y1 = ((p[1] + radius).ceil().min(h as f32 - 1.0)).max(-1.0);
        if x1 < 0.0 || y1 < 0.0 {
            continue;
        }
        for y in y0..=y1 as usize {
            let dy = y as f32 - p[1];
            for x in x0..=x1 as usize {
                let dx = x as f32 - p[0];
                map[y * w + x] = (-(dx * dx + dy * dy) * inv).exp();
            }
        }
    }
    out
}

/// One landmark set encoded as a training target on a heatmap of `size = [h, w]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// `J × h·w`: each valid landmark's unit mass split bilinearly among its four pixels.
    pub dist: Vec<f32>,
    /// `J × 2`: the coordinates, heatmap pixels.
    pub xy: Vec<f32>,
    /// `J`: 1 where the landmark is labelled and lies on the heatmap, else 0.
    pub valid: Vec<f32>,
}

/// Encodes landmarks `[x, y, v]` in input pixels (`v > 0`: labelled) as a [`Target`] on the
/// heatmap of `size = [h, w]`. A landmark outside `[0, w−1] × [0, h−1]` (after the stride)
/// cannot be represented and is not valid.
pub fn encode_target(points: &[[f32; 3]], size: [usize; 2]) -> Target {
    let [h, w] = size;
    let j = points.len();
    let mut t = Target {
        dist: vec![0.0; j * h * w],
        xy: vec![0.0; j * 2],
        valid: vec![0.0; j],
    };
    for (k, p) in points.iter().enumerate() {
        let (x, y) = (p[0] / REFINE_STRIDE, p[1] / REFINE_STRIDE);
        let inside = x >= 0.0 && y >= 0.0 && x <= (w - 1) as f32 && y <= (h - 1) as f32;
        if p[2] <= 0.0 || !inside {
            continue;
        }
        t.valid[k] = 1.0;
        t.xy[2 * k] = x;
        t.xy[2 * k + 1] = y;
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let map = &mut t.dist[k * h * w..(k + 1) * h * w];
        for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
            for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
                let (xx, yy) = (x0 + dx, y0 + dy);
                if wx * wy > 0.0 && xx < w && yy < h {
                    map[yy * w + xx] += wx * wy;
                }
            }
        }
    }
    t
}

/// Soft-argmax of `J` heatmaps of logits (`J × h·w`, host): each landmark's expected position
/// in input pixels.
pub fn decode_integral(logits: &[f32], size: [usize; 2]) -> Vec<[f32; 2]> {
    let [h, w] = size;
    logits
        .chunks_exact(h * w)
        .map(|map| {
            let max = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let (mut sum, mut sx, mut sy) = (0.0f64, 0.0f64, 0.0f64);
            for (i, &v) in map.iter().enumerate() {
                let e = ((v - max) as f64).exp();
                sum += e;
                sx += e * (i % w) as f64;
                sy += e * (i / w) as f64;
            }
            [
                (sx / sum) as f32 * REFINE_STRIDE,
                (sy / sum) as f32 * REFINE_STRIDE,
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_round_trips_through_the_integral() {
        let size = [16, 12];
        let points = [
            [13.0, 22.5, 2.0],
            [0.0, 0.0, 1.0],
            [40.0, 5.0, 2.0],
            [7.3, 59.9, 1.0],
            [5.0, 5.0, 0.0],
        ];
        let t = encode_target(&points, size);
        assert_eq!(t.valid, vec![1.0, 1.0, 1.0, 1.0, 0.0]);
        // Logits whose softmax is the target distribution decode to the encoded point.
        let logits: Vec<f32> = t.dist.iter().map(|&d| d.max(1e-30).ln()).collect();
        let back = decode_integral(&logits, size);
        for (p, q) in points.iter().zip(&back).take(4) {
            assert!(
                (p[0] - q[0]).abs() < 1e-3 && (p[1] - q[1]).abs() < 1e-3,
                "{p:?} → {q:?}"
            );
        }
        for k in 0..4 {
            let mass: f32 = t.dist[k * 192..(k + 1) * 192].iter().sum();
            assert!((mass - 1.0).abs() < 1e-6);
        }
        // Off the heatmap: not valid (x = 48/4 = 12 > w − 1 = 11).
        assert_eq!(encode_target(&[[48.0, 4.0, 2.0]], size).valid, vec![0.0]);
    }

    #[test]
    fn gaussians_peak_at_the_landmark_and_absent_ones_stay_zero() {
        let size = [32, 24];
        let maps = render_pose(
            &[[10.0, 20.0, 1.0], [3.0, 3.0, 0.0], [-50.0, 5.0, 1.0]],
            size,
            2.0,
        );
        let (h, w) = (32, 24);
        let m0 = &maps[..h * w];
        let argmax = (0..h * w).max_by(|&a, &b| m0[a].total_cmp(&m0[b])).unwrap();
        assert_eq!((argmax % w, argmax / w), (10, 20));
        assert!((m0[20 * w + 10] - 1.0).abs() < 1e-6);
        // One σ away: e^(−1/2).
        assert!((m0[20 * w + 12] - (-0.5f32).exp()).abs() < 1e-6);
        assert!(maps[h * w..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn crop_centres_the_box_and_mirror_flips_it() {
        let input = [64, 48];
        let m = crop_transform([100.0, 50.0, 40.0, 80.0], input, 1.25, CropJitter::NONE);
        let c = m.apply([120.0, 90.0]);
        assert!(
            (c[0] - 24.0).abs() < 1e-9 && (c[1] - 32.0).abs() < 1e-9,
            "{c:?}"
        );
        // Height 80 fills 64 / 1.25 rows (the box is taller than the input's aspect).
        let top = m.apply([120.0, 50.0]);
        assert!((top[1] - (32.0 - 32.0 / 1.25)).abs() < 1e-9, "{top:?}");
        let f = crop_transform(
            [100.0, 50.0, 40.0, 80.0],
            input,
            1.25,
            CropJitter {
                flip: true,
                ..CropJitter::NONE
            },
        );
        let (a, b) = (m.apply([105.0, 60.0]), f.apply([105.0, 60.0]));
        assert!((a[0] + b[0] - 47.0).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9);
    }
}
