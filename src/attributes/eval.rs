//! Attribute evaluation per task, over the garments whose label has a `y` class (rows with none
//! carry no answer and are left out):
//! - accuracy: the most probable class is a `y` class (the paper's Table 2);
//! - FashionAI's average precision: the rows ranked by the probability of their most probable
//!   class (FashionAI Global Challenge 2018's `ProbThreshold` swept from high to low); a row is a
//!   hit when that class is a `y` class; AP is the mean over hits of the precision at the hit's
//!   rank (1 when every miss ranks below every hit, whatever the accuracy);
//! - top-3 and top-5 recall: a `y` class is among the 3 (5) most probable (DeepFashion's
//!   attribute metric, per task here; a task with at most k classes scores 1).

use serde::Serialize;

use super::apply::probabilities_of;
use super::data::AttributeSample;
use super::{AttributeTask, Mark};
use crate::infer::output::BboxResult;

/// One task's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskScores {
    /// The task's name.
    pub task: String,
    /// Rows scored (labelled with a `y` class).
    pub rows: usize,
    /// Of those, with a "maybe" letter.
    pub maybe_rows: usize,
    /// Share of rows whose most probable class is a `y` class.
    pub accuracy: f64,
    /// FashionAI's average precision.
    pub ap: f64,
    /// Share of rows with a `y` class among the 3 most probable.
    pub top3: f64,
    /// … among the 5 most probable.
    pub top5: f64,
    /// The accuracy of always answering the most frequent `y` class of these rows.
    pub majority: f64,
}

/// Scores of every task and their means.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeScores {
    /// Per task, in the task list's order (tasks without scored rows are left out).
    pub tasks: Vec<TaskScores>,
    /// Mean accuracy over the tasks listed.
    pub mean_accuracy: f64,
    /// Mean AP over the tasks listed (FashionAI's mAP).
    pub map: f64,
}

/// Classes by descending probability (ties: lower index first).
fn ranked(p: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    order
}

/// FashionAI's average precision of `(confidence, hit)` rows.
pub fn fashionai_ap(rows: &[(f32, bool)]) -> f64 {
    let mut r = rows.to_vec();
    r.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut hits, mut sum) = (0usize, 0.0);
    for (i, (_, hit)) in r.iter().enumerate() {
        if *hit {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
    }
    if hits == 0 { 0.0 } else { sum / hits as f64 }
}

/// Scores of `tasks` from `(probabilities per task, labels per task)` per garment; `None`
/// entries (no prediction or no label) are skipped.
pub fn score(tasks: &[AttributeTask], rows: &[ScoredRow]) -> AttributeScores {
    let mut out = Vec::new();
    for (t, task) in tasks.iter().enumerate() {
        let mut n = 0usize;
        let (mut maybe, mut correct, mut top3, mut top5) = (0, 0, 0, 0);
        let mut ap_rows = Vec::new();
        let mut freq = vec![0usize; task.classes];
        for (probs, labels) in rows {
            let (Some(Some(p)), Some(Some(l))) = (probs.get(t), labels.get(t)) else {
                continue;
            };
            if !l.contains(&Mark::Yes) || p.len() != l.len() {
                continue;
            }
            n += 1;
            maybe += l.contains(&Mark::Maybe) as usize;
            let order = ranked(p);
            let yes = |k: usize| l[k] == Mark::Yes;
            let hit = yes(order[0]);
            correct += hit as usize;
            top3 += order.iter().take(3).any(|&k| yes(k)) as usize;
            top5 += order.iter().take(5).any(|&k| yes(k)) as usize;
            ap_rows.push((p[order[0]], hit));
            if let Some(k) = l.iter().position(|m| *m == Mark::Yes) {
                freq[k] += 1;
            }
        }
        if n == 0 {
            continue;
        }
        let share = |k: usize| k as f64 / n as f64;
        out.push(TaskScores {
            task: task.name.clone(),
            rows: n,
            maybe_rows: maybe,
            accuracy: share(correct),
            ap: fashionai_ap(&ap_rows),
            top3: share(top3),
            top5: share(top5),
            majority: share(freq.iter().copied().max().unwrap_or(0)),
        });
    }
    let mean = |f: &dyn Fn(&TaskScores) -> f64| {
        if out.is_empty() {
            0.0
        } else {
            out.iter().map(f).sum::<f64>() / out.len() as f64
        }
    };
    AttributeScores {
        mean_accuracy: mean(&|s| s.accuracy),
        map: mean(&|s| s.ap),
        tasks: out,
    }
}

/// `(probabilities per task, labels per task)` of one garment: what [`score`] reads.
pub type ScoredRow = (Vec<Option<Vec<f32>>>, Vec<Option<Vec<Mark>>>);

/// IoU of two `[x, y, w, h]` boxes.
fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    let inter = ix.max(0.0) * iy.max(0.0);
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Pairs labelled ground-truth garments with detections carrying attributes: detections by
/// descending score each take the unpaired garment of their image and category with the
/// highest box IoU, if at least 0.5 (COCO's matching at IoU 0.5). Returns the rows of the
/// paired garments and how many labelled garments found no detection (their attributes are
/// not scored: the detector missed them).
pub fn match_detections(
    tasks: &[AttributeTask],
    gt: &[AttributeSample],
    dets: &[BboxResult],
) -> (Vec<ScoredRow>, usize) {
    let labelled: Vec<&AttributeSample> = gt
        .iter()
        .filter(|s| s.labels.iter().any(Option::is_some) && s.bbox.is_some())
        .collect();
    let mut order: Vec<&BboxResult> = dets.iter().filter(|d| !d.attributes.is_empty()).collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut taken = vec![false; labelled.len()];
    let mut rows = Vec::new();
    for d in order {
        let best = labelled
            .iter()
            .enumerate()
            .filter(|(i, g)| {
                !taken[*i] && g.image_id == d.image_id && g.category_id == d.category_id
            })
            .map(|(i, g)| (i, iou(g.bbox.expect("filtered"), d.bbox)))
            .filter(|(_, o)| *o >= 0.5)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, _)) = best {
            taken[i] = true;
            rows.push((
                probabilities_of(tasks, &d.attributes),
                labelled[i].labels.clone(),
            ));
        }
    }
    let missed = taken.iter().filter(|t| !**t).count();
    (rows, missed)
}

impl std::fmt::Display for AttributeScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<24} {:>6} {:>6} {:>9} {:>7} {:>7} {:>7} {:>9}",
            "task", "rows", "maybe", "accuracy", "AP", "top-3", "top-5", "majority"
        )?;
        for t in &self.tasks {
            writeln!(
                f,
                "{:<24} {:>6} {:>6} {:>9.4} {:>7.4} {:>7.4} {:>7.4} {:>9.4}",
                t.task, t.rows, t.maybe_rows, t.accuracy, t.ap, t.top3, t.top5, t.majority
            )?;
        }
        write!(
            f,
            "mean accuracy {:.4}, mAP {:.4} over {} task(s)",
            self.mean_accuracy,
            self.map,
            self.tasks.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{Crop, parse_marks};

    #[test]
    fn scores_are_computed_as_defined() {
        // Hits at ranks 1 and 3 of 3: AP = (1/1 + 2/3) / 2.
        let ap = fashionai_ap(&[(0.9, true), (0.5, true), (0.7, false)]);
        assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12, "{ap}");
        assert_eq!(fashionai_ap(&[(0.9, false)]), 0.0);
        let task = AttributeTask {
            name: "t".into(),
            classes: 6,
            crop: Crop::Normal,
            class_names: Vec::new(),
        };
        let p = |v: [f32; 6]| vec![Some(v.to_vec())];
        let l = |s: &str| vec![Some(parse_marks(s, 6).unwrap())];
        let rows = vec![
            // Right: class 0 is y.
            (p([0.5, 0.2, 0.1, 0.1, 0.05, 0.05]), l("ynnnnn")),
            // Wrong at top 1 (class 1 is m); the y class ranks fifth: in the top 5 only.
            (p([0.1, 0.4, 0.2, 0.15, 0.1, 0.05]), l("nmnnyn")),
            // No y: not scored.
            (p([0.5, 0.2, 0.1, 0.1, 0.05, 0.05]), l("nnnnnn")),
            // No prediction: not scored.
            (vec![None], l("ynnnnn")),
        ];
        let s = score(&[task], &rows);
        let t = &s.tasks[0];
        assert_eq!((t.rows, t.maybe_rows), (2, 1));
        assert_eq!((t.accuracy, t.top3, t.top5), (0.5, 0.5, 1.0));
        assert_eq!(t.ap, 1.0, "the hit ranks first (0.5 > 0.4)");
        assert_eq!(t.majority, 0.5);
        assert_eq!((s.mean_accuracy, s.map), (0.5, 1.0));
    }
}
