//! Training: CenterNet's multi-pose losses and the training loop (Burn autodiff, Adam).

pub mod loss;
pub mod trainer;

pub use loss::{LossParts, LossWeights};
pub use trainer::{Event, TrainConfig, TrainSummary, Validation, scaled_lr, train};
