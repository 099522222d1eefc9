//! The raw per-image DeepFashion2 JSON (`source`, `pair_id`, `item1..N` with `bounding_box` =
//! `[x1, y1, x2, y2]` and the category's own landmarks) and its conversion into the COCO form.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    CocoAnnotation, CocoFile, CocoImage, DataError, SkipReport, category_field, check_box,
    coco_categories,
};
use crate::garment::taxonomy::{NUM_LANDMARKS, category};
use crate::io::Limits;

/// One item of a raw DeepFashion2 per-image JSON (`item1`, `item2`, …).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RawItem {
    #[serde(default)]
    /// DeepFashion2's category name (`short_sleeved_shirt`…).
    pub category_name: String,
    /// 1-based category id.
    pub category_id: i64,
    #[serde(default)]
    /// Style number (0 = no pair style); together with `pair_id`, which garments match across images.
    pub style: i64,
    /// `[x1, y1, x2, y2]`.
    pub bounding_box: Vec<f64>,
    /// `[x, y, v] × N` in the category's local order.
    pub landmarks: Vec<f64>,
    #[serde(default)]
    /// Polygons, kept as JSON (not used for detection).
    pub segmentation: Value,
    #[serde(default)]
    /// 1 small, 2 modest, 3 large.
    pub scale: i64,
    #[serde(default)]
    /// 1 slight, 2 medium, 3 heavy occlusion.
    pub occlusion: i64,
    #[serde(default)]
    /// 1 no, 2 medium, 3 large zoom-in.
    pub zoom_in: i64,
    #[serde(default)]
    /// 1 no wear, 2 frontal, 3 side or back.
    pub viewpoint: i64,
    /// Further attribute labels by task name (`y`/`n`/`m` strings; the synthetic set's
    /// `pattern` and `colour`); not in DeepFashion2's own files.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// A raw per-image JSON: `source`, `pair_id` and the items in key order (`item1`, `item2`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct RawImage {
    /// `user` or `shop`.
    pub source: String,
    /// The user/shop pair the image belongs to.
    pub pair_id: i64,
    /// The garments under their keys (`item1`, `item2`, …), in file order.
    pub items: Vec<(String, RawItem)>,
}

/// Parse a raw per-image JSON, checking every item's fields.
pub fn read_raw_image(path: &Path, limits: &Limits) -> Result<RawImage, DataError> {
    let text = limits
        .json_text(path)
        .map_err(|m| DataError::new(path, "", "-", m))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        DataError::new(
            path,
            "",
            "-",
            format!(
                "malformed JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(DataError::new(
            path,
            "",
            "-",
            "the top level is not a JSON object",
        ));
    };
    let source = map
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let pair_id = map
        .get("pair_id")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    let mut items = Vec::new();
    for (key, v) in &map {
        if key == "source" || key == "pair_id" {
            continue;
        }
        let place = format!("{key}: ");
        let item: RawItem = serde_json::from_value(v.clone()).map_err(|e| {
            DataError::new(path, &place, "-", format!("not a DeepFashion2 item: {e}"))
        })?;
        let cat = category_field(path, &place, item.category_id)?;
        if item.landmarks.len() != 3 * cat.num_landmarks {
            return Err(DataError::new(
                path,
                &place,
                "landmarks",
                format!(
                    "has {} values, but {} ({}) has {} landmarks ({} values)",
                    item.landmarks.len(),
                    cat.name,
                    cat.id,
                    cat.num_landmarks,
                    3 * cat.num_landmarks
                ),
            ));
        }
        for (field, v) in [
            ("scale", item.scale),
            ("occlusion", item.occlusion),
            ("zoom_in", item.zoom_in),
            ("viewpoint", item.viewpoint),
        ] {
            if !(0..=3).contains(&v) {
                return Err(DataError::new(
                    path,
                    &place,
                    field,
                    format!("is {v}; DeepFashion2 writes 1, 2 or 3 (0: not annotated)"),
                ));
            }
        }
        if item.bounding_box.len() != 4 {
            return Err(DataError::new(
                path,
                &place,
                "bounding_box",
                format!("has {} values, expected 4", item.bounding_box.len()),
            ));
        }
        items.push((key.clone(), item));
    }
    // `item10` sorts before `item2` as a string: order by the number.
    items.sort_by_key(|(k, _)| {
        k.trim_start_matches("item")
            .parse::<u64>()
            .unwrap_or(u64::MAX)
    });
    Ok(RawImage {
        source,
        pair_id,
        items,
    })
}

/// Convert raw per-image JSONs (`annos/000001.json` ↔ `image/000001.jpg`) into the COCO form
/// exactly as `deepfashion2_to_coco.py` does: image id = file number, `bbox = [x1, y1, x2-x1,
/// y2-y1]`, `area = w·h`, the category's landmarks written at its range of the 294 layout,
/// `num_keypoints` = labelled count, annotation ids counting from 1 in file order.
pub fn convert_raw(
    annos: &[(PathBuf, u32, u32)],
    skip_bad: bool,
    limits: &Limits,
) -> Result<(CocoFile, SkipReport), DataError> {
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    let mut report = SkipReport::default();
    for (path, width, height) in annos {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let image_id: u64 = stem.parse().map_err(|_| {
            DataError::new(
                path,
                "",
                "-",
                "file name is not a number (DeepFashion2 names files 000001.json …)",
            )
        })?;
        let raw = match read_raw_image(path, limits) {
            Ok(r) => r,
            Err(e) if skip_bad => {
                report.skipped.push(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        images.push(CocoImage {
            coco_url: String::new(),
            date_captured: String::new(),
            file_name: format!("{stem}.jpg"),
            flickr_url: String::new(),
            id: image_id,
            license: 0,
            width: *width,
            height: *height,
        });
        for (key, item) in raw.items {
            let cat = category(item.category_id as usize).expect("validated by read_raw_image");
            let [x1, y1, x2, y2] = [0, 1, 2, 3].map(|i| item.bounding_box[i]);
            let bbox = [x1, y1, x2 - x1, y2 - y1];
            if let Err(e) = check_box(
                path,
                &format!("{key}: "),
                "bounding_box",
                bbox,
                *width,
                *height,
            ) {
                if skip_bad {
                    report.skipped.push(e);
                    continue;
                }
                return Err(e);
            }
            let mut keypoints = vec![0.0; 3 * NUM_LANDMARKS];
            keypoints[3 * cat.start..3 * (cat.start + cat.num_landmarks)]
                .copy_from_slice(&item.landmarks);
            let num_keypoints = item
                .landmarks
                .chunks_exact(3)
                .filter(|k| k[2] > 0.0)
                .count() as i64;
            annotations.push(CocoAnnotation {
                area: bbox[2] * bbox[3],
                bbox: bbox.to_vec(),
                category_id: cat.id as i64,
                id: annotations.len() as u64 + 1,
                pair_id: raw.pair_id,
                image_id,
                iscrowd: 0,
                style: item.style,
                num_keypoints,
                keypoints,
                attributes: raw_attributes(&item),
                segmentation: item.segmentation,
            });
        }
    }
    let file = CocoFile {
        info: Some(Value::Object(Default::default())),
        licenses: Some(Value::Array(Vec::new())),
        images,
        annotations,
        categories: coco_categories(),
        attribute_tasks: crate::attributes::deepfashion2_tasks(),
    };
    Ok((file, report))
}

/// An item's attribute labels: DeepFashion2's four 1-based values as label strings (a value
/// outside 1..=3, e.g. 0 for none, gives no label), then the item's own `attributes`.
fn raw_attributes(item: &RawItem) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let values = [item.scale, item.occlusion, item.zoom_in, item.viewpoint];
    for (task, v) in crate::attributes::deepfashion2_tasks().iter().zip(values) {
        if let Some(label) = crate::attributes::label_of_value(v, task.classes) {
            out.insert(task.name.clone(), label);
        }
    }
    out.extend(item.attributes.clone());
    out
}

/// Convert a raw DeepFashion2 split folder (`<dir>/annos/*.json` + `<dir>/image/*.jpg`, or a
/// folder holding both kinds of file) into the COCO form, in file-number order. Image sizes come
/// from the image headers; a missing or unreadable image is an error naming it (skipped and
/// reported with `skip_bad`). `progress(done, total)` is called as image headers are read.
pub fn convert_raw_dir(
    dir: &Path,
    skip_bad: bool,
    limits: &Limits,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(CocoFile, SkipReport), DataError> {
    let (annos_dir, image_dir) = if dir.join("annos").is_dir() {
        (dir.join("annos"), dir.join("image"))
    } else {
        (dir.to_path_buf(), dir.to_path_buf())
    };
    let entries = std::fs::read_dir(&annos_dir)
        .map_err(|e| DataError::new(&annos_dir, "", "-", format!("cannot list the folder: {e}")))?;
    let mut jsons: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "json")
            && let Some(n) = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
        {
            jsons.push((n, p));
        }
    }
    if jsons.is_empty() {
        return Err(DataError::new(
            &annos_dir,
            "",
            "-",
            "no DeepFashion2 annotation files (000001.json …) found",
        ));
    }
    jsons.sort();
    let total = jsons.len();
    let mut annos = Vec::with_capacity(total);
    let mut report = SkipReport::default();
    for (done, (_, json)) in jsons.into_iter().enumerate() {
        progress(done, total);
        let stem = json
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let img = image_dir.join(format!("{stem}.jpg"));
        match limits.image_size(&img) {
            Ok((w, h)) => annos.push((json, w, h)),
            Err(e) => {
                let err = DataError::new(
                    &img,
                    "",
                    "-",
                    format!(
                        "missing, unreadable or too large image for {}: {e}",
                        json.display()
                    ),
                );
                if skip_bad {
                    report.skipped.push(err);
                } else {
                    return Err(err);
                }
            }
        }
    }
    let (coco, more) = convert_raw(&annos, skip_bad, limits)?;
    report.skipped.extend(more.skipped);
    Ok((coco, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("deepmark-df2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn raw_item(cat: i64, n: usize) -> String {
        let lm: Vec<String> = (0..n)
            .map(|i| format!("{}, {}, 2", 10 + i, 20 + i))
            .collect();
        format!(
            r#"{{"category_name": "x", "category_id": {cat}, "style": 1, "bounding_box": [5, 6, 55, 86],
               "landmarks": [{}], "segmentation": [[5, 6, 55, 6, 55, 86]], "scale": 2, "occlusion": 1,
               "zoom_in": 1, "viewpoint": 2}}"#,
            lm.join(", ")
        )
    }

    #[test]
    fn raw_json_converts_like_the_official_script() {
        let p = tmp(
            "000123.json",
            &format!(
                r#"{{"source": "user", "pair_id": 7, "item2": {}, "item1": {}}}"#,
                raw_item(9, 8),
                raw_item(7, 10)
            ),
        );
        let (coco, report) = convert_raw(&[(p, 100, 120)], false, &Limits::default()).unwrap();
        assert!(report.skipped.is_empty());
        assert_eq!(coco.images[0].id, 123);
        assert_eq!(coco.images[0].file_name, "000123.jpg");
        let a = &coco.annotations[0];
        // item1 first, shorts: landmarks 159..168 of the 294 layout.
        assert_eq!((a.id, a.category_id, a.pair_id, a.style), (1, 7, 7, 1));
        assert_eq!(a.bbox, vec![5.0, 6.0, 50.0, 80.0]);
        assert_eq!(a.area, 4000.0);
        assert_eq!(a.num_keypoints, 10);
        assert_eq!(&a.keypoints[3 * 158..3 * 158 + 3], &[10.0, 20.0, 2.0]);
        assert_eq!(a.keypoints.iter().filter(|v| **v != 0.0).count(), 30);
        assert_eq!(coco.annotations[1].category_id, 9);
        assert_eq!(coco.categories.len(), 13);
        assert_eq!(coco.categories[0].keypoints.len(), 294);
    }

    /// A raw file holding one item.
    fn one_item(name: &str, item: String) -> PathBuf {
        tmp(
            name,
            &format!(r#"{{"source": "shop", "pair_id": 1, "item1": {item}}}"#),
        )
    }

    #[test]
    fn raw_errors_name_file_item_and_field() {
        let bad_count = one_item("000001.json", raw_item(9, 7));
        let e = read_raw_image(&bad_count, &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("000001.json") && e.contains("item1") && e.contains("landmarks"),
            "{e}"
        );
        let bad_cat = one_item("000002.json", raw_item(14, 8));
        let e = read_raw_image(&bad_cat, &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("category_id") && e.contains("14"), "{e}");
        let bad_json = tmp("000003.json", r#"{"source": "shop", "item1": {"#);
        let e = read_raw_image(&bad_json, &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("000003.json") && e.contains("malformed JSON"),
            "{e}"
        );
        let bad_attr = one_item(
            "000005.json",
            raw_item(9, 8).replace(r#""occlusion": 1"#, r#""occlusion": 4"#),
        );
        let e = read_raw_image(&bad_attr, &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("000005.json") && e.contains("item1") && e.contains("`occlusion`: is 4"),
            "{e}"
        );
        // A box outside the image: error, or skipped and reported with --skip-bad.
        let outside = one_item("000004.json", raw_item(9, 8));
        let e = convert_raw(&[(outside.clone(), 40, 40)], false, &Limits::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bounding_box") && e.contains("outside"), "{e}");
        let (coco, report) = convert_raw(
            &[(outside, 40, 40), (bad_count, 100, 100)],
            true,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((coco.annotations.len(), report.skipped.len()), (0, 2));
    }
}
