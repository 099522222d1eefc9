//! `deepmark`: the command-line front end (usually run through `cargo xtask <command>`). Each
//! command's flags and work live in `cmd/`; shared display and detector flags in `ui.rs`; all
//! policy and defaults in the library.

mod cmd;
mod ui;

use anyhow::Result;
use clap::{Parser, Subcommand};

use cmd::{
    attributes, data, eval, export, fuzz, infer, model, plot, profile, refine, serve, topdown,
    train, tune,
};

#[derive(Parser)]
#[command(
    name = "deepmark",
    version,
    about = "DeepMark++ clothing detection (CenterNet) on Burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Refuse images whose header claims more pixels than this, before decoding them (a
    /// guard against hostile or broken files).
    #[arg(long, global = true, default_value_t = deepmark::io::DEFAULT_MAX_IMAGE_PIXELS)]
    max_image_pixels: u64,
    /// Refuse JSON files larger than this many bytes, before reading them.
    #[arg(long, global = true, default_value_t = deepmark::io::DEFAULT_MAX_JSON_BYTES)]
    max_json_bytes: u64,
    /// Refuse JSON files holding more objects (`{…}`) than this, before parsing them.
    #[arg(long, global = true, default_value_t = deepmark::io::DEFAULT_MAX_JSON_ITEMS)]
    max_json_items: u64,
    /// GPU backends: keep tuned kernels (autotune results) in this folder, so that a second
    /// run starts at full speed [default: CubeCL's, `target/environment` inside a Cargo
    /// workspace, else ~/.cache/cubecl]. `deepmark kernel-cache` shows what it holds.
    #[arg(long, global = true, env = "DEEPMARK_KERNEL_CACHE")]
    kernel_cache: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Import a CenterNet PyTorch checkpoint (.pth) into Burnpack weights + JSON config.
    Convert(model::ConvertArgs),
    /// Write randomly initialised weights (CenterNet's initialisation) for an architecture.
    Init(model::InitArgs),
    /// Convert raw DeepFashion2 annotations (a split folder with annos/ and image/) into the
    /// COCO-style JSON of the official deepfashion2_to_coco.py.
    ConvertDataset(data::ConvertDatasetArgs),
    /// Draw augmented training samples (boxes, landmarks, group ids) into one PNG, to check
    /// the data pipeline by eye.
    ShowData(data::ShowDataArgs),
    /// Derive the synthetic generator's landmark templates from real annotations.
    Templates(data::TemplatesArgs),
    /// Generate the synthetic DeepFashion2-format dataset (image/, annos/, train.json).
    Synth(data::SynthArgs),
    /// Print a weights file's config and parameter count.
    Info(model::InfoArgs),
    /// Write a model for other runtimes: ONNX (opset 19; the six heads as named outputs, the
    /// config and preprocessing as metadata).
    Export(export::ExportArgs),
    /// COCO-style AP (pycocotools-exact; DeepFashion2's 294 OKS sigmas): of a results file
    /// (`--gt --dt`), or of a model run on a dataset (`--weights --data`).
    Eval(eval::EvalArgs),
    /// Train a model (see `--help`; without --data: the quick demo on synthetic data).
    Train(train::TrainArgs),
    /// Detect clothing: drawings, challenge-format JSON and per-stage timings.
    Infer(infer::InferArgs),
    /// An HTTP detection service: POST /v1/detect (an image in, detections as JSON out, requests
    /// batched into one forward pass), GET /v1/model, GET /health.
    Serve(serve::ServeArgs),
    /// Where one image's time goes: per stage, and per network module and operation kind on
    /// the fast CPU form.
    Profile(profile::ProfileArgs),
    /// Grid-search DeepMark++'s post-processing parameters on a validation subset.
    Tune(tune::TuneArgs),
    /// A detector's detections of a dataset (or the ground truth with synthesized errors), as
    /// input for `train-refiner --inputs` and `refine`.
    Predict(refine::PredictArgs),
    /// Train PoseFix landmark refiners, one per category, into one folder.
    TrainRefiner(refine::TrainRefinerArgs),
    /// Apply PoseFix refiners to a detections file; prints AP_pt and NE before and after.
    Refine(refine::RefineArgs),
    /// Train top-down landmark models (CPN on the 81-group aggregation): a universal one and
    /// per-category fine-tuned ones, into one model-set folder.
    TrainTopdown(topdown::TrainTopDownArgs),
    /// Per-category AP_pt and NE of a top-down model set, before and after fine-tuning, on
    /// ground-truth boxes or a detections file.
    EvalTopdown(topdown::EvalTopDownArgs),
    /// Train attribute recognition with the "maybe"-label loss: the recognition network on
    /// landmark crops (`--on crops`) or attribute heads on a detector (`--on detector`).
    TrainAttributes(attributes::TrainAttributesArgs),
    /// Per-task accuracy, FashionAI's AP and top-3/top-5 recall of an attribute model on
    /// ground-truth garments.
    EvalAttributes(attributes::EvalAttributesArgs),
    /// Fuzz the parsers a user feeds (annotation, results and config JSON, images, .pth and
    /// .bpk weights) with mutated inputs; findings are saved with their messages.
    Fuzz(fuzz::FuzzArgs),
    /// Where the GPU backends keep tuned kernels (--kernel-cache) and what it holds.
    KernelCache,
    /// Render a run's metrics.csv as curves (`<run dir>/curves.png`).
    Plot {
        /// Run directory (with metrics.csv).
        run: std::path::PathBuf,
    },
}

fn main() {
    // Silent unless RUST_LOG asks: Burn, CubeCL and wgpu log through `log`.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off")).init();
    // Activation maps are reused from one image to the next instead of being faulted in afresh
    // (see its documentation).
    deepmark::model::fast::keep_freed_memory();
    let cli = Cli::parse();
    pin_default_device(&cli.command);
    if let Err(e) = run(cli) {
        eprintln!("error: {}", cmd::flag_names(&format!("{e:#}")));
        std::process::exit(1);
    }
}

impl Command {
    /// The backend the command computes on, where it takes `--backend`.
    fn backend(&self) -> Option<deepmark_cli::backend::BackendKind> {
        Some(match self {
            Command::Train(a) => a.backend,
            Command::Eval(a) => a.detector.backend,
            Command::Infer(a) => a.detector.backend,
            Command::Profile(a) => a.detector.backend,
            Command::Serve(a) => a.detector.backend,
            Command::Tune(a) => a.detector.backend,
            Command::Predict(a) => a.detector.backend,
            Command::TrainRefiner(a) => a.backend,
            Command::Refine(a) => a.backend,
            Command::TrainTopdown(a) => a.backend,
            Command::EvalTopdown(a) => a.backend,
            Command::TrainAttributes(a) => a.backend,
            Command::EvalAttributes(a) => a.backend,
            _ => return None,
        })
    }
}

/// Burn creates a few things on its *default* device rather than on the one it is given: the
/// optimizer state read back on `--resume` (burn-optim's `ModuleOptimizer::load_record` takes
/// `Device::default()`, and moves each tensor to its parameter's device at the next step). The
/// default is the GPU backend whenever one is compiled in, so a CPU run would start the Vulkan
/// loader just for that (on a machine without a GPU session it prints "XDG_RUNTIME_DIR is
/// invalid" four times). Unless a GPU backend is chosen or the user set `BURN_DEVICE`, the
/// default is pinned to the CPU backend here, while the program is still single-threaded.
fn pin_default_device(command: &Command) {
    use deepmark_cli::backend::BackendKind;
    let gpu = matches!(
        command.backend(),
        Some(BackendKind::Wgpu | BackendKind::Vulkan)
    );
    if !gpu && std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: called first thing in `main`, before any thread is started, so nothing reads
        // the environment concurrently.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut limits = deepmark::io::Limits::default();
    limits.image_pixels = cli.max_image_pixels;
    limits.json_bytes = cli.max_json_bytes;
    limits.json_items = cli.max_json_items;
    cmd::set_limits(limits);
    if let Some(dir) = &cli.kernel_cache {
        deepmark_cli::backend::kernel_cache::use_dir(dir)?;
    }
    match cli.command {
        Command::Convert(a) => model::convert(a),
        Command::Init(a) => model::init(a),
        Command::Info(a) => model::info(a),
        Command::Export(a) => export::run(a),
        Command::ConvertDataset(a) => data::convert_dataset(a),
        Command::ShowData(a) => data::show_data(a),
        Command::Templates(a) => data::templates(a),
        Command::Synth(a) => data::synth(a),
        Command::Eval(a) => eval::run(a),
        Command::Train(a) => train::run(a),
        Command::Infer(a) => infer::run(a),
        Command::Profile(a) => profile::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Predict(a) => refine::predict(a),
        Command::TrainRefiner(a) => refine::train_refiner(a),
        Command::Refine(a) => refine::refine(a),
        Command::TrainTopdown(a) => topdown::train_topdown(a),
        Command::EvalTopdown(a) => topdown::eval_topdown(a),
        Command::TrainAttributes(a) => attributes::train_attributes(a),
        Command::EvalAttributes(a) => attributes::eval_attributes(a),
        Command::Fuzz(a) => fuzz::run(a),
        Command::KernelCache => {
            let file = deepmark_cli::backend::kernel_cache::file();
            println!("kernel cache: {}", file.display());
            let rows = deepmark_cli::backend::kernel_cache::summary();
            if rows.is_empty() {
                println!("  (empty: nothing tuned or compiled yet)");
            }
            for (namespace, entries) in rows {
                println!("  {namespace}: {entries} entries");
            }
            Ok(())
        }
        Command::Plot { run } => plot::run(&run),
    }
}
