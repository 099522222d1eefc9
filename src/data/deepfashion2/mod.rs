//! DeepFashion2 annotations: the COCO-style JSON written by DeepFashion2's
//! `deepfashion2_to_coco.py` (294×3 keypoints per item, `bbox` = `[x, y, w, h]`, `area` = box area)
//! and the raw per-image JSON of the dataset (`source`, `pair_id`, `item1..N` with
//! `bounding_box` = `[x1, y1, x2, y2]` and the category's own landmarks), with validation that
//! names the file, the item and the field of every problem.

mod raw;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::error::DataError;
use crate::garment::Item;
use crate::garment::spec::{DeclaredCategory, Notes, TaxonomyChoice};
use crate::garment::taxonomy::{CATEGORIES, Category, DEEPFASHION2, NUM_LANDMARKS, Taxonomy};
use crate::io::Limits;
pub use raw::{RawImage, RawItem, convert_raw, convert_raw_dir, read_raw_image};

/// One image and its garments.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The image's id (DeepFashion2: the file number).
    pub image_id: u64,
    /// File name inside the image folder.
    pub file_name: String,
    /// Width in pixels, as the annotations say.
    pub width: u32,
    /// Height in pixels, as the annotations say.
    pub height: u32,
    /// The garments, in the annotations' order.
    pub items: Vec<Item>,
}

impl Sample {
    /// Decodes this sample's image from `image_dir`; a failure names the file and the sample
    /// (what training reports when an image that passed the header check does not decode).
    pub fn open_image(
        &self,
        image_dir: &Path,
        limits: &Limits,
    ) -> Result<image::RgbImage, DataError> {
        let path = image_dir.join(&self.file_name);
        limits.open_rgb(&path).map_err(|e| DataError {
            file: path.clone(),
            place: format!("image {}: ", self.image_id),
            field: "file_name".into(),
            message: format!("cannot decode: {e}"),
        })
    }
}

/// COCO-style DeepFashion2 file, as `deepfashion2_to_coco.py` writes it. Unknown keys are kept
/// out of the typed fields and ignored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CocoFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// COCO's `info` block, kept as it is.
    pub info: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// COCO's `licenses`, kept as they are.
    pub licenses: Option<Value>,
    /// The images.
    pub images: Vec<CocoImage>,
    /// The garments.
    pub annotations: Vec<CocoAnnotation>,
    /// The categories with their landmark names.
    pub categories: Vec<CocoCategory>,
    /// The attribute tasks the annotations' `attributes` use (`convert-dataset` writes
    /// DeepFashion2's `scale`, `occlusion`, `zoom_in` and `viewpoint`; absent in files without
    /// attributes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attribute_tasks: Vec<crate::attributes::AttributeTask>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
/// One entry of `images`.
pub struct CocoImage {
    #[serde(default)]
    /// Unused (COCO's field).
    pub coco_url: String,
    #[serde(default)]
    /// Unused (COCO's field).
    pub date_captured: String,
    /// File name inside the image folder.
    pub file_name: String,
    #[serde(default)]
    /// Unused (COCO's field).
    pub flickr_url: String,
    /// Unique image id.
    pub id: u64,
    #[serde(default)]
    /// Unused (COCO's field).
    pub license: i64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
/// One entry of `annotations`: a garment.
pub struct CocoAnnotation {
    /// Box area `w·h` (as `deepfashion2_to_coco.py` writes it; COCO: the mask's area).
    #[serde(default)]
    pub area: f64,
    /// `[x, y, w, h]` in pixels.
    pub bbox: Vec<f64>,
    /// 1-based category id.
    pub category_id: i64,
    /// Unique annotation id.
    pub id: u64,
    #[serde(default)]
    /// The user/shop pair of the image (DeepFashion2).
    pub pair_id: i64,
    /// The image it belongs to.
    pub image_id: u64,
    #[serde(default)]
    /// 1 for a crowd region (never in DeepFashion2).
    pub iscrowd: i64,
    #[serde(default)]
    /// Style number within the pair (0: none).
    pub style: i64,
    #[serde(default)]
    /// Labelled landmarks.
    pub num_keypoints: i64,
    /// `x, y, v` triplets: DeepFashion2's 294, the category's landmarks at its range of the layout
    /// and zeros elsewhere; or (COCO keypoints files) the category's own landmarks.
    pub keypoints: Vec<f64>,
    #[serde(default)]
    /// Polygons, kept as JSON (not used for detection).
    pub segmentation: Value,
    /// Attribute labels by task name, one `y`/`n`/`m` letter per class (`"nyn"`); the tasks are
    /// the file's `attribute_tasks`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
/// One entry of `categories`.
pub struct CocoCategory {
    /// Category id (DeepFashion2: 1–13).
    pub id: i64,
    /// Name (`short_sleeved_shirt`…).
    pub name: String,
    /// COCO's super-category (DeepFashion2: `clothes`).
    #[serde(default)]
    pub supercategory: String,
    /// Landmark names (DeepFashion2: the 294 numbers).
    #[serde(default)]
    pub keypoints: Vec<String>,
    /// Landmark pairs to draw, as the file gives them.
    #[serde(default)]
    pub skeleton: Vec<Value>,
}

impl CocoCategory {
    /// What a taxonomy reads of it.
    pub fn declared(&self) -> DeclaredCategory {
        DeclaredCategory {
            id: self.id,
            name: self.name.clone(),
            keypoints: self.keypoints.clone(),
            skeleton: self.skeleton.clone(),
        }
    }
}

impl CocoFile {
    /// The file's taxonomy as `choice` says ([`crate::garment::spec::resolve`]), with what was
    /// inferred.
    pub fn taxonomy(
        &self,
        path: &Path,
        choice: &TaxonomyChoice,
    ) -> Result<(&'static Taxonomy, Notes), DataError> {
        let declared: Vec<DeclaredCategory> =
            self.categories.iter().map(CocoCategory::declared).collect();
        crate::garment::spec::resolve(choice, path, &declared)
    }
}

/// The 13 category records of `deepfashion2_to_coco.py` (each declares all 294 keypoints).
pub fn coco_categories() -> Vec<CocoCategory> {
    CATEGORIES
        .iter()
        .map(|c| CocoCategory {
            id: c.id as i64,
            name: c.name.to_string(),
            supercategory: "clothes".into(),
            keypoints: (1..=NUM_LANDMARKS).map(|i| i.to_string()).collect(),
            skeleton: Vec::new(),
        })
        .collect()
}

/// Samples skipped by `--skip-bad`, with the reason for each.
#[derive(Debug, Default, Clone)]
pub struct SkipReport {
    /// The skipped annotations or images, each with its file, place, field and reason.
    pub skipped: Vec<DataError>,
    /// How many of the skipped entries are whole images (missing, unreadable, too large, or of
    /// another size than the annotations say); the rest are single annotations.
    pub unusable_images: usize,
}

impl std::fmt::Display for SkipReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped {} bad annotation(s)", self.skipped.len())?;
        for e in &self.skipped {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Parse a COCO-style file (syntax and types only), refused when over `limits`. A FashionAI
/// keypoint CSV (`.csv`) is read as the COCO-style file it amounts to
/// ([`crate::data::fashionai::read_csv`]).
pub fn read_coco_file(path: &Path, limits: &Limits) -> Result<CocoFile, DataError> {
    if crate::data::fashionai::is_fashionai_csv(path) {
        return crate::data::fashionai::read_csv(path, limits);
    }
    parse_json(path, limits)
}

/// A JSON file within `limits`, parsed as `T`; errors name the file and where the JSON breaks.
fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    limits: &Limits,
) -> Result<T, DataError> {
    let text = limits
        .json_text(path)
        .map_err(|m| DataError::new(path, "", "-", m))?;
    serde_json::from_str(&text).map_err(|e| {
        DataError::new(
            path,
            "",
            json_field(&e),
            format!(
                "malformed JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

/// Only the `categories` of a COCO-style file (the rest is scanned, not kept), refused when
/// over `limits`.
pub fn read_categories(path: &Path, limits: &Limits) -> Result<Vec<CocoCategory>, DataError> {
    if crate::data::fashionai::is_fashionai_csv(path) {
        // Every FashionAI CSV declares the same categories: no need to read its images.
        return Ok(crate::data::fashionai::coco_categories());
    }
    #[derive(Deserialize)]
    struct Categories {
        #[serde(default)]
        categories: Vec<CocoCategory>,
    }
    let c: Categories = parse_json(path, limits)?;
    Ok(c.categories)
}

fn json_field(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "-",
        _ => "(see message)",
    }
}

pub(super) fn check_box(
    file: &Path,
    place: &str,
    field: &str,
    b: [f64; 4],
    width: u32,
    height: u32,
) -> Result<(), DataError> {
    let [x, y, w, h] = b;
    if !b.iter().all(|v| v.is_finite()) || w <= 0.0 || h <= 0.0 {
        return Err(DataError::new(
            file,
            place,
            field,
            format!("{b:?} is not a box with positive size"),
        ));
    }
    // DeepFashion2 boxes use inclusive pixel coordinates; allow the one-pixel edge.
    if x < -1.0 || y < -1.0 || x + w > width as f64 + 1.0 || y + h > height as f64 + 1.0 {
        return Err(DataError::new(
            file,
            place,
            field,
            format!("{b:?} (x, y, w, h) lies outside the {width}×{height} image"),
        ));
    }
    Ok(())
}

/// The category of a `category_id` field, or an error naming the file, the place and the field.
pub(super) fn category_field(
    file: &Path,
    place: &str,
    id: i64,
) -> Result<&'static Category, DataError> {
    category_in(&DEEPFASHION2, file, place, id)
}

/// [`category_field`] in `taxonomy`.
fn category_in(
    taxonomy: &'static Taxonomy,
    file: &Path,
    place: &str,
    id: i64,
) -> Result<&'static Category, DataError> {
    usize::try_from(id)
        .ok()
        .and_then(|id| taxonomy.category(id))
        .ok_or_else(|| {
            DataError::new(
                file,
                place,
                "category_id",
                format!(
                    "{id} is not a category of the taxonomy {} ({})",
                    taxonomy.name,
                    if taxonomy.is_deepfashion2() {
                        "1..13".to_string()
                    } else {
                        taxonomy.category_list()
                    }
                ),
            )
        })
}

/// An image's `file_name` must stay inside the image folder (no absolute path, no `..`).
pub(crate) fn check_file_name(file: &Path, img: &CocoImage) -> Result<(), DataError> {
    if crate::io::stays_inside(&img.file_name) {
        return Ok(());
    }
    Err(DataError::new(
        file,
        format!("image {}: ", img.id),
        "file_name",
        format!(
            "{:?} is not a relative path inside the image folder (absolute paths and `..` are \
             refused)",
            img.file_name
        ),
    ))
}

/// Validate one DeepFashion2 COCO annotation against its image and turn it into an [`Item`].
pub fn item_from_annotation(
    file: &Path,
    a: &CocoAnnotation,
    img: &CocoImage,
) -> Result<Item, DataError> {
    item_in(&DEEPFASHION2, file, a, img)
}

/// Validate one COCO annotation of `taxonomy` against its image and turn it into an [`Item`]
/// (landmarks in the global layout). `keypoints` holds the global layout (DeepFashion2's files)
/// or, as COCO keypoints files do, the category's own landmarks.
pub fn item_in(
    taxonomy: &'static Taxonomy,
    file: &Path,
    a: &CocoAnnotation,
    img: &CocoImage,
) -> Result<Item, DataError> {
    let place = format!("annotation {} (image {}): ", a.id, a.image_id);
    let cat = category_in(taxonomy, file, &place, a.category_id)?;
    let total = taxonomy.num_landmarks;
    let local = a.keypoints.len() == 3 * cat.num_landmarks && cat.num_landmarks != total;
    if a.keypoints.len() != 3 * total && !local {
        return Err(DataError::new(
            file,
            &place,
            "keypoints",
            if cat.num_landmarks == total {
                format!(
                    "has {} values, expected {} ({total} × [x, y, v])",
                    a.keypoints.len(),
                    3 * total
                )
            } else {
                format!(
                    "has {} values, expected {} ({} landmarks of {} × [x, y, v]) or {} (the \
                     whole layout of {total})",
                    a.keypoints.len(),
                    3 * cat.num_landmarks,
                    cat.num_landmarks,
                    cat.name,
                    3 * total
                )
            },
        ));
    }
    let bbox: [f64; 4] = a.bbox.clone().try_into().map_err(|_| {
        DataError::new(
            file,
            &place,
            "bbox",
            format!("has {} values, expected 4 (x, y, w, h)", a.bbox.len()),
        )
    })?;
    check_box(file, &place, "bbox", bbox, img.width, img.height)?;
    let offset = if local { cat.start } else { 0 };
    let mut keypoints = vec![[0.0; 3]; offset];
    for (i, k) in a.keypoints.chunks_exact(3).enumerate() {
        let i = i + offset;
        let (x, y, v) = (k[0], k[1], k[2]);
        if !(x.is_finite() && y.is_finite()) || !(v == 0.0 || v == 1.0 || v == 2.0) {
            return Err(DataError::new(
                file,
                &place,
                "keypoints",
                format!("landmark {} is [{x}, {y}, {v}]", i + 1),
            ));
        }
        if v > 0.0 && !cat.range().contains(&i) {
            return Err(DataError::new(
                file,
                &place,
                "keypoints",
                format!(
                    "landmark {} is labelled but {} ({}) has landmarks {}..{} only",
                    i + 1,
                    cat.name,
                    cat.id,
                    cat.start + 1,
                    cat.start + cat.num_landmarks
                ),
            ));
        }
        keypoints.push([x as f32, y as f32, v as f32]);
    }
    keypoints.resize(total, [0.0; 3]);
    Ok(Item {
        category_id: cat.id,
        bbox: bbox.map(|v| v as f32),
        keypoints,
    })
}

/// Read and validate a COCO-style DeepFashion2 file (a file of another taxonomy is an error
/// naming its categories; [`load_coco_in`] reads any). With `skip_bad`, invalid annotations
/// are dropped and reported; otherwise the first one is an error. Images listed twice or
/// annotations of unknown images are always errors. A file over `limits` is refused unread.
pub fn load_coco(
    path: &Path,
    skip_bad: bool,
    limits: &Limits,
) -> Result<(Vec<Sample>, SkipReport), DataError> {
    let d = load_coco_in(
        path,
        &TaxonomyChoice::Given(&DEEPFASHION2),
        skip_bad,
        limits,
    )?;
    Ok((d.samples, d.report))
}

/// A COCO-style keypoints file read in its taxonomy.
#[derive(Debug, Clone)]
pub struct CocoData {
    /// The images and their objects (landmarks in the taxonomy's global layout).
    pub samples: Vec<Sample>,
    /// What `skip_bad` left out.
    pub report: SkipReport,
    /// The taxonomy.
    pub taxonomy: &'static Taxonomy,
    /// What resolving the taxonomy inferred (flip pairs, default sigmas), for the user.
    pub notes: Notes,
}

/// [`load_coco`] with the taxonomy `choice` names (read from the file's `categories` by
/// default; a built-in one or a taxonomy file must agree with them).
pub fn load_coco_in(
    path: &Path,
    choice: &TaxonomyChoice,
    skip_bad: bool,
    limits: &Limits,
) -> Result<CocoData, DataError> {
    let file = read_coco_file(path, limits)?;
    let (taxonomy, notes) = file.taxonomy(path, choice)?;
    let mut samples: Vec<Sample> = Vec::with_capacity(file.images.len());
    let mut index: BTreeMap<u64, usize> = BTreeMap::new();
    for img in &file.images {
        if index.insert(img.id, samples.len()).is_some() {
            return Err(DataError::new(
                path,
                format!("image {}: ", img.id),
                "id",
                "listed twice",
            ));
        }
        check_file_name(path, img)?;
        samples.push(Sample {
            image_id: img.id,
            file_name: img.file_name.clone(),
            width: img.width,
            height: img.height,
            items: Vec::new(),
        });
    }
    let mut report = SkipReport::default();
    for a in &file.annotations {
        let Some(&s) = index.get(&a.image_id) else {
            let e = DataError::new(
                path,
                format!("annotation {}: ", a.id),
                "image_id",
                format!("no image has id {}", a.image_id),
            );
            if skip_bad {
                report.skipped.push(e);
                continue;
            }
            return Err(e);
        };
        match item_in(taxonomy, path, a, &file.images[s]) {
            Ok(item) => samples[s].items.push(item),
            Err(e) if skip_bad => report.skipped.push(e),
            Err(e) => return Err(e),
        }
    }
    Ok(CocoData {
        samples,
        report,
        taxonomy,
        notes,
    })
}
