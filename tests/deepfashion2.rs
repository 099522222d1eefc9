//! The real DeepFashion2 fixtures (`../shared/data/deepfashion2/kgdet_demo32`, 32 images, 55
//! items; test-only data, never copied into this repository): every item parses, grouping
//! round trips are exact, and raw → COCO conversion reproduces the official COCO form.

use std::collections::BTreeMap;
use std::path::PathBuf;

use deepmark::codec::Grouping;
use deepmark::codec::Scheme;
use deepmark::data::deepfashion2::{RawItem, convert_raw, load_coco, read_coco_file};
use deepmark::garment::category;

mod common;

fn fixture() -> Option<PathBuf> {
    common::shared_data("deepfashion2/kgdet_demo32/demo_dataset-32.json")
}

#[test]
fn every_real_item_parses_with_the_documented_counts() {
    let Some(path) = fixture() else { return };
    let (samples, report) = load_coco(&path, false, &deepmark::io::Limits::default()).unwrap();
    assert!(report.skipped.is_empty());
    assert_eq!(samples.len(), 32);
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for s in &samples {
        for item in &s.items {
            *counts.entry(item.category_id).or_default() += 1;
        }
    }
    let expected: BTreeMap<usize, usize> = [
        (1, 14),
        (8, 10),
        (7, 7),
        (9, 6),
        (2, 5),
        (4, 5),
        (10, 3),
        (5, 2),
        (12, 2),
        (13, 1),
    ]
    .into();
    assert_eq!(counts, expected);
    assert_eq!(counts.values().sum::<usize>(), 55);
}

#[test]
fn grouping_round_trips_are_exact_on_real_annotations() {
    let Some(path) = fixture() else { return };
    let (samples, _) = load_coco(&path, false, &deepmark::io::Limits::default()).unwrap();
    for scheme in [Scheme::None, Scheme::Agg81, Scheme::Deepmark62] {
        let g = Grouping::for_scheme(scheme).unwrap();
        for item in samples.iter().flat_map(|s| &s.items) {
            let cat = category(item.category_id).unwrap();
            let enc = g.encode(cat, &item.keypoints);
            assert_eq!(
                g.decode(cat, &enc),
                item.keypoints,
                "{scheme} category {}",
                cat.id
            );
        }
    }
}

#[test]
fn raw_to_coco_conversion_reproduces_the_official_file() {
    let Some(path) = fixture() else { return };
    let coco = read_coco_file(&path, &deepmark::io::Limits::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("deepmark-raw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Write each image's items as a raw DeepFashion2 JSON (local landmarks, x1y1x2y2 boxes).
    let mut annos = Vec::new();
    for img in &coco.images {
        let mut obj = serde_json::Map::new();
        obj.insert("source".into(), "user".into());
        let items: Vec<_> = coco
            .annotations
            .iter()
            .filter(|a| a.image_id == img.id)
            .collect();
        obj.insert(
            "pair_id".into(),
            items.first().map_or(0, |a| a.pair_id).into(),
        );
        for (i, a) in items.iter().enumerate() {
            let cat = category(a.category_id as usize).unwrap();
            let item = RawItem {
                category_name: cat.name.into(),
                category_id: a.category_id,
                style: a.style,
                bounding_box: vec![
                    a.bbox[0],
                    a.bbox[1],
                    a.bbox[0] + a.bbox[2],
                    a.bbox[1] + a.bbox[3],
                ],
                landmarks: a.keypoints[3 * cat.start..3 * (cat.start + cat.num_landmarks)].to_vec(),
                segmentation: a.segmentation.clone(),
                scale: 2,
                occlusion: 1,
                zoom_in: 1,
                viewpoint: 2,
                attributes: Default::default(),
            };
            obj.insert(
                format!("item{}", i + 1),
                serde_json::to_value(item).unwrap(),
            );
        }
        let p = dir.join(format!("{:06}.json", img.id));
        std::fs::write(&p, serde_json::to_string(&obj).unwrap()).unwrap();
        annos.push((p, img.width, img.height));
    }
    let (converted, report) = convert_raw(&annos, false, &deepmark::io::Limits::default()).unwrap();
    assert!(report.skipped.is_empty());
    assert_eq!(converted.images, coco.images);
    assert_eq!(converted.categories, coco.categories);
    assert_eq!(
        (&converted.info, &converted.licenses),
        (&coco.info, &coco.licenses)
    );
    assert_eq!(converted.annotations.len(), coco.annotations.len());
    // The official converter writes images in file order and each image's items in order.
    let theirs_in_order = coco.images.iter().flat_map(|img| {
        coco.annotations
            .iter()
            .filter(move |a| a.image_id == img.id)
    });
    for (ours, theirs) in converted.annotations.iter().zip(theirs_in_order) {
        assert_eq!(ours.image_id, theirs.image_id);
        assert_eq!(ours.category_id, theirs.category_id);
        assert_eq!(ours.bbox, theirs.bbox);
        assert_eq!(ours.area, theirs.area, "area is the box area");
        assert_eq!(ours.keypoints, theirs.keypoints);
        assert_eq!(ours.num_keypoints, theirs.num_keypoints);
        assert_eq!((ours.style, ours.pair_id), (theirs.style, theirs.pair_id));
        assert_eq!(ours.segmentation, theirs.segmentation);
        // DeepFashion2's per-garment attributes are kept, as label strings of the file's tasks.
        let want: std::collections::BTreeMap<String, String> = [
            ("scale", "nyn"),
            ("occlusion", "ynn"),
            ("zoom_in", "ynn"),
            ("viewpoint", "nyn"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        assert_eq!(ours.attributes, want);
    }
    assert_eq!(
        converted.attribute_tasks,
        deepmark::attributes::deepfashion2_tasks()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
