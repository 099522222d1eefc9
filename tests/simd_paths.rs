//! The AVX2 + FMA copies of the fast CPU form's kernels, on any x86-64 machine. `gemm` and this
//! crate's own multiversioned loops (`model::fast::simd`) both pick the widest instruction set
//! the CPU has at run time, so on an AVX-512 machine their AVX2 copies never run in the other
//! tests. Here the fast-form parity check runs natively, then again under QEMU's user-mode
//! emulator with a Haswell CPU model (AVX2 and FMA, no AVX-512), where both dispatchers take
//! their AVX2 copies: every head of three architectures against PyTorch, to ≤ 1e-4, both ways.
//! `.ci/run` installs QEMU (Debian's `qemu-user`) and sets `DEEPMARK_REQUIRE_QEMU=1`, so CI
//! does not skip it.
#![cfg(all(target_arch = "x86_64", feature = "pytorch", feature = "flex"))]

mod common;

use std::process::Command;

use common::*;
use deepmark::heads_io::heads_to_host;
use deepmark::model::fast::{FastCenterNet, WinogradTiles, simd};

/// Set in the emulated child run.
const CHILD: &str = "DEEPMARK_SIMD_CHILD";

/// The fast form of three fixtures (plain convolutions and F(2×2), DCN, F(4×4) and depthwise
/// up-sampling) against PyTorch's heads.
#[test]
fn fast_form_equals_pytorch_at_this_cpus_level() {
    let device = flex();
    println!(
        "simd level {:?}, avx512f {}, avx2 {}, fma {}",
        simd::level(),
        std::arch::is_x86_feature_detected!("avx512f"),
        std::arch::is_x86_feature_detected!("avx2"),
        std::arch::is_x86_feature_detected!("fma"),
    );
    for arch in ["res18", "dla34", "mdla34"] {
        let (cfg, model, io) = parity_fixture(arch, &device);
        let last = cfg.backbone.num_stacks() - 1;
        for winograd in [WinogradTiles::F2, WinogradTiles::F4] {
            let fast = FastCenterNet::compile_with(&model, winograd).unwrap();
            let ours =
                heads_to_host(&fast.forward(to_tensor(&io["input"], &device)).unwrap()).unwrap();
            let worst =
                max_err_against_pytorch(&ours, &io, last, &format!("{arch} ({winograd:?})"));
            println!("{arch} ({winograd:?}): max relative error {worst:.2e}");
        }
    }
}

/// The same check under emulation of an AVX2-only CPU.
#[test]
fn the_avx2_copies_equal_pytorch_under_emulation() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let qemu = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("qemu-x86_64"))
            .find(|p| p.is_file())
    });
    let Some(qemu) = qemu else {
        assert!(
            std::env::var_os("DEEPMARK_REQUIRE_QEMU").is_none(),
            "qemu-x86_64 is not installed (Debian's qemu-user) and DEEPMARK_REQUIRE_QEMU is set"
        );
        eprintln!("skipped: qemu-x86_64 is not installed (Debian's qemu-user)");
        return;
    };
    let out = Command::new(qemu)
        .args(["-cpu", "Haswell"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fast_form_equals_pytorch_at_this_cpus_level",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1")
        .env_remove("DEEPMARK_SIMD")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "emulated run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
    // gemm takes its AVX-512 kernels exactly when `avx512f` is detected; ours, Level::Avx512.
    assert!(
        stdout.contains("simd level Avx2, avx512f false, avx2 true, fma true"),
        "the emulated CPU did not select the AVX2 copies:\n{stdout}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the check did not run:\n{stdout}"
    );
}
