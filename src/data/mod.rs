//! DeepFashion2 data: taxonomy, landmark grouping schemes, annotation files, CenterNet targets,
//! augmentation and (with the `train` feature) the training dataset and batcher.

pub mod augment;
#[cfg(feature = "train")]
pub mod dataset;
pub mod deepfashion2;
pub mod grouping;
pub mod synth;
pub mod targets;
pub mod taxonomy;
