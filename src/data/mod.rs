//! DeepFashion2 data: taxonomy and landmark grouping schemes.

pub mod grouping;
pub mod taxonomy;
