//! `train-attributes`: attribute recognition with the "maybe"-label loss, either the paper's
//! recognition network on landmark crops (`--on crops`) or attribute heads on a trained
//! detector (`--on detector --weights <detector>`); `eval-attributes` scores a model on
//! ground-truth garments. `infer`/`eval`/`serve --attributes <dir>` apply a model inside
//! detection.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use deepmark::attributes::apply::{
    AttributeModelConfig, GarmentModel, Recognizer, predict_samples, read_model_config,
};
use deepmark::attributes::data::{
    AttributeSample, from_fashionai, label_counts, load_coco_attributes,
};
use deepmark::attributes::eval::{AttributeScores, score};
use deepmark::attributes::train::{
    AttributeEvent, AttributeTrainConfig, train_detector_heads, train_recognizer,
};
use deepmark::attributes::{AttributeTask, read_fashionai_csv, read_tasks};
use deepmark::infer::Detector;
use deepmark::refine::RefinerArch;
use deepmark::refine::config::parse_input_size;
use deepmark_cli::backend::BackendKind;

use crate::ui::{progress_bar, say};

/// Where the attribute model reads garments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum On {
    /// The recognition network on each garment's Normal- and Neck-crops (the paper's).
    Crops,
    /// Attribute heads on a trained detector, read at each garment's centre.
    Detector,
}

/// The labelled data of `train-attributes` and `eval-attributes`.
#[derive(Args, Debug, Clone)]
pub struct AttributeData {
    /// Labelled garments: a COCO-style JSON whose annotations carry `attributes` (what
    /// `convert-dataset` and `synth` write), or a FashionAI attribute label file (`.csv`:
    /// `image,task,label` rows) [default: the synthetic set, generated on first use in
    /// datasets/synthetic].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Image folder [default: `image/` beside a JSON file; a CSV's own folder].
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// A CSV's attribute tasks: `fashionai` (its eight tasks), `deepfashion2`, `synthetic`,
    /// or a JSON file listing tasks (`[{"name", "classes", "crop": "normal"|"neck",
    /// "class_names"}]`).
    #[arg(long, default_value = "fashionai")]
    pub tasks: String,
}

impl AttributeData {
    /// The tasks, the garments and their image folder. A CSV's garments are the whole images
    /// until `locate` gives them a box and landmarks.
    fn load(&self, default: &str) -> Result<(Vec<AttributeTask>, Vec<AttributeSample>, PathBuf)> {
        let data = match &self.data {
            Some(d) => d.clone(),
            None => {
                let (dir, n, seed) = deepmark::train::config::DEMO_SETS
                    .into_iter()
                    .find(|(d, ..)| *d == default)
                    .expect("a demo set");
                ensure_synthetic(Path::new(dir), n, seed)?
            }
        };
        let limits = crate::cmd::limits();
        let csv = data
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if csv {
            let tasks = read_tasks(&self.tasks)?;
            let rows = read_fashionai_csv(&data, &tasks)?;
            let samples = from_fashionai(&data, &rows, &tasks)?;
            let images = self
                .images
                .clone()
                .unwrap_or_else(|| data.parent().unwrap_or(Path::new(".")).to_path_buf());
            Ok((tasks, samples, images))
        } else {
            let (tasks, samples) = load_coco_attributes(&data, limits)?;
            let images = crate::ui::images_or_default(&self.images, &data);
            Ok((tasks, samples, images))
        }
    }
}

/// `dir/train.json` of the synthetic set with attributes: generated when missing, and again
/// (the same images, from the same seed) when it was generated before the set had attributes.
fn ensure_synthetic(dir: &Path, n: usize, seed: u64) -> Result<PathBuf> {
    let json = dir.join("train.json");
    let has_tasks = json.is_file()
        && deepmark::data::deepfashion2::read_coco_file(&json, crate::cmd::limits())
            .map(|f| f.attribute_tasks.iter().any(|t| t.name == "pattern"))
            .unwrap_or(false);
    if !has_tasks {
        println!(
            "generating the synthetic set {} ({n} images, seed {seed}) with its attributes…",
            dir.display()
        );
        let cfg = deepmark::data::synth::SynthConfig {
            n,
            seed,
            ..Default::default()
        };
        deepmark::data::synth::generate(dir, &cfg, &mut |_, _| {})?;
    }
    Ok(json)
}

#[derive(Args, Debug)]
pub struct TrainAttributesArgs {
    #[command(flatten)]
    pub data: AttributeData,
    /// Held-out labelled garments scored at the end (same forms as --data) [default with no
    /// --data: the held-out synthetic set].
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Image folder of --val [default: `image/` beside it; a CSV's own folder].
    #[arg(long)]
    pub val_images: Option<PathBuf>,
    /// `crops`: the paper's recognition network on each garment's Normal- and Neck-crops;
    /// `detector`: attribute heads on the detector given by --weights, read at each garment's
    /// centre (the detector stays as it is).
    #[arg(long, value_enum, default_value = "crops")]
    pub on: On,
    /// The detector: whose features the heads read (`--on detector`), or, for a CSV's
    /// garments (which have no landmarks), the detector that locates each image's garment
    /// (its best detection gives the crops; the paper's pipeline).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// The recognition network's trunk: res18, res50, or res18-slim (CPU demos).
    #[arg(long)]
    pub arch: Option<RefinerArch>,
    /// Crop HEIGHTxWIDTH (multiples of 32) [224x224; 96x96 for the synthetic demo].
    #[arg(long)]
    pub input_size: Option<String>,
    /// Passes over the garments [12, the paper's; 8 for the synthetic demo; 30 for detector
    /// heads].
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 24)]
    pub batch: usize,
    /// Adam's learning rate, ×0.1 at 1/3 and 2/3 of the epochs [1e-3: the paper's 1e-4 was
    /// for an ImageNet-initialised NASNet; these trunks start from scratch].
    #[arg(long)]
    pub lr: Option<f64>,
    /// The "maybe" weight β: β on each `m` class, 1 − t·β on the `y` class; 0 is plain
    /// cross-entropy on `y`.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f32,
    /// Turn off crop augmentation (scale, shift, mirroring).
    #[arg(long)]
    pub no_augment: bool,
    /// flex (default), wgpu, vulkan or ndarray.
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// Output folder: `attributes.bpk`, its config and checksums, `scores.json`.
    #[arg(long, default_value = "runs/attributes")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// End stdout with one JSON line of the validation scores.
    #[arg(long)]
    pub json: bool,
}

/// Gives each CSV garment its image's best detection (box, category, landmarks); images
/// without a detection keep the whole image.
fn locate(det: &Detector, samples: &mut [AttributeSample], images: &Path) -> Result<usize> {
    let bar = progress_bar("locating garments");
    bar.set_length(samples.len() as u64);
    let mut found = 0;
    for (i, s) in samples.iter_mut().enumerate() {
        bar.set_position(i as u64);
        let img = crate::cmd::limits().open_rgb(&images.join(&s.image))?;
        if let Some(d) = det.detect(&img)?.first() {
            s.locate(d);
            found += 1;
        }
    }
    bar.finish_and_clear();
    Ok(found)
}

fn print_counts(what: &str, tasks: &[AttributeTask], samples: &[AttributeSample]) {
    let counts = label_counts(samples, tasks.len());
    let list: Vec<String> = tasks
        .iter()
        .zip(counts)
        .map(|(t, (n, m))| format!("{} {n} ({m} with maybe)", t.name))
        .collect();
    println!(
        "{what}: {} garments; labels: {}",
        samples.len(),
        list.join(", ")
    );
}

pub fn train_attributes(a: TrainAttributesArgs) -> Result<()> {
    let demo = a.data.data.is_none();
    let (tasks, mut samples, images) = a.data.load("datasets/synthetic")?;
    print_counts("training", &tasks, &samples);
    let device = a.backend.device()?;
    let detector = match &a.weights {
        Some(w) => Some(Detector::from_weights(w, &device)?),
        None if a.on == On::Detector => bail!("--on detector needs the detector's --weights"),
        None => None,
    };
    let csv_like = samples.iter().all(|s| s.bbox.is_none());
    if let (Some(det), true, On::Crops) = (&detector, csv_like, a.on) {
        let found = locate(det, &mut samples, &images)?;
        println!(
            "the detector located a garment in {found} of {} images",
            samples.len()
        );
    }
    let arch = a.arch.unwrap_or(if demo {
        RefinerArch::Res18Slim
    } else {
        RefinerArch::Res18
    });
    let input = parse_input_size(a.input_size.as_deref().unwrap_or(if demo {
        "96x96"
    } else {
        "224x224"
    }))?;
    // Detector heads train on cached windows in well under a second per epoch.
    let epochs = a.epochs.unwrap_or(match (a.on, demo) {
        (On::Detector, _) => 30,
        (On::Crops, true) => 8,
        (On::Crops, false) => 12,
    });
    let mut cfg = AttributeTrainConfig::paper(arch, input, epochs, a.lr.unwrap_or(1e-3));
    cfg.batch = a.batch;
    cfg.beta = a.beta;
    cfg.seed = a.seed;
    cfg.workers = a.workers;
    cfg.limits = *crate::cmd::limits();
    if a.no_augment {
        cfg.augment = deepmark::refine::data::RefineAugment::NONE;
    }
    crate::cmd::refuse_input_as_output(
        &a.out.join(deepmark::attributes::apply::WEIGHTS),
        &[("--weights", a.weights.as_deref().unwrap_or(Path::new("")))],
    )?;
    let bar = progress_bar("training");
    let mut on_event = |e: &AttributeEvent| match e {
        AttributeEvent::Start {
            garments,
            steps_per_epoch,
        } => {
            bar.set_position(0);
            say(
                Some(&bar),
                &format!("{garments} labelled garments, {steps_per_epoch} steps/epoch"),
            );
        }
        AttributeEvent::Features { done, total } => {
            bar.set_length(*total as u64);
            bar.set_position(*done as u64);
        }
        AttributeEvent::Epoch {
            epoch,
            epochs,
            loss,
            secs,
        } => {
            bar.set_length(*epochs as u64);
            bar.set_position(*epoch as u64 + 1);
            say(
                Some(&bar),
                &format!("epoch {}/{epochs}: loss {loss:.5} {secs:.1}s", epoch + 1),
            );
        }
    };
    let mut detector = detector;
    let recognizer = match a.on {
        On::Crops => {
            let (net, ncfg, _) = train_recognizer(
                &cfg,
                &tasks,
                &samples,
                &images,
                &a.out,
                &device,
                &mut on_event,
            )?;
            Some(Recognizer::new(net, ncfg, &device))
        }
        On::Detector => {
            let det = detector.as_mut().expect("checked above");
            train_detector_heads(&cfg, &tasks, det, &samples, &images, &a.out, &mut on_event)?;
            det.set_attribute_heads(&a.out)?;
            None
        }
    };
    bar.finish_and_clear();
    println!(
        "wrote {} (β = {}, {} epochs)",
        a.out.join(deepmark::attributes::apply::WEIGHTS).display(),
        cfg.beta,
        cfg.epochs
    );
    let model = match (&recognizer, &detector) {
        (Some(r), _) => GarmentModel::Recognizer(r),
        (None, Some(d)) => GarmentModel::Detector(d),
        _ => unreachable!("one model was trained"),
    };
    let val = match (&a.val, demo) {
        (Some(v), _) => Some(AttributeData {
            data: Some(v.clone()),
            images: a.val_images.clone(),
            tasks: a.data.tasks.clone(),
        }),
        (None, true) => Some(AttributeData {
            data: None,
            images: None,
            tasks: a.data.tasks.clone(),
        }),
        (None, false) => None,
    };
    let (what, vtasks, mut vsamples, vimages) = match &val {
        Some(v) => {
            let (t, s, i) = v.load("datasets/synthetic-val")?;
            ("validation", t, s, i)
        }
        None => (
            "training (no --val)",
            tasks.clone(),
            samples.clone(),
            images.clone(),
        ),
    };
    if let (Some(det), true, GarmentModel::Recognizer(_)) =
        (&detector, vsamples.iter().all(|s| s.bbox.is_none()), model)
    {
        locate(det, &mut vsamples, &vimages)?;
    }
    let scores = score_model(model, &vtasks, &vsamples, &vimages)?;
    println!("{what} garments:\n{scores}");
    let scores_path = a.out.join("scores.json");
    deepmark::io::write_json(
        &scores_path,
        &serde_json::json!({ "on": what, "beta": cfg.beta, "scores": scores }),
    )?;
    if a.json {
        println!("{}", serde_json::to_string(&scores)?);
    }
    Ok(())
}

/// Scores `model` on labelled garments, with progress.
fn score_model(
    model: GarmentModel<'_>,
    tasks: &[AttributeTask],
    samples: &[AttributeSample],
    images: &Path,
) -> Result<AttributeScores> {
    let bar = progress_bar("scoring");
    let rows = predict_samples(
        model,
        tasks,
        samples,
        images,
        crate::cmd::limits(),
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    Ok(score(model.tasks(), &rows))
}

#[derive(Args, Debug)]
pub struct EvalAttributesArgs {
    #[command(flatten)]
    pub data: AttributeData,
    /// The attribute model (a `train-attributes` folder).
    #[arg(long)]
    pub attributes: PathBuf,
    /// The detector: required for detector heads (they read its features), and locates a
    /// CSV's garments for a recognition network.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// flex (default), wgpu, vulkan or ndarray.
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// End stdout with one JSON line of the scores.
    #[arg(long)]
    pub json: bool,
}

/// `eval-attributes`: per-task accuracy, AP and top-k recall on ground-truth garments
/// (Normal/Neck-crops from their labelled landmarks, or the detector heads at their centres).
pub fn eval_attributes(a: EvalAttributesArgs) -> Result<()> {
    let (tasks, mut samples, images) = a.data.load("datasets/synthetic-val")?;
    print_counts("evaluating", &tasks, &samples);
    let device = a.backend.device()?;
    let mut detector = a
        .weights
        .as_ref()
        .map(|w| Detector::from_weights(w, &device))
        .transpose()?;
    let weights = deepmark::attributes::apply::weights_path(&a.attributes);
    let recognizer = match read_model_config(&weights)? {
        AttributeModelConfig::Recognition(_) => Some(Recognizer::load(&weights, &device)?),
        AttributeModelConfig::DetectorHeads(_) => {
            let det = detector.as_mut().with_context(|| {
                format!(
                    "{} holds detector heads: give the detector they were trained on with --weights",
                    a.attributes.display()
                )
            })?;
            det.set_attribute_heads(&weights)?;
            None
        }
    };
    if let (Some(det), Some(_), true) = (
        &detector,
        &recognizer,
        samples.iter().all(|s| s.bbox.is_none()),
    ) {
        locate(det, &mut samples, &images)?;
    }
    let model = match (&recognizer, &detector) {
        (Some(r), _) => GarmentModel::Recognizer(r),
        (None, Some(d)) => GarmentModel::Detector(d),
        _ => unreachable!("loaded above"),
    };
    let scores = score_model(model, &tasks, &samples, &images)?;
    println!("{scores}");
    if a.json {
        println!("{}", serde_json::to_string(&scores)?);
    }
    Ok(())
}
