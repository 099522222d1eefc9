//! Landmark schemes: how DeepFashion2's 294 per-category landmarks are laid out in the network's
//! landmark channels. This module names the schemes and fixes their head layouts; the grouping
//! tables are in [`super::grouping`].

use serde::{Deserialize, Serialize};

use super::heads::HeadLayout;
use crate::garment::NUM_CATEGORIES;

/// How landmarks map to the network's landmark channels: DeepMark++'s 62 semantic groups, the
/// 81-group aggregation, every DeepFashion2 landmark on its own, or COCO's 17 person keypoints.
/// It fixes the head layout ([`Scheme::layout`]) and the grouping
/// ([`Grouping::of_scheme`](super::Grouping::of_scheme)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// DeepMark++-style 62 semantic groups (13 + 2 + 2 + 124 + 62 + 2 = 205 outputs).
    Deepmark62,
    /// The public 294 → 81 aggregation (262 outputs).
    Agg81,
    /// No grouping: all 294 landmarks (901 outputs).
    None,
    /// CenterNet's COCO human-pose layout: 1 class, 17 keypoints (58 outputs).
    Coco17,
}

impl Scheme {
    /// Every scheme, in the order of their names in the documentation.
    pub const ALL: [Scheme; 4] = [
        Scheme::Deepmark62,
        Scheme::Agg81,
        Scheme::None,
        Scheme::Coco17,
    ];

    /// The name used in configs and on the command line (`deepmark62`, `agg81`, `none`,
    /// `coco17`).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Deepmark62 => "deepmark62",
            Scheme::Agg81 => "agg81",
            Scheme::None => "none",
            Scheme::Coco17 => "coco17",
        }
    }

    /// The head layout of a model of this scheme: its classes and landmark channels.
    pub fn layout(self) -> HeadLayout {
        let (num_classes, num_landmarks) = match self {
            Scheme::Deepmark62 => (NUM_CATEGORIES, 62),
            Scheme::Agg81 => (NUM_CATEGORIES, 81),
            Scheme::None => (NUM_CATEGORIES, 294),
            Scheme::Coco17 => (1, 17),
        };
        HeadLayout {
            num_classes,
            num_landmarks,
        }
    }
}

impl Scheme {
    /// The scheme's grouping ([`Grouping::for_scheme`](super::Grouping::for_scheme)).
    pub fn grouping(self) -> Option<super::Grouping> {
        super::Grouping::for_scheme(self)
    }

    /// The scheme whose head layout this is.
    pub fn from_layout(layout: &HeadLayout) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|s| s.layout() == *layout)
    }
}

crate::named::impl_named!(Scheme, "landmark scheme");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_channel_counts_match_the_papers() {
        let totals: Vec<usize> = Scheme::ALL
            .iter()
            .map(|s| s.layout().total_channels())
            .collect();
        assert_eq!(totals, vec![205, 262, 901, 58]);
    }

    #[test]
    fn names_round_trip() {
        for s in Scheme::ALL {
            assert_eq!(s.name().parse::<Scheme>().unwrap(), s);
        }
        assert!("dm62".parse::<Scheme>().is_err());
    }
}
