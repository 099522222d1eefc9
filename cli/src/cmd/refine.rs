//! PoseFix refinement on the command line: `predict` (a detector's — or the ground truth's
//! with synthesized errors — detections of a dataset, as refiner inputs), `train-refiner` (one
//! refiner per category) and `refine` (refiners applied to a detections file, with AP_pt and
//! NE before and after). `infer`/`eval --refine <dir>` apply refiners inside detection.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use deepmark::Precision;
use deepmark::eval::run::landmark_quality;
use deepmark::garment::{Taxonomy, TaxonomyChoice};
use deepmark::infer::detect_all;
use deepmark::infer::output::{DetectionRecord, read_detections};
use deepmark::io::JsonArrayWriter;
use deepmark::refine::apply::refine_records;
use deepmark::refine::config::parse_input_size;
use deepmark::refine::errors::{ErrorRates, synthesize};
use deepmark::refine::train::{RefineEvent, RefinerTrainConfig, train_refiners};
use deepmark::refine::{RefinerArch, RefinerSet};
use deepmark::train::amp::AmpConfig;
use deepmark_cli::backend::BackendKind;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::ui::{DetectorFlags, images_or_default, progress_bar, tick};

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Detector weights (.bpk).
    #[arg(long, required_unless_present = "synthesize_errors")]
    pub weights: Option<PathBuf>,
    /// COCO-style keypoints JSON (images in `image/` beside it, or --images); of the weights'
    /// taxonomy.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// With --synthesize-errors: the data's taxonomy [default: read from the data].
    #[arg(long)]
    pub taxonomy: Option<TaxonomyChoice>,
    #[command(flatten)]
    pub detector: DetectorFlags,
    /// Detections scoring below are not written.
    #[arg(long, default_value_t = 0.05)]
    pub threshold: f32,
    /// The detections file: a JSON list of `{image_id, category_id, bbox, keypoints (the
    /// taxonomy's layout ×3, 294×3 for DeepFashion2; the third value the landmark score),
    /// score}`, also a keypoints results file for `eval`.
    #[arg(long)]
    pub out: PathBuf,
    /// No detector: write the ground truth with PoseFix's synthesized errors (good, jitter,
    /// miss, inversion, swap; see `deepmark::refine::errors`) — an input to test refiners on.
    #[arg(long, conflicts_with = "weights")]
    pub synthesize_errors: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn predict(a: PredictArgs) -> Result<()> {
    let mut inputs = vec![("--data", a.data.as_path())];
    if let Some(w) = &a.weights {
        inputs.push(("--weights", w.as_path()));
    }
    crate::cmd::refuse_input_as_output(&a.out, &inputs)?;
    let images = images_or_default(&a.images, &a.data);
    let det = match &a.weights {
        Some(w) if !a.synthesize_errors => Some(a.detector.load(w)?),
        _ => None,
    };
    let choice = match &det {
        Some(d) => TaxonomyChoice::Given(d.grouping().taxonomy()),
        None => a.taxonomy.clone().unwrap_or_default(),
    };
    let data = crate::cmd::load_data(&a.data, &Some(choice), false)?;
    let (samples, taxonomy) = (data.samples, data.taxonomy);
    let mut out = JsonArrayWriter::create(&a.out)?;
    if a.synthesize_errors {
        let mut rng = StdRng::seed_from_u64(a.seed);
        let rates = ErrorRates::default();
        for s in &samples {
            for (i, it) in s.items.iter().enumerate() {
                let Some(cat) = taxonomy.category(it.category_id) else {
                    continue;
                };
                let [x, y, w, h] = it.bbox;
                let mut keypoints = vec![0.0f32; taxonomy.num_landmarks * 3];
                for (l, (p, kind)) in synthesize(&s.items, i, cat, &rates, &mut rng)
                    .into_iter()
                    .enumerate()
                {
                    // Unlabelled landmarks (not scored by OKS) sit at the box centre, score 0.
                    let p = if kind.is_some() {
                        [p[0], p[1], 1.0]
                    } else {
                        [x + w / 2.0, y + h / 2.0, 0.0]
                    };
                    keypoints[3 * (cat.start + l)..3 * (cat.start + l) + 3].copy_from_slice(&p);
                }
                out.push(&DetectionRecord {
                    image_id: s.image_id,
                    category_id: it.category_id,
                    bbox: it.bbox,
                    keypoints,
                    score: 1.0,
                })?;
            }
        }
        let n = out.finish()?;
        println!(
            "wrote {n} ground-truth garments with synthesized errors to {}",
            a.out.display()
        );
        return Ok(());
    }
    let mut det = det.expect("clap requires --weights");
    det.options.threshold = a.threshold;
    det.options
        .check()
        .map_err(|e| anyhow::anyhow!("--threshold: {e}"))?;
    let bar = progress_bar("predicting");
    let total = samples.len();
    let mut done = 0;
    let jobs: Vec<_> = samples.iter().collect();
    let stats = detect_all(
        &det,
        jobs,
        |s| crate::cmd::limits().open_rgb(&images.join(&s.file_name)),
        |s, item| {
            let (_, dets) = item?;
            for d in &dets {
                out.push(&DetectionRecord::new(s.image_id, d, taxonomy))?;
            }
            done += 1;
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    let n = out.finish()?;
    println!(
        "wrote {n} detections of {} images to {} ({:.2} images/s)",
        stats.images,
        a.out.display(),
        stats.images_per_second()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct TrainRefinerArgs {
    /// COCO-style keypoints JSON of the training set (images in `image/` beside it, or
    /// --images).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// The data's taxonomy [default: read from the data].
    #[arg(long)]
    pub taxonomy: Option<TaxonomyChoice>,
    /// The detector's predictions on the training set (`predict`'s output): matched garments
    /// use them as input poses half of the time; the rest get synthesized errors.
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    /// A category id (DeepFashion2: 1–13), a comma list, or `all` (one refiner each, as
    /// DeepMark++).
    #[arg(long, default_value = "all")]
    pub category: String,
    /// res50 (PoseFix's default here), res18, or res18-slim (CPU demos).
    #[arg(long, default_value = "res50")]
    pub arch: RefinerArch,
    /// Input HEIGHTxWIDTH: 384x288 (PoseFix) or 256x192; smaller for CPU demos (multiples of 32).
    #[arg(long, default_value = "384x288")]
    pub input_size: String,
    /// [PoseFix: 140; the step schedule scales with it].
    #[arg(long, default_value_t = 140)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Adam learning rate [PoseFix: 5e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// flex (default), wgpu, vulkan or ndarray.
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// The refiner folder (one `<category>.bpk` per category and `refiners.json`).
    #[arg(long, default_value = "runs/refiner")]
    pub out: PathBuf,
    /// Keep refiners already trained in --out and train the rest.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The float type the network computes in: f32, f16 (with a dynamic loss scale), bf16, or
    /// flex32 (wgpu/vulkan). The weights Adam updates, BatchNorm and the loss stay f32.
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
}

fn parse_categories(s: &str, taxonomy: &Taxonomy) -> Result<Vec<usize>> {
    if s == "all" {
        return Ok(taxonomy.categories.iter().map(|c| c.id).collect());
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.trim().parse::<usize>() {
            Ok(c) if taxonomy.category(c).is_some() => out.push(c),
            _ => bail!(
                "--category: '{part}' is not a category id of {} ({}; or give `all`)",
                taxonomy.name,
                taxonomy.category_list()
            ),
        }
    }
    Ok(out)
}

pub fn train_refiner(a: TrainRefinerArgs) -> Result<()> {
    let input = parse_input_size(&a.input_size)?;
    let mut cfg = RefinerTrainConfig::posefix(a.arch, input, a.epochs);
    cfg.batch = a.batch;
    cfg.workers = a.workers;
    cfg.seed = a.seed;
    cfg.amp = AmpConfig::new(a.precision);
    cfg.limits = *crate::cmd::limits();
    if let Some(lr) = a.lr {
        cfg.optimizer.lr = lr;
    }
    let images = images_or_default(&a.images, &a.data);
    let data = crate::cmd::load_data(&a.data, &a.taxonomy, true)?;
    let (samples, report, taxonomy) = (data.samples, data.report, data.taxonomy);
    let categories = parse_categories(&a.category, taxonomy)?;
    if !report.skipped.is_empty() {
        println!("{}", crate::cmd::flag_names(&report.to_string()));
    }
    let predictions = match &a.inputs {
        Some(p) => read_detections(p, crate::cmd::limits(), taxonomy)?,
        None => Vec::new(),
    };
    let device = a.backend.device()?;
    let bar = progress_bar("training");
    let index = train_refiners(
        taxonomy,
        &cfg,
        &categories,
        &samples,
        &images,
        &predictions,
        &a.out,
        &device,
        a.resume,
        &mut |e| match e {
            RefineEvent::Start {
                category_id,
                garments,
                with_predictions,
                steps_per_epoch,
            } => {
                bar.set_length((a.epochs) as u64);
                bar.set_position(0);
                let name = taxonomy.category(*category_id).map_or("?", |c| c.name);
                crate::ui::say(
                    Some(&bar),
                    &format!(
                        "category {category_id} {name}: {garments} garments ({with_predictions} with a matched prediction), {steps_per_epoch} steps/epoch"
                    ),
                );
            }
            RefineEvent::Epoch {
                category_id,
                epoch,
                epochs,
                loss,
                skipped,
                secs,
            } => {
                bar.set_position(*epoch as u64 + 1);
                if (epoch + 1) % 10 == 0 || epoch + 1 == *epochs || *epoch == 0 || *skipped > 0 {
                    crate::ui::say(
                        Some(&bar),
                        &format!(
                            "  category {category_id} epoch {}/{epochs}: loss {:.4} (ce {:.4}, l1 {:.4}) {secs:.1}s{}",
                            epoch + 1,
                            loss.total(),
                            loss.ce,
                            loss.l1,
                            crate::ui::skipped_note(*skipped)
                        ),
                    );
                }
            }
            RefineEvent::Skipped { category_id, why } => {
                crate::ui::say(
                    Some(&bar),
                    &format!("category {category_id}: skipped ({why})"),
                );
            }
            RefineEvent::Saved { category_id, path } => {
                crate::ui::say(
                    Some(&bar),
                    &format!("category {category_id}: saved {}", path.display()),
                );
            }
        },
    )?;
    bar.finish_and_clear();
    println!(
        "{} refiners in {} (use with `infer --refine`, `eval --refine` or `refine`)",
        index.refiners.len(),
        a.out.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct RefineArgs {
    /// The refiner folder (`train-refiner --out`).
    #[arg(long)]
    pub refiners: PathBuf,
    /// Detections to refine (`predict`'s output, or any method's in that format).
    #[arg(long)]
    pub inputs: PathBuf,
    /// COCO-style keypoints JSON of the images (and their ground truth, for the before / after
    /// numbers), of the refiners' taxonomy.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Refined detections (same format as --inputs).
    #[arg(long)]
    pub out: PathBuf,
    /// flex (default), wgpu, vulkan or ndarray.
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// No flip test (PoseFix averages with the mirrored crop).
    #[arg(long)]
    pub no_flip: bool,
    /// Detections scoring below are left as they are.
    #[arg(long, default_value_t = 0.0)]
    pub min_score: f32,
    /// End stdout with one JSON line of the numbers.
    #[arg(long)]
    pub json: bool,
}

pub fn refine(a: RefineArgs) -> Result<()> {
    crate::cmd::refuse_input_as_output(
        &a.out,
        &[
            ("--inputs", a.inputs.as_path()),
            ("--data", a.data.as_path()),
        ],
    )?;
    let device = a.backend.device()?;
    let mut set = RefinerSet::load(&a.refiners, &device)?;
    set.flip = !a.no_flip;
    set.min_score = a.min_score;
    let images = images_or_default(&a.images, &a.data);
    let taxonomy = set.taxonomy();
    let (samples, gt) = crate::cmd::load_ground_truth(&a.data, taxonomy)?;
    let records = read_detections(&a.inputs, crate::cmd::limits(), taxonomy)?;
    let bar = progress_bar("refining");
    let refined = refine_records(
        &set,
        &samples,
        &images,
        crate::cmd::limits(),
        &records,
        &mut tick(&bar),
    )?;
    bar.finish_and_clear();
    let mut out = JsonArrayWriter::create(&a.out)?;
    for r in &refined {
        out.push(r)?;
    }
    out.finish()?;
    let (ap0, per0, ne0) = landmark_quality(taxonomy, &gt, &samples, &records)?;
    let (ap1, per1, ne1) = landmark_quality(taxonomy, &gt, &samples, &refined)?;
    println!(
        "wrote {} refined detections to {}",
        refined.len(),
        a.out.display()
    );
    println!("NE and PCK@0.2 over matched ground-truth garments (box IoU ≥ 0.5); AP_pt over all:");
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "", "NE", "→ NE", "PCK", "→ PCK", "landmarks"
    );
    for c in set.categories() {
        let class = taxonomy
            .class_of(c)
            .expect("a category of the set's taxonomy");
        let (b, r) = (&per0[class], &per1[class]);
        if b.landmarks > 0 {
            let name = taxonomy.category(c).map_or("?", |c| c.name);
            println!(
                "{name:<24} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>9}",
                b.ne(),
                r.ne(),
                b.pck02(),
                r.pck02(),
                b.landmarks
            );
        }
    }
    println!(
        "{:<24} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>9}",
        "all",
        ne0.ne(),
        ne1.ne(),
        ne0.pck02(),
        ne1.pck02(),
        ne0.landmarks
    );
    println!("AP_pt {ap0:.4} → {ap1:.4}");
    if a.json {
        let v = serde_json::json!({
            "before": {"ap_pt": ap0, "ne": ne0.ne(), "pck02": ne0.pck02()},
            "after": {"ap_pt": ap1, "ne": ne1.ne(), "pck02": ne1.pck02()},
            "detections": refined.len(),
        });
        println!("{v}");
    }
    Ok(())
}
