//! Labelled garments for attribute recognition: from a COCO-style file whose annotations carry
//! `attributes` (what `convert-dataset` keeps of DeepFashion2's raw annotations, and the
//! synthetic set's tasks), or from a FashionAI attribute label file (one garment per image,
//! without landmarks unless a detector supplies them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{AttributeLabel, AttributeTask, Mark, check_tasks, marks_of};
use crate::codec::decode::Detection;
use crate::data::deepfashion2::{check_file_name, item_from_annotation, read_coco_file};
use crate::error::{DataError, Error, Result};
use crate::garment::category;
use crate::io::Limits;

/// One garment with its attribute labels.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeSample {
    /// The image, relative to the image folder.
    pub image: PathBuf,
    /// The image's id (COCO files) or its 1-based row order (label files).
    pub image_id: u64,
    /// 1-based DeepFashion2 category id; 0 when unknown (a label file without a detector).
    pub category_id: usize,
    /// `[x, y, w, h]`; `None`: the whole image.
    pub bbox: Option<[f32; 4]>,
    /// The category's landmarks in local order, `[x, y, v]` (v > 0: labelled or predicted);
    /// empty when unknown.
    pub landmarks: Vec<[f32; 3]>,
    /// Per task of the task list: the label, or `None` where the garment has none.
    pub labels: Vec<Option<Vec<Mark>>>,
}

impl AttributeSample {
    /// Takes box, category and landmarks from a detection (a label file's garment located by
    /// the detector, as the paper's pipeline does).
    pub fn locate(&mut self, d: &Detection) {
        self.category_id = d.category_id;
        self.bbox = Some(d.bbox_xywh());
        self.landmarks = d.landmarks.iter().map(|p| [p[0], p[1], 1.0]).collect();
    }
}

/// Reads the labelled garments of a COCO-style file: its `attribute_tasks` and every
/// annotation with `attributes`. Each label must name one of the tasks and have one `y`/`n`/`m`
/// letter per class; errors name the file, the annotation and the field. Annotations without
/// attributes are left out.
pub fn load_coco_attributes(
    path: &Path,
    limits: &Limits,
) -> Result<(Vec<AttributeTask>, Vec<AttributeSample>)> {
    let file = read_coco_file(path, limits)?;
    if file.attribute_tasks.is_empty() {
        return Err(DataError::new(
            path,
            "",
            "attribute_tasks",
            "is missing: the file declares no attribute tasks (convert raw DeepFashion2 \
             annotations with `deepmark convert-dataset` to keep their attributes)",
        )
        .into());
    }
    let tasks = file.attribute_tasks.clone();
    check_tasks(&tasks).map_err(|e| DataError::new(path, "", "attribute_tasks", e.to_string()))?;
    let images: BTreeMap<u64, usize> = file
        .images
        .iter()
        .enumerate()
        .map(|(i, img)| (img.id, i))
        .collect();
    let mut out = Vec::new();
    for a in file.annotations.iter().filter(|a| !a.attributes.is_empty()) {
        let place = format!("annotation {} (image {}): ", a.id, a.image_id);
        let Some(&i) = images.get(&a.image_id) else {
            return Err(DataError::new(
                path,
                &place,
                "image_id",
                format!("no image has id {}", a.image_id),
            )
            .into());
        };
        let img = &file.images[i];
        check_file_name(path, img)?;
        let item = item_from_annotation(path, a, img)?;
        let cat = category(item.category_id).expect("validated");
        let mut labels = vec![None; tasks.len()];
        for (name, label) in &a.attributes {
            let field = format!("attributes.{name}");
            let Some(t) = tasks.iter().position(|t| &t.name == name) else {
                let known: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
                return Err(DataError::new(
                    path,
                    &place,
                    &field,
                    format!(
                        "unknown attribute task (the file's attribute_tasks: {})",
                        known.join(", ")
                    ),
                )
                .into());
            };
            labels[t] = Some(
                marks_of(label, tasks[t].classes)
                    .map_err(|m| DataError::new(path, &place, &field, m))?,
            );
        }
        out.push(AttributeSample {
            image: PathBuf::from(&img.file_name),
            image_id: img.id,
            category_id: item.category_id,
            bbox: Some(item.bbox),
            landmarks: item.keypoints[cat.range()].to_vec(),
            labels,
        });
    }
    Ok((tasks, out))
}

/// The garments of FashionAI label rows (`attributes::read_fashionai_csv`): one per image, in
/// the order images first appear, with every task the file labels for it. A second label of
/// one task for one image is an error naming the file and both rows' image.
pub fn from_fashionai(
    file: &Path,
    rows: &[AttributeLabel],
    tasks: &[AttributeTask],
) -> Result<Vec<AttributeSample>> {
    let mut index: BTreeMap<&Path, usize> = BTreeMap::new();
    let mut out: Vec<AttributeSample> = Vec::new();
    for r in rows {
        let i = *index.entry(r.image.as_path()).or_insert_with(|| {
            out.push(AttributeSample {
                image: r.image.clone(),
                image_id: out.len() as u64 + 1,
                category_id: 0,
                bbox: None,
                landmarks: Vec::new(),
                labels: vec![None; tasks.len()],
            });
            out.len() - 1
        });
        if out[i].labels[r.task].is_some() {
            return Err(Error::file(
                file,
                format!(
                    "{} is labelled twice for task {}",
                    r.image.display(),
                    tasks[r.task].name
                ),
            ));
        }
        out[i].labels[r.task] = Some(r.marks.clone());
    }
    Ok(out)
}

/// Per task, how many garments carry a label (and how many of those have a "maybe" letter).
pub fn label_counts(samples: &[AttributeSample], tasks: usize) -> Vec<(usize, usize)> {
    (0..tasks)
        .map(|t| {
            let labelled = samples.iter().filter_map(|s| s.labels[t].as_ref());
            labelled.fold((0, 0), |(n, m), l| {
                (n + 1, m + l.contains(&Mark::Maybe) as usize)
            })
        })
        .collect()
}
