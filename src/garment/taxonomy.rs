//! A taxonomy: categories, each category's landmarks and where they sit in the model's global
//! landmark layout (categories one after another, in order), horizontal-flip pairs, OKS sigmas
//! and a skeleton for drawing. [`Taxonomy`] is the runtime value every room reads;
//! [`DEEPFASHION2`] is the default, compiled in here: DeepFashion2's 13 categories and their
//! 294 landmarks. Others come from [`super::spec`] (built-in ones and files).
//!
//! Sources (numbers, not code): DeepFashion2 `evaluation/deepfashion2_to_coco.py` (layout) and
//! `deepfashion2_api/PythonAPI/pycocotools/cocoeval.py` (sigmas); flip pairs from
//! lzhbrian/deepfashion2-kps-agg-finetune, plus `9-17` for vest_dress and sling_dress (which it
//! omits; svip-lab's HRNet-for-Fashion has it). svip-lab's short_sleeved_outwear pairs `2-26, 4-6`
//! are a known bug; the correct `2-6, 4-26` is confirmed by the sigmas (DeepFashion2's OKS
//! sigmas in `deepfashion2_api/PythonAPI/pycocotools/cocoeval.py` are equal within each pair).

/// Number of landmarks in DeepFashion2's global layout.
pub const NUM_LANDMARKS: usize = 294;
/// Number of clothing categories.
pub const NUM_CATEGORIES: usize = 13;

/// One clothing category.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Category {
    /// 1-based DeepFashion2 category id.
    pub id: usize,
    /// COCO-style name (`deepfashion2_to_coco.py`).
    pub name: &'static str,
    /// Number of landmarks.
    pub num_landmarks: usize,
    /// First global (0-based) index in the 294 layout.
    pub start: usize,
    /// Horizontal-flip pairs, 1-based local indices.
    pub flip_pairs: &'static [(usize, usize)],
    /// OKS sigmas in local order.
    pub sigmas: &'static [f64],
    /// Landmark names in local order (empty: the 1-based local numbers, as DeepFashion2's).
    pub landmarks: &'static [&'static str],
    /// Landmark pairs to draw, 1-based local indices (empty: the landmarks in order).
    pub skeleton: &'static [(usize, usize)],
    /// The group (meaning) of each landmark, for grouping by name (empty: the landmark names).
    pub groups: &'static [&'static str],
}

impl Category {
    /// Global 0-based index range `[start, start + n)` in the 294 layout.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.num_landmarks
    }

    /// Mirror of a 0-based local landmark index (itself when self-symmetric).
    pub fn flip_local(&self, local: usize) -> usize {
        let l = local + 1;
        for &(a, b) in self.flip_pairs {
            if a == l {
                return b - 1;
            }
            if b == l {
                return a - 1;
            }
        }
        local
    }

    /// The group name of a 0-based local landmark (its name where the taxonomy gives no
    /// groups): landmarks of the same group name share a channel when grouped by name.
    pub fn group_name(&self, local: usize) -> String {
        self.groups
            .get(local)
            .map_or_else(|| self.landmark_name(local), |s| s.to_string())
    }

    /// The name of a 0-based local landmark (its 1-based number where the taxonomy names none).
    pub fn landmark_name(&self, local: usize) -> String {
        self.landmarks
            .get(local)
            .map_or_else(|| (local + 1).to_string(), |s| s.to_string())
    }
}

const fn cat(
    id: usize,
    name: &'static str,
    num_landmarks: usize,
    start: usize,
    flip_pairs: &'static [(usize, usize)],
    sigmas: &'static [f64],
) -> Category {
    Category {
        id,
        name,
        num_landmarks,
        start,
        flip_pairs,
        sigmas,
        landmarks: &[],
        skeleton: &[],
        groups: &[],
    }
}

/// The 13 categories in id order (`CATEGORIES[id - 1]`).
#[rustfmt::skip]
pub const CATEGORIES: [Category; NUM_CATEGORIES] = [
    cat(1, "short_sleeved_shirt", 25, 0,
        &[(2, 6), (3, 5), (7, 25), (8, 24), (9, 23), (10, 22), (11, 21), (12, 20), (13, 19), (14, 18), (15, 17)],
        &[0.012, 0.0158, 0.0169, 0.0165, 0.0169, 0.0158, 0.0298, 0.0329, 0.0321, 0.0323, 0.034, 0.0388, 0.0452,
          0.0574, 0.0492, 0.0352, 0.0492, 0.0574, 0.0452, 0.0388, 0.034, 0.0323, 0.0321, 0.0329, 0.0298]),
    cat(2, "long_sleeved_shirt", 33, 25,
        &[(2, 6), (3, 5), (7, 33), (8, 32), (9, 31), (10, 30), (11, 29), (12, 28), (13, 27), (14, 26), (15, 25),
          (16, 24), (17, 23), (18, 22), (19, 21)],
        &[0.0194, 0.017, 0.0185, 0.0193, 0.0185, 0.017, 0.0286, 0.0471, 0.0547, 0.0526, 0.043, 0.0392, 0.0513,
          0.0566, 0.0509, 0.0564, 0.0542, 0.0604, 0.0599, 0.052, 0.0599, 0.0604, 0.0542, 0.0564, 0.0509, 0.0566,
          0.0513, 0.0392, 0.043, 0.0526, 0.0547, 0.0471, 0.0286]),
    cat(3, "short_sleeved_outwear", 31, 58,
        &[(2, 6), (3, 5), (4, 26), (7, 25), (8, 24), (9, 23), (10, 22), (11, 21), (12, 20), (13, 19), (14, 18),
          (15, 17), (16, 29), (27, 30), (28, 31)],
        &[0.0074, 0.0085, 0.0165, 0.0248, 0.0165, 0.0085, 0.0156, 0.0231, 0.0296, 0.0137, 0.0195, 0.025, 0.0347,
          0.038, 0.0257, 0.037, 0.0257, 0.038, 0.0347, 0.025, 0.0195, 0.0137, 0.0296, 0.0231, 0.0156, 0.0248,
          0.0469, 0.0632, 0.037, 0.0469, 0.0632]),
    cat(4, "long_sleeved_outwear", 39, 89,
        &[(2, 6), (3, 5), (4, 34), (7, 33), (8, 32), (9, 31), (10, 30), (11, 29), (12, 28), (13, 27), (14, 26),
          (15, 25), (16, 24), (17, 23), (18, 22), (19, 21), (20, 37), (35, 38), (36, 39)],
        &[0.0137, 0.0153, 0.0243, 0.0377, 0.0243, 0.0153, 0.0203, 0.0366, 0.0467, 0.0433, 0.0393, 0.0329, 0.0418,
          0.0477, 0.0399, 0.0331, 0.042, 0.0492, 0.0436, 0.0478, 0.0436, 0.0492, 0.042, 0.0331, 0.0399, 0.0477,
          0.0418, 0.0329, 0.0393, 0.0433, 0.0467, 0.0366, 0.0203, 0.0377, 0.0645, 0.0573, 0.0478, 0.0645, 0.0573]),
    cat(5, "vest", 15, 128,
        &[(2, 6), (3, 5), (7, 15), (8, 14), (9, 13), (10, 12)],
        &[0.0352, 0.0158, 0.021, 0.0214, 0.021, 0.0158, 0.0196, 0.05, 0.0489, 0.0404, 0.0401, 0.0404, 0.0489, 0.05,
          0.0196]),
    cat(6, "sling", 15, 143,
        &[(2, 6), (3, 5), (7, 15), (8, 14), (9, 13), (10, 12)],
        &[0.0276, 0.0548, 0.0283, 0.0204, 0.0283, 0.0548, 0.0369, 0.0726, 0.0677, 0.064, 0.0251, 0.064, 0.0677,
          0.0726, 0.0369]),
    cat(7, "shorts", 10, 158,
        &[(1, 3), (4, 10), (5, 9), (6, 8)],
        &[0.0308, 0.0216, 0.0308, 0.0506, 0.0494, 0.0463, 0.0477, 0.0463, 0.0494, 0.0506]),
    cat(8, "trousers", 14, 168,
        &[(1, 3), (4, 14), (5, 13), (6, 12), (7, 11), (8, 10)],
        &[0.0275, 0.0202, 0.0275, 0.0651, 0.0451, 0.035, 0.028, 0.0392, 0.0362, 0.0392, 0.028, 0.035, 0.0451,
          0.0651]),
    cat(9, "skirt", 8, 182,
        &[(1, 3), (4, 8), (5, 7)],
        &[0.0253, 0.0195, 0.0253, 0.0513, 0.0543, 0.0415, 0.0543, 0.0513]),
    cat(10, "short_sleeved_dress", 29, 190,
        &[(2, 6), (3, 5), (7, 29), (8, 28), (9, 27), (10, 26), (11, 25), (12, 24), (13, 23), (14, 22), (15, 21),
          (16, 20), (17, 19)],
        &[0.0153, 0.023, 0.0167, 0.0145, 0.0167, 0.023, 0.0332, 0.0391, 0.0391, 0.0396, 0.044, 0.0452, 0.0498,
          0.0514, 0.0585, 0.0655, 0.0635, 0.0602, 0.0635, 0.0655, 0.0585, 0.0514, 0.0498, 0.0452, 0.044, 0.0396,
          0.0391, 0.0391, 0.0332]),
    cat(11, "long_sleeved_dress", 37, 219,
        &[(2, 6), (3, 5), (7, 37), (8, 36), (9, 35), (10, 34), (11, 33), (12, 32), (13, 31), (14, 30), (15, 29),
          (16, 28), (17, 27), (18, 26), (19, 25), (20, 24), (21, 23)],
        &[0.0121, 0.0134, 0.0158, 0.0162, 0.0158, 0.0134, 0.0246, 0.0406, 0.047, 0.0404, 0.0463, 0.0466, 0.0435,
          0.0499, 0.0455, 0.044, 0.0411, 0.049, 0.0576, 0.0685, 0.0618, 0.0483, 0.0618, 0.0685, 0.0576, 0.049,
          0.0411, 0.044, 0.0486, 0.0499, 0.0435, 0.0466, 0.0463, 0.0404, 0.047, 0.0406, 0.0246]),
    cat(12, "vest_dress", 19, 256,
        &[(2, 6), (3, 5), (7, 19), (8, 18), (9, 17), (10, 16), (11, 15), (12, 14)],
        &[0.0116, 0.0167, 0.016, 0.018, 0.016, 0.0167, 0.0196, 0.0385, 0.0421, 0.0497, 0.0562, 0.0528, 0.0428,
          0.0528, 0.0562, 0.0497, 0.0421, 0.0385, 0.0196]),
    cat(13, "sling_dress", 19, 275,
        &[(2, 6), (3, 5), (7, 19), (8, 18), (9, 17), (10, 16), (11, 15), (12, 14)],
        &[0.0244, 0.0297, 0.0244, 0.0208, 0.0244, 0.0297, 0.0173, 0.0616, 0.0659, 0.0712, 0.0707, 0.0685, 0.0339,
          0.0685, 0.0707, 0.0712, 0.0659, 0.0616, 0.0173]),
];

/// A taxonomy: categories in class order (the centre heatmap's channel `c` is
/// `categories[c]`), their landmarks tiling `0..num_landmarks` one category after another.
/// Values are `'static` (built in, or interned once per process by [`super::spec`]), so they
/// are passed as `&'static Taxonomy` and compared by content.
#[derive(Debug, PartialEq)]
pub struct Taxonomy {
    /// The taxonomy's name (`deepfashion2`, `coco-person`, …, or a file's `name`).
    pub name: &'static str,
    /// Categories in class order.
    pub categories: &'static [Category],
    /// Landmarks of all categories together (the global layout's length).
    pub num_landmarks: usize,
}

/// DeepFashion2's taxonomy: 13 categories, 294 landmarks (the default everywhere).
pub static DEEPFASHION2: Taxonomy = Taxonomy {
    name: "deepfashion2",
    categories: &CATEGORIES,
    num_landmarks: NUM_LANDMARKS,
};

impl Taxonomy {
    /// DeepFashion2's taxonomy.
    pub fn deepfashion2() -> &'static Taxonomy {
        &DEEPFASHION2
    }

    /// Whether this is DeepFashion2's taxonomy.
    pub fn is_deepfashion2(&self) -> bool {
        *self == DEEPFASHION2
    }

    /// Number of categories (centre-heatmap classes).
    pub fn num_categories(&self) -> usize {
        self.categories.len()
    }

    /// The category with this id, if any.
    pub fn category(&self, id: usize) -> Option<&'static Category> {
        let cats: &'static [Category] = self.categories;
        cats.iter().find(|c| c.id == id)
    }

    /// The class (0-based position) of a category id.
    pub fn class_of(&self, id: usize) -> Option<usize> {
        self.categories.iter().position(|c| c.id == id)
    }

    /// The category of a class (0-based position).
    pub fn of_class(&self, class: usize) -> Option<&'static Category> {
        let cats: &'static [Category] = self.categories;
        cats.get(class)
    }

    /// Category id and 0-based local index of a global landmark index.
    pub fn locate(&self, global: usize) -> Option<(usize, usize)> {
        self.categories
            .iter()
            .find(|c| c.range().contains(&global))
            .map(|c| (c.id, global - c.start))
    }

    /// The OKS sigmas in global order.
    pub fn oks_sigmas(&self) -> Vec<f64> {
        self.categories
            .iter()
            .flat_map(|c| c.sigmas.iter().copied())
            .collect()
    }

    /// Horizontal-flip permutation of the global landmark indices (an involution).
    pub fn flip_permutation(&self) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..self.num_landmarks).collect();
        for c in self.categories {
            for l in 0..c.num_landmarks {
                perm[c.start + l] = c.start + c.flip_local(l);
            }
        }
        perm
    }

    /// Category names, for messages (`a, b, c`).
    pub fn category_list(&self) -> String {
        self.categories
            .iter()
            .map(|c| format!("{} ({})", c.name, c.id))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Taxonomy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} categories, {} landmarks)",
            self.name,
            self.categories.len(),
            self.num_landmarks
        )
    }
}

/// The DeepFashion2 category with this 1-based id, if any.
pub fn category(id: usize) -> Option<&'static Category> {
    id.checked_sub(1).and_then(|i| CATEGORIES.get(i))
}

/// Category id (1-based) and 0-based local index of a global landmark index.
pub fn locate(global: usize) -> Option<(usize, usize)> {
    DEEPFASHION2.locate(global)
}

/// The 294 official OKS sigmas in global order.
pub fn oks_sigmas() -> Vec<f64> {
    DEEPFASHION2.oks_sigmas()
}

/// Horizontal-flip permutation of DeepFashion2's 294 global indices (an involution).
pub fn flip_permutation() -> Vec<usize> {
    DEEPFASHION2.flip_permutation()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sum_to_294_and_ranges_tile_the_layout() {
        assert_eq!(
            CATEGORIES.iter().map(|c| c.num_landmarks).sum::<usize>(),
            NUM_LANDMARKS
        );
        let mut next = 0;
        for (i, c) in CATEGORIES.iter().enumerate() {
            assert_eq!(c.id, i + 1);
            assert_eq!(c.start, next, "{}", c.name);
            assert_eq!(c.sigmas.len(), c.num_landmarks, "{}", c.name);
            next += c.num_landmarks;
        }
        assert_eq!(oks_sigmas().len(), NUM_LANDMARKS);
    }

    #[test]
    fn flip_maps_are_involutions_inside_each_category() {
        let perm = flip_permutation();
        for (g, &f) in perm.iter().enumerate() {
            assert_eq!(perm[f], g, "not an involution at {g}");
            assert_eq!(
                locate(g).unwrap().0,
                locate(f).unwrap().0,
                "flip leaves the category at {g}"
            );
        }
        for c in &CATEGORIES {
            let mut seen = std::collections::HashSet::new();
            for &(a, b) in c.flip_pairs {
                assert!(
                    a != b && a >= 1 && b <= c.num_landmarks,
                    "{}: bad pair {a}-{b}",
                    c.name
                );
                assert!(
                    seen.insert(a) && seen.insert(b),
                    "{}: index in two pairs",
                    c.name
                );
            }
        }
    }

    #[test]
    fn paired_sigmas_agree_except_the_documented_case() {
        let mut mismatches = Vec::new();
        for c in &CATEGORIES {
            for &(a, b) in c.flip_pairs {
                if (c.sigmas[a - 1] - c.sigmas[b - 1]).abs() > 1e-12 {
                    mismatches.push((c.id, a, b));
                }
            }
        }
        // long_sleeved_dress 15-29: 0.0455 vs 0.0486 in the official table.
        assert_eq!(mismatches, vec![(11, 15, 29)]);
    }

    #[test]
    fn short_sleeved_outwear_uses_the_sigma_confirmed_pairs() {
        let c = category(3).unwrap();
        assert_eq!(c.flip_local(1), 5); // 2-6
        assert_eq!(c.flip_local(3), 25); // 4-26
        assert!(category(0).is_none() && category(14).is_none());
    }
}
