//! Inference: decoding CenterNet heads into clothing detections with landmarks, DeepMark++'s
//! post-processing, flip/multi-scale fusion, and the [`Detector`] pipeline.

pub mod decode;
pub mod detector;
pub mod fuse;
pub mod output;

pub use decode::{Detection, Nms, PostConfig};
pub use detector::{Detector, DetectorOptions, StageTimes};
