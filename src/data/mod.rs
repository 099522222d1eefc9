//! Data: annotation files (COCO-style keypoints files of any taxonomy, DeepFashion2's raw
//! files, FashionAI's CSV), CenterNet's augmentation, the
//! synthetic generator (feature `synth`) and, with the `train` feature, the training dataset and
//! batcher. Targets are encoded by [`crate::codec`].

pub mod augment;
#[cfg(feature = "train")]
pub mod dataset;
pub mod deepfashion2;
pub mod fashionai;
#[cfg(feature = "synth")]
pub mod synth;
