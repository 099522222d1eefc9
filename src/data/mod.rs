//! DeepFashion2 data: annotation files (COCO-style and raw), CenterNet's augmentation, the
//! synthetic generator (feature `synth`) and, with the `train` feature, the training dataset and
//! batcher. Targets are encoded by [`crate::codec`].

pub mod augment;
#[cfg(feature = "train")]
pub mod dataset;
pub mod deepfashion2;
#[cfg(feature = "synth")]
pub mod synth;
