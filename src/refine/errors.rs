//! PoseFix's error synthesis (mks0601/PoseFix_RELEASE, `main/gen_batch.py:synthesize_pose`), on garments: each
//! labelled landmark of a ground-truth item becomes one of five kinds of input, with radii set
//! through OKS so that each kind lands in its OKS band. With `d(ks) = √(−2·A·(2σ)²·ln ks)`
//! (A the item's box area, σ the landmark's DeepFashion2 OKS sigma):
//!
//! | kind | where | OKS against |
//! |---|---|---|
//! | good | `r ∈ [0, d(0.85)]` around the GT | its GT: ≥ 0.85 |
//! | jitter | `r ∈ [d(0.85), d(0.5)]` around the GT | its GT: 0.5–0.85 |
//! | miss | `r ∈ [d(0.5), d(0.1)]` around the GT | its GT: 0.1–0.5 |
//! | inversion | `r ∈ [0, d(0.5)]` around the flip partner's GT | the partner: ≥ 0.5 |
//! | swap | `r ∈ [0, d(0.5)]` around the same landmark of another garment of the category in the image | that garment: ≥ 0.5 |
//!
//! An inversion needs a labelled partner, a swap another labelled garment; where a kind is not
//! possible its probability goes to the others (renormalised). Unlabelled landmarks are absent
//! from the synthesized input. PoseFix's rule that a miss must also be far from other
//! candidates is not applied.

use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::garment::{Category, Item};

/// What a synthesized landmark is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Close to the truth (within the jitter radius of PoseFix's error model).
    Good,
    /// Near the true position, off by more than `Good` allows.
    Jitter,
    /// Far from the true position.
    Miss,
    /// At the mirrored landmark's position (left/right confused).
    Inversion,
    /// At the same landmark of another garment.
    Swap,
}

/// Probabilities of the error kinds per landmark; `good` takes the rest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ErrorRates {
    /// Probability of a jitter error.
    pub jitter: f64,
    /// Probability of a miss.
    pub miss: f64,
    /// Probability of an inversion.
    pub inversion: f64,
    /// Probability of a swap.
    pub swap: f64,
}

impl Default for ErrorRates {
    /// Mid-range values of PoseFix's COCO tables (jitter 0.10–0.25, miss 0.02–0.25, inversion
    /// 0.01–0.06, swap 0.01–0.15).
    fn default() -> Self {
        ErrorRates {
            jitter: 0.15,
            miss: 0.10,
            inversion: 0.03,
            swap: 0.05,
        }
    }
}

/// The distance at which a landmark of box area `area` and sigma `sigma` has OKS `ks`.
pub fn oks_radius(area: f64, sigma: f64, ks: f64) -> f64 {
    let k = 2.0 * sigma;
    (-2.0 * area * k * k * ks.ln()).max(0.0).sqrt()
}

/// OKS of one landmark at distance `d`.
pub fn oks_of(d: f64, area: f64, sigma: f64) -> f64 {
    let k = 2.0 * sigma;
    (-d * d / (2.0 * area.max(1e-9) * k * k)).exp()
}

fn area(item: &Item) -> f64 {
    (item.bbox[2] as f64 * item.bbox[3] as f64).max(1.0)
}

/// A point at a uniformly drawn distance in `[r0, r1]` and a uniform direction from `c`.
fn around(rng: &mut StdRng, c: [f32; 3], r0: f64, r1: f64) -> [f32; 3] {
    let r = if r1 > r0 {
        rng.random_range(r0..r1)
    } else {
        r0
    };
    let a = rng.random_range(0.0..std::f64::consts::TAU);
    [
        c[0] + (r * a.cos()) as f32,
        c[1] + (r * a.sin()) as f32,
        1.0,
    ]
}

/// Synthesizes the input pose of `items[index]` (a ground-truth garment of category `cat`;
/// `items` are all the garments of its image, the others being swap candidates): the category's
/// landmarks in local order as `[x, y, 1]`, or zeros where the ground truth has none, with the
/// kind drawn for each.
pub fn synthesize(
    items: &[Item],
    index: usize,
    cat: &Category,
    rates: &ErrorRates,
    rng: &mut StdRng,
) -> Vec<([f32; 3], Option<ErrorKind>)> {
    let local = |it: &Item, l: usize| it.keypoints.get(cat.start + l).copied().unwrap_or([0.0; 3]);
    let item = &items[index];
    let a = area(item);
    (0..cat.num_landmarks)
        .map(|l| {
            let gt = local(item, l);
            if gt[2] <= 0.0 {
                return ([0.0; 3], None);
            }
            let sigma = cat.sigmas[l];
            let partner = cat.flip_local(l);
            let inv = (partner != l)
                .then(|| local(item, partner))
                .filter(|p| p[2] > 0.0);
            let swaps: Vec<(&Item, [f32; 3])> = items
                .iter()
                .enumerate()
                .filter(|(k, o)| *k != index && o.category_id == cat.id)
                .map(|(_, o)| (o, local(o, l)))
                .filter(|(_, p)| p[2] > 0.0)
                .collect();
            let mut p = [
                (ErrorKind::Jitter, rates.jitter),
                (ErrorKind::Miss, rates.miss),
                (
                    ErrorKind::Inversion,
                    if inv.is_some() { rates.inversion } else { 0.0 },
                ),
                (
                    ErrorKind::Swap,
                    if swaps.is_empty() { 0.0 } else { rates.swap },
                ),
            ];
            let errors: f64 = p.iter().map(|x| x.1).sum();
            if errors > 1.0 {
                p.iter_mut().for_each(|x| x.1 /= errors);
            }
            let mut u: f64 = rng.random();
            let mut kind = ErrorKind::Good;
            for (k, w) in p {
                if u < w {
                    kind = k;
                    break;
                }
                u -= w;
            }
            let d = |ks: f64| oks_radius(a, sigma, ks);
            let point = match kind {
                ErrorKind::Good => around(rng, gt, 0.0, d(0.85)),
                ErrorKind::Jitter => around(rng, gt, d(0.85), d(0.5)),
                ErrorKind::Miss => around(rng, gt, d(0.5), d(0.1)),
                ErrorKind::Inversion => around(rng, inv.expect("feasible"), 0.0, d(0.5)),
                ErrorKind::Swap => {
                    let (other, q) = swaps[rng.random_range(0..swaps.len())];
                    around(rng, q, 0.0, oks_radius(area(other), sigma, 0.5))
                }
            };
            (point, Some(kind))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::garment::category;
    use rand::SeedableRng;

    /// A short-sleeved shirt with every landmark labelled, on a grid inside its box.
    fn shirt(x0: f32) -> Item {
        let cat = category(1).unwrap();
        let mut keypoints = vec![[0.0; 3]; 294];
        for l in 0..cat.num_landmarks {
            keypoints[cat.start + l] = [
                x0 + 10.0 + (l % 5) as f32 * 30.0,
                20.0 + (l / 5) as f32 * 30.0,
                2.0,
            ];
        }
        Item {
            category_id: 1,
            bbox: [x0, 0.0, 160.0, 170.0],
            keypoints,
        }
    }

    #[test]
    fn each_error_kind_lands_in_its_oks_band() {
        let cat = category(1).unwrap();
        let items = [shirt(0.0), shirt(400.0)];
        let (a, b) = (&items[0], &items[1]);
        let area = 160.0 * 170.0;
        let mut seen = std::collections::HashSet::new();
        let mut rng = StdRng::seed_from_u64(7);
        let rates = ErrorRates {
            jitter: 0.2,
            miss: 0.2,
            inversion: 0.2,
            swap: 0.2,
        };
        for _ in 0..200 {
            for (l, (p, kind)) in synthesize(&items, 0, cat, &rates, &mut rng)
                .into_iter()
                .enumerate()
            {
                let kind = kind.unwrap();
                seen.insert(format!("{kind:?}"));
                let s = cat.sigmas[l];
                let oks = |g: [f32; 3]| {
                    let d = ((p[0] - g[0]) as f64).hypot((p[1] - g[1]) as f64);
                    oks_of(d, area, s)
                };
                let gt = a.keypoints[cat.start + l];
                let eps = 1e-9;
                match kind {
                    ErrorKind::Good => assert!(oks(gt) >= 0.85 - eps),
                    ErrorKind::Jitter => assert!((0.5 - eps..=0.85 + eps).contains(&oks(gt))),
                    ErrorKind::Miss => assert!((0.1 - eps..=0.5 + eps).contains(&oks(gt))),
                    ErrorKind::Inversion => {
                        let partner = cat.flip_local(l);
                        assert_ne!(partner, l);
                        assert!(oks(a.keypoints[cat.start + partner]) >= 0.5 - eps);
                    }
                    ErrorKind::Swap => assert!(oks(b.keypoints[cat.start + l]) >= 0.5 - eps),
                }
            }
        }
        assert_eq!(seen.len(), 5, "{seen:?}");
    }

    #[test]
    fn impossible_kinds_are_never_drawn_and_unlabelled_landmarks_stay_absent() {
        let cat = category(1).unwrap();
        let mut a = shirt(0.0);
        a.keypoints[cat.start + 3][2] = 0.0;
        let mut rng = StdRng::seed_from_u64(1);
        let rates = ErrorRates {
            jitter: 0.0,
            miss: 0.0,
            inversion: 0.5,
            swap: 0.5,
        };
        for _ in 0..50 {
            let out = synthesize(std::slice::from_ref(&a), 0, cat, &rates, &mut rng);
            assert_eq!(out[3], ([0.0; 3], None));
            for (l, (_, k)) in out.iter().enumerate() {
                assert_ne!(*k, Some(ErrorKind::Swap));
                if cat.flip_local(l) == l || cat.flip_local(l) == 3 {
                    assert_ne!(*k, Some(ErrorKind::Inversion), "landmark {l}");
                }
            }
        }
    }
}
