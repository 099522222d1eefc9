//! Training a deepmark `CenterNet` in burn-train's `SupervisedTraining`, with no wrapper type
//! (`deepmark::train::learner`):
//!
//!     cargo run --release --features flex,learner,synth --example learner
//!
//! Generates small synthetic training and validation sets in a temporary folder and trains two
//! epochs; burn-train logs the loss and each head's loss term under the run folder.

use std::sync::Arc;

use burn::data::dataloader::DataLoaderBuilder;
use burn::optim::AdamConfig;
use burn::tensor::Device;
use burn::train::metric::LossMetric;
use burn::train::{Learner, SupervisedTraining};
use deepmark::codec::Scheme;
use deepmark::data::dataset::{Df2Dataset, SampleConfig, TrainBatcher};
use deepmark::model::{Arch, CenterNetConfig};
use deepmark::train::learner::HeadLossMetric;

fn main() -> deepmark::Result<()> {
    let root = std::env::temp_dir().join("deepmark-example-learner");
    let device = Device::flex().autodiff();
    let loader = |name: &str, n: usize, seed: u64| -> deepmark::Result<_> {
        let json = deepmark::data::synth::ensure(&root.join(name), n, seed)?;
        let sample = SampleConfig::new(128, Scheme::Deepmark62, name == "train")?;
        let images = deepmark::io::default_image_dir(&json);
        let (dataset, _skipped) = Df2Dataset::open(
            &json,
            &images,
            sample,
            false,
            &deepmark::io::Limits::default(),
        )?;
        Ok(DataLoaderBuilder::new(TrainBatcher)
            .batch_size(8)
            .set_device(device.clone())
            .build(Arc::new(dataset)))
    };
    let config = CenterNetConfig::new(Arch::Res18Slim, Scheme::Deepmark62.layout());
    let mut training = SupervisedTraining::new(
        root.join("run"),
        loader("train", 32, 1)?,
        loader("val", 8, 2)?,
    )
    .metric_train_numeric(LossMetric::new())
    .metric_valid_numeric(LossMetric::new());
    for metric in HeadLossMetric::all() {
        training = training.metric_train_numeric(metric);
    }
    let result = training.num_epochs(2).launch(Learner::new(
        config.init(&device),
        AdamConfig::new().init(),
        1e-3,
    ));
    println!("trained; metrics logged in {}", root.join("run").display());
    drop(result.model);
    Ok(())
}
