//! `eval`: COCO-style AP of a results file (`--gt --dt`), or of a model run on a dataset
//! (`--weights --data`).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use deepmark::eval::coco::{
    Evaluation, GroundTruth, IouType, Params, Results, evaluate, sigmas_for,
};

use crate::ui::{DetectorFlags, evaluate_weights, images_or_default};

/// COCO-style AP (pycocotools-exact; the taxonomy's OKS sigmas): of a results file
/// (`--gt --dt`), or of a model run on a dataset (`--weights --data`).
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Ground truth (COCO-style JSON: COCO person keypoints or DeepFashion2).
    #[arg(long, requires = "dt", conflicts_with_all = ["weights", "data"])]
    pub gt: Option<PathBuf>,
    /// Results: a JSON list of bbox or keypoints detections (the kind follows from it).
    #[arg(long, requires = "gt")]
    pub dt: Option<PathBuf>,
    /// OKS sigmas as a JSON list (default: the taxonomy's).
    #[arg(long)]
    pub sigmas: Option<PathBuf>,
    /// The ground truth's taxonomy (its OKS sigmas): deepfashion2, coco-person,
    /// deepfashion-fld, or a taxonomy file [default: read from the GT's `categories`; with
    /// --weights, the model's, which the data must agree with].
    #[arg(long)]
    pub taxonomy: Option<deepmark::garment::TaxonomyChoice>,
    /// Weights to evaluate on --data.
    #[arg(long, requires = "data")]
    pub weights: Option<PathBuf>,
    /// COCO-style DeepFashion2 JSON (images in `image/` beside it, or --images).
    #[arg(long, requires = "weights")]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub images: Option<PathBuf>,
    #[command(flatten)]
    pub detector: DetectorFlags,
    /// Where results files and drawings go (with --weights).
    #[arg(long, default_value = "runs/eval")]
    pub out: PathBuf,
    /// End stdout with one JSON line of the numbers.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: EvalArgs) -> Result<()> {
    match (&a.gt, &a.dt, &a.weights, &a.data) {
        (Some(gt), Some(dt), _, _) => eval_files(
            gt,
            dt,
            a.sigmas.as_deref(),
            &a.taxonomy.clone().unwrap_or_default(),
            a.json,
        ),
        (_, _, Some(weights), Some(data)) => {
            let mut det = a.detector.load(weights)?;
            if let Some(choice) = &a.taxonomy {
                let cats =
                    deepmark::data::deepfashion2::read_categories(data, crate::cmd::limits())?;
                let declared: Vec<_> = cats.iter().map(|c| c.declared()).collect();
                let (tax, _) = deepmark::garment::spec::resolve(choice, data, &declared)?;
                let model = det.grouping().taxonomy();
                if tax != model {
                    bail!(
                        "{}: --taxonomy {choice} is {tax}; the weights' taxonomy is {model}",
                        weights.display()
                    );
                }
            }
            let images = images_or_default(&a.images, data);
            let (report, _) = evaluate_weights(&mut det, data, &images, &a.out)?;
            println!("{report}");
            if a.json {
                println!("{}", report.json());
            }
            if a.detector.attributes.is_some() {
                attribute_report(data, &a.out.join("results_bbox.json"), a.json)?;
            }
            Ok(())
        }
        _ => bail!("give --gt and --dt, or --weights and --data"),
    }
}

/// Evaluates a results file against a GT file and prints the summary; with `json`, the last
/// line of stdout is `{"iou_type": …, "stats": […]}`.
fn eval_files(
    gt_path: &Path,
    dt: &Path,
    sigmas: Option<&Path>,
    taxonomy: &deepmark::garment::TaxonomyChoice,
    json: bool,
) -> Result<()> {
    let mut gt = GroundTruth::load(gt_path, crate::cmd::limits())?;
    if sigmas.is_none() {
        let cats = deepmark::data::deepfashion2::read_categories(gt_path, crate::cmd::limits())?;
        let declared: Vec<_> = cats.iter().map(|c| c.declared()).collect();
        let (tax, notes) = deepmark::garment::spec::resolve(taxonomy, gt_path, &declared)?;
        crate::cmd::print_notes(&notes);
        gt.set_taxonomy(tax);
    }
    let res = Results::load(dt, &gt, crate::cmd::limits())?;
    let e = evaluate_with_sigmas(&gt, &res, sigmas)?;
    print!("{e}");
    if json {
        let v = serde_json::json!({"iou_type": e.params.iou_type, "stats": e.stats});
        println!("{v}");
    }
    // Results carrying attributes against ground truth with attribute labels: score them too.
    let text = std::fs::read_to_string(dt)?;
    if text.contains("\"attributes\"") {
        attribute_report(gt_path, dt, json)?;
    }
    Ok(())
}

/// Attribute scores of detections (a results file whose entries carry `attributes` and
/// boxes) against the labelled garments of `gt`, paired at box IoU ≥ 0.5 within each image
/// and category.
fn attribute_report(gt: &Path, dt: &Path, json: bool) -> Result<()> {
    use deepmark::attributes::data::load_coco_attributes;
    use deepmark::attributes::eval::{match_detections, score};
    let (tasks, samples) = load_coco_attributes(gt, crate::cmd::limits())?;
    let dets: Vec<deepmark::infer::output::BboxResult> =
        deepmark::io::read_json(dt, "results with attributes")?;
    let (rows, missed) = match_detections(&tasks, &samples, &dets);
    let scores = score(&tasks, &rows);
    println!(
        "attributes of the {} labelled garments a detection found ({missed} missed, not scored):\n{scores}",
        rows.len()
    );
    if json {
        println!(
            "{}",
            serde_json::json!({"attributes": scores, "garments": rows.len(), "missed": missed})
        );
    }
    Ok(())
}

/// Picks the sigmas (`--sigmas`, else by the GT's keypoint count) and evaluates.
fn evaluate_with_sigmas(
    gt: &GroundTruth,
    res: &Results,
    sigmas: Option<&Path>,
) -> Result<Evaluation> {
    let sigmas = match (res.kind, sigmas) {
        (IouType::Bbox, _) => Vec::new(),
        (IouType::Keypoints, Some(p)) => {
            let s: Vec<f64> = deepmark::io::read_json(p, "JSON list of OKS sigmas")?;
            if let Some((i, v)) = s
                .iter()
                .enumerate()
                .find(|(_, v)| !(v.is_finite() && **v > 0.0))
            {
                bail!(
                    "{}: sigma {i} is {v}; OKS sigmas must be positive numbers",
                    p.display()
                );
            }
            s
        }
        (IouType::Keypoints, None) => {
            let k = gt.num_keypoints();
            match gt.oks_sigmas.clone().or_else(|| sigmas_for(k)) {
                Some(s) => s,
                None => bail!(
                    "the ground truth has {k} keypoints per annotation; OKS sigmas are known for 17 (COCO \
                     person) and 294 (DeepFashion2): give --sigmas <file.json>"
                ),
            }
        }
    };
    Ok(evaluate(gt, res, Params::new(res.kind, sigmas))?)
}
