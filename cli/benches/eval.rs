//! Evaluation time of our COCOeval against pycocotools on the same files: a generated
//! DeepFashion2-like validation set (default the real validation size, 32,153 images and
//! ~52k items, 294 keypoints each) with noisy, missing and extra detections.
//!
//!     DEEPMARK_BENCH_EVAL_IMAGES=32153 cargo bench -p deepmark-cli --bench eval
//!     python scripts/bench_pycocotools.py <the folder it prints>
//!
//! The files stay in the printed folder so pycocotools reads exactly them; the script prints
//! pycocotools' stats and time for comparison (benches/RESULTS.md).

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use deepmark::eval::coco::{GroundTruth, IouType, Params, Results, evaluate, sigmas_for};
use deepmark::garment::{CATEGORIES, NUM_LANDMARKS};
use serde_json::{Value, json};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes gt.json, keypoints.json and bbox.json for `n` images into `dir`.
fn generate(dir: &Path, n: usize) {
    let mut r = Lcg(20201);
    let mut images = Vec::with_capacity(n);
    let mut anns = Vec::new();
    let mut kps = Vec::new();
    let mut boxes = Vec::new();
    for i in 0..n {
        let id = i as u64 + 1;
        images.push(
            json!({"id": id, "file_name": format!("{id:06}.jpg"), "width": 640, "height": 640}),
        );
        let items = if r.next() < 0.63 { 2 } else { 1 };
        for _ in 0..items {
            let cat = &CATEGORIES[(r.next() * 13.0) as usize % 13];
            let (w, h) = (
                (60.0 + r.next() * 400.0).round(),
                (60.0 + r.next() * 400.0).round(),
            );
            let (x, y) = (
                (r.next() * (640.0 - w)).round(),
                (r.next() * (640.0 - h)).round(),
            );
            let mut k = vec![0.0f64; 3 * NUM_LANDMARKS];
            let mut labelled = 0;
            for l in cat.range() {
                if r.next() < 0.9 {
                    k[3 * l] = (x + r.next() * w).round();
                    k[3 * l + 1] = (y + r.next() * h).round();
                    k[3 * l + 2] = if r.next() < 0.8 { 2.0 } else { 1.0 };
                    labelled += 1;
                }
            }
            let aid = anns.len() as u64 + 1;
            anns.push(
                json!({"id": aid, "image_id": id, "category_id": cat.id, "bbox": [x, y, w, h],
                "area": w * h, "iscrowd": 0, "num_keypoints": labelled, "keypoints": k}),
            );
            let dets = if r.next() < 0.1 {
                0
            } else if r.next() < 0.2 {
                2
            } else {
                1
            };
            for _ in 0..dets {
                let s = (w * h).sqrt();
                let noise = 0.02 + r.next() * 0.1;
                let mut dk = vec![0.0f64; 3 * NUM_LANDMARKS];
                for l in cat.range() {
                    dk[3 * l] = x + r.next() * w + (r.next() - 0.5) * noise * s;
                    dk[3 * l + 1] = y + r.next() * h + (r.next() - 0.5) * noise * s;
                    dk[3 * l + 2] = 1.0;
                }
                for l in cat.range() {
                    if k[3 * l + 2] > 0.0 && r.next() < 0.7 {
                        dk[3 * l] = k[3 * l] + (r.next() - 0.5) * noise * s;
                        dk[3 * l + 1] = k[3 * l + 1] + (r.next() - 0.5) * noise * s;
                    }
                }
                let score = r.next();
                let c = if r.next() < 0.05 {
                    (cat.id % 13) + 1
                } else {
                    cat.id
                };
                let bx = [
                    x + (r.next() - 0.5) * 0.2 * w,
                    y + (r.next() - 0.5) * 0.2 * h,
                    w * (0.9 + 0.2 * r.next()),
                    h,
                ];
                kps.push(
                    json!({"image_id": id, "category_id": c, "keypoints": dk, "score": score}),
                );
                boxes.push(json!({"image_id": id, "category_id": c, "bbox": bx, "score": score}));
            }
        }
    }
    let cats: Vec<Value> = CATEGORIES
        .iter()
        .map(|c| json!({"id": c.id, "name": c.name, "supercategory": "clothes",
            "keypoints": (1..=NUM_LANDMARKS).map(|i| i.to_string()).collect::<Vec<_>>(), "skeleton": []}))
        .collect();
    let gt = json!({"images": images, "annotations": anns, "categories": cats});
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("gt.json"), serde_json::to_string(&gt).unwrap()).unwrap();
    std::fs::write(
        dir.join("keypoints.json"),
        serde_json::to_string(&kps).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("bbox.json"),
        serde_json::to_string(&boxes).unwrap(),
    )
    .unwrap();
}

fn eval(c: &mut Criterion) {
    let n: usize = std::env::var("DEEPMARK_BENCH_EVAL_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let dir = std::env::temp_dir().join(format!("deepmark-eval-bench-{n}"));
    if !dir.join("bbox.json").is_file() {
        generate(&dir, n);
    }
    let gt = GroundTruth::load(&dir.join("gt.json"), &deepmark::io::Limits::default()).unwrap();
    println!(
        "eval bench files: {} ({} images, {} items)",
        dir.display(),
        gt.image_ids.len(),
        gt.anns.len()
    );
    let mut group = c.benchmark_group("eval");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    for (file, kind) in [
        ("keypoints.json", IouType::Keypoints),
        ("bbox.json", IouType::Bbox),
    ] {
        let res = Results::load(&dir.join(file), &gt, &deepmark::io::Limits::default()).unwrap();
        let sigmas = sigmas_for(294).unwrap();
        let e = evaluate(&gt, &res, Params::new(kind, sigmas.clone())).unwrap();
        println!("{} stats: {:?}", kind.name(), e.stats);
        group.bench_function(format!("{}/{n}-images/evaluate", kind.name()), |b| {
            b.iter(|| {
                evaluate(&gt, &res, Params::new(kind, sigmas.clone()))
                    .unwrap()
                    .stats[0]
            })
        });
        group.bench_function(format!("{}/{n}-images/load+evaluate", kind.name()), |b| {
            b.iter(|| {
                let gt = GroundTruth::load(&dir.join("gt.json"), &deepmark::io::Limits::default())
                    .unwrap();
                let res =
                    Results::load(&dir.join(file), &gt, &deepmark::io::Limits::default()).unwrap();
                evaluate(&gt, &res, Params::new(kind, sigmas.clone()))
                    .unwrap()
                    .stats[0]
            })
        });
    }
    group.finish();
}

criterion_group!(benches, eval);
criterion_main!(benches);
