//! The fuzz targets: each is the entry point a user's file goes through, called on a file on
//! disk exactly as the CLI calls it.

use std::path::Path;
use std::sync::OnceLock;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::mutate::InputKind;
use deepmark::checkpoint::{self, WeightsCheck};
use deepmark::data::deepfashion2::{convert_raw, load_coco, read_raw_image};
use deepmark::error::{Error, Result};
use deepmark::eval::coco::{GroundTruth, Params, Results, sigmas_for};
use deepmark::infer::detector::read_options;
use deepmark::infer::output::read_detections;
use deepmark::io::{Limits, image_size, open_rgb, read_json};
use deepmark::refine::{RefinerConfig, RefinerIndex, read_refiner_config};

/// One parser under test.
#[derive(Clone, Copy)]
pub struct Target {
    /// Name on the command line (`cargo xtask fuzz <name>`).
    pub name: &'static str,
    pub about: &'static str,
    /// Extension of saved findings.
    pub ext: &'static str,
    /// Name of the file the input is written to (some parsers read meaning from the name).
    pub file_name: &'static str,
    pub kind: InputKind,
    /// Runs every entry point that reads this kind of file; the first error is returned.
    pub run: fn(&Path) -> Result<()>,
}

/// All targets.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "gt-json",
            about: "COCO-style ground truth: the evaluator's loader and the training loader (strict and --skip-bad)",
            ext: "json",
            file_name: "gt.json",
            kind: InputKind::Json,
            run: gt_json,
        },
        Target {
            name: "raw-json",
            about: "raw DeepFashion2 per-image annotations (annos/000001.json) and their conversion",
            ext: "json",
            file_name: "000001.json",
            kind: InputKind::Json,
            run: raw_json,
        },
        Target {
            name: "results-json",
            about: "results files (eval --dt, COCO loadRes rules) and detections files (refine --inputs)",
            ext: "json",
            file_name: "results.json",
            kind: InputKind::Json,
            run: results_json,
        },
        Target {
            name: "config-json",
            about: "model, refiner and checksum JSON saved beside weights, and refiners.json",
            ext: "json",
            file_name: "model.json",
            kind: InputKind::Json,
            run: config_json,
        },
        Target {
            name: "infer-json",
            about: "inference options saved beside weights (<weights>.infer.json)",
            ext: "json",
            file_name: "model.infer.json",
            kind: InputKind::Json,
            run: infer_json,
        },
        Target {
            name: "image",
            about: "image files (JPEG, PNG; other formats must be refused cleanly) under the pixel limit",
            ext: "img",
            file_name: "input.img",
            kind: InputKind::Image,
            run: image_file,
        },
        Target {
            name: "pth",
            about: "PyTorch checkpoints (zip + pickle) through the import path of `convert`",
            ext: "pth",
            file_name: "weights.pth",
            kind: InputKind::Zip,
            run: pth,
        },
        Target {
            name: "bpk",
            about: "Burnpack weights through the loader of every command that reads weights",
            ext: "bpk",
            file_name: "weights.bpk",
            kind: InputKind::Binary,
            run: bpk,
        },
    ]
}

/// Runs every check (a later entry point must not be spared because an earlier one refused the
/// file) and returns the first error, or the first that does not name the file (the finding).
fn all(p: &Path, results: impl IntoIterator<Item = Result<()>>) -> Result<()> {
    pick(p, results, false)
}

/// [`all`] for parsers of different formats fed the same file: accepted when any accepts.
fn any(p: &Path, results: impl IntoIterator<Item = Result<()>>) -> Result<()> {
    pick(p, results, true)
}

fn pick(p: &Path, results: impl IntoIterator<Item = Result<()>>, any_ok: bool) -> Result<()> {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (mut first, mut unnamed, mut ok) = (None, None, false);
    for r in results {
        match r {
            Ok(()) => ok = true,
            Err(e) => {
                if unnamed.is_none() && !e.to_string().contains(name) {
                    unnamed = Some(e);
                } else if first.is_none() {
                    first = Some(e);
                }
            }
        }
    }
    match (unnamed, first) {
        (Some(e), _) => Err(e),
        _ if any_ok && ok => Ok(()),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(()),
    }
}

fn gt_json(p: &Path) -> Result<()> {
    all(
        p,
        [
            GroundTruth::load(p, &Limits::default())
                .map(drop)
                .map_err(Error::from),
            load_coco(p, false, &Limits::default())
                .map(drop)
                .map_err(Error::from),
            load_coco(p, true, &Limits::default())
                .map(drop)
                .map_err(Error::from),
        ],
    )
}

fn raw_json(p: &Path) -> Result<()> {
    let annos = [(p.to_path_buf(), 640, 480)];
    all(
        p,
        [
            read_raw_image(p, &Limits::default())
                .map(drop)
                .map_err(Error::from),
            convert_raw(&annos, false, &Limits::default())
                .map(drop)
                .map_err(Error::from),
            convert_raw(&annos, true, &Limits::default())
                .map(drop)
                .map_err(Error::from),
        ],
    )
}

/// The ground truth results are checked against: three images, DeepFashion2's 13 categories
/// (results of other categories are refused), one garment.
fn fuzz_gt() -> &'static GroundTruth {
    static GT: OnceLock<GroundTruth> = OnceLock::new();
    GT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("deepmark-fuzz-gt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary folder");
        let path = dir.join("gt.json");
        let kps: Vec<f64> = (0..294 * 3)
            .map(|i| if i % 3 == 2 { 2.0 } else { 50.0 })
            .collect();
        let categories: Vec<serde_json::Value> = (1..=13)
            .map(|id| serde_json::json!({"id": id, "name": "garment", "keypoints": vec!["k"; 294]}))
            .collect();
        let gt = serde_json::json!({
            "images": [{"id": 1, "width": 100, "height": 80}, {"id": 2, "width": 100, "height": 80},
                       {"id": 3, "width": 100, "height": 80}],
            "categories": categories,
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 40],
                             "area": 2000, "iscrowd": 0, "keypoints": kps, "num_keypoints": 294}]
        });
        std::fs::write(&path, gt.to_string()).expect("temporary file");
        let gt =
            GroundTruth::load(&path, &Limits::default()).expect("the built-in ground truth loads");
        let _ = std::fs::remove_dir_all(&dir);
        gt
    })
}

fn results_json(p: &Path) -> Result<()> {
    let gt = fuzz_gt();
    let loaded = Results::load(p, gt, &Limits::default()).map_err(Error::from);
    let evaluated = match &loaded {
        Ok(r) => {
            let sigmas = sigmas_for(gt.num_keypoints()).unwrap_or_default();
            deepmark::eval::coco::evaluate(gt, r, Params::new(r.kind, sigmas)).map(drop)
        }
        Err(_) => Ok(()),
    };
    let df2 = &deepmark::garment::DEEPFASHION2;
    let detections = read_detections(p, &Limits::default(), df2).map(|records| {
        for r in &records {
            let _ = r.detection(df2);
            let _ = r.local_landmarks(df2);
        }
    });
    // A bbox results file is for `eval` only, a detections file also for `refine`: accepted
    // when either reader accepts, every error checked for naming the file.
    let eval = match (loaded, evaluated) {
        (Ok(_), e) => e,
        (Err(e), _) => Err(e),
    };
    any(p, [eval, detections])
}

fn config_json(p: &Path) -> Result<()> {
    any(
        p,
        [
            checkpoint::read_config(p).map(drop),
            read_refiner_config(p).map(drop),
            read_json::<WeightsCheck>(p, "weights checksum file").map(drop),
            read_json::<RefinerIndex>(p, "refiner index").map(drop),
        ],
    )
}

fn infer_json(p: &Path) -> Result<()> {
    read_options(p).map(drop)
}

fn image_file(p: &Path) -> Result<()> {
    all(p, [image_size(p).map(drop), open_rgb(p).map(drop)])
}

/// The smallest module with the layers every model here is built of (convolution with and
/// without bias, BatchNorm with its running statistics): what the weight loaders are fuzzed
/// against, since building a full CenterNet per execution would cost milliseconds.
#[derive(Module, Debug)]
pub struct FuzzNet {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub head: Conv2d,
}

/// [`FuzzNet`]'s shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FuzzNetConfig {
    pub in_channels: usize,
    pub hidden: usize,
    pub out_channels: usize,
}

impl Default for FuzzNetConfig {
    fn default() -> Self {
        FuzzNetConfig {
            in_channels: 3,
            hidden: 4,
            out_channels: 2,
        }
    }
}

impl FuzzNetConfig {
    pub fn init(&self, device: &Device) -> Result<FuzzNet> {
        let dims = [self.in_channels, self.hidden, self.out_channels];
        if dims.iter().any(|&d| d == 0 || d > 64) {
            return Err(Error::Invalid(format!(
                "fuzz net channels {dims:?} must be in 1..=64"
            )));
        }
        Ok(FuzzNet {
            conv: Conv2dConfig::new([self.in_channels, self.hidden], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            bn: BatchNormConfig::new(self.hidden).init(device),
            head: Conv2dConfig::new([self.hidden, self.out_channels], [1, 1])
                .with_bias(false)
                .init(device),
        })
    }
}

fn device() -> &'static Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(Device::flex)
}

fn pth(p: &Path) -> Result<()> {
    let mut model = FuzzNetConfig::default().init(device())?;
    checkpoint::import_pytorch_module(p, &mut model, Vec::new()).map(drop)
}

fn bpk(p: &Path) -> Result<()> {
    let config = checkpoint::config_path(p);
    if !config.is_file() {
        deepmark::io::write_json(&config, &FuzzNetConfig::default())?;
    }
    checkpoint::load_module(p, "fuzz net config", |c: &FuzzNetConfig| c.init(device())).map(drop)
}

/// Writes the seeds that are made by this crate rather than by hand or by PyTorch: a
/// [`FuzzNet`] Burnpack file (`bpk/`) and the JSON configs of every architecture
/// (`config-json/`, `infer-json/`), into `<dir>/<target>/`.
pub fn write_builtin_seeds(dir: &Path) -> Result<()> {
    use deepmark::codec::Scheme;
    use deepmark::infer::DetectorOptions;
    use deepmark::model::{Arch, CenterNetConfig};
    use deepmark::refine::RefinerArch;

    let bpk_dir = dir.join("bpk");
    deepmark::io::create_dir_all(&bpk_dir)?;
    let model = FuzzNetConfig::default().init(device())?;
    let weights = bpk_dir.join("fuzznet.bpk");
    checkpoint::save_module(&model, &FuzzNetConfig::default(), &weights)?;
    // The loader is fuzzed without the checksum file (it would refuse every mutant first) and
    // the config beside a seed is not a seed.
    for extra in [
        checkpoint::check_path(&weights),
        checkpoint::config_path(&weights),
    ] {
        std::fs::remove_file(&extra).map_err(|e| Error::io("remove", &extra, e))?;
    }

    let cfg_dir = dir.join("config-json");
    deepmark::io::create_dir_all(&cfg_dir)?;
    for arch in [
        Arch::Res18,
        Arch::Dla34,
        Arch::Hourglass104,
        Arch::Res18Slim,
    ] {
        let c = CenterNetConfig::new(arch, Scheme::Deepmark62.layout());
        deepmark::io::write_json(&cfg_dir.join(format!("{arch:?}.json").to_lowercase()), &c)?;
    }
    let r = RefinerConfig::new(RefinerArch::Res18Slim, 1, [128, 96])?;
    deepmark::io::write_json(&cfg_dir.join("refiner.json"), &r)?;
    let sums = WeightsCheck {
        weights: deepmark::io::Checksum::of(b"weights"),
        config: deepmark::io::Checksum::of(b"config"),
    };
    deepmark::io::write_json(&cfg_dir.join("check.json"), &sums)?;

    let opt_dir = dir.join("infer-json");
    deepmark::io::create_dir_all(&opt_dir)?;
    let mut o = DetectorOptions::default();
    deepmark::io::write_json(&opt_dir.join("default.infer.json"), &o)?;
    o.flip = true;
    o.scales = vec![0.85, 0.95, 1.1];
    o.post.nms = deepmark::codec::Nms::Soft {
        sigma: 0.5,
        threshold: 0.001,
    };
    o.post.symmetry = Some(Default::default());
    deepmark::io::write_json(&opt_dir.join("tta.infer.json"), &o)
}
