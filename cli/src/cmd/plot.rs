//! `deepmark plot <run dir>`: the per-epoch curves of `metrics.csv` as one PNG (a panel per
//! loss part and the learning rate, log scale), drawn with imageproc.

use std::path::Path;

use anyhow::{Result, bail};
use deepmark::draw::{draw_text, palette};
use deepmark::train::{LossParts, RunDir};
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_hollow_rect_mut, draw_line_segment_mut};
use imageproc::rect::Rect;

const W: u32 = 320;
const H: u32 = 200;
const PAD: f32 = 28.0;

fn panel(name: &str, ys: &[f64], color: Rgb<u8>, log: bool) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    draw_hollow_rect_mut(
        &mut img,
        Rect::at(PAD as i32, PAD as i32).of_size(W - 2 * PAD as u32, H - 2 * PAD as u32),
        Rgb([120, 120, 120]),
    );
    let logs: Vec<f64> = if log {
        ys.iter().map(|v| v.max(1e-12).log10()).collect()
    } else {
        ys.to_vec()
    };
    let (lo, hi) = logs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = (hi - lo).max(1e-9);
    let n = logs.len().max(2) - 1;
    let pt = |i: usize, v: f64| {
        let x = PAD + (W as f32 - 2.0 * PAD) * i as f32 / n as f32;
        let y = H as f32 - PAD - (H as f32 - 2.0 * PAD) * ((v - lo) / span) as f32;
        (x, y)
    };
    for i in 1..logs.len() {
        draw_line_segment_mut(&mut img, pt(i - 1, logs[i - 1]), pt(i, logs[i]), color);
    }
    let first = ys.first().copied().unwrap_or(f64::NAN);
    let last = ys.last().copied().unwrap_or(f64::NAN);
    let num = |v: f64| {
        if v != 0.0 && v.abs() < 0.01 {
            format!("{v:.1e}")
        } else {
            format!("{v:.3}")
        }
    };
    draw_text(
        &mut img,
        6,
        8,
        &format!("{name} {} - {}", num(first), num(last)),
        2,
        Rgb([255, 255, 255]),
    );
    draw_text(
        &mut img,
        6,
        H as i32 - 18,
        &format!(
            "{} points {}",
            ys.len(),
            if log { "log scale" } else { "linear" }
        ),
        2,
        Rgb([255, 255, 255]),
    );
    img
}

pub fn run(dir: &Path) -> Result<()> {
    let run = RunDir::new(dir);
    let rows = run.read_metrics()?;
    if rows.is_empty() {
        bail!("{} has no epochs yet", run.metrics_path().display());
    }
    let mut panels = Vec::new();
    for (k, name) in LossParts::NAMES.iter().enumerate() {
        let ys: Vec<f64> = rows.iter().map(|r| r.loss.values()[k] as f64).collect();
        panels.push(panel(name, &ys, palette(k), true));
    }
    let lrs: Vec<f64> = rows.iter().map(|r| r.lr).collect();
    panels.push(panel("lr", &lrs, palette(8), true));
    let val: Vec<(f64, f64)> = rows.iter().filter_map(|r| r.val_ap).collect();
    if !val.is_empty() {
        let b: Vec<f64> = val.iter().map(|v| v.0).collect();
        let k: Vec<f64> = val.iter().map(|v| v.1).collect();
        panels.push(panel("val AP box", &b, palette(9), false));
        panels.push(panel("val AP pt", &k, palette(10), false));
    }
    let grid = deepmark::draw::tile(&panels, 4);
    let out = dir.join("curves.png");
    deepmark::io::save_image_atomic(&grid, &out)?;
    println!("wrote {} ({} epochs)", out.display(), rows.len());
    Ok(())
}
