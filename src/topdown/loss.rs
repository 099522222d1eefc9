//! CPN's losses (chenyilun95/tf-cpn, `models/COCO.res50.256x192.CPN/network.py`): GlobalNet's L2 against each level's Gaussian target over visible
//! landmarks, averaged over the four levels and halved; RefineNet's per-landmark L2 with
//! online hard keypoint mining — per sample only the largest losses count.

use burn::tensor::{Tensor, TensorData};

use super::net::CpnOutput;
use crate::error::{Error, Result};

/// The two terms of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpnLoss {
    /// GlobalNet's L2 loss over its four levels.
    pub global: f32,
    /// RefineNet's L2 loss with online hard keypoint mining.
    pub refine: f32,
}

impl CpnLoss {
    /// The sum of both terms.
    pub fn total(&self) -> f32 {
        self.global + self.refine
    }
}

/// The targets of a batch on the device.
#[derive(Debug, Clone)]
pub struct CpnTargets {
    /// Levels C2..C5, each `(B, J, h, w)`.
    pub global: Vec<Tensor<4>>,
    /// RefineNet's target, `(B, J, h, w)`.
    pub refine: Tensor<4>,
    /// `(B, J)`.
    pub visible: Tensor<2>,
    /// `(B, J)`, and the same on the host (OHKM's counts).
    pub labelled: Tensor<2>,
    /// `labelled` on the host.
    pub labelled_host: Vec<f32>,
}

/// Online hard keypoint mining's weights for per-landmark losses `losses` (`B × J`, row-major)
/// of samples whose labelled landmarks are `labelled` (`B × J`, 0/1): each sample keeps its
/// `k = max(1, round(share · labelled))` largest losses among its labelled landmarks, each
/// weighted `1 / (k · samples with a label)`, so the weighted sum is the mean over samples of
/// the mean of their top-k (CPN: top 8 of 17). Ties keep the lower index.
pub fn ohkm_weights(losses: &[f32], labelled: &[f32], joints: usize, share: f32) -> Vec<f32> {
    let mut weights = vec![0.0f32; losses.len()];
    let rows = losses.len() / joints.max(1);
    let mut picked: Vec<(usize, usize)> = Vec::new();
    for b in 0..rows {
        let row = b * joints..(b + 1) * joints;
        let mut cand: Vec<usize> = row.clone().filter(|&i| labelled[i] > 0.0).collect();
        if cand.is_empty() {
            continue;
        }
        let k = ((share * cand.len() as f32).round() as usize).clamp(1, cand.len());
        cand.sort_by(|&a, &b| losses[b].total_cmp(&losses[a]).then(a.cmp(&b)));
        picked.extend(cand[..k].iter().map(|&i| (i, k)));
    }
    let samples = {
        let mut rows_with: Vec<usize> = picked.iter().map(|&(i, _)| i / joints).collect();
        rows_with.dedup();
        rows_with.len()
    };
    for (i, k) in picked {
        weights[i] = 1.0 / (k * samples) as f32;
    }
    weights
}

/// CPN's loss of `out` against `t`, with OHKM keeping `ohkm` of each sample's labelled
/// landmarks. The loss may be non-finite (the trainer decides: stop, or skip an f16 step).
pub fn cpn_loss(out: &CpnOutput, t: &CpnTargets, ohkm: f32) -> Result<(Tensor<1>, CpnLoss)> {
    let [b, j, h, w] = out.refine.dims();
    let device = out.refine.device();
    // GlobalNet: mean over all elements of the squared error on visible landmarks, per level.
    let vis = t.visible.clone().reshape([b, j, 1, 1]);
    let mut global: Option<Tensor<1>> = None;
    for (g, target) in out.global.iter().zip(&t.global) {
        let l = ((g.clone() - target.clone()).square() * vis.clone()).mean();
        global = Some(match global {
            Some(s) => s + l,
            None => l,
        });
    }
    let global = global.expect("four levels") / (2.0 * out.global.len() as f32);
    // RefineNet: per landmark mean over the map, OHKM on the host's copy.
    let per = (out.refine.clone() - t.refine.clone())
        .square()
        .reshape([b, j, h * w])
        .mean_dim(2)
        .reshape([b, j])
        * t.labelled.clone();
    let host: Vec<f32> = per
        .clone()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Backend(format!("reading the landmark losses: {e:?}")))?;
    let weights = ohkm_weights(&host, &t.labelled_host, j, ohkm);
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [b, j]), &device);
    let refine = (per * weights).sum();
    let parts = CpnLoss {
        global: global.clone().into_scalar::<f32>(),
        refine: refine.clone().into_scalar::<f32>(),
    };
    Ok((global + refine, parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ohkm_keeps_eight_of_seventeen_and_only_labelled_ones() {
        // One sample of 17 labelled landmarks with losses 0..16: the 8 largest (9..=16) count.
        let losses: Vec<f32> = (0..17).map(|i| i as f32).collect();
        let w = ohkm_weights(&losses, &[1.0; 17], 17, 8.0 / 17.0);
        for (i, &v) in w.iter().enumerate() {
            let expect = if i >= 9 { 1.0 / 8.0 } else { 0.0 };
            assert!((v - expect).abs() < 1e-7, "landmark {i}: {v}");
        }
        // Two samples of 81 groups: the first labels 10 (k = round(4.7) = 5), the second none,
        // the third labels 3 (k = 1). A large loss on an unlabelled group is never picked.
        let j = 81;
        let mut losses = vec![0.0f32; 3 * j];
        let mut lab = vec![0.0f32; 3 * j];
        for g in 0..10 {
            lab[g] = 1.0;
            losses[g] = g as f32;
        }
        losses[50] = 100.0;
        for g in [2 * j + 4, 2 * j + 7, 2 * j + 9] {
            lab[g] = 1.0;
            losses[g] = 1.0;
        }
        let w = ohkm_weights(&losses, &lab, j, 8.0 / 17.0);
        let picked: Vec<usize> = (0..3 * j).filter(|&i| w[i] > 0.0).collect();
        assert_eq!(picked, vec![5, 6, 7, 8, 9, 2 * j + 4]);
        assert!((w[5] - 1.0 / 10.0).abs() < 1e-7 && (w[2 * j + 4] - 0.5).abs() < 1e-7);
        // The weighted sum is the mean over the two labelled samples of their top-k means.
        let sum: f32 = w.iter().zip(&losses).map(|(a, b)| a * b).sum();
        assert!((sum - ((5.0 + 6.0 + 7.0 + 8.0 + 9.0) / 5.0 + 1.0) / 2.0).abs() < 1e-5);
    }
}
