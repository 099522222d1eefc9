//! Decoding and the DeepMark++ techniques on hand-built heads: each test shows one formula's
//! exact effect. Category 1 (short-sleeved shirt, 25 landmarks) with the deepmark62 grouping.

use deepmark::codec::Grouping;
use deepmark::codec::Scheme;
use deepmark::codec::decode::{
    Detection, HeadMaps, Nms, PostConfig, decode, gaussian_kernel3, iou, suppress,
};
use deepmark::codec::fuse::{fuse_flip, mirror_heads};
use deepmark::garment::category;

const S: usize = 32;

fn grouping() -> Grouping {
    Grouping::for_scheme(Scheme::Deepmark62).unwrap()
}

fn empty() -> HeadMaps {
    HeadMaps::zeros(Scheme::Deepmark62.layout(), [S, S])
}

fn at(x: usize, y: usize) -> usize {
    y * S + x
}

/// One short-sleeved shirt centred at (10, 12) (+reg 0.25, 0.5), 18×18, landmark `l` coarsely
/// at centre + (l − 12, −5).
fn one_shirt(score: f32) -> HeadMaps {
    let mut h = empty();
    let hw = S * S;
    let c = at(10, 12);
    h.maps.hm[c] = score;
    h.maps.wh[c] = 18.0;
    h.maps.wh[hw + c] = 18.0;
    h.maps.reg[c] = 0.25;
    h.maps.reg[hw + c] = 0.5;
    let cat = category(1).unwrap();
    let gr = grouping();
    for l in 0..cat.num_landmarks {
        let g = gr.group(cat, l);
        h.maps.hps[2 * g * hw + c] = l as f32 - 12.0;
        h.maps.hps[(2 * g + 1) * hw + c] = -5.0;
    }
    h
}

fn group_of_landmark(l: usize) -> usize {
    grouping().group(category(1).unwrap(), l)
}

/// The single detection with a positive box score (the empty map's zero plateau is all
/// 3×3 maxima too, as in CenterNet; those come last with score 0).
fn only(dets: Vec<Detection>) -> Detection {
    let dets: Vec<Detection> = dets.into_iter().filter(|d| d.box_score > 0.0).collect();
    assert_eq!(dets.len(), 1, "{} detections", dets.len());
    dets.into_iter().next().unwrap()
}

#[test]
fn plain_decode_gives_box_coarse_landmarks_and_refines_with_a_nearby_peak() {
    let mut h = one_shirt(0.9);
    let hw = S * S;
    // A landmark peak for landmark 12 (coarse (10, 7)) at (11, 8) with offset (0.5, 0.25).
    let g = group_of_landmark(12);
    h.maps.hm_hp[g * hw + at(11, 8)] = 0.7;
    h.maps.hp_offset[at(11, 8)] = 0.5;
    h.maps.hp_offset[hw + at(11, 8)] = 0.25;
    let d = only(decode(&h, &grouping(), &PostConfig::plain()));
    assert_eq!(d.category_id, 1);
    assert_eq!(d.score, 0.9);
    assert_eq!(d.bbox, [10.25 - 9.0, 12.5 - 9.0, 10.25 + 9.0, 12.5 + 9.0]);
    assert_eq!(d.landmarks.len(), 25);
    // Coarse: integer centre + hps (no reg), score = heatmap value there (0).
    assert_eq!(d.landmarks[0], [10.0 - 12.0, 7.0, 0.0]);
    // Refined: the peak + hp_offset, with the peak's score.
    assert_eq!(d.landmarks[12], [11.5, 8.25, 0.7]);
}

#[test]
fn centernet_rule_keeps_the_coarse_point_for_far_weak_or_outside_peaks() {
    let hw = S * S;
    let g = group_of_landmark(12); // coarse (10, 7), box 1.25..19.25 × 3.5..21.5, 0.3·18 = 5.4
    for (x, y, s, why) in [
        (10, 13, 0.7, "6 px away > 0.3·max(w, h)"),
        (10, 8, 0.1, "score not above 0.1"),
        (10, 2, 0.7, "outside the box"),
    ] {
        let mut h = one_shirt(0.9);
        h.maps.hm_hp[g * hw + at(x, y)] = s;
        let d = only(decode(&h, &grouping(), &PostConfig::plain()));
        assert_eq!(&d.landmarks[12][..2], &[10.0, 7.0], "{why}");
    }
}

#[test]
fn technique1_center_rescoring_mixes_box_and_mean_landmark_scores() {
    let mut h = one_shirt(0.9);
    let hw = S * S;
    let g = group_of_landmark(12);
    h.maps.hm_hp[g * hw + at(10, 7)] = 0.75; // exactly on the coarse point
    let cfg = PostConfig {
        alpha: Some(0.8),
        ..PostConfig::plain()
    };
    let d = only(decode(&h, &grouping(), &cfg));
    let mean = 0.75 / 25.0;
    assert!(
        (d.score - (0.8 * 0.9 + 0.2 * mean)).abs() < 1e-6,
        "{}",
        d.score
    );
    assert_eq!(d.box_score, 0.9);
}

#[test]
fn technique2_gaussian_smoothing_rescales_an_isolated_peak_by_the_kernel_centre() {
    let h = one_shirt(0.9);
    let k = gaussian_kernel3(0.4);
    let sum: f32 = k.iter().flatten().sum();
    assert!((sum - 1.0).abs() < 1e-6);
    let w1 = (-1.0f32 / (2.0 * 0.16)).exp();
    let w2 = (-2.0f32 / (2.0 * 0.16)).exp();
    let centre = 1.0 / (1.0 + 4.0 * w1 + 4.0 * w2);
    assert!((k[1][1] - centre).abs() < 1e-6);
    let cfg = PostConfig {
        center_sigma: Some(0.4),
        ..PostConfig::plain()
    };
    let d = only(decode(&h, &grouping(), &cfg));
    assert!((d.score - 0.9 * centre).abs() < 1e-6);
    // Two neighbouring cells of equal height: smoothing keeps one peak, plain decoding two.
    let mut h2 = one_shirt(0.9);
    let c2 = at(11, 12);
    h2.maps.hm[c2] = 0.9;
    let positive = |d: Vec<Detection>| -> Vec<Detection> {
        d.into_iter().filter(|d| d.box_score > 0.0).collect()
    };
    assert_eq!(
        positive(decode(&h2, &grouping(), &PostConfig::plain())).len(),
        2
    );
    let mut smoothed = h2.clone();
    smoothed.maps.wh[c2] = 18.0;
    smoothed.maps.wh[S * S + c2] = 18.0;
    let ds = positive(decode(&smoothed, &grouping(), &cfg));
    assert_eq!(ds.len(), 2, "equal plateau: both cells remain maxima");
    assert!((ds[0].score - 0.9 * (k[1][1] + k[1][2])).abs() < 1e-6);
}

#[test]
fn technique3_blends_refined_and_coarse_positions() {
    let mut h = one_shirt(0.9);
    let hw = S * S;
    let g = group_of_landmark(12);
    h.maps.hm_hp[g * hw + at(12, 9)] = 0.7; // refined (12, 9), coarse (10, 7)
    let cfg = PostConfig {
        gamma: Some(0.75),
        ..PostConfig::plain()
    };
    let d = only(decode(&h, &grouping(), &cfg));
    assert_eq!(
        d.landmarks[12],
        [0.75 * 12.0 + 0.25 * 10.0, 0.75 * 9.0 + 0.25 * 7.0, 0.7]
    );
}

#[test]
fn technique4_mask_prefers_a_strong_peak_over_the_nearest_weak_one() {
    let mut h = one_shirt(0.9);
    let hw = S * S;
    let g = group_of_landmark(12); // coarse (10, 7); σ = 18/9 = 2
    h.maps.hm_hp[g * hw + at(10, 8)] = 0.2; // 1 px away
    h.maps.hm_hp[g * hw + at(12, 7)] = 0.9; // 2 px away
    let plain = only(decode(&h, &grouping(), &PostConfig::plain()));
    assert_eq!(
        plain.landmarks[12],
        [10.0, 8.0, 0.2],
        "CenterNet: nearest peak"
    );
    let cfg = PostConfig {
        landmark_mask: true,
        ..PostConfig::plain()
    };
    let d = only(decode(&h, &grouping(), &cfg));
    let rescored = 0.9 * (-4.0f32 / (2.0 * 4.0)).exp();
    assert_eq!(&d.landmarks[12][..2], &[12.0, 7.0]);
    assert!((d.landmarks[12][2] - rescored).abs() < 1e-6);
}

fn det(cat: usize, score: f32, bbox: [f32; 4]) -> Detection {
    Detection {
        category_id: cat,
        score,
        box_score: score,
        bbox,
        landmarks: Vec::new(),
        attributes: Vec::new(),
    }
}

#[test]
fn nms_suppresses_within_a_category_only_and_soft_nms_decays_scores() {
    let a = det(1, 0.9, [0.0, 0.0, 10.0, 10.0]);
    let b = det(1, 0.8, [1.0, 0.0, 11.0, 10.0]);
    let c = det(2, 0.7, [1.0, 0.0, 11.0, 10.0]);
    let o = iou(&a.bbox, &b.bbox);
    assert!((o - 90.0 / 110.0).abs() < 1e-6);
    let hard = suppress(
        vec![b.clone(), a.clone(), c.clone()],
        Nms::Hard { iou: 0.5 },
    );
    assert_eq!(
        hard.iter().map(|d| d.score).collect::<Vec<_>>(),
        vec![0.9, 0.7]
    );
    let soft = suppress(
        vec![a.clone(), b.clone(), c.clone()],
        Nms::Soft {
            sigma: 0.5,
            threshold: 0.001,
        },
    );
    assert_eq!(soft.len(), 3);
    let decayed = soft
        .iter()
        .find(|d| d.category_id == 1 && d.score < 0.9)
        .unwrap();
    assert!((decayed.score - 0.8 * (-(o * o) / 0.5).exp()).abs() < 1e-6);
    assert_eq!(soft.iter().find(|d| d.category_id == 2).unwrap().score, 0.7);
}

#[test]
fn flip_fusion_of_mirror_consistent_heads_is_the_identity() {
    let mut h = one_shirt(0.9);
    let hw = S * S;
    // Fill everything with structured values.
    for (i, v) in h.maps.hm_hp.iter_mut().enumerate() {
        *v = ((i * 7919) % 101) as f32 / 101.0;
    }
    for (i, v) in h.maps.hps.iter_mut().enumerate() {
        *v = ((i * 104729) % 37) as f32 - 18.0;
    }
    let flips = grouping().flip_groups().unwrap();
    let m = mirror_heads(&h, &flips);
    assert_ne!(m.maps.hm_hp, h.maps.hm_hp);
    assert_eq!(mirror_heads(&m, &flips), h, "mirroring is an involution");
    let fused = fuse_flip(&h, &m, &flips);
    for (a, b) in fused.maps.hps.iter().zip(&h.maps.hps) {
        assert!((a - b).abs() < 1e-6);
    }
    for (a, b) in fused.maps.hm_hp.iter().zip(&h.maps.hm_hp) {
        assert!((a - b).abs() < 1e-6);
    }
    assert_eq!(fused.maps.hm, h.maps.hm);
    assert_eq!(
        decode(&fused, &grouping(), &PostConfig::default()),
        decode(&h, &grouping(), &PostConfig::default())
    );
    let _ = hw;
}

#[test]
fn flip_fusion_swaps_mirror_groups_and_negates_x_offsets() {
    let h = one_shirt(0.9);
    let hw = S * S;
    let flips = grouping().flip_groups().unwrap();
    let m = mirror_heads(&h, &flips);
    // The shirt's centre (10, 12) appears at (21, 12) in the mirror image.
    let mc = at(S - 1 - 10, 12);
    assert_eq!(m.maps.hm[mc], 0.9);
    // Landmark l's mirror partner l' takes l's offsets with x negated.
    let cat = category(1).unwrap();
    for l in 0..cat.num_landmarks {
        let lp = cat.flip_local(l);
        let g = group_of_landmark(l);
        let gp = group_of_landmark(lp);
        assert_eq!(flips[g], gp);
        assert_eq!(m.maps.hps[2 * gp * hw + mc], -(l as f32 - 12.0));
        assert_eq!(m.maps.hps[(2 * gp + 1) * hw + mc], -5.0);
    }
}

/// CenterNet's COCO person decoding: the PyTorch heads of the `coco17` parity fixtures (res50
/// and the last stack of hourglass104) decoded by `scripts/make_decode_fixture.py`, which
/// follows `multi_pose_decode` step by step, against ours with plain decoding, in map
/// coordinates: every detection scoring above 0.01, in the same order, boxes and landmarks to
/// 1e-4 px, scores to 1e-6.
#[test]
fn coco_person_heads_decode_as_centernet_decodes_them() {
    use deepmark::codec::Heads;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity");
    let grouping = Grouping::for_scheme(Scheme::Coco17).unwrap();
    assert_eq!(grouping.taxonomy().name, "coco-person");
    for arch in ["res50", "hourglass104"] {
        let want: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(format!("{arch}.dets.json"))).unwrap(),
        )
        .unwrap();
        let stack = want["stack"].as_u64().unwrap();
        let io = deepmark::heads_io::read_safetensors(&root.join(format!("{arch}.io.safetensors")))
            .unwrap();
        let head = |n: &str| io[&format!("stack{stack}.{n}")].clone();
        let shape = head("hm").shape;
        let size = [shape[2], shape[3]];
        let sigmoid = |v: Vec<f32>| v.into_iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect();
        let maps = HeadMaps {
            size,
            num_classes: 1,
            num_groups: 17,
            maps: Heads::from_fn(|n| {
                let d = head(n).data;
                if n == "hm" || n == "hm_hp" {
                    sigmoid(d)
                } else {
                    d
                }
            }),
        };
        let ours = decode(&maps, &grouping, &PostConfig::plain());
        let theirs: Vec<&serde_json::Value> = want["detections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["score"].as_f64().unwrap() > 0.01)
            .collect();
        assert!(theirs.len() >= 20, "{arch}: {} detections", theirs.len());
        let f = |v: &serde_json::Value| v.as_f64().unwrap();
        let mut worst: f64 = 0.0;
        for (i, t) in theirs.iter().enumerate() {
            let d = &ours[i];
            assert_eq!(d.category_id, 1);
            assert!(
                (f64::from(d.score) - f(&t["score"])).abs() < 1e-6,
                "{arch} #{i} score"
            );
            for (a, b) in d.bbox.iter().zip(t["bbox"].as_array().unwrap()) {
                worst = worst.max((f64::from(*a) - f(b)).abs());
            }
            for (p, q) in d.landmarks.iter().zip(t["keypoints"].as_array().unwrap()) {
                worst = worst.max((f64::from(p[0]) - f(&q[0])).abs());
                worst = worst.max((f64::from(p[1]) - f(&q[1])).abs());
            }
        }
        println!(
            "{arch}: {} detections, worst coordinate difference {worst:.2e} px",
            theirs.len()
        );
        assert!(worst <= 1e-4, "{arch}: {worst}");
    }
}
