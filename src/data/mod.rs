//! DeepFashion2 data: taxonomy, landmark grouping schemes and annotation files.

pub mod augment;
pub mod deepfashion2;
pub mod grouping;
pub mod targets;
pub mod taxonomy;
