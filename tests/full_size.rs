//! Full-size architectures: parameter counts equal those of the PyTorch reference models
//! (`scripts/centernet_ref.py`, printed by `scripts/param_counts.py`; DLA-34 with 62 groups is
//! CenterNet's 20.15 M) and a 512×512 forward gives `(1, C, 128, 128)` heads.
#![cfg(feature = "flex")]

mod common;

use burn::tensor::Tensor;
use common::flex;
use deepmark::codec::HEAD_NAMES;
use deepmark::codec::Scheme;
use deepmark::model::{Arch, CenterNetConfig};

/// (arch, parameters with the deepmark62 heads, parameters with the COCO-17 heads), from
/// PyTorch's `sum(p.numel() for p in model.parameters())` without `base.fc`.
const PYTORCH_PARAMS: [(Arch, usize, usize); 5] = [
    (Arch::Res18, 16_270_797, 16_261_242),
    (Arch::Res50, 34_893_773, 34_884_218),
    (Arch::Dla34, 20_150_125, 20_112_346),
    (Arch::Mdla34, 19_512_061, 19_474_282),
    (Arch::Hourglass104, 194_886_682, 194_811_124),
];

#[test]
fn parameter_counts_match_pytorch() {
    let device = flex();
    for (arch, dm62, coco) in PYTORCH_PARAMS {
        for (scheme, expected) in [(Scheme::Deepmark62, dm62), (Scheme::Coco17, coco)] {
            let n = CenterNetConfig::new(arch, scheme.layout())
                .init(&device)
                .num_trainable_params();
            assert_eq!(n, expected, "{arch} {scheme}");
            // The config-only estimate that refuses mismatched weights before building is an
            // upper bound within the factor the loader allows (8).
            let est = CenterNetConfig::new(arch, scheme.layout())
                .estimated_params()
                .unwrap();
            let ratio = est / n as f64;
            assert!(
                (1.0..=8.0).contains(&ratio),
                "{arch} {scheme}: {est} vs {n}"
            );
        }
    }
}

#[test]
fn full_size_forward_at_512_gives_stride_4_heads() {
    let device = flex();
    let schemes = [
        Scheme::Deepmark62,
        Scheme::Agg81,
        Scheme::None,
        Scheme::Coco17,
        Scheme::Deepmark62,
    ];
    for (arch, scheme) in Arch::ALL.into_iter().zip(schemes) {
        let cfg = CenterNetConfig::new(arch, scheme.layout());
        let model = cfg.init(&device);
        let x = Tensor::<4>::zeros([1, 3, 512, 512], &device);
        let heads = model.forward(x);
        let expected = cfg.layout.channels();
        let mut total = 0;
        for ((name, t), c) in heads.named().into_iter().zip(expected.into_array()) {
            assert_eq!(t.dims(), [1, c, 128, 128], "{arch} {scheme} {name}");
            total += c;
        }
        assert_eq!(total, scheme.layout().total_channels());
        assert_eq!(heads.named().map(|(n, _)| n), HEAD_NAMES);
    }
}
