//! Training either attribute model with the "maybe" loss (`train::loss::maybe_cross_entropy`
//! over each task's labelled garments, summed over the tasks):
//! - the recognition network on augmented Normal- and Neck-crops (the paper: Adam 1e-4, ×0.1
//!   every 4 of 12 epochs, batch 24);
//! - the detector's attribute heads on the detector's frozen features: the features are
//!   computed once, and each garment keeps the 3×3 window of them around its centre cell (the
//!   cell CenterNet's targets put its `wh` and `reg` at), which is all a 3×3 → 1×1 head reads
//!   there; the heads then train on those windows alone.
//!
//! Each writes `attributes.bpk` with its config (`attributes.json`, see
//! [`super::apply::AttributeModelConfig`]) and checksums into the output folder.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::apply::{AttributeModelConfig, WEIGHTS};
use super::crops::{crop_box, crop_input};
use super::data::AttributeSample;
use super::heads::{AttributeHeads, AttributeHeadsConfig};
use super::net::{AttributeNet, AttributeNetConfig};
use super::{AttributeTask, Crop, maybe_weights};
use crate::checkpoint::save_module;
use crate::error::{DataError, Error, Result};
use crate::infer::Detector;
use crate::io::{Limits, create_dir_all};
use crate::refine::RefinerArch;
use crate::refine::data::{RefineAugment, sample_rng};
use crate::train::OptimizerConfig;
use crate::train::amp::{AmpConfig, AmpSteps};
use crate::train::loss::maybe_cross_entropy;
use crate::train::trainer::steps_per_epoch;

/// How an attribute model is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeTrainConfig {
    /// The recognition network's trunk (unused by detector heads).
    pub arch: RefinerArch,
    /// Crop `[height, width]` (unused by detector heads).
    pub input: [usize; 2],
    /// Garments per step.
    pub batch: usize,
    /// Passes over the garments.
    pub epochs: usize,
    /// Adam and its learning-rate schedule.
    pub optimizer: OptimizerConfig,
    /// The "maybe" weight β (0: plain cross-entropy on the `y` class).
    pub beta: f32,
    /// Crop augmentation (scale, rotation, shift, mirroring; recognition network only).
    pub augment: RefineAugment,
    /// Seed of the initial weights, the shuffling and the augmentation.
    pub seed: u64,
    /// Data-loading threads.
    pub workers: usize,
    /// How large an image the training reads. Not saved: a property of the process.
    #[serde(skip)]
    pub limits: Limits,
}

impl AttributeTrainConfig {
    /// The paper's recipe scaled to `epochs`: Adam at `lr`, ×0.1 at 1/3 and 2/3 of the epochs
    /// (every 4 of 12), batch 24, β = 0.1, the refiners' crop augmentation without rotation.
    pub fn paper(arch: RefinerArch, input: [usize; 2], epochs: usize, lr: f64) -> Self {
        AttributeTrainConfig {
            arch,
            input,
            batch: 24,
            epochs,
            optimizer: OptimizerConfig {
                lr_steps: vec![(epochs / 3, 0.1), (epochs * 2 / 3, 0.01)],
                ..OptimizerConfig::adam(lr)
            },
            beta: 0.1,
            augment: RefineAugment {
                rotation_prob: 0.0,
                prediction: 0.0,
                ..RefineAugment::default()
            },
            seed: 1,
            workers: 2,
            limits: Limits::default(),
        }
    }

    fn check(&self, samples: &[AttributeSample], tasks: &[AttributeTask]) -> Result<()> {
        if self.batch == 0 || self.epochs == 0 {
            return Err(Error::Invalid("batch and epochs must be positive".into()));
        }
        if !(0.0..=1.0).contains(&self.beta) {
            return Err(Error::Invalid(format!(
                "maybe-label weight β = {} must lie in [0, 1]",
                self.beta
            )));
        }
        for s in samples {
            for (t, l) in tasks.iter().zip(&s.labels) {
                if let Some(l) = l {
                    maybe_weights(l, self.beta).map_err(|e| {
                        Error::Invalid(format!("{} (task {}): {e}", s.image.display(), t.name))
                    })?;
                }
            }
        }
        if samples.iter().all(|s| s.labels.iter().all(Option::is_none)) {
            return Err(Error::Training(
                "no garment carries an attribute label: nothing to learn".into(),
            ));
        }
        Ok(())
    }
}

/// What training reports.
#[derive(Debug, Clone)]
pub enum AttributeEvent {
    /// Training starts.
    Start {
        /// Labelled garments.
        garments: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
    },
    /// Detector heads: features of `done` of `total` images computed.
    Features {
        /// Images done.
        done: usize,
        /// Images in all.
        total: usize,
    },
    /// An epoch ended.
    Epoch {
        /// 0-based epoch.
        epoch: usize,
        /// Epochs in all.
        epochs: usize,
        /// The epoch's mean loss.
        loss: f32,
        /// The epoch's seconds.
        secs: f64,
    },
}

/// Per task of one batch: the rows labelled for it and their loss weights `(rows, classes)`.
#[derive(Debug, Clone)]
pub struct TaskTargets {
    /// Indices of the labelled rows in the batch.
    pub rows: Tensor<1, Int>,
    /// Their weights.
    pub weights: Tensor<2>,
}

/// The loss of per-task logits against the batch's targets: the sum over tasks with labelled
/// rows of [`maybe_cross_entropy`] over those rows.
pub fn attribute_loss(logits: Vec<Tensor<2>>, targets: &[Option<TaskTargets>]) -> Tensor<1> {
    let mut total: Option<Tensor<1>> = None;
    for (l, t) in logits.into_iter().zip(targets) {
        let Some(t) = t else { continue };
        let term = maybe_cross_entropy(l.select(0, t.rows.clone()), t.weights.clone());
        total = Some(match total {
            Some(s) => s + term,
            None => term,
        });
    }
    total.expect("a batch holds at least one label")
}

/// The running mean loss of an epoch, and the optimiser state the steps share.
struct Stepper {
    steps: AmpSteps,
    optim: burn::optim::ModuleOptimizer,
    /// `(sum, steps)` of this epoch's losses.
    epoch: (f32, usize),
    what: &'static str,
}

impl Stepper {
    fn new(cfg: &AttributeTrainConfig, what: &'static str) -> Self {
        Stepper {
            steps: AmpSteps::new(AmpConfig::default(), None),
            optim: cfg.optimizer.adam_config().init(),
            epoch: (0.0, 0),
            what,
        }
    }

    /// One optimiser step on `loss` at `lr` (epoch `epoch`, 0-based); its value joins the
    /// epoch's mean.
    fn step<M: Module>(&mut self, model: M, loss: Tensor<1>, lr: f64, epoch: usize) -> Result<M> {
        let v = loss.clone().into_scalar::<f32>();
        let model = self
            .steps
            .step(&mut self.optim, lr, model, loss, v.is_finite())
            .map_err(|e| {
                Error::Training(format!(
                    "{}: {e} (loss {v}) at epoch {}; lower the learning rate",
                    self.what,
                    epoch + 1
                ))
            })?;
        self.epoch.0 += v;
        self.epoch.1 += 1;
        Ok(model)
    }

    /// Reports the epoch that ended (its mean loss, returned) and starts the next.
    fn end_epoch(
        &mut self,
        epoch: usize,
        epochs: usize,
        t0: Instant,
        on_event: &mut dyn FnMut(&AttributeEvent),
    ) -> f32 {
        let loss = self.epoch.0 / self.epoch.1.max(1) as f32;
        self.epoch = (0.0, 0);
        on_event(&AttributeEvent::Epoch {
            epoch,
            epochs,
            loss,
            secs: t0.elapsed().as_secs_f64(),
        });
        loss
    }
}

/// The targets of a batch from per-row labels (`labels[row][task]`).
fn targets(
    labels: &[&[Option<Vec<super::Mark>>]],
    tasks: &[AttributeTask],
    beta: f32,
    device: &Device,
) -> Vec<Option<TaskTargets>> {
    (0..tasks.len())
        .map(|t| {
            let mut rows = Vec::new();
            let mut w = Vec::new();
            for (r, l) in labels.iter().enumerate() {
                if let Some(m) = &l[t] {
                    rows.push(r as i64);
                    w.extend(maybe_weights(m, beta).expect("checked before training"));
                }
            }
            let n = rows.len();
            (n > 0).then(|| TaskTargets {
                weights: Tensor::from_data(TensorData::new(w, [n, tasks[t].classes]), device),
                rows: Tensor::from_data(TensorData::new(rows, [n]), device),
            })
        })
        .collect()
}

/// One prepared garment (host memory).
#[derive(Debug, Clone)]
pub struct CropItem {
    normal: Vec<f32>,
    neck: Option<Vec<f32>>,
    labels: Vec<Option<Vec<super::Mark>>>,
}

/// Labelled garments as crops, on Burn's data API.
pub struct CropDataset {
    samples: Vec<AttributeSample>,
    images: std::path::PathBuf,
    cfg: AttributeNetConfig,
    augment: RefineAugment,
    limits: Limits,
    seed: u64,
    epoch: AtomicU64,
}

impl CropDataset {
    /// The labelled garments of `samples` (images in `images`).
    pub fn new(
        samples: &[AttributeSample],
        images: &Path,
        cfg: AttributeNetConfig,
        augment: RefineAugment,
        limits: Limits,
        seed: u64,
    ) -> Self {
        CropDataset {
            samples: samples
                .iter()
                .filter(|s| s.labels.iter().any(Option::is_some))
                .cloned()
                .collect(),
            images: images.to_path_buf(),
            cfg,
            augment,
            limits,
            seed,
            epoch: AtomicU64::new(0),
        }
    }

    /// Prepares garment `index`: decode its image, draw the jitter, cut both crops.
    pub fn prepare(&self, index: usize) -> std::result::Result<CropItem, DataError> {
        let s = &self.samples[index];
        let path = self.images.join(&s.image);
        let image = self.limits.open_rgb(&path).map_err(|e| {
            DataError::new(&path, format!("image {}: ", s.image_id), "-", e.to_string())
        })?;
        let whole = [0.0, 0.0, image.width() as f32, image.height() as f32];
        let bbox = s.bbox.unwrap_or(whole);
        let mut rng = sample_rng(self.seed, self.epoch.load(Ordering::Relaxed), index);
        let jitter = self.augment.draw_jitter(&mut rng);
        let cut = |crop: Crop| {
            let b = crop_box(crop, bbox, s.category_id, &s.landmarks);
            crop_input(&image, b, self.cfg.input, self.cfg.box_scale, jitter)
        };
        Ok(CropItem {
            normal: cut(Crop::Normal),
            neck: self.cfg.uses_neck().then(|| cut(Crop::Neck)),
            labels: s.labels.clone(),
        })
    }
}

impl Dataset<CropItem> for CropDataset {
    fn get(&self, index: usize) -> std::result::Result<CropItem, DatasetError> {
        self.prepare(index).map_err(DatasetError::new)
    }

    fn len(&self) -> usize {
        self.samples.len()
    }
}

/// A batch of crops and targets.
#[derive(Debug, Clone)]
pub struct CropBatch {
    normal: Tensor<4>,
    neck: Option<Tensor<4>>,
    targets: Vec<Option<TaskTargets>>,
}

#[derive(Clone)]
struct CropBatcher {
    cfg: AttributeNetConfig,
    beta: f32,
}

impl Batcher<CropItem, CropBatch> for CropBatcher {
    fn batch(&self, items: Vec<CropItem>, device: &Device) -> CropBatch {
        let [h, w] = self.cfg.input;
        let n = items.len();
        let stack = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [n, 3, h, w]), device);
        let normal = stack(items.iter().flat_map(|i| i.normal.clone()).collect());
        let neck = self.cfg.uses_neck().then(|| {
            stack(
                items
                    .iter()
                    .flat_map(|i| i.neck.clone().unwrap_or_default())
                    .collect(),
            )
        });
        let labels: Vec<&[Option<Vec<super::Mark>>]> =
            items.iter().map(|i| i.labels.as_slice()).collect();
        CropBatch {
            normal,
            neck,
            targets: targets(&labels, &self.cfg.tasks, self.beta, device),
        }
    }
}

/// Trains the recognition network for `tasks` on `samples` (images in `images`) and writes it
/// to `out/attributes.bpk`; returns the network (on `device`'s autodiff form) and the last
/// epoch's mean loss.
pub fn train_recognizer(
    cfg: &AttributeTrainConfig,
    tasks: &[AttributeTask],
    samples: &[AttributeSample],
    images: &Path,
    out: &Path,
    device: &Device,
    on_event: &mut dyn FnMut(&AttributeEvent),
) -> Result<(AttributeNet, AttributeNetConfig, f32)> {
    cfg.check(samples, tasks)?;
    let ncfg = AttributeNetConfig::new(cfg.arch, tasks.to_vec(), cfg.input)?;
    create_dir_all(out)?;
    let dataset = Arc::new(CropDataset::new(
        samples,
        images,
        ncfg.clone(),
        cfg.augment,
        cfg.limits,
        cfg.seed,
    ));
    let ad = device.clone().autodiff();
    let mut model = ncfg.init(&ad);
    let mut stepper = Stepper::new(cfg, "attribute network");
    let per_epoch = steps_per_epoch(dataset.len(), cfg.batch).max(1);
    on_event(&AttributeEvent::Start {
        garments: dataset.len(),
        steps_per_epoch: per_epoch,
    });
    let mut last = f32::NAN;
    for epoch in 0..cfg.epochs {
        let t0 = Instant::now();
        dataset.epoch.store(epoch as u64, Ordering::Relaxed);
        let loader = DataLoaderBuilder::new(CropBatcher {
            cfg: ncfg.clone(),
            beta: cfg.beta,
        })
        .batch_size(cfg.batch.min(dataset.len()))
        .shuffle(cfg.seed.wrapping_add(epoch as u64))
        .num_workers(cfg.workers.max(1))
        .set_device(ad.clone())
        .build(dataset.clone());
        let lr = cfg.optimizer.lr_at(epoch);
        for batch in loader.iter().take(per_epoch) {
            let batch =
                batch.map_err(|e| Error::Training(format!("loading an attribute batch: {e}")))?;
            if batch.targets.iter().all(Option::is_none) {
                continue;
            }
            let logits = model.forward(batch.normal, batch.neck);
            let loss = attribute_loss(logits, &batch.targets);
            model = stepper.step(model, loss, lr, epoch)?;
        }
        last = stepper.end_epoch(epoch, cfg.epochs, t0, on_event);
    }
    crate::model::sync::SyncRunningStats::sync_running_stats(&model.trunk);
    let model = model.valid();
    save_module(
        &model,
        &AttributeModelConfig::Recognition(ncfg.clone()),
        &out.join(WEIGHTS),
    )?;
    Ok((model, ncfg, last))
}

/// The 3×3 window of a `(c, h, w)` host map around cell `(x, y)`, zeros outside the map (the
/// head's 3×3 convolution pads with zeros): `c × 3 × 3` values.
pub fn window(map: &[f32], [c, h, w]: [usize; 3], x: usize, y: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(c * 9);
    for ch in 0..c {
        for dy in 0..3 {
            for dx in 0..3 {
                let (yy, xx) = ((y + dy) as isize - 1, (x + dx) as isize - 1);
                let inside = yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w;
                out.push(if inside {
                    map[(ch * h + yy as usize) * w + xx as usize]
                } else {
                    0.0
                });
            }
        }
    }
    out
}

/// Trains attribute heads for `tasks` on `detector`'s frozen features of `samples`' images
/// (at the detector's input size, scale 1, no flip) and writes them to `out/attributes.bpk`.
/// Each garment is read at the cell of its box centre. Returns the heads and the last
/// epoch's mean loss.
#[allow(clippy::too_many_arguments)]
pub fn train_detector_heads(
    cfg: &AttributeTrainConfig,
    tasks: &[AttributeTask],
    detector: &Detector,
    samples: &[AttributeSample],
    images: &Path,
    out: &Path,
    on_event: &mut dyn FnMut(&AttributeEvent),
) -> Result<(AttributeHeads, AttributeHeadsConfig, f32)> {
    cfg.check(samples, tasks)?;
    let hcfg = AttributeHeadsConfig::new(detector.config().clone(), tasks.to_vec())?;
    create_dir_all(out)?;
    let labelled: Vec<&AttributeSample> = samples
        .iter()
        .filter(|s| s.labels.iter().any(Option::is_some))
        .collect();
    // Windows, image by image (each image's features once).
    let mut by_image: std::collections::BTreeMap<&Path, Vec<&AttributeSample>> = Default::default();
    for s in &labelled {
        by_image.entry(s.image.as_path()).or_default().push(s);
    }
    let total = by_image.len();
    let mut windows: Vec<Vec<f32>> = Vec::with_capacity(labelled.len());
    let mut labels: Vec<&[Option<Vec<super::Mark>>]> = Vec::with_capacity(labelled.len());
    let mut channels = 0;
    for (done, (image, garments)) in by_image.into_iter().enumerate() {
        on_event(&AttributeEvent::Features { done, total });
        let path = images.join(image);
        let img = cfg.limits.open_rgb(&path)?;
        let f = detector.features(&img)?;
        channels = f.dims[0];
        for s in garments {
            let whole = [0.0, 0.0, img.width() as f32, img.height() as f32];
            let [x, y, w, h] = s.bbox.unwrap_or(whole);
            let (cx, cy) = f.cell([x + w / 2.0, y + h / 2.0]);
            windows.push(window(&f.data, f.dims, cx, cy));
            labels.push(&s.labels);
        }
    }
    on_event(&AttributeEvent::Features { done: total, total });
    let device = detector.device().clone();
    let ad = device.autodiff();
    let mut heads = hcfg.init(&ad);
    let mut stepper = Stepper::new(cfg, "attribute heads");
    let n = windows.len();
    let batch = cfg.batch.min(n);
    let per_epoch = steps_per_epoch(n, batch).max(1);
    on_event(&AttributeEvent::Start {
        garments: n,
        steps_per_epoch: per_epoch,
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut last = f32::NAN;
    for epoch in 0..cfg.epochs {
        let t0 = Instant::now();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let lr = cfg.optimizer.lr_at(epoch);
        for step in 0..per_epoch {
            let rows = &order[step * batch..((step + 1) * batch).min(n)];
            let data: Vec<f32> = rows.iter().flat_map(|&r| windows[r].clone()).collect();
            let x =
                Tensor::<4>::from_data(TensorData::new(data, [rows.len(), channels, 3, 3]), &ad);
            let y = heads.forward(x);
            let sigma = y.dims()[1];
            let centre = y
                .slice([0..rows.len(), 0..sigma, 1..2, 1..2])
                .reshape([rows.len(), sigma]);
            let mut at = 0;
            let logits: Vec<Tensor<2>> = tasks
                .iter()
                .map(|t| {
                    let l = centre.clone().slice([0..rows.len(), at..at + t.classes]);
                    at += t.classes;
                    l
                })
                .collect();
            let batch_labels: Vec<&[Option<Vec<super::Mark>>]> =
                rows.iter().map(|&r| labels[r]).collect();
            let tg = targets(&batch_labels, tasks, cfg.beta, &ad);
            if tg.iter().all(Option::is_none) {
                continue;
            }
            let loss = attribute_loss(logits, &tg);
            heads = stepper.step(heads, loss, lr, epoch)?;
        }
        last = stepper.end_epoch(epoch, cfg.epochs, t0, on_event);
    }
    let heads = heads.valid();
    save_module(
        &heads,
        &AttributeModelConfig::DetectorHeads(hcfg.clone()),
        &out.join(WEIGHTS),
    )?;
    Ok((heads, hcfg, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_pad_with_zeros_like_the_convolution() {
        // One channel, 2×2 map.
        let map = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(
            window(&map, [1, 2, 2], 0, 0),
            [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0]
        );
        assert_eq!(
            window(&map, [1, 2, 2], 1, 1),
            [1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]
        );
    }
}
