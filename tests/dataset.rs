//! The training data path on the real fixtures: reproducible augmentation, targets that decode
//! back to the ground truth (through the inverse warp), and batches of the right shapes.
#![cfg(all(feature = "train", feature = "flex"))]

mod common;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use deepmark::codec::Grouping;
use deepmark::codec::STRIDE;
use deepmark::codec::Scheme;
use deepmark::data::augment::AugmentConfig;
use deepmark::data::dataset::{Df2Dataset, SampleConfig, TrainBatcher};
use deepmark::garment::category;
use deepmark::preprocess::fix_res_transform;

fn open(augment: AugmentConfig) -> Option<Df2Dataset> {
    let root = common::shared_data("deepfashion2/kgdet_demo32")?;
    let cfg = SampleConfig {
        augment,
        grouping: Grouping::for_scheme(Scheme::Deepmark62).unwrap(),
        num_classes: 13,
        max_objs: 32,
        seed: 317,
    };
    Some(
        Df2Dataset::open(
            &root.join("demo_dataset-32.json"),
            &root.join("image"),
            cfg,
            false,
            &deepmark::io::Limits::default(),
        )
        .unwrap()
        .0,
    )
}

#[test]
fn augmentation_is_reproducible_and_changes_with_the_epoch() {
    let Some(ds) = open(AugmentConfig {
        input_size: 128,
        ..Default::default()
    }) else {
        return;
    };
    let a = ds.get(3).unwrap();
    let b = ds.get(3).unwrap();
    assert_eq!(a.input, b.input);
    assert_eq!(a.targets, b.targets);
    ds.set_epoch(1);
    let c = ds.get(3).unwrap();
    assert_ne!(a.input, c.input);
}

#[test]
fn targets_decode_back_to_the_ground_truth() {
    // No random crop, flip or colour: the warp is CenterNet's test-time fix_res transform.
    let size = 256;
    let Some(ds) = open(AugmentConfig {
        input_size: size,
        random_crop: false,
        flip: 0.0,
        color: false,
    }) else {
        return;
    };
    let g = Grouping::for_scheme(Scheme::Deepmark62).unwrap();
    let out = (size / STRIDE) as f64;
    let mut checked = 0;
    for (i, s) in ds.samples().iter().enumerate() {
        let item = ds.get(i).unwrap();
        let fwd = fix_res_transform(s.width, s.height, size);
        // Ground truth in output-map pixels; CenterNet clips boxes to [0, out - 1].
        let to_map = |x: f64, y: f64| fwd.apply([x, y]).map(|v| v / STRIDE as f64);
        // One output cell in image pixels: the quantisation of the stride-4 map.
        let cell = STRIDE as f64 * s.width.max(s.height) as f64 / size as f64;
        let inv = fwd.inverse();
        let to_image =
            |p: [f32; 2]| inv.apply([(p[0] * STRIDE as f32) as f64, (p[1] * STRIDE as f32) as f64]);
        let decoded = item.targets.decode();
        // Every labelled item is recovered (all boxes lie in the map, < max_objs per image).
        let labelled: Vec<_> = s.items.iter().filter(|it| it.num_labelled() > 0).collect();
        assert_eq!(decoded.len(), labelled.len(), "image {}", s.image_id);
        for (d, gt) in decoded.iter().zip(&labelled) {
            assert_eq!(
                d.class + 1,
                gt.category_id,
                "image {}: decoded {:?} vs items {:?}",
                s.image_id,
                decoded.iter().map(|d| d.class + 1).collect::<Vec<_>>(),
                labelled.iter().map(|it| it.category_id).collect::<Vec<_>>()
            );
            let [x, y, w, h] = gt.bbox.map(f64::from);
            let (p1, p2) = (to_map(x, y), to_map(x + w, y + h));
            let clip = |v: f64| v.clamp(0.0, out - 1.0);
            let expected = [clip(p1[0]), clip(p1[1]), clip(p2[0]), clip(p2[1])];
            for (a, b) in d.bbox.iter().zip(expected) {
                assert!(
                    (*a as f64 - b).abs() < 1e-3,
                    "image {}: box {:?} vs {expected:?}",
                    s.image_id,
                    d.bbox
                );
            }
            // In image pixels, within one output cell of the unclipped box.
            let (q1, q2) = (
                to_image([d.bbox[0], d.bbox[1]]),
                to_image([d.bbox[2], d.bbox[3]]),
            );
            for (a, b) in [(q1[0], x), (q1[1], y), (q2[0], x + w), (q2[1], y + h)] {
                assert!((a - b).abs() <= cell, "image {}: {a} vs {b}", s.image_id);
            }
            let cat = category(gt.category_id).unwrap();
            for (grp, p) in &d.landmarks {
                let local = cat
                    .range()
                    .find(|&k| g.group_of_landmark(k) == *grp)
                    .unwrap();
                let k = gt.keypoints[local];
                let q = to_image(*p);
                assert!(
                    (q[0] - k[0] as f64).abs() < 0.05 && (q[1] - k[1] as f64).abs() < 0.05,
                    "image {}",
                    s.image_id
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "only {checked} landmarks checked");
}

#[test]
fn batches_have_centernet_shapes() {
    let Some(ds) = open(AugmentConfig {
        input_size: 128,
        ..Default::default()
    }) else {
        return;
    };
    let items: Vec<_> = (0..3).map(|i| ds.get(i).unwrap()).collect();
    let batch = TrainBatcher.batch(items, &common::flex());
    assert_eq!(batch.input.dims(), [3, 3, 128, 128]);
    assert_eq!(batch.hm.dims(), [3, 13, 32, 32]);
    assert_eq!(batch.hm_hp.dims(), [3, 62, 32, 32]);
    assert_eq!(batch.wh.dims(), [3, 32, 2]);
    assert_eq!(batch.ind.dims(), [3, 32]);
    assert_eq!(batch.hps.dims(), [3, 32, 124]);
    assert_eq!(batch.hp_offset.dims(), [3, 32 * 62, 2]);
    assert_eq!(batch.hp_mask.dims(), [3, 32 * 62]);
}

#[test]
fn burn_data_loader_runs_the_pipeline_on_two_workers() {
    use burn::data::dataloader::DataLoaderBuilder;
    use std::sync::Arc;
    let Some(ds) = open(AugmentConfig {
        input_size: 128,
        ..Default::default()
    }) else {
        return;
    };
    let ds = Arc::new(ds);
    let loader = DataLoaderBuilder::new(TrainBatcher)
        .batch_size(8)
        .shuffle(317)
        .num_workers(2)
        .set_device(common::flex())
        .build(Arc::clone(&ds));
    let mut images = 0;
    for batch in loader.iter() {
        let batch = batch.unwrap();
        assert_eq!(batch.hm.dims()[1..], [13, 32, 32]);
        images += batch.input.dims()[0];
    }
    assert_eq!(images, 32);
    ds.set_epoch(1);
}
