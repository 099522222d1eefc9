//! Training: the run's configuration and presets ([`config`]), CenterNet's multi-pose losses
//! ([`loss`]), mixed precision ([`amp`]), the run directory ([`run_dir`]), the loop ([`trainer`]) and its data-parallel
//! steps ([`parallel`]); with the `learner` feature, burn-train's `Learner` trains a
//! [`CenterNet`](crate::model::CenterNet) directly (`learner`).

pub mod amp;
pub mod config;
#[cfg(feature = "learner")]
pub mod learner;
pub mod loss;
pub mod parallel;
pub mod run_dir;
pub mod trainer;

pub use amp::{AmpConfig, LossScale};
pub use config::{
    BestMetric, MemoryEstimate, OptimizerConfig, Selection, TrainConfig, TrainOverrides, TrainPlan,
    Validation, parse_lr_steps, scaled_lr,
};
pub use loss::{LossParts, LossWeights, loss_terms};
pub use run_dir::{BestEpoch, EpochRow, RunDir, RunLock, RunStart, TrainState, read_metrics};
pub use trainer::{Event, TrainSummary, steps_per_epoch, train, train_on};
