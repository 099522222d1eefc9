//! Technique (5), symmetric-axis refinement, on the real DeepFashion2 fixtures with synthesized
//! errors: each garment's ground truth is the prediction, one landmark of one flip pair is moved
//! by 15 % of the box's longer side with a low score, and the refinement must pull it back
//! (NE and AP_pt improve). The same refinement on the untouched ground truth shows what it costs
//! where nothing is wrong (real garments are not exactly symmetric), with the paper's rule (both
//! endpoints move) and with ours (only a clearly less confident one). The numbers are printed
//! (`cargo test --release --test symmetry -- --nocapture`) and recorded in `docs/inference.md`.

use deepmark::codec::symmetry::refine_symmetric;
use deepmark::codec::{Detection, SymmetryConfig};
use deepmark::data::deepfashion2::{Sample, load_coco};
use deepmark::eval::coco::GroundTruth;
use deepmark::eval::landmarks::landmark_errors;
use deepmark::eval::run::{DatasetResults, headline_ap};
use deepmark::garment::category;
use deepmark::infer::output::results;

mod common;

/// `(AP_pt, NE)` of detections equal to the ground truth, with `moved` applied first and
/// technique (5) after when `refine` is set.
fn score(
    samples: &[Sample],
    gt: &GroundTruth,
    moved: bool,
    refine: Option<SymmetryConfig>,
) -> (f64, f64) {
    let mut res = DatasetResults::default();
    for s in samples {
        let dets: Vec<Detection> = s
            .items
            .iter()
            .map(|it| {
                let cat = category(it.category_id).unwrap();
                // Labelled landmarks score 0.9; unlabelled slots (at 0, 0) score 0, as a
                // detector's unsure landmarks would.
                let mut landmarks: Vec<[f32; 3]> = it.keypoints[cat.range()]
                    .iter()
                    .map(|p| [p[0], p[1], if p[2] > 0.0 { 0.9 } else { 0.0 }])
                    .collect();
                let [x, y, w, h] = it.bbox;
                let bbox = [x, y, x + w, y + h];
                // The first pair whose two landmarks are both labelled: move its second one.
                let pair = cat.flip_pairs.iter().find(|&&(a, b)| {
                    it.keypoints[cat.start + a - 1][2] > 0.0
                        && it.keypoints[cat.start + b - 1][2] > 0.0
                });
                if moved && let Some(&(_, b)) = pair {
                    let shift = 0.15 * w.max(h);
                    landmarks[b - 1][0] += shift;
                    landmarks[b - 1][1] += shift * 0.5;
                    landmarks[b - 1][2] = 0.3;
                }
                if let Some(cfg) = &refine {
                    refine_symmetric(&mut landmarks, cat, bbox, cfg);
                }
                Detection {
                    category_id: it.category_id,
                    score: 0.9,
                    box_score: 0.9,
                    bbox,
                    landmarks,
                    attributes: Vec::new(),
                }
            })
            .collect();
        let (b, k) = results(s.image_id, &dets, &deepmark::garment::DEEPFASHION2);
        res.bbox.extend(b);
        res.keypoints.extend(k);
    }
    let (_, ap_pt) = headline_ap(gt, &res).unwrap();
    let (_, all) = landmark_errors(samples, &res.bbox, &res.keypoints);
    (ap_pt, all.ne())
}

#[test]
fn symmetric_axis_refinement_restores_moved_landmarks_on_real_garments() {
    let Some(path) = common::shared_data("deepfashion2/kgdet_demo32/demo_dataset-32.json") else {
        return;
    };
    let (samples, _) = load_coco(&path, false, &deepmark::io::Limits::default()).unwrap();
    let gt = GroundTruth::load(&path, &deepmark::io::Limits::default()).unwrap();
    let ours = Some(SymmetryConfig::default());
    let paper = Some(SymmetryConfig {
        min_score_gap: 0.0,
        ..SymmetryConfig::default()
    });
    let exact = score(&samples, &gt, false, None);
    let exact_refined = score(&samples, &gt, false, ours);
    let exact_paper = score(&samples, &gt, false, paper);
    let moved = score(&samples, &gt, true, None);
    let moved_refined = score(&samples, &gt, true, ours);
    let moved_paper = score(&samples, &gt, true, paper);
    println!(
        "ground truth, paper's rule:   AP_pt {:.4} NE {:.4}",
        exact_paper.0, exact_paper.1
    );
    println!(
        "moved, paper's rule:          AP_pt {:.4} NE {:.4}",
        moved_paper.0, moved_paper.1
    );
    println!(
        "ground truth:                 AP_pt {:.4} NE {:.4}",
        exact.0, exact.1
    );
    println!(
        "ground truth, refined:        AP_pt {:.4} NE {:.4}",
        exact_refined.0, exact_refined.1
    );
    println!(
        "one landmark moved:           AP_pt {:.4} NE {:.4}",
        moved.0, moved.1
    );
    println!(
        "one landmark moved, refined:  AP_pt {:.4} NE {:.4}",
        moved_refined.0, moved_refined.1
    );
    assert!(exact.0 > 0.99 && exact.1 < 1e-9, "{exact:?}");
    // Where nothing is wrong and scores are equal, nothing moves.
    assert_eq!(exact_refined, exact);
    assert!(moved.1 > 0.0 && moved.0 < exact.0, "{moved:?}");
    // The refinement pulls the moved landmarks back: lower NE and higher AP_pt.
    assert!(moved_refined.1 < moved.1, "{moved_refined:?} vs {moved:?}");
    assert!(moved_refined.0 > moved.0, "{moved_refined:?} vs {moved:?}");
}

/// Algorithm 2's second pass (`SymmetryConfig::two_pass`) on the demo detector: boxes and
/// scores stay the first pass's, and each detection's landmarks become the average of the first
/// pass and the best same-category detection of the crop to the first pass's landmarks,
/// offset by the crop's corner — recomputed here by hand from the library's parts.
#[cfg(feature = "flex")]
#[test]
fn the_second_pass_averages_with_the_detection_on_the_landmarks_crop() {
    use deepmark::infer::Detector;
    let root = common::root();
    let load = |two_pass: bool| {
        let mut det =
            Detector::from_weights(&root.join("model-weights/demo.bpk"), &common::flex()).unwrap();
        det.options.input_size = 128;
        det.options.threshold = 0.05;
        det.options.post.symmetry = Some(SymmetryConfig {
            two_pass,
            ..SymmetryConfig::default()
        });
        det
    };
    let img =
        deepmark::io::open_rgb(&root.join("datasets/samples/matplotlib_grace_hopper.jpg")).unwrap();
    let one = load(false);
    let first = one.detect(&img).unwrap();
    let two = load(true).detect(&img).unwrap();
    assert!(!first.is_empty());
    assert_eq!(first.len(), two.len());
    let mut changed = 0;
    for (i, (a, b)) in first.iter().zip(&two).enumerate() {
        assert_eq!(
            (a.category_id, a.score, a.bbox),
            (b.category_id, b.score, b.bbox),
            "{i}"
        );
        // By hand: R1 of the first pass's landmarks, the crop's detections at any score.
        let xs = a.landmarks.iter().map(|p| p[0]);
        let ys = a.landmarks.iter().map(|p| p[1]);
        let (w, h) = (img.width() as f32, img.height() as f32);
        let x0 = xs.clone().fold(f32::MAX, f32::min).clamp(0.0, w).floor();
        let x1 = xs.fold(f32::MIN, f32::max).clamp(0.0, w).ceil();
        let y0 = ys.clone().fold(f32::MAX, f32::min).clamp(0.0, h).floor();
        let y1 = ys.fold(f32::MIN, f32::max).clamp(0.0, h).ceil();
        let mut expected = a.landmarks.clone();
        if x1 - x0 >= 8.0 && y1 - y0 >= 8.0 {
            let crop = image::imageops::crop_imm(
                &img,
                x0 as u32,
                y0 as u32,
                (x1 - x0) as u32,
                (y1 - y0) as u32,
            )
            .to_image();
            let mut any = load(false);
            any.options.threshold = f32::MIN;
            let on_crop = any.detect(&crop).unwrap();
            if let Some(s) = on_crop
                .iter()
                .filter(|s| s.category_id == a.category_id)
                .max_by(|p, q| p.score.total_cmp(&q.score))
            {
                for (p, q) in expected.iter_mut().zip(&s.landmarks) {
                    *p = [
                        (p[0] + q[0] + x0) / 2.0,
                        (p[1] + q[1] + y0) / 2.0,
                        (p[2] + q[2]) / 2.0,
                    ];
                }
            }
        }
        for (p, q) in expected.iter().zip(&b.landmarks) {
            for k in 0..3 {
                assert!(
                    (p[k] - q[k]).abs() <= 1e-4 * p[k].abs().max(1.0),
                    "detection {i}: {p:?} vs {q:?}"
                );
            }
        }
        changed += usize::from(b.landmarks != a.landmarks);
    }
    assert!(
        changed > 0,
        "the second pass moved no landmark of {} detections",
        first.len()
    );
    println!(
        "second pass: {changed} of {} detections' landmarks changed",
        first.len()
    );
}

/// `tune` scores the second pass from the images (cached heads cannot give it): with one pass
/// `score_refined` equals the cached score, with two it equals scoring `detect` with two passes
/// image by image.
#[cfg(feature = "flex")]
#[test]
fn tune_scores_the_second_pass_from_the_images() {
    use deepmark::eval::tune::{cache_heads, score, score_refined};
    use deepmark::infer::Detector;
    // The first 12 images of the synthetic validation set (on which the demo detector finds
    // landmarks; on the real fixtures at 128 its AP_pt is 0 either way).
    let dir = common::tempdir("tune-second-pass");
    let cfg = deepmark::data::synth::SynthConfig {
        n: 12,
        seed: 9001,
        ..Default::default()
    };
    deepmark::data::synth::generate(&dir, &cfg, &mut |_, _| {}).unwrap();
    let path = dir.join("train.json");
    let images = dir.join("image");
    let limits = deepmark::io::Limits::default();
    let (samples, _) = load_coco(&path, false, &limits).unwrap();
    let gt = GroundTruth::load(&path, &limits).unwrap();
    let mut det = Detector::from_weights(
        &common::root().join("model-weights/demo.bpk"),
        &common::flex(),
    )
    .unwrap();
    det.options.input_size = 128;
    det.options.threshold = 0.01;
    let cache = cache_heads(&det, &samples, &images, &limits, &mut |_, _| {}).unwrap();
    let post = |two_pass| deepmark::codec::PostConfig {
        symmetry: Some(SymmetryConfig {
            two_pass,
            ..SymmetryConfig::default()
        }),
        ..det.options.post
    };
    let (one, two) = (post(false), post(true));
    let cached = score(&det, &gt, &cache, &one).unwrap();
    let refined = score_refined(&mut det, &gt, &cache, &samples, &images, &limits, &one).unwrap();
    assert_eq!(cached, refined);
    let twice = score_refined(&mut det, &gt, &cache, &samples, &images, &limits, &two).unwrap();
    assert_eq!(det.options.post.symmetry, None, "options restored");
    det.options.post = two;
    let mut res = DatasetResults::default();
    for s in &samples {
        let img = limits.open_rgb(&images.join(&s.file_name)).unwrap();
        let (b, k) = results(
            s.image_id,
            &det.detect(&img).unwrap(),
            det.grouping().taxonomy(),
        );
        res.bbox.extend(b);
        res.keypoints.extend(k);
    }
    assert_eq!(twice, headline_ap(&gt, &res).unwrap());
    assert_ne!(twice.1, refined.1, "the second pass changes AP_pt here");
}
