//! What the commands share: progress display and the detector flags of `infer`, `eval` and
//! `tune`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use deepmark::Precision;
use deepmark::data::deepfashion2::Sample;
use deepmark::eval::{EVAL_SCORE_THRESHOLD, EvalReport, evaluate_detector};
use deepmark::infer::{Detector, PostConfig};
use deepmark_cli::backend::BackendKind;

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(msg: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0).with_message(msg);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({eta})")
            .expect("valid progress template"),
    );
    bar
}

/// A `progress(done, total)` callback that drives `bar`.
pub fn tick(bar: &indicatif::ProgressBar) -> impl FnMut(usize, usize) + '_ {
    |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64 + 1);
    }
}

/// Prints a line above a visible progress bar, or plainly (stdout) when there is none or it is
/// hidden (stderr not a terminal).
pub fn say(bar: Option<&indicatif::ProgressBar>, line: &str) {
    match bar {
        Some(b) if !b.is_hidden() => b.println(line),
        _ => println!("{line}"),
    }
}

/// What an epoch line adds when f16 steps were skipped (their gradients overflowed).
pub fn skipped_note(skipped: usize) -> String {
    match skipped {
        0 => String::new(),
        n => format!(" ({n} f16 steps skipped: gradients overflowed, loss scale backed off)"),
    }
}

/// `--images`, or `image/` beside the annotations.
pub fn images_or_default(images: &Option<PathBuf>, data: &Path) -> PathBuf {
    images
        .clone()
        .unwrap_or_else(|| deepmark::io::default_image_dir(data))
}

/// How the network runs and its heads are decoded; the weights' saved inference defaults
/// (`<weights>.infer.json`) apply where a flag is not given.
#[derive(Args, Debug, Clone)]
pub struct DetectorFlags {
    /// flex (default), ndarray, wgpu or vulkan.
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// Float type of the network, and of the --refine and --landmarks models: f32 (default),
    /// f16, bf16, or flex32 where the backend has it. Reduced precision runs Burn's generic
    /// operations (not the fast CPU form); heads and heatmaps are decoded in f32.
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Network input side [default: the weights' training size, else 512].
    #[arg(long)]
    pub input_size: Option<usize>,
    /// Average with the mirrored image.
    #[arg(long)]
    pub flip: bool,
    /// Image scales fused by NMS, e.g. `0.85,0.95,1.1` (DeepMark++) [default: the weights'
    /// saved setting, else 1].
    #[arg(long, value_delimiter = ',')]
    pub scales: Option<Vec<f32>>,
    /// Plain CenterNet decoding: none of the four DeepMark++ techniques, no NMS.
    #[arg(long)]
    pub no_post: bool,
    /// On the CPU, run Burn's generic operations instead of the fast inference form (folded
    /// BatchNorm, fused GEMM kernels); for comparisons and debugging.
    #[arg(long)]
    pub generic: bool,
    /// Images per forward pass on folders and datasets; loading, decoding, drawing and JSON
    /// run on other threads meanwhile.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch: u32,
    /// Technique (5), symmetric-axis refinement (RANSAC symmetry axis over flip-pair
    /// mid-points), with its default parameters; `tune --save` can also switch it on.
    #[arg(long, conflicts_with = "no_post")]
    pub symmetry: bool,
    /// Technique (5) with Algorithm 2's second pass: each detection's image crop around its
    /// refined landmarks is detected and refined again, and the two passes' landmarks averaged
    /// (one more forward pass per detection). Implies --symmetry.
    #[arg(long, conflicts_with = "no_post")]
    pub symmetry_two_pass: bool,
    /// PoseFix refiners (a `train-refiner` folder) applied to every detection of a category
    /// they cover (flip-tested); the refined landmarks go into the results and drawings.
    #[arg(long)]
    pub refine: Option<PathBuf>,
    /// Where landmarks come from: `centernet` (the detector's heads), `centernet:<dir>` (a
    /// folder of `train --finetune-category` runs: each category's detections take their
    /// landmarks from its fine-tuned model) or `topdown:<dir>` (a `train-topdown` model set
    /// estimating each detection's landmarks on its crop). Applied before --refine.
    #[arg(long, default_value = "centernet", value_parser = parse_landmarks)]
    pub landmarks: Landmarks,
    /// With `--landmarks topdown:<dir>`: average the top-down landmarks with CenterNet's
    /// instead of replacing them.
    #[arg(long)]
    pub landmarks_average: bool,
    /// An attribute model (a `train-attributes` folder): the recognition network on each
    /// detection's landmark crops, or attribute heads read at each detection's centre. Its
    /// predictions go into the results JSON (`attributes` per detection) and the drawings.
    #[arg(long)]
    pub attributes: Option<PathBuf>,
}

/// The `--landmarks` choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landmarks {
    CenterNet,
    FineTuned(PathBuf),
    TopDown(PathBuf),
}

fn parse_landmarks(s: &str) -> std::result::Result<Landmarks, String> {
    match s.split_once(':') {
        _ if s == "centernet" => Ok(Landmarks::CenterNet),
        Some(("topdown", dir)) if !dir.is_empty() => Ok(Landmarks::TopDown(PathBuf::from(dir))),
        Some(("centernet", dir)) if !dir.is_empty() => Ok(Landmarks::FineTuned(PathBuf::from(dir))),
        _ => Err(format!(
            "'{s}': expected `centernet`, `centernet:<folder of fine-tuned runs>` or `topdown:<model set folder>`"
        )),
    }
}

impl DetectorFlags {
    /// Loads `weights` on the chosen backend and applies the flags (checking the input size).
    pub fn load(&self, weights: &Path) -> Result<Detector> {
        self.apply(Detector::from_weights(weights, &self.device()?)?)
    }

    /// The chosen backend's device, computing in `--precision`.
    pub fn device(&self) -> Result<burn::tensor::Device> {
        self.backend.device_with(self.precision)
    }

    /// Applies the flags to a detector made on [`device`](Self::device) (checking the input
    /// size).
    pub fn apply(&self, mut det: Detector) -> Result<Detector> {
        let dtype = self.precision.dtype();
        let reduced = self.precision != Precision::F32;
        if reduced {
            det.set_float_dtype(dtype);
        }
        if let Some(s) = self.input_size {
            det.options.input_size = s;
        }
        det.options.flip = self.flip;
        if let Some(s) = &self.scales {
            det.options.scales = s.clone();
        }
        if self.no_post {
            det.options.post = PostConfig::plain();
        }
        if self.symmetry {
            det.options.post.symmetry = Some(deepmark::codec::symmetry::SymmetryConfig::default());
        }
        if self.symmetry_two_pass {
            // The saved (e.g. tuned) symmetry settings where there are any, else the defaults.
            let saved = det.options.post.symmetry.unwrap_or_default();
            det.options.post.symmetry = Some(deepmark::codec::symmetry::SymmetryConfig {
                two_pass: true,
                ..saved
            });
        }
        if self.generic {
            det.set_fast(false)?;
        }
        det.options.batch = self.batch as usize;
        let taxonomy = det.grouping().taxonomy();
        if matches!(self.landmarks, Landmarks::FineTuned(_)) && !taxonomy.is_deepfashion2() {
            anyhow::bail!(
                "--landmarks finetuned: per-category fine-tuned CenterNets are DeepFashion2's; \
                 the weights are of the taxonomy {taxonomy}"
            );
        }
        match &self.landmarks {
            Landmarks::TopDown(dir) => {
                let mut set = deepmark::topdown::TopDownSet::load(dir, det.device())?;
                if set.taxonomy() != taxonomy {
                    anyhow::bail!(
                        "--landmarks topdown:{}: the models are of the taxonomy {}, the weights \
                         of {taxonomy}",
                        dir.display(),
                        set.taxonomy()
                    );
                }
                if reduced {
                    set.set_float_dtype(dtype);
                }
                if self.landmarks_average {
                    set.combine = deepmark::topdown::Combine::Average;
                }
                det.landmarker = Some(std::sync::Arc::new(set));
            }
            _ if self.landmarks_average => {
                anyhow::bail!("--landmarks-average needs --landmarks topdown:<dir>")
            }
            Landmarks::FineTuned(dir) => {
                let mut set = deepmark::infer::finetuned::FineTunedSet::load(dir, det.device())?;
                if reduced {
                    set.set_float_dtype(dtype);
                }
                det.fine_tuned = Some(std::sync::Arc::new(set));
            }
            Landmarks::CenterNet => {}
        }
        if let Some(dir) = &self.refine {
            let mut set = deepmark::refine::RefinerSet::load(dir, det.device())?;
            if set.taxonomy() != taxonomy {
                anyhow::bail!(
                    "--refine {}: the refiners are of the taxonomy {}, the weights of {taxonomy}",
                    dir.display(),
                    set.taxonomy()
                );
            }
            if reduced {
                set.set_float_dtype(dtype);
            }
            det.refiner = Some(std::sync::Arc::new(set));
        }
        if let Some(path) = &self.attributes {
            if reduced {
                anyhow::bail!("--attributes runs in f32: leave --precision at f32");
            }
            det.set_attributes(path)?;
        }
        det.options
            .check()
            .map_err(|e| anyhow::anyhow!("--input-size, --scales or --batch: {e}"))?;
        det.check_input_size()?;
        Ok(det)
    }
}

/// Runs the detector over a dataset with progress (keeping detections from
/// [`EVAL_SCORE_THRESHOLD`]) and evaluates; results files go into `out`. Returns the report
/// and the samples read (for drawing).
pub fn evaluate_weights(
    det: &mut Detector,
    data: &Path,
    images: &Path,
    out: &Path,
) -> Result<(EvalReport, Vec<Sample>)> {
    det.options.threshold = EVAL_SCORE_THRESHOLD;
    // The data must be of the model's taxonomy (its categories agree, or it is an error naming
    // the file and the field).
    let (samples, gt) = crate::cmd::load_ground_truth(data, det.grouping().taxonomy())?;
    let bar = progress_bar("evaluating");
    let report = evaluate_detector(
        det,
        &samples,
        &gt,
        images,
        crate::cmd::limits(),
        out,
        &mut tick(&bar),
    );
    bar.finish_and_clear();
    Ok((report?, samples))
}
