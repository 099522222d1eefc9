//! Checkpoint import: re-initialised heads are reported by name, bad files are clear errors.
#![cfg(all(feature = "pytorch", feature = "flex"))]

mod common;

use common::*;
use deepmark::checkpoint::{self, import_pytorch};
use deepmark::codec::Scheme;
use deepmark::model::{Arch, CenterNetConfig};

fn res18_small(scheme: Scheme) -> CenterNetConfig {
    CenterNetConfig {
        layout: scheme.layout(),
        ..fixture_config("res18")
    }
}

#[test]
fn coco80_ctdet_into_13_classes_reports_exactly_the_reinitialised_heads() {
    let cfg = res18_small(Scheme::Deepmark62);
    let (_, report) = import_pytorch(
        &fixtures().join("parity/res18_ctdet_coco80.pth"),
        &cfg,
        &flex(),
    )
    .unwrap();
    let reinit: Vec<&str> = report
        .reinitialised
        .iter()
        .map(|(k, ..)| k.as_str())
        .collect();
    assert_eq!(reinit, vec!["hm.2.bias", "hm.2.weight"], "{report}");
    let (_, from, to) = &report.reinitialised[1];
    assert_eq!((from[0], to[0]), (80, 13));
    let mut missing = report.missing.clone();
    missing.sort();
    let expected: Vec<String> = ["hm_hp", "hp_offset", "hps"]
        .iter()
        .flat_map(|h| {
            ["conv.bias", "conv.weight", "out.bias", "out.weight"]
                .map(move |p| format!("heads.0.{h}.{p}"))
        })
        .collect();
    assert_eq!(missing, expected, "{report}");
    assert!(report.unused.is_empty(), "{report}");
    // Everything else loaded: all backbone tensors and the matching head tensors.
    assert!(report.loaded > 100);
}

#[test]
fn import_then_save_then_load_gives_the_same_heads() {
    let cfg = fixture_config("dla34");
    let device = flex();
    let (model, _) = import_pytorch(&fixtures().join("parity/dla34.pth"), &cfg, &device).unwrap();
    let dir = tempdir("convert-roundtrip");
    let out = dir.join("dla.bpk");
    checkpoint::save(&model, &cfg, &out).unwrap();
    assert!(checkpoint::config_path(&out).is_file());
    let (loaded, cfg2) = checkpoint::load(&out, &device).unwrap();
    assert_eq!(cfg, cfg2);
    let io = deepmark::heads_io::read_safetensors(&fixtures().join("parity/dla34.io.safetensors"))
        .unwrap();
    let x = to_tensor(&io["input"], &device);
    let a = deepmark::heads_io::heads_to_host(&model.forward(x.clone())).unwrap();
    let b = deepmark::heads_io::heads_to_host(&loaded.forward(x)).unwrap();
    assert_eq!(a, b);
    // No temporary files are left behind: weights, config, checksums.
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dla.bpk", "dla.check.json", "dla.json"]);
    // A config edited after the weights were saved is a clear error at load.
    let cfg_path = checkpoint::config_path(&out);
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, format!("{text}\n")).unwrap();
    let e = checkpoint::load(&out, &device)
        .expect_err("mismatch")
        .to_string();
    assert!(e.contains("dla.bpk") && e.contains("model config"), "{e}");
}

fn import_err(path: &std::path::Path, cfg: &CenterNetConfig) -> String {
    match import_pytorch(path, cfg, &flex()) {
        Ok(_) => panic!("import of {} should fail", path.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn bad_checkpoints_are_clear_errors() {
    let cfg = res18_small(Scheme::None);
    let dir = tempdir("convert-bad");

    let missing = dir.join("nope.pth");
    let e = import_err(&missing, &cfg);
    assert!(e.contains("nope.pth"), "{e}");

    let text = dir.join("notes.pth");
    std::fs::write(&text, "this is not a checkpoint").unwrap();
    let e = import_err(&text, &cfg);
    assert!(e.contains("notes.pth"), "{e}");

    let bytes = std::fs::read(fixtures().join("parity/res18.pth")).unwrap();
    let truncated = dir.join("truncated.pth");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = import_err(&truncated, &cfg);
    assert!(e.contains("truncated.pth"), "{e}");

    let empty = dir.join("empty.pth");
    std::fs::write(&empty, b"").unwrap();
    let e = import_err(&empty, &cfg);
    assert!(e.contains("empty.pth"), "{e}");
}

#[test]
fn wrong_architecture_is_rejected() {
    // A ResNet checkpoint into a DLA model, and a DLA checkpoint into a ResNet.
    let dla = fixture_config("dla34");
    let e = import_err(&fixtures().join("parity/res18.pth"), &dla);
    assert!(e.contains("does not match the requested backbone"), "{e}");
    let e = import_err(
        &fixtures().join("parity/dla34.pth"),
        &res18_small(Scheme::Deepmark62),
    );
    assert!(e.contains("check the architecture"), "{e}");
    // Same family, other widths (full-size res18 vs the reduced fixture).
    let full = CenterNetConfig::new(Arch::Res18, Scheme::None.layout());
    let e = import_err(&fixtures().join("parity/res18.pth"), &full);
    assert!(e.contains("does not match"), "{e}");
}
