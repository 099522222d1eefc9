//! COCO-style evaluation of boxes and keypoints, reproducing pycocotools' `COCOeval`
//! (`evaluate`, `accumulate`, `summarize`) and `COCO.loadRes` number for number, with the
//! DeepFashion2 evaluator's only change (a 294-entry OKS sigma vector) as a parameter.
//!
//! The rules reproduced (pycocotools 2.0 `cocoeval.py`/`coco.py`, and DeepFashion2's copy of it,
//! `deepfashion2_api/PythonAPI/pycocotools/cocoeval.py`):
//! - `loadRes`: results get ids `1..=N` in file order. If the *first* result has a non-empty
//!   `bbox`, every result's `area` is `w·h`; otherwise (keypoints) the box and area come from the
//!   min/max of all predicted x and y, zeros included.
//! - GT `ignore` = `iscrowd`; for keypoints also when `num_keypoints == 0`.
//! - Detections per (image, category) are sorted by score (stable) and cut at the largest
//!   `maxDets`; matching is greedy per IoU threshold, preferring non-ignored GT, crowd GT can
//!   match several detections, and IoU against crowd uses the detection's area as union.
//! - OKS: `e = d²/(2σ)²/(area+eps)/2` over labelled GT keypoints; GT without labelled keypoints
//!   use the distance to a box twice the GT box.
//! - Precision is made monotone, sampled at 101 recall points with `searchsorted(side='left')`;
//!   `stats` average the entries that are not −1.

mod files;
mod matching;
mod summary;

pub use files::{Ann, GroundTruth, IouType, ResultEntry, Results, coco_person_sigmas, sigmas_for};
pub use matching::{Evaluation, Params, bbox_iou, evaluate, oks};
pub use summary::SummaryLine;
