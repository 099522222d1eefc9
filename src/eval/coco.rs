//! COCO-style evaluation of boxes and keypoints, reproducing pycocotools' `COCOeval`
//! (`evaluate`, `accumulate`, `summarize`) and `COCO.loadRes` number for number, with the
//! DeepFashion2 evaluator's only change (a 294-entry OKS sigma vector) as a parameter.
//!
//! The rules reproduced (facts from pycocotools 2.0 `cocoeval.py`/`coco.py` and FACTS §2.4):
//! - `loadRes`: results get ids `1..=N` in file order. If the *first* result has a non-empty
//!   `bbox`, every result's `area` is `w·h`; otherwise (keypoints) the box and area come from the
//!   min/max of all predicted x and y, zeros included.
//! - GT `ignore` = `iscrowd`; for keypoints also when `num_keypoints == 0`.
//! - Detections per (image, category) are sorted by score (stable) and cut at the largest
//!   `maxDets`; matching is greedy per IoU threshold, preferring non-ignored GT, crowd GT can
//!   match several detections, and IoU against crowd uses the detection's area as union.
//! - OKS: `e = d²/(2σ)²/(area+eps)/2` over labelled GT keypoints; GT without labelled keypoints
//!   use the distance to a box twice the GT box.
//! - Precision is made monotone, sampled at 101 recall points with `searchsorted(side='left')`;
//!   `stats` average the entries that are not −1.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::data::deepfashion2::DataError;
use crate::data::taxonomy;

/// What is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IouType {
    Bbox,
    Keypoints,
}

impl IouType {
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
    pub id: u64,
    pub image_id: u64,
    pub category_id: i64,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
    pub area: f64,
    pub iscrowd: bool,
    /// Flattened `x, y, v` triplets (may be empty for box-only data).
    pub keypoints: Vec<f64>,
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
    pub anns: Vec<Ann>,
    /// Keypoints declared per category (`categories[].keypoints`), the largest count.
    pub declared_keypoints: usize,
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
    pub image_id: u64,
    pub category_id: i64,
    #[serde(default)]
    pub bbox: Option<Vec<f64>>,
    #[serde(default)]
    pub keypoints: Option<Vec<f64>>,
    pub score: f64,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DataError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DataError::new(path, "", "(file)", format!("cannot read: {e}")))?;
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
    bbox.try_into().map_err(|_| {
        DataError::new(
            path,
            place,
            "bbox",
            format!("expected [x, y, w, h], got {} numbers", bbox.len()),
        )
    })
}

impl GroundTruth {
    /// Reads a COCO-style GT file (COCO person keypoints, DeepFashion2's COCO form, …).
    /// Keys the evaluator does not use are ignored.
    pub fn load(path: &Path) -> Result<GroundTruth, DataError> {
        let file: GtFile = read_json(path)?;
        let mut image_ids: Vec<u64> = file.images.iter().map(|i| i.id).collect();
        image_ids.sort_unstable();
        image_ids.dedup();
        let mut category_ids: Vec<i64> = file.categories.iter().map(|c| c.id).collect();
        category_ids.sort_unstable();
        category_ids.dedup();
        let declared_keypoints = file
            .categories
            .iter()
            .map(|c| c.keypoints.len())
            .max()
            .unwrap_or(0);
        let mut anns = Vec::with_capacity(file.annotations.len());
        for (i, a) in file.annotations.into_iter().enumerate() {
            let place = format!("annotation {i} (id {}): ", a.id);
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
            image_ids,
            category_ids,
            anns,
            declared_keypoints,
        })
    }

    /// Number of keypoints per annotation: from the categories, else from the annotations.
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
    pub anns: Vec<Ann>,
}

impl Results {
    /// Reads a results file (a JSON list) and applies `loadRes`' rules.
    pub fn load(path: &Path, gt: &GroundTruth) -> Result<Results, DataError> {
        let list: Vec<ResultEntry> = read_json(path)?;
        Self::from_entries(path, list, gt)
    }

    /// Results from entries in memory (`path` only labels errors).
    pub fn from_entries(
        path: &Path,
        list: Vec<ResultEntry>,
        gt: &GroundTruth,
    ) -> Result<Results, DataError> {
        let Some(first) = list.first() else {
            return Err(DataError::new(path, "", "(list)", "no results"));
        };
        let box_rule = first.bbox.as_ref().is_some_and(|b| !b.is_empty());
        let kind = if first.keypoints.is_some() {
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
        let mut anns = Vec::with_capacity(list.len());
        for (i, d) in list.into_iter().enumerate() {
            let place = format!("result {i}: ");
            if gt.image_ids.binary_search(&d.image_id).is_err() {
                return Err(DataError::new(
                    path,
                    place,
                    "image_id",
                    format!("{} is not an image of the ground truth", d.image_id),
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
                if keypoints.is_empty() || keypoints.len() % 3 != 0 {
                    return Err(DataError::new(
                        path,
                        place,
                        "keypoints",
                        format!("length {} is not a positive multiple of 3", keypoints.len()),
                    ));
                }
                let xs = keypoints.iter().step_by(3);
                let ys = keypoints.iter().skip(1).step_by(3);
                let (x0, x1) = min_max(xs);
                let (y0, y1) = min_max(ys);
                ([x0, y0, x1 - x0, y1 - y0], (x1 - x0) * (y1 - y0))
            };
            anns.push(Ann {
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
        }
        Ok(Results { kind, anns })
    }
}

fn min_max<'a>(it: impl Iterator<Item = &'a f64>) -> (f64, f64) {
    it.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    })
}

/// Evaluation parameters (pycocotools `Params`).
#[derive(Debug, Clone)]
pub struct Params {
    pub iou_type: IouType,
    pub iou_thrs: Vec<f64>,
    pub rec_thrs: Vec<f64>,
    pub max_dets: Vec<usize>,
    /// Label and `[min, max]` area.
    pub area_rngs: Vec<(&'static str, [f64; 2])>,
    /// OKS sigmas (keypoints only).
    pub sigmas: Vec<f64>,
}

/// `np.linspace(start, stop, num)` as numpy computes it (`i·step + start`, last = stop).
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

impl Params {
    /// pycocotools' defaults for `iou_type`; `sigmas` are used for keypoints.
    pub fn new(iou_type: IouType, sigmas: Vec<f64>) -> Params {
        let big = 1e5f64 * 1e5;
        let (max_dets, area_rngs) = match iou_type {
            IouType::Bbox => (
                vec![1, 10, 100],
                vec![
                    ("all", [0.0, big]),
                    ("small", [0.0, 32.0 * 32.0]),
                    ("medium", [32.0 * 32.0, 96.0 * 96.0]),
                    ("large", [96.0 * 96.0, big]),
                ],
            ),
            IouType::Keypoints => (
                vec![20],
                vec![
                    ("all", [0.0, big]),
                    ("medium", [32.0 * 32.0, 96.0 * 96.0]),
                    ("large", [96.0 * 96.0, big]),
                ],
            ),
        };
        Params {
            iou_type,
            iou_thrs: linspace(0.5, 0.95, 10),
            rec_thrs: linspace(0.0, 1.0, 101),
            max_dets,
            area_rngs,
            sigmas,
        }
    }
}

/// Per (image, category, area range) matching result (`evaluateImg`).
struct ImgEval {
    dt_scores: Vec<f64>,
    /// `[t][d]`: matched GT id (0 = unmatched, as pycocotools).
    dt_matches: Vec<Vec<u64>>,
    dt_ignore: Vec<Vec<bool>>,
    gt_ignore: Vec<bool>,
}

/// The accumulated result.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub params: Params,
    pub category_ids: Vec<i64>,
    /// `[t][r][k][a][m]`, −1 where undefined.
    pub precision: Vec<f64>,
    /// `[t][k][a][m]`, −1 where undefined.
    pub recall: Vec<f64>,
    /// pycocotools' `stats` (12 for bbox, 10 for keypoints).
    pub stats: Vec<f64>,
}

/// IoU of two `[x, y, w, h]` boxes as pycocotools' `maskUtils.iou` computes it (with `crowd`,
/// the union is the first box's area).
pub fn bbox_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let u = if crowd {
        d[2] * d[3]
    } else {
        d[2] * d[3] + g[2] * g[3] - i
    };
    i / u
}

/// Object keypoint similarity of a detection to one GT (pycocotools `computeOks`).
pub fn oks(dt: &[f64], gt: &Ann, sigmas: &[f64]) -> f64 {
    let k = sigmas.len();
    let labelled = (0..k).filter(|&j| gt.keypoints[3 * j + 2] > 0.0).count();
    let b = gt.bbox;
    let (x0, x1) = (b[0] - b[2], b[0] + b[2] * 2.0);
    let (y0, y1) = (b[1] - b[3], b[1] + b[3] * 2.0);
    let mut sum = 0.0;
    let mut n = 0usize;
    for j in 0..k {
        let (xd, yd) = (dt[3 * j], dt[3 * j + 1]);
        let (xg, yg, vg) = (
            gt.keypoints[3 * j],
            gt.keypoints[3 * j + 1],
            gt.keypoints[3 * j + 2],
        );
        let (dx, dy) = if labelled > 0 {
            if vg <= 0.0 {
                continue;
            }
            (xd - xg, yd - yg)
        } else {
            (
                0f64.max(x0 - xd) + 0f64.max(xd - x1),
                0f64.max(y0 - yd) + 0f64.max(yd - y1),
            )
        };
        let var = (sigmas[j] * 2.0) * (sigmas[j] * 2.0);
        let e = (dx * dx + dy * dy) / var / (gt.area + f64::EPSILON) / 2.0;
        sum += (-e).exp();
        n += 1;
    }
    sum / n as f64
}

/// Detections of one (image, category) sorted by score and cut at maxDets, with their
/// IoU/OKS against each GT (`[d][g]`).
type ScoredIous<'a> = (Vec<&'a Ann>, Vec<Vec<f64>>);

/// Stable sort of indices by descending score (numpy `argsort(-s, kind='mergesort')`).
fn by_score(anns: &[&Ann]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..anns.len()).collect();
    idx.sort_by(|&a, &b| (-anns[a].score).total_cmp(&-anns[b].score));
    idx
}

/// Runs `evaluate` + `accumulate` + `summarize`.
pub fn evaluate(gt: &GroundTruth, dt: &Results, params: Params) -> Result<Evaluation, String> {
    let p = &params;
    if p.iou_type == IouType::Keypoints {
        let k = p.sigmas.len();
        if let Some(a) = gt.anns.iter().find(|a| a.keypoints.len() != 3 * k) {
            return Err(format!(
                "ground-truth annotation {} has {} keypoint values, expected {} ({} sigmas)",
                a.id,
                a.keypoints.len(),
                3 * k,
                k
            ));
        }
        if let Some(d) = dt.anns.iter().find(|d| d.keypoints.len() != 3 * k) {
            return Err(format!(
                "result {} has {} keypoint values, expected {} ({} sigmas)",
                d.id - 1,
                d.keypoints.len(),
                3 * k,
                k
            ));
        }
    }
    let cats = &gt.category_ids;
    let imgs = &gt.image_ids;
    let cat_set: HashMap<i64, usize> = cats.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    let img_set: HashMap<u64, usize> = imgs.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    // _prepare: group by (image, category), in file order.
    let mut gts: HashMap<(usize, usize), Vec<&Ann>> = HashMap::new();
    let mut gt_ignore_flag: HashMap<u64, bool> = HashMap::new();
    for a in &gt.anns {
        if let (Some(&i), Some(&c)) = (img_set.get(&a.image_id), cat_set.get(&a.category_id)) {
            gts.entry((i, c)).or_default().push(a);
            let mut ignore = a.iscrowd;
            if p.iou_type == IouType::Keypoints {
                ignore = ignore || a.num_keypoints == 0;
            }
            gt_ignore_flag.insert(a.id, ignore);
        }
    }
    let mut dts: HashMap<(usize, usize), Vec<&Ann>> = HashMap::new();
    for a in &dt.anns {
        if let (Some(&i), Some(&c)) = (img_set.get(&a.image_id), cat_set.get(&a.category_id)) {
            dts.entry((i, c)).or_default().push(a);
        }
    }
    let max_det = *p.max_dets.iter().max().unwrap_or(&100);
    let (t_n, r_n, k_n, a_n, m_n) = (
        p.iou_thrs.len(),
        p.rec_thrs.len(),
        cats.len(),
        p.area_rngs.len(),
        p.max_dets.len(),
    );
    // evaluateImg for every (category, area, image); None where both sides are empty.
    let mut evals: Vec<Option<ImgEval>> = Vec::with_capacity(k_n * a_n * imgs.len());
    let empty: Vec<&Ann> = Vec::new();
    for k in 0..k_n {
        // IoU matrices per image, computed once for all area ranges (self.ious).
        let mut ious: Vec<Option<ScoredIous>> = Vec::with_capacity(imgs.len());
        for i in 0..imgs.len() {
            let g = gts.get(&(i, k)).unwrap_or(&empty);
            let d = dts.get(&(i, k)).unwrap_or(&empty);
            if g.is_empty() && d.is_empty() {
                ious.push(None);
                continue;
            }
            let mut ds: Vec<&Ann> = by_score(d).into_iter().map(|j| d[j]).collect();
            ds.truncate(max_det);
            let m: Vec<Vec<f64>> = ds
                .iter()
                .map(|da| {
                    g.iter()
                        .map(|ga| match p.iou_type {
                            IouType::Bbox => bbox_iou(&da.bbox, &ga.bbox, ga.iscrowd),
                            IouType::Keypoints => oks(&da.keypoints, ga, &p.sigmas),
                        })
                        .collect()
                })
                .collect();
            ious.push(Some((ds, m)));
        }
        for (_, rng) in &p.area_rngs {
            for (i, entry) in ious.iter().enumerate() {
                let Some((ds, m)) = entry else {
                    evals.push(None);
                    continue;
                };
                let g = gts.get(&(i, k)).unwrap_or(&empty);
                evals.push(Some(evaluate_img(p, g, ds, m, *rng, &gt_ignore_flag)));
            }
        }
    }
    // accumulate
    let mut precision = vec![-1.0; t_n * r_n * k_n * a_n * m_n];
    let mut recall = vec![-1.0; t_n * k_n * a_n * m_n];
    let n_img = imgs.len();
    for k in 0..k_n {
        for a in 0..a_n {
            for (m, &md) in p.max_dets.iter().enumerate() {
                let es: Vec<&ImgEval> = (0..n_img)
                    .filter_map(|i| evals[(k * a_n + a) * n_img + i].as_ref())
                    .collect();
                if es.is_empty() {
                    continue;
                }
                let mut scores = Vec::new();
                let mut src = Vec::new(); // (eval, detection index)
                for (e_i, e) in es.iter().enumerate() {
                    for (d, &s) in e.dt_scores.iter().take(md).enumerate() {
                        scores.push(s);
                        src.push((e_i, d));
                    }
                }
                let mut order: Vec<usize> = (0..scores.len()).collect();
                order.sort_by(|&x, &y| (-scores[x]).total_cmp(&-scores[y]));
                let npig = es
                    .iter()
                    .flat_map(|e| e.gt_ignore.iter())
                    .filter(|&&ig| !ig)
                    .count();
                if npig == 0 {
                    continue;
                }
                for t in 0..t_n {
                    let mut tp_sum = 0.0f64;
                    let mut fp_sum = 0.0f64;
                    let mut rc = Vec::with_capacity(order.len());
                    let mut pr = Vec::with_capacity(order.len());
                    for &o in &order {
                        let (e_i, d) = src[o];
                        let matched = es[e_i].dt_matches[t][d] != 0;
                        let ignored = es[e_i].dt_ignore[t][d];
                        if matched && !ignored {
                            tp_sum += 1.0;
                        }
                        if !matched && !ignored {
                            fp_sum += 1.0;
                        }
                        rc.push(tp_sum / npig as f64);
                        pr.push(tp_sum / (fp_sum + tp_sum + f64::EPSILON));
                    }
                    let nd = rc.len();
                    recall[((t * k_n + k) * a_n + a) * m_n + m] =
                        if nd > 0 { rc[nd - 1] } else { 0.0 };
                    for i in (1..nd).rev() {
                        if pr[i] > pr[i - 1] {
                            pr[i - 1] = pr[i];
                        }
                    }
                    // Recall points past the last detection stay 0 (pycocotools' try/except).
                    let mut q = vec![0.0; r_n];
                    for (r, &thr) in p.rec_thrs.iter().enumerate() {
                        let pi = rc.partition_point(|&v| v < thr);
                        if pi >= nd {
                            break;
                        }
                        q[r] = pr[pi];
                    }
                    for (r, v) in q.into_iter().enumerate() {
                        precision[(((t * r_n + r) * k_n + k) * a_n + a) * m_n + m] = v;
                    }
                }
            }
        }
    }
    let mut ev = Evaluation {
        params,
        category_ids: cats.clone(),
        precision,
        recall,
        stats: Vec::new(),
    };
    ev.stats = ev.summary_lines().into_iter().map(|l| l.value).collect();
    Ok(ev)
}

fn evaluate_img(
    p: &Params,
    g: &[&Ann],
    ds: &[&Ann],
    ious: &[Vec<f64>],
    rng: [f64; 2],
    gt_ignore_flag: &HashMap<u64, bool>,
) -> ImgEval {
    let g_ig: Vec<bool> = g
        .iter()
        .map(|a| gt_ignore_flag[&a.id] || a.area < rng[0] || a.area > rng[1])
        .collect();
    // Non-ignored GT first (stable).
    let mut gind: Vec<usize> = (0..g.len()).collect();
    gind.sort_by_key(|&j| g_ig[j]);
    let gts: Vec<&Ann> = gind.iter().map(|&j| g[j]).collect();
    let gt_ignore: Vec<bool> = gind.iter().map(|&j| g_ig[j]).collect();
    let t_n = p.iou_thrs.len();
    let (d_n, g_n) = (ds.len(), gts.len());
    let mut gtm = vec![vec![0u64; g_n]; t_n];
    let mut dtm = vec![vec![0u64; d_n]; t_n];
    let mut dt_ig = vec![vec![false; d_n]; t_n];
    if d_n > 0 && g_n > 0 {
        for (t, &thr) in p.iou_thrs.iter().enumerate() {
            for (d, da) in ds.iter().enumerate() {
                let mut iou = thr.min(1.0 - 1e-10);
                let mut m: Option<usize> = None;
                for (gi, ga) in gts.iter().enumerate() {
                    if gtm[t][gi] > 0 && !ga.iscrowd {
                        continue;
                    }
                    if let Some(mm) = m
                        && !gt_ignore[mm]
                        && gt_ignore[gi]
                    {
                        break;
                    }
                    let v = ious[d][gind[gi]];
                    if v < iou {
                        continue;
                    }
                    iou = v;
                    m = Some(gi);
                }
                if let Some(mm) = m {
                    dt_ig[t][d] = gt_ignore[mm];
                    dtm[t][d] = gts[mm].id;
                    gtm[t][mm] = da.id;
                }
            }
        }
    }
    for (d, da) in ds.iter().enumerate() {
        let out = da.area < rng[0] || da.area > rng[1];
        for t in 0..t_n {
            dt_ig[t][d] = dt_ig[t][d] || (dtm[t][d] == 0 && out);
        }
    }
    ImgEval {
        dt_scores: ds.iter().map(|a| a.score).collect(),
        dt_matches: dtm,
        dt_ignore: dt_ig,
        gt_ignore,
    }
}

/// One line of pycocotools' summary.
#[derive(Debug, Clone)]
pub struct SummaryLine {
    pub ap: bool,
    pub iou: Option<f64>,
    pub area: &'static str,
    pub max_dets: usize,
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
