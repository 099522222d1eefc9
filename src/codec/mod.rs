//! The codec: everything between garments and the network's output channels, independent of the
//! network itself (mmpose's codec idea). It fixes the head layout of each landmark [`Scheme`],
//! groups a taxonomy's landmarks into channels ([`Grouping`], recorded in model configs as a
//! [`ModelTaxonomy`]), encodes garments into
//! CenterNet's training targets ([`targets`]) and decodes head maps back into detections with
//! DeepMark++'s post-processing ([`decode`]) and test-time flip fusion ([`fuse`]). Encoding and
//! decoding are tested by round trip without any weights.

pub mod decode;
pub mod fuse;
pub mod grouping;
pub mod heads;
pub mod scheme;
pub mod symmetry;
pub mod targets;

pub use decode::{Detection, HeadMaps, Nms, PostConfig};
pub use grouping::{Grouping, ModelTaxonomy};
pub use heads::{HEAD_NAMES, HeadLayout, Heads};
pub use scheme::Scheme;
pub use symmetry::SymmetryConfig;

/// Output stride of every CenterNet backbone here: head maps are `input / STRIDE` on a side, and
/// map coordinates times `STRIDE` are network-input pixels.
pub const STRIDE: usize = 4;
