//! The library as another Burn project embeds it: only `deepmark`'s public API and `burn`'s,
//! no helper of this repository's tests. Inference on the demo weights, one custom training
//! loop, and burn-train's `SupervisedTraining` on a small synthetic set.
#![cfg(feature = "flex")]

use std::path::{Path, PathBuf};

use burn::tensor::Device;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A fresh folder for one test.
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("deepmark-embed-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn detects_clothing_with_the_demo_weights() {
    let device = Device::flex();
    let mut detector =
        deepmark::infer::Detector::from_weights(&repo("model-weights/demo.bpk"), &device).unwrap();
    detector.options.threshold = 0.05;
    let image: deepmark::image::RgbImage =
        deepmark::io::open_rgb(&repo("datasets/samples/matplotlib_grace_hopper.jpg")).unwrap();
    let detections = detector.detect(&image).unwrap();
    assert!(!detections.is_empty(), "no detection at score ≥ 0.05");
    for d in &detections {
        assert!(d.score >= 0.05 && d.score <= 1.0, "score {}", d.score);
        assert!(deepmark::garment::category(d.category_id).is_some());
        let [x0, y0, x1, y1] = d.bbox;
        assert!(x0 <= x1 && y0 <= y1, "box {:?}", d.bbox);
    }

    // Replacing the network through the API keeps the compiled CPU form in step: a model with
    // other weights detects other things at once.
    assert!(detector.is_fast());
    let config = detector.config().clone();
    let before = detections[0].score;
    let old = detector.set_model(config.init(&device));
    let after = detector.detect(&image).unwrap();
    assert!(
        after.first().map(|d| d.score) != Some(before),
        "the detector still runs the old weights"
    );
    detector.set_model(old);
    assert_eq!(detector.detect(&image).unwrap()[0].score, before);
}

/// Weights read from bytes or a reader (embedded, downloaded) give the same detector as the file.
#[test]
fn weights_load_from_bytes_and_readers() {
    use deepmark::checkpoint::{load_bytes, load_config, load_reader};
    use deepmark::infer::Detector;

    let device = Device::flex();
    let path = repo("model-weights/demo.bpk");
    let from_file = Detector::from_weights(&path, &device).unwrap();
    let config = load_config(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let image =
        deepmark::io::open_rgb(&repo("datasets/samples/matplotlib_grace_hopper.jpg")).unwrap();
    let want = from_file.detect(&image).unwrap();
    for model in [
        load_bytes(bytes.clone(), &config, &device).unwrap(),
        load_reader(std::io::Cursor::new(bytes.clone()), &config, &device).unwrap(),
    ] {
        let mut d = Detector::new(model, config.clone(), device.clone()).unwrap();
        d.options = from_file.options.clone();
        let got = d.detect(&image).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                (g.category_id, g.score, g.bbox),
                (w.category_id, w.score, w.bbox)
            );
        }
    }
    // Truncated bytes, or weights of another architecture, are errors, not panics.
    let e = load_bytes(bytes[..bytes.len() / 2].to_vec(), &config, &device).unwrap_err();
    assert!(e.to_string().contains("weights"), "{e}");
    let other = deepmark::model::CenterNetConfig::new(
        deepmark::model::Arch::Res18,
        deepmark::codec::Scheme::Deepmark62.layout(),
    );
    let e = load_bytes(bytes, &other, &device).unwrap_err();
    assert!(e.to_string().contains("do not match"), "{e}");
}

#[cfg(all(feature = "train", feature = "synth"))]
mod training {
    use std::sync::Arc;

    use burn::data::dataloader::DataLoaderBuilder;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::Device;
    use deepmark::codec::Scheme;
    use deepmark::data::dataset::{Df2Dataset, SampleConfig, TrainBatcher};
    use deepmark::model::{Arch, CenterNetConfig};
    use deepmark::train::{LossWeights, loss_terms};

    use super::scratch;

    /// A 64-pixel synthetic DeepFashion2-format set of `n` images.
    fn dataset(tag: &str, n: usize) -> Arc<Df2Dataset> {
        let dir = scratch(tag);
        let json = deepmark::data::synth::ensure(&dir, n, 7).unwrap();
        let sample = SampleConfig::new(64, Scheme::Deepmark62, false).unwrap();
        let images = deepmark::io::default_image_dir(&json);
        let (d, skipped) = Df2Dataset::open(
            &json,
            &images,
            sample,
            false,
            &deepmark::io::Limits::default(),
        )
        .unwrap();
        assert!(skipped.skipped.is_empty());
        Arc::new(d)
    }

    /// A custom loop: forward, CenterNet's loss, backward, Adam; the loss falls on one batch.
    #[test]
    fn a_custom_training_loop_lowers_the_loss() {
        let device = Device::flex().autodiff();
        let config = CenterNetConfig::new(Arch::Res18Slim, Scheme::Deepmark62.layout());
        let mut model = config.init(&device);
        let loader = DataLoaderBuilder::new(TrainBatcher)
            .batch_size(4)
            .set_device(device.clone())
            .build(dataset("loop", 4));
        let batch = loader.iter().next().unwrap().unwrap();
        let mut optim = AdamConfig::new().init();
        let mut losses = Vec::new();
        for _ in 0..8 {
            let stacks = model.forward_stacks(batch.input.clone());
            let (loss, _heads) = loss_terms(&stacks, &batch, &LossWeights::centernet());
            losses.push(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
        assert!(
            losses[7] < 0.8 * losses[0],
            "the loss did not fall by a fifth in 8 steps: {losses:?}"
        );
    }

    /// burn-train's `SupervisedTraining` trains a `CenterNet` with no wrapper: two epochs, the
    /// loss and per-head metrics logged, the model's weights changed.
    #[cfg(feature = "learner")]
    #[test]
    fn burn_train_learner_trains_a_centernet() {
        use burn::module::Module;
        use burn::train::metric::LossMetric;
        use burn::train::{Learner, SupervisedTraining};
        use deepmark::train::learner::HeadLossMetric;

        let device = Device::flex().autodiff();
        let config = CenterNetConfig::new(Arch::Res18Slim, Scheme::Deepmark62.layout());
        let model = config.init(&device);
        let initial = model.clone().valid();
        let loader = |tag: &str| {
            DataLoaderBuilder::new(TrainBatcher)
                .batch_size(4)
                .set_device(device.clone())
                .build(dataset(tag, 8))
        };
        let dir = scratch("learner-run");
        let mut training =
            SupervisedTraining::new(&dir, loader("learner-train"), loader("learner-valid"))
                .metric_train_numeric(LossMetric::new())
                .metric_valid_numeric(LossMetric::new());
        for m in HeadLossMetric::all() {
            training = training.metric_train_numeric(m);
        }
        let result =
            training
                .num_epochs(2)
                .launch(Learner::new(model, AdamConfig::new().init(), 1e-3));

        let probe = burn::tensor::Tensor::<4>::ones([1, 3, 64, 64], &Device::flex());
        let a = initial.forward(probe.clone()).hm.into_data();
        let b = result.model.forward(probe).hm.into_data();
        assert_ne!(a, b, "the learner did not change the weights");
        // burn-train's file logger wrote both epochs' metrics, the head terms among them
        // (a metric "Loss hm" is logged as `Loss_hm.log`).
        let logged: Vec<String> = walk(&dir);
        for epoch in [1, 2] {
            for name in [
                "train/epoch-{e}/Loss",
                "valid/epoch-{e}/Loss",
                "train/epoch-{e}/Loss_hm",
            ] {
                let file = format!("{}.log", name.replace("{e}", &epoch.to_string()));
                assert!(
                    logged.iter().any(|p| p.ends_with(&file)),
                    "no metric log {file} in {logged:?}"
                );
            }
        }
        let hm_log = std::fs::read_to_string(dir.join("train/epoch-2/Loss_hm.log")).unwrap();
        let first: f64 = hm_log
            .split(|c: char| c == ',' || c.is_whitespace())
            .find_map(|t| t.parse().ok())
            .expect("a number in the hm loss log");
        assert!(first.is_finite() && first > 0.0, "{hm_log}");
    }

    #[cfg(feature = "learner")]
    fn walk(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
        out
    }
}
