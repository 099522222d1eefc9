//! Training parity with CenterNet: from the same weights (the reduced ResNet-18 CenterNet of the
//! parity fixtures with CenterNet's head initialisation, 294 landmarks) on the same four synthetic PNG images (one batch, no
//! augmentation, input 128, Adam at 1e-4), `train` must give CenterNet's step-0 loss terms to
//! 1e-4 and its loss after 30 steps to 0.3 %. The reference losses are recorded by
//! `scripts/centernet_train_ref.py` (PyTorch, OpenCV 4.10, CenterNet's targets, losses and
//! optimiser written from its rules) in `tests/fixtures/train_parity/losses.json`.
#![cfg(all(feature = "pytorch", feature = "flex", feature = "train"))]

mod common;

use common::*;
use deepmark::checkpoint::{import_pytorch, save};
use deepmark::codec::HEAD_NAMES;
use deepmark::data::augment::AugmentConfig;
use deepmark::train::{LossWeights, OptimizerConfig, RunStart, TrainConfig, train_on};
use serde_json::Value;

#[test]
fn thirty_steps_follow_centernets_losses() {
    let dir = fixtures().join("train_parity");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("losses.json")).unwrap()).unwrap();
    let steps = reference["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 30);
    let tmp = tempdir("train-parity");
    // The PyTorch checkpoint, imported and saved as the run's initial weights.
    let model_cfg = fixture_config("res18");
    let (model, report) = import_pytorch(&dir.join("init.pth"), &model_cfg, &flex()).unwrap();
    assert!(
        report.reinitialised.is_empty() && report.missing.is_empty(),
        "{report}"
    );
    let init = tmp.join("init.bpk");
    save(&model, &model_cfg, &init).unwrap();
    let mut optimizer = OptimizerConfig::adam(reference["lr"].as_f64().unwrap());
    optimizer.lr_steps.clear();
    let cfg = TrainConfig {
        model: model_cfg,
        data: dir.join("train.json"),
        images: dir.join("image"),
        batch: 4,
        epochs: steps.len(),
        optimizer,
        loss: LossWeights::centernet(),
        augment: AugmentConfig::plain(reference["input_size"].as_u64().unwrap() as usize),
        seed: 317,
        workers: 1,
        max_objs: 32,
        init: Some(init),
        val: None,
        finetune_category: None,
        shards: 1,
        amp: Default::default(),
        selection: Default::default(),
        max_unusable: 0.0,
        limits: Default::default(),
    };
    // One batch of all four images: one step per epoch, each epoch's row is that step's loss.
    let summary = train_on(
        &cfg,
        &tmp.join("run"),
        &[flex()],
        RunStart::New,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(summary.rows.len(), steps.len());
    let value = |step: &Value, name: &str| step[name].as_f64().unwrap();
    let first = &summary.rows[0].loss;
    for (name, ours) in HEAD_NAMES.iter().zip(first.heads.into_array()) {
        let theirs = value(&steps[0], name);
        let rel = (f64::from(ours) - theirs).abs() / theirs.abs();
        assert!(
            rel <= 1e-4,
            "step 0 {name}: ours {ours}, CenterNet {theirs} ({rel:.2e})"
        );
    }
    let rel0 = (f64::from(first.total) - value(&steps[0], "loss")).abs() / value(&steps[0], "loss");
    assert!(rel0 <= 1e-4, "step 0 total: {rel0:.2e}");
    let last = summary.rows.last().unwrap().loss.total;
    let theirs = value(steps.last().unwrap(), "loss");
    let rel = (f64::from(last) - theirs).abs() / theirs;
    for (i, (row, step)) in summary.rows.iter().zip(steps).enumerate() {
        eprintln!(
            "step {i}: ours {:.4}, CenterNet {:.4}",
            row.loss.total,
            value(step, "loss")
        );
    }
    assert!(
        rel <= 3e-3,
        "after 30 steps: ours {last}, CenterNet {theirs} ({:.3} %)",
        rel * 100.0
    );
}
