//! Runs and files that cannot be lost or mixed: `--resume` continues the saved configuration, a
//! run folder holds one run and one writer, outputs never overwrite inputs.

use std::path::Path;
use std::process::Output;

use deepmark::train::{RunDir, TrainConfig};

#[path = "../../tests/common/mod.rs"]
mod common;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `train` on `json` (images in `images`) into `out`: res18-slim at 64, batch 2, `epochs`,
/// no augmentation, no evaluation, one loader thread; `extra` flags appended.
fn train(json: &Path, images: &Path, out: &Path, epochs: &str, extra: &[&str]) -> Output {
    let mut args = extra.to_vec();
    args.push("--no-eval");
    train_evaluated(json, images, out, epochs, &args)
}

/// [`train`] with validation and the final evaluation as `extra` sets them.
fn train_evaluated(json: &Path, images: &Path, out: &Path, epochs: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--no-augment"];
    args.extend_from_slice(extra);
    train_augmented(json, images, out, epochs, &args)
}

/// [`train_evaluated`] with augmentation on.
fn train_augmented(json: &Path, images: &Path, out: &Path, epochs: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--data",
        json.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--arch",
        "res18-slim",
        "--input-size",
        "64",
        "--batch",
        "2",
        "--epochs",
        epochs,
        "--workers",
        "1",
    ];
    args.extend_from_slice(extra);
    common::deepmark(&args)
}

fn saved(run: &Path) -> TrainConfig {
    RunDir::new(run).read_config().unwrap()
}

#[test]
fn resume_continues_the_saved_configuration_and_refuses_other_values() {
    let dir = common::tempdir("runs-resume");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let run = dir.join("run");
    let o = train(&json, &images, &run, "1", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // No --data, no --input-size, no --batch: the saved run goes on (not the demo preset at
    // 128 px, batch 8, on the synthetic set). Run without a desktop session's XDG_RUNTIME_DIR:
    // a CPU resume must not start the Vulkan loader (which complains about it on stderr) to
    // read back the optimizer state.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_deepmark"))
        .args([
            "train",
            "--out",
            run.to_str().unwrap(),
            "--resume",
            "--epochs",
            "2",
            "--no-eval",
        ])
        .current_dir(common::root())
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("BURN_DEVICE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("XDG_RUNTIME_DIR"), "{}", stderr(&o));
    let cfg = saved(&run);
    assert_eq!((cfg.input_size(), cfg.batch, cfg.epochs), (64, 2, 2));
    assert!(deepmark::io::same_path(&cfg.data, &json));
    let infer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("model.infer.json")).unwrap())
            .unwrap();
    assert_eq!(infer["input_size"], 64);
    let state = RunDir::new(&run).read_state().unwrap();
    assert_eq!((state.epoch, state.step), (2, 4));
    // A value that changes what a step computes is refused, naming the saved and given values.
    let o = common::deepmark(&[
        "train",
        "--out",
        run.to_str().unwrap(),
        "--resume",
        "--epochs",
        "3",
        "--input-size",
        "128",
        "--lr",
        "0.5",
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("--input-size: saved 64, given 128") && e.contains("--lr: saved"),
        "{e}"
    );
    assert_eq!(saved(&run).epochs, 2, "the refused resume changed nothing");
    // Nothing to resume: said at once.
    let o = common::deepmark(&[
        "train",
        "--out",
        dir.join("none").to_str().unwrap(),
        "--resume",
    ]);
    assert!(
        stderr(&o).contains("holds no run to resume"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_folder_holds_one_run_replaced_only_on_request() {
    let dir = common::tempdir("runs-one");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let run = dir.join("run");
    let o = train(&json, &images, &run, "2", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = std::fs::read(run.join("train.json")).unwrap();
    // A fresh run into it is refused (it used to delete its own new checkpoints and keep the
    // old run's two newest).
    let o = train(&json, &images, &run, "1", &["--seed", "5"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("holds another run") && e.contains("--overwrite") && e.contains("--resume"),
        "{e}"
    );
    assert_eq!(std::fs::read(run.join("train.json")).unwrap(), before);
    // The library refuses it too.
    let mut cfg = saved(&run);
    cfg.seed = 5;
    let device = common::flex();
    let err = deepmark::train::train(&cfg, &run, &device, false, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("holds another run"), "{err}");
    // --overwrite replaces it: the old epochs' checkpoints are gone, a file of the user's stays.
    std::fs::write(run.join("notes.txt"), "mine").unwrap();
    let o = train(&json, &images, &run, "1", &["--seed", "5", "--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(saved(&run).seed, 5);
    let state = RunDir::new(&run).read_state().unwrap();
    assert_eq!(state.epoch, 1);
    assert!(!run.join("checkpoint/epoch-0002.bpk").exists());
    assert_eq!(
        std::fs::read_to_string(run.join("notes.txt")).unwrap(),
        "mine"
    );
    let rows = deepmark::train::read_metrics(&run.join("metrics.csv")).unwrap();
    assert_eq!(rows.len(), 1);
}

#[test]
fn one_writer_per_run_folder() {
    let dir = common::tempdir("runs-lock");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let run = dir.join("run");
    let folder = RunDir::new(&run);
    let held = folder.lock().unwrap();
    // A second lock (another open file, as another process would take) fails at once, naming
    // the holder.
    let e = folder.lock().unwrap_err().to_string();
    assert!(
        e.contains("another process") && e.contains(&std::process::id().to_string()),
        "{e}"
    );
    let o = train(&json, &images, &run, "1", &[]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("another process") && e.contains("run.lock"),
        "{e}"
    );
    assert!(
        !run.join("train.json").exists(),
        "the refused run wrote nothing"
    );
    // Released with its holder (the operating system releases it when a process dies, too).
    drop(held);
    let o = train(&json, &images, &run, "1", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn outputs_never_overwrite_inputs() {
    let dir = common::tempdir("runs-inputs");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    // A data set whose annotations are named train.json, trained into its own folder: the
    // run's train.json used to replace the annotations.
    let data = dir.join("set");
    std::fs::create_dir_all(&data).unwrap();
    let annotations = data.join("train.json");
    std::fs::copy(&json, &annotations).unwrap();
    let original = std::fs::read(&annotations).unwrap();
    for extra in [&[][..], &["--overwrite"][..]] {
        let o = train(&annotations, &images, &data, "1", extra);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains("an input of the run"), "{e}");
        assert_eq!(std::fs::read(&annotations).unwrap(), original);
    }
    // Weights named .json: their config would overwrite them (it used to, with exit 0).
    let w = dir.join("w.json");
    let o = common::deepmark(&["init", "--arch", "res18-slim", "--out", w.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot be named .json"),
        "{}",
        stderr(&o)
    );
    assert!(!w.exists());
    // refine/predict/show-data/templates: the output may not be an input.
    let inputs = dir.join("dets.json");
    std::fs::write(&inputs, "[]").unwrap();
    let o = common::deepmark(&[
        "refine",
        "--refiners",
        dir.to_str().unwrap(),
        "--inputs",
        inputs.to_str().unwrap(),
        "--data",
        json.to_str().unwrap(),
        "--out",
        inputs.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("both the output and the input --inputs"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&inputs).unwrap(), "[]");
    for cmd in ["templates", "show-data"] {
        let o = common::deepmark(&[
            cmd,
            "--data",
            json.to_str().unwrap(),
            "--out",
            json.to_str().unwrap(),
        ]);
        assert!(
            stderr(&o).contains("both the output and the input --data"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
    assert!(deepmark::data::deepfashion2::load_coco(&json, false, &Default::default()).is_ok());
}

#[test]
fn infer_ids_and_drawings_are_unique_per_input() {
    let dir = common::tempdir("runs-ids");
    let inputs = dir.join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let photo = common::root().join("datasets/samples/matplotlib_grace_hopper.jpg");
    let img = deepmark::io::open_rgb(&photo).unwrap();
    // `2` and `000002` are one number; `photo.jpg` and `photo.png` one stem.
    for name in ["2.jpg", "000002.jpg", "photo.jpg"] {
        std::fs::copy(&photo, inputs.join(name)).unwrap();
    }
    deepmark::io::save_image_atomic(&img, &inputs.join("photo.png")).unwrap();
    let out = dir.join("out");
    let o = common::deepmark(&[
        "infer",
        inputs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--threshold",
        "0.01",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("images.json")).unwrap()).unwrap();
    assert_eq!(names.len(), 4);
    let ids: std::collections::BTreeSet<u64> = names
        .iter()
        .map(|n| n["image_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (1..=4).collect(), "{names:?}");
    let drawings: std::collections::BTreeSet<&str> = names
        .iter()
        .map(|n| n["drawing"].as_str().unwrap())
        .collect();
    assert_eq!(drawings.len(), 4, "{names:?}");
    for d in &drawings {
        assert!(out.join(d).is_file(), "{d}");
    }
    let boxes: Vec<deepmark::infer::output::BboxResult> =
        serde_json::from_str(&std::fs::read_to_string(out.join("results_bbox.json")).unwrap())
            .unwrap();
    let seen: std::collections::BTreeSet<u64> = boxes.iter().map(|b| b.image_id).collect();
    assert_eq!(seen, ids, "every input keeps its own detections");
    // DeepFashion2's numbered files keep their numbers.
    let numbered = dir.join("numbered");
    std::fs::create_dir_all(&numbered).unwrap();
    for name in ["000007.jpg", "000012.jpg"] {
        std::fs::copy(&photo, numbered.join(name)).unwrap();
    }
    let o = common::deepmark(&[
        "infer",
        numbered.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("images.json")).unwrap()).unwrap();
    let ids: Vec<u64> = names
        .iter()
        .map(|n| n["image_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [7, 12]);
}

/// The fixture subset with the first image's `field` set to `value`.
fn edited_subset(
    dir: &Path,
    field: &str,
    value: serde_json::Value,
) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let (json, images) = common::fixture_subset(4, dir)?;
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    v["images"][0][field] = value;
    let edited = dir.join(format!("edited-{field}.json"));
    std::fs::write(&edited, v.to_string()).unwrap();
    Some((edited, images))
}

#[test]
fn dataset_paths_stay_inside_the_image_folder() {
    let dir = common::tempdir("runs-paths");
    let real = common::fixture_subset(4, &dir).map(|(json, _)| json);
    let Some(real) = real else {
        return;
    };
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&real).unwrap()).unwrap();
    let first = first["images"][0]["file_name"]
        .as_str()
        .unwrap()
        .to_string();
    // An existing file reached through `..`, a missing one, an absolute path: one refusal.
    for name in [
        format!("../image/{first}"),
        "../../nothing.jpg".into(),
        "/etc/hostname".into(),
        String::new(),
    ] {
        let (json, images) = edited_subset(&dir, "file_name", name.clone().into()).unwrap();
        let e = deepmark::data::deepfashion2::load_coco(&json, false, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("file_name") && e.contains("is not a relative path inside the image folder"),
            "{name}: {e}"
        );
        let o = common::deepmark(&[
            "show-data",
            "--data",
            json.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--out",
            dir.join("show.png").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        assert!(
            stderr(&o).contains("not a relative path inside"),
            "{}",
            stderr(&o)
        );
    }
    assert!(!dir.join("show.png").exists());
}

#[test]
fn training_refuses_images_whose_size_differs_from_the_annotations() {
    let dir = common::tempdir("runs-size");
    let Some((json, _)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let wider = v["images"][0]["width"].as_u64().unwrap() + 8;
    let (json, images) = edited_subset(&dir, "width", wider.into()).unwrap();
    let sample =
        deepmark::data::dataset::SampleConfig::new(64, deepmark::codec::Scheme::Deepmark62, false)
            .unwrap();
    let open = |skip| {
        deepmark::data::dataset::Df2Dataset::open(
            &json,
            &images,
            sample.clone(),
            skip,
            &Default::default(),
        )
    };
    let e = open(false).err().unwrap().to_string();
    assert!(
        e.contains("width")
            && e.contains("the annotations")
            && e.contains(&format!("say {wider}×")),
        "{e}"
    );
    let (ds, report) = open(true).unwrap();
    assert_eq!((ds.samples().len(), report.skipped.len()), (3, 1));
}

#[test]
fn training_refuses_a_set_whose_images_are_mostly_unusable() {
    let dir = common::tempdir("runs-unusable");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    // Three of the four images missing (a half-copied folder): refused before anything is
    // built, naming how many and one of them; --max-unusable lets the run use the one left.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let few = dir.join("few");
    std::fs::create_dir_all(&few).unwrap();
    let kept = v["images"][3]["file_name"].as_str().unwrap();
    std::fs::copy(images.join(kept), few.join(kept)).unwrap();
    let run = dir.join("run");
    let o = train(&json, &few, &run, "1", &[]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("3 of the 4 images") && e.contains("raise --max-unusable"),
        "{e}"
    );
    // Refused before the folder was touched: no half-made run blocks the next start.
    assert!(!run.join("train.json").exists());
    let o = train(&json, &few, &run, "1", &["--max-unusable", "0.75"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(saved(&run).max_unusable, 0.75);
    // A fraction outside [0, 1] is refused.
    let o = train(
        &json,
        &images,
        &dir.join("r2"),
        "1",
        &["--max-unusable", "1.5"],
    );
    assert!(stderr(&o).contains("max_unusable is 1.5"), "{}", stderr(&o));
}

#[cfg(unix)]
#[test]
fn only_regular_files_are_opened() {
    use std::time::{Duration, Instant};
    let dir = common::tempdir("runs-fifo");
    let fifo = |name: &str| {
        let p = dir.join(name);
        let made = std::process::Command::new("mkfifo").arg(&p).status();
        made.is_ok_and(|s| s.success()).then_some(p)
    };
    let (Some(image), Some(json), Some(weights)) = (fifo("x.jpg"), fifo("x.json"), fifo("x.bpk"))
    else {
        eprintln!("mkfifo is not available: skipped");
        return;
    };
    // Each command must end (it used to block forever on the pipe) and name the file.
    let bounded = |args: &[&str]| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_deepmark"))
            .args(args)
            .current_dir(common::root())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(120) {
                child.kill().unwrap();
                panic!("{args:?} blocked on a pipe");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = child.wait_with_output().unwrap();
        (o.status.code(), stderr(&o))
    };
    let out = dir.join("out");
    let (code, e) = bounded(&[
        "infer",
        image.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains("x.jpg") && e.contains("not a regular file"),
        "{e}"
    );
    let (code, e) = bounded(&["show-data", "--data", json.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains("x.json") && e.contains("not a regular file"),
        "{e}"
    );
    let (code, e) = bounded(&["info", "--weights", weights.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains("x.bpk") && e.contains("not a regular file"),
        "{e}"
    );
}

#[test]
fn a_zero_head_conv_is_refused_before_any_layer_is_built() {
    let dir = common::tempdir("runs-headconv");
    let demo = common::root().join("model-weights/demo.bpk");
    let weights = dir.join("w.bpk");
    std::fs::copy(&demo, &weights).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deepmark::checkpoint::config_path(&demo)).unwrap(),
    )
    .unwrap();
    cfg["head_conv"] = 0.into();
    std::fs::write(deepmark::checkpoint::config_path(&weights), cfg.to_string()).unwrap();
    // It used to pass the check and panic inside Burn (exit 101).
    let o = common::deepmark(&["info", "--weights", weights.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("head_conv is 0"), "{}", stderr(&o));
}

#[test]
fn numeric_flags_have_the_limits_of_their_config_twins() {
    let dir = common::tempdir("runs-flags");
    let photo = common::root().join("datasets/samples/matplotlib_grace_hopper.jpg");
    let out = dir.join("out");
    let infer = |extra: &[&str]| {
        let mut args = vec![
            "infer",
            photo.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        common::deepmark(&args)
    };
    // Each used to be accepted (100000 aborted allocating 30 GB, exit 134).
    for (extra, said) in [
        (&["--input-size", "100000"][..], "input_size is 100000"),
        (&["--input-size", "4128"][..], "input_size is 4128"),
        (
            &["--scales", "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1"][..],
            "1 to 16 multipliers",
        ),
        (&["--scales", "100"][..], "1 to 16 multipliers"),
        (
            &["--threshold", "NaN"][..],
            "--threshold: threshold NaN is not a number",
        ),
        (&["--threshold", "inf"][..], "--threshold"),
    ] {
        let o = infer(extra);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(said), "{extra:?}: {}", stderr(&o));
    }
    let Some((json, images)) = common::fixture_subset(2, &dir) else {
        return;
    };
    let run = dir.join("run");
    for (extra, said) in [
        (&["--input-size", "100000"][..], "input size is 100000"),
        (&["--batch", "5000"][..], "batch is 5000"),
        (
            &["--lr", "0"][..],
            "learning rate 0 must be a positive number",
        ),
        (&["--lr=-1"][..], "learning rate -1"),
        (&["--lr", "NaN"][..], "learning rate NaN"),
        // Within the limits one by one, beyond any machine together (about 9 TiB): refused
        // with the estimate, before anything is allocated.
        (
            &["--batch", "1024", "--input-size", "4096"][..],
            "this run needs an estimated",
        ),
        (
            &["--input-size", "512", "--batch", "32", "--max-memory", "1"][..],
            "more than --max-memory 1 GiB: lower --batch or --input-size",
        ),
        (&["--max-memory=-1"][..], "--max-memory -1: give GiB"),
    ] {
        let mut args = vec![
            "train",
            "--data",
            json.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--arch",
            "res18-slim",
            "--epochs",
            "1",
            "--no-eval",
        ];
        args.extend_from_slice(extra);
        let o = common::deepmark(&args);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(said), "{extra:?}: {}", stderr(&o));
    }
}

#[test]
fn a_damaged_metrics_file_neither_blocks_a_resume_nor_is_lost() {
    let dir = common::tempdir("runs-metrics");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let run = dir.join("run");
    let o = train(&json, &images, &run, "2", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = run.join("metrics.csv");
    let text = std::fs::read_to_string(&metrics).unwrap();
    // The last line cut in the middle (it used to block --resume).
    let last = text.trim_end().rfind('\n').unwrap() + 1;
    let cut = &text[..last + (text.trim_end().len() - last) / 3];
    std::fs::write(&metrics, cut).unwrap();
    let o = train(&json, &images, &run, "3", &["--resume"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("line 3") && out.contains("metrics.csv.bad"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.csv.bad")).unwrap(),
        cut
    );
    let rows = deepmark::train::read_metrics(&metrics).unwrap();
    assert_eq!(rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), [0, 2]);
    // Not a metrics file at all (it used to be dropped without a word).
    std::fs::write(&metrics, "hello\nworld\n").unwrap();
    let o = train(&json, &images, &run, "4", &["--resume"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("not the header of a deepmark metrics file"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.csv.bad")).unwrap(),
        "hello\nworld\n"
    );
}

#[cfg(unix)]
#[test]
fn interrupted_runs_say_where_they_stopped_and_leave_no_temporaries() {
    use std::time::{Duration, Instant};
    let dir = common::tempdir("runs-sigint");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let run = dir.join("run");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_deepmark"))
        .current_dir(common::root())
        .args([
            "train",
            "--arch",
            "res18-slim",
            "--input-size",
            "64",
            "--batch",
            "2",
        ])
        .args(["--epochs", "200", "--no-eval", "--workers", "1", "--out"])
        .arg(&run)
        .arg("--data")
        .arg(&json)
        .arg("--images")
        .arg(&images)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while RunDir::new(&run).read_state().map_or(true, |s| s.epoch < 1) {
        assert!(start.elapsed() < Duration::from_secs(120), "no epoch ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling a child this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{e}");
    assert!(
        e.contains("epoch(s) of the run") && e.contains("--resume"),
        "{e}"
    );
    // A temporary an earlier killed infer left behind (above Linux's largest process id) is removed.
    let out = dir.join("infer");
    std::fs::create_dir_all(&out).unwrap();
    let stale = out.join("results_bbox.json.tmp4194305");
    std::fs::write(&stale, "[").unwrap();
    let photo = common::root().join("datasets/samples/matplotlib_grace_hopper.jpg");
    let o = common::deepmark(&[
        "infer",
        photo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stale.exists());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("removed 1 unfinished temporary file"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn one_seed_one_loader_thread_reproduces_a_run_bit_for_bit() {
    let dir = common::tempdir("runs-seed");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    // Augmentation on: the draws follow the seed too.
    let run = |name: &str| {
        let out = dir.join(name);
        let o = train_augmented(&json, &images, &out, "2", &["--no-eval"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let losses: Vec<[f32; 7]> = deepmark::train::read_metrics(&out.join("metrics.csv"))
            .unwrap()
            .iter()
            .map(|r| r.loss.values())
            .collect();
        (losses, common::weight_tensors(&out.join("model.bpk")))
    };
    let (a, wa) = run("a");
    let (b, wb) = run("b");
    assert_eq!(a, b);
    assert!(wa == wb, "the weights differ");
}

#[test]
fn a_config_of_other_weights_is_refused_before_its_network_is_built() {
    let dir = common::tempdir("runs-bigcfg");
    let weights = dir.join("w.bpk");
    std::fs::copy(common::root().join("model-weights/demo.bpk"), &weights).unwrap();
    // Hourglass-104's config beside the 1 M-parameter demo weights: it used to build the
    // 190 M-parameter network (6 GB) before comparing shapes.
    let cfg = deepmark::model::CenterNetConfig::new(
        deepmark::model::Arch::Hourglass104,
        deepmark::codec::Scheme::Deepmark62.layout(),
    );
    std::fs::write(
        deepmark::checkpoint::config_path(&weights),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    let o = common::deepmark(&["info", "--weights", weights.to_str().unwrap()]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("do not belong together") && e.contains("w.json"),
        "{e}"
    );
}

#[test]
fn train_help_shows_the_recipe_and_long_run_controls() {
    let o = common::deepmark(&["train", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--adam-eps",
        "--beta1",
        "--beta2",
        "--weight-decay",
        "--best-by",
        "--patience",
        "--config",
        "--overwrite",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn a_run_keeps_its_best_epoch_stops_early_and_reruns_from_its_config() {
    let dir = common::tempdir("runs-best");
    let Some((json, images)) = common::fixture_subset(4, &dir) else {
        return;
    };
    let run = dir.join("run");
    // A rate so small that validation AP cannot improve: the first validation is the best,
    // the second makes the patience of 1 run out.
    // Validation on the training set itself (its images are --images).
    let val = ["--val-every", "1"];
    let mut extra = vec!["--lr", "1e-12", "--patience", "1", "--best-by", "box"];
    extra.extend(val);
    let o = train_evaluated(&json, &images, &run, "6", &extra);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("stopping early after epoch 2"), "{out}");
    assert!(
        out.contains("best: ") && out.contains("model-best.bpk (epoch 1"),
        "{out}"
    );
    let state = RunDir::new(&run).read_state().unwrap();
    assert_eq!(state.epoch, 2);
    let best = state.best.unwrap();
    assert_eq!((best.epoch, best.stale), (1, 1));
    assert!(run.join("model-best.bpk").is_file() && run.join("model-best.infer.json").is_file());
    deepmark::checkpoint::load(&run.join("model-best.bpk"), &common::flex()).unwrap();
    let cfg = saved(&run);
    assert_eq!(cfg.optimizer.epsilon, 1e-8, "PyTorch's Adam ε by default");
    assert_eq!(cfg.selection.patience, Some(1));
    // Resumed with the patience lifted, it trains on and keeps its best epoch's record.
    let mut extra = vec!["--resume", "--patience", "0"];
    extra.extend(val);
    let o = train_evaluated(&json, &images, &run, "3", &extra);
    assert!(o.status.success(), "{}", stderr(&o));
    let state = RunDir::new(&run).read_state().unwrap();
    assert_eq!(state.epoch, 3);
    assert_eq!(state.best.unwrap().epoch, 1);
    // A different optimiser on resume is refused.
    let o = train(
        &json,
        &images,
        &run,
        "4",
        &["--resume", "--adam-eps", "1e-5"],
    );
    assert!(
        stderr(&o).contains("--adam-eps: saved 1e-8, given 1e-5"),
        "{}",
        stderr(&o)
    );
    // The run's own train.json re-runs it elsewhere, flags overriding the file.
    let other = dir.join("other");
    let o = common::deepmark(&[
        "train",
        "--config",
        run.join("train.json").to_str().unwrap(),
        "--out",
        other.to_str().unwrap(),
        "--epochs",
        "1",
        "--seed",
        "9",
        "--no-eval",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (saved(&run), saved(&other));
    assert_eq!((b.epochs, b.seed), (1, 9));
    assert_eq!(
        (b.input_size(), b.batch, b.optimizer.lr, b.model.clone()),
        (a.input_size(), a.batch, a.optimizer.lr, a.model.clone())
    );
}
