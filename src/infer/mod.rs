//! Inference: the [`Detector`] pipeline (pre-processing, forward pass, flip/multi-scale fusion,
//! decoding with [`crate::codec`]) and challenge-format results.

pub mod batch;
pub mod detector;
pub mod finetuned;
pub mod output;

pub use crate::codec::{Detection, Nms, PostConfig};
pub use batch::{RunStats, detect_all};
pub use detector::{Detector, DetectorOptions, StageTimes};
