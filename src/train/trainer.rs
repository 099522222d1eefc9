//! The training loop: Burn autodiff on any backend, Adam with a step schedule, per-epoch
//! atomic checkpoints with optimizer state ([`RunDir`]), resume, validation AP, events for a
//! progress display. [`train`] is a sequence of small steps: start or resume, open the data,
//! then per epoch run the steps, validate, checkpoint and commit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use super::amp::{self, AmpSteps};
use super::config::{TrainConfig, Validation};
use super::loss::{LossParts, total_loss};
use super::parallel::{ShardPool, fold_running_stats};
use super::run_dir::{BestEpoch, EpochRow, RunDir, RunStart, TrainState, epoch_state};
use crate::checkpoint;
use crate::data::dataset::{Df2Dataset, SampleConfig, ShardBatcher, TrainBatcher};
use crate::data::deepfashion2::{Sample, load_coco_in};
use crate::error::{Error, Result};
use crate::eval::EVAL_SCORE_THRESHOLD;
use crate::eval::coco::GroundTruth;
use crate::eval::run::{headline_ap, predict_dataset};
use crate::garment::{Taxonomy, TaxonomyChoice};
use crate::infer::Detector;
use crate::io::Limits;
use crate::model::CenterNet;
use crate::model::heads::HeadSet;

/// What the loop reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// Something the user should know (re-initialised heads, a checkpoint passed over).
    Notice(String),
    /// The loop starts.
    Start {
        /// 0-based epoch it starts at (after a resume: the next one).
        first_epoch: usize,
        /// Epochs in all.
        epochs: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
        /// Training images.
        images: usize,
    },
    /// A step ended.
    Step {
        /// 0-based epoch.
        epoch: usize,
        /// 0-based step within the epoch.
        step_in_epoch: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
        /// The step's loss and its terms.
        parts: LossParts,
        /// Images per second over the step.
        images_per_s: f64,
    },
    /// An epoch ended (its checkpoint written).
    Epoch {
        /// 0-based epoch.
        epoch: usize,
        /// The epoch's mean loss and terms.
        mean: LossParts,
        /// The learning rate of the epoch.
        lr: f64,
        /// The epoch's seconds.
        secs: f64,
        /// Validation `(AP_box, AP_pt)` when evaluated after this epoch.
        val_ap: Option<(f64, f64)>,
    },
}

/// The result of a run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TrainSummary {
    /// The final weights file.
    pub weights: PathBuf,
    /// One row per epoch (`metrics.csv`).
    pub rows: Vec<EpochRow>,
    /// Optimiser steps taken by this process.
    pub steps: usize,
    /// The best validated weights (`model-best.bpk`) and their epoch, when the run validated.
    pub best: Option<(PathBuf, BestEpoch)>,
}

/// A validation set read once per run.
struct ValidationData<'a> {
    spec: &'a Validation,
    limits: Limits,
    samples: Vec<Sample>,
    gt: GroundTruth,
}

impl<'a> ValidationData<'a> {
    fn load(spec: &'a Validation, limits: &Limits, taxonomy: &'static Taxonomy) -> Result<Self> {
        let mut gt = GroundTruth::load(&spec.data, limits)?;
        gt.set_taxonomy(taxonomy);
        Ok(ValidationData {
            spec,
            limits: *limits,
            samples: load_coco_in(&spec.data, &TaxonomyChoice::Given(taxonomy), false, limits)?
                .samples,
            gt,
        })
    }

    fn due(&self, epoch: usize, epochs: usize) -> bool {
        self.spec.every > 0 && ((epoch + 1).is_multiple_of(self.spec.every) || epoch + 1 == epochs)
    }

    /// `(AP_box, AP_pt)` of the current weights (plain inference copy of the model, default
    /// post-processing, at the training input size).
    fn evaluate(
        &self,
        model: &CenterNet,
        cfg: &TrainConfig,
        device: &Device,
    ) -> Result<(f64, f64)> {
        let mut det = Detector::new(model.valid(), cfg.model.clone(), device.clone())?;
        det.options.input_size = cfg.input_size();
        det.options.threshold = EVAL_SCORE_THRESHOLD;
        let res = predict_dataset(
            &det,
            &self.samples,
            &self.spec.images,
            &self.limits,
            &mut |_, _| {},
        )?;
        headline_ap(&self.gt, &res)
    }
}

/// Builds the model: random init, or from `init` weights (heads re-initialised and reported
/// when their layout differs).
pub fn build_model(cfg: &TrainConfig, device: &Device) -> Result<(CenterNet, Vec<String>)> {
    // The initialisation follows the run's seed: two runs of one config start from the same
    // weights (and a killed-and-resumed run ends where an uninterrupted one does).
    device.seed(cfg.seed);
    let Some(init) = &cfg.init else {
        let model = cfg.model.init(device);
        model.initialize();
        return Ok((model, Vec::new()));
    };
    let (mut model, init_cfg) = checkpoint::load(init, device)?;
    if init_cfg.backbone != cfg.model.backbone {
        return Err(Error::file(
            init,
            "these initial weights' backbone differs from the requested architecture",
        ));
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
        model.initialize();
    }
    Ok((model, notes))
}

/// A fresh run: the model (noting re-initialised heads), a new optimizer, `train.json`.
fn start_run(
    run: &RunDir,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<(CenterNet, ModuleOptimizer, TrainState, Vec<String>)> {
    let (model, notes) = build_model(cfg, device)?;
    run.write_config(cfg)?;
    let state = TrainState {
        epoch: 0,
        step: 0,
        weights: String::new(),
        optim: String::new(),
        optim_check: None,
        loss_scale: None,
        best: None,
    };
    Ok((model, cfg.optimizer.adam_config().init(), state, notes))
}

/// The model, optimizer and position of the run's newest intact epoch.
fn resume(
    run: &RunDir,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<(CenterNet, ModuleOptimizer, TrainState, Vec<String>)> {
    if !run.state_path().is_file() {
        // Nothing was ever committed: say so before reading anything else.
        run.read_state()?;
    }
    let saved = run.read_config()?;
    let conflicts = cfg.resume_conflicts(&saved);
    if !conflicts.is_empty() {
        return Err(Error::Training(format!(
            "cannot resume the run in {} with another configuration (a resumed run may change \
             only its epochs, validation, patience, max_unusable and loader threads):\n  {}",
            run.root().display(),
            conflicts.join("\n  ")
        )));
    }
    // The run's configuration now: its epochs and validation as resumed.
    if cfg != &saved {
        run.write_config(cfg)?;
    }
    run.resume(|| cfg.optimizer.adam_config().init(), device)
}

/// The training set, its images' headers checked up front (bad ones skipped and reported).
/// What was skipped, and how much is left, go to `on_event` as notices.
fn open_dataset(cfg: &TrainConfig, on_event: &mut dyn FnMut(&Event)) -> Result<Arc<Df2Dataset>> {
    let sample_cfg = SampleConfig {
        augment: cfg.augment.clone(),
        grouping: cfg.model.grouping()?,
        num_classes: cfg.model.layout.num_classes,
        max_objs: cfg.max_objs,
        seed: cfg.seed,
    };
    let (dataset, report) = Df2Dataset::open_category(
        &cfg.data,
        &cfg.images,
        sample_cfg,
        true,
        &cfg.limits,
        cfg.finetune_category,
    )?;
    if !report.skipped.is_empty() {
        on_event(&Event::Notice(report.to_string()));
    }
    let garments: usize = dataset.samples().iter().map(|s| s.items.len()).sum();
    if !dataset.samples().is_empty() && garments == 0 {
        return Err(Error::Training(format!(
            "{} has no usable garment annotation ({} skipped): there is nothing to learn",
            cfg.data.display(),
            report.skipped.len()
        )));
    }
    let listed = dataset.samples().len() + report.unusable_images;
    if report.unusable_images > 0
        && report.unusable_images as f64 > cfg.max_unusable * listed as f64
    {
        let first = report
            .skipped
            .iter()
            .rev()
            .find(|e| e.place.starts_with("image "))
            .map_or(String::new(), |e| format!(" (one of them: {e})"));
        return Err(Error::Training(format!(
            "{} of the {listed} images {} lists are unusable{first}: more than the {}% \
             max_unusable allows. Check the image folder ({}) or mend the data; to train on \
             the rest, raise TrainConfig::max_unusable",
            report.unusable_images,
            cfg.data.display(),
            cfg.max_unusable * 100.0,
            cfg.images.display(),
        )));
    }
    if !report.skipped.is_empty() {
        on_event(&Event::Notice(format!(
            "training on {} image(s) with {garments} garment(s); {} annotation(s) or image(s) \
             were skipped (listed above)",
            dataset.samples().len(),
            report.skipped.len()
        )));
    }
    if dataset.samples().is_empty() {
        return Err(Error::Training(match cfg.finetune_category {
            Some(c) => format!(
                "{} has no usable training image with a garment of category {c}",
                cfg.data.display()
            ),
            None => format!("{} has no usable training images", cfg.data.display()),
        }));
    }
    Ok(Arc::new(dataset))
}

/// The training set and (read and checked before the first step, not at every evaluation) the
/// validation set.
fn open_data<'c>(
    cfg: &'c TrainConfig,
    on_event: &mut dyn FnMut(&Event),
) -> Result<(Arc<Df2Dataset>, Option<ValidationData<'c>>)> {
    let dataset = open_dataset(cfg, on_event)?;
    let validation = cfg
        .val
        .as_ref()
        .map(|v| ValidationData::load(v, &cfg.limits, dataset.taxonomy()))
        .transpose()?;
    Ok((dataset, validation))
}

/// The loop's moving parts.
struct Loop<'a> {
    cfg: &'a TrainConfig,
    run: RunDir,
    /// The autodiff devices: the first holds the model between epochs; shard `i` runs on
    /// `devices[i % len]`.
    devices: Vec<Device>,
    /// Shard threads when a step is split (`cfg.shards > 1`).
    pool: Option<ShardPool>,
    optim: ModuleOptimizer,
    step: usize,
    /// Mixed precision's step decisions and f16's loss scale.
    amp: AmpSteps,
}

/// Steps per epoch: CenterNet's loader drops the last partial batch (`drop_last=True` in
/// `main.py`), which also keeps the GPU's shapes, and so its tuned kernels, the same every
/// step. A set smaller than one batch still makes one (short) step.
pub fn steps_per_epoch(images: usize, batch: usize) -> usize {
    (images / batch.max(1)).max(usize::from(images > 0))
}

impl Loop<'_> {
    /// One pass over the data; returns the updated model and the mean loss parts. The model
    /// moves through the optimizer (no second reference), so Burn can update it in place.
    fn epoch(
        &mut self,
        mut model: CenterNet,
        epoch: usize,
        dataset: &Arc<Df2Dataset>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<(CenterNet, LossParts)> {
        let cfg = self.cfg;
        let lr = cfg.optimizer.lr_at(epoch);
        dataset.set_epoch(epoch as u64);
        let steps = steps_per_epoch(dataset.samples().len(), cfg.batch);
        let device0 = self.devices[0].clone();
        // One loader recipe for either batcher (a closure cannot be generic).
        macro_rules! loader {
            ($batcher:expr) => {
                DataLoaderBuilder::new($batcher)
                    .batch_size(cfg.batch)
                    .shuffle(cfg.seed.wrapping_add(epoch as u64))
                    .num_workers(cfg.workers.max(1))
                    .set_device(device0.clone())
                    .build(dataset.clone())
            };
        }
        let mut sum = LossParts::default();
        let mut count = 0usize;
        let mut t_step = Instant::now();
        let precision = cfg.amp.precision;
        let mut after_step = |this: &mut Self, i: usize, parts: LossParts, images: usize| {
            this.step += 1;
            // A skipped f16 step's loss may be inf: it does not enter the epoch's mean.
            if parts.is_finite() {
                count += 1;
                sum.add(&parts);
            }
            let secs = t_step.elapsed().as_secs_f64();
            t_step = Instant::now();
            on_event(&Event::Step {
                epoch,
                step_in_epoch: i + 1,
                steps_per_epoch: steps,
                parts,
                images_per_s: images as f64 / secs.max(1e-9),
            });
        };
        match self.pool.take() {
            None => {
                let loader = loader!(TrainBatcher);
                for (i, batch) in loader.iter().take(steps).enumerate() {
                    let batch = batch.map_err(load_error)?;
                    let images = batch.input.dims()[0];
                    let stacks = amp::forward_stacks(&model, batch.input.clone(), precision);
                    let (loss, parts) = total_loss(&stacks, &batch, &cfg.loss);
                    model = self
                        .amp
                        .step(&mut self.optim, lr, model, loss, parts.is_finite())
                        .map_err(|e| self.stop(format!("{e} (loss parts {parts:?})"), epoch))?;
                    after_step(self, i, parts, images);
                }
            }
            Some(pool) => {
                let sharder = ShardBatcher {
                    devices: self.devices.clone(),
                    shards: cfg.shards,
                };
                let loader = loader!(sharder);
                for (i, shards) in loader.iter().take(steps).enumerate() {
                    let shards = shards.map_err(load_error)?;
                    let scale = self.amp.scaler().scale();
                    let (grads, parts, images) =
                        pool.step(&model, shards, &cfg.loss, precision, scale)?;
                    model = self
                        .amp
                        .step_multi(&mut self.optim, lr, model, grads, parts.is_finite())
                        .map_err(|e| self.stop(format!("{e} (loss parts {parts:?})"), epoch))?;
                    after_step(self, i, parts, images);
                }
                self.pool = Some(pool);
                // The optimizer left each parameter on the device that summed its gradient:
                // gather the model on the first device for saving and validation. `fork`, not
                // `to_device`: a moved tensor is the output of a (differentiable) move, no
                // longer a leaf that requires a gradient, and the next replicas would fork
                // untracked parameters.
                fold_running_stats(&model);
                model = model.fork(&self.devices[0]);
            }
        }
        let skipped = self.amp.take_skipped();
        if skipped > 0 {
            on_event(&Event::Notice(format!(
                "epoch {}: {skipped} of {steps} steps skipped (their f16 gradients overflowed); loss scale now {}",
                epoch + 1,
                f64::from(self.amp.scaler().scale())
            )));
        }
        Ok((model, sum.scaled(1.0 / count.max(1) as f32)))
    }

    /// `why` (a non-finite loss, or f16 gradients that kept overflowing) with where it
    /// happened and what is intact.
    fn stop(&self, why: String, epoch: usize) -> Error {
        let at = format!(
            "{why} at epoch {} step {}; stopping.",
            epoch + 1,
            self.step + 1
        );
        if epoch == 0 {
            return Error::Training(format!(
                "{at} No epoch completed, so nothing was saved: lower the learning rate and \
                 start again"
            ));
        }
        let weights = self
            .run
            .checkpoint_dir()
            .join(epoch_state(epoch, 0).weights);
        Error::Training(format!(
            "{at} The last good checkpoint ({epoch} completed epochs) is intact; a resumed run \
             keeps its learning rate, so start a new run from its weights ({}) with a lower one",
            weights.display()
        ))
    }
}

fn load_error(e: impl std::fmt::Display) -> Error {
    Error::Training(format!("loading a training batch: {e}"))
}

/// Trains into the run folder `out`: a new run (`false` or [`RunStart::New`]), the folder's
/// run resumed (`true` or [`RunStart::Resume`]), or a new run replacing it
/// ([`RunStart::Replace`]). The folder is locked for the run's life ([`RunDir::lock`]): a
/// second process training into it fails at once. `device` is the compute device (autodiff
/// is added here).
pub fn train(
    cfg: &TrainConfig,
    out: &Path,
    device: &Device,
    start: impl Into<RunStart>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<TrainSummary> {
    train_on(cfg, out, std::slice::from_ref(device), start, on_event)
}

/// [`train`] on several devices (data-parallel, [`TrainConfig::shards`] shards per step, shard
/// `i` on `devices[i % len]`; see [`parallel`](super::parallel)). The first device holds the
/// model between epochs and runs validation. `shards` must be a multiple of the device count.
pub fn train_on(
    cfg: &TrainConfig,
    out: &Path,
    devices: &[Device],
    start: impl Into<RunStart>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<TrainSummary> {
    let start = start.into();
    cfg.check()?;
    let Some(device) = devices.first() else {
        return Err(Error::Training("no device to train on".into()));
    };
    if !cfg.shards.is_multiple_of(devices.len()) {
        return Err(Error::Training(format!(
            "{} shards per step cannot be spread evenly over {} devices",
            cfg.shards,
            devices.len()
        )));
    }
    if let Some(i) = (1..devices.len()).find(|&i| devices[..i].contains(&devices[i])) {
        return Err(Error::Training(format!(
            "device {i} ({:?}) is listed twice",
            devices[i]
        )));
    }
    cfg.amp.check_devices(devices)?;
    let run = RunDir::new(out);
    // The run's own files must not be its inputs (a data set's `train.json` in the run folder
    // would be overwritten by the run's).
    let inputs = [
        Some(&cfg.data),
        cfg.val.as_ref().map(|v| &v.data),
        cfg.init.as_ref(),
    ];
    if let Some(p) = inputs.into_iter().flatten().find(|p| run.owns(p)) {
        return Err(Error::file(
            p,
            format!(
                "an input of the run is a file the run writes in {}; choose another run folder",
                out.display()
            ),
        ));
    }
    let _lock = run.lock()?;
    if start == RunStart::New && run.holds_run() {
        return Err(Error::Training(format!(
            "{} holds another run ({}): resume it, replace it, or choose another folder",
            out.display(),
            run.config_path().display()
        )));
    }
    // A new run reads its data before its folder is touched: a refused data set leaves no
    // half-made run behind, and the run `--overwrite` would replace is still there.
    let data = match start {
        RunStart::Resume => None,
        _ => Some(open_data(cfg, on_event)?),
    };
    if start == RunStart::Replace {
        run.remove_run()?;
    }
    run.create()?;
    let ad = device.clone().autodiff();
    let (mut model, optim, state, notes) = if start == RunStart::Resume {
        resume(&run, cfg, &ad)?
    } else {
        start_run(&run, cfg, &ad)?
    };
    for n in notes {
        on_event(&Event::Notice(n));
    }
    let (dataset, validation) = match data {
        Some(d) => d,
        None => open_data(cfg, on_event)?,
    };
    let (mut rows, note) = run.recover_metrics()?;
    if let Some(n) = note {
        on_event(&Event::Notice(n));
    }
    rows.retain(|r| r.epoch < state.epoch);
    on_event(&Event::Start {
        first_epoch: state.epoch,
        epochs: cfg.epochs,
        steps_per_epoch: steps_per_epoch(dataset.samples().len(), cfg.batch),
        images: dataset.samples().len(),
    });
    let pool = (cfg.shards > 1)
        .then(|| ShardPool::new(cfg.shards))
        .transpose()?;
    let mut lp = Loop {
        cfg,
        run,
        devices: devices.iter().map(|d| d.clone().autodiff()).collect(),
        pool,
        optim,
        step: state.step,
        amp: AmpSteps::new(cfg.amp, state.loss_scale),
    };
    let mut best = state.best;
    // A run that stopped early stays stopped unless resumed with more patience.
    let stopped = matches!((best, cfg.selection.patience), (Some(b), Some(p)) if b.stale >= p);
    if stopped {
        on_event(&Event::Notice(
            "the run stopped early before; nothing to train with this patience".into(),
        ));
    }
    for epoch in (state.epoch..cfg.epochs).filter(|_| !stopped) {
        let t_epoch = Instant::now();
        let (trained, mean) = lp.epoch(model, epoch, &dataset, on_event)?;
        model = trained;
        let secs = t_epoch.elapsed().as_secs_f64();
        // BatchNorm's pending update folded in before the model is validated and saved.
        crate::model::sync::SyncRunningStats::sync_running_stats(&model);
        let val_ap = match &validation {
            Some(v) if v.due(epoch, cfg.epochs) => Some(v.evaluate(&model, cfg, device)?),
            _ => None,
        };
        // The best validation so far keeps its weights in `model-best.bpk`.
        let improved = match val_ap.map(|ap| cfg.selection.value(ap)) {
            Some(ap) if best.is_none_or(|b| ap > b.ap) => {
                best = Some(BestEpoch {
                    epoch: epoch + 1,
                    ap,
                    stale: 0,
                });
                true
            }
            Some(_) => {
                if let Some(b) = &mut best {
                    b.stale += 1;
                }
                false
            }
            None => false,
        };
        if improved {
            lp.run.save_best(&model, cfg)?;
        }
        let state = TrainState {
            loss_scale: lp.amp.scaler().state(),
            best,
            ..epoch_state(epoch + 1, lp.step)
        };
        let next = lp.run.save_epoch(&state, &model, &lp.optim, cfg)?;
        let lr = cfg.optimizer.lr_at(epoch);
        rows.push(EpochRow {
            epoch,
            lr,
            secs,
            loss: mean,
            steps: lp.step,
            val_ap,
        });
        lp.run.write_metrics(&rows)?;
        // The state file last: a run killed before this resumes from the previous epoch, and
        // metrics rows past the state are dropped on resume.
        lp.run.commit(&next)?;
        on_event(&Event::Epoch {
            epoch,
            mean,
            lr,
            secs,
            val_ap,
        });
        if let (Some(b), Some(patience)) = (best, cfg.selection.patience)
            && b.stale >= patience
            && epoch + 1 < cfg.epochs
        {
            on_event(&Event::Notice(format!(
                "stopping early after epoch {}: {patience} validation(s) without a better {} AP \
                 than epoch {}'s {:.4} (model-best.bpk)",
                epoch + 1,
                cfg.selection.metric,
                b.epoch,
                b.ap
            )));
            break;
        }
    }
    Ok(TrainSummary {
        weights: lp.run.weights_path(),
        rows,
        steps: lp.step,
        best: best.map(|b| (lp.run.best_weights_path(), b)),
    })
}
