//! Top-down landmarks on the command line: `train-topdown` (a model set: the universal CPN and
//! per-category fine-tuned ones) and `eval-topdown` (per-category AP_pt and NE of the set on
//! ground-truth boxes or on a detections file, before and after fine-tuning).
//! `infer`/`eval --landmarks topdown:<dir>` apply a set inside detection.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use deepmark::Precision;
use deepmark::codec::scheme::Scheme;
use deepmark::data::deepfashion2::Sample;
use deepmark::eval::run::{LandmarkReport, landmark_report};
use deepmark::garment::{Taxonomy, TaxonomyChoice};
use deepmark::infer::output::{DetectionRecord, read_detections, update_landmarks};
use deepmark::io::JsonArrayWriter;
use deepmark::refine::config::parse_input_size;
use deepmark::topdown::train::{TopDownEvent, TopDownTrainConfig, train_model_set, weights_name};
use deepmark::topdown::{CpnArch, Served, TopDownSet};
use deepmark::train::amp::AmpConfig;
use deepmark_cli::backend::BackendKind;

use crate::cmd::SchemeArg;
use crate::ui::{images_or_default, progress_bar, say, skipped_note, tick};

#[derive(Args, Debug)]
pub struct TrainTopDownArgs {
    /// COCO-style keypoints JSON of the training set (images in `image/` beside it, or
    /// --images).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// The data's taxonomy [default: read from the data].
    #[arg(long)]
    pub taxonomy: Option<TaxonomyChoice>,
    /// cpn-res50 (CPN), cpn-res18, or cpn-res18-slim (CPU demos).
    #[arg(long, default_value = "cpn-res50")]
    pub arch: CpnArch,
    /// Landmark layout of the heatmaps: agg81 (Aggregation's 81 groups), deepmark62 or none
    /// (all 294); other taxonomies: none or by-name [default: agg81; others: none].
    #[arg(long)]
    pub scheme: Option<SchemeArg>,
    /// `universal` (one model on every garment), a category id 1–13 or a comma list (each
    /// fine-tuned from --init, else from the set's universal model, which is trained first
    /// when missing), or `all` (universal + 13 fine-tuned, Aggregation §2.2).
    #[arg(long, default_value = "universal")]
    pub category: String,
    /// Weights to start from (a universal model of the same network, layout and input).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Crop HEIGHTxWIDTH: 256x192 or 384x288 (CPN); smaller for CPU demos (multiples of 32).
    #[arg(long, default_value = "256x192")]
    pub input_size: String,
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    /// Fine-tuning epochs per category [default: half of --epochs].
    #[arg(long)]
    pub finetune_epochs: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Adam learning rate [CPN: 5e-4], halved at 1/2 and 3/4 of the epochs.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Fine-tuning learning rate [1e-4].
    #[arg(long)]
    pub finetune_lr: Option<f64>,
    /// flex (default), wgpu, vulkan or ndarray.
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// The model-set folder (`<model>.bpk` + config per model, `topdown.json`).
    #[arg(long, default_value = "runs/topdown")]
    pub out: PathBuf,
    /// Keep models already trained in --out and train the rest.
    #[arg(long)]
    pub resume: bool,
    /// Turn off augmentation (crop scale, rotation, shift, mirroring): for overfitting small
    /// sets.
    #[arg(long)]
    pub no_augment: bool,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The float type the network computes in: f32, f16 (with a dynamic loss scale), bf16, or
    /// flex32 (wgpu/vulkan). The weights Adam updates, BatchNorm and the loss stay f32.
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
}

/// `--category` → the models to train, universal first.
fn parse_models(s: &str, have_universal: bool, taxonomy: &Taxonomy) -> Result<Vec<Option<usize>>> {
    match s {
        "universal" => return Ok(vec![None]),
        "all" => {
            return Ok(std::iter::once(None)
                .chain(taxonomy.categories.iter().map(|c| Some(c.id)))
                .collect());
        }
        _ => {}
    }
    let mut out = Vec::new();
    if !have_universal {
        out.push(None);
    }
    for part in s.split(',') {
        match part.trim().parse::<usize>() {
            Ok(c) if taxonomy.category(c).is_some() => out.push(Some(c)),
            _ => bail!(
                "--category: '{part}' is not a category id of {} ({}; or `universal`, `all`)",
                taxonomy.name,
                taxonomy.category_list()
            ),
        }
    }
    Ok(out)
}

fn model_name(taxonomy: &Taxonomy, c: Option<usize>) -> String {
    match c.and_then(|c| taxonomy.category(c)) {
        Some(cat) => format!("category {} {}", cat.id, cat.name),
        None => "universal".into(),
    }
}

pub fn train_topdown(a: TrainTopDownArgs) -> Result<()> {
    let input = parse_input_size(&a.input_size)?;
    let data = crate::cmd::load_data(&a.data, &a.taxonomy, true)?;
    let (samples, report, taxonomy) = (data.samples, data.report, data.taxonomy);
    let scheme = a.scheme.unwrap_or(if taxonomy.is_deepfashion2() {
        SchemeArg::Scheme(Scheme::Agg81)
    } else {
        SchemeArg::Scheme(Scheme::None)
    });
    let grouping = scheme.grouping(taxonomy)?;
    let mut cfg = TopDownTrainConfig::cpn(
        a.arch,
        match scheme {
            SchemeArg::Scheme(s) if taxonomy.is_deepfashion2() => s,
            _ => Scheme::None,
        },
        input,
        a.epochs,
    );
    if !taxonomy.is_deepfashion2() || scheme == SchemeArg::ByName {
        cfg.taxonomy = Some(deepmark::codec::ModelTaxonomy::of(&grouping));
    }
    cfg.batch = a.batch;
    cfg.workers = a.workers;
    cfg.seed = a.seed;
    cfg.amp = AmpConfig::new(a.precision);
    cfg.limits = *crate::cmd::limits();
    if let Some(e) = a.finetune_epochs {
        cfg.finetune_epochs = e;
    }
    if let Some(lr) = a.lr {
        cfg.optimizer.lr = lr;
    }
    if let Some(lr) = a.finetune_lr {
        cfg.finetune_lr = lr;
    }
    if a.no_augment {
        cfg.augment = deepmark::refine::data::RefineAugment::NONE;
    }
    let universal = a.out.join(weights_name(taxonomy, None));
    let have_universal =
        a.init.is_some() || universal.is_file() && deepmark::checkpoint::verify(&universal).is_ok();
    let which = parse_models(&a.category, have_universal, taxonomy)?;
    let images = images_or_default(&a.images, &a.data);
    if !report.skipped.is_empty() {
        println!("{report}");
    }
    let device = a.backend.device()?;
    let bar = progress_bar("training");
    let index = train_model_set(
        &cfg,
        &which,
        a.init.as_deref(),
        &samples,
        &images,
        &a.out,
        &device,
        a.resume,
        &mut |e| match e {
            TopDownEvent::Start {
                category_id,
                garments,
                steps_per_epoch,
                init,
            } => {
                bar.set_position(0);
                let from = init.as_ref().map_or("from scratch".to_string(), |p| {
                    format!("from {}", p.display())
                });
                say(
                    Some(&bar),
                    &format!(
                        "{}: {garments} garments, {steps_per_epoch} steps/epoch, {from}",
                        model_name(taxonomy, *category_id)
                    ),
                );
            }
            TopDownEvent::Epoch {
                category_id,
                epoch,
                epochs,
                loss,
                skipped,
                secs,
            } => {
                bar.set_length(*epochs as u64);
                bar.set_position(*epoch as u64 + 1);
                if (epoch + 1) % 10 == 0 || epoch + 1 == *epochs || *epoch == 0 || *skipped > 0 {
                    say(
                        Some(&bar),
                        &format!(
                            "  {} epoch {}/{epochs}: loss {:.5} (global {:.5}, refine {:.5}) {secs:.1}s{}",
                            model_name(taxonomy, *category_id),
                            epoch + 1,
                            loss.total(),
                            loss.global,
                            loss.refine,
                            skipped_note(*skipped)
                        ),
                    );
                }
            }
            TopDownEvent::Skipped { category_id, why } => {
                say(
                    Some(&bar),
                    &format!("{}: skipped ({why})", model_name(taxonomy, *category_id)),
                );
            }
            TopDownEvent::Saved { category_id, path } => {
                say(
                    Some(&bar),
                    &format!(
                        "{}: saved {}",
                        model_name(taxonomy, *category_id),
                        path.display()
                    ),
                );
            }
        },
    )?;
    bar.finish_and_clear();
    println!(
        "{} models in {} (use with `infer --landmarks topdown:{}`, `eval --landmarks …` or `eval-topdown`)",
        index.models.len(),
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalTopDownArgs {
    /// The model-set folder (`train-topdown --out`).
    #[arg(long)]
    pub models: PathBuf,
    /// COCO-style keypoints JSON (images and ground truth) of the models' taxonomy.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Detections whose boxes the models read (`predict`'s output); their own landmarks are
    /// the "CenterNet" column. Default: the ground-truth boxes (crop-level numbers).
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    /// The set's detections with their top-down landmarks (the `predict` format).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// flex (default), wgpu, vulkan or ndarray.
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// No flip test.
    #[arg(long)]
    pub no_flip: bool,
    /// End stdout with one JSON line of the numbers.
    #[arg(long)]
    pub json: bool,
}

/// The ground-truth garments as detections (score 1, landmarks at the box centre).
fn ground_truth_records(samples: &[Sample], taxonomy: &Taxonomy) -> Vec<DetectionRecord> {
    let mut out = Vec::new();
    for s in samples {
        for it in &s.items {
            let Some(cat) = taxonomy.category(it.category_id) else {
                continue;
            };
            let [x, y, w, h] = it.bbox;
            let mut keypoints = vec![0.0f32; taxonomy.num_landmarks * 3];
            for l in cat.range() {
                keypoints[3 * l..3 * l + 3].copy_from_slice(&[x + w / 2.0, y + h / 2.0, 0.0]);
            }
            out.push(DetectionRecord {
                image_id: s.image_id,
                category_id: it.category_id,
                bbox: it.bbox,
                keypoints,
                score: 1.0,
            });
        }
    }
    out
}

pub fn eval_topdown(a: EvalTopDownArgs) -> Result<()> {
    let device = a.backend.device()?;
    let mut set = TopDownSet::load(&a.models, &device)?;
    set.flip = !a.no_flip;
    let images = images_or_default(&a.images, &a.data);
    let taxonomy = set.taxonomy();
    let (samples, gt) = crate::cmd::load_ground_truth(&a.data, taxonomy)?;
    let inputs = match &a.inputs {
        Some(p) => read_detections(p, crate::cmd::limits(), taxonomy)?,
        None => ground_truth_records(&samples, taxonomy),
    };
    let served: Vec<Option<Served>> = taxonomy
        .categories
        .iter()
        .map(|c| set.served(c.id))
        .collect();
    let fine_tuned = served.contains(&Some(Served::FineTuned));
    let run = |set: &TopDownSet, label: &'static str| -> Result<Vec<DetectionRecord>> {
        let bar = progress_bar(label);
        let r = update_landmarks(
            taxonomy,
            &samples,
            &images,
            crate::cmd::limits(),
            &inputs,
            &mut tick(&bar),
            &mut |img, d| set.apply(img, d),
        )?;
        bar.finish_and_clear();
        Ok(r)
    };
    let with_set = run(&set, "model set")?;
    if let Some(out) = &a.out {
        let mut w = JsonArrayWriter::create(out)?;
        for r in &with_set {
            w.push(r)?;
        }
        w.finish()?;
        println!("wrote {} detections to {}", with_set.len(), out.display());
    }
    let mut columns: Vec<(&str, LandmarkReport)> = Vec::new();
    if a.inputs.is_some() {
        columns.push((
            "centernet",
            landmark_report(taxonomy, &gt, &samples, &inputs)?,
        ));
    }
    if fine_tuned && set.retain_universal().is_ok() {
        let universal = run(&set, "universal")?;
        columns.push((
            "universal",
            landmark_report(taxonomy, &gt, &samples, &universal)?,
        ));
        columns.push((
            "fine-tuned",
            landmark_report(taxonomy, &gt, &samples, &with_set)?,
        ));
    } else {
        columns.push((
            "top-down",
            landmark_report(taxonomy, &gt, &samples, &with_set)?,
        ));
    }
    println!(
        "{} — AP_pt (OKS .50:.95) and NE per category; boxes: {}",
        a.models.display(),
        if a.inputs.is_some() {
            "the detections'"
        } else {
            "ground truth (crop-level)"
        }
    );
    let mut head = format!("{:<24} {:>6} {:>10}", "category", "items", "model");
    for (name, _) in &columns {
        head += &format!(" {:>16} {:>8}", format!("AP_pt {name}"), "NE");
    }
    println!("{head}");
    for (k, cat) in taxonomy.categories.iter().enumerate() {
        let first = &columns[0].1;
        if first.per_category_ap[k] < 0.0 && first.per_category[k].landmarks == 0 {
            continue;
        }
        let name = cat.name;
        let model = match served[k] {
            Some(Served::FineTuned) => "fine-tuned",
            Some(Served::Universal) => "universal",
            None => "none",
        };
        let mut line = format!(
            "{name:<24} {:>6} {model:>10}",
            first.per_category[k].items + first.per_category[k].no_normaliser
        );
        for (_, r) in &columns {
            line += &format!(
                " {:>16.4} {:>8.4}",
                r.per_category_ap[k],
                r.per_category[k].ne()
            );
        }
        println!("{line}");
    }
    let mut line = format!("{:<24} {:>6} {:>10}", "all", "", "");
    for (_, r) in &columns {
        line += &format!(" {:>16.4} {:>8.4}", r.ap_pt, r.overall.ne());
    }
    println!("{line}");
    if a.json {
        let v: serde_json::Map<String, serde_json::Value> = columns
            .iter()
            .map(|(name, r)| {
                (
                    name.to_string(),
                    serde_json::json!({
                        "ap_pt": r.ap_pt,
                        "ne": r.overall.ne(),
                        "pck02": r.overall.pck02(),
                        "per_category_ap": r.per_category_ap,
                        "per_category_ne": r.per_category.iter().map(|s| s.ne()).collect::<Vec<_>>(),
                    }),
                )
            })
            .collect();
        println!("{}", serde_json::Value::Object(v));
    }
    Ok(())
}
