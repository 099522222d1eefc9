//! Attribute labels with "maybe" marks, and the weights of the loss that learns from them
//! (Zou et al., "Mask R-CNN with new key-point detection and attribute recognition", §III.B):
//! FashionAI writes one attribute task's label as a string with one letter per class, `y`
//! (the class), `n` (not it) or `m` (maybe it), e.g. `nnmynn`. The loss is a weighted
//! cross-entropy over the task's classes with weight β on every `m` class, `1 − t·β` on the
//! `y` class (`t` = the number of `m` letters of the row) and 0 on every `n` class; β = 0.1 in
//! the paper, β = 0 is plain cross-entropy on `y`.

use crate::error::{Error, Result};

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
    let marks = label
        .chars()
        .enumerate()
        .map(|(i, ch)| match ch.to_ascii_lowercase() {
            'y' => Ok(Mark::Yes),
            'n' => Ok(Mark::No),
            'm' => Ok(Mark::Maybe),
            _ => Err(Error::Invalid(format!(
                "attribute label `{label}`: letter {} is `{ch}`, expected y, n or m",
                i + 1
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    if marks.len() != classes {
        return Err(Error::Invalid(format!(
            "attribute label `{label}` has {} letters, its task has {classes} classes",
            marks.len()
        )));
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
