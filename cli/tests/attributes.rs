//! Attribute recognition on the command line: `train-attributes` (both kinds, on a COCO-style
//! file and on a FashionAI label file), `eval-attributes`, `--attributes` on `infer` and
//! `eval` writing and scoring each detection's attributes, detector heads in `export`'s ONNX
//! graph; bad input named.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use common::{deepmark, tempdir};

fn ok(args: &[&str]) -> String {
    let o = deepmark(args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{args:?}\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn fails(args: &[&str]) -> String {
    let o = deepmark(args);
    assert!(!o.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small synthetic set with attributes.
fn synthetic(name: &str, n: usize, seed: u64) -> PathBuf {
    let dir = tempdir(name);
    ok(&[
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--n",
        &n.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn both_kinds_train_score_and_run_inside_detection() {
    let data = synthetic("cli-attr-train", 8, 21);
    let val = synthetic("cli-attr-val", 4, 22);
    let json = data.join("train.json");
    let vjson = val.join("train.json");
    for (on, extra) in [
        (
            "crops",
            vec!["--arch", "res18-slim", "--input-size", "64x64"],
        ),
        ("detector", vec!["--weights", "model-weights/demo.bpk"]),
    ] {
        let out = tempdir(&format!("cli-attr-{on}"));
        let mut args = vec![
            "train-attributes",
            "--data",
            s(&json),
            "--val",
            s(&vjson),
            "--on",
            on,
            "--epochs",
            "2",
            "--batch",
            "8",
            "--out",
            s(&out),
            "--json",
        ];
        args.extend(&extra);
        let text = ok(&args);
        assert!(text.contains("validation garments"), "{text}");
        for task in [
            "scale",
            "occlusion",
            "zoom_in",
            "viewpoint",
            "pattern",
            "colour",
        ] {
            assert!(text.contains(task), "{task}: {text}");
        }
        let scores: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(scores["tasks"].as_array().unwrap().len(), 6, "{scores}");
        assert!(out.join("attributes.bpk").is_file() && out.join("scores.json").is_file());
        // eval-attributes on the same garments gives the same numbers.
        let mut eargs = vec![
            "eval-attributes",
            "--data",
            s(&vjson),
            "--attributes",
            s(&out),
            "--json",
        ];
        if on == "detector" {
            eargs.extend(["--weights", "model-weights/demo.bpk"]);
        }
        let etext = ok(&eargs);
        let escores: serde_json::Value =
            serde_json::from_str(etext.lines().last().unwrap()).unwrap();
        assert_eq!(escores, scores, "{etext}");
        // infer: every detection carries one guess per task, in the results and the drawing.
        let inf = tempdir(&format!("cli-attr-infer-{on}"));
        ok(&[
            "infer",
            "datasets/samples",
            "--weights",
            "model-weights/demo.bpk",
            "--threshold",
            "0.1",
            "--attributes",
            s(&out),
            "--out",
            s(&inf),
        ]);
        let res: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(inf.join("results_keypoints.json")).unwrap())
                .unwrap();
        assert!(!res.is_empty());
        for r in &res {
            let a = r["attributes"].as_array().unwrap();
            assert_eq!(a.len(), 6, "{r}");
            let p: Vec<f64> = a[5]["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{p:?}");
            assert_eq!(a[5]["task"], "colour");
        }
        // ONNX export: detector heads as a seventh output; a recognition network refused.
        let model_onnx = out.join("model.onnx");
        let export = [
            "export",
            "--weights",
            "model-weights/demo.bpk",
            "--out",
            s(&model_onnx),
            "--attributes",
            s(&out),
        ];
        if on == "detector" {
            assert!(ok(&export).contains("hp_offset, attributes"));
        } else {
            assert!(fails(&export).contains("recognition network"));
            assert!(!model_onnx.exists());
        }
        // eval: detections paired with the labelled garments and their attributes scored.
        let ev = tempdir(&format!("cli-attr-eval-{on}"));
        let etext = ok(&[
            "eval",
            "--weights",
            "model-weights/demo.bpk",
            "--data",
            s(&vjson),
            "--attributes",
            s(&out),
            "--out",
            s(&ev),
        ]);
        assert!(etext.contains("attributes of the"), "{etext}");
        // The results file alone scores the same way.
        let ftext = ok(&[
            "eval",
            "--gt",
            s(&vjson),
            "--dt",
            s(&ev.join("results_bbox.json")),
        ]);
        let tail = |t: &str| t[t.find("attributes of the").unwrap()..].to_string();
        assert_eq!(tail(&ftext), tail(&etext));
    }
}

#[test]
fn a_fashionai_label_file_trains_and_bad_input_is_named() {
    let dir = tempdir("cli-attr-csv");
    let images = dir.join("Images/collar_design_labels");
    std::fs::create_dir_all(&images).unwrap();
    // Four photos, labelled for two FashionAI tasks (one with a "maybe").
    let photos: Vec<PathBuf> = std::fs::read_dir("../datasets/samples")
        .or_else(|_| std::fs::read_dir("datasets/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    assert_eq!(photos.len(), 4);
    let mut rows = String::new();
    for (i, p) in photos.iter().enumerate() {
        let name = format!("{i}.jpg");
        std::fs::copy(p, images.join(&name)).unwrap();
        let label = ["ynnnn", "nynnn", "nnmyn", "nnnny"][i % 4];
        rows += &format!("Images/collar_design_labels/{name},collar_design_labels,{label}\n");
        rows += &format!(
            "Images/collar_design_labels/{name},sleeve_length_labels,{}\n",
            ["ynnnnnnnn", "nnnnnnnny"][i % 2]
        );
    }
    let csv = dir.join("labels.csv");
    std::fs::write(&csv, &rows).unwrap();
    let out = dir.join("model");
    let text = ok(&[
        "train-attributes",
        "--data",
        s(&csv),
        "--weights",
        "model-weights/demo.bpk",
        "--arch",
        "res18-slim",
        "--input-size",
        "64x64",
        "--epochs",
        "1",
        "--batch",
        "4",
        "--out",
        s(&out),
    ]);
    assert!(text.contains("the detector located a garment in"), "{text}");
    assert!(text.contains("collar_design_labels") && text.contains("sleeve_length_labels"));
    // Bad rows: the file, the line and the field.
    for (row, want) in [
        (
            "Images/collar_design_labels/0.jpg,collar_design_labels,nnxyn",
            "field `label`",
        ),
        (
            "Images/collar_design_labels/0.jpg,hat_labels,ny",
            "field `task`",
        ),
        (
            "Images/collar_design_labels/9.jpg,collar_design_labels,nnynn",
            "does not exist",
        ),
    ] {
        std::fs::write(&csv, format!("{rows}{row}\n")).unwrap();
        let e = fails(&["train-attributes", "--data", s(&csv), "--out", s(&out)]);
        let line = format!("line {}", rows.lines().count() + 1);
        assert!(
            e.contains("labels.csv") && e.contains(&line) && e.contains(want),
            "{want}: {e}"
        );
    }
    std::fs::write(&csv, &rows).unwrap();
    let e = fails(&[
        "train-attributes",
        "--data",
        s(&csv),
        "--on",
        "detector",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("--weights"), "{e}");
    let e = fails(&[
        "train-attributes",
        "--data",
        s(&csv),
        "--tasks",
        "nonsense",
        "--out",
        s(&out),
    ]);
    assert!(e.contains("nonsense") && e.contains("fashionai"), "{e}");
}
