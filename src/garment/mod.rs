//! The vocabulary every other room uses: taxonomies (categories, their landmarks in the model's
//! global layout, flip pairs, OKS sigmas, skeletons; DeepFashion2's 13 categories and 294
//! landmarks by default, others built in or read from data) and the [`Item`] record (one object
//! in an image).

pub mod spec;
pub mod taxonomy;

pub use spec::{TaxonomyChoice, TaxonomyDef};
pub use taxonomy::{
    CATEGORIES, Category, DEEPFASHION2, NUM_CATEGORIES, NUM_LANDMARKS, Taxonomy, category,
};

/// One garment (or other object): category, box and landmarks in its taxonomy's global layout
/// (DeepFashion2's 294 by default; an annotation, or a detection written as one).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Category id in its taxonomy (DeepFashion2: 1–13).
    pub category_id: usize,
    /// `[x, y, w, h]` in image pixels.
    pub bbox: [f32; 4],
    /// The global layout's `[x, y, v]` triplets (294 for DeepFashion2) (v: 0 unlabelled, 1 occluded, 2 visible); only the category's
    /// range can be labelled.
    pub keypoints: Vec<[f32; 3]>,
}

impl Item {
    /// Labelled landmarks.
    pub fn num_labelled(&self) -> usize {
        self.keypoints.iter().filter(|k| k[2] > 0.0).count()
    }
}
