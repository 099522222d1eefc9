//! CenterNet multi-pose losses (xingyizhou/CenterNet, `src/lib/models/losses.py`,
//! `src/lib/trains/multi_pose.py`):
//!
//! - modified focal loss (CornerNet) on `hm` and `hm_hp`, sigmoid clamped to [1e-4, 1 − 1e-4]:
//!   `L = −[Σ_pos log(p)(1−p)² + Σ_neg log(1−p)·p²·(1−gt)⁴] / max(num_pos, 1)` (with no
//!   positives the sum is not divided);
//! - `wh`, `reg`, `hp_offset`: L1 at the object indices, averaged over valid coordinates,
//!   `Σ|pred·m − gt·m| / (Σm + 1e-4)`;
//! - `hps`: the same with a per-coordinate mask;
//! - total `hm·1 + wh·0.1 + reg·1 + hps·1 + hm_hp·1 + hp_offset·1`, each term averaged over the
//!   Hourglass stacks.

use burn::tensor::{
    Int, Tensor,
    activation::{log_softmax, sigmoid},
};
use serde::{Deserialize, Serialize};

use crate::codec::heads::{HEAD_NAMES, Heads};
use crate::data::dataset::TrainBatch;
use crate::model::HeadOutputs;

/// Weights of the six loss terms, one per head. The default is CenterNet's
/// (`hm 1, wh 0.1, reg 1, hps 1, hm_hp 1, hp_offset 1`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LossWeights(pub Heads<f32>);

impl LossWeights {
    /// CenterNet's multi-pose weights.
    pub fn centernet() -> Self {
        LossWeights(Heads {
            hm: 1.0,
            wh: 0.1,
            reg: 1.0,
            hps: 1.0,
            hm_hp: 1.0,
            hp_offset: 1.0,
        })
    }

    /// Parses `1,0.1,1,1,1,1` (one weight per head, CenterNet's order).
    pub fn parse(s: &str) -> crate::error::Result<Self> {
        Heads::parse_list(s).map(LossWeights)
    }
}

impl Default for LossWeights {
    fn default() -> Self {
        Self::centernet()
    }
}

/// Weighted cross-entropy of one attribute task, `[rows, classes]` logits against per-class
/// weights (from `attributes::maybe_weights`: β on "maybe" classes, `1 − t·β` on the "yes"
/// class, 0 on "no"): the mean over rows of `−Σ_k w_k · log softmax(z)_k`. All-"no" rows add
/// zero but count in the mean.
pub fn maybe_cross_entropy(logits: Tensor<2>, weights: Tensor<2>) -> Tensor<1> {
    let rows = logits.dims()[0].max(1) as f64;
    (log_softmax(logits, 1) * weights)
        .sum()
        .neg()
        .div_scalar(rows)
}

/// Modified focal loss of raw logits against a Gaussian-splatted target heatmap.
pub fn focal_loss(logits: Tensor<4>, gt: Tensor<4>) -> Tensor<1> {
    let p = sigmoid(logits).clamp(1e-4, 1.0 - 1e-4);
    let pos = gt.clone().equal_elem(1.0).float();
    let neg = gt.clone().lower_elem(1.0).float();
    let neg_w = gt.neg().add_scalar(1.0).powi_scalar(4);
    let one_minus_p = p.clone().neg().add_scalar(1.0);
    let pos_loss = (p.clone().log() * one_minus_p.clone().powi_scalar(2) * pos.clone()).sum();
    let neg_loss = (one_minus_p.log() * p.powi_scalar(2) * neg_w * neg).sum();
    let num_pos = pos.sum().clamp_min(1.0);
    (pos_loss + neg_loss).neg() / num_pos
}

/// Gathers `output (B, C, H, W)` at flat map indices `ind (B, N)` → `(B, N, C)`.
pub fn gather_at(output: Tensor<4>, ind: Tensor<2, Int>) -> Tensor<3> {
    let [b, c, h, w] = output.dims();
    let n = ind.dims()[1];
    let feat = output.reshape([b, c, h * w]).swap_dims(1, 2);
    let idx = ind.unsqueeze_dim::<3>(2).expand([b, n, c]);
    feat.gather(1, idx)
}

/// L1 over masked coordinates, averaged over the mask's sum (`mask` shaped like `target`).
pub fn masked_l1(pred: Tensor<3>, mask: Tensor<3>, target: Tensor<3>) -> Tensor<1> {
    let diff = (pred * mask.clone() - target * mask.clone()).abs().sum();
    diff / mask.sum().add_scalar(1e-4)
}

/// `RegL1Loss`: `mask (B, N)` applies to every channel.
pub fn reg_l1(
    output: Tensor<4>,
    ind: Tensor<2, Int>,
    mask: Tensor<2>,
    target: Tensor<3>,
) -> Tensor<1> {
    let pred = gather_at(output, ind);
    let [b, n, c] = pred.dims();
    let m = mask.unsqueeze_dim::<3>(2).expand([b, n, c]);
    masked_l1(pred, m, target)
}

/// The loss of one step (or a mean over steps) as host numbers: the weighted total and each
/// head's unweighted, stack-averaged term.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LossParts {
    /// The weighted sum.
    pub total: f32,
    /// Each head's term, before weighting.
    pub heads: Heads<f32>,
}

impl LossParts {
    /// `total` then the head names: the columns of `metrics.csv`.
    pub const NAMES: [&'static str; 7] = [
        "total",
        HEAD_NAMES[0],
        HEAD_NAMES[1],
        HEAD_NAMES[2],
        HEAD_NAMES[3],
        HEAD_NAMES[4],
        HEAD_NAMES[5],
    ];

    /// The values in the order of [`NAMES`](Self::NAMES).
    pub fn values(&self) -> [f32; 7] {
        let h = self.heads.into_array();
        std::array::from_fn(|i| if i == 0 { self.total } else { h[i - 1] })
    }

    /// The inverse of [`values`](Self::values) (order of [`NAMES`](Self::NAMES)).
    pub fn from_values(v: [f32; 7]) -> LossParts {
        LossParts {
            total: v[0],
            heads: Heads::from_array(std::array::from_fn(|i| v[i + 1])),
        }
    }

    /// Whether every value is finite.
    pub fn is_finite(&self) -> bool {
        self.values().iter().all(|v| v.is_finite())
    }

    /// Element-wise running sum.
    pub fn add(&mut self, o: &LossParts) {
        let (a, b) = (self.values(), o.values());
        *self = Self::from_values(std::array::from_fn(|i| a[i] + b[i]));
    }

    /// Every value multiplied by `k`.
    pub fn scaled(&self, k: f32) -> LossParts {
        Self::from_values(self.values().map(|v| v * k))
    }

    /// `loss 1.234 (hm 0.123 wh 0.45 …)` with `decimals` digits.
    pub fn describe(&self, decimals: usize) -> String {
        format!(
            "loss {:.decimals$} ({})",
            self.total,
            self.heads.describe(decimals)
        )
    }
}

/// One stack's six unweighted loss terms.
fn stack_terms(s: &HeadOutputs, b: &TrainBatch) -> Heads<Tensor<1>> {
    Heads {
        hm: focal_loss(s.hm.clone(), b.hm.clone()),
        wh: reg_l1(
            s.wh.clone(),
            b.ind.clone(),
            b.reg_mask.clone(),
            b.wh.clone(),
        ),
        reg: reg_l1(
            s.reg.clone(),
            b.ind.clone(),
            b.reg_mask.clone(),
            b.reg.clone(),
        ),
        hps: masked_l1(
            gather_at(s.hps.clone(), b.ind.clone()),
            b.hps_mask.clone(),
            b.hps.clone(),
        ),
        hm_hp: focal_loss(s.hm_hp.clone(), b.hm_hp.clone()),
        hp_offset: reg_l1(
            s.hp_offset.clone(),
            b.hp_ind.clone(),
            b.hp_mask.clone(),
            b.hp_offset.clone(),
        ),
    }
}

/// The weighted total loss over all stacks and its six (unweighted, stack-averaged) terms,
/// all on the device: nothing is read back, so a step that uses it does not wait for the device.
pub fn loss_terms(
    stacks: &[HeadOutputs],
    batch: &TrainBatch,
    w: &LossWeights,
) -> (Tensor<1>, Heads<Tensor<1>>) {
    let k = 1.0 / stacks.len() as f32;
    let terms = stacks
        .iter()
        .map(|s| stack_terms(s, batch).map(|t| t.mul_scalar(k)))
        .reduce(|acc, t| acc.zip(t).map(|(a, b)| a + b))
        .expect("at least one stack");
    let total = terms
        .clone()
        .zip(w.0)
        .into_array()
        .into_iter()
        .map(|(t, wt)| t.mul_scalar(wt))
        .reduce(|a, b| a + b)
        .expect("six terms");
    (total, terms)
}

/// Total weighted loss over all stacks and its (unweighted, stack-averaged) parts, read back to
/// the host in one transfer (what the command-line trainer logs every step).
pub fn total_loss(
    stacks: &[HeadOutputs],
    batch: &TrainBatch,
    w: &LossWeights,
) -> (Tensor<1>, LossParts) {
    let (total, terms) = loss_terms(stacks, batch, w);
    // One host read for all parts.
    let all = Tensor::cat(
        std::iter::once(total.clone())
            .chain(terms.into_array())
            .map(|t| t.detach())
            .collect(),
        0,
    );
    // A failed read-back counts as non-finite, which stops training with a message.
    let v: [f32; 7] = all
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .ok()
        .and_then(|v| v.try_into().ok())
        .unwrap_or([f32::NAN; 7]);
    (total, LossParts::from_values(v))
}
