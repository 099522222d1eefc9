//! `deepmark tune`: grid search of DeepMark++'s post-processing parameters (α, centre σ,
//! landmark σ, γ in steps of 0.05 over [0, 1], as the paper) on a validation subset. The network
//! runs once per image; its fused heads are cached, so each setting costs only decoding and
//! evaluation. Objective: AP_pt (the paper tuned for landmark accuracy).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use deepmark::backend::BackendKind;
use deepmark::checkpoint::write_atomic;
use deepmark::draw::draw_text;
use deepmark::eval::coco::GroundTruth;
use deepmark::eval::run::{DatasetResults, headline_ap};
use deepmark::infer::detector::{ScaleHeads, options_path};
use deepmark::infer::output::results;
use deepmark::infer::{Detector, PostConfig};
use image::{Rgb, RgbImage};

#[derive(Args, Debug)]
pub struct TuneArgs {
    #[arg(long)]
    pub weights: PathBuf,
    /// Validation COCO-style JSON (images in `image/` beside it, or --images).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub images: Option<PathBuf>,
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// [default: the weights' training size]
    #[arg(long)]
    pub input_size: Option<usize>,
    /// Use at most this many images (DeepMark++ used 1285).
    #[arg(long, default_value_t = 200)]
    pub max_images: usize,
    /// Grid step.
    #[arg(long, default_value_t = 0.05)]
    pub step: f32,
    #[arg(long, default_value = "runs/tune")]
    pub out: PathBuf,
    /// Save the best setting into the weights' inference options (`<weights>.infer.json`).
    #[arg(long)]
    pub save: bool,
}

struct Cached {
    image_id: u64,
    heads: Vec<ScaleHeads>,
}

fn score(
    det: &Detector,
    gt: &GroundTruth,
    cache: &[Cached],
    post: &PostConfig,
) -> Result<(f64, f64)> {
    let mut res = DatasetResults::default();
    for c in cache {
        let (dets, _) = det.decode_heads(&c.heads, post);
        let (b, k) = results(c.image_id, &dets);
        res.bbox.extend(b);
        res.keypoints.extend(k);
    }
    headline_ap(gt, &res)
}

fn grid(step: f32) -> Vec<f32> {
    let n = (1.0 / step).round() as usize;
    (0..=n).map(|i| (i as f32 * step).min(1.0)).collect()
}

/// A parameter of the search: reads and writes one field of PostConfig (0 switches σ off).
#[derive(Clone, Copy)]
enum Param {
    Alpha,
    CenterSigma,
    LandmarkSigma,
    Gamma,
}

impl Param {
    fn name(self) -> &'static str {
        match self {
            Param::Alpha => "alpha",
            Param::CenterSigma => "center_sigma",
            Param::LandmarkSigma => "landmark_sigma",
            Param::Gamma => "gamma",
        }
    }

    fn set(self, p: &mut PostConfig, v: f32) {
        let opt = |v: f32| (v > 0.0).then_some(v);
        match self {
            Param::Alpha => p.alpha = Some(v),
            Param::CenterSigma => p.center_sigma = opt(v),
            Param::LandmarkSigma => p.landmark_sigma = opt(v),
            Param::Gamma => p.gamma = Some(v),
        }
    }
}

/// Blue → green → yellow.
fn colour(t: f64) -> Rgb<u8> {
    let t = t.clamp(0.0, 1.0);
    let (r, g, b) = if t < 0.5 {
        let u = t * 2.0;
        (
            0.27 * (1.0 - u) + 0.13 * u,
            0.0 + 0.57 * u,
            0.33 * (1.0 - u) + 0.55 * u,
        )
    } else {
        let u = (t - 0.5) * 2.0;
        (
            0.13 * (1.0 - u) + 0.99 * u,
            0.57 * (1.0 - u) + 0.91 * u,
            0.55 * (1.0 - u) + 0.14 * u,
        )
    };
    Rgb([(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8])
}

fn surface_png(values: &[Vec<f64>], axis: &[f32], path: &Path, best: (usize, usize)) -> Result<()> {
    let n = axis.len() as u32;
    let cell = 20u32;
    let margin = 60u32;
    let mut img = RgbImage::from_pixel(
        n * cell + margin + 10,
        n * cell + margin + 30,
        Rgb([255, 255, 255]),
    );
    let (lo, hi) = values
        .iter()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    for (i, row) in values.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let c = colour((v - lo) / (hi - lo).max(1e-12));
            // alpha on x (columns), gamma on y (rows, gamma = 1 at the top).
            let x0 = margin + j as u32 * cell;
            let y0 = 20 + (n - 1 - i as u32) * cell;
            for y in y0..y0 + cell {
                for x in x0..x0 + cell {
                    img.put_pixel(x, y, c);
                }
            }
            if (i, j) == best {
                draw_text(
                    &mut img,
                    x0 as i32 + 6,
                    y0 as i32 + 6,
                    "X",
                    2,
                    Rgb([255, 255, 255]),
                );
            }
        }
    }
    let black = Rgb([255, 255, 255]);
    draw_text(
        &mut img,
        4,
        4,
        &format!("AP-PT {lo:.3} - {hi:.3}  X best"),
        2,
        black,
    );
    draw_text(
        &mut img,
        margin as i32,
        (n * cell + 26) as i32,
        "ALPHA 0 - 1",
        2,
        black,
    );
    draw_text(&mut img, 4, 24, "GAMMA 1", 2, black);
    draw_text(&mut img, 4, (n * cell + 6) as i32, "GAMMA 0", 2, black);
    crate::save_image_atomic(&img, path)
}

pub fn run(a: TuneArgs) -> Result<()> {
    if !(a.step > 0.0 && a.step <= 0.5) {
        bail!("--step must be in (0, 0.5]");
    }
    let device = a.backend.device()?;
    let mut det = Detector::from_weights(&a.weights, &device)?;
    if let Some(s) = a.input_size {
        det.options.input_size = s;
    }
    det.options.threshold = 0.01;
    det.check_input_size()?;
    let images = a
        .images
        .clone()
        .unwrap_or_else(|| a.data.parent().unwrap_or(Path::new(".")).join("image"));
    let (samples, _) = deepmark::data::deepfashion2::load_coco(&a.data, false)?;
    let samples: Vec<_> = samples.into_iter().take(a.max_images).collect();
    let mut gt = GroundTruth::load(&a.data)?;
    let keep: std::collections::HashSet<u64> = samples.iter().map(|s| s.image_id).collect();
    gt.image_ids.retain(|i| keep.contains(i));
    gt.anns.retain(|x| keep.contains(&x.image_id));
    let bar = crate::progress_bar("running the network once per image");
    bar.set_length(samples.len() as u64);
    let mut cache = Vec::with_capacity(samples.len());
    for s in &samples {
        let img = deepmark::preprocess::open_rgb(&images.join(&s.file_name))?;
        let (heads, _) = det.heads(&img)?;
        cache.push(Cached {
            image_id: s.image_id,
            heads,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut best = det.options.post;
    let (b0, k0) = score(&det, &gt, &cache, &best)?;
    println!(
        "{} images; current setting: AP_box {b0:.4} AP_pt {k0:.4} ({:?})",
        cache.len(),
        best
    );
    let plain = score(&det, &gt, &cache, &PostConfig::plain())?;
    println!(
        "plain CenterNet decoding: AP_box {:.4} AP_pt {:.4}",
        plain.0, plain.1
    );
    let mut best_pt = k0;
    let axis = grid(a.step);
    let mut log = Vec::new();
    for p in [
        Param::Alpha,
        Param::CenterSigma,
        Param::LandmarkSigma,
        Param::Gamma,
    ] {
        let mut line = Vec::new();
        for &v in &axis {
            let mut cfg = best;
            p.set(&mut cfg, v);
            let (bx, pt) = score(&det, &gt, &cache, &cfg)?;
            line.push(serde_json::json!({"value": v, "ap_box": bx, "ap_pt": pt}));
            if pt > best_pt {
                best_pt = pt;
                best = cfg;
            }
        }
        println!(
            "{:<15} best so far: AP_pt {best_pt:.4} with alpha {:?}, centre sigma {:?}, landmark sigma {:?}, gamma {:?}",
            p.name(),
            best.alpha,
            best.center_sigma,
            best.landmark_sigma,
            best.gamma
        );
        log.push(serde_json::json!({"param": p.name(), "sweep": line}));
    }
    // The switches: technique (4) and box NMS, on and off.
    for mask in [true, false] {
        for nms in [
            deepmark::infer::Nms::Hard { iou: 0.5 },
            deepmark::infer::Nms::None,
        ] {
            let cfg = PostConfig {
                landmark_mask: mask,
                nms,
                ..best
            };
            let (_, pt) = score(&det, &gt, &cache, &cfg)?;
            if pt > best_pt {
                best_pt = pt;
                best = cfg;
            }
        }
    }
    println!(
        "switches       best so far: AP_pt {best_pt:.4} with landmark mask {}, NMS {:?}",
        best.landmark_mask, best.nms
    );
    // AP_pt surface over (alpha, gamma) at the best sigmas (the paper's Figure 10 style).
    let bar = crate::progress_bar("alpha x gamma surface");
    bar.set_length((axis.len() * axis.len()) as u64);
    let mut surface = vec![vec![0.0; axis.len()]; axis.len()];
    let mut best_cell = (0, 0);
    let mut best_val = f64::NEG_INFINITY;
    for (i, &g) in axis.iter().enumerate() {
        for (j, &al) in axis.iter().enumerate() {
            let mut cfg = best;
            cfg.alpha = Some(al);
            cfg.gamma = Some(g);
            let (_, pt) = score(&det, &gt, &cache, &cfg)?;
            surface[i][j] = pt;
            if pt > best_val {
                best_val = pt;
                best_cell = (i, j);
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if best_val > best_pt {
        best.alpha = Some(axis[best_cell.1]);
        best.gamma = Some(axis[best_cell.0]);
        best_pt = best_val;
    }
    std::fs::create_dir_all(&a.out)?;
    let png = a.out.join("tune_surface.png");
    surface_png(&surface, &axis, &png, best_cell)?;
    let json = a.out.join("tune.json");
    write_atomic(
        &json,
        serde_json::to_string_pretty(&serde_json::json!({
            "images": cache.len(),
            "start": {"ap_box": b0, "ap_pt": k0},
            "plain": {"ap_box": plain.0, "ap_pt": plain.1},
            "sweeps": log,
            "surface": {"alpha": axis, "gamma": axis, "ap_pt": surface},
            "best": {"post": best, "ap_pt": best_pt},
        }))?
        .as_bytes(),
    )?;
    println!(
        "best: AP_pt {best_pt:.4} with alpha {:?}, centre sigma {:?}, landmark sigma {:?}, gamma {:?}",
        best.alpha, best.center_sigma, best.landmark_sigma, best.gamma
    );
    println!("wrote {} and {}", png.display(), json.display());
    if a.save {
        let mut opts = det.options.clone();
        opts.post = best;
        opts.threshold = 0.0;
        let path = options_path(&a.weights);
        write_atomic(&path, serde_json::to_string_pretty(&opts)?.as_bytes())?;
        println!("saved the best setting into {}", path.display());
    }
    Ok(())
}
