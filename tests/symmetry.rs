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
                }
            })
            .collect();
        let (b, k) = results(s.image_id, &dets);
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
