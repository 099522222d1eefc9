//! What a training run is: [`TrainConfig`] (saved as `train.json` in the run directory) with its
//! nested augmentation and optimizer settings, the two presets (the quick CPU demo on synthetic
//! data, and CenterNet's own schedule) and [`TrainOverrides`], which turns command-line choices
//! into a [`TrainPlan`] so that every default lives here and not in a binary.

use std::path::{Path, PathBuf};

use burn::optim::AdamConfig;
use burn::optim::decay::WeightDecayConfig;
use serde::{Deserialize, Serialize};

use super::amp::AmpConfig;
use super::loss::LossWeights;
use crate::Precision;
use crate::codec::Scheme;
use crate::data::augment::AugmentConfig;
use crate::error::{Error, Result, invalid};
use crate::io::{Limits, default_image_dir};
use crate::model::{Arch, CenterNetConfig};

/// Adam and its step learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OptimizerConfig {
    /// Learning rate at the start (already scaled for the batch).
    pub lr: f64,
    /// `(epoch, multiplier)`: from that 0-based epoch on the rate is `lr · multiplier`.
    pub lr_steps: Vec<(usize, f64)>,
    /// Adam's β₁.
    pub beta1: f32,
    /// Adam's β₂.
    pub beta2: f32,
    /// Adam's ε.
    pub epsilon: f32,
    /// L2 weight decay (none in CenterNet).
    pub weight_decay: Option<f32>,
}

impl OptimizerConfig {
    /// Adam with PyTorch's defaults (β 0.9/0.999, ε 1e-8: `torch.optim.Adam`, which
    /// CenterNet's `main.py` uses with only the learning rate set), no weight decay, no steps.
    /// (Burn's own default ε is 1e-5: after 30 steps on the fixtures the loss is 0.58 % away
    /// from the official run with it, 0.07 % with the official run set to 1e-5 too.)
    pub fn adam(lr: f64) -> Self {
        OptimizerConfig {
            lr,
            lr_steps: Vec::new(),
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay: None,
        }
    }

    /// Refuses settings Adam cannot run with: a rate or ε that is not a positive number, β
    /// outside [0, 1), a negative or non-finite weight decay, a step multiplier that is not a
    /// positive number.
    pub fn check(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            invalid!("learning rate {} must be a positive number", self.lr);
        }
        if let Some((e, f)) = self
            .lr_steps
            .iter()
            .find(|(_, f)| !(f.is_finite() && *f > 0.0))
        {
            invalid!("learning-rate step {e}:{f}: the multiplier must be a positive number");
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                invalid!("Adam's {name} is {b}; it must be in [0, 1)");
            }
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            invalid!("Adam's epsilon {} must be a positive number", self.epsilon);
        }
        if let Some(w) = self.weight_decay
            && !(w.is_finite() && w >= 0.0)
        {
            invalid!("weight decay {w} must be a number ≥ 0");
        }
        Ok(())
    }

    /// CenterNet's schedule for `epochs` at `batch`: [`scaled_lr`], ×0.1 at 9/14 and ×0.01 at
    /// 12/14 of the epochs (90 and 120 of 140).
    pub fn centernet(batch: usize, epochs: usize) -> Self {
        OptimizerConfig {
            lr_steps: centernet_steps(epochs),
            ..Self::adam(scaled_lr(batch))
        }
    }

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

    /// Burn's Adam with these settings.
    pub fn adam_config(&self) -> AdamConfig {
        AdamConfig::new()
            .with_beta_1(self.beta1)
            .with_beta_2(self.beta2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(self.weight_decay.map(WeightDecayConfig::new))
    }
}

/// The validation AP that ranks a run's epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BestMetric {
    /// Box AP (detection).
    Box,
    /// Landmark AP (AP_pt, DeepFashion2's landmark task).
    #[default]
    Landmarks,
}

impl std::str::FromStr for BestMetric {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "box" => Ok(BestMetric::Box),
            "landmarks" | "pt" => Ok(BestMetric::Landmarks),
            _ => Err(format!("`{s}`: box or landmarks")),
        }
    }
}

impl std::fmt::Display for BestMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BestMetric::Box => "box",
            BestMetric::Landmarks => "landmarks",
        })
    }
}

/// How validations select the best checkpoint (`model-best.bpk`) and stop a run early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Selection {
    /// The AP that ranks validations.
    #[serde(default)]
    pub metric: BestMetric,
    /// Stop after this many validations in a row without a better value (`None`: never).
    #[serde(default)]
    pub patience: Option<usize>,
}

impl Selection {
    /// The ranked value of a validation's `(AP_box, AP_pt)`.
    pub fn value(&self, (ap_box, ap_pt): (f64, f64)) -> f64 {
        match self.metric {
            BestMetric::Box => ap_box,
            BestMetric::Landmarks => ap_pt,
        }
    }
}

/// The process, its libraries and the data loader's queue, without the network (measured:
/// about 90 MB resident for res18-slim at 64 × 64).
const PROCESS_BYTES: f64 = 150e6;

/// [`TrainConfig::estimated_memory`]: bytes at a training step's peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryEstimate {
    /// What does not grow with the batch: the process, the weights, their gradients and
    /// Adam's state.
    pub fixed: u64,
    /// The activations one image of the batch keeps for the backward pass.
    pub per_image: u64,
    /// Images per step.
    pub batch: usize,
}

impl MemoryEstimate {
    /// The whole step's bytes.
    pub fn total(&self) -> u64 {
        self.fixed
            .saturating_add(self.per_image.saturating_mul(self.batch as u64))
    }
}

impl std::fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const GIB: f64 = (1u64 << 30) as f64;
        write!(
            f,
            "{:.1} GiB ({:.2} GiB per image × batch {} + {:.2} GiB for the weights, their \
             gradients, Adam's state and the process)",
            self.total() as f64 / GIB,
            self.per_image as f64 / GIB,
            self.batch,
            self.fixed as f64 / GIB
        )
    }
}

/// CenterNet's base rate: 1.25e-4 for a batch of 32, scaled linearly.
pub fn scaled_lr(batch: usize) -> f64 {
    1.25e-4 * batch as f64 / 32.0
}

fn centernet_steps(epochs: usize) -> Vec<(usize, f64)> {
    [(epochs * 9 / 14, 0.1), (epochs * 12 / 14, 0.01)]
        .into_iter()
        .filter(|&(e, _)| e > 0)
        .collect()
}

/// Parses `65:0.4,85:0.04` (epoch:multiplier, epochs increasing).
pub fn parse_lr_steps(s: &str) -> Result<Vec<(usize, f64)>> {
    let mut out: Vec<(usize, f64)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((e, m)) = part.split_once(':') else {
            invalid!("lr step `{part}` is not epoch:multiplier");
        };
        let Ok(e) = e.trim().parse::<usize>() else {
            invalid!("bad epoch in lr step `{part}`");
        };
        let Ok(m) = m.trim().parse::<f64>() else {
            invalid!("bad multiplier in lr step `{part}`");
        };
        if out.last().is_some_and(|&(p, _)| p >= e) {
            invalid!("lr step epochs must increase: `{s}`");
        }
        out.push((e, m));
    }
    Ok(out)
}

/// Evaluate on a validation set every `every` epochs (and after the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// COCO-style DeepFashion2 JSON.
    pub data: PathBuf,
    /// The folder of its images.
    pub images: PathBuf,
    /// Epochs between validations.
    pub every: usize,
}

/// Everything a run needs; saved as `train.json` in the run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The network (its head layout fixes the landmark scheme).
    pub model: CenterNetConfig,
    /// COCO-style DeepFashion2 JSON.
    pub data: PathBuf,
    /// The folder of its images.
    pub images: PathBuf,
    /// Images per step.
    pub batch: usize,
    /// Passes over the data.
    pub epochs: usize,
    /// Adam and its learning-rate schedule.
    pub optimizer: OptimizerConfig,
    /// Weights of the six loss terms.
    pub loss: LossWeights,
    /// Input size and CenterNet's augmentation (random scale/shift, flip, colour).
    pub augment: AugmentConfig,
    /// Seed of the initial weights, the shuffling and the augmentation.
    pub seed: u64,
    /// Data-loading threads.
    pub workers: usize,
    /// Objects per image that get targets (CenterNet: 32).
    pub max_objs: usize,
    /// Weights the run started from, if any.
    pub init: Option<PathBuf>,
    /// Validation during training (AP columns of metrics.csv).
    #[serde(default)]
    pub val: Option<Validation>,
    /// Fine-tuning for one category (Aggregation §2.2): only that category's garments are
    /// trained on (images without one are left out). Such runs form a model set whose landmark
    /// heads serve their category (`--landmarks centernet:<dir>`).
    #[serde(default)]
    pub finetune_category: Option<usize>,
    /// Shards per step (`--devices N` runs one per device): each shard runs the network on its
    /// part of the batch with its own BatchNorm statistics and loss normalisers, as CenterNet's
    /// `DataParallel`; the shard losses are weighted by their share of the batch and the
    /// gradients summed ([`parallel`](super::parallel)). 1 = the whole batch at once.
    #[serde(default = "one")]
    pub shards: usize,
    /// The float type the network computes in (`--precision`) and f16's loss scale; the
    /// weights stay f32 ([`amp`](super::amp)).
    #[serde(default)]
    pub amp: AmpConfig,
    /// Which validation AP keeps `model-best.bpk`, and early stopping.
    #[serde(default)]
    pub selection: Selection,
    /// The largest fraction of the listed training images that may be unusable (missing,
    /// unreadable, too large, or of another size than the annotations say) and skipped: above
    /// it the run refuses to start, as a wrong image folder or a half-copied data set looks
    /// like that. Default 0.5; may change on resume.
    #[serde(default = "half")]
    pub max_unusable: f64,
    /// How large an annotation file or image the run reads (training and validation sets). Not
    /// saved: a property of the process reading the files, not of the run.
    #[serde(skip)]
    pub limits: Limits,
}

fn one() -> usize {
    1
}

fn half() -> f64 {
    0.5
}

/// The leaves where `saved` and `given` differ: `path: saved X, given Y`.
fn json_differences(
    path: &str,
    saved: &serde_json::Value,
    given: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (saved, given) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let null = Value::Null;
                json_differences(
                    &p,
                    a.get(k.as_str()).unwrap_or(&null),
                    b.get(k.as_str()).unwrap_or(&null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(format!("{path}: saved {a}, given {b}")),
        _ => {}
    }
}

/// The synthetic training and held-out sets of the demo: (folder, images, seed).
pub const DEMO_SETS: [(&str, usize, u64); 2] = [
    ("datasets/synthetic", 256, 317),
    ("datasets/synthetic-val", 48, 9001),
];

impl TrainConfig {
    /// CenterNet's multi-pose recipe on `data`: mDLA-34 (DeepMark++'s edge model) at 512,
    /// batch 32, 140 epochs, [`OptimizerConfig::centernet`], augmentation on, 32 objects.
    pub fn centernet(data: &Path, scheme: Scheme) -> Self {
        let (batch, epochs) = (32, 140);
        TrainConfig {
            model: CenterNetConfig::new(Arch::Mdla34, scheme.layout()),
            data: data.to_path_buf(),
            images: default_image_dir(data),
            batch,
            epochs,
            optimizer: OptimizerConfig::centernet(batch, epochs),
            loss: LossWeights::centernet(),
            augment: AugmentConfig::train(512),
            seed: 317,
            workers: 2,
            max_objs: crate::data::dataset::MAX_OBJS,
            init: None,
            finetune_category: None,
            shards: 1,
            amp: AmpConfig::default(),
            selection: Selection::default(),
            max_unusable: 0.5,
            limits: Limits::default(),
            val: Some(Validation {
                data: data.to_path_buf(),
                images: default_image_dir(data),
                every: 5,
            }),
        }
    }

    /// The quick CPU demo (`cargo xtask train` with no arguments): res18-slim at 128, batch 8,
    /// 50 epochs, lr 1e-3 (×0.1 from epoch 43) on the synthetic set ([`DEMO_SETS`]), validated
    /// on the held-out synthetic set every 10 epochs.
    pub fn demo() -> Self {
        let train = demo_data();
        let val = Path::new(DEMO_SETS[1].0).join("train.json");
        TrainConfig {
            model: CenterNetConfig::new(Arch::Res18Slim, Scheme::Deepmark62.layout()),
            batch: 8,
            epochs: 50,
            optimizer: OptimizerConfig {
                lr_steps: vec![(42, 0.1)],
                ..OptimizerConfig::adam(1e-3)
            },
            augment: AugmentConfig::train(128),
            val: Some(Validation {
                images: default_image_dir(&val),
                data: val,
                every: 10,
            }),
            ..Self::centernet(&train, Scheme::Deepmark62)
        }
    }

    /// Network input side.
    pub fn input_size(&self) -> usize {
        self.augment.input_size
    }

    /// An estimate of the memory a training step takes at its peak on a CPU backend (flex),
    /// made from the configuration alone: the process and the loader, the weights with their
    /// gradients and Adam's two moments (16 bytes per parameter of
    /// [`CenterNetConfig::estimated_params`]), and per image of the batch
    /// the activations kept for the backward pass, which grow with the input's area (halved in
    /// f16 and bf16). The per-pixel costs come from the peak resident memory of one-step
    /// `train` runs at 512 × 512 (`benches/RESULTS.md`, "Training memory per architecture"):
    /// the estimate meets the batch-4 peak and lies within 0.93–1.55× of the batch-1 and
    /// batch-2 peaks. A backbone that is none of the named architectures takes its family's
    /// largest. GPU backends keep about the same activations in device memory.
    pub fn estimated_memory(&self) -> Result<MemoryEstimate> {
        // Bytes per input pixel per image, f32: what a one-step run of batch 4 at 512 × 512
        // measured beyond the fixed part (see above). DLA-34 is taken as mDLA-34 (the same
        // network with deformable convolutions in the up-sampling path; a DCN training step at
        // 512 takes over 15 minutes on the measuring CPU, so it was not measured).
        const PER_PIXEL: [(Arch, f64); 6] = [
            (Arch::Res18Slim, 505.0),
            (Arch::Res18, 1067.0),
            (Arch::Res50, 2433.0),
            (Arch::Mdla34, 2490.0),
            (Arch::Dla34, 2490.0),
            (Arch::Hourglass104, 3828.0),
        ];
        let params = self.model.estimated_params()?;
        let family = |a: &Arch| {
            std::mem::discriminant(&a.backbone()) == std::mem::discriminant(&self.model.backbone)
        };
        let per_pixel = match PER_PIXEL
            .iter()
            .find(|(a, _)| a.backbone() == self.model.backbone)
        {
            Some(&(_, b)) => b,
            None => PER_PIXEL
                .iter()
                .filter(|(a, _)| family(a))
                .map(|&(_, b)| b)
                .fold(0.0, f64::max),
        };
        let half = matches!(self.amp.precision, Precision::F16 | Precision::Bf16);
        let per_image =
            per_pixel * (self.input_size() as f64).powi(2) * if half { 0.5 } else { 1.0 };
        Ok(MemoryEstimate {
            fixed: (PROCESS_BYTES + 16.0 * params) as u64,
            per_image: per_image as u64,
            batch: self.batch,
        })
    }

    /// Fit the model's heads to the taxonomy of the training data as `choice` says (read from
    /// the file's `categories` by default): a taxonomy other than the model's becomes the
    /// model's, grouped one channel per landmark (`by_name`: landmarks of the same name share
    /// one). DeepFashion2 data keeps the model's scheme. Returns what was inferred (flip pairs,
    /// default sigmas) for the user. Only the file's `categories` are parsed.
    pub fn fit_taxonomy(
        &mut self,
        choice: &crate::garment::TaxonomyChoice,
        by_name: bool,
    ) -> Result<Vec<String>> {
        let cats = crate::data::deepfashion2::read_categories(&self.data, &self.limits)?;
        let declared: Vec<_> = cats.iter().map(|c| c.declared()).collect();
        let (tax, notes) = crate::garment::spec::resolve(choice, &self.data, &declared)?;
        let current = self.model.grouping()?;
        if current.taxonomy() == tax && !by_name {
            return Ok(notes);
        }
        let grouping = if by_name {
            crate::codec::Grouping::by_name(tax)?
        } else {
            crate::codec::Grouping::identity(tax)
        };
        self.model.set_grouping(&grouping);
        Ok(notes)
    }

    /// The landmark scheme of the model's heads.
    pub fn scheme(&self) -> Result<Scheme> {
        match Scheme::from_layout(&self.model.layout) {
            Some(s) => Ok(s),
            None => invalid!(
                "the model's head layout {:?} is not one of the landmark schemes",
                self.model.layout
            ),
        }
    }

    /// What a resumed run may change: the epoch count, validation, early stopping's patience,
    /// the unusable-image tolerance and the loader threads (none changes what a step
    /// computes). Every other difference between `self` and the
    /// run's `saved` configuration is listed, one line each with the field's path and both
    /// values (empty: the run may resume with `self`).
    pub fn resume_conflicts(&self, saved: &TrainConfig) -> Vec<String> {
        const MAY_CHANGE: [&str; 4] = ["epochs", "val", "workers", "max_unusable"];
        let as_json = |c: &TrainConfig| {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                for k in MAY_CHANGE {
                    m.remove(k);
                }
                // Early stopping's patience too (the ranked metric may not change).
                if let Some(s) = m.get_mut("selection").and_then(|s| s.as_object_mut()) {
                    s.remove("patience");
                }
            }
            v
        };
        let mut out = Vec::new();
        json_differences("", &as_json(saved), &as_json(self), &mut out);
        out
    }

    /// Checks the settings that would otherwise fail in the middle of a run.
    pub fn check(&self) -> Result<()> {
        if self.batch == 0 || self.epochs == 0 {
            invalid!("batch and epochs must be positive");
        }
        // The limits of the inference options' file (`DetectorOptions::check`), and bounds no
        // run comes near, checked before anything is allocated.
        if self.batch > 1024 {
            invalid!("batch is {}; it must be in 1..=1024", self.batch);
        }
        if self.input_size() > 4096 {
            invalid!(
                "input size is {}; it must be at most 4096",
                self.input_size()
            );
        }
        if self.epochs > 1_000_000 || self.workers > 1024 {
            invalid!(
                "{} epochs and {} loader threads: at most 1,000,000 and 1,024",
                self.epochs,
                self.workers
            );
        }
        if !(0.0..=1.0).contains(&self.max_unusable) {
            invalid!(
                "max_unusable is {}; it must be a fraction in [0, 1]",
                self.max_unusable
            );
        }
        self.optimizer.check()?;
        if !self
            .loss
            .0
            .into_array()
            .iter()
            .all(|w| w.is_finite() && *w >= 0.0)
        {
            invalid!(
                "loss weights {:?} must be numbers ≥ 0",
                self.loss.0.into_array()
            );
        }
        if self.shards == 0 || self.shards > self.batch {
            invalid!(
                "{} shards (devices) for a batch of {}: each shard needs at least one image",
                self.shards,
                self.batch
            );
        }
        self.amp.check()?;
        let taxonomy = self.model.grouping()?.taxonomy();
        if let Some(c) = self.finetune_category
            && taxonomy.category(c).is_none()
        {
            invalid!(
                "fine-tuning category {c} is not a category of the taxonomy {} ({})",
                taxonomy.name,
                taxonomy.category_list()
            );
        }
        self.model.backbone.check_input_size(self.input_size())
    }
}

/// Command-line choices on top of a preset: `None` keeps the preset's value.
#[derive(Debug, Clone, Default)]
pub struct TrainOverrides {
    /// Training data; without it the demo preset is used.
    pub data: Option<PathBuf>,
    /// Folder of its images (default: `image/` beside the annotations).
    pub images: Option<PathBuf>,
    /// The network's architecture.
    pub arch: Option<Arch>,
    /// The landmark scheme.
    pub scheme: Option<Scheme>,
    /// Square input side in pixels.
    pub input_size: Option<usize>,
    /// Images per step.
    pub batch: Option<usize>,
    /// Passes over the data.
    pub epochs: Option<usize>,
    /// Adam's learning rate.
    pub lr: Option<f64>,
    /// `(epoch, factor)` steps of the learning rate.
    pub lr_steps: Option<Vec<(usize, f64)>>,
    /// Weights of the six loss terms.
    pub loss: Option<LossWeights>,
    /// Turns augmentation off.
    pub no_augment: bool,
    /// Weights to start from.
    pub init: Option<PathBuf>,
    /// Seed of the initial weights, the shuffling and the augmentation.
    pub seed: Option<u64>,
    /// Data-loading threads.
    pub workers: Option<usize>,
    /// Validation data (images in `image/` beside it).
    pub val: Option<PathBuf>,
    /// Validation every N epochs; 0 = never.
    pub val_every: Option<usize>,
    /// No validation during training and no final evaluation.
    pub no_eval: bool,
    /// The run folder.
    pub out: Option<PathBuf>,
    /// Fine-tune for this category only ([`TrainConfig::finetune_category`]).
    pub finetune_category: Option<usize>,
    /// Data-parallel shards per step ([`TrainConfig::shards`]).
    pub shards: Option<usize>,
    /// The compute type ([`TrainConfig::amp`]).
    pub precision: Option<Precision>,
    /// Adam's ε.
    pub adam_eps: Option<f32>,
    /// Adam's β₁.
    pub beta1: Option<f32>,
    /// Adam's β₂.
    pub beta2: Option<f32>,
    /// L2 weight decay (0: none).
    pub weight_decay: Option<f32>,
    /// The validation AP that picks `model-best.bpk` ([`TrainConfig::selection`]).
    pub best_by: Option<BestMetric>,
    /// Stop after this many validations without a better AP (0: never).
    pub patience: Option<usize>,
    /// [`TrainConfig::max_unusable`].
    pub max_unusable: Option<f64>,
}

/// A resolved run: its config, run directory and final evaluation set.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainPlan {
    /// The run's configuration.
    pub config: TrainConfig,
    /// The architecture `config.model` was built from.
    pub arch: Arch,
    /// The run folder.
    pub out: PathBuf,
    /// The demo preset (synthetic data, generated on first use).
    pub demo: bool,
    /// Evaluate the final weights on this `(json, images)` (none with `no_eval`).
    pub final_eval: Option<(PathBuf, PathBuf)>,
}

impl TrainOverrides {
    /// The plan of resuming the run whose saved configuration is `saved` (its `train.json`):
    /// the saved configuration, with the choices a resumed run may change applied (`epochs`,
    /// `workers`, `val`, `val_every`, `no_eval`, `patience`, `max_unusable`). Any other choice that differs from the saved
    /// value is refused: the error lists each one as `field: saved X, given Y`.
    pub fn resume_plan(&self, saved: TrainConfig) -> Result<TrainPlan> {
        fn differs<T: PartialEq + std::fmt::Debug>(
            out: &mut Vec<String>,
            name: &str,
            given: Option<T>,
            saved: T,
        ) {
            if let Some(g) = given
                && g != saved
            {
                out.push(format!("{name}: saved {saved:?}, given {g:?}"));
            }
        }
        let mut conflicts = Vec::new();
        let c = &saved;
        // Paths compare by the files they name (`./a.json` is `a.json`).
        let path_differs =
            |out: &mut Vec<String>, name: &str, given: Option<&PathBuf>, saved: &Path| {
                if let Some(g) = given
                    && !crate::io::same_path(g, saved)
                {
                    out.push(format!("{name}: saved {saved:?}, given {g:?}"));
                }
            };
        path_differs(&mut conflicts, "data", self.data.as_ref(), &c.data);
        path_differs(&mut conflicts, "images", self.images.as_ref(), &c.images);
        let arch = Arch::ALL
            .into_iter()
            .find(|a| a.backbone() == c.model.backbone);
        if let Some(a) = self.arch
            && arch != Some(a)
        {
            let saved = arch.map_or("another backbone", Arch::name);
            conflicts.push(format!("arch: saved {saved}, given {}", a.name()));
        }
        differs(&mut conflicts, "scheme", self.scheme, c.scheme()?);
        differs(
            &mut conflicts,
            "input_size",
            self.input_size,
            c.input_size(),
        );
        differs(&mut conflicts, "batch", self.batch, c.batch);
        differs(&mut conflicts, "lr", self.lr, c.optimizer.lr);
        differs(
            &mut conflicts,
            "lr_steps",
            self.lr_steps.as_ref(),
            &c.optimizer.lr_steps,
        );
        differs(&mut conflicts, "loss", self.loss, c.loss);
        if self.no_augment && c.augment != AugmentConfig::plain(c.input_size()) {
            conflicts.push("no_augment: saved augmentation on, given off".into());
        }
        path_differs(
            &mut conflicts,
            "init",
            self.init.as_ref(),
            c.init.as_deref().unwrap_or(Path::new("")),
        );
        differs(&mut conflicts, "seed", self.seed, c.seed);
        differs(
            &mut conflicts,
            "finetune_category",
            self.finetune_category.map(Some),
            c.finetune_category,
        );
        differs(&mut conflicts, "shards", self.shards, c.shards);
        differs(&mut conflicts, "precision", self.precision, c.amp.precision);
        differs(
            &mut conflicts,
            "adam_eps",
            self.adam_eps,
            c.optimizer.epsilon,
        );
        differs(&mut conflicts, "beta1", self.beta1, c.optimizer.beta1);
        differs(&mut conflicts, "beta2", self.beta2, c.optimizer.beta2);
        differs(
            &mut conflicts,
            "weight_decay",
            self.weight_decay,
            c.optimizer.weight_decay.unwrap_or(0.0),
        );
        differs(&mut conflicts, "best_by", self.best_by, c.selection.metric);
        if !conflicts.is_empty() {
            return Err(Error::Training(format!(
                "a resumed run keeps its saved configuration except epochs, validation, patience, \
                 max_unusable and loader threads; these choices differ from it:\n  {}",
                conflicts.join("\n  ")
            )));
        }
        let Some(arch) = arch else {
            return Err(Error::Invalid(
                "the run's backbone is none of the named architectures".into(),
            ));
        };
        let mut c = saved;
        if let Some(e) = self.epochs {
            c.epochs = e;
        }
        self.apply_run_controls(&mut c);
        if let Some(v) = &self.val {
            c.val = Some(Validation {
                data: v.clone(),
                images: default_image_dir(v),
                every: c.val.as_ref().map_or(5, |v| v.every),
            });
        }
        if let Some(every) = self.val_every {
            match &mut c.val {
                Some(v) if every > 0 => v.every = every,
                _ => c.val = None,
            }
        }
        let final_eval = c.val.as_ref().map(|v| (v.data.clone(), v.images.clone()));
        if self.no_eval {
            c.val = None;
        }
        let demo = c.data == demo_data();
        Ok(self.finish(c, arch, demo, final_eval))
    }

    /// Applies the choices to the preset they select. Rules beyond "given wins": the CenterNet
    /// rate follows the batch, its steps follow the epochs (the demo's step only holds for its
    /// own 50 epochs), and validation images are `image/` beside an explicit `--val`, else the
    /// training images.
    pub fn plan(&self) -> TrainPlan {
        self.plan_from(None)
            .expect("a preset's backbone is a named architecture")
    }

    /// [`plan`](Self::plan) on `base` (a configuration file in `train.json`'s format) instead of
    /// a preset, when given: the file's values stand where no choice is made, with the same
    /// rules. Errors when the file's backbone is none of the named architectures and no `arch`
    /// is chosen.
    pub fn plan_from(&self, base: Option<TrainConfig>) -> Result<TrainPlan> {
        let from_file = base.is_some();
        let demo = match &base {
            Some(b) => self.data.is_none() && b.data == demo_data(),
            None => self.data.is_none(),
        };
        let mut c = match (base, &self.data) {
            (Some(mut b), Some(d)) => {
                b.data = d.clone();
                b.images = default_image_dir(d);
                if let Some(v) = &mut b.val {
                    v.images = b.images.clone();
                    v.data = d.clone();
                }
                b
            }
            (Some(b), None) => b,
            (None, None) => TrainConfig::demo(),
            (None, Some(d)) => TrainConfig::centernet(d, self.scheme.unwrap_or(Scheme::Deepmark62)),
        };
        if let Some(i) = &self.images {
            c.images = i.clone();
            if !demo && let Some(v) = &mut c.val {
                v.images = i.clone();
            }
        }
        let named = Arch::ALL
            .into_iter()
            .find(|a| a.backbone() == c.model.backbone);
        let arch = match (self.arch, named, from_file) {
            (Some(a), _, _) => a,
            (None, Some(a), true) => a,
            (None, None, true) => {
                return Err(Error::Invalid(
                    "the configuration's backbone is none of the named architectures; choose one"
                        .into(),
                ));
            }
            (None, _, false) => {
                if demo {
                    Arch::Res18Slim
                } else {
                    Arch::Mdla34
                }
            }
        };
        // The file's network stands unless an architecture or scheme is chosen.
        if !from_file || self.arch.is_some() || self.scheme.is_some() {
            let scheme = match self.scheme {
                Some(s) => s,
                None if from_file => c.scheme()?,
                None => Scheme::Deepmark62,
            };
            c.model = CenterNetConfig::new(arch, scheme.layout());
        }
        if let Some(s) = self.input_size {
            c.augment.input_size = s;
        }
        if let Some(b) = self.batch {
            c.batch = b;
            if !demo {
                c.optimizer.lr = scaled_lr(b);
            }
        }
        if let Some(e) = self.epochs {
            c.epochs = e;
            c.optimizer.lr_steps = centernet_steps(e);
        }
        if let Some(lr) = self.lr {
            c.optimizer.lr = lr;
        }
        if let Some(s) = &self.lr_steps {
            c.optimizer.lr_steps = s.clone();
        }
        if let Some(e) = self.adam_eps {
            c.optimizer.epsilon = e;
        }
        if let Some(b) = self.beta1 {
            c.optimizer.beta1 = b;
        }
        if let Some(b) = self.beta2 {
            c.optimizer.beta2 = b;
        }
        if let Some(w) = self.weight_decay {
            c.optimizer.weight_decay = (w > 0.0).then_some(w);
        }
        if let Some(l) = self.loss {
            c.loss = l;
        }
        if self.no_augment {
            c.augment = AugmentConfig::plain(c.augment.input_size);
        }
        if let Some(i) = &self.init {
            c.init = Some(i.clone());
        }
        if let Some(f) = self.finetune_category {
            c.finetune_category = Some(f);
        }
        if let Some(n) = self.shards {
            c.shards = n;
        }
        if let Some(p) = self.precision {
            c.amp.precision = p;
        }
        if let Some(m) = self.best_by {
            c.selection.metric = m;
        }
        self.apply_run_controls(&mut c);
        c.seed = self.seed.unwrap_or(c.seed);
        if let Some(v) = &self.val {
            let every = c.val.as_ref().map_or(5, |v| v.every);
            c.val = Some(Validation {
                images: default_image_dir(v),
                data: v.clone(),
                every,
            });
        }
        let final_eval = c.val.as_ref().map(|v| (v.data.clone(), v.images.clone()));
        if let Some(every) = self.val_every
            && let Some(v) = &mut c.val
        {
            v.every = every;
        }
        if self.no_eval || c.val.as_ref().is_some_and(|v| v.every == 0) {
            c.val = None;
        }
        Ok(self.finish(c, arch, demo, final_eval))
    }

    /// The choices that do not change what a step computes, applied alike to a new run and a
    /// resumed one: loader threads, early stopping's patience, the unusable-image tolerance.
    fn apply_run_controls(&self, c: &mut TrainConfig) {
        if let Some(w) = self.workers {
            c.workers = w;
        }
        if let Some(p) = self.patience {
            c.selection.patience = (p > 0).then_some(p);
        }
        if let Some(m) = self.max_unusable {
            c.max_unusable = m;
        }
    }

    /// The plan of `config`: the run folder (`out`, else `runs/demo` or `runs/train`) and the
    /// final evaluation on `final_eval` unless `no_eval`.
    fn finish(
        &self,
        config: TrainConfig,
        arch: Arch,
        demo: bool,
        final_eval: Option<(PathBuf, PathBuf)>,
    ) -> TrainPlan {
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(if demo { "runs/demo" } else { "runs/train" }));
        TrainPlan {
            config,
            arch,
            out,
            demo,
            final_eval: final_eval.filter(|_| !self.no_eval),
        }
    }
}

/// The demo's training annotations ([`DEMO_SETS`]).
fn demo_data() -> PathBuf {
    Path::new(DEMO_SETS[0].0).join("train.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_plan_keeps_the_saved_config_and_names_what_differs() {
        let saved = TrainOverrides {
            data: Some("d/train.json".into()),
            input_size: Some(64),
            batch: Some(2),
            ..Default::default()
        }
        .plan()
        .config;
        // Nothing given: the saved run, demo or not.
        let plan = TrainOverrides::default()
            .resume_plan(saved.clone())
            .unwrap();
        assert_eq!(plan.config, saved);
        assert!(!plan.demo);
        // What may change, changes.
        let plan = TrainOverrides {
            epochs: Some(3),
            workers: Some(7),
            no_eval: true,
            ..Default::default()
        }
        .resume_plan(saved.clone())
        .unwrap();
        assert_eq!((plan.config.epochs, plan.config.workers), (3, 7));
        assert!(plan.config.val.is_none() && plan.final_eval.is_none());
        assert!(plan.config.resume_conflicts(&saved).is_empty());
        // The rest is refused, each with both values.
        let e = TrainOverrides {
            input_size: Some(128),
            seed: Some(1),
            arch: Some(Arch::Res50),
            data: Some("other.json".into()),
            ..Default::default()
        }
        .resume_plan(saved.clone())
        .unwrap_err()
        .to_string();
        for part in [
            "input_size: saved 64, given 128",
            "seed: saved 317, given 1",
            "arch: saved mdla34, given res50",
            "data: saved",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
        // The library's own check, on whole configurations.
        let mut other = saved.clone();
        other.batch = 4;
        other.epochs = 9;
        assert_eq!(other.resume_conflicts(&saved), ["batch: saved 2, given 4"]);
    }

    #[test]
    fn lr_schedule_steps_and_scales() {
        let o = OptimizerConfig::centernet(16, 140);
        assert_eq!(o.lr, 6.25e-5);
        assert_eq!(o.lr_steps, vec![(90, 0.1), (120, 0.01)]);
        assert_eq!(o.lr_at(89), 6.25e-5);
        assert!((o.lr_at(90) - 6.25e-6).abs() < 1e-18);
        assert!((o.lr_at(139) - 6.25e-7).abs() < 1e-18);
        assert_eq!(
            parse_lr_steps("65:0.4, 85:0.04").unwrap(),
            vec![(65, 0.4), (85, 0.04)]
        );
        assert!(parse_lr_steps("85:0.4,65:0.04").is_err());
        assert!(parse_lr_steps("x").is_err());
    }

    #[test]
    fn the_demo_preset_is_the_documented_one() {
        let p = TrainOverrides::default().plan();
        assert!(p.demo);
        let c = &p.config;
        assert_eq!(
            (c.input_size(), c.batch, c.epochs, c.optimizer.lr),
            (128, 8, 50, 1e-3)
        );
        assert_eq!(c.optimizer.lr_steps, vec![(42, 0.1)]);
        assert_eq!(
            c.model,
            CenterNetConfig::new(Arch::Res18Slim, Scheme::Deepmark62.layout())
        );
        assert_eq!(c.val.as_ref().unwrap().every, 10);
        assert_eq!(p.out, PathBuf::from("runs/demo"));
        assert_eq!(
            p.final_eval.unwrap().0,
            PathBuf::from("datasets/synthetic-val/train.json")
        );
        // Changing the demo's epochs drops its fixed step for CenterNet's proportional ones.
        let p = TrainOverrides {
            epochs: Some(14),
            ..Default::default()
        }
        .plan();
        assert_eq!(p.config.optimizer.lr_steps, vec![(9, 0.1), (12, 0.01)]);
    }

    #[test]
    fn centernet_preset_follows_batch_and_data() {
        let p = TrainOverrides {
            data: Some("d/train.json".into()),
            batch: Some(64),
            no_augment: true,
            val_every: Some(0),
            ..Default::default()
        }
        .plan();
        assert!(!p.demo);
        let c = &p.config;
        assert_eq!(c.optimizer.lr, 2.5e-4);
        assert_eq!(c.images, PathBuf::from("d/image"));
        assert_eq!(c.model.backbone, Arch::Mdla34.backbone());
        assert!(!c.augment.random_crop && c.augment.flip == 0.0 && !c.augment.color);
        assert!(c.val.is_none());
        // No validation during training, but the final evaluation still runs on --data.
        assert_eq!(p.final_eval.unwrap().0, PathBuf::from("d/train.json"));
        let p = TrainOverrides {
            data: Some("d/train.json".into()),
            no_eval: true,
            ..Default::default()
        }
        .plan();
        assert!(p.config.val.is_none() && p.final_eval.is_none());
        assert!(p.config.check().is_ok());
    }
}
