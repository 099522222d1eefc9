//! ONNX export (`export::onnx`): every architecture's graph, run by ONNX Runtime, gives the heads
//! of the Burn forward and of PyTorch (the parity fixtures of `scripts/make_parity_fixtures.py`)
//! to ≤ 1e-4 relative error; dynamic batch and size; the metadata; refused options.
//!
//! ONNX Runtime runs in Python (`scripts/onnx_run.py`, `pip install onnxruntime onnx`), found as
//! `$DEEPMARK_PYTHON` or `python3`. Without it the runtime checks are skipped with a message,
//! unless `DEEPMARK_REQUIRE_ORT=1` (set by `.ci/run`) makes that a failure.
#![cfg(all(feature = "pytorch", feature = "flex", feature = "onnx"))]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use deepmark::codec::HEAD_NAMES;
use deepmark::export::onnx::{self, DeformForm, OnnxOptions};
use deepmark::heads_io::{HostTensor, heads_to_host, read_safetensors, write_safetensors};
use deepmark::model::{CenterNet, CenterNetConfig};

const ARCHS: [&str; 5] = ["res18", "res50", "dla34", "mdla34", "hourglass104"];

fn python() -> String {
    std::env::var("DEEPMARK_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether ONNX Runtime can run here; panics when it cannot and `DEEPMARK_REQUIRE_ORT` is set.
fn ort_available() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import numpy, onnxruntime"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("DEEPMARK_REQUIRE_ORT").is_none(),
            "DEEPMARK_REQUIRE_ORT is set but `{} -c 'import onnxruntime'` fails",
            python()
        );
        eprintln!(
            "skipping the ONNX Runtime checks: `{} -c 'import onnxruntime'` fails \
             (pip install onnxruntime onnx, or set DEEPMARK_PYTHON)",
            python()
        );
    }
    ok
}

/// ONNX Runtime's outputs of the model `bytes` on `input`, and the metadata it read.
fn run_ort(
    bytes: &[u8],
    input: &HostTensor,
    dir: &Path,
    tag: &str,
) -> (BTreeMap<String, HostTensor>, BTreeMap<String, String>) {
    let model = dir.join(format!("{tag}.onnx"));
    std::fs::write(&model, bytes).unwrap();
    let inp = dir.join(format!("{tag}.in.safetensors"));
    let out = dir.join(format!("{tag}.out.safetensors"));
    write_safetensors(
        &inp,
        &BTreeMap::from([("input".to_string(), input.clone())]),
    )
    .unwrap();
    let o = Command::new(python())
        .arg(root().join("scripts/onnx_run.py"))
        .args([&model, &inp, &out])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{tag}: onnx_run.py failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    (read_safetensors(&out).unwrap(), meta)
}

fn burn_heads(
    model: &CenterNet,
    input: &HostTensor,
    device: &Device,
) -> BTreeMap<String, HostTensor> {
    heads_to_host(&model.forward(to_tensor(input, device))).unwrap()
}

/// Every head of `ort` within 1e-4 of `reference` (shapes equal); the largest relative error.
fn compare(
    ort: &BTreeMap<String, HostTensor>,
    reference: &BTreeMap<String, HostTensor>,
    what: &str,
) -> f64 {
    let mut worst: f64 = 0.0;
    for name in HEAD_NAMES {
        let (a, b) = (&ort[name], &reference[name]);
        assert_eq!(a.shape, b.shape, "{what} {name}");
        worst = worst.max(within_parity(&a.data, &b.data, &format!("{what} {name}")));
    }
    worst
}

/// The structure every export must have, checked without a runtime: decodes, one input, the six
/// named outputs with the layout's channels, every node input defined before it is read, every
/// initializer read, the config in the metadata.
fn check_structure(bytes: &[u8], config: &CenterNetConfig, what: &str) {
    let m = onnx::read(bytes).unwrap();
    assert_eq!(m.opset_import[0].version, onnx::OPSET);
    let g = m.graph.as_ref().unwrap();
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.input[0].name, onnx::INPUT);
    let outputs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, HEAD_NAMES, "{what}");
    let channels = config.layout.channels().into_array();
    for (o, c) in g.output.iter().zip(channels) {
        let dims = &o.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
        assert_eq!(
            dims.shape.as_ref().unwrap().dim[1].dim_value,
            c as i64,
            "{what} {}",
            o.name
        );
    }
    let mut defined: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    defined.insert(onnx::INPUT);
    let mut read = HashSet::new();
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            assert!(
                defined.contains(i.as_str()),
                "{what}: {} reads {i} before it exists",
                n.name
            );
            read.insert(i.as_str());
        }
        for o in &n.output {
            assert!(defined.insert(o.as_str()), "{what}: {o} defined twice");
        }
    }
    for t in &g.initializer {
        assert!(
            read.contains(t.name.as_str()),
            "{what}: initializer {} is never read",
            t.name
        );
    }
    let meta: BTreeMap<&str, &str> = m
        .metadata_props
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    let saved: CenterNetConfig = serde_json::from_str(meta["deepmark.model_config"]).unwrap();
    assert_eq!(&saved, config, "{what}");
}

/// Every architecture (native `DeformConv`, and DLA-34 decomposed too): ORT's heads equal the
/// Burn forward's and PyTorch's to 1e-4.
#[test]
fn every_architecture_runs_in_onnx_runtime_with_the_heads_of_burn_and_pytorch() {
    let device = flex();
    let run = ort_available();
    let dir = tempdir("onnx-export");
    for arch in ARCHS {
        let (cfg, model, io) = parity_fixture(arch, &device);
        let input = &io["input"];
        let size = [input.shape[2], input.shape[3]];
        let forms: &[DeformForm] = if arch == "dla34" {
            &DeformForm::ALL
        } else {
            &[DeformForm::Native]
        };
        for &deform in forms {
            let options = OnnxOptions {
                input_size: size,
                deform,
                ..OnnxOptions::new(size[0])
            };
            let bytes = onnx::export(&model, &cfg, &options).unwrap();
            let what = format!("{arch} ({deform})");
            check_structure(&bytes, &cfg, &what);
            if !run {
                continue;
            }
            let (ort, meta) = run_ort(&bytes, input, &dir, &format!("{arch}-{deform}"));
            // ORT reads the metadata back: the scheme of the fixture's layout.
            let scheme = deepmark::codec::Scheme::from_layout(&cfg.layout).unwrap();
            assert_eq!(meta["deepmark.scheme"], scheme.name(), "{what}");
            let burn = burn_heads(&model, input, &device);
            let e_burn = compare(&ort, &burn, &format!("{what}: ORT vs Burn"));
            let last = cfg.backbone.num_stacks() - 1;
            let theirs: BTreeMap<String, HostTensor> = HEAD_NAMES
                .iter()
                .map(|n| (n.to_string(), io[&format!("stack{last}.{n}")].clone()))
                .collect();
            let e_torch = compare(&ort, &theirs, &format!("{what}: ORT vs PyTorch"));
            println!("{what}: ORT vs Burn {e_burn:.2e}, vs PyTorch {e_torch:.2e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A dynamic batch and size: one export runs batch 2 at another input size than it was written
/// for, each image giving what the Burn forward gives.
#[test]
fn dynamic_batch_and_size_follow_the_input() {
    let device = flex();
    let run = ort_available();
    for arch in ["res18", "mdla34", "hourglass104", "dla34"] {
        let (cfg, model, io) = parity_fixture(arch, &device);
        let [h, w] = [io["input"].shape[2], io["input"].shape[3]];
        let m = cfg.backbone.input_multiple();
        let options = OnnxOptions {
            dynamic_batch: true,
            dynamic_size: true,
            ..OnnxOptions::new(h)
        };
        let bytes = onnx::export(&model, &cfg, &options).unwrap();
        check_structure(&bytes, &cfg, arch);
        let g = onnx::read(&bytes).unwrap().graph.unwrap();
        let dims: Vec<String> = g.input[0]
            .r#type
            .as_ref()
            .unwrap()
            .tensor_type
            .as_ref()
            .unwrap()
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| d.dim_param.clone())
            .collect();
        assert_eq!(dims, ["batch", "", "height", "width"]);
        if !run {
            continue;
        }
        // Two different images of another size: (h + m) × (w + 2m), values from the fixture's.
        let (nh, nw) = (h + m, w + 2 * m);
        let base = &io["input"].data;
        let data: Vec<f32> = (0..2 * 3 * nh * nw)
            .map(|i| base[(i * 7 + i / 5) % base.len()] * if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let input = HostTensor {
            shape: vec![2, 3, nh, nw],
            data,
        };
        let dir = tempdir("onnx-dynamic");
        let (ort, _) = run_ort(&bytes, &input, &dir, arch);
        let tensor =
            Tensor::<4>::from_data(TensorData::new(input.data.clone(), [2, 3, nh, nw]), &device);
        let burn = heads_to_host(&model.forward(tensor)).unwrap();
        assert_eq!(ort["hm"].shape, [2, cfg.layout.num_classes, nh / 4, nw / 4]);
        let e = compare(&ort, &burn, &format!("{arch} dynamic: ORT vs Burn"));
        println!("{arch} batch 2 at {nh}×{nw} (exported at {h}×{w}): ORT vs Burn {e:.2e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Sizes the backbone cannot take, and a decomposed deformable convolution with a dynamic
/// size, are refused with a message naming the problem.
#[test]
fn impossible_exports_are_refused() {
    let device = flex();
    let (cfg, model, _) = parity_fixture("dla34", &device);
    let err = onnx::export(&model, &cfg, &OnnxOptions::new(100))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input size 100") && err.contains("multiple of 32"),
        "{err}"
    );
    let options = OnnxOptions {
        dynamic_size: true,
        deform: DeformForm::Decomposed,
        ..OnnxOptions::new(64)
    };
    let err = onnx::export(&model, &cfg, &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("decomposed") && err.contains("dynamic size"),
        "{err}"
    );
    assert!(onnx::read(b"not a model").is_err());
}

/// Attribute heads export as a seventh output, `attributes`, read from the same features as the
/// detector's heads: ONNX Runtime gives the Burn heads' logits, the six heads stay as they were,
/// the tasks are in the metadata, and heads of another detector are refused.
#[test]
fn attribute_heads_export_as_a_seventh_output() {
    use deepmark::attributes::heads::AttributeHeadsConfig;
    use deepmark::attributes::synthetic_tasks;
    let device = flex();
    let (model, cfg) =
        deepmark::checkpoint::load(&root().join("model-weights/demo.bpk"), &device).unwrap();
    let hcfg = AttributeHeadsConfig::new(cfg.clone(), synthetic_tasks()).unwrap();
    let heads = hcfg.init(&device);
    let attrs = onnx::OnnxAttributes {
        heads: &heads,
        config: &hcfg,
    };
    let bytes =
        onnx::export_with_attributes(&model, &cfg, Some(attrs), &OnnxOptions::new(128)).unwrap();
    let m = onnx::read(&bytes).unwrap();
    let g = m.graph.as_ref().unwrap();
    let outputs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    let mut want: Vec<&str> = HEAD_NAMES.to_vec();
    want.push(onnx::ATTRIBUTES_OUTPUT);
    assert_eq!(outputs, want);
    let dims = &g.output[6]
        .r#type
        .as_ref()
        .unwrap()
        .tensor_type
        .as_ref()
        .unwrap();
    assert_eq!(
        dims.shape.as_ref().unwrap().dim[1].dim_value,
        6,
        "3 + 3 classes"
    );
    let tasks = m
        .metadata_props
        .iter()
        .find(|e| e.key == "deepmark.attribute_tasks")
        .unwrap();
    let tasks: Vec<deepmark::attributes::AttributeTask> =
        serde_json::from_str(&tasks.value).unwrap();
    assert_eq!(tasks, synthetic_tasks());
    // Heads of a detector of another shape.
    let mut other = hcfg.clone();
    other.detector.head_conv += 1;
    let e = onnx::export_with_attributes(
        &model,
        &cfg,
        Some(onnx::OnnxAttributes {
            heads: &other.init(&device),
            config: &other,
        }),
        &OnnxOptions::new(128),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("another config"), "{e}");
    if !ort_available() {
        return;
    }
    let data: Vec<f32> = (0..3 * 128 * 128)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let input = HostTensor {
        shape: vec![1, 3, 128, 128],
        data,
    };
    let dir = tempdir("onnx-attributes");
    let (ort, _) = run_ort(&bytes, &input, &dir, "attributes");
    compare(
        &ort,
        &burn_heads(&model, &input, &device),
        "demo + attributes",
    );
    let x = to_tensor(&input, &device);
    let feature = model.backbone.forward(x).pop().unwrap();
    let want = host(heads.forward(feature));
    let got = &ort[onnx::ATTRIBUTES_OUTPUT];
    assert_eq!(got.shape, vec![1, 6, 32, 32]);
    within_parity(&got.data, &want, "attributes");
}
