//! Taxonomies as data: [`TaxonomyDef`] (what a file or a model config says), the built-in ones
//! (`deepfashion2`, `coco-person`, `deepfashion-fld`, `fashionai`), taxonomies read from a COCO keypoints
//! file's `categories` and completed by a taxonomy file, and [`TaxonomyDef::intern`], which
//! checks a definition and turns it into the `&'static` [`Taxonomy`] every room reads.
//!
//! A taxonomy file is JSON: `{"name": "...", "categories": [{"name": "...", "keypoints": [...],
//! "flip_pairs": [["left_eye", "right_eye"], ...], "sigmas": [...], "skeleton": [[1, 2], ...]}]}`.
//! Landmarks in pairs are names or 1-based numbers. Categories are matched to a COCO file's by
//! `name`; what the COCO file says (`keypoints`, `skeleton`) needs not be repeated.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::taxonomy::{Category, DEEPFASHION2, NUM_LANDMARKS, Taxonomy};
use crate::error::DataError;

/// The OKS sigma of a landmark whose taxonomy gives none: 0.05, between the means of
/// DeepFashion2's 294 official sigmas (0.038) and COCO's 17 person sigmas (0.066).
pub const DEFAULT_SIGMA: f64 = 0.05;

/// Names of the built-in taxonomies.
pub const BUILTIN_NAMES: [&str; 4] = [
    "deepfashion2",
    "coco-person",
    "deepfashion-fld",
    "fashionai",
];

/// A landmark named in a pair: its 1-based number or its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LandmarkRef {
    /// 1-based local number.
    Number(usize),
    /// Landmark name.
    Name(String),
}

impl std::fmt::Display for LandmarkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LandmarkRef::Number(n) => write!(f, "{n}"),
            LandmarkRef::Name(s) => write!(f, "{s:?}"),
        }
    }
}

/// One category of a [`TaxonomyDef`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryDef {
    /// Category id as the data writes it (`category_id`).
    pub id: usize,
    /// Name.
    pub name: String,
    /// Landmark names in local order.
    pub keypoints: Vec<String>,
    /// Horizontal-flip pairs, 1-based local numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flip_pairs: Vec<[usize; 2]>,
    /// OKS sigmas in local order.
    pub sigmas: Vec<f64>,
    /// Landmark pairs to draw, 1-based local numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skeleton: Vec<[usize; 2]>,
    /// Each landmark's group (meaning) for grouping by name; empty: the landmark names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A complete taxonomy as data (saved in model configs; [`TaxonomyDef::intern`] makes the
/// runtime value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaxonomyDef {
    /// Name.
    pub name: String,
    /// Categories in class order; their landmarks tile the global layout in this order.
    pub categories: Vec<CategoryDef>,
}

/// One category of a taxonomy file: everything but `name` may be left to the COCO file (or,
/// for `flip_pairs` and `sigmas`, to inference and the default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryPatch {
    /// Category id (default: the COCO file's, or the position from 1).
    #[serde(default)]
    pub id: Option<usize>,
    /// Name (matches the COCO file's category).
    pub name: String,
    /// Landmark names.
    #[serde(default)]
    pub keypoints: Option<Vec<String>>,
    /// Horizontal-flip pairs (names or 1-based numbers).
    #[serde(default)]
    pub flip_pairs: Option<Vec<[LandmarkRef; 2]>>,
    /// OKS sigmas in local order.
    #[serde(default)]
    pub sigmas: Option<Vec<f64>>,
    /// Landmark pairs to draw (names or 1-based numbers).
    #[serde(default)]
    pub skeleton: Option<Vec<[LandmarkRef; 2]>>,
    /// Each landmark's group (meaning), in landmark order: landmarks of one group name, in
    /// different categories, share a channel under `--scheme by-name` (an explicit grouping
    /// table).
    #[serde(default)]
    pub groups: Option<Vec<String>>,
}

/// A taxonomy file (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxonomyFile {
    /// Name of the taxonomy (default: the file's stem).
    #[serde(default)]
    pub name: Option<String>,
    /// Categories.
    pub categories: Vec<CategoryPatch>,
}

/// Where a taxonomy comes from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TaxonomyChoice {
    /// Read from the data (a COCO file's `categories`; DeepFashion2 files and models saved
    /// without a taxonomy are DeepFashion2's).
    #[default]
    FromData,
    /// A built-in one by name.
    Builtin(String),
    /// A taxonomy file.
    File(PathBuf),
    /// This one (a model's): the data must agree with it.
    Given(&'static Taxonomy),
}

impl std::str::FromStr for TaxonomyChoice {
    type Err = std::convert::Infallible;

    /// A built-in name, else a file path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if BUILTIN_NAMES.contains(&s) {
            TaxonomyChoice::Builtin(s.to_string())
        } else {
            TaxonomyChoice::File(PathBuf::from(s))
        })
    }
}

impl std::fmt::Display for TaxonomyChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaxonomyChoice::FromData => write!(f, "read from the data"),
            TaxonomyChoice::Builtin(n) => write!(f, "{n}"),
            TaxonomyChoice::File(p) => write!(f, "{}", p.display()),
            TaxonomyChoice::Given(t) => write!(f, "{}", t.name),
        }
    }
}

/// COCO's 17 person keypoints (`person_keypoints_*.json`).
const COCO_PERSON_KEYPOINTS: [&str; 17] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// COCO's person skeleton (1-based, `person_keypoints_*.json`).
const COCO_PERSON_SKELETON: [[usize; 2]; 19] = [
    [16, 14],
    [14, 12],
    [17, 15],
    [15, 13],
    [12, 13],
    [6, 12],
    [7, 13],
    [6, 7],
    [6, 8],
    [7, 9],
    [8, 10],
    [9, 11],
    [2, 3],
    [1, 2],
    [1, 3],
    [2, 4],
    [3, 5],
    [4, 6],
    [5, 7],
];

/// DeepFashion's 8 fashion landmarks (Liu et al., "Fashion Landmark Detection in the Wild",
/// ECCV 2016; names as mmpose's DeepFashion full-body files write them).
const FLD_KEYPOINTS: [&str; 8] = [
    "left collar",
    "right collar",
    "left sleeve",
    "right sleeve",
    "left waistline",
    "right waistline",
    "left hem",
    "right hem",
];

impl TaxonomyDef {
    /// A built-in taxonomy by name ([`BUILTIN_NAMES`]).
    pub fn builtin(name: &str) -> Option<TaxonomyDef> {
        match name {
            "deepfashion2" => Some(DEEPFASHION2.def()),
            // COCO's sigmas (pycocotools `cocoeval.py`, divided by 10) and CenterNet's flip
            // pairs (`coco_hp.py` `flip_idx`, 0-based [[1,2],[3,4],…,[15,16]]).
            "coco-person" => Some(TaxonomyDef {
                name: "coco-person".into(),
                categories: vec![CategoryDef {
                    id: 1,
                    name: "person".into(),
                    keypoints: COCO_PERSON_KEYPOINTS.map(String::from).to_vec(),
                    flip_pairs: (1..=8).map(|p| [2 * p, 2 * p + 1]).collect(),
                    sigmas: crate::eval::coco::coco_person_sigmas(),
                    skeleton: COCO_PERSON_SKELETON.to_vec(),
                    groups: Vec::new(),
                }],
            }),
            // DeepFashion publishes no OKS sigmas; these are DeepFashion2's official ones of
            // the same points (DeepFashion2 `cocoeval.py`): the short-sleeved shirt's neckline
            // sides (local 2/6: 0.0158) for the collar, the mean of its cuff points (9/10:
            // 0.0321, 0.0323) for the sleeve, the trousers' waistband ends (1/3: 0.0275) for
            // the waistline and the shirt's hem corners (15/17: 0.0492) for the hem.
            "deepfashion-fld" => Some(TaxonomyDef {
                name: "deepfashion-fld".into(),
                categories: vec![CategoryDef {
                    id: 1,
                    name: "fashion".into(),
                    keypoints: FLD_KEYPOINTS.map(String::from).to_vec(),
                    flip_pairs: vec![[1, 2], [3, 4], [5, 6], [7, 8]],
                    sigmas: vec![
                        0.0158, 0.0158, 0.0322, 0.0322, 0.0275, 0.0275, 0.0492, 0.0492,
                    ],
                    skeleton: vec![
                        [1, 2],
                        [1, 3],
                        [2, 4],
                        [1, 5],
                        [2, 6],
                        [5, 7],
                        [6, 8],
                        [7, 8],
                    ],
                    groups: Vec::new(),
                }],
            }),
            // FashionAI's 5 categories and 24 landmark names (53 in the global layout).
            "fashionai" => Some(crate::data::fashionai::taxonomy_def()),
            _ => None,
        }
    }

    /// Total landmarks.
    pub fn num_landmarks(&self) -> usize {
        self.categories.iter().map(|c| c.keypoints.len()).sum()
    }

    /// Check the definition: at least one category; ids unique and ≥ 1; names unique; each
    /// category with landmarks, unique landmark names, one finite positive sigma per landmark,
    /// flip pairs that are pairs (two different landmarks of the category, none in two pairs)
    /// and skeleton links inside the category. The error names the field.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.categories.is_empty() {
            return Err(("categories".into(), "is empty".into()));
        }
        let mut ids = BTreeSet::new();
        let mut names = BTreeSet::new();
        for (i, c) in self.categories.iter().enumerate() {
            let at = |f: &str| format!("categories[{i}].{f}");
            if c.id == 0 || !ids.insert(c.id) {
                return Err((at("id"), format!("{} is 0 or used twice", c.id)));
            }
            if c.name.is_empty() || !names.insert(c.name.as_str()) {
                return Err((at("name"), format!("{:?} is empty or used twice", c.name)));
            }
            let n = c.keypoints.len();
            if n == 0 {
                return Err((at("keypoints"), format!("{}: no landmarks", c.name)));
            }
            let mut seen = BTreeSet::new();
            if let Some(k) = c.keypoints.iter().find(|k| !seen.insert(k.as_str())) {
                return Err((at("keypoints"), format!("{}: {k:?} named twice", c.name)));
            }
            if c.sigmas.len() != n {
                return Err((
                    at("sigmas"),
                    format!(
                        "{}: {} sigmas for {n} landmarks (one per landmark)",
                        c.name,
                        c.sigmas.len()
                    ),
                ));
            }
            if let Some(s) = c.sigmas.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return Err((at("sigmas"), format!("{}: {s} is not positive", c.name)));
            }
            let mut paired = BTreeSet::new();
            for &[a, b] in &c.flip_pairs {
                if a == b || a == 0 || b == 0 || a > n || b > n {
                    return Err((
                        at("flip_pairs"),
                        format!(
                            "{}: [{a}, {b}] is not a pair of two landmarks in 1..={n}",
                            c.name
                        ),
                    ));
                }
                if !paired.insert(a) || !paired.insert(b) {
                    return Err((
                        at("flip_pairs"),
                        format!("{}: [{a}, {b}]: a landmark is in two pairs", c.name),
                    ));
                }
            }
            if !c.groups.is_empty() && c.groups.len() != n {
                return Err((
                    at("groups"),
                    format!(
                        "{}: {} groups for {n} landmarks (one per landmark)",
                        c.name,
                        c.groups.len()
                    ),
                ));
            }
            for &[a, b] in &c.skeleton {
                if a == 0 || b == 0 || a > n || b > n {
                    return Err((
                        at("skeleton"),
                        format!("{}: [{a}, {b}] is outside 1..={n}", c.name),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The runtime taxonomy: checked, then allocated once per process (an equal definition
    /// returns the same value; DeepFashion2's is the compiled-in [`DEEPFASHION2`]).
    pub fn intern(&self) -> crate::Result<&'static Taxonomy> {
        self.check().map_err(|(field, m)| {
            crate::error::Error::invalid(format!("taxonomy {:?}: field `{field}`: {m}", self.name))
        })?;
        if *self == DEEPFASHION2.def() {
            return Ok(&DEEPFASHION2);
        }
        static INTERNED: Mutex<Vec<(TaxonomyDef, &'static Taxonomy)>> = Mutex::new(Vec::new());
        let mut interned = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, t)) = interned.iter().find(|(d, _)| d == self) {
            return Ok(t);
        }
        let leak_str = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
        let mut start = 0;
        let mut categories = Vec::with_capacity(self.categories.len());
        for c in &self.categories {
            let pairs: Vec<(usize, usize)> = c.flip_pairs.iter().map(|p| (p[0], p[1])).collect();
            let skeleton: Vec<(usize, usize)> = c.skeleton.iter().map(|p| (p[0], p[1])).collect();
            let landmarks: Vec<&'static str> = c.keypoints.iter().map(|k| leak_str(k)).collect();
            let groups: Vec<&'static str> = c.groups.iter().map(|k| leak_str(k)).collect();
            categories.push(Category {
                id: c.id,
                name: leak_str(&c.name),
                num_landmarks: c.keypoints.len(),
                start,
                flip_pairs: Box::leak(pairs.into_boxed_slice()),
                sigmas: Box::leak(c.sigmas.clone().into_boxed_slice()),
                landmarks: Box::leak(landmarks.into_boxed_slice()),
                skeleton: Box::leak(skeleton.into_boxed_slice()),
                groups: Box::leak(groups.into_boxed_slice()),
            });
            start += c.keypoints.len();
        }
        let t: &'static Taxonomy = Box::leak(Box::new(Taxonomy {
            name: leak_str(&self.name),
            categories: Box::leak(categories.into_boxed_slice()),
            num_landmarks: start,
        }));
        interned.push((self.clone(), t));
        Ok(t)
    }
}

impl Taxonomy {
    /// This taxonomy as data (what a model config saves).
    pub fn def(&self) -> TaxonomyDef {
        TaxonomyDef {
            name: self.name.to_string(),
            categories: self
                .categories
                .iter()
                .map(|c| CategoryDef {
                    id: c.id,
                    name: c.name.to_string(),
                    keypoints: (0..c.num_landmarks).map(|l| c.landmark_name(l)).collect(),
                    flip_pairs: c.flip_pairs.iter().map(|&(a, b)| [a, b]).collect(),
                    sigmas: c.sigmas.to_vec(),
                    skeleton: c.skeleton.iter().map(|&(a, b)| [a, b]).collect(),
                    groups: c.groups.iter().map(|g| g.to_string()).collect(),
                })
                .collect(),
        }
    }

    /// A built-in taxonomy by name.
    pub fn builtin(name: &str) -> Option<&'static Taxonomy> {
        TaxonomyDef::builtin(name).map(|d| d.intern().expect("built-in taxonomies are valid"))
    }
}

/// One category as a COCO keypoints file declares it (`categories[i]`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredCategory {
    /// `id`.
    pub id: i64,
    /// `name`.
    pub name: String,
    /// `keypoints` (landmark names).
    pub keypoints: Vec<String>,
    /// `skeleton` as the file gives it (1-based pairs; other shapes are an error).
    pub skeleton: Vec<serde_json::Value>,
}

/// Flip pairs inferred from names: each landmark whose name has the word `left` is paired with
/// the landmark named the same with `right` (words split at `_`, `-`, space; any case).
pub fn infer_flip_pairs(keypoints: &[String]) -> Vec<[usize; 2]> {
    let swap = |name: &str| -> Option<String> {
        let lower = name.to_lowercase();
        let mut out = String::with_capacity(lower.len());
        let mut found = false;
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String, found: &mut bool| {
            if word == "left" {
                out.push_str("right");
                *found = true;
            } else {
                out.push_str(word);
            }
            word.clear();
        };
        for ch in lower.chars() {
            if ch == '_' || ch == '-' || ch == ' ' {
                flush(&mut word, &mut out, &mut found);
                out.push(ch);
            } else {
                word.push(ch);
            }
        }
        flush(&mut word, &mut out, &mut found);
        found.then_some(out)
    };
    let index: BTreeMap<String, usize> = keypoints
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_lowercase(), i + 1))
        .collect();
    let mut pairs = Vec::new();
    for (i, k) in keypoints.iter().enumerate() {
        if let Some(&j) = swap(k).and_then(|r| index.get(&r))
            && j != i + 1
        {
            pairs.push([i + 1, j]);
        }
    }
    pairs
}

/// A landmark reference resolved against a category's names.
fn resolve_ref(r: &LandmarkRef, keypoints: &[String]) -> Option<usize> {
    match r {
        LandmarkRef::Number(n) => (1..=keypoints.len()).contains(n).then_some(*n),
        LandmarkRef::Name(s) => keypoints.iter().position(|k| k == s).map(|i| i + 1),
    }
}

/// Resolve pairs of a category patch, naming the field on an unknown landmark.
fn resolve_pairs(
    file: &Path,
    field: &str,
    category: &str,
    pairs: &[[LandmarkRef; 2]],
    keypoints: &[String],
) -> Result<Vec<[usize; 2]>, DataError> {
    pairs
        .iter()
        .map(|[a, b]| {
            let one = |r: &LandmarkRef| {
                resolve_ref(r, keypoints).ok_or_else(|| {
                    DataError::new(
                        file,
                        format!("category {category:?}: "),
                        field,
                        format!(
                            "{r} is not one of its {} landmarks ({})",
                            keypoints.len(),
                            keypoints.join(", ")
                        ),
                    )
                })
            };
            Ok([one(a)?, one(b)?])
        })
        .collect()
}

/// What resolving a taxonomy decided, for the user to read (inferred flip pairs, default
/// sigmas, a built-in taxonomy recognised).
pub type Notes = Vec<String>;

/// Read a taxonomy file.
pub fn read_taxonomy_file(path: &Path) -> Result<TaxonomyFile, DataError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DataError::new(path, "", "-", format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| {
        DataError::new(
            path,
            "",
            "(see message)",
            format!(
                "not a taxonomy file (line {} column {}): {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

fn check_def(file: &Path, def: TaxonomyDef) -> Result<TaxonomyDef, DataError> {
    def.check()
        .map_err(|(field, m)| DataError::new(file, "", &field, m))?;
    Ok(def)
}

/// Whether a COCO file's categories are DeepFashion2's as `deepfashion2_to_coco.py` writes
/// them (each declaring all 294 numbered landmarks).
fn is_deepfashion2_file(declared: &[DeclaredCategory]) -> bool {
    !declared.is_empty()
        && declared.iter().all(|c| {
            c.keypoints.len() == NUM_LANDMARKS
                && DEEPFASHION2
                    .category(usize::try_from(c.id).unwrap_or(0))
                    .is_some_and(|d| d.name == c.name)
        })
}

/// The taxonomy of a COCO keypoints file (`file`, its `declared` categories), as `choice` says:
/// read from the file (DeepFashion2's files are DeepFashion2's; a file whose categories and
/// landmark names equal a built-in taxonomy's is that one; otherwise flip pairs are inferred from
/// `left`/`right` names and sigmas default to [`DEFAULT_SIGMA`], each said in the notes), a
/// built-in one (which must agree with the file's categories), or a taxonomy file completing
/// the COCO file's categories. Errors name the file and the field.
pub fn resolve(
    choice: &TaxonomyChoice,
    file: &Path,
    declared: &[DeclaredCategory],
) -> Result<(&'static Taxonomy, Notes), DataError> {
    let mut notes = Notes::new();
    let def = match choice {
        TaxonomyChoice::Given(t) => {
            agree(file, &t.def(), declared)?;
            return Ok((t, notes));
        }
        TaxonomyChoice::Builtin(name) => {
            let def = TaxonomyDef::builtin(name).ok_or_else(|| {
                DataError::new(
                    file,
                    "",
                    "--taxonomy",
                    format!(
                        "{name:?} is not a built-in taxonomy ({})",
                        BUILTIN_NAMES.join(", ")
                    ),
                )
            })?;
            agree(file, &def, declared)?;
            def
        }
        TaxonomyChoice::File(path) => {
            let patch = read_taxonomy_file(path)?;
            let def = complete(path, &patch, declared, &mut notes)?;
            agree(file, &def, declared)?;
            def
        }
        TaxonomyChoice::FromData => {
            if declared.is_empty() || is_deepfashion2_file(declared) {
                DEEPFASHION2.def()
            } else {
                let patch = TaxonomyFile {
                    name: None,
                    categories: Vec::new(),
                };
                let def = complete(file, &patch, declared, &mut notes)?;
                match BUILTIN_NAMES
                    .iter()
                    .find_map(|n| TaxonomyDef::builtin(n).filter(|b| same_landmarks(b, &def)))
                {
                    Some(b) => {
                        notes.clear();
                        notes.push(format!(
                            "{}: categories and landmarks are the built-in `{}` taxonomy's",
                            file.display(),
                            b.name
                        ));
                        b
                    }
                    None => def,
                }
            }
        }
    };
    let tax = def
        .intern()
        .map_err(|e| DataError::new(file, "", "categories", e.to_string()))?;
    Ok((tax, notes))
}

/// A taxonomy without data: a built-in one, or a complete taxonomy file (every category with
/// its `keypoints`). `FromData` is DeepFashion2's.
pub fn resolve_alone(choice: &TaxonomyChoice) -> Result<(&'static Taxonomy, Notes), DataError> {
    match choice {
        TaxonomyChoice::FromData => Ok((&DEEPFASHION2, Notes::new())),
        TaxonomyChoice::Given(t) => Ok((t, Notes::new())),
        TaxonomyChoice::Builtin(_) => resolve(choice, Path::new("--taxonomy"), &[]),
        TaxonomyChoice::File(path) => {
            let patch = read_taxonomy_file(path)?;
            let mut notes = Notes::new();
            let def = complete(path, &patch, &[], &mut notes)?;
            let tax = def
                .intern()
                .map_err(|e| DataError::new(path, "", "categories", e.to_string()))?;
            Ok((tax, notes))
        }
    }
}

/// Same categories (names, in order) and landmark names.
fn same_landmarks(a: &TaxonomyDef, b: &TaxonomyDef) -> bool {
    a.categories.len() == b.categories.len()
        && a.categories
            .iter()
            .zip(&b.categories)
            .all(|(x, y)| x.name == y.name && x.id == y.id && x.keypoints == y.keypoints)
}

/// A taxonomy must declare what the data's categories declare: the same ids, and for each the
/// same number of landmarks (DeepFashion2-style files declare the whole global layout).
fn agree(file: &Path, def: &TaxonomyDef, declared: &[DeclaredCategory]) -> Result<(), DataError> {
    let total = def.num_landmarks();
    for (i, d) in declared.iter().enumerate() {
        let place = format!("categories[{i}] ({:?}): ", d.name);
        let Some(c) = def.categories.iter().find(|c| c.id as i64 == d.id) else {
            return Err(DataError::new(
                file,
                place,
                "id",
                format!(
                    "{} is not a category of the taxonomy {:?} (ids {})",
                    d.id,
                    def.name,
                    def.categories
                        .iter()
                        .map(|c| c.id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let n = d.keypoints.len();
        if n == 0 {
            // Nothing declared: the annotations are checked against the taxonomy instead.
            continue;
        }
        if n == c.keypoints.len() && d.keypoints != c.keypoints {
            let at = d
                .keypoints
                .iter()
                .zip(&c.keypoints)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(DataError::new(
                file,
                place,
                "keypoints",
                format!(
                    "landmark {} is {:?}; the taxonomy {:?} names it {:?}",
                    at + 1,
                    d.keypoints[at],
                    def.name,
                    c.keypoints[at]
                ),
            ));
        }
        if n != c.keypoints.len() && n != total {
            return Err(DataError::new(
                file,
                place,
                "keypoints",
                format!(
                    "declares {n} landmarks; the taxonomy {:?} gives {} {} (or {total} in all)",
                    def.name,
                    c.name,
                    c.keypoints.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Complete a COCO file's categories with a taxonomy file (`patch`, read from `source`): the
/// patch's categories are matched by name; without COCO categories the patch must be complete.
fn complete(
    source: &Path,
    patch: &TaxonomyFile,
    declared: &[DeclaredCategory],
    notes: &mut Notes,
) -> Result<TaxonomyDef, DataError> {
    for (i, p) in patch.categories.iter().enumerate() {
        if !declared.is_empty() && !declared.iter().any(|d| d.name == p.name) {
            return Err(DataError::new(
                source,
                format!("categories[{i}]: "),
                "name",
                format!(
                    "{:?} is not a category of the data ({})",
                    p.name,
                    declared
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let name = patch.name.clone().unwrap_or_else(|| {
        source
            .file_stem()
            .map_or("custom".into(), |s| s.to_string_lossy().into_owned())
    });
    // The categories: the data's in its order, else the patch's.
    let base: Vec<(Option<&DeclaredCategory>, Option<&CategoryPatch>)> = if declared.is_empty() {
        patch.categories.iter().map(|p| (None, Some(p))).collect()
    } else {
        declared
            .iter()
            .map(|d| (Some(d), patch.categories.iter().find(|p| p.name == d.name)))
            .collect()
    };
    if base.is_empty() {
        return Err(DataError::new(source, "", "categories", "is empty"));
    }
    let mut categories = Vec::with_capacity(base.len());
    for (i, (d, p)) in base.into_iter().enumerate() {
        let cname = d
            .map_or_else(|| p.map_or("", |p| &p.name), |d| &d.name)
            .to_string();
        let place = format!("category {cname:?}: ");
        let id = match (d, p.and_then(|p| p.id)) {
            (Some(d), _) => usize::try_from(d.id)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    DataError::new(
                        source,
                        &place,
                        "id",
                        format!("{} is not a positive id", d.id),
                    )
                })?,
            (None, Some(id)) => id,
            (None, None) => i + 1,
        };
        let keypoints = match (p.and_then(|p| p.keypoints.clone()), d) {
            (Some(k), _) => k,
            (None, Some(d)) => d.keypoints.clone(),
            (None, None) => {
                return Err(DataError::new(
                    source,
                    &place,
                    "keypoints",
                    "missing (without a COCO file, a taxonomy file names every landmark)",
                ));
            }
        };
        if let (Some(d), Some(_)) = (d, p.and_then(|p| p.keypoints.as_ref()))
            && d.keypoints.len() != keypoints.len()
        {
            {
                return Err(DataError::new(
                    source,
                    &place,
                    "keypoints",
                    format!(
                        "names {} landmarks; the data's category declares {}",
                        keypoints.len(),
                        d.keypoints.len()
                    ),
                ));
            }
        }
        let flip_pairs = match p.and_then(|p| p.flip_pairs.as_ref()) {
            Some(pairs) => resolve_pairs(source, "flip_pairs", &cname, pairs, &keypoints)?,
            None => {
                let pairs = infer_flip_pairs(&keypoints);
                notes.push(format!(
                    "{cname}: flip pairs inferred from left/right names: {}",
                    if pairs.is_empty() {
                        "none (every landmark is its own mirror)".to_string()
                    } else {
                        pairs
                            .iter()
                            .map(|[a, b]| format!("{}-{}", keypoints[a - 1], keypoints[b - 1]))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ));
                pairs
            }
        };
        let sigmas = match p.and_then(|p| p.sigmas.clone()) {
            Some(s) => s,
            None => {
                notes.push(format!(
                    "{cname}: no OKS sigmas given; every landmark gets {DEFAULT_SIGMA}"
                ));
                vec![DEFAULT_SIGMA; keypoints.len()]
            }
        };
        let skeleton = match (p.and_then(|p| p.skeleton.as_ref()), d) {
            (Some(s), _) => resolve_pairs(source, "skeleton", &cname, s, &keypoints)?,
            (None, Some(d)) => d
                .skeleton
                .iter()
                .map(|v| {
                    serde_json::from_value::<[usize; 2]>(v.clone()).map_err(|_| {
                        DataError::new(
                            source,
                            &place,
                            "skeleton",
                            format!("{v} is not a pair of 1-based landmark numbers"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            (None, None) => Vec::new(),
        };
        let groups = p.and_then(|p| p.groups.clone()).unwrap_or_default();
        categories.push(CategoryDef {
            id,
            name: cname,
            keypoints,
            flip_pairs,
            sigmas,
            skeleton,
            groups,
        });
    }
    check_def(source, TaxonomyDef { name, categories })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid_and_deepfashion2_round_trips() {
        for n in BUILTIN_NAMES {
            let t = Taxonomy::builtin(n).unwrap();
            assert_eq!(t.name, n);
            assert_eq!(t.def().intern().unwrap(), t);
        }
        assert!(std::ptr::eq(
            Taxonomy::builtin("deepfashion2").unwrap(),
            &DEEPFASHION2
        ));
        let coco = Taxonomy::builtin("coco-person").unwrap();
        assert_eq!(coco.num_landmarks, 17);
        let perm = coco.flip_permutation();
        assert_eq!(perm[1], 2);
        assert_eq!(perm[0], 0);
        assert_eq!(perm[16], 15);
    }

    #[test]
    fn flip_pairs_are_inferred_from_left_and_right() {
        let names: Vec<String> = [
            "nose",
            "Left_Eye",
            "right_eye",
            "left hem",
            "right hem",
            "leftover",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(infer_flip_pairs(&names), vec![[2, 3], [4, 5]]);
        let coco = COCO_PERSON_KEYPOINTS.map(String::from).to_vec();
        assert_eq!(
            infer_flip_pairs(&coco),
            TaxonomyDef::builtin("coco-person").unwrap().categories[0].flip_pairs
        );
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let mut d = TaxonomyDef::builtin("deepfashion-fld").unwrap();
        d.categories[0].sigmas.pop();
        assert_eq!(d.check().unwrap_err().0, "categories[0].sigmas");
        let mut d = TaxonomyDef::builtin("deepfashion-fld").unwrap();
        d.categories[0].flip_pairs.push([1, 3]);
        assert_eq!(d.check().unwrap_err().0, "categories[0].flip_pairs");
        let mut d = TaxonomyDef::builtin("deepfashion-fld").unwrap();
        d.categories[0].flip_pairs = vec![[4, 4]];
        assert_eq!(d.check().unwrap_err().0, "categories[0].flip_pairs");
        let mut d = TaxonomyDef::builtin("coco-person").unwrap();
        d.categories[0].skeleton.push([0, 18]);
        assert_eq!(d.check().unwrap_err().0, "categories[0].skeleton");
    }
}
