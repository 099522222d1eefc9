//! Top-down landmarks (Aggregation & Finetuning, 1st place DeepFashion2 2020; CPN, Chen et
//! al. 2018): the detector finds the garments, then a Cascaded Pyramid Network estimates each
//! garment's landmarks on the crop of its box, in the 81-group aggregation (`agg81`) mapped
//! back to the category's landmarks. One universal model plus models fine-tuned per category
//! form a **model set**, dispatched by the detected category.
//!
//! - [`config`]: the network's shape ([`CpnConfig`], saved beside its weights);
//! - [`net`]: ResNet C2..C5, GlobalNet and RefineNet;
//! - [`codec`]: Gaussian targets in the group layout and heatmap decoding (no network);
//! - [`loss`]: GlobalNet's L2 and RefineNet's L2 with online hard keypoint mining;
//! - [`data`] and [`train`]: training a model set (feature `train`);
//! - [`apply`]: a model set applied to detections ([`TopDownSet`]).

pub mod apply;
pub mod codec;
pub mod config;
#[cfg(feature = "train")]
pub mod data;
pub mod loss;
pub mod net;
#[cfg(feature = "train")]
pub mod train;

pub use apply::{Combine, Served, TopDownSet};
pub use config::{CpnArch, CpnConfig};
