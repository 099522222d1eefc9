//! The training targets' box and landmark rule is CenterNet's: the box's corners and each
//! labelled landmark go through the image → output-map transform one by one, and the width,
//! height and Gaussian radius come from the clipped corners (`MultiPoseDataset`,
//! `src/lib/datasets/sample/multi_pose.py`). The reference numbers are computed from those rules
//! in numpy and OpenCV by `scripts/make_box_rule_fixture.py`: 64 random garments with random
//! scale/shift augmentation and flips, at inputs of 128, 256 and 512.

use deepmark::codec::Scheme;
use deepmark::codec::grouping::Grouping;
use deepmark::codec::targets::{Targets, objects_from_output};
use deepmark::data::augment::output_garment;
use deepmark::garment::Item;
use deepmark::preprocess::get_affine_transform;
use serde_json::Value;

mod common;

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

/// A JSON array of numbers.
fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| num(x) as f32)
        .collect()
}

fn pair(v: &Value) -> [f32; 2] {
    [num(&v[0]) as f32, num(&v[1]) as f32]
}

#[test]
fn per_object_targets_equal_centernets() {
    let path = common::fixtures().join("targets/box_rule.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 64);
    // No grouping: category 1's landmark j is group j.
    let grouping = Grouping::of_scheme(Scheme::None).unwrap();
    let mut landmarks_checked = 0;
    for (i, c) in cases.iter().enumerate() {
        let mut keypoints = vec![[0.0f32; 3]; 294];
        let kps = floats(&c["keypoints"]);
        for (j, k) in kps.chunks(3).enumerate() {
            keypoints[j] = [k[0], k[1], k[2]];
        }
        let b = floats(&c["bbox"]);
        let item = Item {
            category_id: 1,
            bbox: [b[0], b[1], b[2], b[3]],
            keypoints,
        };
        let out = c["input_size"].as_u64().unwrap() as usize / 4;
        let to_output = get_affine_transform(
            [num(&c["center"][0]), num(&c["center"][1])],
            num(&c["scale"]),
            0.0,
            [out, out],
            false,
        );
        let width = c["width"].as_u64().unwrap() as u32;
        let g = output_garment(
            &deepmark::garment::DEEPFASHION2,
            &item,
            width,
            c["flipped"].as_bool().unwrap(),
            &to_output,
        );
        let objects = objects_from_output(&[g], &grouping);
        let t = Targets::encode(&objects, 13, grouping.num_groups(), 32, [out, out]);
        let e = &c["expected"];
        let ind = e["ind"].as_i64().unwrap();
        assert_eq!(t.ind[0], ind, "case {i}: ind");
        assert_eq!([t.wh[0], t.wh[1]], pair(&e["wh"]), "case {i}: wh");
        assert_eq!([t.reg[0], t.reg[1]], pair(&e["reg"]), "case {i}: reg");
        // The radius, read back from the centre Gaussian's extent along its row (CenterNet
        // zeroes the kernel's values below ε·max, so it spans 2r + 1 pixels, cut by the map).
        let r = e["radius"].as_i64().unwrap();
        let (cx, cy) = (ind % out as i64, ind / out as i64);
        let row = &t.hm[cy as usize * out..(cy as usize + 1) * out];
        let span = row.iter().filter(|v| **v > 0.0).count() as i64;
        assert_eq!(
            span,
            r.min(cx) + r.min(out as i64 - 1 - cx) + 1,
            "case {i}: radius {r}"
        );
        let expected = e["landmarks"].as_array().unwrap();
        let g_n = grouping.num_groups();
        assert_eq!(
            t.hp_mask[..g_n].iter().filter(|m| **m > 0.0).count(),
            expected.len(),
            "case {i}: landmarks inside the map"
        );
        for l in expected {
            let j = l["j"].as_u64().unwrap() as usize;
            assert_eq!(
                t.hp_ind[j],
                l["hp_ind"].as_i64().unwrap(),
                "case {i} landmark {j}"
            );
            assert_eq!(
                [t.hp_offset[2 * j], t.hp_offset[2 * j + 1]],
                pair(&l["hp_offset"]),
                "case {i} landmark {j}: hp_offset"
            );
            assert_eq!(
                [t.hps[2 * j], t.hps[2 * j + 1]],
                pair(&l["hps"]),
                "case {i} landmark {j}: hps"
            );
            landmarks_checked += 1;
        }
    }
    assert!(landmarks_checked > 300, "{landmarks_checked} landmarks");
}
