//! The ground-truth and results files as pycocotools reads them (`loadRes` rules).

use std::path::Path;

use serde::Deserialize;

use crate::error::DataError;
use crate::garment::taxonomy;
use crate::io::Limits;

/// What is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IouType {
    /// Boxes, scored by IoU.
    Bbox,
    /// Keypoints, scored by OKS.
    Keypoints,
}

impl IouType {
    /// `bbox` or `keypoints`, as pycocotools names them.
    pub fn name(self) -> &'static str {
        match self {
            IouType::Bbox => "bbox",
            IouType::Keypoints => "keypoints",
        }
    }
}

/// One annotation or detection, as the evaluator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ann {
    /// Annotation id (results: numbered from 1 in file order, as `loadRes`).
    pub id: u64,
    /// The image.
    pub image_id: u64,
    /// The category.
    pub category_id: i64,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
    /// Area (ground truth: the file's; results: box `w·h`, or the keypoints' extent).
    pub area: f64,
    /// Crowd regions match without counting as misses.
    pub iscrowd: bool,
    /// Flattened `x, y, v` triplets (may be empty for box-only data).
    pub keypoints: Vec<f64>,
    /// Labelled keypoints (ground truth without any are ignored by OKS).
    pub num_keypoints: i64,
    /// Detections only.
    pub score: f64,
}

/// Ground truth: image ids, category ids and annotations.
#[derive(Debug, Clone)]
pub struct GroundTruth {
    /// Sorted, unique.
    pub image_ids: Vec<u64>,
    /// Sorted, unique.
    pub category_ids: Vec<i64>,
    /// The annotations.
    pub anns: Vec<Ann>,
    /// Keypoints declared per category (`categories[].keypoints`) or carried by an annotation,
    /// the largest count.
    pub declared_keypoints: usize,
    /// OKS sigmas of the keypoints, when a taxonomy gave them ([`GroundTruth::sigmas`]).
    pub oks_sigmas: Option<Vec<f64>>,
}

#[derive(Deserialize)]
struct GtFile {
    images: Vec<GtImage>,
    #[serde(default)]
    annotations: Vec<GtAnn>,
    categories: Vec<GtCategory>,
}

#[derive(Deserialize)]
struct GtImage {
    id: u64,
}

#[derive(Deserialize)]
struct GtCategory {
    id: i64,
    #[serde(default)]
    keypoints: Vec<String>,
}

#[derive(Deserialize)]
struct GtAnn {
    id: u64,
    image_id: u64,
    category_id: i64,
    #[serde(default)]
    bbox: Vec<f64>,
    area: f64,
    #[serde(default)]
    iscrowd: i64,
    #[serde(default)]
    keypoints: Vec<f64>,
    #[serde(default)]
    num_keypoints: i64,
}

/// One entry of a results file (unknown keys are ignored, as pycocotools ignores them).
#[derive(Debug, Clone, Deserialize)]
pub struct ResultEntry {
    /// The image.
    pub image_id: u64,
    /// The category.
    pub category_id: i64,
    #[serde(default)]
    /// `[x, y, w, h]` (box results).
    pub bbox: Option<Vec<f64>>,
    #[serde(default)]
    /// `x, y, v` triplets (keypoint results).
    pub keypoints: Option<Vec<f64>>,
    /// Confidence.
    pub score: f64,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, limits: &Limits) -> Result<T, DataError> {
    let text = limits
        .json_text(path)
        .map_err(|m| DataError::new(path, "", "(file)", m))?;
    serde_json::from_str(&text).map_err(|e| {
        DataError::new(
            path,
            format!("line {} column {}: ", e.line(), e.column()),
            "(json)",
            e.to_string(),
        )
    })
}

fn bbox4(path: &Path, place: &str, bbox: &[f64]) -> Result<[f64; 4], DataError> {
    let b: [f64; 4] = bbox.try_into().map_err(|_| {
        DataError::new(
            path,
            place,
            "bbox",
            format!("expected [x, y, w, h], got {} numbers", bbox.len()),
        )
    })?;
    if b.iter().any(|v| !v.is_finite()) || b[2] < 0.0 || b[3] < 0.0 {
        return Err(DataError::new(
            path,
            place,
            "bbox",
            format!("{b:?} needs finite numbers and a width and height ≥ 0"),
        ));
    }
    Ok(b)
}

impl GroundTruth {
    /// Reads a COCO-style GT file (COCO person keypoints, DeepFashion2's COCO form, …).
    /// Keys the evaluator does not use are ignored. A file over `limits` is refused unread.
    /// A FashionAI keypoint CSV is read as its COCO-style form
    /// ([`crate::data::fashionai::read_csv`]).
    pub fn load(path: &Path, limits: &Limits) -> Result<GroundTruth, DataError> {
        let file: GtFile = if crate::data::fashionai::is_fashionai_csv(path) {
            let coco = crate::data::fashionai::read_csv(path, limits)?;
            serde_json::to_value(&coco)
                .and_then(serde_json::from_value)
                .map_err(|e| DataError::new(path, "", "-", e.to_string()))?
        } else {
            read_json(path, limits)?
        };
        let mut image_ids: Vec<u64> = file.images.iter().map(|i| i.id).collect();
        image_ids.sort_unstable();
        // What the trainer refuses, the evaluator refuses too: an image listed twice, an
        // annotation of no listed image.
        if let Some(w) = image_ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(DataError::new(
                path,
                format!("image {}: ", w[0]),
                "id",
                "listed twice",
            ));
        }
        if let Some((i, a)) = file
            .annotations
            .iter()
            .enumerate()
            .find(|(_, a)| image_ids.binary_search(&a.image_id).is_err())
        {
            return Err(DataError::new(
                path,
                format!("annotation {i} (id {}): ", a.id),
                "image_id",
                format!("no image has id {}", a.image_id),
            ));
        }
        let mut category_ids: Vec<i64> = file.categories.iter().map(|c| c.id).collect();
        category_ids.sort_unstable();
        category_ids.dedup();
        // Categories declare their own landmarks; annotations in a taxonomy's global layout
        // (FashionAI's CSV read here) carry more: the larger count is the results' length.
        let declared_keypoints = file
            .categories
            .iter()
            .map(|c| c.keypoints.len())
            .chain(file.annotations.iter().map(|a| a.keypoints.len() / 3))
            .max()
            .unwrap_or(0);
        let mut anns = Vec::with_capacity(file.annotations.len());
        for (i, a) in file.annotations.into_iter().enumerate() {
            let place = format!("annotation {i} (id {}): ", a.id);
            // As the trainer: a garment of an undeclared category (0, or 14 in DeepFashion2)
            // would be scored against nothing.
            if category_ids.binary_search(&a.category_id).is_err() {
                return Err(DataError::new(
                    path,
                    place,
                    "category_id",
                    format!(
                        "{} is not one of the file's categories ({})",
                        a.category_id,
                        id_ranges(&category_ids)
                    ),
                ));
            }
            let bbox = if a.bbox.is_empty() {
                [0.0; 4]
            } else {
                bbox4(path, &place, &a.bbox)?
            };
            if !a.keypoints.is_empty() && a.keypoints.len() % 3 != 0 {
                return Err(DataError::new(
                    path,
                    place,
                    "keypoints",
                    format!("length {} is not a multiple of 3", a.keypoints.len()),
                ));
            }
            anns.push(Ann {
                id: a.id,
                image_id: a.image_id,
                category_id: a.category_id,
                bbox,
                area: a.area,
                iscrowd: a.iscrowd != 0,
                keypoints: a.keypoints,
                num_keypoints: a.num_keypoints,
                score: 0.0,
            });
        }
        Ok(GroundTruth {
            oks_sigmas: None,
            image_ids,
            category_ids,
            anns,
            declared_keypoints,
        })
    }

    /// Number of keypoints per annotation: from the categories, else from the annotations.
    /// Keeps only the images (and their annotations) whose id satisfies `keep`.
    pub fn retain_images(&mut self, keep: impl Fn(u64) -> bool) {
        self.image_ids.retain(|&i| keep(i));
        self.anns.retain(|a| keep(a.image_id));
    }

    /// The OKS sigmas: the taxonomy's ([`GroundTruth::set_taxonomy`]), else COCO's 17 or
    /// DeepFashion2's 294 by keypoint count, else none.
    pub fn sigmas(&self) -> Vec<f64> {
        self.oks_sigmas
            .clone()
            .or_else(|| sigmas_for(self.num_keypoints()))
            .unwrap_or_default()
    }

    /// Use `taxonomy`'s OKS sigmas (global layout) when the file's keypoint count is its
    /// landmark count (declared, or carried by every annotation).
    /// Annotations carrying only their category's landmarks (COCO's form, in a taxonomy of
    /// several categories) are moved to the global layout first, as results are written.
    pub fn set_taxonomy(&mut self, taxonomy: &crate::garment::Taxonomy) {
        let total = taxonomy.num_landmarks;
        let mut moved = false;
        for a in &mut self.anns {
            if let Some(c) = local_category(a, taxonomy) {
                let mut k = vec![0.0; 3 * total];
                k[3 * c.start..3 * (c.start + c.num_landmarks)].copy_from_slice(&a.keypoints);
                a.keypoints = k;
                moved = true;
            }
        }
        if moved {
            self.declared_keypoints = total;
        }
        if self.in_global_layout(taxonomy) {
            self.oks_sigmas = Some(taxonomy.oks_sigmas());
        }
    }

    /// The ground truth as [`set_taxonomy`](Self::set_taxonomy) makes it: borrowed when that
    /// would change nothing the evaluation reads (no annotation to move, the same sigmas), so
    /// a large ground truth already in `taxonomy` is not copied.
    pub fn in_taxonomy(&self, taxonomy: &crate::garment::Taxonomy) -> std::borrow::Cow<'_, Self> {
        let unchanged = !self
            .anns
            .iter()
            .any(|a| local_category(a, taxonomy).is_some())
            && (!self.in_global_layout(taxonomy) || self.sigmas() == taxonomy.oks_sigmas());
        if unchanged {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut gt = self.clone();
        gt.set_taxonomy(taxonomy);
        std::borrow::Cow::Owned(gt)
    }

    /// Whether the keypoints are `taxonomy`'s global layout (declared, or carried by every
    /// annotation).
    fn in_global_layout(&self, taxonomy: &crate::garment::Taxonomy) -> bool {
        let total = taxonomy.num_landmarks;
        self.num_keypoints() == total
            || (!self.anns.is_empty() && self.anns.iter().all(|a| a.keypoints.len() == 3 * total))
    }

    /// Keypoints per annotation: the declared count, else the most any annotation carries.
    pub fn num_keypoints(&self) -> usize {
        if self.declared_keypoints > 0 {
            self.declared_keypoints
        } else {
            self.anns
                .iter()
                .map(|a| a.keypoints.len() / 3)
                .max()
                .unwrap_or(0)
        }
    }
}

/// The category of an annotation carrying only that category's landmarks (COCO's form) in a
/// taxonomy of several categories, which [`GroundTruth::set_taxonomy`] moves to the global
/// layout.
fn local_category(
    a: &Ann,
    taxonomy: &crate::garment::Taxonomy,
) -> Option<&'static crate::garment::Category> {
    let c = usize::try_from(a.category_id)
        .ok()
        .and_then(|id| taxonomy.category(id))?;
    (c.num_landmarks != taxonomy.num_landmarks && a.keypoints.len() == 3 * c.num_landmarks)
        .then_some(c)
}

/// Sorted ids as ranges: `1–13`, `1, 3, 5–7`; `none` when empty.
fn id_ranges(ids: &[i64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}–{}", ids[i], ids[j])
        } else {
            ids[i].to_string()
        });
        i = j + 1;
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// COCO's 17 person OKS sigmas (pycocotools: `np.array([...]) / 10.0`).
pub fn coco_person_sigmas() -> Vec<f64> {
    [
        0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87,
        0.89, 0.89,
    ]
    .iter()
    .map(|s| s / 10.0)
    .collect()
}

/// OKS sigmas for a keypoint count: COCO's 17 or DeepFashion2's 294.
pub fn sigmas_for(num_keypoints: usize) -> Option<Vec<f64>> {
    match num_keypoints {
        17 => Some(coco_person_sigmas()),
        taxonomy::NUM_LANDMARKS => Some(taxonomy::oks_sigmas()),
        _ => None,
    }
}

/// Results (detections) as `COCO.loadRes` makes them.
#[derive(Debug, Clone)]
pub struct Results {
    /// `Keypoints` when the results carry keypoints, else `Bbox`.
    pub kind: IouType,
    /// The detections.
    pub anns: Vec<Ann>,
}

impl Results {
    /// Reads a results file (a JSON list) and applies `loadRes`' rules. A file over `limits` is
    /// refused unread. The list is read as a stream, one entry at a time: memory holds the
    /// detections (about the file's size for keypoint results), not the file's text as well.
    pub fn load(path: &Path, gt: &GroundTruth, limits: &Limits) -> Result<Results, DataError> {
        limits
            .check_json_file(path)
            .map_err(|m| DataError::new(path, "", "(file)", m))?;
        let file = std::fs::File::open(path)
            .map_err(|e| DataError::new(path, "", "(file)", format!("cannot read: {e}")))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut builder = ResultsBuilder::new(path, gt);
        let mut de = serde_json::Deserializer::from_reader(reader);
        let parsed = serde::Deserializer::deserialize_seq(
            &mut de,
            EntryVisitor {
                builder: &mut builder,
            },
        )
        .and_then(|()| de.end());
        if let Some(e) = builder.error.take() {
            return Err(e);
        }
        parsed.map_err(|e| {
            DataError::new(
                path,
                format!("line {} column {}: ", e.line(), e.column()),
                "(json)",
                e.to_string(),
            )
        })?;
        builder.finish()
    }

    /// Results from entries in memory (`path` only labels errors).
    pub fn from_entries(
        path: &Path,
        list: Vec<ResultEntry>,
        gt: &GroundTruth,
    ) -> Result<Results, DataError> {
        let mut builder = ResultsBuilder::new(path, gt);
        for d in list {
            builder.push(d)?;
        }
        builder.finish()
    }
}

/// `loadRes`' rules applied one entry at a time: the first entry fixes the kind (keypoints, or
/// boxes).
struct ResultsBuilder<'a> {
    path: &'a Path,
    gt: &'a GroundTruth,
    /// `(kind, box rule)` once the first entry is read.
    kind: Option<(IouType, bool)>,
    anns: Vec<Ann>,
    /// The first entry's problem, when the stream stopped on it.
    error: Option<DataError>,
}

impl<'a> ResultsBuilder<'a> {
    fn new(path: &'a Path, gt: &'a GroundTruth) -> Self {
        ResultsBuilder {
            path,
            gt,
            kind: None,
            anns: Vec::new(),
            error: None,
        }
    }

    fn finish(self) -> Result<Results, DataError> {
        match self.kind {
            Some((kind, _)) => Ok(Results {
                kind,
                anns: self.anns,
            }),
            None => Err(DataError::new(self.path, "", "(list)", "no results")),
        }
    }

    fn push(&mut self, d: ResultEntry) -> Result<(), DataError> {
        let path = self.path;
        let i = self.anns.len();
        let (kind, box_rule) = match self.kind {
            Some(k) => k,
            None => {
                let box_rule = d.bbox.as_ref().is_some_and(|b| !b.is_empty());
                let kind = if d.keypoints.is_some() {
                    IouType::Keypoints
                } else if box_rule {
                    IouType::Bbox
                } else {
                    return Err(DataError::new(
                        path,
                        "result 0: ",
                        "bbox",
                        "results need `bbox` or `keypoints`",
                    ));
                };
                self.kind = Some((kind, box_rule));
                (kind, box_rule)
            }
        };
        let place = format!("result {i}: ");
        if self.gt.image_ids.binary_search(&d.image_id).is_err() {
            return Err(DataError::new(
                path,
                place,
                "image_id",
                format!("{} is not an image of the ground truth", d.image_id),
            ));
        }
        // pycocotools drops a result of a category the ground truth does not have without a
        // word; such a result is another data set's (or a mislabelled one), and is refused.
        if self.gt.category_ids.binary_search(&d.category_id).is_err() {
            return Err(DataError::new(
                path,
                place,
                "category_id",
                format!(
                    "{} is not a category of the ground truth ({}): are these results of \
                     another data set?",
                    d.category_id,
                    id_ranges(&self.gt.category_ids)
                ),
            ));
        }
        if !d.score.is_finite() {
            return Err(DataError::new(path, place, "score", "not a finite number"));
        }
        let keypoints = d.keypoints.unwrap_or_default();
        let (bbox, area) = if box_rule {
            let b = d.bbox.as_deref().ok_or_else(|| {
                DataError::new(path, place.clone(), "bbox", "missing (result 0 has one)")
            })?;
            let b = bbox4(path, &place, b)?;
            (b, b[2] * b[3])
        } else {
            if keypoints.is_empty() || !keypoints.len().is_multiple_of(3) {
                return Err(DataError::new(
                    path,
                    place,
                    "keypoints",
                    format!("length {} is not a positive multiple of 3", keypoints.len()),
                ));
            }
            if let Some(k) = keypoints.iter().position(|v| !v.is_finite()) {
                return Err(DataError::new(
                    path,
                    place,
                    "keypoints",
                    format!("value {k} is {}, not a finite number", keypoints[k]),
                ));
            }
            let xs = keypoints.iter().step_by(3);
            let ys = keypoints.iter().skip(1).step_by(3);
            let (x0, x1) = min_max(xs);
            let (y0, y1) = min_max(ys);
            ([x0, y0, x1 - x0, y1 - y0], (x1 - x0) * (y1 - y0))
        };
        let k = self.gt.num_keypoints();
        if kind == IouType::Keypoints && k > 0 && keypoints.len() != 3 * k {
            return Err(DataError::new(
                path,
                place,
                "keypoints",
                format!(
                    "has {} values; the ground truth has {k} keypoints ({} values)",
                    keypoints.len(),
                    3 * k
                ),
            ));
        }
        self.anns.push(Ann {
            id: i as u64 + 1,
            image_id: d.image_id,
            category_id: d.category_id,
            bbox,
            area,
            iscrowd: false,
            keypoints,
            num_keypoints: 0,
            score: d.score,
        });
        Ok(())
    }
}

/// Feeds a JSON list's entries to a [`ResultsBuilder`] as they are parsed.
struct EntryVisitor<'b, 'a> {
    builder: &'b mut ResultsBuilder<'a>,
}

impl<'de> serde::de::Visitor<'de> for EntryVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of results")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(d) = seq.next_element::<ResultEntry>()? {
            if let Err(e) = self.builder.push(d) {
                self.builder.error = Some(e);
                return Err(serde::de::Error::custom("invalid result"));
            }
        }
        Ok(())
    }
}

fn min_max<'a>(it: impl Iterator<Item = &'a f64>) -> (f64, f64) {
    it.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    })
}
