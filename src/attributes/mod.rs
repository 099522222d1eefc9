//! Attribute labels with "maybe" marks, and the weights of the loss that learns from them
//! (Zou et al., "Mask R-CNN with new key-point detection and attribute recognition", §III.B):
//! FashionAI writes one attribute task's label as a string with one letter per class, `y`
//! (the class), `n` (not it) or `m` (maybe it), e.g. `nnmynn`. The loss is a weighted
//! cross-entropy over the task's classes with weight β on every `m` class, `1 − t·β` on the
//! `y` class (`t` = the number of `m` letters of the row) and 0 on every `n` class; β = 0.1 in
//! the paper, β = 0 is plain cross-entropy on `y`.
//!
//! - this module: attribute tasks as data ([`AttributeTask`], the built-in sets
//!   [`builtin_tasks`]), label strings and the loss weights;
//! - [`crops`]: the Normal- and Neck-crops of a garment, from its landmarks;
//! - [`data`]: labelled garments from a COCO-style file (DeepFashion2's `scale`, `occlusion`,
//!   `zoom_in`, `viewpoint`, the synthetic set's tasks) or a FashionAI label file;
//! - [`net`]: the paper's recognition network (a ResNet trunk shared by the two crops, one
//!   softmax head per task);
//! - [`heads`]: the other way, attribute heads on the CenterNet detector read at each
//!   detection's centre;
//! - [`eval`]: per-task accuracy, FashionAI's average precision, top-k recall;
//! - [`apply`]: a trained model (either kind) applied to detections;
//! - [`train`]: training either kind with the "maybe" loss (feature `train`).

pub mod apply;
pub mod crops;
pub mod data;
pub mod eval;
pub mod heads;
pub mod net;
#[cfg(feature = "train")]
pub mod train;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Error, Result};

/// Which crop of a garment an attribute task reads (the paper's Fig. 3): the box of all its
/// landmarks, or the region around the neck for the upper-body design tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Crop {
    /// The smallest box holding the garment's landmarks ("Normal-crop").
    Normal,
    /// The region around the neck ("Neck-crop").
    Neck,
}

/// One attribute task: its name in the label files, its number of classes, its crop and
/// (optionally) its class names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeTask {
    /// The task's name in the label files (`collar_design_labels`).
    pub name: String,
    /// Classes, i.e. letters of each label string.
    pub classes: usize,
    /// The crop the task reads.
    pub crop: Crop,
    /// One name per class (empty: the classes are known by their index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
}

impl AttributeTask {
    /// A task with named classes.
    pub fn named(name: &str, crop: Crop, class_names: &[&str]) -> Self {
        AttributeTask {
            name: name.into(),
            classes: class_names.len(),
            crop,
            class_names: class_names.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// Class `k`'s name (its index when the task names none).
    pub fn class_name(&self, k: usize) -> String {
        self.class_names
            .get(k)
            .cloned()
            .unwrap_or_else(|| k.to_string())
    }
}

/// Refuses a task list a model cannot be built from: no tasks, two with one name, fewer than
/// two or more than 1000 classes, class names that do not match the count.
pub fn check_tasks(tasks: &[AttributeTask]) -> Result<()> {
    if tasks.is_empty() {
        return Err(Error::Invalid("the attribute task list is empty".into()));
    }
    for (i, t) in tasks.iter().enumerate() {
        if t.name.trim().is_empty() {
            return Err(Error::Invalid(format!("attribute task {i} has no name")));
        }
        if tasks[..i].iter().any(|u| u.name == t.name) {
            return Err(Error::Invalid(format!(
                "attribute task {:?} is listed twice",
                t.name
            )));
        }
        if !(2..=1000).contains(&t.classes) {
            return Err(Error::Invalid(format!(
                "attribute task {:?} has {} classes (2..=1000 allowed)",
                t.name, t.classes
            )));
        }
        if !t.class_names.is_empty() && t.class_names.len() != t.classes {
            return Err(Error::Invalid(format!(
                "attribute task {:?} names {} classes but has {}",
                t.name,
                t.class_names.len(),
                t.classes
            )));
        }
    }
    Ok(())
}

/// The names of the built-in task sets ([`builtin_tasks`]).
pub const BUILTIN_TASK_SETS: [&str; 3] = ["fashionai", "deepfashion2", "synthetic"];

/// A built-in task set by name: `fashionai` ([`fashionai_tasks`]), `deepfashion2`
/// ([`deepfashion2_tasks`]) or `synthetic` ([`synthetic_tasks`]).
pub fn builtin_tasks(name: &str) -> Option<Vec<AttributeTask>> {
    match name {
        "fashionai" => Some(fashionai_tasks()),
        "deepfashion2" => Some(deepfashion2_tasks()),
        "synthetic" => Some(synthetic_tasks()),
        _ => None,
    }
}

/// A task set named by `spec`: a built-in name, or a JSON file holding a list of tasks
/// (`[{"name": …, "classes": …, "crop": "normal"|"neck", "class_names": […]}]`), checked.
pub fn read_tasks(spec: &str) -> Result<Vec<AttributeTask>> {
    if let Some(t) = builtin_tasks(spec) {
        return Ok(t);
    }
    let path = Path::new(spec);
    if !path.is_file() {
        return Err(Error::Invalid(format!(
            "attribute tasks {spec:?}: neither a built-in set ({}) nor a file",
            BUILTIN_TASK_SETS.join(", ")
        )));
    }
    let tasks: Vec<AttributeTask> = crate::io::read_json(path, "attribute task list")?;
    check_tasks(&tasks).map_err(|e| Error::file(path, e.to_string()))?;
    Ok(tasks)
}

/// The per-garment attributes DeepFashion2's raw annotations carry (its README: `scale` 1
/// small, 2 modest, 3 large; `occlusion` 1 slight or none, 2 medium, 3 heavy; `zoom_in` 1 no,
/// 2 medium, 3 large; `viewpoint` 1 no wear, 2 frontal, 3 side or back), each read on the
/// Normal-crop. `style` is not among them: it numbers matching garments within one
/// user/shop pair, not a class shared across the data.
pub fn deepfashion2_tasks() -> Vec<AttributeTask> {
    vec![
        AttributeTask::named("scale", Crop::Normal, &["small", "modest", "large"]),
        AttributeTask::named("occlusion", Crop::Normal, &["slight", "medium", "heavy"]),
        AttributeTask::named("zoom_in", Crop::Normal, &["no", "medium", "large"]),
        AttributeTask::named(
            "viewpoint",
            Crop::Normal,
            &["no-wear", "frontal", "side-or-back"],
        ),
    ]
}

/// The synthetic set's two tasks, both visible in the garment's pixels (`data::synth`):
/// `pattern` (solid, narrow stripes, wide stripes; Normal-crop) and `colour` (the garment's
/// dominant channel: red, green, blue; Neck-crop). Labels near a class boundary are marked
/// "maybe" on the neighbouring class.
pub fn synthetic_tasks() -> Vec<AttributeTask> {
    vec![
        AttributeTask::named(
            "pattern",
            Crop::Normal,
            &["solid", "narrow-stripes", "wide-stripes"],
        ),
        AttributeTask::named("colour", Crop::Neck, &["red", "green", "blue"]),
    ]
}

/// DeepFashion2's 1-based attribute value as a label string of `classes` letters (`2` of 3 →
/// `nyn`); `None` for a value outside `1..=classes` (0: not annotated).
pub fn label_of_value(value: i64, classes: usize) -> Option<String> {
    let v = usize::try_from(value)
        .ok()
        .filter(|v| (1..=classes).contains(v))?;
    Some(
        (1..=classes)
            .map(|k| if k == v { 'y' } else { 'n' })
            .collect(),
    )
}

/// The label string of `marks` (`y`, `n`, `m`).
pub fn label_string(marks: &[Mark]) -> String {
    marks
        .iter()
        .map(|m| match m {
            Mark::Yes => 'y',
            Mark::No => 'n',
            Mark::Maybe => 'm',
        })
        .collect()
}

/// FashionAI's eight attribute tasks (FashionAI Global Challenge 2018, attribute recognition
/// data: four upper-body design tasks, read on the Neck-crop in the paper, and four length
/// tasks, read on the Normal-crop) with their class counts.
pub fn fashionai_tasks() -> Vec<AttributeTask> {
    [
        ("collar_design_labels", 5, Crop::Neck),
        ("neckline_design_labels", 10, Crop::Neck),
        ("neck_design_labels", 5, Crop::Neck),
        ("lapel_design_labels", 5, Crop::Neck),
        ("skirt_length_labels", 6, Crop::Normal),
        ("coat_length_labels", 8, Crop::Normal),
        ("pant_length_labels", 6, Crop::Normal),
        ("sleeve_length_labels", 9, Crop::Normal),
    ]
    .into_iter()
    .map(|(name, classes, crop)| AttributeTask {
        name: name.into(),
        classes,
        crop,
        class_names: Vec::new(),
    })
    .collect()
}

/// One row of an attribute label file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeLabel {
    /// The image, relative to the label file's folder.
    pub image: PathBuf,
    /// Index of the task in the task list the file was read with.
    pub task: usize,
    /// One mark per class of the task.
    pub marks: Vec<Mark>,
}

/// Reads a FashionAI attribute label file: one `image,task,label` row per line (the image
/// relative to the file's folder, e.g. `Images/collar_design_labels/0a1b.jpg`; blank lines
/// skipped). Every row is checked before anything is returned: the task must be one of
/// `tasks`, the label one `y`/`n`/`m` letter per class, and the image a relative path inside
/// the folder that exists there; errors name the file, line and field. (The rows are three
/// unquoted fields, so they are split here rather than with a CSV crate.)
pub fn read_fashionai_csv(path: &Path, tasks: &[AttributeTask]) -> Result<Vec<AttributeLabel>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let place = format!("line {}: ", i + 1);
        let err =
            |field: &str, message: String| DataError::new(path, place.clone(), field, message);
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [image, task, label] = fields[..] else {
            return Err(err(
                "-",
                format!(
                    "has {} comma-separated fields, expected 3 (image,task,label)",
                    fields.len()
                ),
            )
            .into());
        };
        if !crate::io::stays_inside(image) {
            return Err(err(
                "image",
                format!(
                    "{image:?} is not a relative path inside the label file's folder (absolute \
                     paths and `..` are refused)"
                ),
            )
            .into());
        }
        if !dir.join(image).is_file() {
            return Err(err(
                "image",
                format!("{image:?} does not exist in {}", dir.display()),
            )
            .into());
        }
        let Some(t) = tasks.iter().position(|t| t.name == task) else {
            let known: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
            return Err(err(
                "task",
                format!("unknown task {task:?}; known: {}", known.join(", ")),
            )
            .into());
        };
        let marks = marks_of(label, tasks[t].classes).map_err(|m| err("label", m))?;
        rows.push(AttributeLabel {
            image: PathBuf::from(image),
            task: t,
            marks,
        });
    }
    Ok(rows)
}

/// One class's mark in a label string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// `y`: the class.
    Yes,
    /// `n`: not the class.
    No,
    /// `m`: maybe the class.
    Maybe,
}

/// Parses a label string of `classes` letters (`y`, `n`, `m`, case-insensitive). The error
/// names the string and the offending letter or length; readers of label files add the file,
/// line and field.
pub fn parse_marks(label: &str, classes: usize) -> Result<Vec<Mark>> {
    marks_of(label, classes).map_err(Error::Invalid)
}

fn marks_of(label: &str, classes: usize) -> std::result::Result<Vec<Mark>, String> {
    let marks = label
        .chars()
        .enumerate()
        .map(|(i, ch)| match ch.to_ascii_lowercase() {
            'y' => Ok(Mark::Yes),
            'n' => Ok(Mark::No),
            'm' => Ok(Mark::Maybe),
            _ => Err(format!(
                "attribute label `{label}`: letter {} is `{ch}`, expected y, n or m",
                i + 1
            )),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if marks.len() != classes {
        return Err(format!(
            "attribute label `{label}` has {} letters, its task has {classes} classes",
            marks.len()
        ));
    }
    Ok(marks)
}

/// The loss weights of one row: β per `m`, `1 − t·β` per `y` (`t` = number of `m`), 0 per `n`.
/// An all-`n` row weighs nothing. β must lie in `[0, 1/t]` so that no weight is negative.
pub fn maybe_weights(marks: &[Mark], beta: f32) -> Result<Vec<f32>> {
    let t = marks.iter().filter(|&&m| m == Mark::Maybe).count();
    let yes = 1.0 - t as f32 * beta;
    if !(beta >= 0.0 && yes >= 0.0) {
        return Err(Error::Invalid(format!(
            "maybe-label weight β = {beta} must lie in [0, 1/{t}] for a label with {t} `m` letters"
        )));
    }
    Ok(marks
        .iter()
        .map(|m| match m {
            Mark::Yes => yes,
            Mark::No => 0.0,
            Mark::Maybe => beta,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fashionai_label_files_are_read_and_bad_rows_named() {
        let dir = std::env::temp_dir().join(format!("deepmark-attr-{}", std::process::id()));
        let images = dir.join("Images/collar_design_labels");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(images.join("a.jpg"), b"").unwrap();
        let csv = dir.join("labels.csv");
        let tasks = fashionai_tasks();
        let write = |text: &str| std::fs::write(&csv, text).unwrap();
        write("Images/collar_design_labels/a.jpg,collar_design_labels,nnmyn\n\n");
        let rows = read_fashionai_csv(&csv, &tasks).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(tasks[rows[0].task].name, "collar_design_labels");
        assert_eq!(rows[0].marks[2], Mark::Maybe);
        let bad = |text: &str| {
            write(text);
            read_fashionai_csv(&csv, &tasks).unwrap_err().to_string()
        };
        let ok = "Images/collar_design_labels/a.jpg,collar_design_labels,nnmyn\n";
        for (text, want) in [
            (
                "Images/collar_design_labels/a.jpg,hat_labels,nny",
                "line 2: field `task`: unknown task",
            ),
            (
                "Images/collar_design_labels/a.jpg,collar_design_labels,nny",
                "line 2: field `label`",
            ),
            (
                "Images/collar_design_labels/a.jpg,collar_design_labels,nnyxn",
                "letter 4 is `x`",
            ),
            (
                "Images/collar_design_labels/b.jpg,collar_design_labels,nnynn",
                "does not exist",
            ),
            (
                "../a.jpg,collar_design_labels,nnynn",
                "field `image`: \"../a.jpg\" is not a relative",
            ),
            (
                "Images/collar_design_labels/a.jpg,collar_design_labels",
                "expected 3",
            ),
        ] {
            let msg = bad(&format!("{ok}{text}\n"));
            assert!(
                msg.contains(want) && msg.contains("labels.csv"),
                "{want}: {msg}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn labels_parse_and_weigh_as_the_paper_says() {
        use Mark::{Maybe as M, No as N, Yes as Y};
        assert_eq!(parse_marks("nnMynn", 6).unwrap(), [N, N, M, Y, N, N]);
        // t = 2: 1 − 2·0.1 on y, 0.1 on each m.
        let w = maybe_weights(&parse_marks("mnym", 4).unwrap(), 0.1).unwrap();
        let want = [0.1, 0.0, 0.8, 0.1];
        assert!(
            w.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-7),
            "{w:?}"
        );
        assert_eq!(maybe_weights(&[N, N, N], 0.1).unwrap(), [0.0; 3]);
        assert_eq!(maybe_weights(&[Y, M], 0.0).unwrap(), [1.0, 0.0]);
        let bad = |label: &str, n: usize| parse_marks(label, n).unwrap_err().to_string();
        assert!(
            bad("nnxy", 4).contains("letter 3 is `x`"),
            "{}",
            bad("nnxy", 4)
        );
        assert!(bad("nny", 4).contains("has 3 letters, its task has 4"));
        assert!(maybe_weights(&[M, M, Y], 0.6).is_err());
        assert!(maybe_weights(&[Y], -0.1).is_err());
    }
}
