//! The training loop: Burn autodiff on any backend, Adam, a step learning-rate schedule,
//! atomic per-epoch checkpoints with optimizer state, resume, per-epoch metrics.
//!
//! Run directory layout:
//! - `train.json`: the full [`TrainConfig`] (the model config is in it, and beside the weights);
//! - `model.bpk` + `model.json`: the latest weights and their model config (what `infer` and
//!   `eval` take with `--weights`);
//! - `checkpoint/epoch-NNNN.bpk`, `checkpoint/epoch-NNNN.optim.bpk`, `checkpoint/state.json`:
//!   resume point. `state.json` is written last (atomically), so a run killed at any moment
//!   resumes from the last complete epoch;
//! - `metrics.csv`: one row per epoch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::data::dataloader::DataLoaderBuilder;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use super::loss::{LossParts, LossWeights, total_loss};
use crate::checkpoint::{self, write_atomic};
use crate::data::augment::AugmentConfig;
use crate::data::dataset::{Df2Dataset, SampleConfig, TrainBatcher};
use crate::data::grouping::Grouping;
use crate::model::heads::HeadSet;
use crate::model::{CenterNet, CenterNetConfig};
use crate::scheme::Scheme;

/// Everything a run needs; saved as `train.json` in the run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: CenterNetConfig,
    pub scheme: Scheme,
    /// COCO-style DeepFashion2 JSON and its image folder.
    pub data: PathBuf,
    pub images: PathBuf,
    pub input_size: usize,
    pub batch: usize,
    pub epochs: usize,
    /// Learning rate at the start (already scaled for the batch).
    pub lr: f64,
    /// `(epoch, multiplier)`: from that epoch on the rate is `lr · multiplier`.
    pub lr_steps: Vec<(usize, f64)>,
    pub loss: LossWeights,
    /// Random scale/shift, flip and colour augmentation (off: plain resize, for overfitting).
    pub augment: bool,
    pub seed: u64,
    /// Data-loading threads.
    pub workers: usize,
    pub max_objs: usize,
    /// Weights the run started from, if any.
    pub init: Option<PathBuf>,
    /// Validation during training (AP columns of metrics.csv).
    #[serde(default)]
    pub val: Option<Validation>,
}

/// Evaluate on a validation set every `every` epochs (and after the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// COCO-style DeepFashion2 JSON and its image folder.
    pub data: PathBuf,
    pub images: PathBuf,
    pub every: usize,
}

/// A validation set read once per run.
struct ValidationData<'a> {
    spec: &'a Validation,
    samples: Vec<crate::data::deepfashion2::Sample>,
    gt: crate::eval::coco::GroundTruth,
}

impl<'a> ValidationData<'a> {
    fn load(spec: &'a Validation) -> Result<Self> {
        Ok(ValidationData {
            spec,
            samples: crate::data::deepfashion2::load_coco(&spec.data, false)?.0,
            gt: crate::eval::coco::GroundTruth::load(&spec.data)?,
        })
    }

    /// `(AP_box, AP_pt)` of the current weights (plain inference copy of the model, default
    /// post-processing, at the training input size).
    fn evaluate(
        &self,
        model: &CenterNet,
        cfg: &TrainConfig,
        device: &Device,
    ) -> Result<(f64, f64)> {
        let mut det =
            crate::infer::Detector::new(model.valid(), cfg.model.clone(), device.clone())?;
        det.options.input_size = cfg.input_size;
        det.options.threshold = 0.01;
        let res = crate::eval::run::predict_dataset(
            &det,
            &self.samples,
            &self.spec.images,
            &mut |_, _| {},
        )?;
        crate::eval::run::headline_ap(&self.gt, &res)
    }
}

/// CenterNet's base rate: 1.25e-4 for a batch of 32, scaled linearly.
pub fn scaled_lr(batch: usize) -> f64 {
    1.25e-4 * batch as f64 / 32.0
}

impl TrainConfig {
    /// Learning rate during `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let mult = self
            .lr_steps
            .iter()
            .filter(|(e, _)| epoch >= *e)
            .map(|&(_, m)| m)
            .next_back()
            .unwrap_or(1.0);
        self.lr * mult
    }
}

/// Parses `65:0.4,85:0.04` (epoch:multiplier, epochs increasing).
pub fn parse_lr_steps(s: &str) -> Result<Vec<(usize, f64)>> {
    let mut out: Vec<(usize, f64)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (e, m) = part
            .split_once(':')
            .with_context(|| format!("lr step `{part}` is not epoch:multiplier"))?;
        let e: usize = e
            .trim()
            .parse()
            .with_context(|| format!("bad epoch in `{part}`"))?;
        let m: f64 = m
            .trim()
            .parse()
            .with_context(|| format!("bad multiplier in `{part}`"))?;
        if out.last().is_some_and(|&(p, _)| p >= e) {
            bail!("lr step epochs must increase: `{s}`");
        }
        out.push((e, m));
    }
    Ok(out)
}

/// Resume point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed epochs.
    pub epoch: usize,
    /// Optimisation steps done.
    pub step: usize,
    pub weights: String,
    pub optim: String,
}

/// What the loop reports.
#[derive(Debug, Clone)]
pub enum Event {
    Start {
        first_epoch: usize,
        epochs: usize,
        steps_per_epoch: usize,
        images: usize,
    },
    Step {
        epoch: usize,
        step_in_epoch: usize,
        steps_per_epoch: usize,
        parts: LossParts,
        images_per_s: f64,
    },
    Epoch {
        epoch: usize,
        mean: LossParts,
        lr: f64,
        secs: f64,
        /// Validation `(AP_box, AP_pt)` when evaluated after this epoch.
        val_ap: Option<(f64, f64)>,
    },
}

/// One metrics row.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRow {
    pub epoch: usize,
    pub lr: f64,
    pub secs: f64,
    pub loss: LossParts,
    pub steps: usize,
    /// Validation `(AP_box, AP_pt)` when evaluated after this epoch.
    pub val_ap: Option<(f64, f64)>,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub weights: PathBuf,
    pub rows: Vec<EpochRow>,
    pub steps: usize,
}

const CSV_HEADER: &str =
    "epoch,step,lr,time_s,total,hm,wh,reg,hps,hm_hp,hp_offset,val_ap_box,val_ap_pt";

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

/// Reads `metrics.csv` rows (used on resume).
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRow>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(_) => return Ok(Vec::new()),
    };
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let v: Vec<f64> = cols
            .iter()
            .take(11)
            .map(|x| x.parse::<f64>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("{} line {}: not numbers", path.display(), i + 1))?;
        let val_ap = match (cols.get(11), cols.get(12)) {
            (Some(b), Some(k)) if !b.is_empty() && !k.is_empty() => {
                Some((b.parse::<f64>()?, k.parse::<f64>()?))
            }
            _ => None,
        };
        if v.len() < 11 {
            bail!("{} line {}: expected 11 columns", path.display(), i + 1);
        }
        rows.push(EpochRow {
            epoch: v[0] as usize - 1,
            steps: v[1] as usize,
            lr: v[2],
            secs: v[3],
            loss: LossParts::from_values(std::array::from_fn(|k| v[4 + k] as f32)),
            val_ap,
        });
    }
    Ok(rows)
}

fn write_metrics(path: &Path, rows: &[EpochRow]) -> Result<()> {
    let mut text = String::from(CSV_HEADER);
    text.push('\n');
    for r in rows {
        text.push_str(&csv_line(r));
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// Builds the model: random init, or from `init` weights (heads re-initialised and reported
/// when their layout differs).
pub fn build_model(cfg: &TrainConfig, device: &Device) -> Result<(CenterNet, Vec<String>)> {
    let Some(init) = &cfg.init else {
        return Ok((cfg.model.init(device), Vec::new()));
    };
    let (mut model, init_cfg) = checkpoint::load(init, device)?;
    if init_cfg.backbone != cfg.model.backbone {
        bail!(
            "--init {}: its backbone differs from the requested architecture",
            init.display()
        );
    }
    let mut notes = Vec::new();
    if init_cfg.layout != cfg.model.layout || init_cfg.head_conv != cfg.model.head_conv {
        let in_ch = cfg.model.backbone.out_channels();
        model.heads = (0..cfg.model.backbone.num_stacks())
            .map(|_| HeadSet::new(cfg.model.layout, in_ch, cfg.model.head_conv, device))
            .collect();
        notes.push(format!(
            "re-initialised all heads: the init weights have {} classes / {} landmark channels, the run {} / {}",
            init_cfg.layout.num_classes,
            init_cfg.layout.num_landmarks,
            cfg.model.layout.num_classes,
            cfg.model.layout.num_landmarks
        ));
    }
    Ok((model, notes))
}

fn ckpt_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// Trains (or resumes) into `out`. `device` is the compute device (autodiff is added here).
pub fn train(
    cfg: &TrainConfig,
    out: &Path,
    device: &Device,
    resume: bool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<TrainSummary> {
    if cfg.batch == 0 || cfg.epochs == 0 {
        bail!("batch and epochs must be positive");
    }
    cfg.model
        .backbone
        .check_input_size(cfg.input_size)
        .map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(ckpt_dir(out))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let ad = device.clone().autodiff();
    let state_path = ckpt_dir(out).join("state.json");
    let train_json = out.join("train.json");
    let mut optim = AdamConfig::new().init();
    let (mut model, state) = if resume {
        let text = std::fs::read_to_string(&state_path).with_context(|| {
            format!(
                "--resume: no checkpoint in {} (missing {})",
                out.display(),
                state_path.display()
            )
        })?;
        let state: TrainState = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid train state", state_path.display()))?;
        let saved: TrainConfig = serde_json::from_str(
            &std::fs::read_to_string(&train_json)
                .with_context(|| format!("cannot read {}", train_json.display()))?,
        )
        .with_context(|| format!("{} is not a valid train config", train_json.display()))?;
        if saved.model != cfg.model || saved.scheme != cfg.scheme {
            bail!(
                "--resume: the run in {} has a different model; use the same --arch/--scheme",
                out.display()
            );
        }
        let (model, _) = checkpoint::load(&ckpt_dir(out).join(&state.weights), &ad)?;
        let bytes = std::fs::read(ckpt_dir(out).join(&state.optim))
            .with_context(|| format!("cannot read optimizer state {}", state.optim))?;
        optim = optim
            .from_bytes(Bytes::from_bytes_vec(bytes))
            .map_err(|e| anyhow::anyhow!("optimizer state {}: {e:?}", state.optim))?;
        (model, state)
    } else {
        let (model, notes) = build_model(cfg, &ad)?;
        for n in notes {
            println!("{n}");
        }
        write_atomic(&train_json, serde_json::to_string_pretty(cfg)?.as_bytes())?;
        (
            model,
            TrainState {
                epoch: 0,
                step: 0,
                weights: String::new(),
                optim: String::new(),
            },
        )
    };
    let grouping = Grouping::for_scheme(cfg.scheme)
        .with_context(|| format!("scheme {} is not a DeepFashion2 grouping", cfg.scheme))?;
    let sample_cfg = SampleConfig {
        augment: AugmentConfig {
            input_size: cfg.input_size,
            random_crop: cfg.augment,
            flip: if cfg.augment { 0.5 } else { 0.0 },
            color: cfg.augment,
        },
        grouping,
        num_classes: cfg.model.layout.num_classes,
        max_objs: cfg.max_objs,
        seed: cfg.seed,
    };
    let (dataset, report) = Df2Dataset::open(&cfg.data, &cfg.images, sample_cfg, true)?;
    if !report.skipped.is_empty() {
        println!("{report}");
    }
    let n = dataset.samples().len();
    if n == 0 {
        bail!("{} has no usable training images", cfg.data.display());
    }
    let dataset = Arc::new(dataset);
    let steps_per_epoch = n.div_ceil(cfg.batch);
    // Read (and check) the validation set before the first step, not at every evaluation.
    let validation = cfg.val.as_ref().map(ValidationData::load).transpose()?;
    let metrics_path = out.join("metrics.csv");
    let mut rows: Vec<EpochRow> = read_metrics(&metrics_path)?;
    rows.retain(|r| r.epoch < state.epoch);
    let mut step = state.step;
    on_event(&Event::Start {
        first_epoch: state.epoch,
        epochs: cfg.epochs,
        steps_per_epoch,
        images: n,
    });
    for epoch in state.epoch..cfg.epochs {
        let t_epoch = Instant::now();
        let lr = cfg.lr_at(epoch);
        dataset.set_epoch(epoch as u64);
        let loader = DataLoaderBuilder::new(TrainBatcher)
            .batch_size(cfg.batch)
            .shuffle(cfg.seed.wrapping_add(epoch as u64))
            .num_workers(cfg.workers.max(1))
            .set_device(ad.clone())
            .build(dataset.clone());
        let mut sum = LossParts::default();
        let mut count = 0usize;
        let mut t_step = Instant::now();
        for (i, batch) in loader.iter().enumerate() {
            let batch = batch.map_err(|e| anyhow::anyhow!("loading a training batch: {e}"))?;
            let images = batch.input.dims()[0];
            let stacks = model.forward_stacks(batch.input.clone());
            let (loss, parts) = total_loss(&stacks, &batch, &cfg.loss);
            if !parts.is_finite() {
                bail!(
                    "non-finite loss at epoch {} step {} ({parts:?}); stopping. The last good checkpoint ({} completed \
                     epochs) is intact in {}; lower the learning rate and --resume",
                    epoch + 1,
                    step + 1,
                    epoch,
                    ckpt_dir(out).display()
                );
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            step += 1;
            sum.add(&parts);
            count += 1;
            let secs = t_step.elapsed().as_secs_f64();
            t_step = Instant::now();
            on_event(&Event::Step {
                epoch,
                step_in_epoch: i + 1,
                steps_per_epoch,
                parts,
                images_per_s: images as f64 / secs.max(1e-9),
            });
        }
        let mean = sum.scaled(1.0 / count.max(1) as f32);
        // Checkpoint weights and optimizer state first.
        let weights = format!("epoch-{:04}.bpk", epoch + 1);
        let optim_name = format!("epoch-{:04}.optim.bpk", epoch + 1);
        checkpoint::save(&model, &cfg.model, &ckpt_dir(out).join(&weights))?;
        let bytes = optim
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("cannot serialise the optimizer state: {e:?}"))?;
        write_atomic(&ckpt_dir(out).join(&optim_name), &bytes)?;
        // The run's weights and metrics next; the state file last, so a run killed at any
        // point resumes from a complete epoch (metrics rows past it are dropped on resume).
        checkpoint::save(&model, &cfg.model, &out.join("model.bpk"))?;
        let opts = crate::infer::DetectorOptions {
            input_size: cfg.input_size,
            ..Default::default()
        };
        write_atomic(
            &crate::infer::detector::options_path(&out.join("model.bpk")),
            serde_json::to_string_pretty(&opts)?.as_bytes(),
        )?;
        let secs = t_epoch.elapsed().as_secs_f64();
        let val_ap = match &validation {
            Some(v)
                if v.spec.every > 0
                    && ((epoch + 1) % v.spec.every == 0 || epoch + 1 == cfg.epochs) =>
            {
                Some(v.evaluate(&model, cfg, device)?)
            }
            _ => None,
        };
        rows.push(EpochRow {
            epoch,
            lr,
            secs,
            loss: mean,
            steps: step,
            val_ap,
        });
        write_metrics(&metrics_path, &rows)?;
        let new_state = TrainState {
            epoch: epoch + 1,
            step,
            weights: weights.clone(),
            optim: optim_name.clone(),
        };
        let old = std::fs::read_to_string(&state_path)
            .ok()
            .and_then(|t| serde_json::from_str::<TrainState>(&t).ok());
        write_atomic(
            &state_path,
            serde_json::to_string_pretty(&new_state)?.as_bytes(),
        )?;
        if let Some(old) = old.filter(|o| o.weights != weights) {
            for f in [
                old.weights.clone(),
                old.optim,
                checkpoint::config_path(Path::new(&old.weights))
                    .to_string_lossy()
                    .into_owned(),
            ] {
                let _ = std::fs::remove_file(ckpt_dir(out).join(f));
            }
        }
        on_event(&Event::Epoch {
            epoch,
            mean,
            lr,
            secs,
            val_ap,
        });
    }
    Ok(TrainSummary {
        weights: out.join("model.bpk"),
        rows,
        steps: step,
    })
}
