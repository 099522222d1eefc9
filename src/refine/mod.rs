//! PoseFix landmark refinement (Moon et al., 2019; DeepMark++ §3, Table 3): a model-agnostic
//! refiner per DeepFashion2 category that takes a garment crop and a landmark estimate (the
//! detector's, or any method's) and returns corrected landmarks.
//!
//! - [`config`]: the refiner's shape ([`RefinerConfig`], saved beside its weights);
//! - [`net`]: the network (ResNet + deconvolutions + 1×1 head), integral regression and loss;
//! - [`codec`]: crops, input-pose heatmaps, targets and decoding (no network);
//! - [`errors`]: PoseFix's error synthesis with OKS-defined radii;
//! - [`data`]: training samples on Burn's data API (feature `train`);
//! - [`train`]: one refiner per category into one folder (feature `train`);
//! - [`apply`]: a folder of refiners applied to detections ([`RefinerSet`]).
//!
//! Technique (5), symmetric-axis refinement, is a decoding step: `codec::symmetry`.

pub mod apply;
pub mod codec;
pub mod config;
#[cfg(feature = "train")]
pub mod data;
pub mod errors;
pub mod net;
#[cfg(feature = "train")]
pub mod train;

pub use apply::{RefinerIndex, RefinerSet};
pub use config::{RefinerArch, RefinerConfig, read_refiner_config};
