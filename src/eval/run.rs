//! Running a [`Detector`] over a COCO-style dataset and evaluating the results.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::coco::{
    Evaluation, GroundTruth, IouType, Params, ResultEntry, Results, evaluate, sigmas_for,
};
use crate::checkpoint::write_atomic;
use crate::data::deepfashion2::Sample;
use crate::infer::output::{BboxResult, KeypointResult, results};
use crate::infer::{Detector, StageTimes};
use crate::preprocess::open_rgb;

/// Challenge results of a whole dataset.
#[derive(Debug, Clone, Default)]
pub struct DatasetResults {
    pub bbox: Vec<BboxResult>,
    pub keypoints: Vec<KeypointResult>,
    pub times: StageTimes,
    pub images: usize,
}

/// Runs the detector on every sample (as read by `load_coco`; images in `images`).
pub fn predict_dataset(
    det: &Detector,
    samples: &[Sample],
    images: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<DatasetResults> {
    let mut out = DatasetResults::default();
    for (i, s) in samples.iter().enumerate() {
        let img = open_rgb(&images.join(&s.file_name))?;
        let (dets, t) = det.detect_timed(&img)?;
        out.times += t;
        let (b, k) = results(s.image_id, &dets);
        out.bbox.extend(b);
        out.keypoints.extend(k);
        out.images += 1;
        progress(i, samples.len());
    }
    Ok(out)
}

/// Box and landmark evaluations (DeepFashion2 settings) of dataset results; writes the two
/// results files into `dir` (`results_bbox.json`, `results_keypoints.json`).
pub fn evaluate_results(
    gt: &Path,
    res: &DatasetResults,
    dir: &Path,
) -> Result<(Option<Evaluation>, Option<Evaluation>, [PathBuf; 2])> {
    std::fs::create_dir_all(dir)?;
    let bbox_path = dir.join("results_bbox.json");
    let kp_path = dir.join("results_keypoints.json");
    write_atomic(&bbox_path, serde_json::to_string(&res.bbox)?.as_bytes())?;
    write_atomic(&kp_path, serde_json::to_string(&res.keypoints)?.as_bytes())?;
    let gt_data = GroundTruth::load(gt)?;
    let (b, k) = evaluate_in_memory(&gt_data, res)?;
    Ok((b, k, [bbox_path, kp_path]))
}

/// Box and landmark evaluations of results held in memory (`None` where there are none).
pub fn evaluate_in_memory(
    gt: &GroundTruth,
    res: &DatasetResults,
) -> Result<(Option<Evaluation>, Option<Evaluation>)> {
    let label = Path::new("(in memory)");
    let sigmas = sigmas_for(gt.num_keypoints()).unwrap_or_default();
    let boxes: Vec<ResultEntry> = res
        .bbox
        .iter()
        .map(|b| ResultEntry {
            image_id: b.image_id,
            category_id: b.category_id as i64,
            bbox: Some(b.bbox.iter().map(|&v| v as f64).collect()),
            keypoints: None,
            score: b.score as f64,
        })
        .collect();
    let kps: Vec<ResultEntry> = res
        .keypoints
        .iter()
        .map(|k| ResultEntry {
            image_id: k.image_id,
            category_id: k.category_id as i64,
            bbox: None,
            keypoints: Some(k.keypoints.iter().map(|&v| v as f64).collect()),
            score: k.score as f64,
        })
        .collect();
    let run = |list: Vec<ResultEntry>, kind: IouType| -> Result<Option<Evaluation>> {
        if list.is_empty() {
            return Ok(None);
        }
        let r = Results::from_entries(label, list, gt)?;
        Ok(Some(
            evaluate(gt, &r, Params::new(kind, sigmas.clone())).map_err(anyhow::Error::msg)?,
        ))
    };
    Ok((run(boxes, IouType::Bbox)?, run(kps, IouType::Keypoints)?))
}

/// The two headline numbers, `(AP_box, AP_pt)` (AP at IoU/OKS .50:.95); 0 where there are no
/// detections or the GT has no items of an area range the AP needs.
pub fn headline_ap(gt: &GroundTruth, res: &DatasetResults) -> Result<(f64, f64)> {
    let (b, k) = evaluate_in_memory(gt, res)?;
    let ap = |e: Option<Evaluation>| e.map_or(0.0, |e| e.stats[0].max(0.0));
    Ok((ap(b), ap(k)))
}
