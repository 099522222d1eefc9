//! `summarize`: pycocotools' printed summary (`stats`) and AP per category.

use super::files::IouType;
use super::matching::Evaluation;
use crate::garment::taxonomy;

/// One line of pycocotools' summary.
#[derive(Debug, Clone)]
pub struct SummaryLine {
    /// Average precision (`true`) or average recall.
    pub ap: bool,
    /// The IoU/OKS threshold, or `None` for the mean over 0.50:0.95.
    pub iou: Option<f64>,
    /// Area range: `all`, `small`, `medium` or `large`.
    pub area: &'static str,
    /// Detections per image.
    pub max_dets: usize,
    /// The value, −1 where no ground truth qualifies (as pycocotools).
    pub value: f64,
}

impl std::fmt::Display for SummaryLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (title, kind) = if self.ap {
            ("Average Precision", "(AP)")
        } else {
            ("Average Recall", "(AR)")
        };
        let iou = match self.iou {
            Some(t) => format!("{t:0.2}"),
            None => "0.50:0.95".to_string(),
        };
        write!(
            f,
            " {title:<18} {kind} @[ IoU={iou:<9} | area={:>6} | maxDets={:>3} ] = {:0.3}",
            self.area, self.max_dets, self.value
        )
    }
}

impl Evaluation {
    /// `(T, R, K, A, M)`: IoU thresholds, recall points, categories, area ranges, maxDets.
    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        let p = &self.params;
        (
            p.iou_thrs.len(),
            p.rec_thrs.len(),
            self.category_ids.len(),
            p.area_rngs.len(),
            p.max_dets.len(),
        )
    }

    fn summarize(&self, ap: bool, iou: Option<f64>, area: &'static str, max_dets: usize) -> f64 {
        let p = &self.params;
        let (t_n, r_n, k_n, a_n, m_n) = self.dims();
        let a_sel: Vec<usize> = (0..a_n).filter(|&a| p.area_rngs[a].0 == area).collect();
        let m_sel: Vec<usize> = (0..m_n).filter(|&m| p.max_dets[m] == max_dets).collect();
        let t_sel: Vec<usize> = (0..t_n)
            .filter(|&t| iou.is_none_or(|v| p.iou_thrs[t] == v))
            .collect();
        let mut sum = 0.0;
        let mut n = 0usize;
        for &t in &t_sel {
            for k in 0..k_n {
                for &a in &a_sel {
                    for &m in &m_sel {
                        let vals: Vec<f64> = if ap {
                            (0..r_n)
                                .map(|r| {
                                    self.precision[(((t * r_n + r) * k_n + k) * a_n + a) * m_n + m]
                                })
                                .collect()
                        } else {
                            vec![self.recall[((t * k_n + k) * a_n + a) * m_n + m]]
                        };
                        for v in vals.into_iter().filter(|&v| v > -1.0) {
                            sum += v;
                            n += 1;
                        }
                    }
                }
            }
        }
        if n == 0 { -1.0 } else { sum / n as f64 }
    }

    /// The summary in pycocotools' order (`stats`).
    pub fn summary_lines(&self) -> Vec<SummaryLine> {
        let line = |ap, iou, area, max_dets| SummaryLine {
            ap,
            iou,
            area,
            max_dets,
            value: self.summarize(ap, iou, area, max_dets),
        };
        match self.params.iou_type {
            IouType::Bbox => {
                let md = &self.params.max_dets;
                let last = *md.last().unwrap_or(&100);
                let mut v = vec![
                    line(true, None, "all", last),
                    line(true, Some(0.5), "all", last),
                    line(true, Some(0.75), "all", last),
                    line(true, None, "small", last),
                    line(true, None, "medium", last),
                    line(true, None, "large", last),
                ];
                for &m in md.iter().take(3) {
                    v.push(line(false, None, "all", m));
                }
                v.push(line(false, None, "small", last));
                v.push(line(false, None, "medium", last));
                v.push(line(false, None, "large", last));
                v
            }
            IouType::Keypoints => {
                let m = *self.params.max_dets.last().unwrap_or(&20);
                vec![
                    line(true, None, "all", m),
                    line(true, Some(0.5), "all", m),
                    line(true, Some(0.75), "all", m),
                    line(true, None, "medium", m),
                    line(true, None, "large", m),
                    line(false, None, "all", m),
                    line(false, Some(0.5), "all", m),
                    line(false, Some(0.75), "all", m),
                    line(false, None, "medium", m),
                    line(false, None, "large", m),
                ]
            }
        }
    }

    /// Average precision over IoU thresholds per category (`all` area, largest maxDets);
    /// −1 where a category has no ground truth.
    pub fn per_category_ap(&self) -> Vec<(i64, f64)> {
        let (t_n, r_n, k_n, a_n, m_n) = self.dims();
        let m = m_n - 1;
        self.category_ids
            .iter()
            .enumerate()
            .map(|(k, &c)| {
                let vals: Vec<f64> = (0..t_n)
                    .flat_map(|t| (0..r_n).map(move |r| (t, r)))
                    .map(|(t, r)| self.precision[(((t * r_n + r) * k_n + k) * a_n) * m_n + m])
                    .filter(|&v| v > -1.0)
                    .collect();
                let ap = if vals.is_empty() {
                    -1.0
                } else {
                    vals.iter().sum::<f64>() / vals.len() as f64
                };
                (c, ap)
            })
            .collect()
    }
}

impl std::fmt::Display for Evaluation {
    /// pycocotools' printed summary, then (with several categories) AP per category.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "Evaluate annotation type *{}*",
            self.params.iou_type.name()
        )?;
        for line in self.summary_lines() {
            writeln!(f, "{line}")?;
        }
        let per_cat = self.per_category_ap();
        if per_cat.len() > 1 {
            writeln!(f, "per-category AP (IoU/OKS 0.50:0.95):")?;
            for (cat, ap) in per_cat {
                let name = taxonomy::category(cat as usize)
                    .map_or_else(|| format!("category {cat}"), |c| c.name.to_string());
                if ap < 0.0 {
                    writeln!(f, "  {name:<24} (no ground truth)")?;
                } else {
                    writeln!(f, "  {name:<24} {ap:.3}")?;
                }
            }
        }
        Ok(())
    }
}
