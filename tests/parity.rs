//! Parity with PyTorch: for every architecture, a CenterNet checkpoint written by
//! `scripts/make_parity_fixtures.py` (reduced widths, random weights, non-zero DCN offsets and
//! masks, random BatchNorm statistics) is imported and every head of every stack must match
//! PyTorch's output to ≤ 1e-4 relative error on flex and ndarray.
#![cfg(all(feature = "pytorch", feature = "flex", feature = "ndarray"))]

mod common;

use burn::tensor::Device;
use common::*;
use deepmark::checkpoint::import_pytorch;
use deepmark::codec::HEAD_NAMES;
use deepmark::heads_io::{HostTensor, heads_to_host, read_safetensors};

const ARCHS: [&str; 5] = ["res18", "res50", "dla34", "mdla34", "hourglass104"];

/// Run one fixture on `device`; returns the max relative error over all heads and stacks, and
/// the heads for cross-backend comparisons.
fn run(arch: &str, device: &Device) -> (f64, Vec<Vec<HostTensor>>) {
    let cfg = fixture_config(arch);
    let (model, report) =
        import_pytorch(&fixtures().join(format!("parity/{arch}.pth")), &cfg, device).unwrap();
    assert!(report.reinitialised.is_empty(), "{arch}: {report}");
    assert!(report.missing.is_empty(), "{arch}: {report}");
    assert!(report.unused.is_empty(), "{arch}: {report}");
    let io = read_safetensors(&fixtures().join(format!("parity/{arch}.io.safetensors"))).unwrap();
    let stacks = model.forward_stacks(to_tensor(&io["input"], device));
    assert_eq!(stacks.len(), cfg.backbone.num_stacks());
    let mut worst: f64 = 0.0;
    let mut all = Vec::new();
    for (s, heads) in stacks.iter().enumerate() {
        let host = heads_to_host(heads).unwrap();
        let mut per_stack = Vec::new();
        for name in HEAD_NAMES {
            let ours = &host[name];
            let theirs = &io[&format!("stack{s}.{name}")];
            assert_eq!(ours.shape, theirs.shape, "{arch} stack {s} {name}");
            let what = format!("{arch} stack {s} {name}");
            worst = worst.max(within_parity(&ours.data, &theirs.data, &what));
            per_stack.push(ours.clone());
        }
        all.push(per_stack);
    }
    // `forward` (inference) is the last stack.
    let last = heads_to_host(&model.forward(to_tensor(&io["input"], device))).unwrap();
    assert_eq!(last["hm"], all.last().unwrap()[0]);
    (worst, all)
}

#[test]
fn parity_flex() {
    for arch in ARCHS {
        let (e, _) = run(arch, &flex());
        println!("flex {arch}: max relative error {e:.2e}");
    }
}

#[test]
fn parity_ndarray() {
    for arch in ARCHS {
        let (e, _) = run(arch, &ndarray());
        println!("ndarray {arch}: max relative error {e:.2e}");
    }
}
