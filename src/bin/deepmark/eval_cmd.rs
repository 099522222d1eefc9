//! `deepmark eval`: COCO-style AP of a results file (or of a model run on a dataset).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use deepmark::eval::coco::{
    Evaluation, GroundTruth, IouType, Params, Results, evaluate, sigmas_for,
};

/// Reads `--sigmas`: a JSON list of numbers.
fn read_sigmas(path: &Path) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read sigmas file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: expected a JSON list of numbers", path.display()))
}

/// Evaluates a results file against a GT file and prints the summary.
pub fn eval_files(gt: &Path, dt: &Path, sigmas: Option<&PathBuf>, json: bool) -> Result<()> {
    let gt_data = GroundTruth::load(gt)?;
    let res = Results::load(dt, &gt_data)?;
    let evaluation = run(&gt_data, &res, sigmas)?;
    report(&evaluation, json);
    Ok(())
}

/// Picks sigmas and evaluates.
pub fn run(gt: &GroundTruth, res: &Results, sigmas: Option<&PathBuf>) -> Result<Evaluation> {
    let sigmas = match (res.kind, sigmas) {
        (IouType::Bbox, _) => Vec::new(),
        (IouType::Keypoints, Some(p)) => read_sigmas(p)?,
        (IouType::Keypoints, None) => {
            let k = gt.num_keypoints();
            match sigmas_for(k) {
                Some(s) => s,
                None => bail!(
                    "the ground truth has {k} keypoints per annotation; OKS sigmas are known for 17 (COCO \
                     person) and 294 (DeepFashion2): give --sigmas <file.json>"
                ),
            }
        }
    };
    evaluate(gt, res, Params::new(res.kind, sigmas)).map_err(anyhow::Error::msg)
}

/// Prints pycocotools' summary (and a per-category table); with `json`, the last line of stdout
/// is `{"iou_type": …, "stats": […]}`.
pub fn report(e: &Evaluation, json: bool) {
    println!("Evaluate annotation type *{}*", e.params.iou_type.name());
    for line in e.summary_lines() {
        println!("{line}");
    }
    let per_cat = e.per_category_ap();
    if per_cat.len() > 1 {
        println!("per-category AP (IoU/OKS 0.50:0.95):");
        for (cat, ap) in per_cat {
            let name = deepmark::data::taxonomy::category(cat as usize)
                .map_or_else(|| format!("category {cat}"), |c| c.name.to_string());
            if ap < 0.0 {
                println!("  {name:<24} (no ground truth)");
            } else {
                println!("  {name:<24} {ap:.3}");
            }
        }
    }
    if json {
        let v = serde_json::json!({"iou_type": e.params.iou_type, "stats": e.stats});
        println!("{v}");
    }
}

/// Options of `eval --weights`.
pub struct EvalOptions {
    pub backend: deepmark::backend::BackendKind,
    pub input_size: Option<usize>,
    pub flip: bool,
    pub scales: Vec<f32>,
    pub json: bool,
    /// Plain CenterNet decoding (no DeepMark++ technique, no NMS).
    pub no_post: bool,
    /// Results files and drawings go here.
    pub out: PathBuf,
    /// How many images to draw predictions on.
    pub draw: usize,
    /// Detections scoring below are not drawn.
    pub draw_threshold: f32,
}

/// Runs the model on a dataset (with progress), evaluates boxes and landmarks, and draws a
/// few predictions.
pub fn eval_weights(weights: &Path, gt: &Path, images: &Path, o: &EvalOptions) -> Result<()> {
    use deepmark::infer::Detector;
    let device = o.backend.device()?;
    let mut det = Detector::from_weights(weights, &device)?;
    if let Some(s) = o.input_size {
        det.options.input_size = s;
    }
    det.options.flip = o.flip;
    det.options.scales = o.scales.clone();
    det.options.threshold = 0.01;
    if o.no_post {
        det.options.post = deepmark::infer::PostConfig::plain();
    }
    det.check_input_size()?;
    let (samples, _) = deepmark::data::deepfashion2::load_coco(gt, false)?;
    let bar = crate::progress_bar("evaluating");
    let res = deepmark::eval::run::predict_dataset(&det, &samples, images, &mut |i, n| {
        bar.set_length(n as u64);
        bar.set_position(i as u64 + 1);
    })?;
    bar.finish_and_clear();
    let (b, k, files) = deepmark::eval::run::evaluate_results(gt, &res, &o.out)?;
    let n = res.images.max(1) as f64;
    let t = res.times;
    println!(
        "{} images; per image: {:.1} ms preprocess, {:.1} ms forward, {:.1} ms decode, {:.1} ms post at {}×{} ({})",
        res.images,
        1e3 * t.preprocess / n,
        1e3 * t.forward / n,
        1e3 * t.decode / n,
        1e3 * t.post / n,
        det.options.input_size,
        det.options.input_size,
        o.backend
    );
    println!("results: {} and {}", files[0].display(), files[1].display());
    let mut stats = serde_json::Map::new();
    for e in [b.as_ref(), k.as_ref()].into_iter().flatten() {
        report(e, false);
        stats.insert(
            e.params.iou_type.name().to_string(),
            serde_json::json!(e.stats),
        );
    }
    let (per, all) =
        deepmark::eval::landmarks::landmark_errors(&samples, &res.bbox, &res.keypoints);
    println!("landmark error (NE: FashionAI normalised error; PCK@0.2), matched items only:");
    for (i, p) in per.iter().enumerate().filter(|(_, p)| p.items > 0) {
        let name = deepmark::data::taxonomy::CATEGORIES[i].name;
        println!(
            "  {name:<24} NE {:.4}  PCK@0.2 {:.3}  matched {}/{}",
            p.ne(),
            p.pck02(),
            p.matched,
            p.items
        );
    }
    println!(
        "  {:<24} NE {:.4}  PCK@0.2 {:.3}  matched {}/{} ({} items without both normalising landmarks)",
        "all",
        all.ne(),
        all.pck02(),
        all.matched,
        all.items,
        all.no_normaliser
    );
    stats.insert("ne".into(), serde_json::json!(all.ne()));
    stats.insert("pck02".into(), serde_json::json!(all.pck02()));
    let ap = |e: &Option<Evaluation>| e.as_ref().map_or(f64::NAN, |e| e.stats[0]);
    println!(
        "AP_box {:.4}  AP_pt {:.4}  ({} detections kept at score ≥ {})",
        ap(&b),
        ap(&k),
        res.bbox.len(),
        det.options.threshold
    );
    if o.draw > 0 {
        let dir = o.out.join("preds");
        let drawn = draw_predictions(&det, &samples, images, &dir, o.draw, o.draw_threshold)?;
        println!(
            "drew predictions (score ≥ {}) on {drawn} images in {}",
            o.draw_threshold,
            dir.display()
        );
    }
    if o.json {
        println!(
            "{}",
            serde_json::json!({"ap_box": ap(&b), "ap_pt": ap(&k), "stats": stats})
        );
    }
    Ok(())
}

fn draw_predictions(
    det: &deepmark::infer::Detector,
    samples: &[deepmark::data::deepfashion2::Sample],
    images: &Path,
    dir: &Path,
    n: usize,
    threshold: f32,
) -> Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut count = 0;
    for s in samples.iter().take(n) {
        let mut img = deepmark::preprocess::open_rgb(&images.join(&s.file_name))?;
        let dets: Vec<_> = det
            .detect(&img)?
            .into_iter()
            .filter(|d| d.score >= threshold)
            .collect();
        deepmark::infer::output::draw_detections(&mut img, &dets);
        let stem = Path::new(&s.file_name).file_stem().map_or_else(
            || s.image_id.to_string(),
            |x| x.to_string_lossy().into_owned(),
        );
        crate::save_image_atomic(&img, &dir.join(format!("{stem}.pred.jpg")))?;
        count += 1;
    }
    Ok(count)
}
