//! CenterNet's `fix_res` warp against OpenCV (`scripts/make_preprocess_fixture.py`). OpenCV
//! interpolates 8-bit images in fixed point (1/32 pixel, 1/1024 weights), so pixels may differ
//! by one grey level; anything larger is a geometry bug.

mod common;

use deepmark::preprocess::{fix_res_transform, warp_affine};

#[test]
fn fix_res_warp_matches_opencv() {
    let dir = common::fixtures().join("preprocess");
    let src = image::open(dir.join("source.png")).unwrap().to_rgb8();
    let expected = image::open(dir.join("fixres64.png")).unwrap().to_rgb8();
    assert_eq!((src.width(), src.height()), (101, 70));
    let ours = warp_affine(
        &src,
        &fix_res_transform(src.width(), src.height(), 64),
        64,
        64,
    );
    let diffs: Vec<i32> = ours
        .as_raw()
        .iter()
        .zip(expected.as_raw())
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .collect();
    let max = *diffs.iter().max().unwrap();
    let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
    assert!(max <= 1, "max difference {max} grey levels");
    assert!(mean < 0.1, "mean difference {mean}");
    // The letterbox rows above and below the image are black in both.
    assert_eq!(ours.get_pixel(10, 0).0, [0, 0, 0]);
    assert_eq!(expected.get_pixel(10, 0).0, [0, 0, 0]);
}
