//! CenterNet's `fix_res` warp against OpenCV 5.0's `cv2.warpAffine`
//! (`scripts/make_preprocess_fixture.py`): the same pixels, every one of them.

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
    let differing = diffs.iter().filter(|d| **d > 0).count();
    let max = *diffs.iter().max().unwrap();
    assert_eq!(
        differing,
        0,
        "{differing} of {} values differ, by up to {max} grey levels",
        diffs.len()
    );
    // The letterbox rows above and below the image are black in both.
    assert_eq!(ours.get_pixel(10, 0).0, [0, 0, 0]);
    assert_eq!(expected.get_pixel(10, 0).0, [0, 0, 0]);
}
