//! CenterNet's image pre-processing (`utils/image.py`, `detectors/base_detector.py`).
//!
//! * [`get_affine_transform`]: the 3-point affine CenterNet uses for every warp (test-time
//!   `fix_res` resize, training scale/shift augmentation) and its inverse, which maps
//!   predictions back to image pixels.
//! * [`warp_affine`]: bilinear warp with a black border (OpenCV `warpAffine`, `INTER_LINEAR`,
//!   `BORDER_CONSTANT`) in OpenCV's fixed-point arithmetic for `uint8` images.
//! * [`normalize_bgr`]: BGR channel order (CenterNet reads images with `cv2.imread` and never
//!   converts), `/255`, then CenterNet's mean/std (given in BGR order).

use image::RgbImage;

/// CenterNet's COCO mean, **BGR** order (`coco_hp.py`, full published precision).
pub const MEAN_BGR: [f64; 3] = [0.407_896_54, 0.447_193_02, 0.470_261_15];
/// CenterNet's COCO std, **BGR** order.
pub const STD_BGR: [f64; 3] = [0.288_638_28, 0.274_081_64, 0.278_098_35];

/// A 2×3 affine map `p' = A·[x, y, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(pub [[f64; 3]; 2]);

impl Affine {
    /// Maps a point.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        let m = &self.0;
        [
            m[0][0] * p[0] + m[0][1] * p[1] + m[0][2],
            m[1][0] * p[0] + m[1][1] * p[1] + m[1][2],
        ]
    }

    /// The inverse transform, in the order of operations of OpenCV's `invertAffineTransform`
    /// (the cofactors times the reciprocal of the determinant; all zero for a singular map), so
    /// that [`warp_affine`] steps through the same source positions as `cv2.warpAffine`.
    pub fn inverse(&self) -> Affine {
        let m = &self.0;
        let d = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        let d = if d != 0.0 { 1.0 / d } else { 0.0 };
        let (a11, a22, a12, a21) = (m[1][1] * d, m[0][0] * d, -m[0][1] * d, -m[1][0] * d);
        let b1 = -a11 * m[0][2] - a12 * m[1][2];
        let b2 = -a21 * m[0][2] - a22 * m[1][2];
        Affine([[a11, a12, b1], [a21, a22, b2]])
    }

    /// The affine that maps the three `src` points onto the three `dst` points
    /// (`cv2.getAffineTransform`).
    pub fn from_points(src: [[f64; 2]; 3], dst: [[f64; 2]; 3]) -> Affine {
        // Solve [x y 1]·coefs = dst for each output coordinate (3×3 system, Cramer's rule).
        let det3 = |m: [[f64; 3]; 3]| {
            m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
                - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        };
        let a = [
            [src[0][0], src[0][1], 1.0],
            [src[1][0], src[1][1], 1.0],
            [src[2][0], src[2][1], 1.0],
        ];
        let d = det3(a);
        let mut out = [[0.0; 3]; 2];
        for (row, o) in out.iter_mut().enumerate() {
            for (col, v) in o.iter_mut().enumerate() {
                let mut m = a;
                for (r, mr) in m.iter_mut().enumerate() {
                    mr[col] = dst[r][row];
                }
                *v = det3(m) / d;
            }
        }
        Affine(out)
    }
}

/// CenterNet's `get_affine_transform(center, scale, rot, output_size)`: maps a square of side
/// `scale` (width; CenterNet uses `scale[0]` for both axes) centred on `center`, rotated by
/// `rot_deg`, onto an `output_size = [w, h]` image. `inv` returns the inverse map. As in
/// CenterNet (`src/lib/utils/image.py`), the three point pairs are `float32` arrays: the
/// second source point is computed in `f64` and stored as `f32`, the third ones in `f32`; the
/// map is then solved from them in `f64` (`cv2.getAffineTransform`).
pub fn get_affine_transform(
    center: [f64; 2],
    scale: f64,
    rot_deg: f64,
    output_size: [usize; 2],
    inv: bool,
) -> Affine {
    let (dst_w, dst_h) = (output_size[0] as f64, output_size[1] as f64);
    let rot = rot_deg.to_radians();
    let (sn, cs) = rot.sin_cos();
    let src_dir = {
        let p = [0.0, -0.5 * scale];
        [p[0] * cs - p[1] * sn, p[0] * sn + p[1] * cs]
    };
    let dst_dir = [0.0f32, (-0.5 * dst_w) as f32];
    // `get_3rd_point`: the point a quarter turn from `a` about `b`, in f32.
    let third = |a: [f32; 2], b: [f32; 2]| {
        let d = [a[0] - b[0], a[1] - b[1]];
        [b[0] - d[1], b[1] + d[0]]
    };
    let s0 = center.map(|v| v as f32);
    let s1 = [
        (f64::from(s0[0]) + src_dir[0]) as f32,
        (f64::from(s0[1]) + src_dir[1]) as f32,
    ];
    let d0 = [(dst_w * 0.5) as f32, (dst_h * 0.5) as f32];
    let d1 = [d0[0] + dst_dir[0], d0[1] + dst_dir[1]];
    let wide = |p: [f32; 2]| p.map(f64::from);
    let src = [s0, s1, third(s0, s1)].map(wide);
    let dst = [d0, d1, third(d0, d1)].map(wide);
    if inv {
        Affine::from_points(dst, src)
    } else {
        Affine::from_points(src, dst)
    }
}

/// CenterNet's test-time `fix_res` transform for an image of `width × height`: centre
/// `(w/2, h/2)`, scale `max(w, h)`, onto an `input × input` square.
pub fn fix_res_transform(width: u32, height: u32, input: usize) -> Affine {
    let center = [width as f64 / 2.0, height as f64 / 2.0];
    let scale = width.max(height) as f64;
    get_affine_transform(center, scale, 0.0, [input, input], false)
}

/// Bilinear warp of an RGB image by `m` (image → output coordinates) into `out_w × out_h`,
/// black outside the source, in the fixed-point arithmetic OpenCV uses for 8-bit images up to
/// version 4.10 — the OpenCV of CenterNet's `pre_process` and augmentation — so that it gives
/// `cv2.warpAffine(img, m, (out_w, out_h), flags=cv2.INTER_LINEAR)`'s pixels
/// (`BORDER_CONSTANT`, value 0). From OpenCV's `modules/imgproc/src/imgwarp.cpp`
/// (`WarpAffineInvoker`, `remapBilinear`, `initInterTab2D`):
///
/// * the map is inverted in `f64` as `invertAffineTransform` does ([`Affine::inverse`]);
/// * an output pixel's source position is fixed point with 10 fractional bits,
///   `round((M₀₁·y + M₀₂)·1024) + 16` per row plus `round(M₀₀·x·1024)` per column (rounding
///   half to even, as `cvRound`), then shifted to 5 fractional bits (1/32 pixel);
/// * the four neighbours' weights are the products of the 1-D weights `1 − k/32` and `k/32`
///   rounded to 1/32768 (they sum to 32768 exactly for the bilinear table);
/// * the value is `(Σ wᵢ·pᵢ + 2¹⁴) >> 15`; a neighbour outside the image counts as 0, and a
///   pixel whose four neighbours are all outside is 0.
///
/// `tests/preprocess.rs` holds it to OpenCV 4.10 pixel for pixel on four warps. OpenCV 4.11 and
/// later interpolate in `f32` instead; on the same warps they differ from 4.10 on 4–10 % of the
/// values, by up to 3 grey levels.
pub fn warp_affine(img: &RgbImage, m: &Affine, out_w: u32, out_h: u32) -> RgbImage {
    const INTER_BITS: i64 = 5;
    const TAB: i64 = 1 << INTER_BITS;
    const AB_BITS: i64 = 10;
    const AB_SCALE: f64 = (1 << AB_BITS) as f64;
    const ROUND_DELTA: i64 = (1 << AB_BITS) / TAB / 2;
    let inv = m.inverse().0;
    let weights = bilinear_weights();
    let (w, h) = (img.width() as i64, img.height() as i64);
    let src = img.as_raw();
    let mut out = RgbImage::new(out_w, out_h);
    let cv_round = |v: f64| v.round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64) as i64;
    let column = |m: f64| -> Vec<i64> {
        (0..out_w as i64)
            .map(|x| cv_round(m * x as f64 * AB_SCALE))
            .collect()
    };
    let (adelta, bdelta) = (column(inv[0][0]), column(inv[1][0]));
    let at = |x: i64, y: i64, c: usize| -> i32 {
        if x < 0 || y < 0 || x >= w || y >= h {
            0
        } else {
            i32::from(src[((y * w + x) * 3) as usize + c])
        }
    };
    let dst: &mut [u8] = &mut out;
    for y in 0..out_h as i64 {
        let x0 = cv_round((inv[0][1] * y as f64 + inv[0][2]) * AB_SCALE) + ROUND_DELTA;
        let y0 = cv_round((inv[1][1] * y as f64 + inv[1][2]) * AB_SCALE) + ROUND_DELTA;
        for x in 0..out_w as i64 {
            let fx = (x0 + adelta[x as usize]) >> (AB_BITS - INTER_BITS);
            let fy = (y0 + bdelta[x as usize]) >> (AB_BITS - INTER_BITS);
            let (sx, sy) = (fx >> INTER_BITS, fy >> INTER_BITS);
            if sx >= w || sy >= h || sx + 1 < 0 || sy + 1 < 0 {
                continue; // all four neighbours outside: the border value, 0
            }
            let wt = &weights[((fy & (TAB - 1)) * TAB + (fx & (TAB - 1))) as usize];
            let o = ((y * out_w as i64 + x) * 3) as usize;
            for c in 0..3 {
                let v = at(sx, sy, c) * wt[0]
                    + at(sx + 1, sy, c) * wt[1]
                    + at(sx, sy + 1, c) * wt[2]
                    + at(sx + 1, sy + 1, c) * wt[3];
                dst[o + c] = ((v + (1 << 14)) >> 15).clamp(0, 255) as u8;
            }
        }
    }
    out
}

/// OpenCV's bilinear weights for 8-bit images (`initInterTab2D` with `INTER_LINEAR`): for each
/// of the 32 × 32 sub-pixel positions, the weights of the top-left, top-right, bottom-left and
/// bottom-right neighbours in units of 1/32768: the `f32` products of the 1-D weights, rounded
/// (`saturate_cast<short>`). Every row of this table sums to 32768 (a unit test checks it), so
/// OpenCV's correction of the sum never applies. Made once per process.
fn bilinear_weights() -> &'static [[i32; 4]] {
    static TABLE: std::sync::OnceLock<Vec<[i32; 4]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        const TAB: usize = 32;
        let one_d = |k: usize| {
            let f = k as f32 / TAB as f32;
            [1.0 - f, f]
        };
        (0..TAB * TAB)
            .map(|i| {
                let (ty, tx) = (one_d(i / TAB), one_d(i % TAB));
                let mut w = [0; 4];
                for (k, wk) in w.iter_mut().enumerate() {
                    *wk = (f64::from(ty[k / 2] * tx[k % 2]) * 32768.0).round_ties_even() as i32;
                }
                w
            })
            .collect()
    })
}

/// `(B, G, R)/255` normalised with CenterNet's mean/std, as a CHW `Vec` (channel 0 = blue).
pub fn normalize_bgr(img: &RgbImage) -> Vec<f32> {
    normalize_hwc(&bgr_unit(img))
}

/// The image as HWC floats in BGR order, `/255` (CenterNet's `inp / 255.` before colour
/// augmentation and normalisation).
pub fn bgr_unit(img: &RgbImage) -> Vec<f32> {
    img.pixels()
        .flat_map(|p| [p.0[2], p.0[1], p.0[0]].map(|v| v as f32 / 255.0))
        .collect()
}

/// HWC BGR values in `[0, 1]` → CHW normalised with CenterNet's mean/std.
pub fn normalize_hwc(hwc: &[f32]) -> Vec<f32> {
    let n = hwc.len() / 3;
    let mean = MEAN_BGR.map(|m| m as f32);
    let std = STD_BGR.map(|s| s as f32);
    let mut out = vec![0.0f32; 3 * n];
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * n + i] = (px[c] - mean[c]) / std[c];
        }
    }
    out
}

/// One pre-processed image: the network input (CHW, normalised) and the transform that made
/// it, whose inverse maps input pixels back to the original image.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The network input, `3 × size × size`.
    pub input: Vec<f32>,
    /// Side of the square input.
    pub size: usize,
    /// Original image → input pixels.
    pub transform: Affine,
}

impl Prepared {
    /// The input of the mirror image (each row reversed): exactly what preparing the
    /// left–right flipped warp would give, since normalisation is per pixel.
    pub fn mirrored_input(&self) -> Vec<f32> {
        let n = self.size;
        self.input
            .chunks_exact(n)
            .flat_map(|row| row.iter().rev().copied())
            .collect()
    }
}

/// CenterNet's test pre-processing of `img` at `size × size`: the `fix_res` warp (centre of the
/// image, longer side onto the input side) with the image magnified by `scale` (multi-scale
/// testing; 1 for one pass), BGR, normalised.
pub fn prepare(img: &RgbImage, size: usize, scale: f64) -> Prepared {
    let (w, h) = (img.width() as f64, img.height() as f64);
    let transform = get_affine_transform(
        [w / 2.0, h / 2.0],
        w.max(h) / scale,
        0.0,
        [size, size],
        false,
    );
    let warped = warp_affine(img, &transform, size as u32, size as u32);
    Prepared {
        input: normalize_bgr(&warped),
        size,
        transform,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_weights_sum_to_one_and_follow_the_fractions() {
        let table = bilinear_weights();
        assert_eq!(table.len(), 32 * 32);
        assert!(table.iter().all(|w| w.iter().sum::<i32>() == 32768));
        // No fraction: all weight on the top-left neighbour; half a pixel right and down: a
        // quarter each.
        assert_eq!(table[0], [32768, 0, 0, 0]);
        assert_eq!(table[16 * 32 + 16], [8192; 4]);
    }

    #[test]
    fn fix_res_maps_centre_and_scales_isotropically() {
        let t = fix_res_transform(800, 400, 512);
        let c = t.apply([400.0, 200.0]);
        assert!((c[0] - 256.0).abs() < 1e-9 && (c[1] - 256.0).abs() < 1e-9);
        let k = 512.0 / 800.0;
        let p = t.apply([0.0, 0.0]);
        assert!((p[0] - (256.0 - 400.0 * k)).abs() < 1e-9);
        assert!((p[1] - (256.0 - 200.0 * k)).abs() < 1e-9);
    }

    #[test]
    fn inverse_round_trips_with_rotation() {
        let t = get_affine_transform([123.0, 77.0], 300.0, 17.0, [256, 192], false);
        let ti = get_affine_transform([123.0, 77.0], 300.0, 17.0, [256, 192], true);
        for p in [[0.0, 0.0], [55.5, 300.25], [-12.0, 4.0]] {
            let q = ti.apply(t.apply(p));
            let r = t.inverse().apply(t.apply(p));
            assert!((q[0] - p[0]).abs() < 1e-9 && (q[1] - p[1]).abs() < 1e-9);
            assert!((r[0] - p[0]).abs() < 1e-9 && (r[1] - p[1]).abs() < 1e-9);
        }
    }

    #[test]
    fn normalisation_is_bgr() {
        let img = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 0]));
        let v = normalize_bgr(&img);
        // Red lands in channel 2.
        assert!((v[2] as f64 - (1.0 - MEAN_BGR[2]) / STD_BGR[2]).abs() < 1e-5);
        assert!((v[0] as f64 - (0.0 - MEAN_BGR[0]) / STD_BGR[0]).abs() < 1e-5);
    }

    #[test]
    fn mirrored_input_equals_preparing_the_mirror_image() {
        let mut img = RgbImage::new(7, 5);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = image::Rgb([(x * 30) as u8, (y * 50) as u8, ((x + y) * 9) as u8]);
        }
        let p = prepare(&img, 8, 1.0);
        let warped = warp_affine(&img, &p.transform, 8, 8);
        let flipped = normalize_bgr(&image::imageops::flip_horizontal(&warped));
        assert_eq!(p.mirrored_input(), flipped);
        // Scale 1 is CenterNet's fix_res.
        assert_eq!(p.transform, fix_res_transform(7, 5, 8));
    }

    #[test]
    fn warp_identity_keeps_pixels_and_blacks_out_the_outside() {
        let mut img = RgbImage::new(4, 3);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = image::Rgb([(x * 40) as u8, (y * 70) as u8, 9]);
        }
        let shift = Affine([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]);
        let out = warp_affine(&img, &shift, 5, 3);
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(1, 2).0, img.get_pixel(0, 2).0);
        assert_eq!(out.get_pixel(4, 1).0, img.get_pixel(3, 1).0);
    }
}
