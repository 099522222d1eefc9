//! The synthetic default dataset: DeepFashion2-format images whose garments are textured
//! polygons through per-category landmark templates, with random placement, rotation and
//! per-landmark (elastic) jitter, several items per image, occlusion between them
//! (visibility 1 where a later garment covers a landmark) and random backgrounds. Written as
//! raw per-image JSON + JPEG and as the COCO form; deterministic for a seed; licence-clean.
//!
//! Templates ([`Templates`]) are mean landmark positions relative to the box, derived from real
//! annotations (`deepmark templates`, committed as `templates.json`). Categories or landmarks
//! absent from those annotations borrow the mean position of the same `deepmark62` group in
//! the other categories, then the mirror of their flip partner.

use std::collections::BTreeMap;
use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage};
use imageproc::drawing::draw_polygon_mut;
use imageproc::point::Point;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::deepfashion2::{CocoFile, Sample, SkipReport, convert_raw_dir};
use crate::codec::grouping::Grouping;
use crate::codec::scheme::Scheme;
use crate::error::Result;
use crate::garment::taxonomy::{CATEGORIES, category};
use crate::io::{Limits, create_dir_all, save_image_atomic, write_json_compact};

/// Per category: box aspect (h / w) and each local landmark's mean `[x, y]` in box units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Templates {
    /// Box aspect (height / width) per category id.
    pub aspect: BTreeMap<usize, f32>,
    /// Mean position of each local landmark in box units, per category id.
    pub landmarks: BTreeMap<usize, Vec<[f32; 2]>>,
}

impl Templates {
    /// The committed templates (derived from the 32 real DeepFashion2 fixture images).
    pub fn bundled() -> Self {
        serde_json::from_str(include_str!("templates.json")).expect("valid bundled templates")
    }

    /// Mean layouts from real annotations, completed through the `deepmark62` groups and flip
    /// pairs for whatever the annotations lack.
    pub fn derive(samples: &[Sample]) -> Self {
        let mut sums: BTreeMap<usize, Vec<([f64; 2], usize)>> = BTreeMap::new();
        let mut aspects: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
        for item in samples.iter().flat_map(|s| &s.items) {
            let cat = category(item.category_id).expect("validated");
            let [x, y, w, h] = item.bbox.map(f64::from);
            let a = aspects.entry(cat.id).or_default();
            a.0 += h / w;
            a.1 += 1;
            let e = sums
                .entry(cat.id)
                .or_insert_with(|| vec![([0.0; 2], 0); cat.num_landmarks]);
            for (l, k) in item.keypoints[cat.range()].iter().enumerate() {
                if k[2] > 0.0 {
                    e[l].0[0] += (k[0] as f64 - x) / w;
                    e[l].0[1] += (k[1] as f64 - y) / h;
                    e[l].1 += 1;
                }
            }
        }
        let g = Grouping::for_scheme(Scheme::Deepmark62).expect("deepmark62");
        let mean = |v: &([f64; 2], usize)| {
            (v.1 > 0).then(|| [(v.0[0] / v.1 as f64) as f32, (v.0[1] / v.1 as f64) as f32])
        };
        // Mean position of every group over the categories that have it.
        let mut group_sum: BTreeMap<usize, ([f64; 2], usize)> = BTreeMap::new();
        for (&c, ls) in &sums {
            let cat = category(c).expect("valid");
            for (l, v) in ls.iter().enumerate() {
                if let Some(p) = mean(v) {
                    let e = group_sum.entry(g.group(cat, l)).or_default();
                    e.0[0] += p[0] as f64;
                    e.0[1] += p[1] as f64;
                    e.1 += 1;
                }
            }
        }
        let mut landmarks = BTreeMap::new();
        let mut aspect = BTreeMap::new();
        let overall =
            aspects.values().map(|a| a.0 / a.1 as f64).sum::<f64>() / aspects.len().max(1) as f64;
        for cat in &CATEGORIES {
            let own = sums.get(&cat.id);
            let mut pts: Vec<Option<[f32; 2]>> = (0..cat.num_landmarks)
                .map(|l| {
                    own.and_then(|o| mean(&o[l]))
                        .or_else(|| group_sum.get(&g.group(cat, l)).and_then(mean))
                })
                .collect();
            for l in 0..cat.num_landmarks {
                if pts[l].is_none() {
                    pts[l] = pts[cat.flip_local(l)].map(|p| [1.0 - p[0], p[1]]);
                }
            }
            landmarks.insert(
                cat.id,
                pts.into_iter().map(|p| p.unwrap_or([0.5, 0.5])).collect(),
            );
            let a = aspects.get(&cat.id).map_or(overall, |a| a.0 / a.1 as f64);
            aspect.insert(cat.id, a as f32);
        }
        Self { aspect, landmarks }
    }
}

/// Synthetic set parameters.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Images.
    pub n: usize,
    /// Seed of every draw (one seed, one data set).
    pub seed: u64,
    /// Image sides are drawn from this range.
    pub min_side: u32,
    /// Largest image side.
    pub max_side: u32,
    /// Most garments per image.
    pub max_items: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            n: 2000,
            seed: 317,
            min_side: 256,
            max_side: 512,
            max_items: 3,
        }
    }
}

fn rgb(rng: &mut StdRng) -> [f32; 3] {
    [0; 3].map(|_| rng.random_range(20.0f32..235.0))
}

/// One garment placed in an image: landmarks in pixels, the polygon drawn, its texture.
struct Placed {
    category_id: usize,
    points: Vec<[f32; 2]>,
}

fn place(t: &Templates, cat_id: usize, w: u32, h: u32, rng: &mut StdRng) -> Placed {
    let aspect = t.aspect[&cat_id].clamp(0.4, 2.5);
    let bw = rng.random_range(0.3f32..0.75) * w as f32;
    let bh = (bw * aspect * rng.random_range(0.85f32..1.15)).min(0.95 * h as f32);
    let bw = bh / aspect;
    let x0 = rng.random_range(0.0..(w as f32 - bw).max(1.0));
    let y0 = rng.random_range(0.0..(h as f32 - bh).max(1.0));
    let (sn, cs) = rng.random_range(-0.17f32..0.17).sin_cos(); // ±10°
    let (cx, cy) = (x0 + bw / 2.0, y0 + bh / 2.0);
    let points = t.landmarks[&cat_id]
        .iter()
        .map(|p| {
            // Elastic jitter of each landmark, then a rotation about the box centre.
            let x = x0 + (p[0] + rng.random_range(-0.03f32..0.03)) * bw - cx;
            let y = y0 + (p[1] + rng.random_range(-0.03f32..0.03)) * bh - cy;
            [cx + cs * x - sn * y, cy + sn * x + cs * y]
        })
        .collect();
    Placed {
        category_id: cat_id,
        points,
    }
}

fn polygon(points: &[[f32; 2]]) -> Vec<Point<i32>> {
    let mut poly: Vec<Point<i32>> = Vec::new();
    for p in points {
        let q = Point::new(p[0].round() as i32, p[1].round() as i32);
        if poly.last() != Some(&q) {
            poly.push(q);
        }
    }
    while poly.len() > 1 && poly.first() == poly.last() {
        poly.pop();
    }
    poly
}

/// A garment's texture: base colour, stripe colour and period, striped or solid.
#[derive(Debug, Clone, Copy)]
struct Look {
    base: [f32; 3],
    stripe: [f32; 3],
    period: f32,
    striped: bool,
}

impl Look {
    /// The labels of the synthetic tasks (`attributes::synthetic_tasks`) of a garment whose
    /// box is `width` pixels wide. `pattern`: solid, narrow stripes (16 or more stripe periods
    /// across the box, so that the class survives any crop's scaling) or wide stripes, "maybe"
    /// on the other stripe class for 12–22 periods. `colour`: the largest channel of the mean
    /// colour (stripes and base in equal parts), "maybe" on the second when it is within 20 of
    /// the first.
    fn labels(&self, width: f32) -> serde_json::Map<String, serde_json::Value> {
        let mut pattern = ['n'; 3];
        if self.striped {
            let periods = width / self.period;
            let (yes, other) = if periods >= 16.0 { (1, 2) } else { (2, 1) };
            pattern[yes] = 'y';
            if (12.0..22.0).contains(&periods) {
                pattern[other] = 'm';
            }
        } else {
            pattern[0] = 'y';
        }
        let mean: [f32; 3] = if self.striped {
            std::array::from_fn(|c| (self.base[c] + self.stripe[c]) / 2.0)
        } else {
            self.base
        };
        let mut order = [0usize, 1, 2];
        order.sort_by(|&a, &b| mean[b].total_cmp(&mean[a]));
        let mut colour = ['n'; 3];
        colour[order[0]] = 'y';
        if mean[order[0]] - mean[order[1]] < 20.0 {
            colour[order[1]] = 'm';
        }
        let text = |l: [char; 3]| serde_json::Value::String(l.iter().collect());
        let mut m = serde_json::Map::new();
        m.insert("pattern".into(), text(pattern));
        m.insert("colour".into(), text(colour));
        m
    }
}

/// Draw one synthetic image and its raw DeepFashion2 annotation (as JSON).
pub fn synth_image(
    t: &Templates,
    cfg: &SynthConfig,
    index: usize,
) -> (RgbImage, serde_json::Value) {
    let mut rng =
        StdRng::seed_from_u64(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64);
    let (w, h) = (
        rng.random_range(cfg.min_side..=cfg.max_side),
        rng.random_range(cfg.min_side..=cfg.max_side),
    );
    // Background: vertical gradient plus a few blocks.
    let (top, bottom) = (rgb(&mut rng), rgb(&mut rng));
    let mut img = RgbImage::from_fn(w, h, |_, y| {
        let f = y as f32 / h as f32;
        Rgb([0, 1, 2].map(|c| (top[c] * (1.0 - f) + bottom[c] * f) as u8))
    });
    for _ in 0..rng.random_range(0..5) {
        let c = rgb(&mut rng);
        let (x0, y0) = (rng.random_range(0..w), rng.random_range(0..h));
        let (bw, bh) = (
            rng.random_range(8..w / 3 + 9),
            rng.random_range(8..h / 3 + 9),
        );
        for y in y0..(y0 + bh).min(h) {
            for x in x0..(x0 + bw).min(w) {
                img.put_pixel(x, y, Rgb(c.map(|v| v as u8)));
            }
        }
    }
    let n_items = rng.random_range(1..=cfg.max_items);
    let placed: Vec<Placed> = (0..n_items)
        .map(|_| place(t, rng.random_range(1..=13usize), w, h, &mut rng))
        .collect();
    // Owner map: which garment is on top at each pixel (0 = background).
    let mut owner = GrayImage::new(w, h);
    let mut looks: Vec<Option<Look>> = vec![None; placed.len()];
    for (i, p) in placed.iter().enumerate() {
        let poly = polygon(&p.points);
        if poly.len() < 3 {
            continue;
        }
        let mut mask = GrayImage::new(w, h);
        draw_polygon_mut(&mut mask, &poly, Luma([255]));
        let (base, stripe) = (rgb(&mut rng), rgb(&mut rng));
        let (period, angle) = (
            rng.random_range(4..24u32) as f32,
            rng.random_range(0.0f32..std::f32::consts::PI),
        );
        let (sa, ca) = angle.sin_cos();
        let striped = rng.random_bool(0.6);
        looks[i] = Some(Look {
            base,
            stripe,
            period,
            striped,
        });
        for (x, y, m) in mask.enumerate_pixels() {
            if m.0[0] == 0 {
                continue;
            }
            let phase = ((x as f32 * ca + y as f32 * sa) / period).floor() as i64;
            let c = if striped && phase % 2 == 0 {
                stripe
            } else {
                base
            };
            let noise = rng.random_range(-12.0f32..12.0);
            img.put_pixel(x, y, Rgb(c.map(|v| (v + noise).clamp(0.0, 255.0) as u8)));
            owner.put_pixel(x, y, Luma([i as u8 + 1]));
        }
    }
    let mut anno = serde_json::Map::new();
    anno.insert("source".into(), "user".into());
    anno.insert("pair_id".into(), (index as u64 + 1).into());
    for (i, p) in placed.iter().enumerate() {
        let cat = category(p.category_id).expect("valid category");
        let mut lm = Vec::with_capacity(3 * cat.num_landmarks);
        let (mut x1, mut y1, mut x2, mut y2) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for q in &p.points {
            let inside = q[0] >= 0.0 && q[1] >= 0.0 && q[0] < w as f32 && q[1] < h as f32;
            let v = if !inside {
                0
            } else if owner.get_pixel(q[0] as u32, q[1] as u32).0[0] as usize > i + 1 {
                1 // covered by a garment drawn later
            } else {
                2
            };
            if v > 0 {
                (x1, y1, x2, y2) = (x1.min(q[0]), y1.min(q[1]), x2.max(q[0]), y2.max(q[1]));
                lm.extend([q[0].round() as f64, q[1].round() as f64, v as f64]);
            } else {
                lm.extend([0.0, 0.0, 0.0]);
            }
        }
        if x2 <= x1 || y2 <= y1 {
            continue; // entirely outside the image
        }
        let bbox = [
            x1.floor().max(0.0),
            y1.floor().max(0.0),
            x2.ceil().min(w as f32 - 1.0),
            y2.ceil().min(h as f32 - 1.0),
        ];
        // DeepFashion2's attributes, measured on the drawing: scale from the box's share of
        // the image, occlusion from the share of covered landmarks, zoom-in from the share
        // outside the image; every garment is seen from the front.
        let flags: Vec<f64> = lm.chunks_exact(3).map(|k| k[2]).collect();
        let share = |f: &dyn Fn(f64) -> bool| {
            flags.iter().filter(|&&v| f(v)).count() as f32 / flags.len().max(1) as f32
        };
        let area = (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]) / (w * h) as f32;
        let level = |x: f32, a: f32, b: f32| 1 + (x > a) as i64 + (x > b) as i64;
        let scale = level(area, 0.1, 0.3);
        let occlusion = level(share(&|v| v == 1.0), 0.0, 0.3);
        let zoom_in = level(share(&|v| v == 0.0), 0.0, 0.3);
        let attributes =
            looks[i].map_or_else(serde_json::Map::new, |l| l.labels(bbox[2] - bbox[0]));
        anno.insert(
            format!("item{}", i + 1),
            serde_json::json!({
                "category_name": cat.name, "category_id": cat.id, "style": 0,
                "bounding_box": bbox.map(|v| v as f64), "landmarks": lm, "segmentation": [],
                "scale": scale, "occlusion": occlusion, "zoom_in": zoom_in, "viewpoint": 2,
                "attributes": attributes
            }),
        );
    }
    (img, serde_json::Value::Object(anno))
}

/// Write `cfg.n` images to `out/image`, raw JSON to `out/annos` and the COCO form to
/// `out/train.json`. `progress(done, total)` is called per image.
pub fn generate(
    out: &Path,
    cfg: &SynthConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(CocoFile, SkipReport)> {
    let t = Templates::bundled();
    for sub in ["image", "annos"] {
        create_dir_all(&out.join(sub))?;
    }
    for i in 0..cfg.n {
        progress(i, cfg.n);
        let (img, anno) = synth_image(&t, cfg, i);
        let stem = format!("{:06}", i + 1);
        save_image_atomic(&img, &out.join("image").join(format!("{stem}.jpg")))?;
        write_json_compact(&out.join("annos").join(format!("{stem}.json")), &anno)?;
    }
    let (mut coco, report) = convert_raw_dir(out, false, &Limits::default(), &mut |_, _| {})?;
    coco.attribute_tasks
        .extend(crate::attributes::synthetic_tasks());
    write_json_compact(&out.join("train.json"), &coco)?;
    Ok((coco, report))
}

/// `dir/train.json`, generating the set first (`n` images from `seed`) when it is not there.
pub fn ensure(dir: &Path, n: usize, seed: u64) -> Result<std::path::PathBuf> {
    let json = dir.join("train.json");
    if !json.is_file() {
        let cfg = SynthConfig {
            n,
            seed,
            ..Default::default()
        };
        generate(dir, &cfg, &mut |_, _| {})?;
    }
    Ok(json)
}
