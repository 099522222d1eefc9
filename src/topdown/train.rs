//! Training a model set: the universal model on every garment, then (Aggregation §2.2) one
//! model per category fine-tuned from it on that category's garments only. Each model is saved
//! as `<name>.bpk` (+ config and checksums) and `topdown.json` is rewritten atomically after
//! each — a run stopped part-way keeps the finished models, and `resume` skips them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::module::Module;
use burn::tensor::{Device, FloatDType};
use serde::{Deserialize, Serialize};

use super::apply::{ModelEntry, ModelSetIndex, index_path};
use super::config::{CpnArch, CpnConfig};
use super::data::{TopDownBatcher, TopDownDataset};
use super::loss::{CpnLoss, cpn_loss};
use super::net::{Cpn, CpnOutput};
use crate::Precision;
use crate::checkpoint::{load_module, save_module, verify};
use crate::codec::scheme::Scheme;
use crate::data::deepfashion2::Sample;
use crate::error::{Error, Result};
use crate::garment::Taxonomy;
use crate::io::{Limits, create_dir_all, read_json, write_json};
use crate::model::sync::SyncRunningStats;
use crate::refine::data::RefineAugment;
use crate::train::OptimizerConfig;
use crate::train::amp::{self, AmpConfig, AmpSteps};
use crate::train::trainer::steps_per_epoch;

/// How the models of a set are trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopDownTrainConfig {
    /// The model's architecture.
    pub arch: CpnArch,
    /// The landmark scheme its heatmaps follow (DeepFashion2's; `none`, unused, when `taxonomy`
    /// is given).
    pub scheme: Scheme,
    /// The taxonomy and grouping of the heatmaps, when not DeepFashion2's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxonomy: Option<crate::codec::ModelTaxonomy>,
    /// `[height, width]`.
    pub input: [usize; 2],
    /// Crops per step.
    pub batch: usize,
    /// Passes of the universal model over every garment.
    pub epochs: usize,
    /// Fine-tuning epochs per category (Aggregation fine-tunes for fewer than the universal
    /// model's).
    pub finetune_epochs: usize,
    /// Adam and its learning-rate schedule (the universal model's).
    pub optimizer: OptimizerConfig,
    /// Fine-tuning's learning rate (the schedule's steps scale with `finetune_epochs`).
    pub finetune_lr: f64,
    /// Crop augmentation.
    pub augment: RefineAugment,
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

impl TopDownTrainConfig {
    /// CPN's recipe scaled to `epochs`: Adam 5e-4 (ε 1e-8) with weight decay 1e-5, halved at 1/2
    /// and 3/4 of the epochs, batch 32; fine-tuning for half the epochs at a fifth of the rate.
    pub fn cpn(arch: CpnArch, scheme: Scheme, input: [usize; 2], epochs: usize) -> Self {
        TopDownTrainConfig {
            arch,
            scheme,
            taxonomy: None,
            input,
            batch: 32,
            epochs,
            finetune_epochs: epochs.div_ceil(2),
            optimizer: OptimizerConfig {
                weight_decay: Some(1e-5),
                // TensorFlow's Adam ε (CPN's optimiser), 1e-8 as `adam`'s. The heatmap losses
                // are means over every pixel, so gradients are small: on 8 fixture crops, 100
                // steps ended with GlobalNet's loss 40 % lower than with Burn's ε of 1e-5
                // (RefineNet's alike).
                epsilon: 1e-8,
                ..OptimizerConfig::adam(5e-4)
            },
            finetune_lr: 1e-4,
            augment: RefineAugment {
                prediction: 0.0,
                ..RefineAugment::default()
            },
            seed: 1,
            workers: 2,
            amp: AmpConfig::default(),
            limits: Limits::default(),
        }
    }

    /// The learning rate in `epoch` of `epochs` starting from `lr`: halved at 1/2, again at 3/4.
    pub fn lr_at(lr: f64, epoch: usize, epochs: usize) -> f64 {
        let mut r = lr;
        for step in [epochs / 2, epochs * 3 / 4] {
            if step > 0 && epoch >= step {
                r *= 0.5;
            }
        }
        r
    }
}

/// What training reports.
#[derive(Debug, Clone)]
pub enum TopDownEvent {
    /// A model starts training.
    Start {
        /// Its category (`None`: the universal model).
        category_id: Option<usize>,
        /// Labelled garments it trains on.
        garments: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
        /// The weights it starts from (fine-tuning: the universal model's).
        init: Option<PathBuf>,
    },
    /// An epoch ended.
    Epoch {
        /// Its category (`None`: the universal model).
        category_id: Option<usize>,
        /// 0-based epoch.
        epoch: usize,
        /// Epochs in all.
        epochs: usize,
        /// The epoch's mean loss.
        loss: CpnLoss,
        /// Steps skipped because their f16 gradients overflowed.
        skipped: usize,
        /// The epoch's seconds.
        secs: f64,
    },
    /// A model was not trained (no garments, or done before a resume).
    Skipped {
        /// Its category (`None`: the universal model).
        category_id: Option<usize>,
        /// Why.
        why: String,
    },
    /// A model was written.
    Saved {
        /// Its category (`None`: the universal model).
        category_id: Option<usize>,
        /// Its weights file.
        path: PathBuf,
    },
}

/// The weights file name of a set's model (a category of `taxonomy`, or the universal one).
pub fn weights_name(taxonomy: &Taxonomy, category_id: Option<usize>) -> String {
    match category_id.and_then(|c| taxonomy.category(c)) {
        Some(c) => format!("{}.bpk", c.name),
        None => "universal.bpk".into(),
    }
}

/// Trains the models `which` (`None`: universal, `Some(id)`: fine-tuned for category `id`, in
/// the order given) on `samples` (images in `images`) into the set folder `out`. A fine-tuned
/// model starts from `init` when given, else from the set's universal model, else from
/// scratch; the universal model starts from `init` when given.
#[allow(clippy::too_many_arguments)]
pub fn train_model_set(
    cfg: &TopDownTrainConfig,
    which: &[Option<usize>],
    init: Option<&Path>,
    samples: &[Sample],
    images: &Path,
    out: &Path,
    device: &Device,
    resume: bool,
    on_event: &mut dyn FnMut(&TopDownEvent),
) -> Result<ModelSetIndex> {
    if cfg.batch == 0 || cfg.epochs == 0 || cfg.finetune_epochs == 0 {
        return Err(Error::Invalid("batch and epochs must be positive".into()));
    }
    cfg.amp.check()?;
    cfg.amp.check_devices(std::slice::from_ref(device))?;
    let base = match &cfg.taxonomy {
        Some(t) => CpnConfig::for_grouping(cfg.arch, &t.grouping()?, cfg.input)?,
        None => CpnConfig::new(cfg.arch, cfg.scheme, cfg.input)?,
    };
    let taxonomy = base.grouping()?.taxonomy();
    create_dir_all(out)?;
    let mut index = if index_path(out).is_file() {
        read_json(&index_path(out), "top-down model set index")?
    } else {
        ModelSetIndex {
            models: Vec::new(),
            train: serde_json::Value::Null,
        }
    };
    index.train = serde_json::to_value(cfg).map_err(|e| Error::Invalid(e.to_string()))?;
    for &target in which {
        if let Some(id) = target
            && taxonomy.category(id).is_none()
        {
            return Err(Error::Invalid(format!(
                "unknown category {id} (the taxonomy {} has {})",
                taxonomy.name,
                taxonomy.category_list()
            )));
        }
        let done = index.models.iter().find(|e| e.category_id == target);
        if resume
            && done.is_some_and(|d| {
                let w = out.join(&d.weights);
                w.is_file() && verify(&w).is_ok()
            })
        {
            on_event(&TopDownEvent::Skipped {
                category_id: target,
                why: "trained before (resumed)".into(),
            });
            continue;
        }
        let mcfg = base.for_category(target)?;
        let dataset = Arc::new(
            TopDownDataset::new(
                samples.to_vec(),
                images,
                mcfg.clone(),
                cfg.augment,
                cfg.seed ^ target.map_or(0, |c| c as u64),
            )?
            .with_limits(cfg.limits),
        );
        if dataset.garments() == 0 {
            on_event(&TopDownEvent::Skipped {
                category_id: target,
                why: "no labelled garments of this category".into(),
            });
            continue;
        }
        let universal = index
            .models
            .iter()
            .find(|e| e.category_id.is_none())
            .map(|e| out.join(&e.weights))
            .filter(|p| p.is_file());
        let start = match (init, target) {
            (Some(p), _) => Some(p.to_path_buf()),
            (None, Some(_)) => universal,
            (None, None) => None,
        };
        let (epochs, lr) = match target {
            Some(_) if start.is_some() => (cfg.finetune_epochs, cfg.finetune_lr),
            _ => (cfg.epochs, cfg.optimizer.lr),
        };
        let (model, last) = train_one(
            cfg,
            &mcfg,
            &dataset,
            start.as_deref(),
            (epochs, lr),
            device,
            on_event,
        )?;
        let name = weights_name(taxonomy, target);
        let path = out.join(&name);
        model.sync_running_stats();
        save_module(&model.valid(), &mcfg, &path)?;
        index.models.retain(|e| e.category_id != target);
        index.models.push(ModelEntry {
            category_id: target,
            weights: name,
            garments: dataset.garments(),
            final_loss: last.total(),
            init: start.map(|p| p.display().to_string()),
        });
        index.models.sort_by_key(|e| e.category_id.unwrap_or(0));
        write_json(&index_path(out), &index)?;
        on_event(&TopDownEvent::Saved {
            category_id: target,
            path,
        });
    }
    if index.models.is_empty() {
        return Err(Error::Training(
            "no top-down model was trained: the data has no labelled garments of the chosen categories"
                .into(),
        ));
    }
    write_json(&index_path(out), &index)?;
    Ok(index)
}

/// Loads `path` as the starting point of `mcfg`'s model (same network and layout; the
/// category may differ).
fn load_init(path: &Path, mcfg: &CpnConfig, device: &Device) -> Result<Cpn> {
    let (model, _) = load_module(path, "top-down model config", |c: &CpnConfig| {
        c.check()?;
        let same = CpnConfig {
            category_id: mcfg.category_id,
            ..c.clone()
        };
        if same != *mcfg {
            return Err(Error::Invalid(format!(
                "the initial weights {} are a {} {} model at {}x{}; this set trains {} {} at {}x{} (the network, layout and input must match)",
                path.display(),
                c.arch,
                c.grouping()
                    .map_or_else(|_| c.scheme.to_string(), |g| g.name().to_string()),
                c.input[0],
                c.input[1],
                mcfg.arch,
                mcfg.grouping()
                    .map_or_else(|_| mcfg.scheme.to_string(), |g| g.name().to_string()),
                mcfg.input[0],
                mcfg.input[1]
            )));
        }
        Ok(c.init(device))
    })?;
    Ok(model)
}

/// One model's training; returns it (autodiff) and the last epoch's mean loss.
fn train_one(
    cfg: &TopDownTrainConfig,
    mcfg: &CpnConfig,
    dataset: &Arc<TopDownDataset>,
    init: Option<&Path>,
    (epochs, lr0): (usize, f64),
    device: &Device,
    on_event: &mut dyn FnMut(&TopDownEvent),
) -> Result<(Cpn, CpnLoss)> {
    let ad = device.clone().autodiff();
    let mut model = match init {
        Some(p) => load_init(p, mcfg, &ad)?,
        None => mcfg.init(&ad),
    };
    let mut optim = cfg.optimizer.adam_config().init();
    let mut steps = AmpSteps::new(cfg.amp, None);
    let precision = cfg.amp.precision;
    let target = mcfg.category_id;
    // The last partial batch is dropped (as the detector's trainer does): every step has the
    // same shapes, so a GPU's tuned kernels serve every step.
    let per_epoch = steps_per_epoch(dataset.garments(), cfg.batch);
    on_event(&TopDownEvent::Start {
        category_id: target,
        garments: dataset.garments(),
        steps_per_epoch: per_epoch,
        init: init.map(Path::to_path_buf),
    });
    let mut last = CpnLoss::default();
    for epoch in 0..epochs {
        let t0 = Instant::now();
        dataset.set_epoch(epoch as u64);
        let loader = DataLoaderBuilder::new(TopDownBatcher { cfg: mcfg.clone() })
            .batch_size(cfg.batch)
            .shuffle(cfg.seed.wrapping_add(epoch as u64))
            .num_workers(cfg.workers.max(1))
            .set_device(ad.clone())
            .build(dataset.clone());
        let lr = TopDownTrainConfig::lr_at(lr0, epoch, epochs);
        let (mut sum, mut n) = (CpnLoss::default(), 0usize);
        for batch in loader.iter().take(per_epoch) {
            let batch =
                batch.map_err(|e| Error::Training(format!("loading a top-down batch: {e}")))?;
            let out = forward_in(&model, batch.input, precision);
            let (loss, parts) = cpn_loss(&out, &batch.targets, mcfg.ohkm)?;
            let finite = parts.total().is_finite();
            model = steps
                .step(&mut optim, lr, model, loss, finite)
                .map_err(|e| {
                    Error::Training(format!(
                        "top-down model {}: {e} ({parts:?}) at epoch {}; lower the learning rate",
                        mcfg.grouping()
                            .map_or_else(|_| "?".into(), |g| weights_name(g.taxonomy(), target)),
                        epoch + 1
                    ))
                })?;
            // A skipped f16 step's loss may be inf: it does not enter the epoch's mean.
            if finite {
                sum.global += parts.global;
                sum.refine += parts.refine;
                n += 1;
            }
        }
        last = CpnLoss {
            global: sum.global / n.max(1) as f32,
            refine: sum.refine / n.max(1) as f32,
        };
        on_event(&TopDownEvent::Epoch {
            category_id: target,
            epoch,
            epochs,
            loss: last,
            skipped: steps.take_skipped(),
            secs: t0.elapsed().as_secs_f64(),
        });
    }
    Ok((model, last))
}

/// CPN's outputs for `input`, computed in `precision` and returned in f32 for the loss.
fn forward_in(model: &Cpn, input: burn::tensor::Tensor<4>, precision: Precision) -> CpnOutput {
    amp::forward_in(
        model,
        input,
        precision,
        |m, x| m.forward(x),
        |out| CpnOutput {
            global: out
                .global
                .into_iter()
                .map(|g| g.cast(FloatDType::F32))
                .collect(),
            refine: out.refine.cast(FloatDType::F32),
        },
    )
}
