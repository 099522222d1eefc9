//! `train`: flags → [`TrainOverrides`] (the presets and defaults live in the library), progress
//! display, and the final evaluation.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use deepmark::Precision;
use deepmark::garment::TaxonomyChoice;
use deepmark::infer::Detector;
use deepmark::model::Arch;
use deepmark::train::config::DEMO_SETS;
use deepmark::train::{
    BestMetric, Event, LossWeights, RunDir, RunStart, TrainConfig, TrainOverrides, TrainPlan,
    parse_lr_steps, train_on,
};
use deepmark_cli::backend::BackendKind;

use crate::cmd::SchemeArg;
use crate::ui::evaluate_weights;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// COCO-style DeepFashion2 JSON (images in `image/` beside it, or --images). Without it, the
    /// demo preset trains on the synthetic set (generated on first use in datasets/synthetic):
    /// res18-slim at 128, batch 8, 50 epochs, lr 1e-3 (×0.1 from epoch 43), then evaluates on
    /// datasets/synthetic-val (about 7 minutes on 2 CPU cores).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// res18, res50, dla34, mdla34, hourglass104, res18-slim [default: mdla34; demo: res18-slim].
    #[arg(long)]
    pub arch: Option<Arch>,
    /// Landmark scheme: deepmark62, agg81, none (DeepFashion2), coco17, or by-name (any
    /// taxonomy: landmarks of the same name share a channel) [default: deepmark62 for
    /// DeepFashion2, none for other taxonomies].
    #[arg(long)]
    pub scheme: Option<SchemeArg>,
    /// The data's taxonomy: deepfashion2, coco-person, deepfashion-fld, or a taxonomy file
    /// (JSON completing the COCO file's categories: flip pairs, sigmas) [default: read from the
    /// data's `categories`].
    #[arg(long)]
    pub taxonomy: Option<TaxonomyChoice>,
    /// Network input side [default: 512; demo: 128].
    #[arg(long)]
    pub input_size: Option<usize>,
    /// Images per step [default: 32; demo: 8].
    #[arg(long)]
    pub batch: Option<usize>,
    /// [default: 140; demo: 50].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Learning rate [default: 1.25e-4 per 32 images, scaled linearly with --batch].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Step schedule `epoch:multiplier,…` [default: CenterNet's ×0.1 at 9/14 and ×0.01 at 12/14
    /// of the epochs]. The DeepMark++ paper's 100-epoch run: `--lr 1e-3 --lr-steps 65:0.4,85:0.04`.
    #[arg(long)]
    pub lr_steps: Option<String>,
    /// flex (default), wgpu, vulkan (wgpu pinned to Vulkan/SPIR-V: tensor cores where the
    /// driver has cooperative matrices), or ndarray (works, but its convolution backward is
    /// ~40× slower than flex: use it only for small checks).
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// Start from these weights (.bpk, e.g. from `convert`); heads are re-initialised when
    /// their layout differs.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Run directory [default: runs/train; demo: runs/demo].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint (same epoch and step), with its saved
    /// configuration (`train.json`). Only --epochs, --val, --val-every, --no-eval, --patience,
    /// --max-unusable and --workers may change; any other flag that differs from the saved value is refused.
    #[arg(long)]
    pub resume: bool,
    /// Replace the run in --out: its train.json, checkpoints, weights, metrics and evaluation
    /// are removed first (other files stay). Without it, a folder holding a run is refused.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Turn off augmentation (random scale/shift, flip, colour): for overfitting small sets.
    #[arg(long)]
    pub no_augment: bool,
    /// Data-parallel training on the first N GPUs of --backend wgpu/vulkan: each step splits
    /// the batch into N shards, one per GPU (BatchNorm per shard, as CenterNet's DataParallel);
    /// --batch is the total over all GPUs [default: 1].
    #[arg(long)]
    pub devices: Option<usize>,
    /// The float type the network computes in: f32, f16 (with a dynamic loss scale), bf16, or
    /// flex32 (wgpu/vulkan). The weights Adam updates, BatchNorm and the loss stay f32
    /// [default: f32].
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Data-loading threads [default: 2].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Seed of the initial weights, the shuffling and the augmentation [default: 317].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Evaluate on this COCO-style JSON after training [default: --data; demo: the synthetic
    /// validation set].
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Validation AP (boxes and landmarks) into metrics.csv every N epochs and after the last;
    /// 0 = never [default: 5, CenterNet's val_intervals; demo: 10].
    #[arg(long)]
    pub val_every: Option<usize>,
    /// Skip the final evaluation and drawings.
    #[arg(long)]
    pub no_eval: bool,
    /// Fine-tune for one category (1–13, Aggregation §2.2): train on that category's garments
    /// only, from --init (the universal model). Put such runs' --out folders side by side in one
    /// folder to use them as a model set: `infer`/`eval --landmarks centernet:<folder>`.
    #[arg(long, requires = "init", value_parser = clap::value_parser!(u32).range(1..=13))]
    pub finetune_category: Option<u32>,
    /// Adam's ε [default: 1e-8, PyTorch's, as CenterNet; runs saved before kept Burn's 1e-5].
    #[arg(long)]
    pub adam_eps: Option<f32>,
    /// Adam's β₁ [default: 0.9].
    #[arg(long)]
    pub beta1: Option<f32>,
    /// Adam's β₂ [default: 0.999].
    #[arg(long)]
    pub beta2: Option<f32>,
    /// L2 weight decay [default: 0, none, as CenterNet].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// The validation AP that keeps `model-best.bpk` (the best epoch's weights, beside the last
    /// `model.bpk`): landmarks (AP_pt) or box [default: landmarks].
    #[arg(long)]
    pub best_by: Option<BestMetric>,
    /// Stop after this many validations in a row without a better --best-by AP [default: 0,
    /// never]. May change on --resume.
    #[arg(long)]
    pub patience: Option<usize>,
    /// The largest fraction of the listed training images that may be unusable (missing,
    /// unreadable, or of another size than the annotations say) and skipped; above it the run
    /// refuses to start [default: 0.5]. May change on --resume.
    #[arg(long, value_name = "FRACTION")]
    pub max_unusable: Option<f64>,
    /// Refuse to start when the run's estimated peak memory (weights, Adam's state, and the
    /// activations of a batch at the input size) is above this many GiB; 0 = no check
    /// [default: this machine's memory on flex/ndarray; no check on wgpu/vulkan].
    #[arg(long, value_name = "GIB")]
    pub max_memory: Option<f64>,
    /// Every training option from a file in the format the run's `train.json` is saved in
    /// (re-run a run from its own `train.json`); flags given as well override the file's values.
    #[arg(long, conflicts_with = "resume")]
    pub config: Option<PathBuf>,
    /// Loss weights hm,wh,reg,hps,hm_hp,hp_offset [default: 1,0.1,1,1,1,1].
    #[arg(long)]
    pub loss_weights: Option<String>,
}

impl TrainArgs {
    fn overrides(&self) -> Result<TrainOverrides> {
        Ok(TrainOverrides {
            data: self.data.clone(),
            images: self.images.clone(),
            arch: self.arch,
            scheme: match self.scheme {
                Some(SchemeArg::Scheme(s)) => Some(s),
                _ => None,
            },
            input_size: self.input_size,
            batch: self.batch,
            epochs: self.epochs,
            lr: self.lr,
            lr_steps: self.lr_steps.as_deref().map(parse_lr_steps).transpose()?,
            loss: self
                .loss_weights
                .as_deref()
                .map(LossWeights::parse)
                .transpose()?,
            no_augment: self.no_augment,
            init: self.init.clone(),
            seed: self.seed,
            workers: self.workers,
            val: self.val.clone(),
            val_every: self.val_every,
            no_eval: self.no_eval,
            out: self.out.clone(),
            finetune_category: self.finetune_category.map(|c| c as usize),
            shards: self.devices,
            precision: self.precision,
            adam_eps: self.adam_eps,
            beta1: self.beta1,
            beta2: self.beta2,
            weight_decay: self.weight_decay,
            best_by: self.best_by,
            patience: self.patience,
            max_unusable: self.max_unusable,
        })
    }
}

/// Progress of a run: a bar on a terminal, else a plain line every 20 s.
struct Display {
    bar: Option<indicatif::ProgressBar>,
    tty: bool,
    last_line: Instant,
    epochs: usize,
}

impl Display {
    fn event(&mut self, e: &Event, header: &dyn Fn(usize, usize, usize) -> String) {
        match e {
            Event::Notice(n) => crate::ui::say(self.bar.as_ref(), n),
            Event::Start {
                first_epoch,
                epochs,
                steps_per_epoch,
                images,
            } => {
                println!("{}", header(*images, *first_epoch + 1, *steps_per_epoch));
                if self.tty {
                    let b = indicatif::ProgressBar::new(
                        ((epochs - first_epoch) * steps_per_epoch) as u64,
                    );
                    b.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
                        )
                        .expect("valid template"),
                    );
                    self.bar = Some(b);
                }
            }
            Event::Step {
                epoch,
                step_in_epoch,
                steps_per_epoch,
                parts,
                images_per_s,
            } => {
                let msg = format!(
                    "ep {} {} {images_per_s:.1} img/s",
                    epoch + 1,
                    parts.describe(3)
                );
                if let Some(b) = &self.bar {
                    b.inc(1);
                    b.set_message(msg);
                } else if self.last_line.elapsed().as_secs() >= 20
                    || (*step_in_epoch == 1 && *epoch == 0)
                {
                    println!("  step {step_in_epoch}/{steps_per_epoch} {msg}");
                    self.last_line = Instant::now();
                }
            }
            Event::Epoch {
                epoch,
                mean,
                lr,
                secs,
                val_ap,
            } => {
                let val = val_ap.map_or(String::new(), |(b, k)| {
                    format!(", validation AP_box {b:.4} AP_pt {k:.4}")
                });
                let line = format!(
                    "epoch {}/{}: {} lr {lr:.2e} {secs:.1} s{val}",
                    epoch + 1,
                    self.epochs,
                    mean.describe(4)
                );
                crate::ui::say(self.bar.as_ref(), &line);
            }
        }
    }
}

/// The program's flag for a field of [`TrainOverrides`] (`input_size` → `--input-size`).
fn flag_of(field: &str) -> String {
    match field {
        "shards" => "--devices".into(),
        "loss" => "--loss-weights".into(),
        f => format!("--{}", f.replace('_', "-")),
    }
}

/// The plan of `--resume`: the saved `train.json` with the flags a resumed run may change.
fn resume_plan(a: &TrainArgs) -> Result<TrainPlan> {
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(if a.data.is_none() {
            "runs/demo"
        } else {
            "runs/train"
        })
    });
    let run = RunDir::new(&out);
    if !run.config_path().is_file() {
        bail!(
            "--resume: {} holds no run to resume (no {}); start one without --resume",
            out.display(),
            run.config_path().display()
        );
    }
    let saved = run.read_config()?;
    let overrides = TrainOverrides {
        out: Some(out),
        ..a.overrides()?
    };
    overrides.resume_plan(saved).map_err(|e| {
        // Name the flags, not the fields.
        let text = e.to_string();
        let lines: Vec<String> = text
            .lines()
            .map(
                |l| match l.strip_prefix("  ").and_then(|l| l.split_once(':')) {
                    Some((field, rest)) => format!("  {}:{rest}", flag_of(field)),
                    None => l.replace(
                        "except epochs, validation, patience, max_unusable and loader threads",
                        "except --epochs, --val, --val-every, --no-eval, --patience, \
                         --max-unusable and --workers",
                    ),
                },
            )
            .collect();
        anyhow::anyhow!("--resume: {}", lines.join("\n"))
    })
}

/// Refuses a run whose estimated peak memory (`TrainConfig::estimated_memory`) is over
/// `--max-memory`: by default, on the CPU backends, this machine's memory (the smaller of
/// `/proc/meminfo`'s total and the control group's limit); on the GPU backends only when given
/// (per device, for the device's share of the batch). Checked before anything is allocated.
fn check_memory(a: &TrainArgs, cfg: &TrainConfig) -> Result<()> {
    const GIB: f64 = (1u64 << 30) as f64;
    let gpu = matches!(a.backend, BackendKind::Wgpu | BackendKind::Vulkan);
    let (limit, what) = match a.max_memory {
        Some(g) if !g.is_finite() || g < 0.0 => {
            bail!("--max-memory {g}: give GiB as a number ≥ 0 (0: no check)")
        }
        Some(0.0) => return Ok(()),
        Some(g) => ((g * GIB) as u64, format!("--max-memory {g} GiB")),
        None if gpu => return Ok(()),
        None => match machine_memory() {
            Some(m) => (m, format!("this machine's {:.1} GiB", m as f64 / GIB)),
            None => return Ok(()),
        },
    };
    cfg.check()?;
    let mut estimate = cfg.estimated_memory()?;
    if gpu {
        estimate.batch = cfg.batch.div_ceil(cfg.shards.max(1));
    }
    if estimate.total() > limit {
        bail!(
            "this run needs an estimated {estimate} at {} × {}, more than {what}: lower --batch \
             or --input-size, or set --max-memory (GiB; 0: no check)",
            cfg.input_size(),
            cfg.input_size()
        );
    }
    Ok(())
}

/// Physical memory, or the control group's limit when lower (Linux); `None` elsewhere.
fn machine_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    Some(cgroup.map_or(total_kb * 1024, |c| c.min(total_kb * 1024)))
}

pub fn run(a: TrainArgs) -> Result<()> {
    if a.devices == Some(0) {
        bail!("--devices must be at least 1");
    }
    let mut plan = if a.resume {
        resume_plan(&a)?
    } else if let Some(path) = &a.config {
        let base: TrainConfig = deepmark::io::read_json(path, "training configuration")?;
        a.overrides()?
            .plan_from(Some(base))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    } else {
        a.overrides()?.plan()
    };
    plan.config.limits = *crate::cmd::limits();
    check_memory(&a, &plan.config)?;
    let run_dir = RunDir::new(&plan.out);
    if !a.resume && !a.overwrite && run_dir.holds_run() && !run_dir.owns(&plan.config.data) {
        bail!(
            "{} holds another run ({}): continue it with --resume, replace it with --overwrite, \
             or choose another --out",
            plan.out.display(),
            run_dir.config_path().display()
        );
    }
    if plan.demo {
        for (dir, n, seed) in DEMO_SETS {
            if !Path::new(dir).join("train.json").is_file() {
                println!("generating the synthetic set {dir} ({n} images, seed {seed})…");
            }
            deepmark::data::synth::ensure(Path::new(dir), n, seed)?;
        }
        println!(
            "no --data: demo preset on the synthetic set ({} at {}, batch {}, {} epochs, lr {:.2e}); \
             pass --data <coco.json> for real training",
            plan.arch,
            plan.config.input_size(),
            plan.config.batch,
            plan.config.epochs,
            plan.config.optimizer.lr
        );
    }
    if !a.resume {
        // The heads follow the data's taxonomy (read from its categories unless named).
        let choice = a.taxonomy.clone().unwrap_or_default();
        let by_name = a.scheme == Some(SchemeArg::ByName);
        let notes = plan.config.fit_taxonomy(&choice, by_name)?;
        crate::cmd::print_notes(&notes);
        let grouping = plan.config.model.grouping()?;
        if let Some(SchemeArg::Scheme(s)) = a.scheme {
            // The named scheme must group this taxonomy's landmarks.
            deepmark::codec::Grouping::for_taxonomy(grouping.taxonomy(), s.name())
                .map_err(|e| anyhow::anyhow!("--scheme {s}: {e}"))?;
        }
        if !grouping.taxonomy().is_deepfashion2() {
            println!(
                "taxonomy {}: {} channels grouped {}",
                grouping.taxonomy(),
                grouping.num_groups(),
                grouping.name()
            );
        }
    } else if a.taxonomy.is_some() {
        bail!("--taxonomy with --resume: a resumed run keeps the taxonomy saved with it");
    }
    let cfg = &plan.config;
    let arch = plan.arch;
    let devices = a.backend.devices(plan.config.shards)?;
    let device = devices[0].clone();
    let started = Instant::now();
    let mut display = Display {
        bar: None,
        tty: std::io::stderr().is_terminal(),
        last_line: Instant::now(),
        epochs: cfg.epochs,
    };
    let header = |images: usize, first: usize, steps: usize| {
        format!(
            "training {arch} on {images} images ({} backend{}): epochs {first}..{}, {steps} steps per epoch, run dir {}",
            a.backend,
            match cfg.amp.precision {
                Precision::F32 => String::new(),
                p => format!(", {p} compute, f32 weights"),
            },
            cfg.epochs,
            plan.out.display()
        )
    };
    let out = plan.out.clone();
    crate::cmd::on_interrupt(move || {
        let run = RunDir::new(&out);
        match run.read_state() {
            Ok(s) => eprintln!(
                "\nstopped: {} epoch(s) of the run in {} are saved; continue with \
                 `deepmark train --out {} --resume`",
                s.epoch,
                out.display(),
                out.display()
            ),
            Err(_) => eprintln!(
                "\nstopped before the first epoch ended: nothing to resume in {}",
                out.display()
            ),
        }
    });
    let start = if a.resume {
        RunStart::Resume
    } else if a.overwrite {
        RunStart::Replace
    } else {
        RunStart::New
    };
    let summary = train_on(cfg, &plan.out, &devices, start, &mut |e| {
        display.event(e, &header)
    });
    if let Some(b) = display.bar.take() {
        b.finish_and_clear();
    }
    let summary = summary?;
    let rows = &summary.rows;
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        println!(
            "trained {} steps in {:.1} s; mean loss {:.4} (epoch {}) → {:.4} (epoch {}), {:.0}% lower",
            summary.steps,
            started.elapsed().as_secs_f64(),
            first.loss.total,
            first.epoch + 1,
            last.loss.total,
            last.epoch + 1,
            100.0 * (1.0 - last.loss.total / first.loss.total)
        );
    }
    println!(
        "weights: {} (config {}); metrics: {}",
        summary.weights.display(),
        deepmark::checkpoint::config_path(&summary.weights).display(),
        plan.out.join("metrics.csv").display()
    );
    if let Some((path, b)) = &summary.best {
        println!(
            "best: {} (epoch {}, validation {} AP {:.4})",
            path.display(),
            b.epoch,
            cfg.selection.metric,
            b.ap
        );
    }
    let Some((val, val_images)) = &plan.final_eval else {
        return Ok(());
    };
    // Its inference defaults (`model.infer.json`) carry the training input size.
    let mut det = Detector::from_weights(&summary.weights, &device)?;
    let eval_dir = plan.out.join("eval");
    let (report, samples) = evaluate_weights(&mut det, val, val_images, &eval_dir)?;
    println!("{report}");
    // The short demo's scores stay low: draw what it finds from 0.1 up.
    let threshold = if plan.demo { 0.1 } else { 0.3 };
    let dir = eval_dir.join("preds");
    let drawn = deepmark::eval::run::draw_predictions(
        &det,
        &samples,
        val_images,
        crate::cmd::limits(),
        &dir,
        8,
        threshold,
    )?;
    println!(
        "drew predictions (score ≥ {threshold}) on {drawn} images in {}",
        dir.display()
    );
    Ok(())
}
