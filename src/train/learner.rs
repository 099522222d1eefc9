//! Training a [`CenterNet`] in burn-train's `Learner` (feature `learner`): the model implements
//! `TrainStep` and `InferenceStep` itself, so `SupervisedTraining` (its dashboard,
//! checkpointer, early stopping and metric loggers) trains it with no wrapper type.
//!
//! - Input: a [`TrainBatch`] (the [`TrainBatcher`](crate::data::dataset::TrainBatcher) of a
//!   [`Df2Dataset`](crate::data::dataset::Df2Dataset) through Burn's `DataLoaderBuilder`).
//! - Output: a [`DetectionOutput`]: the weighted total loss, which feeds burn-train's
//!   `LossMetric`, and the six heads' terms, which feed one [`HeadLossMetric`] each.
//! - The losses are CenterNet's multi-pose losses with its weights
//!   ([`LossWeights::centernet`]; `xingyizhou/CenterNet`, `src/lib/trains/multi_pose.py`),
//!   computed on the device: the step reads nothing back, and the metrics read their scalars
//!   on burn-train's metric thread.
//!
//! The command-line trainer ([`super::trainer`]) adds what a `Learner` does not have (mixed
//! precision with loss scaling, data-parallel shards, CenterNet's schedule, resumable runs); both
//! compute the step's loss with [`loss_terms`].
//!
//! ```no_run
//! # #[cfg(feature = "flex")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use burn::data::dataloader::DataLoaderBuilder;
//! use burn::optim::AdamConfig;
//! use burn::tensor::Device;
//! use burn::train::{Learner, SupervisedTraining, metric::LossMetric};
//! use deepmark::codec::Scheme;
//! use deepmark::data::dataset::{Df2Dataset, SampleConfig, TrainBatcher};
//! use deepmark::model::{Arch, CenterNetConfig};
//! use deepmark::train::learner::HeadLossMetric;
//!
//! let device = Device::flex().autodiff();
//! let config = CenterNetConfig::new(Arch::Res18Slim, Scheme::Deepmark62.layout());
//! let model = config.init(&device);
//! let data = |json: &str| -> deepmark::Result<_> {
//!     let sample = SampleConfig::new(128, Scheme::Deepmark62, false)?;
//!     let json = std::path::Path::new(json);
//!     let images = deepmark::io::default_image_dir(json);
//!     let limits = deepmark::io::Limits::default();
//!     let (dataset, _skipped) = Df2Dataset::open(json, &images, sample, false, &limits)?;
//!     Ok(Arc::new(dataset))
//! };
//! let loader = |d| DataLoaderBuilder::new(TrainBatcher).batch_size(8).build(d);
//! let training = SupervisedTraining::new(
//!     "runs/learner",
//!     loader(data("datasets/synthetic/train.json")?),
//!     loader(data("datasets/synthetic-val/train.json")?),
//! )
//! .metric_train_numeric(LossMetric::new())
//! .metric_valid_numeric(LossMetric::new())
//! .metric_train_numeric(HeadLossMetric::new("hm")?)
//! .num_epochs(2);
//! let optimizer = AdamConfig::new().init();
//! let result = training.launch(Learner::new(model, optimizer, 1e-3));
//! let trained = result.model;
//! # drop(trained);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "flex"))]
//! # fn main() {}
//! ```

use std::sync::Arc;

use burn::tensor::{ExecutionError, Tensor, TensorReadError};
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, LossInput, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric,
    NumericAttributes, NumericEntry, SerializedEntry,
};
use burn::train::{InferenceStep, ItemLazy, TrainOutput, TrainStep};

use super::loss::{LossWeights, loss_terms};
use crate::codec::heads::{HEAD_NAMES, Heads};
use crate::data::dataset::TrainBatch;
use crate::error::{Error, Result};
use crate::model::CenterNet;

/// One training or validation step's losses, on the device: the weighted total (what is
/// optimised) and each head's unweighted term, averaged over the network's stacks.
#[derive(Debug, Clone)]
pub struct DetectionOutput {
    /// The weighted total, shape `[1]`.
    pub loss: Tensor<1>,
    /// Each head's term, shape `[1]` each.
    pub heads: Heads<Tensor<1>>,
}

impl DetectionOutput {
    /// The losses of `model` on `batch`, with CenterNet's weights.
    pub fn of(model: &CenterNet, batch: &TrainBatch) -> Self {
        let stacks = model.forward_stacks(batch.input.clone());
        let (loss, heads) = loss_terms(&stacks, batch, &LossWeights::centernet());
        DetectionOutput { loss, heads }
    }
}

impl ItemLazy for DetectionOutput {
    fn sync(self) -> std::result::Result<Self, ExecutionError> {
        // No read-back: start the device's pending work and leave the autodiff graph behind,
        // so the metric thread neither waits on an idle queue nor keeps the tape alive.
        self.loss.device().flush()?;
        Ok(DetectionOutput {
            loss: self.loss.detach().without_autodiff(),
            heads: self.heads.map(|t| t.detach().without_autodiff()),
        })
    }
}

impl Adaptor<LossInput> for DetectionOutput {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

/// The input of the [`HeadLossMetric`]s: the six heads' terms.
#[derive(Debug, Clone)]
pub struct HeadLossInput {
    heads: Heads<Tensor<1>>,
}

impl Adaptor<HeadLossInput> for DetectionOutput {
    fn adapt(&self) -> HeadLossInput {
        HeadLossInput {
            heads: self.heads.clone(),
        }
    }
}

impl TrainStep for CenterNet {
    type Input = TrainBatch;
    type Output = DetectionOutput;

    fn step(&self, batch: TrainBatch) -> TrainOutput<DetectionOutput> {
        let out = DetectionOutput::of(self, &batch);
        let grads = out.loss.backward();
        TrainOutput::new(self, grads, out)
    }
}

impl InferenceStep for CenterNet {
    type Input = TrainBatch;
    type Output = DetectionOutput;

    fn step(&self, batch: TrainBatch) -> DetectionOutput {
        DetectionOutput::of(self, &batch)
    }
}

/// One head's loss term (`hm`, `wh`, `reg`, `hps`, `hm_hp` or `hp_offset`) as a burn-train
/// numeric metric, averaged over the epoch like burn-train's `LossMetric`.
#[derive(Clone)]
pub struct HeadLossMetric {
    head: usize,
    name: MetricName,
    state: NumericMetricState,
}

impl HeadLossMetric {
    /// The metric of the head named `head` (one of [`HEAD_NAMES`]); it is displayed as
    /// `Loss <head>`.
    pub fn new(head: &str) -> Result<Self> {
        let Some(i) = HEAD_NAMES.iter().position(|h| *h == head) else {
            return Err(Error::invalid(format!(
                "unknown head '{head}' (expected one of: {})",
                HEAD_NAMES.join(", ")
            )));
        };
        Ok(HeadLossMetric {
            head: i,
            name: Arc::new(format!("Loss {head}")),
            state: NumericMetricState::default(),
        })
    }

    /// One metric per head, in [`HEAD_NAMES`]' order.
    pub fn all() -> [HeadLossMetric; 6] {
        HEAD_NAMES.map(|h| HeadLossMetric::new(h).expect("a head name"))
    }
}

impl Metric for HeadLossMetric {
    type Input = HeadLossInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: false,
        }
        .into()
    }

    fn update(
        &mut self,
        input: &HeadLossInput,
        _metadata: &MetricMetadata,
    ) -> std::result::Result<SerializedEntry, TensorReadError> {
        let term = input.heads.clone().into_array()[self.head].clone();
        let value = term.mean().try_into_scalar::<f64>()?;
        self.state.update(value, 1);
        Ok(self
            .state
            .compute_update(FormatOptions::new(self.name()).precision(4)))
    }

    fn compute(&mut self) -> std::result::Result<SerializedEntry, TensorReadError> {
        Ok(self
            .state
            .compute_final(FormatOptions::new(self.name()).precision(4)))
    }

    fn clear(&mut self) {
        self.state.reset()
    }
}

impl Numeric for HeadLossMetric {
    fn value(&self) -> Option<NumericEntry> {
        Some(self.state.current_value())
    }

    fn running_value(&self) -> Option<NumericEntry> {
        Some(self.state.running_value())
    }

    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
    }
}
