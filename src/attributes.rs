//! Attribute labels with "maybe" marks, and the weights of the loss that learns from them
//! (Zou et al., "Mask R-CNN with new key-point detection and attribute recognition", §III.B):
//! FashionAI writes one attribute task's label as a string with one letter per class, `y`
//! (the class), `n` (not it) or `m` (maybe it), e.g. `nnmynn`. The loss is a weighted
//! cross-entropy over the task's classes with weight β on every `m` class, `1 − t·β` on the
//! `y` class (`t` = the number of `m` letters of the row) and 0 on every `n` class; β = 0.1 in
//! the paper, β = 0 is plain cross-entropy on `y`.

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

/// One attribute task: its name in the label files, its number of classes and its crop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeTask {
    /// The task's name in the label files (`collar_design_labels`).
    pub name: String,
    /// Classes, i.e. letters of each label string.
    pub classes: usize,
    /// The crop the task reads.
    pub crop: Crop,
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
