//! Attribute recognition: labels read from COCO-style files (and refused with the file, the
//! annotation and the field when wrong), the synthetic set's attributes, detector heads read
//! at each detection's centre exactly as they were trained, and both models learning on the
//! synthetic set.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use common::{flex, tempdir};
use deepmark::attributes::apply::{
    AttributeModelConfig, GarmentModel, Recognizer, WEIGHTS, predict_samples,
};
use deepmark::attributes::data::{AttributeSample, load_coco_attributes};
use deepmark::attributes::eval::score;
use deepmark::attributes::heads::{AttributeHeadsConfig, task_probabilities};
use deepmark::attributes::train::{
    AttributeTrainConfig, train_detector_heads, train_recognizer, window,
};
use deepmark::attributes::{Mark, deepfashion2_tasks, synthetic_tasks};
use deepmark::checkpoint::save_module;
use deepmark::data::synth::{SynthConfig, generate};
use deepmark::infer::Detector;
use deepmark::io::Limits;
use deepmark::refine::RefinerArch;

/// A small synthetic set with attributes, generated into a fresh folder.
fn synthetic(name: &str, n: usize, seed: u64) -> PathBuf {
    let dir = tempdir(name);
    let cfg = SynthConfig {
        n,
        seed,
        min_side: 160,
        max_side: 256,
        ..Default::default()
    };
    generate(&dir, &cfg, &mut |_, _| {}).unwrap();
    dir
}

fn demo_detector() -> Detector {
    let mut det = Detector::from_weights(Path::new("model-weights/demo.bpk"), &flex()).unwrap();
    det.options.threshold = 0.05;
    det
}

#[test]
fn the_synthetic_set_carries_deepfashion2_and_its_own_attributes() {
    let dir = synthetic("attr-synth", 10, 3);
    let (tasks, samples) =
        load_coco_attributes(&dir.join("train.json"), &Limits::default()).unwrap();
    let mut want = deepfashion2_tasks();
    want.extend(synthetic_tasks());
    assert_eq!(tasks, want);
    assert!(samples.len() >= 10);
    let mut maybe = 0;
    for s in &samples {
        for (t, l) in tasks.iter().zip(&s.labels) {
            let l = l
                .as_ref()
                .unwrap_or_else(|| panic!("{} unlabelled", t.name));
            assert_eq!(l.len(), t.classes);
            assert_eq!(l.iter().filter(|m| **m == Mark::Yes).count(), 1, "{l:?}");
            maybe += l.contains(&Mark::Maybe) as usize;
        }
        assert!(s.bbox.is_some() && !s.landmarks.is_empty());
    }
    assert!(maybe > 0, "some labels are marked maybe");
}

#[test]
fn bad_attribute_labels_name_the_file_the_annotation_and_the_field() {
    let dir = synthetic("attr-bad", 2, 4);
    let good: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("train.json")).unwrap()).unwrap();
    let id = good["annotations"][0]["id"].as_u64().unwrap();
    let check = |edit: &dyn Fn(&mut serde_json::Value), want: &[&str]| {
        let mut v = good.clone();
        edit(&mut v);
        let p = dir.join("bad.json");
        std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
        let e = load_coco_attributes(&p, &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.json"), "{e}");
        for w in want {
            assert!(e.contains(w), "{w}: {e}");
        }
    };
    let annotation = format!("annotation {id}");
    check(
        &|v| v["annotations"][0]["attributes"]["hat"] = "yn".into(),
        &[&annotation, "attributes.hat", "unknown attribute task"],
    );
    check(
        &|v| v["annotations"][0]["attributes"]["colour"] = "yn".into(),
        &[
            &annotation,
            "attributes.colour",
            "has 2 letters, its task has 3",
        ],
    );
    check(
        &|v| v["annotations"][0]["attributes"]["pattern"] = "yxn".into(),
        &[&annotation, "attributes.pattern", "letter 2 is `x`"],
    );
    check(
        &|v| {
            v.as_object_mut().unwrap().remove("attribute_tasks");
        },
        &["attribute_tasks", "convert-dataset"],
    );
    check(
        &|v| v["attribute_tasks"][1]["classes"] = 1.into(),
        &["attribute_tasks", "1 classes"],
    );
}

#[test]
fn detector_heads_are_read_at_each_detection_centre_as_they_were_trained() {
    let _seeded = common::seeded();
    let mut det = demo_detector();
    let device = flex();
    let cfg = AttributeHeadsConfig::new(det.config().clone(), synthetic_tasks()).unwrap();
    let heads = cfg.init(&device);
    let dir = tempdir("attr-heads");
    save_module(
        &heads,
        &AttributeModelConfig::DetectorHeads(cfg.clone()),
        &dir.join(WEIGHTS),
    )
    .unwrap();
    det.set_attributes(&dir).unwrap();
    assert!(det.recognizer.is_none() && det.attribute_heads().is_some());
    let img =
        deepmark::io::open_rgb(Path::new("datasets/samples/matplotlib_grace_hopper.jpg")).unwrap();
    let dets = det.detect(&img).unwrap();
    assert!(dets.len() >= 3, "{} detections", dets.len());
    // What training sees: the 3×3 window of the features around the centre cell.
    let f = det.features(&img).unwrap();
    let [c, ..] = f.dims;
    let centres: Vec<[f32; 2]> = dets
        .iter()
        .map(|d| [(d.bbox[0] + d.bbox[2]) / 2.0, (d.bbox[1] + d.bbox[3]) / 2.0])
        .collect();
    let at = det.attributes_at(&img, &centres).unwrap().unwrap();
    for (k, d) in dets.iter().enumerate() {
        let (x, y) = f.cell(centres[k]);
        let w = window(&f.data, f.dims, x, y);
        let out = heads.forward(Tensor::<4>::from_data(
            TensorData::new(w, [1, c, 3, 3]),
            &device,
        ));
        let v = common::host(out);
        // Channel-major (Σ, 3, 3): the centre of each channel.
        let centre: Vec<f32> = (0..cfg.channels()).map(|ch| v[ch * 9 + 4]).collect();
        let want = task_probabilities(&cfg.tasks, &centre);
        assert_eq!(d.attributes.len(), 2);
        for (t, g) in d.attributes.iter().enumerate() {
            assert_eq!(g.task, cfg.tasks[t].name);
            for (a, b) in g.probabilities.iter().zip(&want[t]) {
                assert!((a - b).abs() < 1e-5, "detection {k} task {t}: {a} vs {b}");
            }
            for (a, b) in at[k][t].iter().zip(&want[t]) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "attributes_at {k} task {t}: {a} vs {b}"
                );
            }
        }
    }
    // Burn's generic operations give the same attributes as the fast CPU form.
    det.set_fast(false).unwrap();
    let generic = det.detect(&img).unwrap();
    assert_eq!(generic.len(), dets.len());
    for (a, b) in dets.iter().zip(&generic) {
        for (x, y) in a.attributes.iter().zip(&b.attributes) {
            for (p, q) in x.probabilities.iter().zip(&y.probabilities) {
                assert!((p - q).abs() < 1e-4, "fast {p} vs generic {q}");
            }
        }
    }
    // Heads made for a detector of another shape are refused.
    let mut other = cfg.clone();
    other.detector.head_conv += 1;
    let odir = tempdir("attr-heads-other");
    save_module(
        &other.init(&device),
        &AttributeModelConfig::DetectorHeads(other),
        &odir.join(WEIGHTS),
    )
    .unwrap();
    let e = det.set_attributes(&odir).unwrap_err().to_string();
    assert!(e.contains("another shape"), "{e}");
}

/// Accuracy and majority share of a task in scores.
fn task_score(s: &deepmark::attributes::eval::AttributeScores, name: &str) -> (f64, f64) {
    let t = s.tasks.iter().find(|t| t.task == name).unwrap();
    (t.accuracy, t.majority)
}

#[test]
fn both_attribute_models_learn_on_the_synthetic_set() {
    // Random weights are drawn in this process: one seeded test at a time.
    let _seeded = common::seeded();
    let dir = synthetic("attr-learn", 40, 11);
    let (tasks, samples) =
        load_coco_attributes(&dir.join("train.json"), &Limits::default()).unwrap();
    let images = dir.join("image");
    let device = flex();
    // The recognition network on crops: colour is visible in every crop.
    let mut cfg = AttributeTrainConfig::paper(RefinerArch::Res18Slim, [64, 64], 12, 2e-3);
    cfg.batch = 16;
    let out = tempdir("attr-learn-rec");
    let mut losses = Vec::new();
    let (net, ncfg, _) =
        train_recognizer(&cfg, &tasks, &samples, &images, &out, &device, &mut |e| {
            if let deepmark::attributes::train::AttributeEvent::Epoch { loss, .. } = e {
                losses.push(*loss);
            }
        })
        .unwrap();
    assert!(
        losses[losses.len() - 1] < 0.85 * losses[0],
        "loss {losses:?}"
    );
    let rec = Recognizer::new(net, ncfg, &device);
    let scored = |m: GarmentModel<'_>, s: &[AttributeSample]| {
        let rows =
            predict_samples(m, &tasks, s, &images, &Limits::default(), &mut |_, _| {}).unwrap();
        score(m.tasks(), &rows)
    };
    let s = scored(GarmentModel::Recognizer(&rec), &samples);
    eprintln!("recognition network, training garments:\n{s}");
    let (acc, majority) = task_score(&s, "colour");
    assert!(
        acc > majority + 0.1,
        "colour {acc} vs majority {majority}\n{s}"
    );
    // The saved network predicts as the trained one.
    let loaded = Recognizer::load(&out, &device).unwrap();
    let again = scored(GarmentModel::Recognizer(&loaded), &samples);
    assert_eq!(again.tasks, s.tasks);
    // Detector heads: the demo detector's features at the centre tell a garment's scale.
    let mut det = demo_detector();
    let mut hcfg = AttributeTrainConfig::paper(RefinerArch::Res18Slim, [64, 64], 100, 3e-3);
    hcfg.batch = 16;
    let hout = tempdir("attr-learn-heads");
    train_detector_heads(&hcfg, &tasks, &det, &samples, &images, &hout, &mut |_| {}).unwrap();
    det.set_attributes(&hout).unwrap();
    let s = scored(GarmentModel::Detector(&det), &samples);
    eprintln!("detector heads, training garments:\n{s}");
    let (acc, majority) = task_score(&s, "scale");
    assert!(
        acc > majority + 0.1,
        "scale {acc} vs majority {majority}\n{s}"
    );
}
