//! Training the refiners: one per category, each from a fresh ResNet (no ImageNet weights
//! exist here), with Adam and a step schedule, into one folder: `<category>.bpk` (+ config and
//! checksums) per refiner and `refiners.json` listing them, rewritten atomically after each
//! category — a run stopped part-way keeps the finished refiners, and `resume` skips them.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::module::Module;
use burn::tensor::{Device, FloatDType};
use serde::{Deserialize, Serialize};

use super::apply::{RefinerEntry, RefinerIndex, index_path};
use super::config::{RefinerArch, RefinerConfig};
use super::data::{RefineAugment, RefineBatcher, RefineDataset};
use super::errors::ErrorRates;
use super::net::{RefinerLoss, refiner_loss};
use crate::checkpoint::{save_module, verify};
use crate::data::deepfashion2::Sample;
use crate::error::{Error, Result};
use crate::infer::output::DetectionRecord;
use crate::io::{Limits, create_dir_all, read_json, write_json};
use crate::train::OptimizerConfig;
use crate::train::amp::{self, AmpConfig, AmpSteps};
use crate::train::trainer::steps_per_epoch;

/// How the refiners are trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefinerTrainConfig {
    /// The refiner's architecture.
    pub arch: RefinerArch,
    /// `[height, width]`.
    pub input: [usize; 2],
    /// Crops per step.
    pub batch: usize,
    /// Passes over each category's garments.
    pub epochs: usize,
    /// Adam and its learning-rate schedule.
    pub optimizer: OptimizerConfig,
    /// Crop augmentation.
    pub augment: RefineAugment,
    /// How often each synthesized input-pose error occurs.
    pub errors: ErrorRates,
    /// Seed of the initial weights, the shuffling and the augmentation.
    pub seed: u64,
    /// Data-loading threads.
    pub workers: usize,
    /// The float type the network computes in (`--precision`) and f16's loss scale; the
    /// weights Adam updates stay f32.
    #[serde(default)]
    pub amp: AmpConfig,
    /// How large an image the training reads. Not saved: a property of the process.
    #[serde(skip)]
    pub limits: Limits,
}

impl RefinerTrainConfig {
    /// PoseFix's recipe scaled to `epochs`: Adam 5e-4, ×0.1 at 9/14 and 12/14 of the epochs
    /// (90 and 120 of 140), batch 16.
    pub fn posefix(arch: RefinerArch, input: [usize; 2], epochs: usize) -> Self {
        RefinerTrainConfig {
            arch,
            input,
            batch: 16,
            epochs,
            optimizer: OptimizerConfig {
                lr_steps: vec![(epochs * 9 / 14, 0.1), (epochs * 12 / 14, 0.01)],
                ..OptimizerConfig::adam(5e-4)
            },
            augment: RefineAugment::default(),
            errors: ErrorRates::default(),
            seed: 1,
            workers: 2,
            amp: AmpConfig::default(),
            limits: Limits::default(),
        }
    }
}

/// What training reports.
#[derive(Debug, Clone)]
pub enum RefineEvent {
    /// A category starts: its garments, and how many have a matched prediction.
    Start {
        /// 1-based category id.
        category_id: usize,
        /// Labelled garments of the category.
        garments: usize,
        /// Of those, with a matched detector prediction.
        with_predictions: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
    },
    /// An epoch ended.
    Epoch {
        /// 1-based category id.
        category_id: usize,
        /// 0-based epoch.
        epoch: usize,
        /// Epochs in all.
        epochs: usize,
        /// The epoch's mean loss.
        loss: RefinerLoss,
        /// Steps skipped because their f16 gradients overflowed.
        skipped: usize,
        /// The epoch's seconds.
        secs: f64,
    },
    /// A category was not trained (no garments, or done before a resume).
    Skipped {
        /// 1-based category id.
        category_id: usize,
        /// Why.
        why: String,
    },
    /// A category's refiner was written.
    Saved {
        /// 1-based category id.
        category_id: usize,
        /// Its weights file.
        path: std::path::PathBuf,
    },
}

/// Trains the refiners of `categories` (of `taxonomy`) on `samples` (images in `images`), with
/// the detector's `predictions` as input poses where they match, into `out`.
#[allow(clippy::too_many_arguments)]
pub fn train_refiners(
    taxonomy: &'static crate::garment::Taxonomy,
    cfg: &RefinerTrainConfig,
    categories: &[usize],
    samples: &[Sample],
    images: &Path,
    predictions: &[DetectionRecord],
    out: &Path,
    device: &Device,
    resume: bool,
    on_event: &mut dyn FnMut(&RefineEvent),
) -> Result<RefinerIndex> {
    if cfg.batch == 0 || cfg.epochs == 0 {
        return Err(Error::Invalid("batch and epochs must be positive".into()));
    }
    cfg.amp.check()?;
    cfg.amp.check_devices(std::slice::from_ref(device))?;
    create_dir_all(out)?;
    let mut index = if resume && index_path(out).is_file() {
        read_json(&index_path(out), "refiner index")?
    } else {
        RefinerIndex {
            refiners: Vec::new(),
            train: serde_json::Value::Null,
        }
    };
    index.train = serde_json::to_value(cfg).map_err(|e| Error::Invalid(e.to_string()))?;
    for &id in categories {
        let Some(cat) = taxonomy.category(id) else {
            return Err(Error::Invalid(format!(
                "unknown category {id} (the taxonomy {} has {})",
                taxonomy.name,
                taxonomy.category_list()
            )));
        };
        let done = index.refiners.iter().find(|e| e.category_id == id);
        if done.is_some_and(|d| {
            let w = out.join(&d.weights);
            w.is_file() && verify(&w).is_ok()
        }) {
            on_event(&RefineEvent::Skipped {
                category_id: id,
                why: "trained before (resumed)".into(),
            });
            continue;
        }
        let rcfg = RefinerConfig::new_in(taxonomy, cfg.arch, id, cfg.input)?;
        let dataset = Arc::new(
            RefineDataset::new(
                samples.to_vec(),
                images,
                predictions,
                rcfg.clone(),
                cfg.augment,
                cfg.errors,
                cfg.seed ^ id as u64,
            )?
            .with_limits(cfg.limits),
        );
        if dataset.garments() == 0 {
            on_event(&RefineEvent::Skipped {
                category_id: id,
                why: "no labelled garments of this category".into(),
            });
            continue;
        }
        let (model, last) = train_one(cfg, &rcfg, &dataset, device, on_event)?;
        let name = format!("{}.bpk", cat.name);
        let path = out.join(&name);
        crate::model::sync::SyncRunningStats::sync_running_stats(&model.backbone);
        save_module(&model.valid(), &rcfg, &path)?;
        index.refiners.retain(|e| e.category_id != id);
        index.refiners.push(RefinerEntry {
            category_id: id,
            weights: name,
            garments: dataset.garments(),
            with_predictions: dataset.with_predictions(),
            final_loss: last.total(),
        });
        index.refiners.sort_by_key(|e| e.category_id);
        write_json(&index_path(out), &index)?;
        on_event(&RefineEvent::Saved {
            category_id: id,
            path,
        });
    }
    if index.refiners.is_empty() {
        return Err(Error::Training(
            "no refiner was trained: the data has no labelled garments of the chosen categories"
                .into(),
        ));
    }
    write_json(&index_path(out), &index)?;
    Ok(index)
}

/// One category's training; returns the model (autodiff) and the last epoch's mean loss.
fn train_one(
    cfg: &RefinerTrainConfig,
    rcfg: &RefinerConfig,
    dataset: &Arc<RefineDataset>,
    device: &Device,
    on_event: &mut dyn FnMut(&RefineEvent),
) -> Result<(super::net::Refiner, RefinerLoss)> {
    let ad = device.clone().autodiff();
    let mut model = rcfg.init(&ad);
    let mut optim = cfg.optimizer.adam_config().init();
    let mut steps = AmpSteps::new(cfg.amp, None);
    let precision = cfg.amp.precision;
    let id = rcfg.category_id;
    // The last partial batch is dropped (as the detector's trainer does): every step has the
    // same shapes, so a GPU's tuned kernels serve every step.
    let steps_per_epoch = steps_per_epoch(dataset.garments(), cfg.batch);
    on_event(&RefineEvent::Start {
        category_id: id,
        garments: dataset.garments(),
        with_predictions: dataset.with_predictions(),
        steps_per_epoch,
    });
    let mut last = RefinerLoss::default();
    for epoch in 0..cfg.epochs {
        let t0 = Instant::now();
        dataset.set_epoch(epoch as u64);
        let loader = DataLoaderBuilder::new(RefineBatcher { cfg: rcfg.clone() })
            .batch_size(cfg.batch)
            .shuffle(cfg.seed.wrapping_add(epoch as u64))
            .num_workers(cfg.workers.max(1))
            .set_device(ad.clone())
            .build(dataset.clone());
        let lr = cfg.optimizer.lr_at(epoch);
        let (mut sum, mut n) = (RefinerLoss::default(), 0usize);
        for batch in loader.iter().take(steps_per_epoch) {
            let batch =
                batch.map_err(|e| Error::Training(format!("loading a refiner batch: {e}")))?;
            let logits = amp::forward_in(
                &model,
                batch.input,
                precision,
                |m, x| m.forward(x),
                |t| t.cast(FloatDType::F32),
            );
            let (loss, parts) = refiner_loss(logits, batch.target, batch.xy, batch.valid);
            let finite = parts.total().is_finite();
            model = steps
                .step(&mut optim, lr, model, loss, finite)
                .map_err(|e| {
                    Error::Training(format!(
                        "refiner for category {id}: {e} ({parts:?}) at epoch {}; lower the learning rate",
                        epoch + 1
                    ))
                })?;
            // A skipped f16 step's loss may be inf: it does not enter the epoch's mean.
            if finite {
                sum.ce += parts.ce;
                sum.l1 += parts.l1;
                n += 1;
            }
        }
        last = RefinerLoss {
            ce: sum.ce / n.max(1) as f32,
            l1: sum.l1 / n.max(1) as f32,
        };
        on_event(&RefineEvent::Epoch {
            category_id: id,
            epoch,
            epochs: cfg.epochs,
            loss: last,
            skipped: steps.take_skipped(),
            secs: t0.elapsed().as_secs_f64(),
        });
    }
    Ok((model, last))
}
