//! `tune`: the grid search of DeepMark++'s post-processing parameters
//! ([`deepmark::eval::tune`]) with progress, its AP_pt surface as a PNG, `tune.json`, and
//! `--save` into the weights' inference defaults.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use deepmark::codec::PostConfig;
use deepmark::codec::symmetry::SymmetryConfig;
use deepmark::draw::draw_text;
use deepmark::eval::EVAL_SCORE_THRESHOLD;
use deepmark::eval::tune::{TuneEvent, cache_heads, score_refined, search};
use deepmark::infer::detector::options_path;
use deepmark::io::{save_image_atomic, write_json};
use image::{Rgb, RgbImage};

use crate::ui::{DetectorFlags, images_or_default, progress_bar, tick};

/// Grid-search DeepMark++'s post-processing parameters on a validation subset.
#[derive(Args, Debug)]
pub struct TuneArgs {
    #[arg(long)]
    pub weights: PathBuf,
    /// Validation COCO-style JSON (images in `image/` beside it, or --images).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub images: Option<PathBuf>,
    #[command(flatten)]
    pub detector: DetectorFlags,
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
    Ok(save_image_atomic(&img, path)?)
}

pub fn run(a: TuneArgs) -> Result<()> {
    let mut det = a.detector.load(&a.weights)?;
    det.options.threshold = EVAL_SCORE_THRESHOLD;
    let start_post = det.options.post;
    let images = images_or_default(&a.images, &a.data);
    let (samples, mut gt) = crate::cmd::load_ground_truth(&a.data, det.grouping().taxonomy())?;
    let samples: Vec<_> = samples.into_iter().take(a.max_images).collect();
    let keep: std::collections::HashSet<u64> = samples.iter().map(|s| s.image_id).collect();
    gt.retain_images(|id| keep.contains(&id));
    let bar = progress_bar("running the network once per image");
    let cache = cache_heads(
        &det,
        &samples,
        &images,
        crate::cmd::limits(),
        &mut tick(&bar),
    );
    bar.finish_and_clear();
    let cache = cache?;
    let surface_bar = progress_bar("alpha x gamma surface");
    let report = search(&det, &gt, &cache, a.step, &mut |e| match e {
        TuneEvent::Start { current, plain } => {
            println!(
                "{} images; current setting: AP_box {:.4} AP_pt {:.4} ({:?})",
                cache.len(),
                current.0,
                current.1,
                det.options.post
            );
            println!(
                "plain CenterNet decoding: AP_box {:.4} AP_pt {:.4}",
                plain.0, plain.1
            );
        }
        TuneEvent::Swept {
            param,
            best,
            best_pt,
        } => println!(
            "{:<15} best so far: AP_pt {best_pt:.4} with alpha {:?}, centre sigma {:?}, landmark sigma {:?}, gamma {:?}",
            param.name(),
            best.alpha,
            best.center_sigma,
            best.landmark_sigma,
            best.gamma
        ),
        TuneEvent::Switches { best, best_pt } => println!(
            "switches       best so far: AP_pt {best_pt:.4} with landmark mask {}, NMS {:?}, symmetry {:?}",
            best.landmark_mask, best.nms, best.symmetry
        ),
        TuneEvent::Surface { done, total } => {
            surface_bar.set_length(*total as u64);
            surface_bar.set_position(*done as u64);
        }
    });
    surface_bar.finish_and_clear();
    let report = report?;
    let png = a.out.join("tune_surface.png");
    surface_png(&report.surface, &report.axis, &png, report.best_cell)?;
    let json = a.out.join("tune.json");
    write_json(&json, &report.json())?;
    let mut best = report.best;
    println!(
        "best: AP_pt {:.4} with alpha {:?}, centre sigma {:?}, landmark sigma {:?}, gamma {:?}",
        report.best_pt, best.alpha, best.center_sigma, best.landmark_sigma, best.gamma
    );
    // The symmetric refinement's second pass needs forward passes, not cached heads: the best
    // setting is measured once more with it, when the best setting refines, or when
    // `--symmetry-two-pass` asked for it.
    let asked = start_post.symmetry.filter(|s| s.two_pass);
    if let Some(sym) = best.symmetry.or(asked) {
        let one = PostConfig {
            symmetry: Some(SymmetryConfig {
                two_pass: false,
                ..sym
            }),
            ..best
        };
        let two = PostConfig {
            symmetry: Some(SymmetryConfig {
                two_pass: true,
                ..sym
            }),
            ..best
        };
        let limits = crate::cmd::limits();
        let (b1, p1) = score_refined(&mut det, &gt, &cache, &samples, &images, limits, &one)?;
        let (b2, p2) = score_refined(&mut det, &gt, &cache, &samples, &images, limits, &two)?;
        println!(
            "symmetric refinement at the best setting: one pass AP_box {b1:.4} AP_pt {p1:.4}, \
             two passes AP_box {b2:.4} AP_pt {p2:.4}{}",
            if p2 > p1.max(report.best_pt) {
                " (two passes kept)"
            } else {
                ""
            }
        );
        if p2 > p1.max(report.best_pt) {
            best = two;
        } else if best.symmetry.is_some() {
            best = one;
        }
        let mut v = report.json();
        v["second_pass"] = serde_json::json!({
            "one_pass": {"ap_box": b1, "ap_pt": p1},
            "two_passes": {"ap_box": b2, "ap_pt": p2},
            "kept": p2 > p1,
        });
        write_json(&json, &v)?;
    }
    println!("wrote {} and {}", png.display(), json.display());
    if a.save {
        let mut opts = det.options.clone();
        opts.post = best;
        opts.threshold = 0.0;
        let path = options_path(&a.weights);
        write_json(&path, &opts)?;
        println!("saved the best setting into {}", path.display());
    }
    Ok(())
}
