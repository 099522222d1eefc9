//! Running a [`Detector`] over a COCO-style dataset and evaluating the results: the
//! [`EvalReport`] that `eval --weights`, the end of `train` and training validation share.

use std::fmt;
use std::path::{Path, PathBuf};

use super::coco::{Evaluation, GroundTruth, IouType, Params, ResultEntry, Results, evaluate};
use super::landmarks::{LandmarkStats, landmark_errors_in};
use crate::data::deepfashion2::Sample;
use crate::error::Result;
use crate::garment::Taxonomy;
use crate::infer::output::{BboxResult, DetectionRecord, KeypointResult, results};
use crate::infer::{Detector, StageTimes, detect_all};
use crate::io::{Limits, create_dir_all, write_json_compact};

/// Detections scoring below this are not kept when a model is evaluated (`eval --weights`,
/// `tune`, training validation): they cannot change AP noticeably and would bloat the results.
pub const EVAL_SCORE_THRESHOLD: f32 = 0.01;

/// Challenge results of a whole dataset.
#[derive(Debug, Clone, Default)]
pub struct DatasetResults {
    /// Box results of every image.
    pub bbox: Vec<BboxResult>,
    /// Landmark results of every image.
    pub keypoints: Vec<KeypointResult>,
    /// Time per stage, summed over the images.
    pub times: StageTimes,
    /// Images processed.
    pub images: usize,
}

/// Runs the detector on every sample (as read by `load_coco`; images in `images`), batching
/// `det.options.batch` images per forward pass ([`detect_all`]). An unreadable image, or one over
/// `limits`, stops the run with its error.
pub fn predict_dataset(
    det: &Detector,
    samples: &[Sample],
    images: &Path,
    limits: &Limits,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<DatasetResults> {
    let mut out = DatasetResults::default();
    let jobs: Vec<&Sample> = samples.iter().collect();
    let load = |s: &&Sample| limits.open_rgb(&images.join(&s.file_name));
    let taxonomy = det.grouping().taxonomy();
    let stats = detect_all(det, jobs, load, |s, item| {
        let (_, dets) = item?;
        let (b, k) = results(s.image_id, &dets, taxonomy);
        out.bbox.extend(b);
        out.keypoints.extend(k);
        progress(out.images, samples.len());
        out.images += 1;
        Ok(())
    })?;
    out.times = stats.times;
    Ok(out)
}

/// `(AP_pt, NE/PCK per category, NE/PCK over all)` of detection records of `taxonomy` against
/// the ground truth (the before/after numbers of `refine`).
pub fn landmark_quality(
    taxonomy: &'static Taxonomy,
    gt: &GroundTruth,
    samples: &[Sample],
    records: &[DetectionRecord],
) -> Result<(f64, Vec<LandmarkStats>, LandmarkStats)> {
    let r = landmark_report(taxonomy, gt, samples, records)?;
    Ok((r.ap_pt, r.per_category, r.overall))
}

/// Landmark quality of detection records, overall and per category.
#[derive(Debug, Clone)]
pub struct LandmarkReport {
    /// AP at OKS .50:.95 (0 without detections).
    pub ap_pt: f64,
    /// AP_pt per category (index = its class in the taxonomy; −1 where the ground truth has
    /// none).
    pub per_category_ap: Vec<f64>,
    /// NE/PCK per category (index = its class).
    pub per_category: Vec<LandmarkStats>,
    /// NE/PCK over every category.
    pub overall: LandmarkStats,
}

/// [`LandmarkReport`] of detection records of `taxonomy` against the ground truth.
pub fn landmark_report(
    taxonomy: &'static Taxonomy,
    gt: &GroundTruth,
    samples: &[Sample],
    records: &[DetectionRecord],
) -> Result<LandmarkReport> {
    let res = DatasetResults {
        bbox: records
            .iter()
            .map(|r| BboxResult {
                image_id: r.image_id,
                category_id: r.category_id,
                bbox: r.bbox,
                score: r.score,
                attributes: Vec::new(),
            })
            .collect(),
        keypoints: records
            .iter()
            .map(|r| KeypointResult {
                image_id: r.image_id,
                category_id: r.category_id,
                keypoints: r.keypoints.clone(),
                score: r.score,
                attributes: Vec::new(),
            })
            .collect(),
        ..Default::default()
    };
    let (_, kps) = evaluate_in_memory(&gt.in_taxonomy(taxonomy), &res)?;
    let mut per_category_ap = vec![-1.0; taxonomy.num_categories()];
    if let Some(e) = &kps {
        for (c, ap) in e.per_category_ap() {
            if let Some(class) = usize::try_from(c).ok().and_then(|c| taxonomy.class_of(c)) {
                per_category_ap[class] = ap;
            }
        }
    }
    let (per_category, overall) = landmark_errors_in(taxonomy, samples, &res.bbox, &res.keypoints);
    Ok(LandmarkReport {
        ap_pt: kps.map_or(0.0, |e| e.stats[0].max(0.0)),
        per_category_ap,
        per_category,
        overall,
    })
}

/// Box and landmark evaluations of results held in memory (`None` where there are none).
pub fn evaluate_in_memory(
    gt: &GroundTruth,
    res: &DatasetResults,
) -> Result<(Option<Evaluation>, Option<Evaluation>)> {
    let label = Path::new("(in memory)");
    let sigmas = gt.sigmas();
    let entry = |image_id, category_id: usize, score: f32| ResultEntry {
        image_id,
        category_id: category_id as i64,
        bbox: None,
        keypoints: None,
        score: score as f64,
    };
    let to_f64 = |v: &[f32]| Some(v.iter().map(|&x| x as f64).collect());
    let boxes: Vec<ResultEntry> = res
        .bbox
        .iter()
        .map(|b| ResultEntry {
            bbox: to_f64(&b.bbox),
            ..entry(b.image_id, b.category_id, b.score)
        })
        .collect();
    let kps: Vec<ResultEntry> = res
        .keypoints
        .iter()
        .map(|k| ResultEntry {
            keypoints: to_f64(&k.keypoints),
            ..entry(k.image_id, k.category_id, k.score)
        })
        .collect();
    let run = |list: Vec<ResultEntry>, kind: IouType| -> Result<Option<Evaluation>> {
        if list.is_empty() {
            return Ok(None);
        }
        let r = Results::from_entries(label, list, gt)?;
        Ok(Some(evaluate(gt, &r, Params::new(kind, sigmas.clone()))?))
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

/// Everything an evaluation of a model on a dataset produced; `Display` prints it all (timings,
/// results files, pycocotools' tables, per-category AP, NE/PCK, the headline line).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EvalReport {
    /// Images evaluated.
    pub images: usize,
    /// The network's input size.
    pub input_size: usize,
    /// Time per stage, summed over the images.
    pub times: StageTimes,
    /// Box AP/AR (pycocotools' numbers), when there were detections.
    pub bbox: Option<Evaluation>,
    /// Landmark AP/AR with the taxonomy's OKS sigmas, when there were detections.
    pub keypoints: Option<Evaluation>,
    /// The model's taxonomy.
    pub taxonomy: &'static Taxonomy,
    /// NE/PCK per category (index = its class in the taxonomy).
    pub per_category: Vec<LandmarkStats>,
    /// NE/PCK over every category.
    pub landmarks: LandmarkStats,
    /// FashionAI's NE (visible landmarks; the top-scoring detection of each garment's category
    /// in its image), its landmark count and the garments without a detection: for the
    /// `fashionai` taxonomy only.
    pub fashionai_ne: Option<(f64, usize, usize)>,
    /// Detections kept, and the score they were kept at.
    pub detections: usize,
    /// The score threshold of the kept detections.
    pub threshold: f32,
    /// `results_bbox.json`, `results_keypoints.json`.
    pub files: [PathBuf; 2],
}

impl EvalReport {
    /// AP at IoU .50:.95 (NaN without detections).
    pub fn ap_box(&self) -> f64 {
        self.bbox.as_ref().map_or(f64::NAN, |e| e.stats[0])
    }

    /// AP at OKS .50:.95 (NaN without detections).
    pub fn ap_pt(&self) -> f64 {
        self.keypoints.as_ref().map_or(f64::NAN, |e| e.stats[0])
    }

    /// The numbers as one JSON object: `{"ap_box", "ap_pt", "stats": {"bbox", "keypoints", "ne",
    /// "pck02"}}`.
    pub fn json(&self) -> serde_json::Value {
        let mut stats = serde_json::Map::new();
        for e in [self.bbox.as_ref(), self.keypoints.as_ref()]
            .into_iter()
            .flatten()
        {
            stats.insert(
                e.params.iou_type.name().to_string(),
                serde_json::json!(e.stats),
            );
        }
        stats.insert("ne".into(), serde_json::json!(self.landmarks.ne()));
        stats.insert("pck02".into(), serde_json::json!(self.landmarks.pck02()));
        if let Some((ne, _, _)) = self.fashionai_ne {
            stats.insert("fashionai_ne".into(), serde_json::json!(ne));
        }
        serde_json::json!({"ap_box": self.ap_box(), "ap_pt": self.ap_pt(), "stats": stats})
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.images.max(1) as f64;
        let t = self.times;
        let s = self.input_size;
        writeln!(
            f,
            "{} images; per image: {:.1} ms preprocess, {:.1} ms forward, {:.1} ms decode, {:.1} ms post at {s}×{s}",
            self.images,
            1e3 * t.preprocess / n,
            1e3 * t.forward / n,
            1e3 * t.decode / n,
            1e3 * t.post / n,
        )?;
        writeln!(
            f,
            "results: {} and {}",
            self.files[0].display(),
            self.files[1].display()
        )?;
        for e in [self.bbox.as_ref(), self.keypoints.as_ref()]
            .into_iter()
            .flatten()
        {
            write!(f, "{e}")?;
        }
        writeln!(
            f,
            "landmark error (NE: FashionAI normalised error; PCK@0.2), matched items only:"
        )?;
        for (c, p) in self.taxonomy.categories.iter().zip(&self.per_category) {
            if p.items > 0 {
                writeln!(
                    f,
                    "  {:<24} NE {:.4}  PCK@0.2 {:.3}  matched {}/{}",
                    c.name,
                    p.ne(),
                    p.pck02(),
                    p.matched,
                    p.items
                )?;
            }
        }
        if let Some((ne, n, missed)) = self.fashionai_ne {
            writeln!(
                f,
                "FashionAI NE {ne:.4} over {n} visible landmarks (armpits / waistband normalise; \
                 {missed} garments without a detection of their category)"
            )?;
        }
        let all = &self.landmarks;
        writeln!(
            f,
            "  {:<24} NE {:.4}  PCK@0.2 {:.3}  matched {}/{} ({} items without both normalising landmarks)",
            "all",
            all.ne(),
            all.pck02(),
            all.matched,
            all.items,
            all.no_normaliser
        )?;
        write!(
            f,
            "AP_box {:.4}  AP_pt {:.4}  ({} detections kept at score ≥ {})",
            self.ap_box(),
            self.ap_pt(),
            self.detections,
            self.threshold
        )
    }
}

/// Runs `det` on a dataset (`samples` from `load_coco`, `gt` read from the same file), writes the
/// challenge results into `out` and evaluates boxes, landmarks and NE/PCK. Images over `limits`
/// stop the run with their error.
pub fn evaluate_detector(
    det: &Detector,
    samples: &[Sample],
    gt: &GroundTruth,
    images: &Path,
    limits: &Limits,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport> {
    let res = predict_dataset(det, samples, images, limits, progress)?;
    create_dir_all(out)?;
    let files = [
        out.join("results_bbox.json"),
        out.join("results_keypoints.json"),
    ];
    write_json_compact(&files[0], &res.bbox)?;
    write_json_compact(&files[1], &res.keypoints)?;
    let taxonomy = det.grouping().taxonomy();
    let (bbox, keypoints) = evaluate_in_memory(&gt.in_taxonomy(taxonomy), &res)?;
    let (per_category, landmarks) =
        landmark_errors_in(taxonomy, samples, &res.bbox, &res.keypoints);
    let fashionai_ne = (taxonomy.name == "fashionai").then(|| {
        // The top-scoring detection per (image, category).
        let mut best: std::collections::HashMap<(u64, usize), usize> = Default::default();
        for (i, k) in res.keypoints.iter().enumerate() {
            let e = best.entry((k.image_id, k.category_id)).or_insert(i);
            if res.keypoints[*e].score < k.score {
                *e = i;
            }
        }
        super::landmarks::fashionai_ne(taxonomy, samples, &|image, cat| {
            best.get(&(image, cat)).map(|&i| {
                res.keypoints[i]
                    .keypoints
                    .chunks_exact(3)
                    .map(|c| [c[0], c[1], c[2]])
                    .collect()
            })
        })
    });
    Ok(EvalReport {
        images: res.images,
        input_size: det.options.input_size,
        times: res.times,
        bbox,
        keypoints,
        taxonomy,
        per_category,
        landmarks,
        fashionai_ne,
        detections: res.bbox.len(),
        threshold: det.options.threshold,
        files,
    })
}

/// Draws the detections scoring at least `threshold` on the first `n` images into
/// `dir/<stem>.pred.jpg`; returns how many images were drawn.
#[cfg(feature = "draw")]
pub fn draw_predictions(
    det: &Detector,
    samples: &[Sample],
    images: &Path,
    limits: &Limits,
    dir: &Path,
    n: usize,
    threshold: f32,
) -> Result<usize> {
    create_dir_all(dir)?;
    let mut count = 0;
    for s in samples.iter().take(n) {
        let mut img = limits.open_rgb(&images.join(&s.file_name))?;
        let dets: Vec<_> = det
            .detect(&img)?
            .into_iter()
            .filter(|d| d.score >= threshold)
            .collect();
        crate::infer::output::draw_detections(&mut img, &dets, det.grouping().taxonomy());
        let stem = Path::new(&s.file_name).file_stem().map_or_else(
            || s.image_id.to_string(),
            |x| x.to_string_lossy().into_owned(),
        );
        crate::io::save_image_atomic(&img, &dir.join(format!("{stem}.pred.jpg")))?;
        count += 1;
    }
    Ok(count)
}
