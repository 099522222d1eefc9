//! Running a [`Detector`] over a COCO-style dataset and evaluating the results.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::coco::{Evaluation, GroundTruth, IouType, Params, Results, evaluate, sigmas_for};
use crate::checkpoint::write_atomic;
use crate::data::deepfashion2::load_coco;
use crate::infer::output::{BboxResult, KeypointResult, results};
use crate::infer::{Detector, StageTimes};

/// Challenge results of a whole dataset.
#[derive(Debug, Clone, Default)]
pub struct DatasetResults {
    pub bbox: Vec<BboxResult>,
    pub keypoints: Vec<KeypointResult>,
    pub times: StageTimes,
    pub images: usize,
}

/// Runs the detector on every image of `gt` (COCO-style JSON; images in `images`).
pub fn predict_dataset(
    det: &Detector,
    gt: &Path,
    images: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<DatasetResults> {
    let (samples, _) = load_coco(gt, false)?;
    let mut out = DatasetResults::default();
    for (i, s) in samples.iter().enumerate() {
        let path = images.join(&s.file_name);
        let img = image::open(&path)
            .with_context(|| format!("cannot read image {}", path.display()))?
            .to_rgb8();
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
    let run = |path: &Path, kind: IouType, n: usize| -> Result<Option<Evaluation>> {
        if n == 0 {
            return Ok(None);
        }
        let r = Results::load(path, &gt_data)?;
        let sigmas = sigmas_for(gt_data.num_keypoints()).unwrap_or_default();
        Ok(Some(
            evaluate(&gt_data, &r, Params::new(kind, sigmas)).map_err(anyhow::Error::msg)?,
        ))
    };
    let b = run(&bbox_path, IouType::Bbox, res.bbox.len())?;
    let k = run(&kp_path, IouType::Keypoints, res.keypoints.len())?;
    Ok((b, k, [bbox_path, kp_path]))
}
