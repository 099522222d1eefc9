//! Taxonomies as data: the built-in ones, taxonomies read from a COCO keypoints file and
//! completed by a taxonomy file, grouping by name, model configs carrying their taxonomy, and
//! clear errors naming the file and the field for every inconsistency.

mod common;

use std::path::{Path, PathBuf};

use deepmark::codec::{Grouping, Scheme};
use deepmark::data::deepfashion2::load_coco_in;
use deepmark::garment::spec::{self, TaxonomyChoice};
use deepmark::garment::{DEEPFASHION2, Taxonomy};
use deepmark::io::Limits;
use deepmark::model::{Arch, CenterNetConfig};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A one-image COCO keypoints file with one category of `names` and one annotation carrying
/// `values` keypoint numbers.
fn coco_file(dir: &Path, names: &[&str], values: usize) -> PathBuf {
    let kps: Vec<f64> = (0..values)
        .map(|i| if i % 3 == 2 { 2.0 } else { 10.0 + i as f64 })
        .collect();
    let v = serde_json::json!({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [5, 5, 60, 60],
                         "area": 3600, "keypoints": kps, "num_keypoints": values / 3}],
        "categories": [{"id": 1, "name": "thing", "supercategory": "x", "keypoints": names,
                        "skeleton": [[1, 2]]}]
    });
    write(dir, "coco.json", &v.to_string())
}

#[test]
fn real_files_are_read_in_their_built_in_taxonomies() {
    let limits = Limits::default();
    for (file, name, landmarks) in [
        ("coco_person_keypoints/test_coco.json", "coco-person", 17),
        (
            "deepfashion_fld/mmpose_2img/test_fld.json",
            "deepfashion-fld",
            8,
        ),
        (
            "deepfashion2/kgdet_demo32/demo_dataset-32.json",
            "deepfashion2",
            294,
        ),
    ] {
        let Some(path) = common::shared_data(file) else {
            return;
        };
        let d = load_coco_in(&path, &TaxonomyChoice::FromData, false, &limits).unwrap();
        assert_eq!(d.taxonomy.name, name);
        assert_eq!(d.taxonomy.num_landmarks, landmarks);
        assert!(
            d.samples
                .iter()
                .all(|s| s.items.iter().all(|i| i.keypoints.len() == landmarks))
        );
        assert!(d.samples.iter().any(|s| !s.items.is_empty()));
    }
    // DeepFashion2's ground truth is already in its taxonomy: evaluated without a copy.
    let Some(df2) = common::shared_data("deepfashion2/kgdet_demo32/demo_dataset-32.json") else {
        return;
    };
    let gt = deepmark::eval::coco::GroundTruth::load(&df2, &limits).unwrap();
    assert!(matches!(
        gt.in_taxonomy(&DEEPFASHION2),
        std::borrow::Cow::Borrowed(_)
    ));
    // The person file's landmarks as written: the first annotation's nose at (367, 81).
    let Some(path) = common::shared_data("coco_person_keypoints/test_coco.json") else {
        return;
    };
    let d = load_coco_in(&path, &TaxonomyChoice::FromData, false, &limits).unwrap();
    let first = d.samples.iter().find(|s| s.image_id == 785).unwrap();
    assert_eq!(first.items[0].keypoints[0], [367.0, 81.0, 2.0]);
    // COCO's sigmas and CenterNet's flip pairs.
    let coco = d.taxonomy;
    assert_eq!(
        coco.oks_sigmas(),
        deepmark::eval::coco::coco_person_sigmas()
    );
    assert_eq!(coco.flip_permutation()[5], 6);
    assert_eq!(coco.categories[0].skeleton.len(), 19);
}

#[test]
fn a_coco_file_of_unknown_landmarks_gets_inferred_pairs_and_default_sigmas() {
    let dir = common::tempdir("taxonomy-infer");
    let path = coco_file(&dir, &["top", "left_tip", "right_tip"], 9);
    let d = load_coco_in(&path, &TaxonomyChoice::FromData, false, &Limits::default()).unwrap();
    let t = d.taxonomy;
    assert_eq!(t.name, "coco");
    assert_eq!(t.categories[0].flip_pairs, &[(2, 3)]);
    assert_eq!(t.categories[0].sigmas, &[spec::DEFAULT_SIGMA; 3]);
    assert_eq!(t.categories[0].skeleton, &[(1, 2)]);
    let notes = d.notes.join("\n");
    assert!(notes.contains("left_tip-right_tip"), "{notes}");
    assert!(notes.contains("no OKS sigmas"), "{notes}");
    // A taxonomy file completes it: pairs by name, sigmas.
    let tax = write(
        &dir,
        "mine.json",
        r#"{"name": "mine", "categories": [{"name": "thing",
            "flip_pairs": [["left_tip", "right_tip"]], "sigmas": [0.02, 0.03, 0.03]}]}"#,
    );
    let d = load_coco_in(&path, &TaxonomyChoice::File(tax), false, &Limits::default()).unwrap();
    assert_eq!(d.taxonomy.name, "mine");
    assert_eq!(d.taxonomy.categories[0].sigmas, &[0.02, 0.03, 0.03]);
    assert!(d.notes.is_empty(), "{:?}", d.notes);
}

/// The message of a data error, which must name the file and the field.
fn refused(path: &Path, choice: TaxonomyChoice, field: &str) -> String {
    let e = load_coco_in(path, &choice, false, &Limits::default()).unwrap_err();
    let m = e.to_string();
    assert_eq!(e.field, field, "{m}");
    assert!(m.contains(field), "{m}");
    m
}

#[test]
fn inconsistent_taxonomies_are_errors_naming_the_file_and_the_field() {
    let dir = common::tempdir("taxonomy-bad");
    // The category declares 3 landmarks, the annotation carries 4.
    let path = coco_file(&dir, &["top", "left_tip", "right_tip"], 12);
    let m = refused(&path, TaxonomyChoice::FromData, "keypoints");
    assert!(m.contains("coco.json") && m.contains("annotation 7"), "{m}");
    let good = coco_file(&dir, &["top", "left_tip", "right_tip"], 9);
    // A taxonomy file naming a landmark the data does not have.
    let unknown = write(
        &dir,
        "unknown.json",
        r#"{"categories": [{"name": "thing", "flip_pairs": [["left_tip", "right_toe"]]}]}"#,
    );
    let m = refused(&good, TaxonomyChoice::File(unknown), "flip_pairs");
    assert!(m.contains("unknown.json") && m.contains("right_toe"), "{m}");
    // Flip pairs that are not pairs.
    let twice = write(
        &dir,
        "twice.json",
        r#"{"categories": [{"name": "thing", "flip_pairs": [[2, 3], [3, 1]]}]}"#,
    );
    let m = refused(
        &good,
        TaxonomyChoice::File(twice),
        "categories[0].flip_pairs",
    );
    assert!(m.contains("twice.json"), "{m}");
    // Sigmas of the wrong length.
    let sigmas = write(
        &dir,
        "sigmas.json",
        r#"{"categories": [{"name": "thing", "sigmas": [0.1, 0.1]}]}"#,
    );
    let m = refused(&good, TaxonomyChoice::File(sigmas), "categories[0].sigmas");
    assert!(m.contains("2 sigmas for 3 landmarks"), "{m}");
    // A category the data does not have.
    let other = write(&dir, "other.json", r#"{"categories": [{"name": "shoe"}]}"#);
    refused(&good, TaxonomyChoice::File(other), "name");
    // A built-in taxonomy the data's categories disagree with.
    let m = refused(
        &good,
        TaxonomyChoice::Builtin("coco-person".into()),
        "keypoints",
    );
    assert!(m.contains("coco-person"), "{m}");
    // Same count, other names.
    let Some(fld) = common::shared_data("deepfashion_fld/mmpose_2img/test_fld.json") else {
        return;
    };
    let renamed = std::fs::read_to_string(&fld)
        .unwrap()
        .replace("\"left collar\"", "\"left neck\"");
    let renamed = write(&dir, "renamed.json", &renamed);
    let m = refused(
        &renamed,
        TaxonomyChoice::Builtin("deepfashion-fld".into()),
        "keypoints",
    );
    assert!(m.contains("left neck") && m.contains("left collar"), "{m}");
}

#[test]
fn grouping_by_name_merges_landmarks_across_categories() {
    let fashionai = Taxonomy::builtin("fashionai").unwrap();
    assert_eq!(fashionai.num_categories(), 5);
    assert_eq!(fashionai.num_landmarks, 53);
    let g = Grouping::by_name(fashionai).unwrap();
    // FashionAI's 24 landmark names.
    assert_eq!(g.num_groups(), 24);
    g.validate().unwrap();
    let (blouse, dress) = (
        fashionai.category(1).unwrap(),
        fashionai.category(2).unwrap(),
    );
    assert_eq!(blouse.name, "blouse");
    assert_eq!(g.group(blouse, 0), g.group(dress, 0)); // neckline_left
    // Mirrors of groups are groups: armpit_left's mirror is armpit_right in every category.
    let flip = g.flip_groups().unwrap();
    let left = blouse
        .landmarks
        .iter()
        .position(|n| *n == "armpit_left")
        .unwrap();
    let right = blouse
        .landmarks
        .iter()
        .position(|n| *n == "armpit_right")
        .unwrap();
    assert_eq!(flip[g.group(blouse, left)], g.group(blouse, right));
    // One channel per landmark otherwise.
    assert_eq!(Grouping::identity(fashionai).num_groups(), 53);
    // DeepFashion2's numbered landmarks do not group by name (mirrors would mix groups).
    assert!(Grouping::by_name(&DEEPFASHION2).is_err());
}

#[test]
fn model_configs_carry_a_taxonomy_the_layout_does_not_imply() {
    let fld = Taxonomy::builtin("deepfashion-fld").unwrap();
    let c = CenterNetConfig::for_grouping(Arch::Res18Slim, &Grouping::identity(fld));
    assert_eq!(c.layout.num_landmarks, 8);
    let json = serde_json::to_string(&c).unwrap();
    let back: CenterNetConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back.grouping().unwrap().taxonomy(), fld);
    // DeepFashion2's schemes and COCO's people are implied by the layout: nothing is saved,
    // so configs read and write as before.
    for scheme in Scheme::ALL {
        let g = Grouping::of_scheme(scheme).unwrap();
        let c = CenterNetConfig::for_grouping(Arch::Res18Slim, &g);
        assert!(c.taxonomy.is_none(), "{scheme}");
        assert_eq!(c, CenterNetConfig::new(Arch::Res18Slim, scheme.layout()));
        assert_eq!(c.grouping().unwrap(), g);
    }
    let coco = Taxonomy::builtin("coco-person").unwrap();
    assert_eq!(
        CenterNetConfig::new(Arch::Res18Slim, Scheme::Coco17.layout())
            .grouping()
            .unwrap()
            .taxonomy(),
        coco
    );
    // A saved grouping that breaks the rules is refused.
    let mut bad = back.clone();
    bad.taxonomy.as_mut().unwrap().groups[1] = 0;
    let e = bad.grouping().unwrap_err().to_string();
    assert!(e.contains("invalid landmark grouping"), "{e}");
}

#[test]
fn coco_files_of_several_categories_are_read_into_the_global_layout() {
    let dir = common::tempdir("taxonomy-two");
    let v = serde_json::json!({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [5, 5, 30, 30], "area": 900,
             "keypoints": [10, 10, 2, 20, 10, 2], "num_keypoints": 2},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [40, 40, 30, 30], "area": 900,
             "keypoints": [50, 50, 2, 60, 50, 1, 55, 60, 2], "num_keypoints": 3}],
        "categories": [
            {"id": 5, "name": "cap", "keypoints": ["left_brim", "right_brim"]},
            {"id": 9, "name": "shoe", "keypoints": ["heel", "toe", "lace"]}]
    });
    let path = write(&dir, "two.json", &v.to_string());
    let d = load_coco_in(&path, &TaxonomyChoice::FromData, false, &Limits::default()).unwrap();
    let t = d.taxonomy;
    assert_eq!((t.num_categories(), t.num_landmarks), (2, 5));
    assert_eq!(t.class_of(9), Some(1));
    let items = &d.samples[0].items;
    assert_eq!(items[0].keypoints.len(), 5);
    assert_eq!(
        items[1].keypoints[2..5],
        [[50.0, 50.0, 2.0], [60.0, 50.0, 1.0], [55.0, 60.0, 2.0]]
    );
    assert_eq!(items[1].keypoints[0], [0.0; 3]);
    // The evaluator's ground truth moves to the same layout, with the taxonomy's sigmas.
    let mut gt = deepmark::eval::coco::GroundTruth::load(&path, &Limits::default()).unwrap();
    let moved = gt.in_taxonomy(t);
    assert!(matches!(moved, std::borrow::Cow::Owned(_)));
    assert_eq!(moved.anns[1].keypoints.len(), 15);
    gt.set_taxonomy(t);
    // Once in the taxonomy, the evaluator reads it without a copy.
    assert!(matches!(gt.in_taxonomy(t), std::borrow::Cow::Borrowed(_)));
    assert_eq!(gt.num_keypoints(), 5);
    assert_eq!(gt.anns[1].keypoints[6..9], [50.0, 50.0, 2.0]);
    assert_eq!(gt.sigmas(), vec![spec::DEFAULT_SIGMA; 5]);
    // Grouped by name: no shared names, so one channel per landmark.
    assert_eq!(Grouping::by_name(t).unwrap().num_groups(), 5);
}

#[test]
fn a_taxonomy_file_can_name_each_landmarks_group() {
    let dir = common::tempdir("taxonomy-groups");
    let v = serde_json::json!({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
        "annotations": [],
        "categories": [
            {"id": 1, "name": "cap", "keypoints": ["brim_front", "brim_back"]},
            {"id": 2, "name": "shoe", "keypoints": ["toe", "heel", "lace"]}]
    });
    let path = write(&dir, "two.json", &v.to_string());
    let tax = write(
        &dir,
        "groups.json",
        r#"{"categories": [{"name": "cap", "groups": ["front", "back"]},
                           {"name": "shoe", "groups": ["front", "back", "top"]}]}"#,
    );
    let d = load_coco_in(&path, &TaxonomyChoice::File(tax), false, &Limits::default()).unwrap();
    let g = Grouping::by_name(d.taxonomy).unwrap();
    assert_eq!(g.num_groups(), 3);
    assert_eq!(g.table(), &[0, 1, 0, 1, 2]);
    // Without the table, the names differ: one channel each.
    let plain = load_coco_in(&path, &TaxonomyChoice::FromData, false, &Limits::default()).unwrap();
    assert_eq!(Grouping::by_name(plain.taxonomy).unwrap().num_groups(), 5);
    // One group per landmark, or an error naming the field.
    let short = write(
        &dir,
        "short.json",
        r#"{"categories": [{"name": "shoe", "groups": ["front", "back"]}]}"#,
    );
    let m = refused(&path, TaxonomyChoice::File(short), "categories[1].groups");
    assert!(m.contains("2 groups for 3 landmarks"), "{m}");
    // Two landmarks of one category in one group break the rules.
    let shared = write(
        &dir,
        "shared.json",
        r#"{"categories": [{"name": "shoe", "groups": ["front", "front", "top"]}]}"#,
    );
    let d = load_coco_in(
        &path,
        &TaxonomyChoice::File(shared),
        false,
        &Limits::default(),
    )
    .unwrap();
    assert!(Grouping::by_name(d.taxonomy).is_err());
}
