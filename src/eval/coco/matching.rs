//! `evaluate` + `accumulate`: matching per image, category and area range, then precision and
//! recall over IoU/OKS thresholds (pycocotools' `COCOeval`).

use std::collections::HashMap;

use super::files::{Ann, GroundTruth, IouType, Results};

/// Evaluation parameters (pycocotools `Params`).
#[derive(Debug, Clone)]
pub struct Params {
    /// Boxes or keypoints (OKS).
    pub iou_type: IouType,
    /// IoU/OKS thresholds (COCO: 0.50:0.05:0.95).
    pub iou_thrs: Vec<f64>,
    /// Recall points of the precision curve (COCO: 0:0.01:1).
    pub rec_thrs: Vec<f64>,
    /// Detections kept per image (COCO boxes: 1, 10, 100; keypoints: 20).
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
    /// The parameters of the run.
    pub params: Params,
    /// Categories evaluated, in the order of the accumulated arrays.
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
pub fn evaluate(
    gt: &GroundTruth,
    dt: &Results,
    params: Params,
) -> crate::error::Result<Evaluation> {
    let p = &params;
    if p.iou_type == IouType::Keypoints {
        let k = p.sigmas.len();
        if let Some(a) = gt.anns.iter().find(|a| a.keypoints.len() != 3 * k) {
            crate::error::invalid!(
                "ground-truth annotation {} has {} keypoint values, expected {} ({} sigmas)",
                a.id,
                a.keypoints.len(),
                3 * k,
                k
            );
        }
        if let Some(d) = dt.anns.iter().find(|d| d.keypoints.len() != 3 * k) {
            crate::error::invalid!(
                "result {} has {} keypoint values, expected {} ({} sigmas)",
                d.id - 1,
                d.keypoints.len(),
                3 * k,
                k
            );
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
