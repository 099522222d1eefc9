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

/// `export::pytorch` is the inverse of the import: every parity fixture (checkpoints written by
/// PyTorch CenterNet's modules) imported, written back as a CenterNet checkpoint and imported
/// again gives the same weights bit for bit, every key found and used (CenterNet's names, the
/// import rules read them all), and PyTorch's `num_batches_tracked` beside every BatchNorm.
/// (`torch.load(weights_only=True)` of these files gives the fixtures' key sets and values
/// exactly: checked with PyTorch 2.15 on 2026-12-05, docs/export.md.)
#[test]
fn exported_pytorch_checkpoints_import_back_bit_for_bit() {
    let dir = tempdir("export-pytorch");
    for arch in ["res18", "res50", "dla34", "mdla34", "hourglass104"] {
        let cfg = fixture_config(arch);
        let source = fixtures().join(format!("parity/{arch}.pth"));
        let (model, first) = import_pytorch(&source, &cfg, &flex()).unwrap();
        let out = dir.join(format!("{arch}.pth"));
        deepmark::export::pytorch::save(&model, &cfg, &out).unwrap();
        let (back, report) = import_pytorch(&out, &cfg, &flex()).unwrap();
        assert!(report.missing.is_empty(), "{arch}: {report}");
        assert!(report.unused.is_empty(), "{arch}: {report}");
        assert!(report.reinitialised.is_empty(), "{arch}: {report}");
        assert_eq!(report.loaded, first.loaded, "{arch}");
        let batch_norms = report
            .ignored
            .iter()
            .filter(|k| k.ends_with(".num_batches_tracked"))
            .count();
        assert_eq!(
            batch_norms,
            report.ignored.len(),
            "{arch}: {:?}",
            report.ignored
        );
        use burn::store::ModuleSnapshot;
        let running_vars = model
            .collect(None, None, true)
            .iter()
            .filter(|t| t.name.ends_with(".running_var"))
            .count();
        assert!(
            running_vars > 0 && batch_norms == running_vars,
            "{arch}: {batch_norms} of {running_vars}"
        );
        let a = module_values(&model);
        let b = module_values(&back);
        assert_eq!(a.len(), b.len(), "{arch}");
        for (x, y) in a.iter().zip(&b) {
            let same =
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "{arch}: a tensor changed in the round trip");
        }
        println!(
            "{arch}: {} tensors, {batch_norms} BatchNorms, bit for bit",
            report.loaded
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
