//! `--precision`: the demo detector in f16 and bf16 (flex, Burn's generic operations) finds
//! what it finds in f32, within what each float type can carry; unsupported requests are
//! clear errors. Each run is its own process: a device's float type is set once per process.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::deepmark;

#[test]
fn reduced_precision_finds_what_f32_finds() {
    let Some(image) = common::shared_data("deepfashion2/kgdet_demo32/image/002092.jpg") else {
        return;
    };
    let dir = common::tempdir("precision");
    let run = |precision: &str| {
        let extra = ["--generic", "--precision", precision];
        common::demo_boxes(&image, &dir.join(precision), &extra)
            .unwrap_or_else(|e| panic!("{precision}: {e}"))
    };
    let reference = run("f32");
    assert!(!reference.is_empty(), "the demo detector finds something");
    // Half precision keeps 11 significant bits, bfloat16 8: through ~20 layers the heads'
    // relative error grows to ~1e-2 and ~1e-1 of a logit, which moves a sigmoid score by
    // at most a quarter of that.
    for (precision, score_tol, px_tol) in [("f16", 0.01, 2.0), ("bf16", 0.05, 6.0)] {
        let got = run(precision);
        common::assert_same_detection(precision, &reference[0], &got[0], score_tol, px_tol);
    }
}

/// `deepmark args…` fails and its error says `needle`.
fn refused(args: &[&str], needle: &str) {
    let o = deepmark(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn unsupported_precisions_are_clear_errors() {
    let infer = [
        "infer",
        "model-weights/README.md",
        "--weights",
        "model-weights/demo.bpk",
    ];
    refused(
        &[&infer[..], &["--precision", "flex32"]].concat(),
        "--precision flex32 on the flex backend",
    );
    refused(
        &["infer", "x.jpg", "--precision", "f8"],
        "unknown precision 'f8'",
    );
}
