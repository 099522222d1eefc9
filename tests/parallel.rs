//! Data-parallel training (`--devices N`, `TrainConfig::shards`): a step split into shards on
//! two distinct devices computes what the same shards compute on one device, and what the
//! shard losses weighted by their share give by hand; whole runs agree.
#![cfg(all(feature = "flex", feature = "ndarray", feature = "train"))]

mod common;

use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, MultiGradientsParams};
use burn::tensor::{Device, Tensor};
use deepmark::codec::{Grouping, Scheme};
use deepmark::data::augment::AugmentConfig;
use deepmark::data::dataset::{Df2Dataset, SampleConfig, ShardBatcher, TrainBatcher, shard_ranges};
use deepmark::model::{Arch, CenterNet, CenterNetConfig};
use deepmark::train::loss::total_loss;
use deepmark::train::parallel::shard_gradients;
use deepmark::train::{LossWeights, OptimizerConfig, TrainConfig, train_on};

fn sample_config() -> SampleConfig {
    SampleConfig {
        augment: AugmentConfig::plain(64),
        grouping: Grouping::of_scheme(Scheme::Deepmark62).unwrap(),
        num_classes: 13,
        max_objs: 32,
        seed: 5,
    }
}

fn model_config() -> CenterNetConfig {
    CenterNetConfig::new(Arch::Res18Slim, Scheme::Deepmark62.layout())
}

/// The summed gradient of every parameter, read off `grads`, in visiting order.
struct Grads<'a> {
    grads: &'a mut MultiGradientsParams,
    out: Vec<Vec<f32>>,
}

impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some((g, _)) = self.grads.remove::<D>(param.id) {
            self.out.push(common::host(g));
        }
    }
}

fn summed(model: &CenterNet, mut grads: MultiGradientsParams) -> Vec<Vec<f32>> {
    let mut g = Grads {
        grads: &mut grads,
        out: Vec::new(),
    };
    model.visit(&mut g);
    g.out
}

/// Largest relative difference over all tensors (each against its own magnitude).
fn max_rel(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    assert_eq!(a.len(), b.len(), "the same parameters");
    a.iter()
        .zip(b)
        .map(|(x, y)| common::rel_err(x, y))
        .fold(0.0, f64::max)
}

/// The test model, the same weights every call (fresh running statistics too).
fn fresh(device: &Device) -> CenterNet {
    device.seed(3);
    model_config().init(device)
}

fn items(dir: &Path, n: usize) -> Option<Vec<deepmark::data::dataset::TrainItem>> {
    let (json, images) = common::fixture_subset(n, dir)?;
    let (ds, _) = Df2Dataset::open(
        &json,
        &images,
        sample_config(),
        false,
        &deepmark::io::Limits::default(),
    )
    .unwrap();
    Some((0..ds.len()).map(|i| ds.get(i).unwrap()).collect())
}

#[test]
fn shard_ranges_are_even_and_cover_the_batch() {
    assert_eq!(shard_ranges(5, 2), vec![0..3, 3..5]);
    assert_eq!(shard_ranges(4, 4), vec![0..1, 1..2, 2..3, 3..4]);
    assert_eq!(shard_ranges(2, 3), vec![0..1, 1..2, 2..2]);
}

/// Two shards on flex + ndarray (two distinct devices) give the gradients of the same two
/// shards on flex alone, and both equal the hand-made sum of each shard's loss × ½; the
/// running statistics are the mean of the two shards' updates either way.
#[test]
fn two_devices_compute_the_gradients_of_one() {
    let _seeded = common::seeded();
    let dir = common::tempdir("parallel-grads");
    let Some(items) = items(&dir, 4) else {
        return;
    };
    let flex = common::flex().autodiff();
    let ndarray = common::ndarray().autodiff();
    let loss = LossWeights::centernet();
    let shards =
        |devices: Vec<Device>| ShardBatcher { devices, shards: 2 }.batch(items.clone(), &flex);

    let run = |devices: Vec<Device>| {
        // A fresh model per run: running statistics are shared between clones.
        let m = fresh(&flex);
        let (grads, parts) = shard_gradients(&m, shards(devices), &loss).unwrap();
        deepmark::train::parallel::fold_running_stats(&m);
        (summed(&m, grads), parts, common::module_values(&m))
    };
    let (two, parts_two, stats_two) = run(vec![flex.clone(), ndarray.clone()]);
    let (one, parts_one, stats_one) = run(vec![flex.clone()]);
    let e = max_rel(&two, &one);
    println!("gradients, flex+ndarray vs flex: max relative error {e:.2e}");
    assert!(e < 1e-3, "gradients differ: {e:.3e}");
    assert!((parts_two.total - parts_one.total).abs() <= 1e-4 * parts_one.total.abs());
    let e = max_rel(&stats_two, &stats_one);
    assert!(e < 1e-4, "weights and running statistics differ: {e:.3e}");

    // By hand: each shard's loss on its own (BatchNorm on its own images), × ½, summed.
    let m = fresh(&flex);
    let mut grads = Vec::new();
    let mut total = 0.0;
    for half in [&items[..2], &items[2..]] {
        let replica = m.clone().fork(&flex);
        let batch = TrainBatcher.batch(half.to_vec(), &flex);
        let stacks = replica.forward_stacks(batch.input.clone());
        let (l, p) = total_loss(&stacks, &batch, &loss);
        total += 0.5 * p.total;
        grads.push((
            GradientsParams::from_grads(l.mul_scalar(0.5).backward(), &replica),
            flex.clone(),
        ));
    }
    let by_hand = summed(&m, MultiGradientsParams { grads });
    let e = max_rel(&one, &by_hand);
    println!("gradients, sharded vs by hand: max relative error {e:.2e}");
    assert!(
        e < 1e-4,
        "sharded gradients differ from the weighted sum: {e:.3e}"
    );
    assert!((parts_one.total - total).abs() <= 1e-4 * total.abs());
    // And they are not the whole-batch gradients (BatchNorm per shard is what they compute).
    let whole = {
        let replica = m.clone().fork(&flex);
        let batch = TrainBatcher.batch(items.clone(), &flex);
        let stacks = replica.forward_stacks(batch.input.clone());
        let (l, _) = total_loss(&stacks, &batch, &loss);
        let g = GradientsParams::from_grads(l.backward(), &replica);
        summed(
            &m,
            MultiGradientsParams {
                grads: vec![(g, flex.clone())],
            },
        )
    };
    assert!(
        max_rel(&one, &whole) > 1e-3,
        "the test tells shards from the whole batch"
    );
}

fn config(json: &Path, images: &Path, shards: usize) -> TrainConfig {
    let mut c = TrainConfig::centernet(json, Scheme::Deepmark62);
    c.model = model_config();
    c.batch = 4;
    c.epochs = 2;
    c.optimizer = OptimizerConfig::adam(1e-3);
    c.augment = AugmentConfig::plain(64);
    c.workers = 1;
    c.val = None;
    c.images = images.to_path_buf();
    c.shards = shards;
    c
}

/// Whole runs: two shards on two devices and on one device end with the same losses and
/// (nearly, Adam amplifies rounding where gradients are near zero) the same weights; the
/// saved BatchNorm statistics agree too. An odd split is refused before anything is written.
#[test]
fn a_run_on_two_devices_equals_one_on_one_device() {
    let _seeded = common::seeded();
    let dir = common::tempdir("parallel-run");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let (flex, ndarray) = (common::flex(), common::ndarray());
    let cfg = config(&json, &images, 2);
    let a = train_on(
        &cfg,
        &dir.join("two"),
        &[flex.clone(), ndarray],
        false,
        &mut |_| {},
    )
    .unwrap();
    let b = train_on(
        &cfg,
        &dir.join("one"),
        std::slice::from_ref(&flex),
        false,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((a.steps, b.steps), (2, 2));
    for (x, y) in a.rows.iter().zip(&b.rows) {
        let d = (x.loss.total - y.loss.total).abs() / y.loss.total;
        println!(
            "epoch {}: loss {} vs {} ({d:.2e})",
            x.epoch, x.loss.total, y.loss.total
        );
        assert!(d < 1e-3, "epoch {} losses differ by {d:.3e}", x.epoch);
    }
    let max_abs = common::max_abs_diff(
        &common::checkpoint_values(&a.weights, &flex),
        &common::checkpoint_values(&b.weights, &flex),
    );
    println!("weights: max abs difference {max_abs:.2e}");
    // Two Adam steps of 1e-3 move a weight by at most ~2e-3; rounding may flip where a
    // gradient is ~0, nothing more.
    assert!(max_abs < 2e-3, "weights differ by {max_abs}");

    let mut odd = cfg.clone();
    odd.shards = 3;
    let err = train_on(
        &odd,
        &dir.join("odd"),
        &[flex.clone(), common::ndarray()],
        false,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("3 shards") && err.contains("2 devices"),
        "{err}"
    );
    let mut big = cfg.clone();
    big.shards = 5;
    let err = train_on(&big, &dir.join("big"), &[flex], false, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("5 shards") && err.contains("batch of 4"),
        "{err}"
    );
}

/// The same on two wgpu devices (two adapters' worth of runtime on lavapipe in CI: the
/// default device and the CPU-type device are distinct Burn devices with their own queues).
#[cfg(feature = "wgpu")]
#[test]
fn two_wgpu_devices_compute_the_gradients_of_one() {
    let _seeded = common::seeded();
    use burn::tensor::DeviceKind;
    if let Err(e) = common::wgpu() {
        if std::env::var_os("DEEPMARK_REQUIRE_WGPU").is_some() {
            panic!("wgpu required but unavailable: {e}");
        }
        eprintln!("skipping: {e}");
        return;
    }
    let dir = common::tempdir("parallel-wgpu");
    let Some(items) = items(&dir, 2) else {
        return;
    };
    let a = Device::wgpu(DeviceKind::DefaultDevice).autodiff();
    let b = Device::wgpu(DeviceKind::Cpu).autodiff();
    assert_ne!(a, b, "two distinct devices");
    let loss = LossWeights::centernet();
    let run = |devices: Vec<Device>| {
        let m = fresh(&a);
        let shards = ShardBatcher { devices, shards: 2 }.batch(items.clone(), &a);
        let (grads, parts) = shard_gradients(&m, shards, &loss).unwrap();
        (summed(&m, grads), parts)
    };
    let (two, p2) = run(vec![a.clone(), b.clone()]);
    let (one, p1) = run(vec![a.clone()]);
    let e = max_rel(&two, &one);
    println!("wgpu: gradients on two devices vs one: max relative error {e:.2e}");
    assert!(e < 1e-4, "gradients differ: {e:.3e}");
    assert!((p2.total - p1.total).abs() <= 1e-5 * p1.total.abs());
}
