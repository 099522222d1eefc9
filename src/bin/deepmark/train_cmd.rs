//! `deepmark train`: flags, defaults, progress display and the final evaluation.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use deepmark::backend::BackendKind;
use deepmark::model::{Arch, CenterNetConfig};
use deepmark::scheme::Scheme;
use deepmark::train::loss::LossWeights;
use deepmark::train::trainer::parse_lr_steps;
use deepmark::train::{Event, TrainConfig, Validation, scaled_lr, train};

/// Synthetic demo set written when `--data` is not given.
const SYNTH_DIR: &str = "datasets/synthetic";
const SYNTH_VAL_DIR: &str = "datasets/synthetic-val";

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
    #[arg(long, default_value = "deepmark62")]
    pub scheme: Scheme,
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
    /// flex (default), wgpu, or ndarray (works, but its convolution backward is ~40× slower
    /// than flex: use it only for small checks).
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// Start from these weights (.bpk, e.g. from `convert`); heads are re-initialised when
    /// their layout differs.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Run directory [default: runs/train; demo: runs/demo].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint (same epoch and step).
    #[arg(long)]
    pub resume: bool,
    /// Turn off augmentation (random scale/shift, flip, colour): for overfitting small sets.
    #[arg(long)]
    pub no_augment: bool,
    /// Data-parallel devices. Only 1 is supported today (see README).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Data-loading threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long, default_value_t = 317)]
    pub seed: u64,
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
    /// Loss weights hm,wh,reg,hps,hm_hp,hp_offset.
    #[arg(long, default_value = "1,0.1,1,1,1,1")]
    pub loss_weights: String,
}

fn parse_weights(s: &str) -> Result<LossWeights> {
    let v: Vec<f32> = s
        .split(',')
        .map(|x| x.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--loss-weights `{s}`: expected 6 numbers"))?;
    let [hm, wh, reg, hps, hm_hp, hp_offset] = v[..] else {
        bail!("--loss-weights `{s}`: expected 6 numbers, got {}", v.len());
    };
    Ok(LossWeights {
        hm,
        wh,
        reg,
        hps,
        hm_hp,
        hp_offset,
    })
}

fn ensure_synth(dir: &str, n: usize, seed: u64) -> Result<PathBuf> {
    let json = Path::new(dir).join("train.json");
    if json.is_file() {
        return Ok(json);
    }
    println!("generating the synthetic set {dir} ({n} images, seed {seed})…");
    let cfg = deepmark::data::synth::SynthConfig {
        n,
        seed,
        ..Default::default()
    };
    deepmark::data::synth::generate(Path::new(dir), &cfg, &mut |_, _| {})?;
    Ok(json)
}

pub fn run(a: TrainArgs) -> Result<()> {
    if a.devices != 1 {
        bail!(
            "--devices {}: data-parallel training is not available yet (Burn 0.22's multi-device step \
             needs one model replica per device; see README). Use --devices 1",
            a.devices
        );
    }
    let demo = a.data.is_none();
    let (data, val) = if demo {
        let train = ensure_synth(SYNTH_DIR, 256, 317)?;
        let val = ensure_synth(SYNTH_VAL_DIR, 48, 9001)?;
        (train, a.val.clone().or(Some(val)))
    } else {
        let d = a.data.clone().expect("data");
        (d.clone(), a.val.clone().or(Some(d)))
    };
    let images = a
        .images
        .clone()
        .unwrap_or_else(|| data.parent().unwrap_or(Path::new(".")).join("image"));
    let arch = a
        .arch
        .unwrap_or(if demo { Arch::Res18Slim } else { Arch::Mdla34 });
    let input_size = a.input_size.unwrap_or(if demo { 128 } else { 512 });
    let batch = a.batch.unwrap_or(if demo { 8 } else { 32 });
    let epochs = a.epochs.unwrap_or(if demo { 50 } else { 140 });
    let lr = a.lr.unwrap_or(if demo { 1e-3 } else { scaled_lr(batch) });
    let lr_steps = match &a.lr_steps {
        Some(s) => parse_lr_steps(s)?,
        None if demo && a.epochs.is_none() => vec![(42, 0.1)],
        None => vec![(epochs * 9 / 14, 0.1), (epochs * 12 / 14, 0.01)]
            .into_iter()
            .filter(|&(e, _)| e > 0)
            .collect(),
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(if demo { "runs/demo" } else { "runs/train" }));
    let val_images = |v: &Path| {
        if demo || a.val.is_some() {
            v.parent().unwrap_or(Path::new(".")).join("image")
        } else {
            images.clone()
        }
    };
    let val_every = a.val_every.unwrap_or(if demo { 10 } else { 5 });
    let validation = match (&val, a.no_eval) {
        (Some(v), false) if val_every > 0 => Some(Validation {
            data: v.clone(),
            images: val_images(v),
            every: val_every,
        }),
        _ => None,
    };
    let cfg = TrainConfig {
        model: CenterNetConfig::new(arch, a.scheme.layout()),
        scheme: a.scheme,
        data: data.clone(),
        images: images.clone(),
        input_size,
        batch,
        epochs,
        lr,
        lr_steps,
        loss: parse_weights(&a.loss_weights)?,
        augment: !a.no_augment,
        seed: a.seed,
        workers: a.workers,
        max_objs: 32,
        init: a.init.clone(),
        val: validation,
    };
    if demo {
        println!(
            "no --data: demo preset on the synthetic set ({arch} at {input_size}, batch {batch}, {epochs} epochs, lr {lr:.2e}); \
             pass --data <coco.json> for real training"
        );
    }
    let device = a.backend.device()?;
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut last_line = Instant::now();
    let summary = train(&cfg, &out, &device, a.resume, &mut |e| match e {
        Event::Start {
            first_epoch,
            epochs,
            steps_per_epoch,
            images,
        } => {
            println!(
                "training {arch} on {images} images ({} backend): epochs {}..{epochs}, {steps_per_epoch} steps per epoch, run dir {}",
                a.backend,
                first_epoch + 1,
                out.display()
            );
            if tty {
                let b =
                    indicatif::ProgressBar::new(((epochs - first_epoch) * steps_per_epoch) as u64);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
                    )
                    .expect("valid template"),
                );
                bar = Some(b);
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
                "ep {} loss {:.3} (hm {:.3} wh {:.2} reg {:.3} hps {:.3} hm_hp {:.3} off {:.3}) {images_per_s:.1} img/s",
                epoch + 1,
                parts.total,
                parts.hm,
                parts.wh,
                parts.reg,
                parts.hps,
                parts.hm_hp,
                parts.hp_offset
            );
            if let Some(b) = &bar {
                b.inc(1);
                b.set_message(msg);
            } else if last_line.elapsed().as_secs() >= 20 || (*step_in_epoch == 1 && *epoch == 0) {
                println!("  step {step_in_epoch}/{steps_per_epoch} {msg}");
                last_line = Instant::now();
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
                "epoch {}/{}: loss {:.4} (hm {:.4} wh {:.3} reg {:.4} hps {:.4} hm_hp {:.4} off {:.4}) lr {lr:.2e} {secs:.1} s{val}",
                epoch + 1,
                cfg.epochs,
                mean.total,
                mean.hm,
                mean.wh,
                mean.reg,
                mean.hps,
                mean.hm_hp,
                mean.hp_offset
            );
            match &bar {
                Some(b) => b.println(line),
                None => println!("{line}"),
            }
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
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
        out.join("metrics.csv").display()
    );
    if a.no_eval {
        return Ok(());
    }
    let Some(val) = val else { return Ok(()) };
    let val_images = val_images(&val);
    let eval_dir = out.join("eval");
    crate::eval_cmd::eval_weights(
        &summary.weights,
        &val,
        &val_images,
        &crate::eval_cmd::EvalOptions {
            backend: a.backend,
            input_size: Some(input_size),
            flip: false,
            scales: vec![1.0],
            json: false,
            no_post: false,
            out: eval_dir.clone(),
            draw: 8,
            // The short demo's scores stay low: draw what it finds from 0.1 up.
            draw_threshold: if demo { 0.1 } else { 0.3 },
        },
    )?;
    Ok(())
}
