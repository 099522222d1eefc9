//! Evaluation: COCO-style AP for boxes and keypoints exactly as pycocotools (and DeepFashion2's
//! evaluator) compute it, plus landmark error metrics.

pub mod coco;
pub mod landmarks;
pub mod run;
