//! Other taxonomies through the command line, on the real fixtures: COCO persons and
//! DeepFashion's fashion landmarks train (the loss falls), their weights carry the taxonomy to
//! `infer` (skeleton drawings, results in the taxonomy's layout) and `eval`; data of another
//! taxonomy is refused; a FashionAI keypoint CSV written here trains and is scored with
//! FashionAI's normalised error.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

#[path = "../../tests/common/mod.rs"]
mod common;

use common::deepmark;

fn ok(o: Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Trains res18-slim at 128 for `epochs` on `data` into `out` (plain, no evaluation); returns
/// stdout and the per-epoch mean losses.
fn train(
    data: &Path,
    images: &Path,
    out: &Path,
    epochs: usize,
    extra: &[&str],
) -> (String, Vec<f64>) {
    let epochs = epochs.to_string();
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--arch",
        "res18-slim",
        "--input-size",
        "128",
        "--batch",
        "2",
        "--epochs",
        &epochs,
        "--lr",
        "1e-3",
        "--lr-steps",
        "1000:0.1",
        "--no-augment",
        "--no-eval",
        "--workers",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let stdout = ok(deepmark(&args));
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = head.iter().position(|h| *h == "total").unwrap();
    let losses = lines
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect();
    (stdout, losses)
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn coco_persons_train_infer_and_evaluate_in_their_taxonomy() {
    let (Some(data), Some(images)) = (
        common::shared_data("coco_person_keypoints/test_coco.json"),
        common::shared_data("coco_person_keypoints"),
    ) else {
        return;
    };
    let dir = common::tempdir("taxonomy-coco");
    let run = dir.join("run");
    let (stdout, losses) = train(&data, &images, &run, 12, &[]);
    assert!(stdout.contains("coco-person"), "{stdout}");
    assert!(
        losses.last().unwrap() < &(0.6 * losses[0]),
        "the loss does not fall: {losses:?}"
    );
    // CenterNet's COCO person layout (1 class, 17 keypoints) implies the taxonomy.
    let cfg = json(&run.join("model.json"));
    assert_eq!(cfg["layout"]["num_landmarks"], 17);
    assert!(cfg.get("taxonomy").is_none(), "{cfg}");
    // infer: a drawing and keypoint results of 17 × 3 values, category 1.
    let weights = run.join("model.bpk");
    let out = dir.join("infer");
    let photo = images.join("000000000785.jpg");
    ok(deepmark(&[
        "infer",
        "--weights",
        weights.to_str().unwrap(),
        "--threshold",
        "0.01",
        "--out",
        out.to_str().unwrap(),
        photo.to_str().unwrap(),
    ]));
    let kps = json(&out.join("results_keypoints.json"));
    let first = &kps.as_array().unwrap()[0];
    assert_eq!(first["keypoints"].as_array().unwrap().len(), 51);
    assert_eq!(first["category_id"], 1);
    assert!(out.join("000000000785.pred.jpg").is_file());
    // eval with the weights: pycocotools' tables for the person keypoints.
    let ev = ok(deepmark(&[
        "eval",
        "--weights",
        weights.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--out",
        dir.join("eval").to_str().unwrap(),
        "--json",
    ]));
    assert!(ev.contains("person"), "{ev}");
    let last: Value = serde_json::from_str(ev.lines().last().unwrap()).unwrap();
    assert!(last["ap_pt"].as_f64().unwrap() >= 0.0, "{last}");
    // The DeepFashion2 fixture is refused by the person model, naming the file and the field.
    let Some(df2) = common::shared_data("deepfashion2/kgdet_demo32/demo_dataset-32.json") else {
        return;
    };
    let o = deepmark(&[
        "eval",
        "--weights",
        weights.to_str().unwrap(),
        "--data",
        df2.to_str().unwrap(),
        "--out",
        dir.join("eval2").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("demo_dataset-32.json") && err.contains("coco-person"),
        "{err}"
    );
}

#[test]
fn fashion_landmarks_save_their_taxonomy_with_the_weights() {
    let (Some(data), Some(images)) = (
        common::shared_data("deepfashion_fld/mmpose_2img/test_fld.json"),
        common::shared_data("deepfashion_fld/mmpose_2img"),
    ) else {
        return;
    };
    let dir = common::tempdir("taxonomy-fld");
    let run = dir.join("run");
    let (stdout, losses) = train(&data, &images, &run, 12, &[]);
    assert!(stdout.contains("deepfashion-fld"), "{stdout}");
    assert!(
        losses.last().unwrap() < &(0.6 * losses[0]),
        "the loss does not fall: {losses:?}"
    );
    let cfg = json(&run.join("model.json"));
    assert_eq!(cfg["taxonomy"]["taxonomy"]["name"], "deepfashion-fld");
    assert_eq!(cfg["taxonomy"]["scheme"], "none");
    assert_eq!(cfg["layout"]["num_landmarks"], 8);
    let out = dir.join("infer");
    let photo = images.join("img_00000132.jpg");
    ok(deepmark(&[
        "infer",
        "--weights",
        run.join("model.bpk").to_str().unwrap(),
        "--threshold",
        "0.01",
        "--out",
        out.to_str().unwrap(),
        photo.to_str().unwrap(),
    ]));
    let kps = json(&out.join("results_keypoints.json"));
    assert_eq!(kps[0]["keypoints"].as_array().unwrap().len(), 24);
    // PoseFix's refiners on them: predict, train a (tiny) refiner, refine.
    let weights = run.join("model.bpk");
    let preds = dir.join("preds.json");
    ok(deepmark(&[
        "predict",
        "--weights",
        weights.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--out",
        preds.to_str().unwrap(),
    ]));
    let records = json(&preds);
    assert_eq!(records[0]["keypoints"].as_array().unwrap().len(), 24);
    let refiners = dir.join("refiners");
    ok(deepmark(&[
        "train-refiner",
        "--data",
        data.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--inputs",
        preds.to_str().unwrap(),
        "--arch",
        "res18-slim",
        "--input-size",
        "64x64",
        "--epochs",
        "2",
        "--batch",
        "2",
        "--workers",
        "1",
        "--out",
        refiners.to_str().unwrap(),
    ]));
    assert!(refiners.join("fashion.bpk").is_file());
    let refined = dir.join("refined.json");
    let out = ok(deepmark(&[
        "refine",
        "--refiners",
        refiners.to_str().unwrap(),
        "--inputs",
        preds.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--out",
        refined.to_str().unwrap(),
        "--json",
    ]));
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let n = records.as_array().unwrap().len();
    assert_eq!(last["detections"], n, "{out}");
    let refined = json(&refined);
    assert_eq!(refined.as_array().unwrap().len(), n);
    assert_eq!(refined[0]["keypoints"].as_array().unwrap().len(), 24);
    // A top-down model set on them (universal and fine-tuned), evaluated on the detections
    // and applied inside `infer`.
    let models = dir.join("topdown");
    ok(deepmark(&[
        "train-topdown",
        "--data",
        data.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--arch",
        "cpn-res18-slim",
        "--input-size",
        "64x64",
        "--epochs",
        "2",
        "--batch",
        "2",
        "--workers",
        "1",
        "--category",
        "all",
        "--out",
        models.to_str().unwrap(),
    ]));
    assert!(models.join("universal.bpk").is_file() && models.join("fashion.bpk").is_file());
    let ev = ok(deepmark(&[
        "eval-topdown",
        "--models",
        models.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--inputs",
        preds.to_str().unwrap(),
        "--json",
    ]));
    let last: Value = serde_json::from_str(ev.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["fine-tuned"]["per_category_ap"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{ev}"
    );
    let spec = format!("topdown:{}", models.display());
    ok(deepmark(&[
        "infer",
        "--weights",
        weights.to_str().unwrap(),
        "--landmarks",
        &spec,
        "--out",
        dir.join("infer-topdown").to_str().unwrap(),
        photo.to_str().unwrap(),
    ]));
    // The refiners of one taxonomy do not refine another's detections.
    let Some(coco) = common::shared_data("coco_person_keypoints/test_coco.json") else {
        return;
    };
    let o = deepmark(&[
        "refine",
        "--refiners",
        refiners.to_str().unwrap(),
        "--inputs",
        preds.to_str().unwrap(),
        "--data",
        coco.to_str().unwrap(),
        "--out",
        dir.join("refined2.json").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("test_coco.json") && err.contains("deepfashion-fld"),
        "{err}"
    );
    // `--scheme deepmark62` cannot group these landmarks.
    let o = deepmark(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--scheme",
        "deepmark62",
        "--epochs",
        "1",
        "--out",
        dir.join("run2").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("deepmark62") && err.contains("deepfashion-fld"),
        "{err}"
    );
}

/// FashionAI's CSV of the two DeepFashion landmark photos as dresses: the collar, sleeve,
/// waistline and hem landmarks at FashionAI's neckline, cuff (outer), waistline and hemline,
/// the armpits between sleeve and waistline (FashionAI normalises tops by them), the other
/// dress landmarks absent.
fn fashionai_csv(dir: &Path) -> Option<PathBuf> {
    let fld = common::shared_data("deepfashion_fld/mmpose_2img/test_fld.json")?;
    let v = json(&fld);
    let root = dir.join("fashionai");
    std::fs::create_dir_all(root.join("Images/dress")).unwrap();
    let columns = deepmark::data::fashionai::COLUMNS;
    let mut csv = format!("image_id,image_category,{}\n", columns.join(","));
    for (img, ann) in v["images"]
        .as_array()
        .unwrap()
        .iter()
        .zip(v["annotations"].as_array().unwrap())
    {
        let name = img["file_name"].as_str().unwrap();
        std::fs::copy(
            fld.parent().unwrap().join(name),
            root.join("Images/dress").join(name),
        )
        .unwrap();
        let k: Vec<f64> = ann["keypoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let at = |i: usize| (k[3 * i], k[3 * i + 1], k[3 * i + 2]);
        let cell = |(x, y, v): (f64, f64, f64)| {
            if v == 0.0 {
                "-1_-1_-1".to_string()
            } else {
                format!(
                    "{}_{}_{}",
                    x.round(),
                    y.round(),
                    if v >= 2.0 { 1 } else { 0 }
                )
            }
        };
        let mid =
            |a: (f64, f64, f64), b: (f64, f64, f64)| ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0, 2.0);
        let mut cells = vec!["-1_-1_-1".to_string(); columns.len()];
        let mut set = |name: &str, c: String| {
            cells[columns.iter().position(|n| *n == name).unwrap()] = c;
        };
        set("neckline_left", cell(at(0)));
        set("neckline_right", cell(at(1)));
        set("cuff_left_out", cell(at(2)));
        set("cuff_right_out", cell(at(3)));
        set("waistline_left", cell(at(4)));
        set("waistline_right", cell(at(5)));
        set("hemline_left", cell(at(6)));
        set("hemline_right", cell(at(7)));
        set("armpit_left", cell(mid(at(2), at(4))));
        set("armpit_right", cell(mid(at(3), at(5))));
        csv += &format!("Images/dress/{name},dress,{}\n", cells.join(","));
    }
    let path = root.join("train.csv");
    std::fs::write(&path, csv).unwrap();
    Some(path)
}

#[test]
fn a_fashionai_csv_trains_and_is_scored_with_its_normalised_error() {
    let dir = common::tempdir("taxonomy-fashionai");
    let Some(csv) = fashionai_csv(&dir) else {
        return;
    };
    let images = csv.parent().unwrap().to_path_buf();
    let run = dir.join("run");
    let (stdout, losses) = train(&csv, &images, &run, 12, &[]);
    assert!(stdout.contains("fashionai"), "{stdout}");
    assert!(
        losses.last().unwrap() < &(0.6 * losses[0]),
        "the loss does not fall: {losses:?}"
    );
    let cfg = json(&run.join("model.json"));
    assert_eq!(cfg["layout"]["num_classes"], 5);
    assert_eq!(cfg["layout"]["num_landmarks"], 53);
    let ev = ok(deepmark(&[
        "eval",
        "--weights",
        run.join("model.bpk").to_str().unwrap(),
        "--data",
        csv.to_str().unwrap(),
        "--out",
        dir.join("eval").to_str().unwrap(),
        "--json",
    ]));
    assert!(ev.contains("FashionAI NE"), "{ev}");
    let last: Value = serde_json::from_str(ev.lines().last().unwrap()).unwrap();
    let ne = last["stats"]["fashionai_ne"].as_f64().unwrap();
    assert!(ne.is_finite() && ne >= 0.0, "{last}");
    // Grouped by name: FashionAI's 24 landmark names.
    let run2 = dir.join("run-by-name");
    train(&csv, &images, &run2, 1, &["--scheme", "by-name"]);
    let cfg = json(&run2.join("model.json"));
    assert_eq!(cfg["layout"]["num_landmarks"], 24);
    assert_eq!(cfg["taxonomy"]["scheme"], "by-name");
    // A bad cell names the file, the line and the column.
    let bad = std::fs::read_to_string(&csv)
        .unwrap()
        .replacen(",dress,", ",dress,12_x_1,", 1)
        .replacen(",-1_-1_-1\n", "\n", 1);
    let bad_path = csv.with_file_name("bad.csv");
    std::fs::write(&bad_path, bad).unwrap();
    let o = deepmark(&[
        "eval",
        "--weights",
        run.join("model.bpk").to_str().unwrap(),
        "--data",
        bad_path.to_str().unwrap(),
        "--out",
        dir.join("eval-bad").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.csv") && err.contains("line 2") && err.contains("neckline_left"),
        "{err}"
    );
}

/// CenterNet's COCO person checkpoints import as `coco-person` (here the reduced-width res50
/// parity fixture, a `multi_pose`-layout checkpoint written by PyTorch) and run.
#[test]
fn a_centernet_person_checkpoint_converts_with_its_taxonomy() {
    let Some(images) = common::shared_data("coco_person_keypoints") else {
        return;
    };
    let dir = common::tempdir("taxonomy-convert");
    let parity = common::fixtures().join("parity");
    let out = dir.join("person.bpk");
    let stdout = ok(deepmark(&[
        "convert",
        parity.join("res50.pth").to_str().unwrap(),
        "--config",
        parity.join("res50.config.json").to_str().unwrap(),
        "--taxonomy",
        "coco-person",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(stdout.contains("coco-person"), "{stdout}");
    let cfg = json(&dir.join("person.json"));
    assert_eq!(cfg["layout"]["num_classes"], 1);
    assert_eq!(cfg["layout"]["num_landmarks"], 17);
    let infer = dir.join("infer");
    ok(deepmark(&[
        "infer",
        "--weights",
        out.to_str().unwrap(),
        "--input-size",
        "64",
        "--threshold",
        "0.0",
        "--out",
        infer.to_str().unwrap(),
        images.join("000000000785.jpg").to_str().unwrap(),
    ]));
    let kps = json(&infer.join("results_keypoints.json"));
    assert_eq!(kps[0]["keypoints"].as_array().unwrap().len(), 51);
    // Another taxonomy's layout does not take the checkpoint's heads.
    let o = deepmark(&[
        "convert",
        parity.join("res50.pth").to_str().unwrap(),
        "--config",
        parity.join("res50.config.json").to_str().unwrap(),
        "--taxonomy",
        "deepfashion-fld",
        "--out",
        dir.join("fld.bpk").to_str().unwrap(),
    ]);
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        !o.status.success() || report.contains("re-initialised") || report.contains("reinit"),
        "{report}"
    );
}
