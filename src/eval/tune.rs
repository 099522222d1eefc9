//! `tune`: grid search of DeepMark++'s post-processing parameters (α, centre σ, landmark σ, γ in
//! steps of 0.05 over [0, 1], as the paper did) on a validation subset, then the switches
//! (technique 4, box NMS, technique 5 with its α and inlier distance) and the AP_pt surface over (α, γ) (the paper's Figure 10). The network
//! runs once per image; its fused heads are cached, so each setting costs only decoding and
//! evaluation. Objective: AP_pt (the paper tuned for landmark accuracy).

use std::path::Path;

use serde::Serialize;

use super::coco::GroundTruth;
use super::run::{DatasetResults, headline_ap};
use crate::codec::{Nms, PostConfig, SymmetryConfig};
use crate::data::deepfashion2::Sample;
use crate::error::{Result, invalid};
use crate::infer::Detector;
use crate::infer::detector::ScaleHeads;
use crate::infer::output::results;
use crate::io::Limits;

/// One image's fused heads at every scale.
pub struct CachedHeads {
    /// The image.
    pub image_id: u64,
    /// The host heads at each scale of the detector's options.
    pub heads: Vec<ScaleHeads>,
}

/// Runs the network once per sample and keeps the host heads.
pub fn cache_heads(
    det: &Detector,
    samples: &[Sample],
    images: &Path,
    limits: &Limits,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<CachedHeads>> {
    let mut cache = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        let img = limits.open_rgb(&images.join(&s.file_name))?;
        let (heads, _) = det.heads(&img)?;
        cache.push(CachedHeads {
            image_id: s.image_id,
            heads,
        });
        progress(i, samples.len());
    }
    Ok(cache)
}

/// `(AP_box, AP_pt)` of the cached heads decoded with `post`.
pub fn score(
    det: &Detector,
    gt: &GroundTruth,
    cache: &[CachedHeads],
    post: &PostConfig,
) -> Result<(f64, f64)> {
    let mut res = DatasetResults::default();
    for c in cache {
        let (dets, _) = det.decode_heads(&c.heads, post);
        let (b, k) = results(c.image_id, &dets, det.grouping().taxonomy());
        res.bbox.extend(b);
        res.keypoints.extend(k);
    }
    headline_ap(gt, &res)
}

/// `(AP_box, AP_pt)` of the cached heads decoded with `post`, then through the detector's
/// landmark stages with `post` as its post-processing: with `post.symmetry.two_pass`, the
/// symmetric refinement's second pass (one more forward per detection, on each image read again
/// from `images`). What `tune` measures for the second pass, which cached heads alone cannot
/// give. The detector's options are restored afterwards.
pub fn score_refined(
    det: &mut Detector,
    gt: &GroundTruth,
    cache: &[CachedHeads],
    samples: &[Sample],
    images: &Path,
    limits: &Limits,
    post: &PostConfig,
) -> Result<(f64, f64)> {
    let files: std::collections::HashMap<u64, &str> = samples
        .iter()
        .map(|s| (s.image_id, s.file_name.as_str()))
        .collect();
    let saved = det.options.post;
    det.options.post = *post;
    let run = |det: &Detector| -> Result<DatasetResults> {
        let mut res = DatasetResults::default();
        for c in cache {
            let file = files.get(&c.image_id).ok_or_else(|| {
                crate::Error::Invalid(format!("image {} is not among the samples", c.image_id))
            })?;
            let img = limits.open_rgb(&images.join(file))?;
            let (mut dets, mut times) = det.decode_heads(&c.heads, post);
            det.refine(&img, &mut dets, &mut times)?;
            let (b, k) = results(c.image_id, &dets, det.grouping().taxonomy());
            res.bbox.extend(b);
            res.keypoints.extend(k);
        }
        Ok(res)
    };
    let res = run(det);
    det.options.post = saved;
    headline_ap(gt, &res?)
}

/// `0, step, 2·step, …, 1`.
pub fn grid(step: f32) -> Vec<f32> {
    let n = (1.0 / step).round() as usize;
    (0..=n).map(|i| (i as f32 * step).min(1.0)).collect()
}

/// A searched parameter: one field of [`PostConfig`] (0 switches a σ off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// α, the centre rescoring weight of the box score (DeepMark++ technique 1).
    Alpha,
    /// σ of the 3×3 Gaussian on the centre heatmap (technique 2).
    CenterSigma,
    /// σ of the 3×3 Gaussian on the landmark heatmaps (technique 2).
    LandmarkSigma,
    /// γ, the weight of the refined landmark (technique 3).
    Gamma,
}

impl Param {
    /// Every parameter, in the search's order.
    pub const ALL: [Param; 4] = [
        Param::Alpha,
        Param::CenterSigma,
        Param::LandmarkSigma,
        Param::Gamma,
    ];

    /// The field's name in [`PostConfig`].
    pub fn name(self) -> &'static str {
        match self {
            Param::Alpha => "alpha",
            Param::CenterSigma => "center_sigma",
            Param::LandmarkSigma => "landmark_sigma",
            Param::Gamma => "gamma",
        }
    }

    /// Sets this field of `p` to `v` (a σ of 0 switches it off).
    pub fn set(self, p: &mut PostConfig, v: f32) {
        let opt = |v: f32| (v > 0.0).then_some(v);
        match self {
            Param::Alpha => p.alpha = Some(v),
            Param::CenterSigma => p.center_sigma = opt(v),
            Param::LandmarkSigma => p.landmark_sigma = opt(v),
            Param::Gamma => p.gamma = Some(v),
        }
    }
}

/// One point of a sweep.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SweepPoint {
    /// The parameter's value.
    pub value: f32,
    /// Box AP at that value.
    pub ap_box: f64,
    /// Landmark AP at that value.
    pub ap_pt: f64,
}

/// A parameter's sweep (the others at the best setting so far).
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// The parameter's name.
    pub param: &'static str,
    /// Its points, in the order tried.
    pub sweep: Vec<SweepPoint>,
}

/// What the search reports as it goes.
#[derive(Debug, Clone)]
pub enum TuneEvent {
    /// The starting setting's and plain decoding's `(AP_box, AP_pt)`.
    Start {
        /// The starting setting's.
        current: (f64, f64),
        /// Plain decoding's (every technique off).
        plain: (f64, f64),
    },
    /// A parameter swept; the best setting so far.
    Swept {
        /// The parameter.
        param: Param,
        /// The best setting so far.
        best: PostConfig,
        /// Its AP_pt.
        best_pt: f64,
    },
    /// The switches tried; the best setting so far.
    Switches {
        /// The best setting so far.
        best: PostConfig,
        /// Its AP_pt.
        best_pt: f64,
    },
    /// Surface cells done of total.
    Surface {
        /// Cells evaluated.
        done: usize,
        /// Cells in all.
        total: usize,
    },
}

/// The search's outcome.
#[derive(Debug, Clone)]
pub struct TuneReport {
    /// Images searched on.
    pub images: usize,
    /// The starting setting's `(AP_box, AP_pt)`.
    pub start: (f64, f64),
    /// Plain decoding's `(AP_box, AP_pt)`.
    pub plain: (f64, f64),
    /// One sweep per parameter.
    pub sweeps: Vec<Sweep>,
    /// The grid of α (columns) and γ (rows).
    pub axis: Vec<f32>,
    /// `surface[γ index][α index]` = AP_pt.
    pub surface: Vec<Vec<f64>>,
    /// `(γ index, α index)` of the surface's best cell.
    pub best_cell: (usize, usize),
    /// The best setting found.
    pub best: PostConfig,
    /// Its AP_pt.
    pub best_pt: f64,
}

impl TuneReport {
    /// The report as `tune.json` stores it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "images": self.images,
            "start": {"ap_box": self.start.0, "ap_pt": self.start.1},
            "plain": {"ap_box": self.plain.0, "ap_pt": self.plain.1},
            "sweeps": self.sweeps,
            "surface": {"alpha": self.axis, "gamma": self.axis, "ap_pt": self.surface},
            "best": {"post": self.best, "ap_pt": self.best_pt},
        })
    }
}

/// Searches from `det.options.post`: each parameter over the grid in turn (keeping the best), the
/// switches, then the (α, γ) surface at the best σs.
pub fn search(
    det: &Detector,
    gt: &GroundTruth,
    cache: &[CachedHeads],
    step: f32,
    on_event: &mut dyn FnMut(&TuneEvent),
) -> Result<TuneReport> {
    if !(step > 0.0 && step <= 0.5) {
        invalid!("the grid step must be in (0, 0.5], not {step}");
    }
    let mut best = det.options.post;
    let start = score(det, gt, cache, &best)?;
    let plain = score(det, gt, cache, &PostConfig::plain())?;
    on_event(&TuneEvent::Start {
        current: start,
        plain,
    });
    let mut best_pt = start.1;
    let axis = grid(step);
    let mut sweeps = Vec::new();
    for param in Param::ALL {
        let mut sweep = Vec::new();
        for &value in &axis {
            let mut cfg = best;
            param.set(&mut cfg, value);
            let (ap_box, ap_pt) = score(det, gt, cache, &cfg)?;
            sweep.push(SweepPoint {
                value,
                ap_box,
                ap_pt,
            });
            if ap_pt > best_pt {
                best_pt = ap_pt;
                best = cfg;
            }
        }
        on_event(&TuneEvent::Swept {
            param,
            best,
            best_pt,
        });
        sweeps.push(Sweep {
            param: param.name(),
            sweep,
        });
    }
    // The switches: technique (4), box NMS and technique (5), on and off.
    for landmark_mask in [true, false] {
        for nms in [Nms::Hard { iou: 0.5 }, Nms::None] {
            for symmetry in [None, Some(SymmetryConfig::default())] {
                let cfg = PostConfig {
                    landmark_mask,
                    nms,
                    symmetry,
                    ..best
                };
                let (_, pt) = score(det, gt, cache, &cfg)?;
                if pt > best_pt {
                    best_pt = pt;
                    best = cfg;
                }
            }
        }
    }
    // Technique (5)'s EMA weight and inlier distance, when it is on.
    if let Some(sym) = best.symmetry {
        for &alpha in &axis {
            for d in [0.02, 0.05, 0.1] {
                let cfg = PostConfig {
                    symmetry: Some(SymmetryConfig {
                        alpha,
                        inlier_distance: d,
                        ..sym
                    }),
                    ..best
                };
                let (_, pt) = score(det, gt, cache, &cfg)?;
                if pt > best_pt {
                    best_pt = pt;
                    best = cfg;
                }
            }
        }
    }
    on_event(&TuneEvent::Switches { best, best_pt });
    // AP_pt surface over (α, γ) at the best σs.
    let total = axis.len() * axis.len();
    let mut surface = vec![vec![0.0; axis.len()]; axis.len()];
    let mut best_cell = (0, 0);
    let mut best_val = f64::NEG_INFINITY;
    for (i, &gamma) in axis.iter().enumerate() {
        for (j, &alpha) in axis.iter().enumerate() {
            let cfg = PostConfig {
                alpha: Some(alpha),
                gamma: Some(gamma),
                ..best
            };
            let (_, pt) = score(det, gt, cache, &cfg)?;
            surface[i][j] = pt;
            if pt > best_val {
                best_val = pt;
                best_cell = (i, j);
            }
            on_event(&TuneEvent::Surface {
                done: i * axis.len() + j + 1,
                total,
            });
        }
    }
    if best_val > best_pt {
        best.alpha = Some(axis[best_cell.1]);
        best.gamma = Some(axis[best_cell.0]);
        best_pt = best_val;
    }
    Ok(TuneReport {
        images: cache.len(),
        start,
        plain,
        sweeps,
        axis,
        surface,
        best_cell,
        best,
        best_pt,
    })
}
