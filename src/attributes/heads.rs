//! Attribute heads on the CenterNet detector: one more head on the feature map the detector's
//! heads read (3×3 convolution, ReLU, 1×1 convolution to every task's classes, as CenterNet's
//! `wh` and `reg` heads), whose logits are read at each detection's centre, as `wh` and `reg`
//! are, and turned into one softmax per task. The detector itself is left as it is (its
//! weights are frozen while the heads learn), so boxes and landmarks do not change; one forward
//! of the backbone serves the detector's heads and the attribute heads.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{AttributeTask, check_tasks};
use crate::error::{Result, invalid};
use crate::model::CenterNetConfig;
use crate::model::heads::Head;

/// The heads' shape and the detector they belong to; saved beside their weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeHeadsConfig {
    /// The detector whose features the heads read (a detector of another shape is refused).
    pub detector: CenterNetConfig,
    /// Channels of the head's 3×3 convolution.
    pub head_conv: usize,
    /// The tasks; the output has one channel per class of each, in order.
    pub tasks: Vec<AttributeTask>,
}

impl AttributeHeadsConfig {
    /// Heads for `tasks` on `detector`, as wide as its own heads.
    pub fn new(detector: CenterNetConfig, tasks: Vec<AttributeTask>) -> Result<Self> {
        let cfg = AttributeHeadsConfig {
            head_conv: detector.head_conv,
            detector,
            tasks,
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Refuses settings the heads cannot run.
    pub fn check(&self) -> Result<()> {
        check_tasks(&self.tasks)?;
        if !(1..=4096).contains(&self.head_conv) {
            invalid!(
                "attribute head width {} must be in 1..=4096",
                self.head_conv
            );
        }
        Ok(())
    }

    /// Output channels: every task's classes.
    pub fn channels(&self) -> usize {
        self.tasks.iter().map(|t| t.classes).sum()
    }

    /// Heads with random weights.
    pub fn init(&self, device: &Device) -> AttributeHeads {
        AttributeHeads {
            head: Head::new(
                self.detector.backbone.out_channels(),
                self.head_conv,
                self.channels(),
                false,
                device,
            ),
        }
    }
}

/// The attribute heads.
#[derive(Module, Debug)]
pub struct AttributeHeads {
    /// 3×3 → ReLU → 1×1 to every task's classes.
    pub head: Head,
}

impl AttributeHeads {
    /// Logit maps `(B, Σ classes, h, w)` of the detector's features `(B, C, h, w)`.
    pub fn forward(&self, features: Tensor<4>) -> Tensor<4> {
        self.head.forward(features)
    }
}

/// Per task, the softmax of `logits` (one value per class of every task, in order).
pub fn task_probabilities(tasks: &[AttributeTask], logits: &[f32]) -> Vec<Vec<f32>> {
    let mut at = 0;
    tasks
        .iter()
        .map(|t| {
            let z = &logits[at..at + t.classes];
            at += t.classes;
            let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = z.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect()
        })
        .collect()
}

/// The logits of a `(channels, h, w)` host map at map position `(x, y)` (bilinear between the
/// four cells around it, clamped to the map).
pub fn logits_at(map: &[f32], [h, w]: [usize; 2], channels: usize, x: f32, y: f32) -> Vec<f32> {
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    (0..channels)
        .map(|c| {
            let at = |yy: usize, xx: usize| map[(c * h + yy) * w + xx];
            (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x1))
                + fy * ((1.0 - fx) * at(y1, x0) + fx * at(y1, x1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::Crop;

    #[test]
    fn logits_are_read_bilinearly_and_split_per_task() {
        // Two channels on a 2×3 map.
        let map = [
            0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
        ];
        assert_eq!(logits_at(&map, [2, 3], 2, 1.0, 0.0), [1.0, 11.0]);
        assert_eq!(logits_at(&map, [2, 3], 2, 0.5, 0.5), [2.0, 12.0]);
        assert_eq!(
            logits_at(&map, [2, 3], 2, 9.0, -1.0),
            [2.0, 12.0],
            "clamped"
        );
        let t = |n| AttributeTask {
            name: format!("t{n}"),
            classes: n,
            crop: Crop::Normal,
            class_names: Vec::new(),
        };
        let p = task_probabilities(&[t(2), t(3)], &[0.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(p, vec![vec![0.5, 0.5], vec![1.0 / 3.0; 3]]);
    }
}
