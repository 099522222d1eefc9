//! FashionAI's keypoint files (the Tianchi FashionAI key points challenge, 2018), read
//! directly: a CSV with the header `image_id,image_category,neckline_left,…,bottom_right_out`
//! (24 landmark columns), one garment per row, each landmark cell `x_y_v` with `v` = 1
//! visible, 0 occluded, −1 not a landmark of the category. Rows become a COCO-style file of the
//! built-in `fashionai` taxonomy (5 categories, 53 landmarks in the global layout): `v` 1 → 2,
//! 0 → 1, −1 → 0, keypoints in the global layout (the category's at its range, zeros
//! elsewhere, as DeepFashion2's files), the box is the tight box of the garment's landmarks (FashionAI gives none),
//! and each image's size is read from its header. Images are found relative to the CSV's
//! folder, as the dataset ships (`Images/blouse/….jpg`).
//!
//! FashionAI's metric, the normalised error, is `eval::landmarks::fashionai_ne`.

use std::collections::BTreeMap;
use std::path::Path;

use super::deepfashion2::{CocoAnnotation, CocoCategory, CocoFile, CocoImage};
use crate::error::DataError;
use crate::garment::spec::{CategoryDef, DEFAULT_SIGMA, TaxonomyDef, infer_flip_pairs};
use crate::io::Limits;

/// FashionAI's 24 landmark columns, in the CSV's order.
pub const COLUMNS: [&str; 24] = [
    "neckline_left",
    "neckline_right",
    "center_front",
    "shoulder_left",
    "shoulder_right",
    "armpit_left",
    "armpit_right",
    "waistline_left",
    "waistline_right",
    "cuff_left_in",
    "cuff_left_out",
    "cuff_right_in",
    "cuff_right_out",
    "top_hem_left",
    "top_hem_right",
    "waistband_left",
    "waistband_right",
    "hemline_left",
    "hemline_right",
    "crotch",
    "bottom_left_in",
    "bottom_left_out",
    "bottom_right_in",
    "bottom_right_out",
];

/// FashionAI's five categories and the columns (0-based) each has, in column order.
pub const CATEGORIES: [(&str, &[usize]); 5] = [
    ("blouse", &[0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13, 14]),
    ("dress", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 17, 18]),
    ("outwear", &[0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]),
    ("skirt", &[15, 16, 17, 18]),
    ("trousers", &[15, 16, 19, 20, 21, 22, 23]),
];

/// The built-in `fashionai` taxonomy: the five categories (ids 1–5 in the order above) with
/// their landmarks named as the CSV's columns; flip pairs from the `left`/`right` names; every
/// sigma [`DEFAULT_SIGMA`] (FashionAI publishes no OKS sigmas: its metric is the NE).
pub fn taxonomy_def() -> TaxonomyDef {
    TaxonomyDef {
        name: "fashionai".into(),
        categories: CATEGORIES
            .iter()
            .enumerate()
            .map(|(i, (name, cols))| {
                let keypoints: Vec<String> = cols.iter().map(|&c| COLUMNS[c].to_string()).collect();
                CategoryDef {
                    id: i + 1,
                    name: name.to_string(),
                    flip_pairs: infer_flip_pairs(&keypoints),
                    sigmas: vec![DEFAULT_SIGMA; keypoints.len()],
                    skeleton: Vec::new(),
                    groups: Vec::new(),
                    keypoints,
                }
            })
            .collect(),
    }
}

/// Whether a path names a FashionAI CSV (by extension).
pub fn is_fashionai_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Read a FashionAI keypoint CSV as a COCO-style file of the `fashionai` taxonomy (module
/// doc). Errors name the file, the line and the column.
pub fn read_csv(path: &Path, limits: &Limits) -> Result<CocoFile, DataError> {
    let text = limits
        .json_text(path)
        .map_err(|m| DataError::new(path, "", "-", m))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(DataError::new(path, "", "-", "empty file (no header)"));
    };
    let head: Vec<&str> = header.trim().split(',').map(str::trim).collect();
    let col = |name: &str| head.iter().position(|h| *h == name);
    let (Some(id_col), Some(cat_col)) = (col("image_id"), col("image_category")) else {
        return Err(DataError::new(
            path,
            "line 1: ",
            "header",
            "needs the columns image_id and image_category (FashionAI's keypoint CSV)",
        ));
    };
    let landmark_cols: Vec<Option<usize>> = COLUMNS.iter().map(|c| col(c)).collect();
    let mut images: Vec<CocoImage> = Vec::new();
    let mut ids: BTreeMap<String, u64> = BTreeMap::new();
    let mut annotations = Vec::new();
    for (n, line) in lines {
        let place = format!("line {}: ", n + 1);
        let cells: Vec<&str> = line.trim().split(',').map(str::trim).collect();
        if cells.len() != head.len() {
            return Err(DataError::new(
                path,
                &place,
                "-",
                format!("{} cells; the header has {}", cells.len(), head.len()),
            ));
        }
        let file_name = cells[id_col].to_string();
        let cat_name = cells[cat_col];
        let Some(class) = CATEGORIES.iter().position(|(c, _)| *c == cat_name) else {
            return Err(DataError::new(
                path,
                &place,
                "image_category",
                format!(
                    "{cat_name:?} is not a FashionAI category ({})",
                    CATEGORIES.map(|c| c.0).join(", ")
                ),
            ));
        };
        if !crate::io::stays_inside(&file_name) {
            return Err(DataError::new(
                path,
                &place,
                "image_id",
                format!("{file_name:?} is not a relative path inside the CSV's folder"),
            ));
        }
        let image_id = match ids.get(&file_name) {
            Some(&id) => id,
            None => {
                let (width, height) = limits.image_size(&dir.join(&file_name)).map_err(|e| {
                    DataError::new(
                        path,
                        &place,
                        "image_id",
                        format!("missing, unreadable or too large image: {e}"),
                    )
                })?;
                let id = images.len() as u64 + 1;
                ids.insert(file_name.clone(), id);
                images.push(CocoImage {
                    coco_url: String::new(),
                    date_captured: String::new(),
                    file_name: file_name.clone(),
                    flickr_url: String::new(),
                    id,
                    license: 0,
                    width,
                    height,
                });
                id
            }
        };
        let cols = CATEGORIES[class].1;
        // The global layout: the category's landmarks at its range, zeros elsewhere.
        let start: usize = CATEGORIES[..class].iter().map(|c| c.1.len()).sum();
        let total: usize = CATEGORIES.iter().map(|c| c.1.len()).sum();
        let mut keypoints = vec![0.0; 3 * start];
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for (c, name) in COLUMNS.iter().enumerate() {
            let Some(at) = landmark_cols[c] else {
                if cols.contains(&c) {
                    return Err(DataError::new(
                        path,
                        "line 1: ",
                        "header",
                        format!("has no column {name} ({cat_name} needs it)"),
                    ));
                }
                continue;
            };
            let cell = cells[at];
            let parts: Vec<&str> = cell.split('_').collect();
            let parsed: Option<[f64; 3]> = (parts.len() == 3)
                .then(|| {
                    Some([
                        parts[0].parse().ok()?,
                        parts[1].parse().ok()?,
                        parts[2].parse().ok()?,
                    ])
                })
                .flatten();
            let Some([x, y, v]) = parsed.filter(|p| {
                p[0].is_finite() && p[1].is_finite() && [-1.0, 0.0, 1.0].contains(&p[2])
            }) else {
                return Err(DataError::new(
                    path,
                    &place,
                    name,
                    format!("{cell:?} is not x_y_v with v in -1, 0, 1"),
                ));
            };
            if !cols.contains(&c) {
                if v != -1.0 {
                    return Err(DataError::new(
                        path,
                        &place,
                        name,
                        format!("{cell:?}: {cat_name} has no {name} (expected -1_-1_-1)"),
                    ));
                }
                continue;
            }
            if v < 0.0 {
                keypoints.extend([0.0, 0.0, 0.0]);
            } else {
                keypoints.extend([x, y, if v > 0.0 { 2.0 } else { 1.0 }]);
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
        keypoints.resize(3 * total, 0.0);
        let img = &images[(image_id - 1) as usize];
        if x0 > x1 {
            return Err(DataError::new(
                path,
                &place,
                "-",
                "no landmark is labelled: the garment's box cannot be derived",
            ));
        }
        let (w, h) = (img.width as f64, img.height as f64);
        let (x0, y0) = (x0.clamp(0.0, w - 1.0), y0.clamp(0.0, h - 1.0));
        let (x1, y1) = (x1.clamp(x0 + 1.0, w), y1.clamp(y0 + 1.0, h));
        let bbox = vec![x0, y0, x1 - x0, y1 - y0];
        annotations.push(CocoAnnotation {
            area: (x1 - x0) * (y1 - y0),
            bbox,
            category_id: class as i64 + 1,
            id: annotations.len() as u64 + 1,
            pair_id: 0,
            image_id,
            iscrowd: 0,
            style: 0,
            num_keypoints: keypoints.chunks(3).filter(|k| k[2] > 0.0).count() as i64,
            keypoints,
            segmentation: serde_json::Value::Null,
            attributes: Default::default(),
        });
    }
    Ok(CocoFile {
        info: None,
        licenses: None,
        images,
        annotations,
        categories: coco_categories(),
        attribute_tasks: Vec::new(),
    })
}

/// The `categories` a FashionAI CSV amounts to: the `fashionai` taxonomy's, each declaring
/// its own landmarks (the same for every CSV, so reading them needs no file).
pub fn coco_categories() -> Vec<CocoCategory> {
    taxonomy_def()
        .categories
        .into_iter()
        .map(|c| CocoCategory {
            id: c.id as i64,
            name: c.name,
            supercategory: "clothes".into(),
            keypoints: c.keypoints,
            skeleton: Vec::new(),
        })
        .collect()
}
