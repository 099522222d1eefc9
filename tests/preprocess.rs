//! CenterNet's affine warps against OpenCV 4.10's `cv2.warpAffine`
//! (`scripts/make_preprocess_fixture.py`): the test-time `fix_res` warp and three
//! augmentation-like warps (scaled, shifted, rotated), the same pixels, every one of them.

mod common;

use deepmark::preprocess::{fix_res_transform, get_affine_transform, warp_affine};

#[test]
fn warps_match_opencv_pixel_for_pixel() {
    let dir = common::fixtures().join("preprocess");
    let src = image::open(dir.join("source.png")).unwrap().to_rgb8();
    assert_eq!((src.width(), src.height()), (101, 70));
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for (i, c) in cases.iter().enumerate() {
        let f = |v: &serde_json::Value| v.as_f64().unwrap();
        let out = c["out"].as_u64().unwrap() as usize;
        let m = get_affine_transform(
            [f(&c["center"][0]), f(&c["center"][1])],
            f(&c["scale"]),
            f(&c["rot"]),
            [out, out],
            false,
        );
        if i == 0 {
            // Case 0 is the test-time transform.
            assert_eq!(m, fix_res_transform(src.width(), src.height(), out));
        }
        let ours = warp_affine(&src, &m, out as u32, out as u32);
        let expected = image::open(dir.join(format!("warp-{i}.png")))
            .unwrap()
            .to_rgb8();
        let diffs: Vec<i32> = ours
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .collect();
        let differing = diffs.iter().filter(|d| **d > 0).count();
        assert_eq!(
            differing,
            0,
            "case {i}: {differing} of {} values differ, by up to {} grey levels",
            diffs.len(),
            diffs.iter().max().unwrap()
        );
    }
}
