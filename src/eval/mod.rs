//! Evaluation: COCO-style AP for boxes and keypoints exactly as pycocotools (and DeepFashion2's
//! evaluator) compute it, landmark error metrics, model evaluation reports and the `tune` search.

pub mod coco;
pub mod landmarks;
pub mod run;
pub mod tune;

pub use run::{EVAL_SCORE_THRESHOLD, EvalReport, evaluate_detector};
