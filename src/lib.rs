//! DeepMark++ clothing detection and landmark estimation (CenterNet) on Burn.
//!
//! The library never picks a backend: every constructor takes a `burn::tensor::Device`.
//! Enable the backends you need with the `flex`, `ndarray` and `wgpu` features. See
//! `ARCHITECTURE.md` for the rooms and how data flows between them.

pub mod backend;
pub mod checkpoint;
pub mod codec;
pub mod data;
#[cfg(feature = "draw")]
pub mod draw;
pub mod error;
pub mod eval;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod garment;
pub mod heads_io;
pub mod infer;
pub mod io;
pub mod model;
mod named;
pub mod preprocess;
pub mod refine;
pub mod topdown;
#[cfg(feature = "train")]
pub mod train;

pub use error::{Error, Result};
