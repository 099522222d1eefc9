//! `deepmark`: the command-line front end (usually run through `cargo xtask <command>`).

mod eval_cmd;
mod infer_cmd;
mod plot_cmd;
mod train_cmd;
mod tune_cmd;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use deepmark::backend::BackendKind;
use deepmark::checkpoint;
use deepmark::model::{Arch, CenterNetConfig};
use deepmark::scheme::Scheme;

#[derive(Parser)]
#[command(
    name = "deepmark",
    version,
    about = "DeepMark++ clothing detection (CenterNet) on Burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import a CenterNet PyTorch checkpoint (.pth) into Burnpack weights + JSON config.
    Convert {
        /// CenterNet-format checkpoint: {'epoch', 'state_dict'} or a bare state_dict.
        checkpoint: PathBuf,
        /// Backbone: res18, res50, dla34, mdla34, hourglass104.
        #[arg(long, required_unless_present = "config")]
        arch: Option<Arch>,
        /// Landmark scheme fixing the head layout: deepmark62, agg81, none, coco17.
        #[arg(long)]
        scheme: Scheme,
        /// A model config JSON (e.g. a reduced-width model) instead of a named --arch; its head
        /// layout is replaced by the scheme's.
        #[arg(long, conflicts_with = "arch")]
        config: Option<PathBuf>,
        /// Output weights (.bpk); the config is written beside it as .json.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write randomly initialised weights (CenterNet's initialisation) for an architecture.
    Init {
        #[arg(long)]
        arch: Arch,
        #[arg(long, default_value = "deepmark62")]
        scheme: Scheme,
        #[arg(long)]
        out: PathBuf,
    },
    /// Convert raw DeepFashion2 annotations (a split folder with annos/ and image/) into the
    /// COCO-style JSON of the official deepfashion2_to_coco.py.
    ConvertDataset {
        /// Split folder (annos/*.json + image/*.jpg).
        raw: PathBuf,
        /// Output COCO-style JSON.
        out: PathBuf,
        /// Skip (and report) bad items and images instead of stopping at the first.
        #[arg(long)]
        skip_bad: bool,
    },
    /// Draw augmented training samples (boxes, landmarks, group ids) into one PNG, to check
    /// the data pipeline by eye.
    ShowData {
        /// COCO-style DeepFashion2 JSON.
        #[arg(long)]
        data: PathBuf,
        /// Image folder (default: `image/` beside the JSON).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Grouping whose ids are drawn: deepmark62, agg81, none.
        #[arg(long, default_value = "deepmark62")]
        scheme: Scheme,
        /// How many samples.
        #[arg(long, default_value_t = 8)]
        n: usize,
        #[arg(long, default_value_t = 512)]
        input_size: usize,
        /// Augmentation seed.
        #[arg(long, default_value_t = 317)]
        seed: u64,
        #[arg(long, default_value = "runs/show-data.png")]
        out: PathBuf,
    },
    /// Derive the synthetic generator's landmark templates from real annotations.
    Templates {
        /// COCO-style DeepFashion2 JSON.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "src/data/templates.json")]
        out: PathBuf,
    },
    /// Generate the synthetic DeepFashion2-format dataset (image/, annos/, train.json).
    Synth {
        #[arg(long, default_value = "datasets/synthetic")]
        out: PathBuf,
        #[arg(long, default_value_t = 2000)]
        n: usize,
        #[arg(long, default_value_t = 317)]
        seed: u64,
    },
    /// Print a weights file's config and parameter count.
    Info {
        #[arg(long)]
        weights: PathBuf,
    },
    /// COCO-style AP (pycocotools-exact; DeepFashion2's 294 OKS sigmas): of a results file
    /// (`--gt --dt`), or of a model run on a dataset (`--weights --data`).
    Eval {
        /// Ground truth (COCO-style JSON: COCO person keypoints or DeepFashion2).
        #[arg(long, requires = "dt", conflicts_with_all = ["weights", "data"])]
        gt: Option<PathBuf>,
        /// Results: a JSON list of bbox or keypoints detections (the kind follows from it).
        #[arg(long, requires = "gt")]
        dt: Option<PathBuf>,
        /// OKS sigmas as a JSON list (default: from the GT's keypoint count, 17 or 294).
        #[arg(long)]
        sigmas: Option<PathBuf>,
        /// Weights to evaluate on --data.
        #[arg(long, requires = "data")]
        weights: Option<PathBuf>,
        /// COCO-style DeepFashion2 JSON (images in `image/` beside it, or --images).
        #[arg(long, requires = "weights")]
        data: Option<PathBuf>,
        #[arg(long)]
        images: Option<PathBuf>,
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// Network input side [default: the weights' training size].
        #[arg(long)]
        input_size: Option<usize>,
        #[arg(long)]
        flip: bool,
        #[arg(long, value_delimiter = ',', default_value = "1")]
        scales: Vec<f32>,
        /// Plain CenterNet decoding: none of the four DeepMark++ techniques, no NMS.
        #[arg(long)]
        no_post: bool,
        /// Where results files and drawings go (with --weights).
        #[arg(long, default_value = "runs/eval")]
        out: PathBuf,
        /// End stdout with one JSON line of the numbers.
        #[arg(long)]
        json: bool,
    },
    /// Train a model (see `--help`; without --data: the quick demo on synthetic data).
    Train(train_cmd::TrainArgs),
    /// Detect clothing: drawings, challenge-format JSON and per-stage timings.
    Infer(infer_cmd::InferArgs),
    /// Grid-search DeepMark++'s post-processing parameters on a validation subset.
    Tune(tune_cmd::TuneArgs),
    /// Render a run's metrics.csv as curves (`<run dir>/curves.png`).
    Plot {
        /// Run directory (with metrics.csv).
        run: PathBuf,
    },
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(msg: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0).with_message(msg);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({eta})")
            .expect("valid progress template"),
    );
    bar
}

/// Prints a line above a visible progress bar, or plainly (stdout) when there is none or it is
/// hidden (stderr not a terminal).
pub fn say(bar: Option<&indicatif::ProgressBar>, line: &str) {
    match bar {
        Some(b) if !b.is_hidden() => b.println(line),
        _ => println!("{line}"),
    }
}

/// Saves an image through a temporary file and a rename.
pub fn save_image_atomic(img: &image::RgbImage, path: &std::path::Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("png")
        .to_string();
    let tmp = path.with_extension(format!("tmp.{ext}"));
    img.save(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Convert {
            checkpoint: ckpt,
            arch,
            scheme,
            config,
            out,
        } => {
            let config = match (arch, config) {
                (Some(arch), _) => CenterNetConfig::new(arch, scheme.layout()),
                (None, Some(path)) => CenterNetConfig {
                    layout: scheme.layout(),
                    ..checkpoint::read_config(&path)?
                },
                (None, None) => bail!("give --arch or --config"),
            };
            let device = BackendKind::Flex.device()?;
            let (model, report) = checkpoint::import_pytorch(&ckpt, &config, &device)?;
            println!("{report}");
            checkpoint::save(&model, &config, &out)?;
            let arch = arch.map_or("custom".to_string(), |a| a.to_string());
            println!(
                "wrote {} and {} ({arch}, scheme {scheme}, {} parameters)",
                out.display(),
                checkpoint::config_path(&out).display(),
                model.num_trainable_params()
            );
        }
        Command::Init { arch, scheme, out } => {
            let config = CenterNetConfig::new(arch, scheme.layout());
            let device = BackendKind::Flex.device()?;
            let model = config.init(&device);
            checkpoint::save(&model, &config, &out)?;
            println!(
                "wrote {} ({arch}, scheme {scheme}, {} parameters, random init)",
                out.display(),
                model.num_trainable_params()
            );
        }
        Command::ConvertDataset { raw, out, skip_bad } => {
            let bar = progress_bar("reading annotations and image headers");
            let result = deepmark::data::deepfashion2::convert_raw_dir(
                &raw,
                skip_bad,
                &mut |done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64 + 1);
                },
            );
            bar.finish_and_clear();
            let (coco, report) = result?;
            if skip_bad {
                println!("{report}");
            }
            let json = serde_json::to_vec(&coco)?;
            checkpoint::write_atomic(&out, &json)?;
            println!(
                "wrote {} ({} images, {} items)",
                out.display(),
                coco.images.len(),
                coco.annotations.len()
            );
        }
        Command::ShowData {
            data,
            images,
            scheme,
            n,
            input_size,
            seed,
            out,
        } => {
            use deepmark::data::augment::{AugmentConfig, augment};
            use deepmark::data::deepfashion2::load_coco;
            use deepmark::data::grouping::Grouping;
            let grouping = Grouping::for_scheme(scheme)
                .with_context(|| format!("scheme {scheme} is not a DeepFashion2 grouping"))?;
            let images = images.unwrap_or_else(|| {
                data.parent()
                    .unwrap_or(std::path::Path::new("."))
                    .join("image")
            });
            let (samples, report) = load_coco(&data, true)?;
            if !report.skipped.is_empty() {
                println!("{report}");
            }
            let cfg = AugmentConfig {
                input_size,
                ..Default::default()
            };
            let mut tiles = Vec::new();
            for (i, s) in samples.iter().take(n).enumerate() {
                let img = deepmark::preprocess::open_rgb(&images.join(&s.file_name))?;
                let a = augment(&img, &s.items, &cfg, seed.wrapping_add(i as u64));
                let mut canvas = a.image.clone();
                for item in &a.items {
                    deepmark::draw::draw_item(
                        &mut canvas,
                        item,
                        Some(&grouping),
                        (input_size as u32 / 256).max(1),
                    );
                }
                tiles.push(canvas);
            }
            if tiles.is_empty() {
                bail!("{} has no samples to draw", data.display());
            }
            let grid = deepmark::draw::tile(&tiles, 4);
            save_image_atomic(&grid, &out)?;
            println!(
                "wrote {} ({} augmented samples at {input_size}×{input_size}: scale/shift, flip; colour jitter is applied to \
                 the network input only; numbers: category id at each box, {scheme} group id at each landmark)",
                out.display(),
                tiles.len()
            );
        }
        Command::Templates { data, out } => {
            let (samples, _) = deepmark::data::deepfashion2::load_coco(&data, false)?;
            let t = deepmark::data::synth::Templates::derive(&samples);
            checkpoint::write_atomic(&out, serde_json::to_string_pretty(&t)?.as_bytes())?;
            println!("wrote {} from {} images", out.display(), samples.len());
        }
        Command::Synth { out, n, seed } => {
            let cfg = deepmark::data::synth::SynthConfig {
                n,
                seed,
                ..Default::default()
            };
            let bar = progress_bar("drawing synthetic images");
            bar.set_length(n as u64);
            let (coco, _) = deepmark::data::synth::generate(&out, &cfg, &mut |done, _| {
                bar.set_position(done as u64 + 1)
            })?;
            bar.finish_and_clear();
            println!(
                "wrote {} images, {} items to {} (image/, annos/, train.json)",
                coco.images.len(),
                coco.annotations.len(),
                out.display()
            );
        }
        Command::Info { weights } => {
            let device = BackendKind::Flex.device()?;
            let (model, config) = checkpoint::load(&weights, &device)?;
            println!("{}", serde_json::to_string_pretty(&config)?);
            println!("parameters: {}", model.num_trainable_params());
            println!("output channels: {}", config.layout.total_channels());
        }
        Command::Eval {
            gt,
            dt,
            sigmas,
            weights,
            data,
            images,
            backend,
            input_size,
            flip,
            scales,
            no_post,
            out,
            json,
        } => match (gt, dt, weights, data) {
            (Some(gt), Some(dt), _, _) => eval_cmd::eval_files(&gt, &dt, sigmas.as_ref(), json)?,
            (_, _, Some(weights), Some(data)) => {
                let images = images.unwrap_or_else(|| {
                    data.parent()
                        .unwrap_or(std::path::Path::new("."))
                        .join("image")
                });
                eval_cmd::eval_weights(
                    &weights,
                    &data,
                    &images,
                    &eval_cmd::EvalOptions {
                        backend,
                        input_size,
                        flip,
                        scales,
                        json,
                        no_post,
                        out,
                        draw: 0,
                        draw_threshold: 0.3,
                    },
                )?
            }
            _ => bail!("give --gt and --dt, or --weights and --data"),
        },
        Command::Train(args) => train_cmd::run(args)?,
        Command::Infer(args) => infer_cmd::run(args)?,
        Command::Plot { run } => plot_cmd::run(&run)?,
        Command::Tune(args) => tune_cmd::run(args)?,
    }
    Ok(())
}
