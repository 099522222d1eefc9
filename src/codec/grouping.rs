//! Landmark grouping schemes: which network channel ("group") each landmark of a taxonomy uses.
//!
//! * `none`: one channel per landmark (294 for DeepFashion2).
//! * `by-name`: landmarks with the same name in different categories share a channel (any
//!   taxonomy; DeepMark++'s rule "same meaning, same group" where names say the meaning).
//! * `agg81`: the public 294 → 81 aggregation of lzhbrian/deepfashion2-kps-agg-finetune (MIT;
//!   `get_kpsname_to_id_map` in
//!   `HRNet-Human-Pose-Estimation/lib/dataset/deepfashion2agg81kps_util.py`): collar ring, sleeves, body sides, hems, straps, waist, legs… shared across categories.
//! * `deepmark62`: our 62-group table following DeepMark++'s rule (landmarks with the same
//!   semantic meaning in different categories share a group; two landmarks of one category never
//!   share one; the mirror image of every group is a group). The 62-group table of the paper is
//!   not public, so it is derived here from `agg81` by 19 merges of groups that never occur in
//!   the same category:
//!   - **sleeves (12 merges)**: a garment has short *or* long sleeves. Short sleeves have 6
//!     points per side (shoulder, outer seam, cuff outer, cuff inner, inner seam, armpit), long
//!     sleeves 10 (shoulder, three outer-seam points, cuff outer, cuff inner, three inner-seam
//!     points, armpit). The cuff is local 9/10 of short sleeve tops and 11/12 of long sleeve tops:
//!     the two closest points of the sleeve in the real annotations' mean normalised positions
//!     (long sleeve top 11 (0.13, 0.37) and 12 (0.19, 0.40); long sleeve outwear 11 (0.18, 0.32)
//!     and 12 (0.27, 0.31)) and the smallest sleeve OKS sigmas after the shoulder. So 81-groups
//!     short → long: 8→20 (shoulder), 9→22 (outer seam, middle), 10→24 (cuff outer),
//!     11→25 (cuff inner), 12→27 (inner seam, middle), 13→29 (armpit), and their mirrors
//!     19→39, 18→37, 17→35, 16→34, 15→32, 14→30.
//!   - **straps (2)**: vest/vest-dress straps 53/54 and sling/sling-dress straps 55/56 are the
//!     same shoulder-strap points; no category has both.
//!   - **hems (5)**: the dress hem 57–61 (side-low, hem left, hem centre, hem right, side-low) is
//!     the skirt's 76–80 (mean positions: dress (0.12, 0.57) (0.03, 0.86) (0.59, 0.98)
//!     (0.99, 0.79) (0.86, 0.56); skirt (0.10, 0.43) (0.12, 0.92) (0.57, 0.92) (0.99, 0.78)
//!     (0.85, 0.42)).
//!
//!   An absorbed 81-group takes the id of the group it is merged into; the 62 surviving ids are
//!   then renumbered 0..62 in ascending order. Group-level flip pairs are derived from the per-category flip pairs.

use std::collections::BTreeMap;

use super::scheme::Scheme;
use crate::garment::taxonomy::{Category, DEEPFASHION2, Taxonomy};

/// 0-based 81-group of each local landmark, per category: `get_kpsname_to_id_map` of
/// lzhbrian/deepfashion2-kps-agg-finetune (`deepfashion2agg81kps_util.py`; its 1-based ids minus
/// one, as its code subtracts one).
#[rustfmt::skip]
const AGG81: [&[usize]; 13] = [
    &[0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 40, 41, 42, 46, 43, 44, 45, 14, 15, 16, 17, 18, 19],
    &[0, 1, 2, 3, 4, 5, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 40, 41, 42, 46, 43, 44, 45, 30, 31, 32, 33, 34, 35,
      36, 37, 38, 39],
    &[0, 1, 2, 6, 4, 5, 8, 9, 10, 11, 12, 13, 40, 41, 42, 52, 43, 44, 45, 14, 15, 16, 17, 18, 19, 7, 47, 48, 49, 50,
      51],
    &[0, 1, 2, 6, 4, 5, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 40, 41, 42, 52, 43, 44, 45, 30, 31, 32, 33, 34, 35,
      36, 37, 38, 39, 7, 47, 48, 49, 50, 51],
    &[0, 1, 2, 3, 4, 5, 53, 40, 41, 42, 46, 43, 44, 45, 54],
    &[0, 1, 2, 3, 4, 5, 55, 40, 41, 42, 46, 43, 44, 45, 56],
    &[62, 63, 64, 70, 65, 66, 69, 67, 68, 71],
    &[62, 63, 64, 70, 72, 65, 66, 73, 69, 74, 67, 68, 75, 71],
    &[62, 63, 64, 76, 77, 78, 79, 80],
    &[0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 40, 41, 42, 57, 58, 59, 60, 61, 43, 44, 45, 14, 15, 16, 17, 18, 19],
    &[0, 1, 2, 3, 4, 5, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 40, 41, 42, 57, 58, 59, 60, 61, 43, 44, 45, 30, 31,
      32, 33, 34, 35, 36, 37, 38, 39],
    &[0, 1, 2, 3, 4, 5, 53, 40, 41, 42, 57, 58, 59, 60, 61, 43, 44, 45, 54],
    &[0, 1, 2, 3, 4, 5, 55, 40, 41, 42, 57, 58, 59, 60, 61, 43, 44, 45, 56],
];

/// The 19 merges `(absorbed 81-group, into 81-group)` that turn `agg81` into `deepmark62`.
const DEEPMARK62_MERGES: [(usize, usize); 19] = [
    // Short sleeve → long sleeve, left then right.
    (8, 20),
    (9, 22),
    (10, 24),
    (11, 25),
    (12, 27),
    (13, 29),
    (19, 39),
    (18, 37),
    (17, 35),
    (16, 34),
    (15, 32),
    (14, 30),
    // Sling straps → vest straps.
    (55, 53),
    (56, 54),
    // Dress hem → skirt hem.
    (76, 57),
    (77, 58),
    (78, 59),
    (79, 60),
    (80, 61),
];

/// A grouping of a taxonomy's landmarks into `num_groups` channels. Every lookup goes through
/// its methods; the table itself is private so that it can only be one of the validated ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    name: String,
    taxonomy: &'static Taxonomy,
    num_groups: usize,
    /// Group of each global landmark index.
    group_of: Vec<usize>,
}

/// Why a grouping table breaks the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupingError {
    /// The table does not have one entry per landmark (its length, the landmarks).
    #[error("table has {0} entries, expected {1} (one per landmark)")]
    WrongLength(usize, usize),
    /// A landmark's group index is not below the group count.
    #[error("landmark {landmark} maps to group {group}, out of range")]
    GroupOutOfRange {
        /// The landmark (0-based in the 294 layout).
        landmark: usize,
        /// Its group index.
        group: usize,
    },
    /// A group index below the group count that no landmark uses.
    #[error("group {0} has no landmark")]
    UnusedGroup(usize),
    /// Two landmarks of one category share a group (the decoder could not tell them apart).
    #[error(
        "category {category}: local landmarks {} and {} share group {group}",
        locals.0 + 1,
        locals.1 + 1
    )]
    SharedWithinCategory {
        /// 1-based category id.
        category: usize,
        /// The shared group.
        group: usize,
        /// The two landmarks, 0-based within the category.
        locals: (usize, usize),
    },
    /// Two landmarks of a group whose horizontal mirrors fall in different groups (flipping
    /// would mix groups).
    #[error(
        "group {group}: landmarks {} and {} have mirrors in different groups",
        landmarks.0,
        landmarks.1
    )]
    MirrorNotAGroup {
        /// The group.
        group: usize,
        /// The two landmarks (0-based in the 294 layout).
        landmarks: (usize, usize),
    },
}

impl From<GroupingError> for crate::error::Error {
    fn from(e: GroupingError) -> Self {
        crate::error::Error::Invalid(format!("invalid landmark grouping: {e}"))
    }
}

impl Grouping {
    /// The scheme's name (`deepmark62`, `agg81`, `none`, `by-name`, or a table's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The taxonomy whose landmarks are grouped.
    pub fn taxonomy(&self) -> &'static Taxonomy {
        self.taxonomy
    }

    /// The table: the group of each global landmark.
    pub fn table(&self) -> &[usize] {
        &self.group_of
    }

    /// One channel per landmark of `taxonomy` (`none`).
    pub fn identity(taxonomy: &'static Taxonomy) -> Grouping {
        Grouping {
            name: "none".into(),
            taxonomy,
            num_groups: taxonomy.num_landmarks,
            group_of: (0..taxonomy.num_landmarks).collect(),
        }
    }

    /// Landmarks of the same group name (the taxonomy's `groups`, else the landmark name) share
    /// a channel (`by-name`): groups are numbered in order of their first landmark. Validated (two landmarks of one category cannot share a name, and
    /// mirrors must map groups onto groups).
    pub fn by_name(taxonomy: &'static Taxonomy) -> Result<Grouping, GroupingError> {
        let mut ids: BTreeMap<String, usize> = BTreeMap::new();
        let mut group_of = Vec::with_capacity(taxonomy.num_landmarks);
        for c in taxonomy.categories {
            for l in 0..c.num_landmarks {
                let n = ids.len();
                group_of.push(*ids.entry(c.group_name(l)).or_insert(n));
            }
        }
        Grouping::from_table(taxonomy, "by-name", group_of)
    }

    /// A grouping from an explicit table (the group of each global landmark), validated.
    pub fn from_table(
        taxonomy: &'static Taxonomy,
        name: &str,
        group_of: Vec<usize>,
    ) -> Result<Grouping, GroupingError> {
        let g = Grouping {
            name: name.into(),
            taxonomy,
            num_groups: group_of.iter().max().map_or(0, |m| m + 1),
            group_of,
        };
        g.validate()?;
        Ok(g)
    }

    /// Landmark channels.
    pub fn num_groups(&self) -> usize {
        self.num_groups
    }

    /// The group of a global landmark index.
    pub fn group_of_landmark(&self, global: usize) -> usize {
        self.group_of[global]
    }

    /// The group of a category's 0-based local landmark.
    pub fn group(&self, category: &Category, local: usize) -> usize {
        self.group_of[category.start + local]
    }

    /// The groups of a category's landmarks, in local order.
    pub fn groups_of(&self, category: &Category) -> &[usize] {
        &self.group_of[category.range()]
    }

    /// The category's local landmark in `group`, if it has one (at most one, by the rules).
    pub fn local_in_group(&self, category: &Category, group: usize) -> Option<usize> {
        self.groups_of(category).iter().position(|&g| g == group)
    }

    /// The table of a scheme: DeepFashion2's for `deepmark62`, `agg81` and `none`; COCO's
    /// people, one channel per keypoint, for `coco17`. (`Option` for callers written when
    /// `coco17` had none; every scheme has one.)
    pub fn for_scheme(scheme: Scheme) -> Option<Grouping> {
        Some(match scheme {
            Scheme::None => Grouping::identity(&DEEPFASHION2),
            Scheme::Agg81 => Grouping {
                name: "agg81".into(),
                taxonomy: &DEEPFASHION2,
                num_groups: 81,
                group_of: AGG81.iter().flat_map(|g| g.iter().copied()).collect(),
            },
            Scheme::Deepmark62 => deepmark62(),
            Scheme::Coco17 => Grouping {
                name: "coco17".into(),
                ..Grouping::identity(Taxonomy::builtin("coco-person").expect("built-in taxonomy"))
            },
        })
    }

    /// [`for_scheme`](Self::for_scheme) as a `Result`.
    pub fn of_scheme(scheme: Scheme) -> crate::error::Result<Grouping> {
        Self::for_scheme(scheme).ok_or_else(|| {
            crate::error::Error::invalid(format!("scheme {scheme} has no landmark grouping"))
        })
    }

    /// The grouping named `scheme` of a taxonomy: DeepFashion2's schemes for DeepFashion2
    /// (`by-name` too), `none` or `by-name` for any other, and `coco17` for `coco-person`.
    pub fn for_taxonomy(
        taxonomy: &'static Taxonomy,
        scheme: &str,
    ) -> crate::error::Result<Grouping> {
        if scheme == "by-name" {
            return Ok(Grouping::by_name(taxonomy)?);
        }
        let parsed: Option<Scheme> = scheme.parse().ok();
        if let Some(s) = parsed {
            let g = Self::of_scheme(s)?;
            if g.taxonomy == taxonomy {
                return Ok(g);
            }
        }
        if scheme == "none" {
            return Ok(Grouping::identity(taxonomy));
        }
        Err(crate::error::Error::invalid(format!(
            "scheme {scheme:?} does not group the landmarks of the taxonomy {}: use `none` or \
             `by-name`{}",
            taxonomy.name,
            if taxonomy.is_deepfashion2() {
                ", `deepmark62` or `agg81`"
            } else {
                ""
            }
        )))
    }

    /// Check the rules: every landmark has a group in range, every group is used, no two
    /// landmarks of one category share a group, and mirroring maps groups onto groups.
    pub fn validate(&self) -> Result<(), GroupingError> {
        if self.group_of.len() != self.taxonomy.num_landmarks {
            return Err(GroupingError::WrongLength(
                self.group_of.len(),
                self.taxonomy.num_landmarks,
            ));
        }
        let mut used = vec![false; self.num_groups];
        for (landmark, &group) in self.group_of.iter().enumerate() {
            if group >= self.num_groups {
                return Err(GroupingError::GroupOutOfRange { landmark, group });
            }
            used[group] = true;
        }
        if let Some(g) = used.iter().position(|u| !u) {
            return Err(GroupingError::UnusedGroup(g));
        }
        for c in self.taxonomy.categories {
            let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
            for l in 0..c.num_landmarks {
                let g = self.group_of[c.start + l];
                if let Some(&other) = seen.get(&g) {
                    return Err(GroupingError::SharedWithinCategory {
                        category: c.id,
                        group: g,
                        locals: (other, l),
                    });
                }
                seen.insert(g, l);
            }
        }
        self.flip_groups().map(|_| ())
    }

    /// Group-level mirror map derived from the landmark flip pairs: `flip[g]` is the group of
    /// the mirror of any landmark of group `g`.
    pub fn flip_groups(&self) -> Result<Vec<usize>, GroupingError> {
        let perm = self.taxonomy.flip_permutation();
        let mut flip: Vec<Option<(usize, usize)>> = vec![None; self.num_groups];
        for (landmark, &g) in self.group_of.iter().enumerate() {
            let mirrored = self.group_of[perm[landmark]];
            match flip[g] {
                None => flip[g] = Some((mirrored, landmark)),
                Some((m, first)) if m != mirrored => {
                    return Err(GroupingError::MirrorNotAGroup {
                        group: g,
                        landmarks: (first, landmark),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(flip
            .into_iter()
            .enumerate()
            .map(|(g, f)| f.map_or(g, |(m, _)| m))
            .collect())
    }

    /// Group-level flip pairs `(a, b)` with `a < b`.
    pub fn flip_pairs(&self) -> Vec<(usize, usize)> {
        let flip = self.flip_groups().expect("validated grouping");
        flip.iter()
            .enumerate()
            .filter(|&(g, &m)| g < m)
            .map(|(g, &m)| (g, m))
            .collect()
    }

    /// Encode one item's landmarks (the taxonomy's global layout, `[x, y, v]`) into group slots: returns
    /// `num_groups` entries, `Some` where the category has a landmark in that group.
    pub fn encode(&self, category: &Category, landmarks: &[[f32; 3]]) -> Vec<Option<[f32; 3]>> {
        let mut out = vec![None; self.num_groups];
        for l in 0..category.num_landmarks {
            let g = self.group_of[category.start + l];
            out[g] = Some(landmarks[category.start + l]);
        }
        out
    }

    /// Decode group slots back into the global layout for `category` (other categories' slots
    /// are zero).
    pub fn decode(&self, category: &Category, groups: &[Option<[f32; 3]>]) -> Vec<[f32; 3]> {
        let mut out = vec![[0.0; 3]; self.taxonomy.num_landmarks];
        for l in 0..category.num_landmarks {
            if let Some(v) = groups[self.group_of[category.start + l]] {
                out[category.start + l] = v;
            }
        }
        out
    }
}

/// A model's taxonomy and grouping as its config saves them: the taxonomy in full and the
/// group of each landmark, so that weights carry what their channels mean.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelTaxonomy {
    /// The taxonomy.
    pub taxonomy: crate::garment::TaxonomyDef,
    /// The grouping's name (`none`, `by-name`, …).
    pub scheme: String,
    /// The group of each global landmark.
    pub groups: Vec<usize>,
}

impl ModelTaxonomy {
    /// What a config saves of `grouping`.
    pub fn of(grouping: &Grouping) -> ModelTaxonomy {
        ModelTaxonomy {
            taxonomy: grouping.taxonomy.def(),
            scheme: grouping.name.clone(),
            groups: grouping.group_of.clone(),
        }
    }

    /// The grouping, checked.
    pub fn grouping(&self) -> crate::error::Result<Grouping> {
        let tax = self.taxonomy.intern()?;
        Ok(Grouping::from_table(
            tax,
            &self.scheme,
            self.groups.clone(),
        )?)
    }
}

fn deepmark62() -> Grouping {
    let mut target: Vec<usize> = (0..81).collect();
    for (absorbed, into) in DEEPMARK62_MERGES {
        target[absorbed] = into;
    }
    let survivors: Vec<usize> = (0..81).filter(|&g| target[g] == g).collect();
    let new_id: BTreeMap<usize, usize> =
        survivors.iter().enumerate().map(|(i, &g)| (g, i)).collect();
    let group_of = AGG81
        .iter()
        .flat_map(|g| g.iter().map(|&a| new_id[&target[a]]))
        .collect();
    Grouping {
        name: "deepmark62".into(),
        taxonomy: &DEEPFASHION2,
        num_groups: survivors.len(),
        group_of,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::garment::taxonomy::{CATEGORIES, NUM_LANDMARKS};

    fn all() -> Vec<Grouping> {
        [Scheme::None, Scheme::Agg81, Scheme::Deepmark62]
            .map(|s| Grouping::for_scheme(s).unwrap())
            .to_vec()
    }

    #[test]
    fn every_scheme_passes_the_validator_with_the_documented_sizes() {
        let sizes: Vec<usize> = all().iter().map(|g| g.num_groups).collect();
        assert_eq!(sizes, vec![294, 81, 62]);
        for g in all() {
            g.validate().unwrap_or_else(|e| panic!("{}: {e}", g.name));
        }
    }

    #[test]
    fn agg81_flip_pairs_are_the_published_ones() {
        let g = Grouping::for_scheme(Scheme::Agg81).unwrap();
        let pairs = g.flip_pairs();
        assert_eq!(pairs.len(), 37);
        let flip = g.flip_groups().unwrap();
        let selfsym: Vec<usize> = (0..81).filter(|&i| flip[i] == i).collect();
        assert_eq!(selfsym, vec![0, 3, 46, 59, 63, 69, 78]);
        for p in [
            (1, 5),
            (6, 7),
            (8, 19),
            (20, 39),
            (53, 54),
            (57, 61),
            (76, 80),
        ] {
            assert!(pairs.contains(&p), "{p:?}");
        }
    }

    #[test]
    fn broken_tables_fail_the_validator() {
        let good = Grouping::for_scheme(Scheme::Deepmark62).unwrap();
        // Two landmarks of category 1 (locals 2 and 3) in one group.
        let mut shared = good.clone();
        shared.group_of[2] = shared.group_of[1];
        assert!(matches!(
            shared.validate(),
            Err(GroupingError::SharedWithinCategory { category: 1, .. })
        ));
        // Merge a left-only group with a self-symmetric one: the mirror is no longer a group.
        let mut mirror = Grouping::for_scheme(Scheme::Agg81).unwrap();
        let skirt = CATEGORIES[8];
        mirror.group_of[skirt.start + 3] = 46; // skirt's left side (76) into the top hem centre
        mirror.num_groups = 81;
        assert!(mirror.validate().is_err());
        let mut short = good.clone();
        short.group_of.pop();
        assert_eq!(short.validate(), Err(GroupingError::WrongLength(293, 294)));
        let mut range = good.clone();
        range.group_of[0] = 62;
        assert!(matches!(
            range.validate(),
            Err(GroupingError::GroupOutOfRange { .. })
        ));
    }

    #[test]
    fn deepmark62_merges_short_and_long_sleeves() {
        let g = Grouping::for_scheme(Scheme::Deepmark62).unwrap();
        let (short, long) = (CATEGORIES[0], CATEGORIES[1]);
        // Shoulder, cuffs and armpit of the left sleeve.
        for (s, l) in [(6, 6), (8, 10), (9, 11), (11, 15)] {
            assert_eq!(g.group_of[short.start + s], g.group_of[long.start + l]);
        }
        // The sleeve groups' mirrors are the right sleeve's.
        let flip = g.flip_groups().unwrap();
        assert_eq!(
            flip[g.group_of[short.start + 6]],
            g.group_of[short.start + 24]
        );
    }

    #[test]
    fn encode_decode_round_trips_for_every_category() {
        for g in all() {
            for c in &CATEGORIES {
                let lm: Vec<[f32; 3]> = (0..NUM_LANDMARKS)
                    .map(|i| {
                        if c.range().contains(&i) {
                            [i as f32, 2.0 * i as f32, 2.0]
                        } else {
                            [0.0; 3]
                        }
                    })
                    .collect();
                let enc = g.encode(c, &lm);
                assert_eq!(enc.iter().filter(|e| e.is_some()).count(), c.num_landmarks);
                assert_eq!(g.decode(c, &enc), lm, "{} category {}", g.name, c.id);
            }
        }
    }
}
