//! `--backend vulkan` end to end: wgpu compiling SPIR-V (CubeCL's Vulkan compiler, the path to
//! cooperative-matrix tiles) finds what flex finds on a real DeepFashion2 photo, in f32, f16 and
//! (where the device has it) bf16. In CI this is lavapipe, Mesa's software Vulkan,
//! which lacks `VK_KHR_workgroup_memory_explicit_layout`: it exercises CubeCL's implicit
//! shared-memory lowering, the one `cargo xtask` corrects (xtask/src/spirv_fix.rs). Built only
//! with the `vulkan` feature; `cargo xtask test` runs it in that build.
#![cfg(feature = "vulkan")]

#[path = "../../tests/common/mod.rs"]
mod common;

#[test]
fn vulkan_finds_what_flex_finds() {
    if let Err(e) = deepmark_cli::backend::BackendKind::Vulkan.device() {
        if std::env::var_os("DEEPMARK_REQUIRE_WGPU").is_some() {
            panic!("vulkan required but unavailable: {e}");
        }
        eprintln!("skipping: {e}");
        return;
    }
    let Some(image) = common::shared_data("deepfashion2/kgdet_demo32/image/002092.jpg") else {
        return;
    };
    let dir = common::tempdir("vulkan");
    // One kernel cache for the vulkan runs: the f16 run tunes only what f32 did not.
    let cache = dir.join("kernels");
    let cache = cache.to_str().unwrap();
    let run = |backend: &str, precision: &str| {
        let out = dir.join(format!("{backend}-{precision}"));
        let extra = [
            "--backend",
            backend,
            "--precision",
            precision,
            "--kernel-cache",
            cache,
        ];
        common::demo_boxes(&image, &out, &extra)
    };
    let reference = run("flex", "f32").unwrap();
    assert!(reference.len() >= 3, "the demo detector finds something");
    // f32 everywhere: only summation order differs (lavapipe, session 11: scores within 5e-8,
    // boxes within 2e-5 px). f16 keeps 11 significant bits; the bounds are those
    // tests/precision.rs holds flex's f16 to (lavapipe: 2e-4 and 1.1 px).
    // bf16 (8 significant bits) is a device feature (VK_KHR_shader_bfloat16): where the device
    // lacks it, as lavapipe does, the run is a clear error instead.
    let cases = [("f32", 1e-4, 0.1), ("f16", 0.01, 2.0), ("bf16", 0.05, 6.0)];
    for (precision, score_tol, px_tol) in cases {
        let got = match run("vulkan", precision) {
            Ok(got) => got,
            Err(e) if precision == "bf16" => {
                println!("vulkan bf16 refused: {e}");
                assert!(
                    e.contains("--precision bf16 on the vulkan backend")
                        && e.contains("does not support"),
                    "{e}"
                );
                continue;
            }
            Err(e) => panic!("vulkan {precision}: {e}"),
        };
        assert!(
            got.len() >= 3,
            "vulkan {precision}: {} detections",
            got.len()
        );
        for (i, (want, got)) in reference.iter().zip(&got).take(3).enumerate() {
            let what = format!("vulkan {precision} #{i}");
            common::assert_same_detection(&what, want, got, score_tol, px_tol);
        }
    }
}
