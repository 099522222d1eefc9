//! Fuzz-style robustness: mutated annotation JSON and truncated JPEGs give errors (naming the
//! file), never panics. Mutations are deterministic (a fixed-seed generator) so failures
//! reproduce.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

mod common;

use common::tempdir;
use deepmark::data::deepfashion2::{convert_raw_dir, load_coco, read_raw_image};

/// SplitMix64: a tiny deterministic generator for choosing mutations.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(text: &str, rng: &mut Mix) -> String {
    let mut s = text.as_bytes().to_vec();
    match rng.below(6) {
        0 => s.truncate(rng.below(s.len())),
        1 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(s.len());
                s[i] = b"{}[],:\"-0123456789.eE nult"[rng.below(26)];
            }
        }
        2 => {
            // Replace a number with something else.
            let t = String::from_utf8_lossy(&s).into_owned();
            let reps = [
                "\"x\"", "-1", "1e308", "null", "[]", "14", "0", "2.5", "{}", "-1e308",
            ];
            let digits: Vec<usize> = t
                .char_indices()
                .filter(|(_, c)| c.is_ascii_digit())
                .map(|(i, _)| i)
                .collect();
            if let Some(&i) = digits.get(rng.below(digits.len())) {
                let end = t[i..]
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .map_or(t.len(), |e| i + e);
                return format!("{}{}{}", &t[..i], reps[rng.below(reps.len())], &t[end..]);
            }
        }
        3 => {
            // Drop a key.
            let t = String::from_utf8_lossy(&s).into_owned();
            for key in [
                "\"bbox\"",
                "\"keypoints\"",
                "\"category_id\"",
                "\"images\"",
                "\"width\"",
                "\"landmarks\"",
                "\"bounding_box\"",
            ] {
                if t.contains(key) && rng.below(2) == 0 {
                    return t.replacen(key, "\"renamed\"", 1);
                }
            }
        }
        4 => {
            let i = rng.below(s.len());
            s.splice(i..i, b"[1,2,3]".iter().copied());
        }
        _ => {
            let i = rng.below(s.len());
            s.remove(i);
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}

fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("panicked on {what}"))
}

fn sample_coco() -> String {
    if let Some(real) = common::shared_data("deepfashion2/kgdet_demo32/demo_dataset-32.json") {
        return std::fs::read_to_string(&real).unwrap();
    }
    // A small valid file when the shared fixtures are skipped (DEEPMARK_SKIP_SHARED).
    let mut kps = vec![0.0f64; 882];
    kps[3 * 182..3 * 182 + 3].copy_from_slice(&[10.0, 12.0, 2.0]);
    serde_json::json!({
        "images": [{"file_name": "000001.jpg", "id": 1, "width": 100, "height": 80}],
        "annotations": [{"area": 100.0, "bbox": [5, 5, 10, 10], "category_id": 9, "id": 1, "image_id": 1,
                         "keypoints": kps, "num_keypoints": 1}],
        "categories": []
    })
    .to_string()
}

#[test]
fn mutated_coco_json_never_panics() {
    let original = sample_coco();
    let dir = tempdir("bad-coco");
    let mut rng = Mix(2024);
    let mut errors = 0;
    for i in 0..150 {
        let text = mutate(&original, &mut rng);
        let p = dir.join(format!("m{i}.json"));
        std::fs::write(&p, &text).unwrap();
        for skip in [false, true] {
            if let Err(e) = no_panic(&format!("{} (skip_bad {skip})", p.display()), || {
                load_coco(&p, skip, &deepmark::io::Limits::default())
            }) {
                errors += 1;
                assert!(
                    e.to_string().contains(&format!("m{i}.json")),
                    "error does not name the file: {e}"
                );
            }
        }
    }
    assert!(errors > 20, "mutations should produce errors ({errors})");
}

#[test]
fn mutated_raw_json_never_panics() {
    let lm: Vec<String> = (0..8)
        .map(|i| format!("{}, {}, 2", 10 + i, 20 + i))
        .collect();
    let original = format!(
        r#"{{"source": "user", "pair_id": 3, "item1": {{"category_name": "skirt", "category_id": 9, "style": 1,
           "bounding_box": [5, 6, 55, 86], "landmarks": [{}], "segmentation": [[5, 6, 55, 6, 55, 86]],
           "scale": 2, "occlusion": 1, "zoom_in": 1, "viewpoint": 2}}}}"#,
        lm.join(", ")
    );
    let dir = tempdir("bad-raw");
    let mut rng = Mix(7);
    for i in 0..150 {
        let p = dir.join(format!("{:06}.json", i + 1));
        std::fs::write(&p, mutate(&original, &mut rng)).unwrap();
        if let Err(e) = no_panic(&p.display().to_string(), || {
            read_raw_image(&p, &deepmark::io::Limits::default())
        }) {
            assert!(e.to_string().contains(&format!("{:06}.json", i + 1)), "{e}");
        }
    }
}

#[test]
fn truncated_and_missing_images_are_errors_naming_the_file() {
    let dir = tempdir("bad-jpeg");
    let jpeg = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/samples/matplotlib_grace_hopper.jpg"),
    )
    .unwrap();
    for (i, cut) in [0usize, 10, 100, 600, jpeg.len() / 2].iter().enumerate() {
        let p = dir.join(format!("cut{i}.jpg"));
        std::fs::write(&p, &jpeg[..*cut]).unwrap();
        let r = no_panic("truncated jpeg", || image::open(&p));
        if *cut < 600 {
            assert!(r.is_err(), "a {cut}-byte JPEG should not decode");
        }
        // The image crate fills a JPEG cut inside its scan with grey; deepmark's reader
        // refuses every cut, naming the file.
        let e = no_panic("open_rgb", || deepmark::io::open_rgb(&p))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("cut{i}.jpg")), "{e}");
        if *cut > 1000 {
            assert!(e.contains("truncated"), "{e}");
        }
    }
    let whole = dir.join("whole.jpg");
    std::fs::write(&whole, &jpeg).unwrap();
    assert!(deepmark::io::open_rgb(&whole).is_ok());
    // A split folder whose image is truncated or missing.
    let split = tempdir("bad-split");
    std::fs::create_dir_all(split.join("annos")).unwrap();
    std::fs::create_dir_all(split.join("image")).unwrap();
    let anno = r#"{"source": "user", "pair_id": 1, "item1": {"category_id": 9, "bounding_box": [1, 1, 5, 5],
                   "landmarks": [1,1,2, 2,2,2, 3,3,2, 1,2,1, 2,3,1, 3,4,1, 1,4,0, 0,0,0]}}"#;
    std::fs::write(split.join("annos/000001.json"), anno).unwrap();
    std::fs::write(split.join("annos/000002.json"), anno).unwrap();
    std::fs::write(split.join("image/000001.jpg"), &jpeg[..50]).unwrap();
    let e = no_panic("split", || {
        convert_raw_dir(
            &split,
            false,
            &deepmark::io::Limits::default(),
            &mut |_, _| {},
        )
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("000001.jpg"), "{e}");
    let (coco, report) = no_panic("split skip", || {
        convert_raw_dir(
            &split,
            true,
            &deepmark::io::Limits::default(),
            &mut |_, _| {},
        )
    })
    .unwrap();
    assert_eq!(
        (coco.images.len(), report.skipped.len()),
        (0, 2),
        "{report}"
    );
    assert!(report.to_string().contains("000002.jpg"));
}
