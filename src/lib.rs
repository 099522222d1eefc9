//! DeepMark++ clothing detection and landmark estimation (CenterNet) on Burn.
//!
//! The library never picks a backend: every constructor takes a `burn::tensor::Device`.
//! Enable the backends you need with the `flex`, `ndarray` and `wgpu` features.

pub mod backend;
pub mod checkpoint;
pub mod data;
pub mod draw;
pub mod eval;
pub mod heads_io;
pub mod infer;
pub mod model;
mod named;
pub mod preprocess;
pub mod scheme;
#[cfg(feature = "train")]
pub mod train;
