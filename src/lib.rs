//! DeepMark++ clothing detection and landmark estimation (CenterNet) on [Burn](https://burn.dev).
//!
//! One network predicts, on a stride-4 map, a centre heatmap per clothing category, box size and
//! offset, landmark offsets from the centre, landmark heatmaps and their offsets
//! ([`codec::Heads`]). DeepFashion2's 294 landmarks can be grouped into 62 semantic groups
//! ([`codec::Scheme`]); decoding applies DeepMark++'s post-processing ([`codec::decode`]).
//!
//! The library never picks a backend: every constructor takes a `burn::tensor::Device`. Enable
//! the backends you use with the `flex`, `ndarray`, `wgpu` and `vulkan` features; `train` adds
//! the training blocks, `learner` burn-train's `Learner`, `pytorch` CenterNet checkpoint import,
//! `draw` and `synth` drawings and the synthetic data set. `ARCHITECTURE.md` describes the
//! modules and how data flows between them.
//!
//! # Detecting clothing
//!
//! ```
//! # #[cfg(feature = "flex")]
//! # fn main() -> deepmark::Result<()> {
//! use burn::tensor::Device;
//! use deepmark::infer::Detector;
//!
//! let device = Device::flex();
//! let mut detector = Detector::from_weights("model-weights/demo.bpk".as_ref(), &device)?;
//! detector.options.threshold = 0.05;
//! let image = deepmark::io::open_rgb("datasets/samples/matplotlib_grace_hopper.jpg".as_ref())?;
//! for d in detector.detect(&image)? {
//!     let name = deepmark::garment::category(d.category_id).map_or("?", |c| c.name);
//!     println!("{name} {:.2} {:?}, {} landmarks", d.score, d.bbox, d.landmarks.len());
//! }
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "flex"))]
//! # fn main() {}
//! ```
//!
//! # Building a model from a configuration
//!
//! ```
//! # #[cfg(feature = "flex")]
//! # fn main() {
//! use burn::tensor::{Device, Tensor};
//! use deepmark::codec::Scheme;
//! use deepmark::model::{Arch, CenterNetConfig};
//!
//! let device = Device::flex();
//! let config = CenterNetConfig::new(Arch::Res18Slim, Scheme::Deepmark62.layout());
//! let model = config.init(&device);
//! let heads = model.forward(Tensor::zeros([1, 3, 128, 128], &device));
//! // 13 category heatmaps and 62 landmark-group heatmaps at a quarter of the input size.
//! assert_eq!(heads.hm.dims(), [1, 13, 32, 32]);
//! assert_eq!(heads.hm_hp.dims(), [1, 62, 32, 32]);
//! # }
//! # #[cfg(not(feature = "flex"))]
//! # fn main() {}
//! ```
//!
//! # Training
//!
//! [`train::loss_terms`] is CenterNet's multi-pose loss for a custom loop
//! (`examples/train_loop.rs`); with the `learner` feature burn-train's `SupervisedTraining`
//! trains a [`model::CenterNet`] directly (`train::learner`, `examples/learner.rs`);
//! [`train::train`] is the command-line trainer's loop (CenterNet's schedule, mixed precision,
//! resumable run folders).

#![warn(missing_docs)]

pub mod attributes;
pub mod checkpoint;
pub mod codec;
pub mod data;
#[cfg(feature = "draw")]
pub mod draw;
pub mod error;
pub mod eval;
pub mod export;
pub mod garment;
pub mod heads_io;
pub mod infer;
pub mod io;
pub mod model;
mod named;
mod precision;
pub mod preprocess;
pub mod refine;
pub mod topdown;
#[cfg(feature = "train")]
pub mod train;

pub use error::{Error, Result};
/// The `image` crate, whose `RgbImage` the detector takes: use it to read and write images
/// without naming a version of your own.
pub use image;
pub use precision::Precision;
