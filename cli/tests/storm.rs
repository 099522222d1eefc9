//! Fault storms: training killed (SIGKILL) at 20 moments — some random, some while a checkpoint
//! file is being written — and resumed each time ends with the step count and the weights of an
//! uninterrupted run; a full disk and a read-only folder during checkpointing and result writing
//! give a clear error and leave the previous checkpoint and results intact.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use deepmark::train::TrainState;

#[path = "../../tests/common/mod.rs"]
mod common;

const EPOCHS: usize = 60;

fn train_cmd(json: &Path, images: &Path, run: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deepmark"));
    c.current_dir(common::root());
    c.args(["train", "--arch", "res18-slim", "--input-size", "64"])
        .args([
            "--batch",
            "1",
            "--lr",
            "1e-3",
            "--no-eval",
            "--workers",
            "1",
        ])
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
        .filter(|n| deepmark::io::is_temporary_name(n))
        .collect()
}

/// Every tensor of the final weights, by path.
fn weights(run: &Path) -> Vec<(String, Vec<f32>)> {
    common::weight_tensors(&run.join("model.bpk"))
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
    let Some((json, images)) = common::fixture_subset(2, &dir) else {
        return;
    };
    let reference = dir.join("uninterrupted");
    let out = train_cmd(&json, &images, &reference, false)
        .output()
        .unwrap();
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
        // A launch killed before its first checkpoint leaves its `train.json`, which the next
        // fresh launch would refuse as another run: it replaces it, as a user would.
        let overwrite = !resume && run.join("train.json").is_file();
        // Left by the previous kill (the resume removes them): not a write of this launch.
        let stale = temporaries(&run);
        let mut child = train_cmd(&json, &images, &run, resume)
            .args(overwrite.then_some("--overwrite"))
            .spawn()
            .unwrap();
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
            let Some(s) = state(&run) else {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "launch {launches} ended by itself without a checkpoint ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            assert_eq!(s.epoch, EPOCHS);
            break;
        }
        child.kill().unwrap();
        let _ = child.wait();
        kills += 1;
        during_writes += hit_write as usize;
    }
    assert!(
        kills >= 15,
        "only {kills} kills landed before the run finished"
    );
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

/// `cmd` run by `sh` with writes limited to `kib` KiB per file (`ulimit -f`) and SIGXFSZ ignored:
/// a write past the limit fails with EFBIG ("File too large"), as on a full disk.
fn with_file_limit(cmd: &Command, kib: u64) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!(
            "ulimit -f {}; trap '' XFSZ; exec \"$0\" \"$@\"",
            kib * 2
        ))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(common::root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    sh
}

/// Trains until epoch `epoch` is committed, then kills the run.
fn train_until(json: &Path, images: &Path, run: &Path, epoch: usize) {
    let mut child = train_cmd(json, images, run, false).spawn().unwrap();
    let start = Instant::now();
    while state(run).is_none_or(|s| s.epoch < epoch) {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let _ = child.wait();
}

fn checkpoint_files(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(run.join("checkpoint"))
        .unwrap()
        .flatten()
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_full_disk_during_checkpointing_is_a_clear_error_and_keeps_the_last_checkpoint() {
    let dir = common::tempdir("storm-full");
    let Some((json, images)) = common::fixture_subset(2, &dir) else {
        return;
    };
    let run = dir.join("run");
    train_until(&json, &images, &run, 2);
    let committed = state(&run).unwrap();
    let before = checkpoint_files(&run);
    // 1 MiB per file: the weights (4 MiB) and the optimizer state (8 MiB) cannot be written.
    let out = with_file_limit(&train_cmd(&json, &images, &run, true), 1024)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run must fail: {err}");
    assert!(
        err.contains("File too large") && err.contains(&*run.to_string_lossy()),
        "the error names the file and the cause: {err}"
    );
    // The file the run writes, not the temporary it is written through.
    assert!(!err.contains(".tmp"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The committed state may only move forward to an epoch whose files are complete; here no
    // epoch could be written, so nothing changed: same state, same bytes, no temporaries.
    let after_state = state(&run).unwrap();
    assert_eq!(after_state.epoch, committed.epoch);
    let after = checkpoint_files(&run);
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    for (name, bytes) in &before {
        if name.starts_with(&format!("epoch-{:04}", committed.epoch)) || name == "state.json" {
            let now = after.iter().find(|(n, _)| n == name);
            assert_eq!(
                now.map(|(_, b)| b),
                Some(bytes),
                "{name} changed; now {:?}",
                names(&after)
            );
        }
    }
    // And a later run with room resumes from it and finishes.
    let out = train_cmd(&json, &images, &run, true).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(state(&run).unwrap().epoch, EPOCHS);
}

#[test]
fn a_full_disk_or_read_only_folder_while_writing_results_keeps_the_previous_results() {
    let dir = common::tempdir("storm-results");
    let Some((json, images)) = common::fixture_subset(2, &dir) else {
        return;
    };
    let _ = json;
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for e in std::fs::read_dir(&images).unwrap().flatten().take(3) {
        std::fs::copy(e.path(), photos.join(e.file_name())).unwrap();
    }
    let out_dir = dir.join("out");
    let infer = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_deepmark"));
        c.current_dir(common::root());
        c.args(["infer", "--threshold", "0"])
            .arg(&photos)
            .arg("--out")
            .arg(&out_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let out = infer().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = out_dir.join("results_keypoints.json");
    let previous = std::fs::read(&results).unwrap();
    assert!(
        previous.len() > 64 << 10,
        "results larger than the limit below"
    );

    // Full disk: 64 KiB per file.
    let out = with_file_limit(&infer(), 64).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("File too large") && !err.contains("panicked"),
        "{err}"
    );
    assert!(
        err.contains("results_") && !err.contains(".tmp"),
        "names the results file, not its temporary: {err}"
    );
    assert_eq!(
        std::fs::read(&results).unwrap(),
        previous,
        "previous results intact"
    );

    // A read-only folder (where permissions bind: root bypasses them, as on many CI machines).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = out_dir.join("probe");
    if std::fs::write(&probe, b"x").is_ok() {
        let _ = std::fs::remove_file(&probe);
        eprintln!("read-only folder not checked: this user writes through permissions (root)");
    } else {
        let out = infer().output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("ermission denied") && !err.contains("panicked"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&results).unwrap(),
            previous,
            "previous results intact"
        );
    }
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}
