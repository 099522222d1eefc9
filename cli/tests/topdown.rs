//! Top-down landmarks (CPN on the 81-group aggregation): model-set dispatch by category,
//! learning on the real DeepFashion2 fixtures with per-category fine-tuning, the set's folder
//! refused when broken, the backends agreeing, and the command line (`train-topdown`,
//! `eval-topdown`, `infer`/`eval --landmarks topdown:<dir>` with `--refine`).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use burn::tensor::FloatDType;
use common::{deepmark, flex, shared_data, tempdir};
use deepmark::Precision;
use deepmark::codec::Detection;
use deepmark::codec::scheme::Scheme;
use deepmark::data::deepfashion2::{Sample, load_coco};
use deepmark::garment::category;
use deepmark::refine::data::RefineAugment;
use deepmark::topdown::train::{TopDownEvent, TopDownTrainConfig, train_model_set};
use deepmark::topdown::{Combine, CpnArch, CpnConfig, Served, TopDownSet};
use deepmark::train::amp::AmpConfig;
use image::RgbImage;

fn fixture() -> Option<(Vec<Sample>, PathBuf, PathBuf)> {
    let json = shared_data("deepfashion2/kgdet_demo32/demo_dataset-32.json")?;
    let images = json.parent().unwrap().join("image");
    Some((
        load_coco(&json, false, &deepmark::io::Limits::default())
            .unwrap()
            .0,
        images,
        json,
    ))
}

fn slim(category_id: Option<usize>) -> CpnConfig {
    CpnConfig::new(CpnArch::CpnRes18Slim, Scheme::Agg81, [64, 64])
        .unwrap()
        .for_category(category_id)
        .unwrap()
}

/// A textured test image.
fn picture() -> RgbImage {
    RgbImage::from_fn(160, 120, |x, y| {
        image::Rgb([
            (x * 7 % 255) as u8,
            (y * 5 % 255) as u8,
            ((x + y) * 3 % 255) as u8,
        ])
    })
}

fn garment(category_id: usize) -> (usize, [f32; 4]) {
    (category_id, [30.0, 20.0, 80.0, 70.0])
}

#[test]
fn model_sets_serve_each_category_with_its_fine_tuned_model_else_the_universal_one() {
    // Random weights are drawn in this process: one seeded test at a time (see common::seeded).
    let _seeded = common::seeded();
    let device = flex();
    let universal = (slim(None).init(&device), slim(None));
    let shorts = (slim(Some(7)).init(&device), slim(Some(7)));
    let img = picture();
    let both = TopDownSet::from_models(vec![universal.clone(), shorts.clone()], &device).unwrap();
    assert_eq!(both.served(7), Some(Served::FineTuned));
    assert_eq!(both.served(1), Some(Served::Universal));
    assert_eq!(both.served(0), None);
    assert_eq!(both.served(14), None);
    let only_shorts = TopDownSet::from_models(vec![shorts], &device).unwrap();
    assert_eq!(only_shorts.served(1), None);
    let only_universal = TopDownSet::from_models(vec![universal], &device).unwrap();
    let garments = [garment(7), garment(1), garment(7)];
    let est = |set: &TopDownSet| set.estimate(&img, &garments).unwrap();
    let (b, s, u) = (est(&both), est(&only_shorts), est(&only_universal));
    // Shorts come from the shorts model, the shirt from the universal model; with no model for
    // a category there is no estimate.
    assert_eq!(b[0], s[0]);
    assert_eq!(b[2], s[2]);
    assert_ne!(b[0], u[0]);
    assert_eq!(b[1], u[1]);
    assert_eq!(s[1], None);
    assert_eq!(
        b[0].as_ref().unwrap().len(),
        category(7).unwrap().num_landmarks
    );
    assert_eq!(
        b[1].as_ref().unwrap().len(),
        category(1).unwrap().num_landmarks
    );
    // Forgetting the fine-tuned model serves shorts from the universal one.
    let mut before = TopDownSet::from_models(
        vec![
            (slim(None).init(&device), slim(None)),
            (slim(Some(7)).init(&device), slim(Some(7))),
        ],
        &device,
    )
    .unwrap();
    before.retain_universal().unwrap();
    assert_eq!(before.served(7), Some(Served::Universal));
    let mut no_universal =
        TopDownSet::from_models(vec![(slim(Some(7)).init(&device), slim(Some(7)))], &device)
            .unwrap();
    assert!(no_universal.retain_universal().is_err());
    assert_eq!(no_universal.served(7), Some(Served::FineTuned));
}

#[test]
fn detections_get_replaced_or_averaged_landmarks_and_low_scores_are_left_alone() {
    // Random weights are drawn in this process: one seeded test at a time (see common::seeded).
    let _seeded = common::seeded();
    let device = flex();
    let mut set =
        TopDownSet::from_models(vec![(slim(None).init(&device), slim(None))], &device).unwrap();
    set.min_score = 0.3;
    let img = picture();
    let (c, [x, y, w, h]) = garment(9);
    let n = category(c).unwrap().num_landmarks;
    let det = |score| Detection {
        category_id: c,
        score,
        box_score: score,
        bbox: [x, y, x + w, y + h],
        landmarks: vec![[1.0, 2.0, 0.5]; n],
        attributes: Vec::new(),
    };
    let est = set.estimate(&img, &[garment(9)]).unwrap()[0]
        .clone()
        .unwrap();
    let mut dets = vec![det(0.9), det(0.1)];
    set.apply(&img, &mut dets).unwrap();
    assert_eq!(dets[0].landmarks, est);
    assert_eq!(dets[1], det(0.1));
    set.combine = Combine::Average;
    let mut dets = vec![det(0.9)];
    set.apply(&img, &mut dets).unwrap();
    for (a, e) in dets[0].landmarks.iter().zip(&est) {
        assert!(
            (a[0] - (1.0 + e[0]) / 2.0).abs() < 1e-4 && (a[1] - (2.0 + e[1]) / 2.0).abs() < 1e-4
        );
        assert!((a[2] - (0.5 + e[2]) / 2.0).abs() < 1e-6);
    }
}

/// Trains the universal model and a shirt model fine-tuned from it on the fixtures into `dir`;
/// returns each model's epoch losses.
fn train_set(dir: &Path, epochs: usize) -> Vec<(Option<usize>, Vec<f32>)> {
    let (samples, images, _) = fixture().unwrap();
    let mut cfg = TopDownTrainConfig::cpn(CpnArch::CpnRes18Slim, Scheme::Agg81, [64, 64], epochs);
    cfg.batch = 8;
    cfg.optimizer.lr = 2e-3;
    cfg.finetune_epochs = 3;
    let mut losses: Vec<(Option<usize>, Vec<f32>)> = Vec::new();
    train_model_set(
        &cfg,
        &[None, Some(1), Some(3)],
        None,
        &samples,
        &images,
        dir,
        &flex(),
        false,
        &mut |e| match e {
            TopDownEvent::Start { category_id, .. } => losses.push((*category_id, Vec::new())),
            TopDownEvent::Epoch { loss, .. } => losses.last_mut().unwrap().1.push(loss.total()),
            _ => {}
        },
    )
    .unwrap();
    losses
}

#[test]
fn a_model_set_learns_on_the_real_fixtures_fine_tunes_and_refuses_broken_folders() {
    // Random weights are drawn in this process: one seeded test at a time (see common::seeded).
    let _seeded = common::seeded();
    let Some((samples, images, _)) = fixture() else {
        return;
    };
    let dir = tempdir("topdown-set");
    let losses = train_set(&dir, 12);
    // Category 3 has no garment in the fixtures: not trained, not listed.
    assert_eq!(
        losses
            .iter()
            .map(|(c, l)| (*c, l.len()))
            .collect::<Vec<_>>(),
        vec![(None, 12), (Some(1), 3)]
    );
    let u = &losses[0].1;
    let first = u[..3].iter().sum::<f32>() / 3.0;
    let last = u[9..].iter().sum::<f32>() / 3.0;
    assert!(last < 0.5 * first, "loss {first} → {last}: {u:?}");
    let index: deepmark::topdown::apply::ModelSetIndex =
        deepmark::io::read_json(&dir.join("topdown.json"), "index").unwrap();
    assert_eq!(index.models.len(), 2);
    assert_eq!(index.models[0].init, None);
    assert_eq!(index.models[1].category_id, Some(1));
    assert!(
        index.models[1]
            .init
            .as_ref()
            .unwrap()
            .ends_with("universal.bpk")
    );
    assert_eq!(index.models[1].garments, 14);

    // Resuming trains nothing again.
    let (mut skipped, mut started) = (0, 0);
    let mut cfg = TopDownTrainConfig::cpn(CpnArch::CpnRes18Slim, Scheme::Agg81, [64, 64], 12);
    cfg.finetune_epochs = 3;
    train_model_set(
        &cfg,
        &[None, Some(1)],
        None,
        &samples,
        &images,
        &dir,
        &flex(),
        true,
        &mut |e| match e {
            TopDownEvent::Skipped { .. } => skipped += 1,
            TopDownEvent::Start { .. } => started += 1,
            _ => {}
        },
    )
    .unwrap();
    assert_eq!((skipped, started), (2, 0));

    // The set serves shirts with the fine-tuned model, the rest with the universal one.
    let set = TopDownSet::load(&dir, &flex()).unwrap();
    assert_eq!(set.served(1), Some(Served::FineTuned));
    assert_eq!(set.served(8), Some(Served::Universal));
    let s = samples
        .iter()
        .find(|s| s.items.iter().any(|i| i.category_id == 1))
        .unwrap();
    let img = deepmark::io::open_rgb(&images.join(&s.file_name)).unwrap();
    let garments: Vec<(usize, [f32; 4])> =
        s.items.iter().map(|i| (i.category_id, i.bbox)).collect();
    for (g, est) in garments.iter().zip(set.estimate(&img, &garments).unwrap()) {
        let est = est.unwrap();
        assert_eq!(est.len(), category(g.0).unwrap().num_landmarks);
        assert!(est.iter().all(|p| p.iter().all(|v| v.is_finite())));
    }

    // Fine-tuning from weights of another network is refused, naming both.
    let mut other = TopDownTrainConfig::cpn(CpnArch::CpnRes18Slim, Scheme::Agg81, [96, 64], 1);
    other.batch = 8;
    let e = train_model_set(
        &other,
        &[Some(1)],
        Some(&dir.join("universal.bpk")),
        &samples,
        &images,
        &tempdir("topdown-other"),
        &flex(),
        false,
        &mut |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("universal.bpk") && e.contains("96x64"), "{e}");

    // A broken folder is refused with the file and field named.
    common::broken_model_folders_are_refused(&dir, "topdown.json", || {
        TopDownSet::load(&dir, &flex())
            .map(drop)
            .map_err(|e| e.to_string())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_model_set_runs_alike_on_every_backend() {
    // Random weights are drawn in this process: one seeded test at a time (see common::seeded).
    let _seeded = common::seeded();
    let dir = tempdir("topdown-backends");
    let cfg = slim(None);
    deepmark::checkpoint::save_module(&cfg.init(&flex()), &cfg, &dir.join("universal.bpk"))
        .unwrap();
    let index = deepmark::topdown::apply::ModelSetIndex {
        models: vec![deepmark::topdown::apply::ModelEntry {
            category_id: None,
            weights: "universal.bpk".into(),
            garments: 0,
            final_loss: 0.0,
            init: None,
        }],
        train: serde_json::Value::Null,
    };
    deepmark::io::write_json(&deepmark::topdown::apply::index_path(&dir), &index).unwrap();
    let img = picture();
    let garments = [garment(2), garment(8)];
    let run = |device: &burn::tensor::Device| {
        TopDownSet::load(&dir, device)
            .unwrap()
            .estimate(&img, &garments)
            .unwrap()
    };
    let reference = run(&flex());
    let mut devices = vec![("ndarray", common::ndarray())];
    match deepmark_cli::backend::BackendKind::Wgpu.device() {
        Ok(d) => devices.push(("wgpu", d)),
        Err(e) if std::env::var_os("DEEPMARK_REQUIRE_WGPU").is_none() => {
            eprintln!("wgpu skipped: {e}")
        }
        Err(e) => panic!("wgpu required but unavailable: {e}"),
    }
    for (name, device) in &devices {
        let got = run(device);
        for (a, b) in got.iter().zip(&reference) {
            for (p, q) in a.as_ref().unwrap().iter().zip(b.as_ref().unwrap()) {
                assert!(
                    (p[0] - q[0]).abs() < 0.05 && (p[1] - q[1]).abs() < 0.05,
                    "{name}: {p:?} vs flex {q:?}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn topdown_commands_train_evaluate_and_plug_into_infer_and_eval_with_refine() {
    let Some((_, images, gt)) = fixture() else {
        return;
    };
    let dir = tempdir("cli-topdown");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let gt_s = gt.to_str().unwrap();
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let out = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let train = |category: &str| {
        deepmark(&[
            "train-topdown",
            "--data",
            gt_s,
            "--arch",
            "cpn-res18-slim",
            "--input-size",
            "64x64",
            "--epochs",
            "1",
            "--batch",
            "8",
            "--category",
            category,
            "--no-augment",
            "--precision",
            "bf16",
            "--out",
            &p("set"),
        ])
    };
    // Fine-tuning shorts with no universal model trains the universal one first.
    let o = train("7");
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.contains("2 models in") && text.contains("from "),
        "{text}"
    );
    // The set records how it was trained: bf16 compute (f32 weights).
    let trained_in = |index: &str| {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(index)).unwrap()).unwrap();
        v["train"]["amp"]["precision"].clone()
    };
    assert_eq!(trained_in("set/topdown.json"), "bf16");
    let o = train("nine");
    assert!(
        !o.status.success() && err(&o).contains("'nine'"),
        "{}",
        err(&o)
    );
    let o = deepmark(&[
        "eval-topdown",
        "--models",
        &p("set"),
        "--data",
        gt_s,
        "--json",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.contains("shorts") && text.contains("fine-tuned"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    for column in ["universal", "fine-tuned"] {
        assert!(v[column]["ne"].as_f64().unwrap().is_finite(), "{v}");
        assert_eq!(v[column]["per_category_ap"].as_array().unwrap().len(), 13);
    }
    // infer and eval with top-down landmarks, composed with a PoseFix refiner folder.
    let w = dir.join("slim.bpk");
    let o = deepmark(&[
        "init",
        "--arch",
        "res18-slim",
        "--scheme",
        "deepmark62",
        "--out",
        w.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let o = deepmark(&[
        "train-refiner",
        "--data",
        gt_s,
        "--category",
        "1",
        "--arch",
        "res18-slim",
        "--input-size",
        "64x64",
        "--epochs",
        "1",
        "--batch",
        "8",
        "--precision",
        "bf16",
        "--out",
        &p("ref"),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(trained_in("ref/refiners.json"), "bf16");
    let image = images.join("002092.jpg");
    let topdown = format!("topdown:{}", p("set"));
    let infer = |precision: &str, out: &str| {
        let o = deepmark(&[
            "infer",
            image.to_str().unwrap(),
            "--weights",
            w.to_str().unwrap(),
            "--input-size",
            "128",
            "--threshold",
            "0",
            "--landmarks",
            &topdown,
            "--refine",
            &p("ref"),
            "--precision",
            precision,
            "--out",
            &p(out),
        ]);
        assert!(o.status.success(), "{precision}: {}", err(&o));
    };
    infer("f32", "infer");
    // The same with every network of the pipeline (detector, CPN, refiner) computing in bf16:
    // the same garments, each with finite landmarks.
    infer("bf16", "infer-bf16");
    let keypoints = |run: &str| {
        let text = std::fs::read_to_string(dir.join(run).join("results_keypoints.json")).unwrap();
        let v: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        v.iter()
            .map(|r| {
                let k: Vec<f64> = serde_json::from_value(r["keypoints"].clone()).unwrap();
                assert!(k.iter().all(|x| x.is_finite()), "{run}: {r}");
                r["category_id"].as_u64().unwrap()
            })
            .collect::<Vec<_>>()
    };
    let (f32_kp, bf16_kp) = (keypoints("infer"), keypoints("infer-bf16"));
    assert!(!f32_kp.is_empty());
    assert_eq!(f32_kp.len(), bf16_kp.len(), "{f32_kp:?} vs {bf16_kp:?}");
    let o = deepmark(&[
        "eval",
        "--weights",
        w.to_str().unwrap(),
        "--data",
        gt_s,
        "--input-size",
        "128",
        "--landmarks",
        &topdown,
        "--landmarks-average",
        "--out",
        &p("eval"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    // CenterNet fine-tuned for shorts from the detector: a one-run model set for --landmarks.
    let o = deepmark(&[
        "train",
        "--data",
        gt_s,
        "--arch",
        "res18-slim",
        "--input-size",
        "128",
        "--epochs",
        "1",
        "--batch",
        "8",
        "--finetune-category",
        "7",
        "--init",
        w.to_str().unwrap(),
        "--no-eval",
        "--out",
        &p("cn-set/shorts"),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let o = deepmark(&[
        "eval",
        "--weights",
        w.to_str().unwrap(),
        "--data",
        gt_s,
        "--input-size",
        "128",
        "--landmarks",
        &format!("centernet:{}", p("cn-set")),
        "--out",
        &p("eval-cn"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let o = deepmark(&["train", "--data", gt_s, "--finetune-category", "7"]);
    assert!(
        !o.status.success() && err(&o).contains("--init"),
        "{}",
        err(&o)
    );
    // Bad choices are clear errors.
    for (flag, value, says) in [
        ("--landmarks", "topdown:", "expected `centernet`"),
        ("--landmarks", "hrnet", "expected `centernet`"),
        (
            "--landmarks",
            &format!("topdown:{}", p("nope")),
            "topdown.json",
        ),
    ] {
        let o = deepmark(&[
            "infer",
            image.to_str().unwrap(),
            "--weights",
            w.to_str().unwrap(),
            flag,
            value,
        ]);
        assert!(
            !o.status.success() && err(&o).contains(says),
            "{value}: {}",
            err(&o)
        );
    }
    let o = deepmark(&[
        "infer",
        image.to_str().unwrap(),
        "--weights",
        w.to_str().unwrap(),
        "--landmarks-average",
    ]);
    assert!(
        !o.status.success() && err(&o).contains("--landmarks-average"),
        "{}",
        err(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Training on wgpu. Ignored by default, as the refiner's: on lavapipe (CI's software Vulkan)
/// compiling and autotuning the backward kernels takes minutes. Run it on a GPU machine with
/// `cargo test --release -p deepmark-cli --test topdown -- --ignored`.
#[test]
#[ignore]
fn a_model_set_trains_on_wgpu() {
    // Random weights are drawn in this process: one seeded test at a time (see common::seeded).
    let _seeded = common::seeded();
    let Some((samples, images, _)) = fixture() else {
        return;
    };
    let device = deepmark_cli::backend::BackendKind::Wgpu
        .device()
        .expect("wgpu");
    let out = tempdir("topdown-wgpu-train");
    let mut cfg = TopDownTrainConfig::cpn(CpnArch::CpnRes18Slim, Scheme::Agg81, [64, 64], 2);
    cfg.batch = 8;
    let t = std::time::Instant::now();
    let index = train_model_set(
        &cfg,
        &[None],
        None,
        &samples,
        &images,
        &out,
        &device,
        false,
        &mut |_| {},
    )
    .unwrap();
    assert!(index.models[0].final_loss.is_finite());
    eprintln!("wgpu: two epochs {:.1} s", t.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&out);
}

/// `train-topdown --precision`: CPN computes in bf16 (flex has it) and learns about as the f32
/// run of the same data does; f16 steps run under their loss scale; the saved weights are the
/// f32 master weights either way.
#[test]
fn a_model_set_trains_in_reduced_precision_with_f32_weights() {
    // Random weights are drawn in this process: one seeded test at a time (see common::seeded).
    let _seeded = common::seeded();
    let Some((samples, images, _)) = fixture() else {
        return;
    };
    let device = flex();
    let run = |precision: Precision, epochs: usize| {
        let dir = tempdir(&format!("topdown-{precision}"));
        let mut cfg =
            TopDownTrainConfig::cpn(CpnArch::CpnRes18Slim, Scheme::Agg81, [64, 64], epochs);
        cfg.batch = 8;
        cfg.optimizer.lr = 2e-3;
        cfg.augment = RefineAugment::NONE;
        cfg.amp = AmpConfig::new(precision);
        // One loader thread: batches in a fixed order (with two, the order the threads finish in
        // varied the f16 run's epoch means too).
        cfg.workers = 1;
        let mut losses = Vec::new();
        train_model_set(
            &cfg,
            &[None],
            None,
            &samples,
            &images,
            &dir,
            &device,
            false,
            &mut |e| {
                if let TopDownEvent::Epoch { loss, skipped, .. } = e {
                    losses.push((loss.total(), *skipped));
                }
            },
        )
        .unwrap();
        common::assert_saved_in_f32(
            &dir.join("universal.bpk"),
            &precision.to_string(),
            |c: &CpnConfig| Ok(c.init(&device)),
        );
        if precision == Precision::F32 {
            estimates_agree_in_reduced_precision(&dir, &samples, &images);
        }
        let _ = std::fs::remove_dir_all(&dir);
        losses
    };
    let f32_run = run(Precision::F32, 6);
    let bf16_run = run(Precision::Bf16, 6);
    let (first, last) = (bf16_run[0].0, bf16_run[5].0);
    assert!(
        last < 0.7 * first,
        "bf16 loss {first} → {last}: {bf16_run:?}"
    );
    let f32_last = f32_run[5].0;
    // CPN training on flex is not reproducible run to run (with one loader thread too): over
    // twelve runs of this test (2026-12-05) the f32 run ended between 0.0315 and 0.0420, 33 %
    // apart, and bf16 between 0.0324 and 0.0408. The bound leaves room for that spread; a bf16
    // run that does not learn fails the fall above.
    assert!(
        (last - f32_last).abs() < 0.35 * f32_last,
        "bf16 ends at {last}, f32 at {f32_last}: {bf16_run:?} vs {f32_run:?}"
    );
    assert!(
        bf16_run.iter().all(|&(_, s)| s == 0),
        "bf16 has no loss scale"
    );
    // Four f16 epochs: the first step or two overflow the initial loss scale and are skipped,
    // and after two epochs the fall varied with the machine (0.58-0.61x of the first epoch on
    // the EPYC Zen 4 development machine, 0.80x on CI's); after four it was 0.15-0.18x here.
    let f16_run = run(Precision::F16, 4);
    eprintln!("epoch losses, skipped steps: f32 {f32_run:?}\nbf16 {bf16_run:?}\nf16 {f16_run:?}");
    assert!(
        f16_run.iter().all(|&(l, _)| l.is_finite()) && f16_run[3].0 < 0.5 * f16_run[0].0,
        "f16 epoch losses {f16_run:?}"
    );
}

/// The trained set in `dir` estimates in f16 and bf16 (`infer --precision`) where it does in
/// f32, on the fixtures' garments.
fn estimates_agree_in_reduced_precision(dir: &Path, samples: &[Sample], images: &Path) {
    let device = flex();
    let estimate = |dtype: Option<FloatDType>| {
        let mut set = TopDownSet::load(dir, &device).unwrap();
        if let Some(d) = dtype {
            set.set_float_dtype(d);
        }
        let mut all = Vec::new();
        for sample in &samples[..4] {
            let img = deepmark::io::open_rgb(&images.join(&sample.file_name)).unwrap();
            let garments: Vec<(usize, [f32; 4])> = sample
                .items
                .iter()
                .map(|i| (i.category_id, i.bbox))
                .collect();
            all.extend(set.estimate(&img, &garments).unwrap());
        }
        all
    };
    let want = estimate(None);
    // A landmark whose heatmap is still flat after six epochs can jump to another near-equal
    // peak, so the bound is on the median; the peak values are bounded everywhere.
    for (dtype, median_px, peak_tol) in
        [(FloatDType::F16, 1.0, 0.01), (FloatDType::BF16, 5.0, 0.05)]
    {
        let got = estimate(Some(dtype));
        let (mut dist, mut peak) = (Vec::new(), 0.0f32);
        for (w, g) in want.iter().zip(&got) {
            for (a, b) in w.as_ref().unwrap().iter().zip(g.as_ref().unwrap()) {
                dist.push((a[0] - b[0]).hypot(a[1] - b[1]));
                peak = peak.max((a[2] - b[2]).abs());
            }
        }
        dist.sort_by(f32::total_cmp);
        let q = |f: f64| dist[((dist.len() - 1) as f64 * f) as usize];
        let what = format!(
            "{dtype:?}: {} landmarks, median {} p90 {} max {} px from f32's, peaks within {peak}",
            dist.len(),
            q(0.5),
            q(0.9),
            q(1.0)
        );
        eprintln!("{what}");
        assert!(q(0.5) <= median_px && peak <= peak_tol, "{what}");
    }
}
