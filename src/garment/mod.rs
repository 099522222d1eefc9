//! The garment vocabulary every other room uses: DeepFashion2's taxonomy (13 categories, the
//! 294-landmark layout, flip pairs, OKS sigmas) and the [`Item`] record (one garment in an image).
//! A leaf: it depends on nothing else in the crate.

pub mod taxonomy;

pub use taxonomy::{CATEGORIES, Category, NUM_CATEGORIES, NUM_LANDMARKS, category};

/// One garment: category, box and landmarks in the 294 layout (an annotation, or a detection
/// written as one).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// 1-based DeepFashion2 category id.
    pub category_id: usize,
    /// `[x, y, w, h]` in image pixels.
    pub bbox: [f32; 4],
    /// 294 `[x, y, v]` triplets (v: 0 unlabelled, 1 occluded, 2 visible); only the category's
    /// range can be labelled.
    pub keypoints: Vec<[f32; 3]>,
}

impl Item {
    /// Labelled landmarks.
    pub fn num_labelled(&self) -> usize {
        self.keypoints.iter().filter(|k| k[2] > 0.0).count()
    }
}
