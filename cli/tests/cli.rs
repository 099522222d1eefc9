//! The command line: `eval --json` output contract, `infer` drawings and challenge JSON (read
//! back and evaluated), and clear errors for bad input.

use std::path::Path;
use std::process::Output;

use deepmark::eval::coco::{GroundTruth, IouType, Params, Results, evaluate, sigmas_for};
use deepmark::infer::output::KeypointResult;
use serde_json::Value;

#[path = "../../tests/common/mod.rs"]
mod common;

use common::deepmark;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn eval_json_last_line_is_the_stats_object() {
    let Some(dir) = common::shared_data("coco_person_keypoints") else {
        return;
    };
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("eval/expected.json")).unwrap(),
    )
    .unwrap();
    for (dt, kind, key, n) in [
        (
            "xtcocoapi_example_coco_preds.json",
            "keypoints",
            "coco_keypoints",
            10,
        ),
        ("test_coco_det_AP_H_56.json", "bbox", "coco_bbox", 12),
    ] {
        let o = deepmark(&[
            "eval",
            "--gt",
            dir.join("test_coco.json").to_str().unwrap(),
            "--dt",
            dir.join(dt).to_str().unwrap(),
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(last.as_object().unwrap().len(), 2);
        assert_eq!(last["iou_type"], kind);
        let stats = last["stats"].as_array().unwrap();
        assert_eq!(stats.len(), n);
        for (a, b) in stats.iter().zip(expected[key].as_array().unwrap()) {
            assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() <= 1e-6);
        }
        assert!(
            out.contains("Average Precision  (AP) @[ IoU=0.50:0.95 |"),
            "{out}"
        );
    }
}

#[test]
fn eval_reports_bad_files_without_panicking() {
    let Some(dir) = common::shared_data("coco_person_keypoints") else {
        return;
    };
    let tmp = common::tempdir("cli-eval-bad");
    let bad = tmp.join("bad.json");
    std::fs::write(
        &bad,
        "[{\"image_id\": 785, \"category_id\": 1, \"bbox\": [1, 2]",
    )
    .unwrap();
    let o = deepmark(&[
        "eval",
        "--gt",
        dir.join("test_coco.json").to_str().unwrap(),
        "--dt",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("bad.json") && !e.contains("panicked"), "{e}");
}

fn random_weights(dir: &Path) -> String {
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
    assert!(o.status.success(), "{}", stderr(&o));
    w.to_str().unwrap().to_string()
}

#[test]
fn infer_writes_drawings_and_challenge_json_that_evaluates() {
    let Some(gt) = common::shared_data("deepfashion2/kgdet_demo32/demo_dataset-32.json") else {
        return;
    };
    let dir = common::tempdir("cli-infer");
    let weights = random_weights(&dir);
    let images = gt.parent().unwrap().join("image");
    let (a, b) = (images.join("002092.jpg"), images.join("018074.jpg"));
    // Both images with flip and two scales, `batch` images per forward pass.
    let infer = |out: &Path, batch: &str| {
        deepmark(&[
            "infer",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--weights",
            &weights,
            "--input-size",
            "128",
            "--threshold",
            "0",
            "--flip",
            "--scales",
            "0.9,1.1",
            "--batch",
            batch,
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let out = dir.join("out");
    let o = infer(&out, "1");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let speed = text
        .lines()
        .find(|l| l.starts_with("Speed: "))
        .expect("a Speed line");
    for part in [
        "ms load",
        "ms preprocess",
        "ms forward",
        "ms decode",
        "ms post per image at 128×128 (flex)",
    ] {
        assert!(speed.contains(part), "{speed}");
    }
    for stem in ["002092", "018074"] {
        let p = out.join(format!("{stem}.pred.jpg"));
        let img = image::open(&p).unwrap();
        assert!(img.width() > 0);
    }
    let kps_text = std::fs::read_to_string(out.join("results_keypoints.json")).unwrap();
    let kps: Vec<KeypointResult> = serde_json::from_str(&kps_text).unwrap();
    assert!(!kps.is_empty());
    for k in &kps {
        assert_eq!(k.keypoints.len(), 294 * 3);
        assert!([2092u64, 18074].contains(&k.image_id));
        assert!((1..=13).contains(&k.category_id));
    }
    // Both images in one forward batch (per scale, with their mirror images): the same results.
    let batched = dir.join("out-batched");
    let o = infer(&batched, "2");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("images/s (batch 2"), "{}", stdout(&o));
    let again = std::fs::read_to_string(batched.join("results_keypoints.json")).unwrap();
    assert_eq!(again, kps_text, "--batch 2 changed the results");
    // Both files load as results against the real GT and evaluate.
    let gt_data = GroundTruth::load(&gt, &deepmark::io::Limits::default()).unwrap();
    for (file, kind) in [
        ("results_keypoints.json", IouType::Keypoints),
        ("results_bbox.json", IouType::Bbox),
    ] {
        let r = Results::load(&out.join(file), &gt_data, &deepmark::io::Limits::default()).unwrap();
        assert_eq!(r.kind, kind);
        let e = evaluate(&gt_data, &r, Params::new(kind, sigmas_for(294).unwrap())).unwrap();
        assert!(e.stats.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn infer_errors_are_clear() {
    let dir = common::tempdir("cli-infer-bad");
    let o = deepmark(&[
        "infer",
        "datasets/samples",
        "--weights",
        "/nonexistent/w.bpk",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let weights = random_weights(&dir);
    let broken = dir.join("broken.jpg");
    std::fs::write(&broken, b"not a jpeg").unwrap();
    let o = deepmark(&[
        "infer",
        broken.to_str().unwrap(),
        "--weights",
        &weights,
        "--input-size",
        "64",
        "--out",
        dir.join("out").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("broken.jpg") && !e.contains("panicked"), "{e}");
    let o = deepmark(&["infer", "--weights", &weights, "--input-size", "100"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("multiple of 32"), "{}", stderr(&o));
    // A folder with a good photo, a zero-byte file and a PNG whose header claims 60000×60000:
    // the good one is finished, the bad ones are listed with the limit named, exit code 1.
    let folder = dir.join("mixed");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(
        common::root().join("datasets/samples/matplotlib_grace_hopper.jpg"),
        folder.join("a_good.jpg"),
    )
    .unwrap();
    std::fs::write(folder.join("b_empty.jpg"), b"").unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = 60_000u32.to_be_bytes().to_vec();
    ihdr.extend(60_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", vec![]), (b"IEND", vec![])] {
        let mut chunk = kind.to_vec();
        chunk.extend(&data);
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(&chunk);
        png.extend(crc32fast::hash(&chunk).to_be_bytes());
    }
    std::fs::write(folder.join("c_huge.png"), png).unwrap();
    // The same with the bad files inside one batch of the batched pipeline.
    for batch in ["1", "3"] {
        let out = dir.join(format!("mixed-out-{batch}"));
        let o = deepmark(&[
            "infer",
            folder.to_str().unwrap(),
            "--weights",
            &weights,
            "--input-size",
            "64",
            "--batch",
            batch,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(
            e.contains("2 of 3 images could not be read")
                && e.contains("b_empty.jpg")
                && e.contains("c_huge.png")
                && e.contains("--max-image-pixels"),
            "{e}"
        );
        assert!(out.join("a_good.pred.jpg").is_file());
        assert!(out.join("results_bbox.json").is_file());
    }
}

#[test]
fn refiner_commands_predict_train_refine_and_plug_into_infer_and_eval() {
    let Some(gt) = common::shared_data("deepfashion2/kgdet_demo32/demo_dataset-32.json") else {
        return;
    };
    let dir = common::tempdir("cli-refine");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let gt_s = gt.to_str().unwrap();
    let o = deepmark(&[
        "predict",
        "--synthesize-errors",
        "--data",
        gt_s,
        "--out",
        &p("noisy.json"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("55 ground-truth garments"),
        "{}",
        stdout(&o)
    );
    // A detector's predictions (random weights) as training inputs, one epoch, shirts only.
    let weights = random_weights(&dir);
    let o = deepmark(&[
        "predict",
        "--weights",
        &weights,
        "--data",
        gt_s,
        "--input-size",
        "128",
        "--out",
        &p("preds.json"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = deepmark(&[
        "train-refiner",
        "--data",
        gt_s,
        "--inputs",
        &p("preds.json"),
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
        "--out",
        &p("ref"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("1 refiners in"), "{}", stdout(&o));
    let o = deepmark(&[
        "refine",
        "--refiners",
        &p("ref"),
        "--inputs",
        &p("noisy.json"),
        "--data",
        gt_s,
        "--out",
        &p("refined.json"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("short_sleeved_shirt") && out.contains("AP_pt"),
        "{out}"
    );
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["detections"], 55);
    assert!(v["before"]["ap_pt"].as_f64().unwrap() > 0.0);
    // The refined file is a keypoints results file for `eval`.
    let o = deepmark(&["eval", "--gt", gt_s, "--dt", &p("refined.json"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // infer and eval with --refine.
    let image = gt.parent().unwrap().join("image/002092.jpg");
    let o = deepmark(&[
        "infer",
        image.to_str().unwrap(),
        "--weights",
        &weights,
        "--input-size",
        "128",
        "--threshold",
        "0",
        "--refine",
        &p("ref"),
        "--out",
        &p("infer"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = deepmark(&[
        "eval",
        "--weights",
        &weights,
        "--data",
        gt_s,
        "--input-size",
        "128",
        "--symmetry",
        "--refine",
        &p("ref"),
        "--out",
        &p("eval"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A missing folder is a clear error.
    let o = deepmark(&[
        "infer",
        image.to_str().unwrap(),
        "--weights",
        &weights,
        "--refine",
        &p("nope"),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("refiners.json"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn profile_prints_stages_with_mean_and_median_and_operations_by_shape() {
    let o = deepmark(&[
        "profile",
        "--arch",
        "res18-slim",
        "--input-size",
        "64",
        "--runs",
        "3",
        "--by-shape",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // `stage  mean  median  share%` rows; the shares of the five stages add up to the total's.
    let row = |name: &str| -> Vec<f64> {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{out}"));
        line[name.len()..]
            .split_whitespace()
            .map(|v| v.trim_end_matches('%').parse().unwrap())
            .collect()
    };
    let stages = [
        "load (read + decode file)",
        "preprocess",
        "forward",
        "decode (+ flip fusion)",
        "post (NMS, threshold, landmark stages)",
    ];
    let total = row("total");
    assert_eq!(total.len(), 3, "{out}");
    assert!((total[2] - 100.0).abs() < 1e-9);
    let shares: f64 = stages.iter().map(|s| row(s)[2]).sum();
    assert!((shares - 100.0).abs() < 0.5, "{out}");
    let forward = row("forward");
    assert!(forward[0] > 0.0 && forward[1] > 0.0, "{out}");
    // Operations named with their form (if any) and input shape: res18-slim's stem reads the
    // 3×64×64 input.
    assert!(
        out.lines()
            .any(|l| l.starts_with("conv7x7/s2 ") && l.contains(" 3x64x64->")),
        "{out}"
    );
}

#[test]
fn export_writes_onnx_with_the_weights_settings_and_refuses_bad_requests() {
    let dir = common::tempdir("cli-export");
    let out = dir.join("demo.onnx");
    let o = deepmark(&[
        "export",
        "--weights",
        "model-weights/demo.bpk",
        "--out",
        out.to_str().unwrap(),
        "--dynamic-batch",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("input input (batch, 3, 128, 128)"),
        "{}",
        stdout(&o)
    );
    let model = deepmark::export::onnx::read(&std::fs::read(&out).unwrap()).unwrap();
    let meta = |key: &str| {
        model
            .metadata_props
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no {key}"))
            .value
            .clone()
    };
    // The input size and the detector options saved with the weights travel in the metadata.
    assert_eq!(meta("deepmark.input_size"), "128x128");
    let saved = deepmark::infer::detector::read_options(
        &common::root().join("model-weights/demo.infer.json"),
    )
    .unwrap();
    let exported: deepmark::infer::DetectorOptions =
        serde_json::from_str(&meta("deepmark.detector_options")).unwrap();
    assert_eq!(exported, saved);
    assert_eq!(meta("deepmark.scheme"), "deepmark62");
    let before = std::fs::read(&out).unwrap();

    // Weights without their config; the weights as the output; a size the backbone cannot take.
    let lone = dir.join("lone.bpk");
    std::fs::copy(common::root().join("model-weights/demo.bpk"), &lone).unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["--weights", lone.to_str().unwrap()], "lone.json"),
        (
            &[
                "--weights",
                "model-weights/demo.bpk",
                "--out",
                "model-weights/demo.bpk",
            ],
            "both the output and the input --weights",
        ),
        (
            &["--weights", "model-weights/demo.bpk", "--input-size", "100"],
            "input size 100 must be a positive multiple of 32",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["export"];
        all.extend_from_slice(args);
        if !args.contains(&"--out") {
            all.extend_from_slice(&["--out", out.to_str().unwrap()]);
        }
        let o = deepmark(&all);
        let e = stderr(&o);
        assert!(
            !o.status.success() && e.contains(expected) && !e.contains("panicked"),
            "{all:?}: {e}"
        );
    }
    // A refused export leaves an earlier file at the output untouched.
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let o = deepmark(&[
        "export",
        "--format",
        "pytorch",
        "--weights",
        "model-weights/demo.bpk",
        "--out",
        out.to_str().unwrap(),
        "--dynamic-batch",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("ONNX settings"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&out).unwrap(), before);

    // `--format pytorch` and `convert` are inverses: the same tensors, bit for bit.
    let pth = dir.join("demo.pth");
    let back = dir.join("back.bpk");
    let o = deepmark(&[
        "export",
        "--format",
        "pytorch",
        "--weights",
        "model-weights/demo.bpk",
        "--out",
        pth.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = deepmark(&[
        "convert",
        pth.to_str().unwrap(),
        "--config",
        "model-weights/demo.json",
        "--scheme",
        "deepmark62",
        "--out",
        back.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = stdout(&o);
    assert!(
        report.contains("missing: 0") || !report.contains("missing"),
        "{report}"
    );
    let original = common::weight_tensors(&common::root().join("model-weights/demo.bpk"));
    let round = common::weight_tensors(&back);
    assert_eq!(original.len(), round.len());
    for ((n1, v1), (n2, v2)) in original.iter().zip(&round) {
        assert_eq!(n1, n2);
        assert!(
            v1.iter().zip(v2).all(|(a, b)| a.to_bits() == b.to_bits()) && v1.len() == v2.len(),
            "{n1}"
        );
    }
    assert!(common::root().join("model-weights/demo.bpk").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
