//! The synthetic default dataset: deterministic for a seed, valid DeepFashion2 (it loads with
//! no skipped item), with occlusion flags where garments overlap.

mod common;

use common::tempdir;
use deepmark::data::deepfashion2::load_coco;
use deepmark::data::synth::{SynthConfig, generate};

#[test]
fn synthetic_set_is_deterministic_and_valid() {
    let cfg = SynthConfig {
        n: 12,
        seed: 5,
        ..Default::default()
    };
    let (a, b) = (tempdir("synth-a"), tempdir("synth-b"));
    let (coco, report) = generate(&a, &cfg, &mut |_, _| {}).unwrap();
    generate(&b, &cfg, &mut |_, _| {}).unwrap();
    assert!(report.skipped.is_empty());
    assert_eq!(coco.images.len(), 12);
    for f in ["train.json", "image/000007.jpg", "annos/000012.json"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }
    let (samples, skipped) = load_coco(
        &a.join("train.json"),
        false,
        &deepmark::io::Limits::default(),
    )
    .unwrap();
    assert!(skipped.skipped.is_empty());
    let items: Vec<_> = samples.iter().flat_map(|s| &s.items).collect();
    assert!(items.len() >= 12);
    let mut occluded = 0;
    for it in &items {
        let [x, y, w, h] = it.bbox;
        for k in it.keypoints.iter().filter(|k| k[2] > 0.0) {
            assert!(
                k[0] >= x - 1.0 && k[0] <= x + w + 1.0 && k[1] >= y - 1.0 && k[1] <= y + h + 1.0
            );
            occluded += (k[2] == 1.0) as usize;
        }
    }
    assert!(
        occluded > 0,
        "overlapping garments should occlude some landmarks"
    );
    // Another seed gives another set.
    let c = tempdir("synth-c");
    generate(&c, &SynthConfig { seed: 6, ..cfg }, &mut |_, _| {}).unwrap();
    assert_ne!(
        std::fs::read(a.join("train.json")).unwrap(),
        std::fs::read(c.join("train.json")).unwrap()
    );
    for d in [a, b, c] {
        let _ = std::fs::remove_dir_all(d);
    }
}
