//! Training on real DeepFashion2 fixtures (a short CI version): the loss falls, checkpoints
//! resume at the same epoch and step (also after SIGKILL), and a non-finite loss stops the run
//! with the last checkpoint intact.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use deepmark::codec::Scheme;
use deepmark::data::augment::AugmentConfig;
use deepmark::model::{Arch, CenterNetConfig};
use deepmark::train::{LossWeights, OptimizerConfig, TrainConfig, TrainState, read_metrics, train};

#[path = "../../tests/common/mod.rs"]
mod common;

fn config(data: PathBuf, images: PathBuf, epochs: usize, batch: usize) -> TrainConfig {
    TrainConfig {
        model: CenterNetConfig::new(Arch::Res18Slim, Scheme::Deepmark62.layout()),
        data,
        images,
        batch,
        epochs,
        optimizer: OptimizerConfig::adam(1e-3),
        loss: LossWeights::centernet(),
        augment: AugmentConfig::plain(128),
        seed: 317,
        workers: 1,
        max_objs: 32,
        init: None,
        val: None,
        finetune_category: None,
        shards: 1,
        amp: Default::default(),
        selection: Default::default(),
        max_unusable: 0.5,
        limits: Default::default(),
    }
}

#[test]
fn loss_falls_by_half_on_four_real_images() {
    let dir = common::tempdir("train-fall");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let mut cfg = config(json.clone(), images.clone(), 30, 4);
    cfg.val = Some(deepmark::train::Validation {
        data: json,
        images,
        every: 20,
    });
    let device = common::flex();
    let summary = train(&cfg, &dir.join("run"), &device, false, &mut |_| {}).unwrap();
    // Validation AP after epoch 20 and after the last, in metrics.csv too.
    let evaluated: Vec<usize> = summary
        .rows
        .iter()
        .filter(|r| r.val_ap.is_some())
        .map(|r| r.epoch + 1)
        .collect();
    assert_eq!(evaluated, vec![20, 30]);
    let csv = read_metrics(&dir.join("run/metrics.csv")).unwrap();
    // metrics.csv keeps 6 decimals.
    let (csv_b, csv_k) = csv
        .last()
        .unwrap()
        .val_ap
        .expect("AP columns in metrics.csv");
    let (run_b, run_k) = summary.rows.last().unwrap().val_ap.unwrap();
    assert!((csv_b - run_b).abs() <= 5e-7 && (csv_k - run_k).abs() <= 5e-7);
    let (ap_box, ap_pt) = summary.rows.last().unwrap().val_ap.unwrap();
    assert!((0.0..=1.0).contains(&ap_box) && (0.0..=1.0).contains(&ap_pt));
    let first = summary.rows.first().unwrap().loss.total;
    let last = summary.rows.last().unwrap().loss.total;
    println!("loss {first} → {last}");
    assert!(last <= 0.5 * first, "loss {first} → {last}");
    assert_eq!(summary.steps, 30);
    // The run directory holds what infer/eval need.
    for f in [
        "model.bpk",
        "model.json",
        "model.infer.json",
        "train.json",
        "metrics.csv",
    ] {
        assert!(dir.join("run").join(f).is_file(), "{f}");
    }
}

#[test]
fn resume_continues_at_the_same_epoch_and_step() {
    let dir = common::tempdir("train-resume");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let device = common::flex();
    let run = dir.join("run");
    let cfg2 = config(json.clone(), images.clone(), 2, 2);
    train(&cfg2, &run, &device, false, &mut |_| {}).unwrap();
    let cfg3 = config(json, images, 3, 2);
    let summary = train(&cfg3, &run, &device, true, &mut |_| {}).unwrap();
    assert_eq!(summary.steps, 6, "3 epochs of 2 steps");
    let rows = read_metrics(&run.join("metrics.csv")).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(
        rows.iter().map(|r| r.steps).collect::<Vec<_>>(),
        vec![2, 4, 6]
    );
    // Only the two newest epochs are kept (weights + optimizer state each).
    let mut ckpts: Vec<_> = std::fs::read_dir(run.join("checkpoint"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bpk"))
        .collect();
    ckpts.sort();
    assert_eq!(
        ckpts,
        [
            "epoch-0002.bpk",
            "epoch-0002.optim.bpk",
            "epoch-0003.bpk",
            "epoch-0003.optim.bpk"
        ],
        "{ckpts:?}"
    );
}

fn state(run: &Path) -> Option<TrainState> {
    let text = std::fs::read_to_string(run.join("checkpoint/state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

#[test]
fn sigkill_then_resume_ends_with_the_uninterrupted_step_count() {
    let dir = common::tempdir("train-kill");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let run = dir.join("run");
    let args = |resume: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_deepmark"));
        c.current_dir(common::root());
        c.args([
            "train",
            "--arch",
            "res18-slim",
            "--input-size",
            "128",
            "--batch",
            "2",
        ])
        .args([
            "--epochs",
            "5",
            "--lr",
            "1e-3",
            "--no-augment",
            "--no-eval",
            "--workers",
            "1",
        ])
        .arg("--data")
        .arg(&json)
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(&run);
        if resume {
            c.arg("--resume");
        }
        c
    };
    let mut child = args(false).spawn().unwrap();
    let start = Instant::now();
    loop {
        if state(&run).is_some_and(|s| s.epoch >= 2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let killed_at = state(&run).unwrap();
    assert!(killed_at.epoch < 5, "killed before the end");
    let out = args(true).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let end = state(&run).unwrap();
    assert_eq!(end.epoch, 5);
    assert_eq!(end.step, 10, "5 epochs × 2 steps, as an uninterrupted run");
    let rows = read_metrics(&run.join("metrics.csv")).unwrap();
    assert_eq!(rows.len(), 5);
}

#[test]
fn non_finite_loss_stops_with_a_clear_message_and_keeps_the_checkpoint() {
    let dir = common::tempdir("train-nan");
    // Four images, two steps per epoch: the second step of the resumed epoch diverges.
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let device = common::flex();
    let run = dir.join("run");
    train(
        &config(json.clone(), images.clone(), 1, 2),
        &run,
        &device,
        false,
        &mut |_| {},
    )
    .unwrap();
    let before = state(&run).unwrap();
    // A resumed run keeps its configuration: the divergent rate comes in through an edited
    // train.json (weights of 1e30 overflow f32 at the next forward).
    let mut bad = config(json, images, 2, 2);
    bad.optimizer.lr = 1e30;
    deepmark::train::RunDir::new(&run)
        .write_config(&bad)
        .unwrap();
    let err = train(&bad, &run, &device, true, &mut |_| {}).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("non-finite loss"), "{msg}");
    assert!(msg.contains("checkpoint"), "{msg}");
    assert_eq!(state(&run).unwrap(), before);
    let weights = run.join("checkpoint").join(&before.weights);
    deepmark::checkpoint::load(&weights, &device).unwrap();
}

/// Flips three bytes in the middle of a file.
fn flip_bytes(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let n = b.len();
    for i in [n / 3, n / 2, 2 * n / 3] {
        b[i] ^= 0x5a;
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn resume_passes_over_a_corrupt_or_truncated_checkpoint_and_says_so() {
    let dir = common::tempdir("train-rot");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let device = common::flex();
    let run = dir.join("run");
    train(
        &config(json.clone(), images.clone(), 3, 2),
        &run,
        &device,
        false,
        &mut |_| {},
    )
    .unwrap();
    let ckpt = run.join("checkpoint");
    // Two epochs are kept, each with its checksums and state.
    for e in [2, 3] {
        for f in ["bpk", "json", "check.json", "optim.bpk", "state.json"] {
            assert!(ckpt.join(format!("epoch-{e:04}.{f}")).is_file(), "{e} {f}");
        }
    }
    assert!(!ckpt.join("epoch-0001.bpk").exists());
    // Bit rot in the newest weights: detected at load, and --resume falls back to epoch 2.
    flip_bytes(&ckpt.join("epoch-0003.bpk"));
    let e = deepmark::checkpoint::load(&ckpt.join("epoch-0003.bpk"), &device)
        .expect_err("corrupt weights must not load")
        .to_string();
    assert!(e.contains("epoch-0003.bpk") && e.contains("corrupt"), "{e}");
    // Resumes to 4 epochs; returns the summary and the notices, one per line.
    let resume = || {
        let mut notices = Vec::new();
        let summary = train(
            &config(json.clone(), images.clone(), 4, 2),
            &run,
            &device,
            true,
            &mut |ev| {
                if let deepmark::train::Event::Notice(n) = ev {
                    notices.push(n.clone());
                }
            },
        )
        .unwrap();
        (summary, notices.join("\n"))
    };
    let (summary, said) = resume();
    assert!(
        said.contains("epoch 3 is unusable") && said.contains("resuming from epoch 2"),
        "{said}"
    );
    // Epochs 3 and 4 trained again from epoch 2: the step count of an uninterrupted run.
    assert_eq!(summary.steps, 8);
    assert_eq!(state(&run).unwrap().epoch, 4);
    let rows = read_metrics(&run.join("metrics.csv")).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // A truncated optimizer file in the newest epoch: the same fallback.
    let optim = ckpt.join("epoch-0004.optim.bpk");
    let bytes = std::fs::read(&optim).unwrap();
    std::fs::write(&optim, &bytes[..bytes.len() / 2]).unwrap();
    let (_, said) = resume();
    assert!(
        said.contains("epoch 4 is unusable") && said.contains("truncated"),
        "{said}"
    );
    // Flipped bytes in the newest optimizer file: caught by its checksum, the same fallback.
    flip_bytes(&ckpt.join("epoch-0004.optim.bpk"));
    let (_, said) = resume();
    assert!(
        said.contains("epoch 4 is unusable")
            && said.contains("epoch-0004.optim.bpk")
            && said.contains("CRC-32"),
        "{said}"
    );
    assert_eq!(state(&run).unwrap().step, 8);
}

#[test]
fn a_run_fine_tuned_for_one_category_trains_on_it_alone_and_serves_its_landmarks() {
    use deepmark::infer::Detector;
    use deepmark::infer::finetuned::FineTunedSet;
    let dir = common::tempdir("train-finetune");
    let Some((json, images)) = common::fixture_subset(6, &dir) else {
        return;
    };
    let (samples, _) =
        deepmark::data::deepfashion2::load_coco(&json, false, &deepmark::io::Limits::default())
            .unwrap();
    // The category of the first garment, and how many of the six images have one.
    let c = samples[0].items[0].category_id;
    let with_c = samples
        .iter()
        .filter(|s| s.items.iter().any(|i| i.category_id == c))
        .count();
    assert!(with_c < samples.len(), "the subset should mix categories");
    let device = common::flex();
    let universal = dir.join("universal");
    train(
        &config(json.clone(), images.clone(), 1, 1),
        &universal,
        &device,
        false,
        &mut |_| {},
    )
    .unwrap();
    let mut cfg = config(json.clone(), images.clone(), 6, 1);
    cfg.init = Some(universal.join("model.bpk"));
    cfg.finetune_category = Some(c);
    let set = dir.join("set");
    let summary = train(&cfg, &set.join("one"), &device, false, &mut |_| {}).unwrap();
    assert_eq!(
        summary.steps,
        6 * with_c,
        "one step per image with a garment of category {c}"
    );
    // A category without garments is refused by name.
    let absent = (1..=13)
        .find(|k| {
            samples
                .iter()
                .all(|s| s.items.iter().all(|i| i.category_id != *k))
        })
        .unwrap();
    cfg.finetune_category = Some(absent);
    let e = train(&cfg, &dir.join("none"), &device, false, &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains(&format!("category {absent}")), "{e}");
    cfg.finetune_category = Some(14);
    assert!(train(&cfg, &dir.join("bad"), &device, false, &mut |_| {}).is_err());

    // The folder is a model set serving category c; the universal run (no category) in it is
    // not a fine-tuned model.
    std::fs::create_dir_all(set.join("u")).unwrap();
    std::fs::copy(universal.join("train.json"), set.join("u/train.json")).unwrap();
    let fine = FineTunedSet::load(&set, &device).unwrap();
    assert_eq!(fine.categories(), vec![c]);
    let img = deepmark::io::open_rgb(&images.join(&samples[0].file_name)).unwrap();
    // Every peak of every category, in the set's model too (the run's weights depend on the
    // other tests training in this process, so the category need not be among the best 100).
    let relaxed = || {
        let mut d = Detector::from_weights(&set.join("one/model.bpk"), &device).unwrap();
        d.options.threshold = 0.0;
        d.options.post.top_k = 10_000;
        d.options.post.nms = deepmark::codec::Nms::None;
        d
    };
    let theirs = relaxed();
    let fine =
        FineTunedSet::from_detectors(vec![(c, relaxed(), set.join("one/model.bpk"))]).unwrap();
    let d = theirs
        .detect(&img)
        .unwrap()
        .into_iter()
        .find(|d| d.category_id == c)
        .expect("a detection of the category at threshold 0");
    let n = d.landmarks.len();
    let mut dets = vec![
        deepmark::codec::Detection {
            landmarks: vec![[-1.0, -1.0, 0.0]; n],
            ..d.clone()
        },
        deepmark::codec::Detection {
            category_id: if c == 1 { 2 } else { 1 },
            landmarks: vec![
                [-1.0, -1.0, 0.0];
                deepmark::garment::category(if c == 1 { 2 } else { 1 })
                    .unwrap()
                    .num_landmarks
            ],
            ..d.clone()
        },
    ];
    let other = dets[1].clone();
    // The set's model finds d again (same weights and image): the first detection, of category
    // c with d's box, takes its landmarks; the other category has no fine-tuned model.
    let changed = fine.apply(&img, &mut dets).unwrap();
    assert_eq!(changed, 1);
    assert_ne!(dets[0].landmarks, vec![[-1.0, -1.0, 0.0]; n]);
    assert_eq!(dets[1], other);
    // Two runs for one category are refused, naming both.
    copy_dir(&set.join("one"), &set.join("two"));
    let e = FineTunedSet::load(&set, &device).err().unwrap().to_string();
    assert!(e.contains("one") && e.contains("two"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}
