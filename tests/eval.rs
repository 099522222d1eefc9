//! The evaluator reproduces pycocotools to 1e-6: on real COCO person keypoints with 73 real
//! predictions and 118 real boxes, and on DeepFashion2 predictions made from the real GT with
//! noise, swapped categories, missing and extra detections (same rule as
//! `scripts/make_eval_fixtures.py`, whose pycocotools numbers are in
//! `tests/fixtures/eval/expected.json`).

use std::path::Path;

use deepmark::eval::coco::{
    GroundTruth, IouType, Params, ResultEntry, Results, evaluate, sigmas_for,
};
use serde_json::{Value, json};

mod common;

fn expected(key: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(common::fixtures().join("eval/expected.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn check(gt: &Path, dt: &Path, key: &str, kind: IouType) {
    let gt = GroundTruth::load(gt, &deepmark::io::Limits::default()).unwrap();
    let res = Results::load(dt, &gt, &deepmark::io::Limits::default()).unwrap();
    assert_eq!(res.kind, kind);
    let sigmas = sigmas_for(gt.num_keypoints()).unwrap_or_default();
    let ev = evaluate(&gt, &res, Params::new(kind, sigmas)).unwrap();
    let want = expected(key);
    assert_eq!(ev.stats.len(), want.len());
    for (i, (got, want)) in ev.stats.iter().zip(&want).enumerate() {
        assert!(
            (got - want).abs() <= 1e-6,
            "{key} stats[{i}]: ours {got}, pycocotools {want}"
        );
    }
}

#[test]
fn coco_person_keypoints_match_pycocotools() {
    let Some(dir) = common::shared_data("coco_person_keypoints") else {
        return;
    };
    check(
        &dir.join("test_coco.json"),
        &dir.join("xtcocoapi_example_coco_preds.json"),
        "coco_keypoints",
        IouType::Keypoints,
    );
}

#[test]
fn coco_person_boxes_match_pycocotools() {
    let Some(dir) = common::shared_data("coco_person_keypoints") else {
        return;
    };
    check(
        &dir.join("test_coco.json"),
        &dir.join("test_coco_det_AP_H_56.json"),
        "coco_bbox",
        IouType::Bbox,
    );
}

/// The rounded numbers pycocotools printed in `pycocotools_reference.txt` (written by others).
#[test]
fn coco_person_matches_the_shared_reference_text() {
    let Some(dir) = common::shared_data("coco_person_keypoints") else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("pycocotools_reference.txt")).unwrap();
    let lists: Vec<Vec<f64>> = text
        .split('[')
        .skip(1)
        .map(|s| {
            s.split(']')
                .next()
                .unwrap()
                .split(',')
                .map(|v| v.trim().parse::<f64>().unwrap())
                .collect()
        })
        .filter(|v: &Vec<f64>| v.len() >= 10)
        .collect();
    assert_eq!(lists.len(), 2, "two stats lists in the reference text");
    let gt = GroundTruth::load(
        &dir.join("test_coco.json"),
        &deepmark::io::Limits::default(),
    )
    .unwrap();
    for (file, kind, want) in [
        (
            "xtcocoapi_example_coco_preds.json",
            IouType::Keypoints,
            &lists[0],
        ),
        ("test_coco_det_AP_H_56.json", IouType::Bbox, &lists[1]),
    ] {
        let res = Results::load(&dir.join(file), &gt, &deepmark::io::Limits::default()).unwrap();
        let ev = evaluate(&gt, &res, Params::new(kind, sigmas_for(17).unwrap())).unwrap();
        for (got, want) in ev.stats.iter().zip(want) {
            // The text rounds to 6 significant digits.
            assert!(
                (got - want).abs() <= 5e-6 + 1e-12,
                "{file}: {got} vs {want}"
            );
        }
    }
}

/// Predictions from DeepFashion2 GT (the rule of `scripts/make_eval_fixtures.py::perturb`).
fn perturb(gt: &Value) -> (Vec<Value>, Vec<Value>) {
    let mut kps_out = Vec::new();
    let mut box_out = Vec::new();
    for (i, a) in gt["annotations"].as_array().unwrap().iter().enumerate() {
        let i = i as i64;
        if i % 7 == 3 {
            continue;
        }
        let mut cat = a["category_id"].as_i64().unwrap();
        if i % 5 == 1 {
            cat = cat % 13 + 1;
        }
        let b: Vec<f64> = a["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let (x, y, w, h) = (b[0], b[1], b[2], b[3]);
        let s = a["area"].as_f64().unwrap().sqrt();
        let gk: Vec<f64> = a["keypoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let mut kp = Vec::with_capacity(294 * 3);
        for j in 0..294i64 {
            let (gx, gy, gv) = (
                gk[3 * j as usize],
                gk[3 * j as usize + 1],
                gk[3 * j as usize + 2],
            );
            if gv > 0.0 {
                let ox = ((i * 131 + j * 17) % 21 - 10) as f64 * 0.004 * s;
                let oy = ((i * 71 + j * 29) % 19 - 9) as f64 * 0.004 * s;
                kp.extend([gx + ox, gy + oy, 1.0]);
            } else {
                kp.extend([0.0, 0.0, 0.0]);
            }
        }
        let score = 0.5 + ((i * 53) % 47) as f64 / 100.0;
        let dx = ((i * 37) % 11 - 5) as f64 * 0.01 * w;
        let dy = ((i * 43) % 13 - 6) as f64 * 0.01 * h;
        let bx = [x + dx, y + dy, w * (1.0 + ((i % 3) - 1) as f64 * 0.05), h];
        let img = a["image_id"].clone();
        kps_out.push(json!({"image_id": img, "category_id": cat, "keypoints": kp, "score": score}));
        box_out.push(json!({"image_id": img, "category_id": cat, "bbox": bx, "score": score}));
        if i % 4 == 0 {
            let ekp: Vec<f64> = kp
                .iter()
                .enumerate()
                .map(|(t, &v)| {
                    if t % 3 == 0 && v != 0.0 {
                        v + 0.3 * w
                    } else {
                        v
                    }
                })
                .collect();
            kps_out
                .push(json!({"image_id": img, "category_id": cat, "keypoints": ekp, "score": 0.3}));
            box_out.push(json!({"image_id": img, "category_id": cat,
                                "bbox": [x + 0.6 * w, y, w, h], "score": 0.3}));
        }
    }
    (kps_out, box_out)
}

#[test]
fn deepfashion2_keypoints_and_boxes_match_pycocotools_with_294_sigmas() {
    let Some(gt_path) = common::shared_data("deepfashion2/kgdet_demo32/demo_dataset-32.json")
    else {
        return;
    };
    let gt_json: Value = serde_json::from_str(&std::fs::read_to_string(&gt_path).unwrap()).unwrap();
    let (kps, boxes) = perturb(&gt_json);
    let n: f64 = expected_scalar("df2_num_results");
    assert_eq!(kps.len() as f64, n);
    let dir = common::tempdir("eval-df2");
    let kp_path = dir.join("kps.json");
    let box_path = dir.join("boxes.json");
    std::fs::write(&kp_path, serde_json::to_string(&kps).unwrap()).unwrap();
    std::fs::write(&box_path, serde_json::to_string(&boxes).unwrap()).unwrap();
    let gt = GroundTruth::load(&gt_path, &deepmark::io::Limits::default()).unwrap();
    assert_eq!(gt.num_keypoints(), 294);
    check(&gt_path, &kp_path, "df2_keypoints", IouType::Keypoints);
    check(&gt_path, &box_path, "df2_bbox", IouType::Bbox);
    // A perfect submission scores 1 everywhere it is defined.
    let perfect: Vec<Value> = gt_json["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            json!({"image_id": a["image_id"], "category_id": a["category_id"],
                        "keypoints": a["keypoints"], "score": 1.0})
        })
        .collect();
    std::fs::write(&kp_path, serde_json::to_string(&perfect).unwrap()).unwrap();
    let res = Results::load(&kp_path, &gt, &deepmark::io::Limits::default()).unwrap();
    let ev = evaluate(
        &gt,
        &res,
        Params::new(IouType::Keypoints, sigmas_for(294).unwrap()),
    )
    .unwrap();
    assert_eq!(ev.stats[0], 1.0);
    assert!(
        ev.stats.iter().all(|&v| v == 1.0 || v == -1.0),
        "{:?}",
        ev.stats
    );
}

fn expected_scalar(key: &str) -> f64 {
    let text = std::fs::read_to_string(common::fixtures().join("eval/expected.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v[key].as_f64().unwrap()
}

#[test]
fn bad_results_name_the_file_and_field() {
    let Some(dir) = common::shared_data("coco_person_keypoints") else {
        return;
    };
    let gt = GroundTruth::load(
        &dir.join("test_coco.json"),
        &deepmark::io::Limits::default(),
    )
    .unwrap();
    let tmp = common::tempdir("eval-bad");
    for (text, field) in [
        (
            "[{\"image_id\": 785, \"category_id\": 1, \"bbox\": [1, 2, 3], \"score\": 0.5}]",
            "bbox",
        ),
        (
            "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, 3, 4], \"score\": 0.5}]",
            "image_id",
        ),
        (
            "[{\"image_id\": 785, \"category_id\": 1, \"bbox\": [1, 2, -3, 4], \"score\": 0.5}]",
            "bbox",
        ),
        (
            "[{\"image_id\": 785, \"category_id\": 1, \"keypoints\": [1, 2], \"score\": 0.5}]",
            "keypoints",
        ),
        (
            "[{\"image_id\": 785, \"category_id\": 1, \"bbox\": [1, 2, 3, 4]}]",
            "(json)",
        ),
        // Another data set's results (DeepFashion2's category 3 against COCO persons).
        (
            "[{\"image_id\": 785, \"category_id\": 3, \"bbox\": [1, 2, 3, 4], \"score\": 0.5}]",
            "category_id",
        ),
        ("[]", "(list)"),
        ("{not json", "(json)"),
    ] {
        let p = tmp.join("r.json");
        std::fs::write(&p, text).unwrap();
        let err = Results::load(&p, &gt, &deepmark::io::Limits::default()).unwrap_err();
        assert_eq!(err.field, field, "{text}: {err}");
        assert!(err.to_string().contains("r.json"), "{err}");
    }
    // Results made in memory (a model's NaN output) are checked the same way.
    let nan = ResultEntry {
        image_id: 785,
        category_id: 1,
        bbox: None,
        keypoints: Some(vec![1.0, f64::NAN, 2.0]),
        score: 0.9,
    };
    let err = Results::from_entries(Path::new("(in memory)"), vec![nan], &gt).unwrap_err();
    assert_eq!(err.field, "keypoints", "{err}");
    assert!(err.to_string().contains("NaN"), "{err}");
    // 17-keypoint GT against 294-keypoint results: a clear error, not a panic.
    let p = tmp.join("r.json");
    let kp = vec![1.0; 294 * 3];
    std::fs::write(
        &p,
        serde_json::to_string(
            &json!([{"image_id": 785, "category_id": 1, "keypoints": kp, "score": 0.9}]),
        )
        .unwrap(),
    )
    .unwrap();
    // Refused by the loader (naming the file, the result and the field), not by the evaluation.
    let err = Results::load(&p, &gt, &deepmark::io::Limits::default()).unwrap_err();
    assert_eq!(
        (err.place.as_str(), err.field.as_str()),
        ("result 0: ", "keypoints")
    );
    assert!(
        err.to_string().contains("882") && err.to_string().contains("r.json"),
        "{err}"
    );
}

/// A ground truth the trainer would refuse is refused by the evaluator too, naming the file,
/// the annotation or image, and the field.
#[test]
fn bad_ground_truth_names_the_file_and_field() {
    let Some(dir) = common::shared_data("coco_person_keypoints") else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("test_coco.json")).unwrap();
    let real: Value = serde_json::from_str(&text).unwrap();
    let tmp = common::tempdir("eval-bad-gt");
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 4] = [
        ("category_id", |v| {
            v["annotations"][2]["category_id"] = 0.into()
        }),
        ("category_id", |v| {
            v["annotations"][0]["category_id"] = 14.into()
        }),
        ("id", |v| {
            let first = v["images"][0].clone();
            v["images"].as_array_mut().unwrap().push(first);
        }),
        ("image_id", |v| v["annotations"][1]["image_id"] = 4.into()),
    ];
    for (field, edit) in edits {
        let mut v = real.clone();
        edit(&mut v);
        let p = tmp.join("gt.json");
        std::fs::write(&p, v.to_string()).unwrap();
        let err = GroundTruth::load(&p, &deepmark::io::Limits::default()).unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert!(err.to_string().contains("gt.json"), "{err}");
    }
    let mut v = real.clone();
    v["annotations"][0]["category_id"] = 14.into();
    std::fs::write(tmp.join("gt.json"), v.to_string()).unwrap();
    let err = GroundTruth::load(&tmp.join("gt.json"), &Default::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("14 is not one of the file's categories (1)"),
        "{err}"
    );
}

/// NE / PCK on the real GT: exact predictions give 0 and 1; predictions moved by 0.1 of each
/// item's normaliser give NE 0.1 exactly; a missing detection is a miss, not an error.
#[test]
fn landmark_errors_follow_the_ne_and_pck_definitions() {
    use deepmark::eval::landmarks::{landmark_errors, normaliser_landmarks};
    use deepmark::infer::output::{BboxResult, KeypointResult};
    let Some(gt_path) = common::shared_data("deepfashion2/kgdet_demo32/demo_dataset-32.json")
    else {
        return;
    };
    for id in 1..=13 {
        let (a, b) = normaliser_landmarks(id).unwrap();
        assert_ne!(a, b);
    }
    let (samples, _) =
        deepmark::data::deepfashion2::load_coco(&gt_path, false, &deepmark::io::Limits::default())
            .unwrap();
    let build = |shift: f32, skip_first: bool| {
        let mut boxes = Vec::new();
        let mut kps = Vec::new();
        for (si, s) in samples.iter().enumerate() {
            for it in &s.items {
                if skip_first && si == 0 {
                    continue;
                }
                let cat = deepmark::garment::category(it.category_id).unwrap();
                let (a, b) = normaliser_landmarks(cat.id).unwrap();
                let pa = it.keypoints[cat.start + a];
                let pb = it.keypoints[cat.start + b];
                let norm = ((pa[0] - pb[0]).powi(2) + (pa[1] - pb[1]).powi(2)).sqrt();
                let mut k = vec![0.0f32; 294 * 3];
                for (g, p) in it.keypoints.iter().enumerate() {
                    k[3 * g] = p[0] + shift * norm;
                    k[3 * g + 1] = p[1];
                }
                boxes.push(BboxResult {
                    image_id: s.image_id,
                    category_id: it.category_id,
                    bbox: it.bbox,
                    score: 0.9,
                    attributes: Vec::new(),
                });
                kps.push(KeypointResult {
                    image_id: s.image_id,
                    category_id: it.category_id,
                    keypoints: k,
                    score: 0.9,
                    attributes: Vec::new(),
                });
            }
        }
        (boxes, kps)
    };
    let (b, k) = build(0.0, false);
    let (_, all) = landmark_errors(&samples, &b, &k);
    assert!(all.items > 40, "{all:?}");
    assert_eq!(all.matched, all.items);
    assert!(all.ne().abs() < 1e-9);
    assert_eq!(all.pck02(), 1.0);
    let (b, k) = build(0.1, false);
    let (per, all) = landmark_errors(&samples, &b, &k);
    assert!((all.ne() - 0.1).abs() < 1e-4, "{}", all.ne());
    assert_eq!(all.pck02(), 1.0);
    assert!(per.iter().filter(|p| p.items > 0).count() >= 8);
    let (b, k) = build(0.3, true);
    let (_, all) = landmark_errors(&samples, &b, &k);
    assert!(all.matched < all.items);
    assert!((all.ne() - 0.3).abs() < 1e-4);
    assert_eq!(all.pck02(), 0.0);
}
