//! Reduced-precision training (`train --precision`, `deepmark::train::amp`) on real
//! DeepFashion2 images (flex): f16 and bf16 gradients agree with f32 within what each type
//! carries, arrive on f32 weights, and without a loss scale f16 loses small gradients that the
//! scale keeps; an f16 run learns as the f32 run does, backs off an overflowing scale, and a
//! resumed run goes on with the scale an uninterrupted one has.
#![cfg(all(feature = "flex", feature = "train"))]

mod common;

use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, FloatDType, Tensor};
use deepmark::Precision;
use deepmark::checkpoint;
use deepmark::codec::{Grouping, Scheme};
use deepmark::data::augment::AugmentConfig;
use deepmark::data::dataset::{Df2Dataset, SampleConfig, TrainBatch, TrainBatcher};
use deepmark::model::{Arch, CenterNetConfig};
use deepmark::train::amp::{self, AmpConfig, LossScaler};
use deepmark::train::loss::total_loss;
use deepmark::train::{Event, LossWeights, OptimizerConfig, TrainConfig, TrainState, train};

/// Every parameter's gradient (concatenated, in visiting order) and the float types found.
struct Collect<'a> {
    grads: &'a GradientsParams,
    values: Vec<f32>,
    dtypes: Vec<DType>,
    missing: usize,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = param.val();
        if !self.dtypes.contains(&v.dtype()) {
            self.dtypes.push(v.dtype());
        }
        if !v.is_require_grad() {
            return; // BatchNorm running statistics
        }
        match self.grads.get::<D>(param.id) {
            Some(g) => {
                if !self.dtypes.contains(&g.dtype()) {
                    self.dtypes.push(g.dtype());
                }
                self.values.extend(common::host(g));
            }
            None => self.missing += 1,
        }
    }
}

/// The gradients of one step of the demo detector (trained weights, so that nothing depends
/// on a random stream) in `precision` at f16 loss scale `scale`, and every float type of its
/// weights and gradients. `round_input` rounds the input image to a type first (the run
/// itself in f32): how much the f32 gradient moves when its input moves by one rounding.
fn gradients(
    precision: Precision,
    scale: f32,
    round_input: Option<FloatDType>,
    batch: &TrainBatch,
    device: &Device,
) -> (Vec<f32>, Vec<DType>) {
    let (model, _) = checkpoint::load(Path::new("model-weights/demo.bpk"), device).unwrap();
    let scaler = LossScaler::new(
        AmpConfig {
            init_scale: scale,
            ..AmpConfig::new(precision)
        },
        None,
    );
    let input = match round_input {
        Some(t) => batch.input.clone().cast(t).cast(FloatDType::F32),
        None => batch.input.clone(),
    };
    let stacks = amp::forward_stacks(&model, input, precision);
    let (loss, _) = total_loss(&stacks, batch, &LossWeights::centernet());
    let mut grads = GradientsParams::from_grads(scaler.scale_loss(loss).backward(), &model);
    assert!(
        scaler.unscale(&mut grads, &model),
        "finite gradients at scale {scale}"
    );
    let mut c = Collect {
        grads: &grads,
        values: Vec::new(),
        dtypes: Vec::new(),
        missing: 0,
    };
    model.visit(&mut c);
    assert_eq!(c.missing, 0, "every weight has a gradient");
    (c.values, c.dtypes)
}

/// How many gradient entries that are not zero in f32 are exactly zero in `g`.
fn flushed(g: &[f32], reference: &[f32]) -> usize {
    g.iter()
        .zip(reference)
        .filter(|(a, b)| **a == 0.0 && **b != 0.0)
        .count()
}

/// The gradients arrive on the f32 weights; f16's loss scale is divided out (two scales give
/// the same gradients) and keeps small gradients that f16 would flush to zero without one; f16 and bf16 gradients are as close to f32's as the f32 gradient
/// is to itself with only its input rounded to that type. (This network's gradient on one
/// batch is that sensitive: rounding the input to f16 alone moves it by a few per cent.)
#[test]
fn reduced_precision_gradients_match_f32_on_f32_weights() {
    let dir = common::tempdir("amp-grads");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let sample = SampleConfig {
        augment: AugmentConfig::plain(128),
        grouping: Grouping::of_scheme(Scheme::Deepmark62).unwrap(),
        num_classes: 13,
        max_objs: 32,
        seed: 5,
    };
    let (ds, _) = Df2Dataset::open(
        &json,
        &images,
        sample,
        false,
        &deepmark::io::Limits::default(),
    )
    .unwrap();
    let device = common::flex().autodiff();
    let items = (0..ds.len()).map(|i| ds.get(i).unwrap()).collect();
    let batch = TrainBatcher.batch(items, &device);
    let grads = |p, scale, round| gradients(p, scale, round, &batch, &device);

    let (reference, dtypes) = grads(Precision::F32, 1.0, None);
    assert_eq!(dtypes, vec![DType::F32]);

    // Two scales give the same gradients up to rounding (f16 subnormals, amplified by
    // BatchNorm's backward, which subtracts nearly equal numbers): the scale is divided out.
    let (at_2_14, dtypes) = grads(Precision::F16, 16384.0, None);
    assert_eq!(
        dtypes,
        vec![DType::F32],
        "f32 weights and gradients, f16 compute"
    );
    let (at_2_10, _) = grads(Precision::F16, 1024.0, None);
    let scales = common::rel_err(&at_2_10, &at_2_14);
    let f16_error = common::rel_err(&at_2_14, &reference);
    println!("f16 gradients, scale 2^10 vs 2^14: {scales:.2e} (vs f32: {f16_error:.2e})");
    assert!(
        scales < 0.1 * f16_error,
        "the loss scale is not divided out: {scales:.3e} (f16 vs f32: {f16_error:.3e})"
    );
    // Without a scale, f16 flushes small gradients to zero that the scale keeps.
    let (at_1, _) = grads(Precision::F16, 1.0, None);
    let (lost_1, lost_2_14) = (flushed(&at_1, &reference), flushed(&at_2_14, &reference));
    println!(
        "gradient entries nonzero in f32 but zero in f16: {lost_1} without a scale, {lost_2_14} at 2^14"
    );
    assert!(lost_1 > lost_2_14, "the scale keeps small gradients");

    for (precision, t) in [
        (Precision::F16, FloatDType::F16),
        (Precision::Bf16, FloatDType::BF16),
    ] {
        let (g, dtypes) = grads(precision, 16384.0, None);
        assert_eq!(dtypes, vec![DType::F32], "{precision}");
        let e = common::rel_err(&g, &reference);
        let (r, _) = grads(Precision::F32, 1.0, Some(t));
        let sensitivity = common::rel_err(&r, &reference);
        println!(
            "{precision}: gradient relative error {e:.2e}; f32 with its input rounded to {precision}: {sensitivity:.2e}"
        );
        assert!(e > 0.0, "{precision}: the test computed in {precision}");
        // Every layer rounds like the input does; their perturbations add up to a few times
        // one rounding's.
        assert!(
            e < 3.0 * sensitivity && e < 0.2,
            "{precision}: gradients differ from f32 by {e:.3e} (one rounding of the input: {sensitivity:.3e})"
        );
    }
}

fn config(json: &Path, images: &Path, epochs: usize, precision: Precision) -> TrainConfig {
    let mut c = TrainConfig::centernet(json, Scheme::Deepmark62);
    c.model = CenterNetConfig::new(Arch::Res18Slim, Scheme::Deepmark62.layout());
    c.batch = 2;
    c.epochs = epochs;
    c.optimizer = OptimizerConfig::adam(1e-3);
    c.augment = AugmentConfig::plain(128);
    c.workers = 1;
    c.val = None;
    c.images = images.to_path_buf();
    c.amp = AmpConfig::new(precision);
    c
}

fn state(run: &Path) -> TrainState {
    serde_json::from_str(&std::fs::read_to_string(run.join("checkpoint/state.json")).unwrap())
        .unwrap()
}

/// An f16 run learns as the f32 run does; started at a scale that overflows, it skips steps
/// and backs off (and says so); killed and resumed, it ends where an uninterrupted run ends,
/// which it can only do if the scale came back with the checkpoint.
#[test]
fn f16_training_learns_backs_off_and_resumes_with_its_scale() {
    let _seeded = common::seeded();
    let dir = common::tempdir("amp-train");
    let Some((json, images)) = common::fixture_subset(8, &dir) else {
        return;
    };
    let device = common::flex();
    let epochs = 8;
    let f32_run = train(
        &config(&json, &images, epochs, Precision::F32),
        &dir.join("f32"),
        &device,
        false,
        &mut |_| {},
    )
    .unwrap();

    // 2^20 overflows f16 at once (its largest number is 65504): the first steps are skipped
    // until the scale has backed off; growing every 4 good steps, it overflows again now and
    // then.
    let mut cfg = config(&json, &images, epochs, Precision::F16);
    cfg.amp.init_scale = 2f32.powi(20);
    cfg.amp.growth_interval = 4;
    let mut notices = Vec::new();
    let f16_run = train(&cfg, &dir.join("f16"), &device, false, &mut |e| {
        if let Event::Notice(n) = e {
            notices.push(n.clone());
        }
    })
    .unwrap();
    println!("{notices:?}");
    assert!(
        notices
            .iter()
            .any(|n| n.starts_with("epoch 1:") && n.contains("skipped")),
        "{notices:?}"
    );
    let saved = state(&dir.join("f16"))
        .loss_scale
        .expect("f16 saves its scale");
    assert!(
        saved.scale < 2f32.powi(20),
        "the scale backed off: {saved:?}"
    );

    let (a, b) = (&f32_run.rows, &f16_run.rows);
    let fall =
        |rows: &[deepmark::train::EpochRow]| 1.0 - rows[epochs - 1].loss.total / rows[0].loss.total;
    println!(
        "loss f32 {} → {} ({:.0}% lower), f16 {} → {} ({:.0}% lower)",
        a[0].loss.total,
        a[epochs - 1].loss.total,
        100.0 * fall(a),
        b[0].loss.total,
        b[epochs - 1].loss.total,
        100.0 * fall(b)
    );
    assert!(fall(a) > 0.3, "the f32 run learns");
    // The skipped steps cost the f16 run a little progress, not its learning.
    assert!(
        fall(b) > 0.8 * fall(a),
        "the f16 run learns as the f32 run does: {:.3} vs {:.3}",
        fall(b),
        fall(a)
    );

    // Stopped after half the epochs and resumed: the same weights as the uninterrupted run.
    let mut half = cfg.clone();
    half.epochs = epochs / 2;
    let run = dir.join("resumed");
    train(&half, &run, &device, false, &mut |_| {}).unwrap();
    let mid = state(&run).loss_scale.unwrap();
    println!(
        "scale after {} epochs: {mid:?}; at the end: {saved:?}",
        epochs / 2
    );
    let resumed = train(&cfg, &run, &device, true, &mut |_| {}).unwrap();
    assert_eq!(resumed.steps, f16_run.steps);
    assert_eq!(state(&run).loss_scale, Some(saved));
    let max_abs = common::max_abs_diff(
        &common::checkpoint_values(&resumed.weights, &device),
        &common::checkpoint_values(&f16_run.weights, &device),
    );
    println!("resumed vs uninterrupted: max abs weight difference {max_abs:.2e}");
    assert!(max_abs < 1e-5, "a resumed f16 run drifts: {max_abs}");
}

/// Types a backend cannot compute in are refused before a run starts.
#[test]
fn a_type_the_device_lacks_is_refused() {
    let dir = common::tempdir("amp-refused");
    let cfg = config(&dir.join("x.json"), &dir, 1, Precision::Flex32);
    let err = train(&cfg, &dir.join("run"), &common::flex(), false, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("precision flex32"), "{err}");
    assert!(!dir.join("run").exists(), "nothing is written");
}

/// The data-parallel step (`--devices`, two shards here on one device) in f16: each shard's
/// loss carries the scale, the summed gradients are unscaled once, and the run learns and
/// saves its scale.
#[test]
fn sharded_f16_steps_learn_and_keep_their_scale() {
    let _seeded = common::seeded();
    let dir = common::tempdir("amp-shards");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let mut cfg = config(&json, &images, 6, Precision::F16);
    cfg.batch = 4;
    cfg.shards = 2;
    cfg.amp.init_scale = 1024.0;
    let run = train(&cfg, &dir.join("run"), &common::flex(), false, &mut |_| {}).unwrap();
    let rows = &run.rows;
    let fall = 1.0 - rows[5].loss.total / rows[0].loss.total;
    println!(
        "two f16 shards: loss {} → {} ({:.0}% lower)",
        rows[0].loss.total,
        rows[5].loss.total,
        100.0 * fall
    );
    assert!(rows.iter().all(|r| r.loss.total.is_finite()));
    assert!(fall > 0.2, "the sharded f16 run learns: {fall:.3}");
    let saved = state(&dir.join("run"))
        .loss_scale
        .expect("f16 saves its scale");
    assert_eq!(saved.good_steps, 6, "six good steps at 1024: {saved:?}");
}
