//! The run directory: what a training run leaves on disk and how it is read back.
//!
//! - `train.json`: the [`TrainConfig`];
//! - `model.bpk` + `model.json` + `model.infer.json`: the latest weights, their model config and
//!   inference defaults (what `infer`/`eval --weights` take);
//! - `checkpoint/epoch-NNNN.bpk` (+ `.json`, `.check.json`), `checkpoint/epoch-NNNN.optim.bpk`
//!   and `checkpoint/epoch-NNNN.state.json`: an epoch's weights, optimizer state and resume
//!   point, with checksums of both files. `checkpoint/state.json` names the newest and is
//!   written last (atomically), so a run killed at any moment resumes from the last complete
//!   epoch. The two newest epochs are kept ([`KEEP_EPOCHS`]): when the newest is truncated or
//!   corrupt, `--resume` falls back to the one before and says so;
//! - `metrics.csv`: one row per epoch (loss terms, learning rate, time, validation AP);
//! - `run.lock`: locked (an advisory lock of the operating system, released when the process
//!   ends, however it ends) by the process training into the folder, whose id it holds.
//!
//! A folder holds one run: a new run into a folder holding another is refused unless it is
//! started with [`RunStart::Replace`], and `--resume` continues the saved `train.json`.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use super::amp::LossScale;
use super::config::TrainConfig;
use super::loss::LossParts;
use crate::checkpoint;
use crate::error::{Error, Result};
use crate::infer::DetectorOptions;
use crate::infer::detector::options_path;
use crate::io::{Checksum, create_dir_all, read_json, read_to_string, write_atomic, write_json};
use crate::model::CenterNet;

/// Resume point (`checkpoint/state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed epochs.
    pub epoch: usize,
    /// Optimisation steps done.
    pub step: usize,
    /// The epoch's weights file, relative to `checkpoint/`.
    pub weights: String,
    /// The epoch's optimizer state file, relative to `checkpoint/`.
    pub optim: String,
    /// Checksum of the optimizer file (weights carry theirs beside them).
    #[serde(default)]
    pub optim_check: Option<Checksum>,
    /// f16's loss scale after this epoch (absent for the other types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScale>,
    /// The best validation so far (absent before the first validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<BestEpoch>,
}

/// The best validated epoch of a run (`model-best.bpk`'s) and the validations since it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    /// The epoch, 1-based.
    pub epoch: usize,
    /// Its AP by the run's [`Selection`](super::config::Selection) metric.
    pub ap: f64,
    /// Validations after it without a better value.
    pub stale: usize,
}

/// How a run starts in its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunStart {
    /// A new run; refused when the folder holds another run.
    New,
    /// Continue the folder's run from its newest intact checkpoint. The configuration must be
    /// the saved one except where a resumed run may differ ([`TrainConfig::resume_conflicts`]).
    Resume,
    /// A new run replacing the folder's run: its files (`train.json`, checkpoints, weights,
    /// metrics, evaluation) are removed first. Files the runs do not write are left alone.
    Replace,
}

/// `true` resumes, `false` starts a new run.
impl From<bool> for RunStart {
    fn from(resume: bool) -> Self {
        if resume {
            RunStart::Resume
        } else {
            RunStart::New
        }
    }
}

/// The lock of a run folder, held while a process trains into it (released when dropped or
/// when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

/// Epoch checkpoints kept in `checkpoint/` (the newest and a fallback).
pub const KEEP_EPOCHS: usize = 2;

/// One metrics row.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRow {
    /// The epoch, 1-based.
    pub epoch: usize,
    /// Its learning rate.
    pub lr: f64,
    /// Its wall time in seconds.
    pub secs: f64,
    /// The mean of its steps' losses.
    pub loss: LossParts,
    /// Its optimisation steps.
    pub steps: usize,
    /// Validation `(AP_box, AP_pt)` when evaluated after this epoch.
    pub val_ap: Option<(f64, f64)>,
}

/// `epoch,step,lr,time_s,total,<heads…>,val_ap_box,val_ap_pt`.
pub fn csv_header() -> String {
    format!(
        "epoch,step,lr,time_s,{},val_ap_box,val_ap_pt",
        LossParts::NAMES.join(",")
    )
}

const LEADING: usize = 4;
const NUMERIC: usize = LEADING + LossParts::NAMES.len();

fn csv_line(r: &EpochRow) -> String {
    let l = r.loss.values().map(|v| format!("{v:.6}")).join(",");
    let ap = r
        .val_ap
        .map_or(",".to_string(), |(b, k)| format!("{b:.6},{k:.6}"));
    format!(
        "{},{},{:e},{:.2},{l},{ap}",
        r.epoch + 1,
        r.steps,
        r.lr,
        r.secs
    )
}

/// Reads `metrics.csv` rows (none when the file does not exist); a header that is not
/// [`csv_header`]'s or an unreadable line is an error naming the file and the line.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRow>> {
    match parse_metrics(path)? {
        (rows, None) => Ok(rows),
        (_, Some(e)) => Err(e),
    }
}

/// The rows of `metrics.csv` up to its first problem, and the problem.
fn parse_metrics(path: &Path) -> Result<(Vec<EpochRow>, Option<Error>)> {
    if !path.exists() {
        return Ok((Vec::new(), None));
    }
    let text = read_to_string(path)?;
    let mut rows = Vec::new();
    let mut lines = text.lines();
    if lines.next().is_some_and(|h| h != csv_header()) {
        let e = Error::file(path, "line 1: not the header of a deepmark metrics file");
        return Ok((rows, Some(e)));
    }
    for (i, line) in lines.enumerate() {
        match parse_row(line) {
            Ok(r) => rows.push(r),
            Err(what) => {
                let e = Error::file(path, format!("line {}: {what}", i + 2));
                return Ok((rows, Some(e)));
            }
        }
    }
    Ok((rows, None))
}

fn parse_row(line: &str) -> std::result::Result<EpochRow, String> {
    let cols: Vec<&str> = line.split(',').collect();
    if cols.len() < NUMERIC {
        return Err(format!("expected at least {NUMERIC} columns"));
    }
    let v: Vec<f64> = cols[..NUMERIC]
        .iter()
        .map(|x| x.parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| "not numbers".to_string())?;
    let val_ap = match (cols.get(NUMERIC), cols.get(NUMERIC + 1)) {
        (Some(b), Some(k)) if !b.is_empty() && !k.is_empty() => Some((
            b.parse::<f64>()
                .map_err(|_| "val_ap_box is not a number".to_string())?,
            k.parse::<f64>()
                .map_err(|_| "val_ap_pt is not a number".to_string())?,
        )),
        _ => None,
    };
    Ok(EpochRow {
        epoch: (v[0] as usize).saturating_sub(1),
        steps: v[1] as usize,
        lr: v[2],
        secs: v[3],
        loss: LossParts::from_values(std::array::from_fn(|k| v[LEADING + k] as f32)),
        val_ap,
    })
}

/// A run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run folder `root` (nothing is created).
    pub fn new(root: &Path) -> Self {
        RunDir {
            root: root.to_path_buf(),
        }
    }

    /// The run folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `checkpoint/`: the epoch checkpoints and `state.json`.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.root.join("checkpoint")
    }

    /// `checkpoint/state.json`, the resume point.
    pub fn state_path(&self) -> PathBuf {
        self.checkpoint_dir().join("state.json")
    }

    /// `train.json`, the run's configuration.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("train.json")
    }

    /// `metrics.csv`, one row per epoch.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }

    /// The latest weights (`model.bpk`).
    pub fn weights_path(&self) -> PathBuf {
        self.root.join("model.bpk")
    }

    /// The best validated weights (`model-best.bpk`; see [`BestEpoch`]).
    pub fn best_weights_path(&self) -> PathBuf {
        self.root.join("model-best.bpk")
    }

    /// Writes the best validated weights with their config and inference defaults.
    pub fn save_best(&self, model: &CenterNet, cfg: &TrainConfig) -> Result<()> {
        save_servable(model, cfg, &self.best_weights_path())
    }

    /// The files a run writes in the folder (its lock aside), existing or not, and the folders
    /// it fills.
    fn run_files(&self) -> (Vec<PathBuf>, [PathBuf; 2]) {
        let mut files = vec![
            self.config_path(),
            self.metrics_path(),
            self.metrics_path().with_extension("csv.bad"),
            self.root.join("curves.png"),
        ];
        for weights in [self.weights_path(), self.best_weights_path()] {
            files.extend([
                checkpoint::config_path(&weights),
                checkpoint::check_path(&weights),
                options_path(&weights),
                weights,
            ]);
        }
        (files, [self.checkpoint_dir(), self.root.join("eval")])
    }

    /// Creates the folder and `checkpoint/`.
    pub fn create(&self) -> Result<()> {
        create_dir_all(&self.checkpoint_dir())
    }

    /// `run.lock`, held by the process training into the folder.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("run.lock")
    }

    /// Takes the folder's lock (creating the folder), or fails at once naming the process that
    /// holds it. The lock is the operating system's (`flock`/`LockFileEx`): a killed process
    /// leaves no stale lock behind.
    pub fn lock(&self) -> Result<RunLock> {
        use std::io::{Read, Seek, Write};
        create_dir_all(&self.root)?;
        let path = self.lock_path();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Training(format!(
                    "another process{} is training into {} (it holds {}); wait for it to end or \
                     choose another folder",
                    if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (id {holder})")
                    },
                    self.root.display(),
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        let id = std::process::id().to_string();
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(id.as_bytes()))
            .map_err(|e| Error::io("write", &path, e))?;
        Ok(RunLock { _file: file })
    }

    /// Whether `path` is one of the files a run writes into this folder (`train.json`,
    /// `metrics.csv`, `curves.png`, `run.lock`, the weights and their companions, anything under
    /// `checkpoint/` or `eval/`), existing or not.
    pub fn owns(&self, path: &Path) -> bool {
        let p = crate::io::resolved(path);
        let (mut files, dirs) = self.run_files();
        files.push(self.lock_path());
        files.iter().any(|f| crate::io::resolved(f) == p)
            || dirs.iter().any(|d| p.starts_with(crate::io::resolved(d)))
    }

    /// Whether the folder holds a run: its `train.json`, a checkpoint, weights or metrics.
    pub fn holds_run(&self) -> bool {
        self.config_path().exists()
            || self.metrics_path().exists()
            || self.weights_path().exists()
            || std::fs::read_dir(self.checkpoint_dir())
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
    }

    /// Removes the files a run writes (`train.json`, `metrics.csv`, `curves.png`, the weights
    /// and their companions, `checkpoint/`, `eval/`); anything else in the folder stays.
    pub fn remove_run(&self) -> Result<()> {
        let (files, dirs) = self.run_files();
        for f in files {
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &f, e)),
            }
        }
        for dir in dirs {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &dir, e)),
            }
        }
        Ok(())
    }

    /// The state of the last complete epoch; the error says how to start instead.
    pub fn read_state(&self) -> Result<TrainState> {
        let p = self.state_path();
        if !p.is_file() {
            return Err(Error::Training(format!(
                "cannot resume: no checkpoint in {} (missing {}); start a fresh run instead",
                self.root.display(),
                p.display()
            )));
        }
        read_json(&p, "train state")
    }

    /// Reads `train.json`.
    pub fn read_config(&self) -> Result<TrainConfig> {
        read_json(&self.config_path(), "train config")
    }

    /// Writes `train.json` (atomically).
    pub fn write_config(&self, cfg: &TrainConfig) -> Result<()> {
        write_json(&self.config_path(), cfg)
    }

    /// Reads `metrics.csv`.
    pub fn read_metrics(&self) -> Result<Vec<EpochRow>> {
        read_metrics(&self.metrics_path())
    }

    /// The `metrics.csv` rows a resumed run continues. A damaged file (another header, an
    /// unreadable line) neither stops the resume nor is lost: the rows before the damage are
    /// kept, the file is moved to `metrics.csv.bad`, and the returned note says so.
    pub fn recover_metrics(&self) -> Result<(Vec<EpochRow>, Option<String>)> {
        let path = self.metrics_path();
        let (rows, problem) = parse_metrics(&path)?;
        let Some(problem) = problem else {
            return Ok((rows, None));
        };
        let aside = path.with_extension("csv.bad");
        std::fs::rename(&path, &aside).map_err(|e| Error::io("move", &path, e))?;
        let note = format!(
            "{problem}; kept its {} row(s) before that and moved the file to {}",
            rows.len(),
            aside.display()
        );
        Ok((rows, Some(note)))
    }

    /// Writes `metrics.csv` (atomically).
    pub fn write_metrics(&self, rows: &[EpochRow]) -> Result<()> {
        let mut text = csv_header();
        text.push('\n');
        for r in rows {
            text.push_str(&csv_line(r));
            text.push('\n');
        }
        write_atomic(&self.metrics_path(), text.as_bytes())
    }

    /// The model and optimizer of a resume point.
    pub fn load(
        &self,
        state: &TrainState,
        optim: ModuleOptimizer,
        device: &Device,
    ) -> Result<(CenterNet, ModuleOptimizer)> {
        let dir = self.checkpoint_dir();
        let (model, _) = checkpoint::load(&dir.join(&state.weights), device)?;
        let path = dir.join(&state.optim);
        let bytes =
            std::fs::read(&path).map_err(|e| Error::io("read optimizer state", &path, e))?;
        if let Some(sum) = &state.optim_check {
            sum.verify_bytes(&path, &bytes)?;
        }
        let optim = optim
            .from_bytes(Bytes::from_bytes_vec(bytes))
            .map_err(|e| Error::file(&path, format!("not a valid optimizer state: {e:?}")))?;
        Ok((model, optim))
    }

    /// Writes the checkpoint of a finished epoch (weights, optimizer state with its checksum,
    /// the epoch's state file) and the run's latest weights with their inference defaults.
    /// Nothing points at them until [`commit`](Self::commit). Returns the completed state.
    pub fn save_epoch(
        &self,
        state: &TrainState,
        model: &CenterNet,
        optim: &ModuleOptimizer,
        cfg: &TrainConfig,
    ) -> Result<TrainState> {
        // BatchNorm's last update is still pending: fold it in, or the checkpoint would lag
        // training by one step (and a resumed run would drift from an uninterrupted one).
        crate::model::sync::SyncRunningStats::sync_running_stats(model);
        let dir = self.checkpoint_dir();
        checkpoint::save(model, &cfg.model, &dir.join(&state.weights))?;
        let bytes = optim
            .into_bytes()
            .map_err(|e| Error::Training(format!("cannot serialise the optimizer state: {e:?}")))?;
        write_atomic(&dir.join(&state.optim), &bytes)?;
        let state = TrainState {
            optim_check: Some(Checksum::of(&bytes)),
            ..state.clone()
        };
        write_json(&dir.join(state_file(state.epoch)), &state)?;
        save_servable(model, cfg, &self.weights_path())?;
        Ok(state)
    }

    /// Makes `state` the resume point (written last, atomically), then removes the files of
    /// the epochs older than the [`KEEP_EPOCHS`] newest.
    pub fn commit(&self, state: &TrainState) -> Result<()> {
        write_json(&self.state_path(), state)?;
        let epochs = self.saved_epochs();
        if epochs.len() > KEEP_EPOCHS {
            let dir = self.checkpoint_dir();
            for &epoch in &epochs[..epochs.len() - KEEP_EPOCHS] {
                let names = epoch_state(epoch, 0);
                let weights = dir.join(&names.weights);
                for f in [
                    checkpoint::check_path(&weights),
                    checkpoint::config_path(&weights),
                    dir.join(&names.optim),
                    weights,
                    dir.join(state_file(epoch)),
                ] {
                    let _ = std::fs::remove_file(f);
                }
            }
        }
        Ok(())
    }

    /// Removes the temporary files of atomic writes that a killed run left in the run and
    /// checkpoint folders ([`crate::io::is_temporary_name`]). Returns how many were removed.
    pub fn remove_stale_temporaries(&self) -> usize {
        let mut removed = 0;
        for dir in [self.root.clone(), self.checkpoint_dir()] {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if crate::io::is_temporary_name(&name) && std::fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Epochs (1-based) that have a state file in `checkpoint/`, oldest first.
    fn saved_epochs(&self) -> Vec<usize> {
        let mut v: Vec<usize> = std::fs::read_dir(self.checkpoint_dir())
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("epoch-")?
                    .strip_suffix(".state.json")?
                    .parse()
                    .ok()
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// The model, optimizer and state of the newest intact committed epoch. A checkpoint
    /// whose files are missing, truncated or corrupt is passed over for the one before; each
    /// one passed over is described in the returned notes.
    pub fn resume(
        &self,
        optim: impl Fn() -> ModuleOptimizer,
        device: &Device,
    ) -> Result<(CenterNet, ModuleOptimizer, TrainState, Vec<String>)> {
        let mut notes = Vec::new();
        let removed = self.remove_stale_temporaries();
        if removed > 0 {
            notes.push(format!(
                "removed {removed} unfinished temporary file(s) of an interrupted write"
            ));
        }
        let saved = self.saved_epochs();
        // The commit point: epochs past it were written but never committed.
        let committed = match self.read_state() {
            Ok(s) => Some(s.epoch),
            Err(e) if saved.is_empty() => return Err(e),
            Err(e) => {
                notes.push(format!("{e}; using the epoch state files instead"));
                None
            }
        };
        let dir = self.checkpoint_dir();
        let candidates = saved
            .into_iter()
            .rev()
            .filter(|&e| committed.is_none_or(|c| e <= c));
        for epoch in candidates {
            let attempt = read_json::<TrainState>(&dir.join(state_file(epoch)), "train state")
                .and_then(|state| {
                    let (model, optim) = self.load(&state, optim(), device)?;
                    Ok((model, optim, state))
                });
            match attempt {
                Ok((model, optim, state)) => {
                    if !notes.is_empty() {
                        notes.push(format!("resuming from epoch {epoch} instead"));
                    }
                    return Ok((model, optim, state, notes));
                }
                Err(e) => notes.push(format!("the checkpoint of epoch {epoch} is unusable: {e}")),
            }
        }
        Err(Error::Training(format!(
            "cannot resume: no intact checkpoint in {}:\n{}",
            self.checkpoint_dir().display(),
            notes.join("\n")
        )))
    }
}

/// Weights others can serve: the network with its config, checksums and inference defaults
/// (the training input size).
fn save_servable(model: &CenterNet, cfg: &TrainConfig, weights: &Path) -> Result<()> {
    checkpoint::save(model, &cfg.model, weights)?;
    let opts = DetectorOptions {
        input_size: cfg.input_size(),
        ..Default::default()
    };
    write_json(&options_path(weights), &opts)
}

/// The state file of epoch `epoch` (1-based).
fn state_file(epoch: usize) -> String {
    format!("epoch-{epoch:04}.state.json")
}

/// The file names of epoch `epoch`'s (1-based) checkpoint.
pub fn epoch_state(epoch: usize, step: usize) -> TrainState {
    TrainState {
        epoch,
        step,
        weights: format!("epoch-{epoch:04}.bpk"),
        optim: format!("epoch-{epoch:04}.optim.bpk"),
        optim_check: None,
        loss_scale: None,
        best: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_round_trip_through_the_csv() {
        let dir = std::env::temp_dir().join(format!("deepmark-rundir-{}", std::process::id()));
        let run = RunDir::new(&dir);
        let rows = vec![
            EpochRow {
                epoch: 0,
                lr: 1e-3,
                secs: 1.5,
                loss: LossParts::from_values([7.0, 1.0, 2.0, 0.5, 0.25, 3.0, 0.125]),
                steps: 4,
                val_ap: None,
            },
            EpochRow {
                epoch: 1,
                lr: 1e-4,
                secs: 2.25,
                loss: LossParts::from_values([6.0, 1.0, 1.0, 0.5, 0.25, 3.0, 0.25]),
                steps: 8,
                val_ap: Some((0.5, 0.25)),
            },
        ];
        run.write_metrics(&rows).unwrap();
        let text = std::fs::read_to_string(run.metrics_path()).unwrap();
        assert!(text.starts_with(
            "epoch,step,lr,time_s,total,hm,wh,reg,hps,hm_hp,hp_offset,val_ap_box,val_ap_pt\n"
        ));
        assert_eq!(run.read_metrics().unwrap(), rows);
        std::fs::write(run.metrics_path(), format!("{}\n1,2,x\n", csv_header())).unwrap();
        let e = run.read_metrics().unwrap_err().to_string();
        assert!(e.contains("metrics.csv") && e.contains("line 2"), "{e}");
        std::fs::write(run.metrics_path(), "header\n").unwrap();
        let e = run.read_metrics().unwrap_err().to_string();
        assert!(e.contains("line 1: not the header"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
