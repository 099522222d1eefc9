//! CenterNet networks: backbones, necks and heads.

pub mod cast;
pub mod centernet;
pub mod dcn;
pub mod dla;
pub mod dla_up;
pub mod fast;
pub mod heads;
pub mod hourglass;
pub mod layers;
pub mod resnet;
pub mod sync;

pub use centernet::{Arch, Backbone, BackboneConfig, CenterNet, CenterNetConfig};
pub use heads::HeadOutputs;
