//! Helpers shared by the integration tests of both crates (the library's `tests/` and
//! `cli/tests/`, which includes this file by path).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use deepmark::heads_io::HostTensor;
use serde_json::Value;

/// The repository's root (the library's manifest folder), from either crate's tests.
pub fn root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if dir.join("tests/fixtures").is_dir() {
        dir.to_path_buf()
    } else {
        dir.join("..")
    }
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// `‖a − b‖ / ‖b‖`.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// `rel_err(ours, theirs)`, asserted within the parity bar (≤ 1e-4); the panic names `what`.
pub fn within_parity(ours: &[f32], theirs: &[f32], what: &str) -> f64 {
    let e = rel_err(ours, theirs);
    assert!(e <= 1e-4, "{what}: relative error {e:.3e} > 1e-4");
    e
}

pub fn to_tensor(t: &HostTensor, device: &Device) -> Tensor<4> {
    let shape: [usize; 4] = t.shape.clone().try_into().expect("4-D tensor");
    Tensor::from_data(TensorData::new(t.data.clone(), shape), device)
}

/// The model config of a parity fixture (`tests/fixtures/parity/<arch>.config.json`).
pub fn fixture_config(arch: &str) -> deepmark::model::CenterNetConfig {
    deepmark::checkpoint::read_config(&fixtures().join(format!("parity/{arch}.config.json")))
        .unwrap()
}

/// A parity fixture (`scripts/make_parity_fixtures.py`): its config, the checkpoint imported on
/// `device`, and PyTorch's input and heads (`input`, `stack<s>.<head>`).
#[cfg(feature = "pytorch")]
pub fn parity_fixture(
    arch: &str,
    device: &Device,
) -> (
    deepmark::model::CenterNetConfig,
    deepmark::model::CenterNet,
    std::collections::BTreeMap<String, HostTensor>,
) {
    let cfg = fixture_config(arch);
    let (model, _) = deepmark::checkpoint::import_pytorch(
        &fixtures().join(format!("parity/{arch}.pth")),
        &cfg,
        device,
    )
    .unwrap();
    let io = deepmark::heads_io::read_safetensors(
        &fixtures().join(format!("parity/{arch}.io.safetensors")),
    )
    .unwrap();
    (cfg, model, io)
}

/// The largest relative error of `ours` (the heads of a batch whose first image is the
/// fixture's input) against PyTorch's last-stack heads in `io`; panics naming `what` and the
/// head when one is above 1e-4.
pub fn max_err_against_pytorch(
    ours: &std::collections::BTreeMap<String, HostTensor>,
    io: &std::collections::BTreeMap<String, HostTensor>,
    last: usize,
    what: &str,
) -> f64 {
    deepmark::codec::HEAD_NAMES
        .iter()
        .map(|name| {
            let theirs = &io[&format!("stack{last}.{name}")];
            let ours = &ours[*name].data[..theirs.data.len()];
            within_parity(
                ours,
                &theirs.data,
                &format!("{what} {name}: fast vs PyTorch"),
            )
        })
        .fold(0.0, f64::max)
}

/// A fresh, empty temporary folder unique to this process and `tag`.
pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("deepmark-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[cfg(feature = "flex")]
pub fn flex() -> Device {
    Device::flex()
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)]
pub fn ndarray() -> Device {
    Device::ndarray()
}

/// The default wgpu device after a tiny computation on it, or why there is none (no adapter:
/// no GPU and no software Vulkan).
#[cfg(feature = "wgpu")]
pub fn wgpu() -> Result<Device, String> {
    let device = Device::wgpu(burn::tensor::DeviceKind::default());
    let probe = std::panic::catch_unwind(|| {
        Tensor::<1>::from_floats([1.0, 2.0], &device)
            .sum()
            .into_scalar::<f32>()
    });
    match probe {
        Ok(sum) if (sum - 3.0).abs() < 1e-6 => Ok(device),
        Ok(sum) => Err(format!("the wgpu device computed 1 + 2 = {sum}")),
        Err(_) => Err("no usable wgpu adapter (no GPU, no software Vulkan)".into()),
    }
}

/// A file under `../shared/data/` (real third-party test data, present on CI and dev machines,
/// never copied into this repository). A test that needs it fails with a clear message when it is
/// missing, so a broken checkout can never pass silently; on a machine without the shared folder
/// set `DEEPMARK_SKIP_SHARED=1` to skip such tests (each says so on stderr and returns `None`).
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = root().join("../shared/data").join(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var_os("DEEPMARK_SKIP_SHARED").is_some() {
        eprintln!(
            "skipping (DEEPMARK_SKIP_SHARED is set): {} is absent",
            p.display()
        );
        return None;
    }
    panic!(
        "{} is missing: this test needs the shared real-data fixtures (../shared/data beside the \
         repository, present on CI and dev machines). Set DEEPMARK_SKIP_SHARED=1 to skip the tests \
         that need them.",
        p.display()
    )
}

/// The first `n` images of the real fixture (and their annotations) as a COCO file in `dir`.
pub fn fixture_subset(n: usize, dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let gt = shared_data("deepfashion2/kgdet_demo32/demo_dataset-32.json")?;
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&gt).unwrap()).unwrap();
    let images: Vec<Value> = v["images"].as_array().unwrap()[..n].to_vec();
    let ids: Vec<u64> = images.iter().map(|i| i["id"].as_u64().unwrap()).collect();
    let anns: Vec<Value> = v["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| ids.contains(&a["image_id"].as_u64().unwrap()))
        .cloned()
        .collect();
    v["images"] = Value::Array(images);
    v["annotations"] = Value::Array(anns);
    let json = dir.join("subset.json");
    std::fs::write(&json, serde_json::to_string(&v).unwrap()).unwrap();
    Some((json, gt.parent().unwrap().join("image")))
}

/// A folder of per-category models (refiners, top-down sets) listing `short_sleeved_shirt.bpk`
/// for category 1 in its index `index` is refused, naming the file and field, when the index
/// claims category 4 for it, when the weights are corrupt, and when the index is missing.
/// `load` opens the folder; the folder is left as broken as the last step made it.
pub fn broken_model_folders_are_refused(
    dir: &Path,
    index: &str,
    load: impl Fn() -> Result<(), String>,
) {
    let index = dir.join(index);
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(
        &index,
        text.replace("\"category_id\": 1", "\"category_id\": 4"),
    )
    .unwrap();
    let e = load().err().unwrap();
    assert!(
        e.contains("short_sleeved_shirt.bpk")
            && e.contains("`category_id`: the weights are for category 1")
            && e.contains("lists them for category 4"),
        "{e}"
    );
    std::fs::write(&index, &text).unwrap();
    let weights = dir.join("short_sleeved_shirt.bpk");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    std::fs::write(&weights, &bytes).unwrap();
    let e = load().err().unwrap();
    assert!(e.contains("short_sleeved_shirt.bpk"), "{e}");
    std::fs::remove_file(&index).unwrap();
    let e = load().err().unwrap();
    assert!(
        e.contains(index.file_name().unwrap().to_str().unwrap()),
        "{e}"
    );
}

/// Every tensor of a weights file, by path, sorted (for bit-for-bit comparisons).
#[cfg(feature = "flex")]
pub fn weight_tensors(weights: &Path) -> Vec<(String, Vec<f32>)> {
    use burn::store::ModuleSnapshot;
    let (model, _) = deepmark::checkpoint::load(weights, &flex()).unwrap();
    let mut v: Vec<(String, Vec<f32>)> = model
        .collect(None, None, false)
        .into_iter()
        .map(|t| {
            let bytes = t.to_bytes().unwrap();
            let values = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (t.name.clone(), values)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Runs the `deepmark` binary in the repository root and returns its output (in the
/// command-line crate's tests, where cargo builds the binary for them).
pub fn deepmark(args: &[&str]) -> std::process::Output {
    let Some(exe) = option_env!("CARGO_BIN_EXE_deepmark") else {
        panic!("the deepmark binary is built for deepmark-cli's tests only")
    };
    std::process::Command::new(exe)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

/// The demo detector's box detections on `image` at 128×128 (score ≥ 0.05), best first, from
/// `deepmark infer … --out out` plus `extra` arguments; its stderr when it fails.
pub fn demo_boxes(
    image: &Path,
    out: &Path,
    extra: &[&str],
) -> Result<Vec<deepmark::infer::output::BboxResult>, String> {
    let mut args = vec![
        "infer",
        image.to_str().unwrap(),
        "--weights",
        "model-weights/demo.bpk",
        "--input-size",
        "128",
        "--threshold",
        "0.05",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = deepmark(&args);
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let text = std::fs::read_to_string(out.join("results_bbox.json")).unwrap();
    let mut v: Vec<deepmark::infer::output::BboxResult> = serde_json::from_str(&text).unwrap();
    v.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(v)
}

/// Detections written as JSON with `category_id`, `score` and `bbox` `[x1, y1, x2, y2]` (the
/// `infer` JSON lines of a video, `serve`'s answers) as `infer`'s box results (`[x, y, w, h]`).
pub fn boxes_of_json(detections: &serde_json::Value) -> Vec<deepmark::infer::output::BboxResult> {
    detections
        .as_array()
        .unwrap_or_else(|| panic!("not a list of detections: {detections}"))
        .iter()
        .map(|d| {
            let b: Vec<f32> = d["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            deepmark::infer::output::BboxResult {
                image_id: 0,
                category_id: d["category_id"].as_u64().unwrap() as usize,
                bbox: [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                score: d["score"].as_f64().unwrap() as f32,
                attributes: Vec::new(),
            }
        })
        .collect()
}

/// `got` is the detection `want` is: same category, score within `score_tol`, every box
/// coordinate within `px_tol` pixels. `what` names the pair in messages.
pub fn assert_same_detection(
    what: &str,
    want: &deepmark::infer::output::BboxResult,
    got: &deepmark::infer::output::BboxResult,
    score_tol: f32,
    px_tol: f32,
) {
    println!(
        "{what}: score {} vs {}, box {:?} vs {:?}",
        got.score, want.score, got.bbox, want.bbox
    );
    assert_eq!(want.category_id, got.category_id, "{what}: category");
    assert!(
        (want.score - got.score).abs() <= score_tol,
        "{what}: score {} vs {}",
        got.score,
        want.score
    );
    for (x, y) in want.bbox.iter().zip(&got.bbox) {
        assert!(
            (x - y).abs() <= px_tol,
            "{what}: box {:?} vs {:?}",
            got.bbox,
            want.bbox
        );
    }
}

/// Held by every test of a binary that seeds a device and draws initial weights: a backend's
/// random stream is one per process and tests run on parallel threads, so two tests drawing at
/// once would each get weights that depend on the other's timing.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn seeded() -> std::sync::MutexGuard<'static, ()> {
    SEEDED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tensor's values on the host, as f32.
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Every float of a model (parameters and BatchNorm running statistics), one list per tensor
/// in visiting order.
pub fn module_values<M: burn::module::Module>(model: &M) -> Vec<Vec<f32>> {
    use burn::module::{ModuleVisitor, Param};
    struct Values(Vec<Vec<f32>>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(host(param.val()));
        }
    }
    let mut v = Values(Vec::new());
    model.visit(&mut v);
    v.0
}

/// The float type of every float parameter and buffer of `model`, in visiting order.
pub fn module_dtypes<M: burn::module::Module>(model: &M) -> Vec<burn::tensor::DType> {
    use burn::module::{ModuleVisitor, Param};
    struct Types(Vec<burn::tensor::DType>);
    impl ModuleVisitor for Types {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().dtype());
        }
    }
    let mut v = Types(Vec::new());
    model.visit(&mut v);
    v.0
}

/// Loads the module saved at `weights` (its config built by `init`) and asserts that every
/// float in it is f32: mixed-precision training saves its f32 master weights. `what` names the
/// run in the message.
pub fn assert_saved_in_f32<M, C>(
    weights: &Path,
    what: &str,
    init: impl FnOnce(&C) -> deepmark::error::Result<M>,
) where
    M: burn::store::ModuleSnapshot,
    C: serde::de::DeserializeOwned,
{
    let (model, _) = deepmark::checkpoint::load_module(weights, "config", init).unwrap();
    let dtypes = module_dtypes(&model);
    assert!(
        dtypes.iter().all(|&d| d == burn::tensor::DType::F32),
        "{what}: saved weights {dtypes:?}"
    );
}

/// [`module_values`] of a saved checkpoint, concatenated.
pub fn checkpoint_values(weights: &Path, device: &Device) -> Vec<f32> {
    let (model, _) = deepmark::checkpoint::load(weights, device).unwrap();
    module_values(&model).concat()
}

/// The largest absolute difference of two equally long lists.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "the same values");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
