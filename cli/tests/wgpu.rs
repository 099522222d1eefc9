//! The same network on wgpu (lavapipe, Mesa's software Vulkan, in CI) agrees with flex to
//! ≤ 1e-3 relative error on every head.
#![cfg(all(feature = "pytorch", feature = "flex", feature = "wgpu"))]

#[path = "../../tests/common/mod.rs"]
mod common;

use common::*;
use deepmark::checkpoint::import_pytorch;
use deepmark::codec::HEAD_NAMES;
use deepmark::heads_io::{heads_to_host, read_safetensors};
use deepmark_cli::backend::BackendKind;

#[test]
fn wgpu_forward_matches_flex() {
    let wgpu = match BackendKind::Wgpu.device() {
        Ok(d) => d,
        Err(e) if std::env::var_os("DEEPMARK_REQUIRE_WGPU").is_none() => {
            eprintln!("skipping: {e} (set DEEPMARK_REQUIRE_WGPU=1 to make this a failure)");
            return;
        }
        Err(e) => panic!("wgpu required but unavailable: {e}"),
    };
    for arch in ["dla34", "res18"] {
        let dir = fixtures().join("parity");
        let cfg = fixture_config(arch);
        let io = read_safetensors(&dir.join(format!("{arch}.io.safetensors"))).unwrap();
        let ckpt = dir.join(format!("{arch}.pth"));
        let heads = |device: &burn::tensor::Device| {
            let (model, _) = import_pytorch(&ckpt, &cfg, device).unwrap();
            heads_to_host(&model.forward(to_tensor(&io["input"], device))).unwrap()
        };
        let (a, b) = (heads(&wgpu), heads(&flex()));
        for name in HEAD_NAMES {
            let e = rel_err(&a[name].data, &b[name].data);
            println!("wgpu vs flex {arch} {name}: {e:.2e}");
            assert!(
                e <= 1e-3,
                "{arch} {name}: wgpu vs flex relative error {e:.3e} > 1e-3"
            );
        }
    }
}
