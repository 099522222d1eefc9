//! The six CenterNet heads as one record. [`Heads<T>`] holds one `T` per head, in CenterNet's
//! order and under CenterNet's names (`hm`, `wh`, `reg`, `hps`, `hm_hp`, `hp_offset`), so that
//! network outputs (`Heads<Tensor<4>>`), host maps (`Heads<Vec<f32>>`), channel counts
//! (`Heads<usize>`), loss weights and loss values (`Heads<f32>`), CSV columns, log lines and the
//! PyTorch key rules all derive from one definition instead of spelling the names out.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The six head names in CenterNet's order.
pub const HEAD_NAMES: [&str; 6] = ["hm", "wh", "reg", "hps", "hm_hp", "hp_offset"];

/// One value per head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heads<T> {
    /// Class centre heatmaps.
    pub hm: T,
    /// Box size.
    pub wh: T,
    /// Centre sub-pixel offset.
    pub reg: T,
    /// Landmark offsets from the integer centre (x, y per landmark channel).
    pub hps: T,
    /// Landmark heatmaps.
    pub hm_hp: T,
    /// Landmark sub-pixel offset.
    pub hp_offset: T,
}

impl<T> Heads<T> {
    /// Builds each head's value from its name.
    pub fn from_fn(f: impl FnMut(&'static str) -> T) -> Self {
        Heads::from_array(HEAD_NAMES.map(f))
    }

    /// The values in [`HEAD_NAMES`] order.
    pub fn into_array(self) -> [T; 6] {
        [
            self.hm,
            self.wh,
            self.reg,
            self.hps,
            self.hm_hp,
            self.hp_offset,
        ]
    }

    /// The inverse of [`into_array`](Self::into_array).
    pub fn from_array(values: [T; 6]) -> Self {
        let [hm, wh, reg, hps, hm_hp, hp_offset] = values;
        Heads {
            hm,
            wh,
            reg,
            hps,
            hm_hp,
            hp_offset,
        }
    }

    /// The six values by reference.
    pub fn as_ref(&self) -> Heads<&T> {
        Heads {
            hm: &self.hm,
            wh: &self.wh,
            reg: &self.reg,
            hps: &self.hps,
            hm_hp: &self.hm_hp,
            hp_offset: &self.hp_offset,
        }
    }

    /// Applies `f` to each head's value, in [`HEAD_NAMES`]' order.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Heads<U> {
        Heads::from_array(self.into_array().map(f))
    }

    /// Pairs each value with the other record's value of the same head.
    pub fn zip<U>(self, other: Heads<U>) -> Heads<(T, U)> {
        let mut b = other.into_array().into_iter();
        self.map(|a| (a, b.next().expect("six heads")))
    }

    /// `(name, value)` pairs in [`HEAD_NAMES`] order.
    pub fn named(&self) -> [(&'static str, &T); 6] {
        let v = self.as_ref().into_array();
        std::array::from_fn(|i| (HEAD_NAMES[i], v[i]))
    }

    /// Applies `f` to each value and collects the results, or the first error.
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Heads<U>, E> {
        let [a, b, c, d, e, g] = self.into_array().map(f);
        Ok(Heads::from_array([a?, b?, c?, d?, e?, g?]))
    }
}

impl Heads<f32> {
    /// Parses `1,0.1,1,1,1,1` (one number per head, in [`HEAD_NAMES`] order).
    pub fn parse_list(s: &str) -> crate::error::Result<Self> {
        let names = HEAD_NAMES.join(",");
        let v: Vec<f32> = s
            .split(',')
            .map(|x| x.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| Error::invalid(format!("`{s}`: {e}; expected 6 numbers ({names})")))?;
        let n = v.len();
        let values: [f32; 6] = v
            .try_into()
            .map_err(|_| Error::invalid(format!("`{s}`: expected 6 numbers ({names}), got {n}")))?;
        Ok(Heads::from_array(values))
    }

    /// `hm 0.123 wh 0.45 …` with `decimals` digits.
    pub fn describe(&self, decimals: usize) -> String {
        self.named()
            .iter()
            .map(|(n, v)| format!("{n} {v:.decimals$}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Output channel counts of the six heads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadLayout {
    /// Object classes (`hm` channels): 13 for DeepFashion2, 1 for COCO people.
    pub num_classes: usize,
    /// Landmark channels (`hm_hp` channels; `hps` has twice as many).
    pub num_landmarks: usize,
}

impl HeadLayout {
    /// Channels of each head.
    pub fn channels(&self) -> Heads<usize> {
        let (c, j) = (self.num_classes, self.num_landmarks);
        Heads {
            hm: c,
            wh: 2,
            reg: 2,
            hps: 2 * j,
            hm_hp: j,
            hp_offset: 2,
        }
    }

    /// Total output channels (e.g. 13 classes + 62 groups → 205).
    pub fn total_channels(&self) -> usize {
        self.channels().into_array().iter().sum()
    }
}

/// Whether a head is a heatmap (sigmoid output, focal loss, prior bias).
pub fn is_heatmap(name: &str) -> bool {
    matches!(name, "hm" | "hm_hp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_order_and_round_trips() {
        let h = Heads::from_fn(|n| n.len());
        assert_eq!(h.into_array(), [2, 2, 3, 3, 5, 9]);
        assert_eq!(Heads::from_array(h.into_array()), h);
        let names: Vec<&str> = h.named().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, HEAD_NAMES);
        let z = h.zip(h.map(|v| v * 10)).map(|(a, b)| b - a);
        assert_eq!(z.into_array(), [18, 18, 27, 27, 45, 81]);
    }

    #[test]
    fn parse_and_describe() {
        let w = Heads::parse_list("1, 0.1,1,1,1,2").unwrap();
        assert_eq!(w.wh, 0.1);
        assert_eq!(w.hp_offset, 2.0);
        assert!(
            Heads::parse_list("1,2")
                .unwrap_err()
                .to_string()
                .contains("got 2")
        );
        assert!(Heads::parse_list("1,x,1,1,1,1").is_err());
        assert_eq!(
            w.describe(1),
            "hm 1.0 wh 0.1 reg 1.0 hps 1.0 hm_hp 1.0 hp_offset 2.0"
        );
        let json = serde_json::to_string(&w).unwrap();
        assert!(json.starts_with("{\"hm\":1.0,\"wh\":0.1"), "{json}");
    }
}
