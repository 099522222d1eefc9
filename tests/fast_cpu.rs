//! The fast CPU inference form (`model::fast`: folded BatchNorm, fused epilogues, own GEMM
//! kernels) against the generic Burn path and against PyTorch, on the parity fixtures of all five
//! architectures (random weights, random BatchNorm statistics, non-zero DCN offsets and masks).
#![cfg(all(feature = "pytorch", feature = "flex", feature = "ndarray"))]

mod common;

use burn::tensor::{Device, Tensor};
use common::*;
use deepmark::codec::HEAD_NAMES;
use deepmark::heads_io::heads_to_host;
use deepmark::model::fast::{FastCenterNet, WinogradTiles, is_host_cpu};

const ARCHS: [&str; 5] = ["res18", "res50", "dla34", "mdla34", "hourglass104"];

/// The fixture of `arch` compiled with each of `forms` against the generic path and PyTorch.
fn check(arch: &str, device: &Device, forms: &[WinogradTiles]) {
    let (cfg, model, io) = parity_fixture(arch, device);
    let input = to_tensor(&io["input"], device);
    // A batch of two different images: the input and its mirror image.
    let batch = Tensor::cat(vec![input.clone(), input.flip([3])], 0);
    let generic = heads_to_host(&model.forward(batch.clone())).unwrap();
    let last = cfg.backbone.num_stacks() - 1;
    for &winograd in forms {
        let fast = FastCenterNet::compile_with(&model, winograd).unwrap();
        let ours = heads_to_host(&fast.forward(batch.clone()).unwrap()).unwrap();
        let mut worst_generic = 0.0f64;
        for name in HEAD_NAMES {
            let (g, f) = (&generic[name], &ours[name]);
            assert_eq!(f.shape, g.shape, "{arch} {name}");
            let what = format!("{arch} {name} ({winograd:?}): fast vs generic");
            worst_generic = worst_generic.max(within_parity(&f.data, &g.data, &what));
        }
        // The first image against PyTorch's own output.
        let worst_torch =
            max_err_against_pytorch(&ours, &io, last, &format!("{arch} ({winograd:?})"));
        println!(
            "{arch} ({winograd:?}): fast vs generic {worst_generic:.2e}, fast vs PyTorch \
             {worst_torch:.2e} (max relative error over the heads)"
        );
    }
}

#[test]
fn fast_equals_generic_and_pytorch_on_flex() {
    assert!(is_host_cpu(&flex()));
    for arch in ARCHS {
        check(arch, &flex(), &[WinogradTiles::Auto]);
    }
}

/// Each form of the 3×3 convolutions on its own (F(4×4)'s float32 error is the largest), on
/// every fixture: `Auto` picks per map size, so a fixture's small maps would leave a form
/// unchecked.
#[test]
fn every_winograd_form_equals_pytorch() {
    for arch in ARCHS {
        check(
            arch,
            &flex(),
            &[WinogradTiles::F2, WinogradTiles::F4, WinogradTiles::Off],
        );
    }
}

#[test]
fn fast_equals_generic_on_ndarray() {
    assert!(is_host_cpu(&ndarray()));
    for arch in ["res18", "dla34"] {
        check(arch, &ndarray(), &[WinogradTiles::Auto]);
    }
}

/// Forward passes from several threads at once (each pass moves onto rayon's pool and keeps
/// its other workers awake; passes may nest on a worker) finish, and give the bits of one pass
/// run alone.
#[test]
fn passes_from_several_threads_at_once_give_the_bits_of_one() {
    let device = flex();
    for arch in ["mdla34", "dla34"] {
        let (_, model, io) = parity_fixture(arch, &device);
        let input = to_tensor(&io["input"], &device);
        let fast = FastCenterNet::compile(&model).unwrap();
        let bits = |x: Tensor<4>| {
            let heads = heads_to_host(&fast.forward(x).unwrap()).unwrap();
            HEAD_NAMES
                .iter()
                .map(|n| {
                    heads[*n]
                        .data
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        let alone = bits(input.clone());
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..3)
                .map(|_| s.spawn(|| (0..3).map(|_| bits(input.clone())).collect::<Vec<_>>()))
                .collect();
            for r in runs {
                for got in r.join().expect("no panic") {
                    assert!(got == alone, "{arch}: a pass beside others gave other bits");
                }
            }
        });
    }
}
