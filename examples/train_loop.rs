//! A training loop of your own around deepmark's model, data and loss (no CLI, no burn-train):
//!
//!     cargo run --release --features flex,train,synth --example train_loop
//!
//! Generates a small synthetic DeepFashion2-format set in a temporary folder, then trains a
//! quarter-width ResNet-18 CenterNet on it for a few steps, printing each step's loss terms.

use std::sync::Arc;

use burn::data::dataloader::DataLoaderBuilder;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::Device;
use deepmark::codec::Scheme;
use deepmark::data::dataset::{Df2Dataset, SampleConfig, TrainBatcher};
use deepmark::model::{Arch, CenterNetConfig};
use deepmark::train::{LossWeights, loss_terms};

fn main() -> deepmark::Result<()> {
    let dir = std::env::temp_dir().join("deepmark-example-train-loop");
    let json = deepmark::data::synth::ensure(&dir, 16, 1)?;
    let sample = SampleConfig::new(128, Scheme::Deepmark62, true)?;
    let (dataset, _skipped) = Df2Dataset::open(
        &json,
        &deepmark::io::default_image_dir(&json),
        sample,
        false,
        &deepmark::io::Limits::default(),
    )?;

    // Training needs an autodiff device; the caller picks the backend.
    let device = Device::flex().autodiff();
    let config = CenterNetConfig::new(Arch::Res18Slim, Scheme::Deepmark62.layout());
    let mut model = config.init(&device);
    let mut optim = AdamConfig::new().init();
    let loader = DataLoaderBuilder::new(TrainBatcher)
        .batch_size(8)
        .shuffle(1)
        .set_device(device.clone())
        .build(Arc::new(dataset));
    for epoch in 0..3 {
        for batch in loader.iter() {
            let batch = batch.map_err(|e| deepmark::Error::invalid(e.to_string()))?;
            let stacks = model.forward_stacks(batch.input.clone());
            let (loss, heads) = loss_terms(&stacks, &batch, &LossWeights::centernet());
            let hm: f32 = heads.hm.into_scalar();
            println!(
                "epoch {epoch}: loss {:.3} (hm {hm:.3})",
                loss.clone().into_scalar::<f32>()
            );
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
    }
    Ok(())
}
