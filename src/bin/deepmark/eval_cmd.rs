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
