//! A trained attribute model applied to garments: the recognition network on the Normal- and
//! Neck-crops of each detection's landmarks. The model's folder holds `attributes.bpk`, its
//! config `attributes.json` (which kind, which tasks) and checksums.

use std::path::{Path, PathBuf};

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::crops::{crop_box, crop_input};
use super::heads::AttributeHeadsConfig;
use super::net::{AttributeNet, AttributeNetConfig};
use super::{AttributeTask, Crop};
use crate::codec::decode::Detection;
use crate::error::{Error, Result};
use crate::refine::codec::CropJitter;

/// The weights file of an attribute model folder.
pub const WEIGHTS: &str = "attributes.bpk";

/// An attribute model's config, saved beside its weights: which kind it is and its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AttributeModelConfig {
    /// The paper's recognition network on landmark crops.
    Recognition(AttributeNetConfig),
    /// Attribute heads on a CenterNet detector, read at each detection's centre.
    DetectorHeads(AttributeHeadsConfig),
}

impl AttributeModelConfig {
    /// The tasks the model predicts.
    pub fn tasks(&self) -> &[AttributeTask] {
        match self {
            AttributeModelConfig::Recognition(c) => &c.tasks,
            AttributeModelConfig::DetectorHeads(c) => &c.tasks,
        }
    }
}

/// One task's prediction for one garment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeGuess {
    /// The task's name.
    pub task: String,
    /// The most probable class's index…
    pub class: usize,
    /// … its name (the index as text when the task names none) …
    pub name: String,
    /// … and its probability.
    pub score: f32,
    /// Every class's probability (softmax over the task's classes).
    pub probabilities: Vec<f32>,
}

/// The guesses of `tasks` from per-task probabilities.
pub fn guesses(tasks: &[AttributeTask], probs: &[Vec<f32>]) -> Vec<AttributeGuess> {
    tasks
        .iter()
        .zip(probs)
        .map(|(t, p)| {
            let class = (0..p.len())
                .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            AttributeGuess {
                task: t.name.clone(),
                class,
                name: t.class_name(class),
                score: p.get(class).copied().unwrap_or(0.0),
                probabilities: p.clone(),
            }
        })
        .collect()
}

/// Per-task probabilities of one garment from a guess list (the inverse of [`guesses`] for
/// `tasks`; a task missing from the list is `None`).
pub fn probabilities_of(tasks: &[AttributeTask], g: &[AttributeGuess]) -> Vec<Option<Vec<f32>>> {
    tasks
        .iter()
        .map(|t| {
            g.iter()
                .find(|x| x.task == t.name && x.probabilities.len() == t.classes)
                .map(|x| x.probabilities.clone())
        })
        .collect()
}

/// The config path of an attribute model folder (or of its weights file).
pub fn weights_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(WEIGHTS)
    } else {
        path.to_path_buf()
    }
}

/// The config of an attribute model (a folder or its weights file): which kind it is, its
/// tasks and shape.
pub fn read_model_config(path: &Path) -> Result<AttributeModelConfig> {
    crate::checkpoint::read_config_beside(&weights_path(path), "attribute model config")
}

/// Loads detector attribute heads (`attributes.bpk` of `train-attributes --on detector`, a
/// folder or the file) with their config; a recognition network is refused.
pub fn load_heads(
    path: &Path,
    device: &Device,
) -> Result<(super::heads::AttributeHeads, AttributeHeadsConfig)> {
    let weights = weights_path(path);
    let (heads, cfg) = crate::checkpoint::load_module(
        &weights,
        "attribute model config",
        |c: &AttributeModelConfig| match c {
            AttributeModelConfig::DetectorHeads(c) => {
                c.check()?;
                Ok(c.init(device))
            }
            AttributeModelConfig::Recognition(_) => Err(Error::Invalid(
                "this is a recognition network (it reads crops: Detector::recognizer), not \
                 detector heads"
                    .into(),
            )),
        },
    )?;
    let AttributeModelConfig::DetectorHeads(cfg) = cfg else {
        unreachable!("refused above")
    };
    Ok((heads, cfg))
}

/// A garment as the recognition network reads it: category, box `[x, y, w, h]`, landmarks in
/// local order (`[x, y, v]`, v > 0 where present).
pub type Garment<'a> = (usize, [f32; 4], &'a [[f32; 3]]);

/// The recognition network, ready to predict.
#[derive(Debug)]
pub struct Recognizer {
    net: AttributeNet,
    /// Its config.
    pub config: AttributeNetConfig,
    device: Device,
}

impl Recognizer {
    /// A network and its config on `device`.
    pub fn new(net: AttributeNet, config: AttributeNetConfig, device: &Device) -> Self {
        Recognizer {
            net,
            config,
            device: device.clone(),
        }
    }

    /// Loads `attributes.bpk` (a folder or the file) with its config; a detector-heads model is
    /// refused with a pointer to [`crate::infer::Detector::set_attribute_heads`].
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let weights = weights_path(path);
        let (net, cfg) = crate::checkpoint::load_module(
            &weights,
            "attribute model config",
            |c: &AttributeModelConfig| match c {
                AttributeModelConfig::Recognition(c) => {
                    c.check()?;
                    Ok(c.init(device))
                }
                AttributeModelConfig::DetectorHeads(_) => Err(Error::Invalid(
                    "this is a detector-heads attribute model: it runs inside the detector \
                     whose features it reads (Detector::set_attribute_heads), not on crops"
                        .into(),
                )),
            },
        )?;
        let AttributeModelConfig::Recognition(config) = cfg else {
            unreachable!("refused above")
        };
        Ok(Recognizer::new(net, config, device))
    }

    /// Per garment, per task, the class probabilities, in batches of 16 garments.
    pub fn predict(
        &self,
        image: &RgbImage,
        garments: &[Garment<'_>],
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let cfg = &self.config;
        let [h, w] = cfg.input;
        let mut out = Vec::with_capacity(garments.len());
        for chunk in garments.chunks(16) {
            let crops = |crop: Crop| -> Tensor<4> {
                let mut data = Vec::with_capacity(chunk.len() * 3 * h * w);
                for &(cat, bbox, lm) in chunk {
                    let b = crop_box(crop, bbox, cat, lm);
                    data.extend(crop_input(
                        image,
                        b,
                        cfg.input,
                        cfg.box_scale,
                        CropJitter::NONE,
                    ));
                }
                Tensor::from_data(TensorData::new(data, [chunk.len(), 3, h, w]), &self.device)
            };
            let neck = cfg.uses_neck().then(|| crops(Crop::Neck));
            let logits = self.net.forward(crops(Crop::Normal), neck);
            let mut per_task = Vec::with_capacity(logits.len());
            for l in logits {
                let c = l.dims()[1];
                let v = crate::model::fast::layers::host(softmax(l, 1))?;
                per_task.push((v, c));
            }
            for g in 0..chunk.len() {
                out.push(
                    per_task
                        .iter()
                        .map(|(v, c)| v[g * c..(g + 1) * c].to_vec())
                        .collect(),
                );
            }
        }
        Ok(out)
    }

    /// Fills each detection's `attributes` from the crops of its box and landmarks.
    pub fn apply(&self, image: &RgbImage, dets: &mut [Detection]) -> Result<()> {
        let garments: Vec<Garment<'_>> = dets
            .iter()
            .map(|d| (d.category_id, d.bbox_xywh(), d.landmarks.as_slice()))
            .collect();
        let probs = self.predict(image, &garments)?;
        for (d, p) in dets.iter_mut().zip(probs) {
            d.attributes = guesses(&self.config.tasks, &p);
        }
        Ok(())
    }
}

/// What predicts the attributes of ground-truth garments.
#[derive(Clone, Copy)]
pub enum GarmentModel<'a> {
    /// The recognition network on each garment's crops.
    Recognizer(&'a Recognizer),
    /// A detector with attribute heads, read at each garment's box centre.
    Detector(&'a crate::infer::Detector),
}

impl GarmentModel<'_> {
    /// The tasks predicted.
    pub fn tasks(&self) -> &[AttributeTask] {
        match self {
            GarmentModel::Recognizer(r) => &r.config.tasks,
            GarmentModel::Detector(d) => d.attribute_heads().map_or(&[], |c| &c.tasks),
        }
    }
}

/// Predicts the attributes of labelled ground-truth garments (images in `images`, each read
/// once) and pairs them with their labels in the model's task order: the rows
/// `attributes::eval::score` reads. Labels of tasks the model lacks are dropped; garments
/// without a box are read on the whole image. `progress(done, total)` per image.
pub fn predict_samples(
    model: GarmentModel<'_>,
    tasks: &[AttributeTask],
    samples: &[super::data::AttributeSample],
    images: &Path,
    limits: &crate::io::Limits,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<super::eval::ScoredRow>> {
    let mtasks = model.tasks().to_vec();
    if mtasks.is_empty() {
        return Err(Error::Invalid(
            "the detector has no attribute heads attached".into(),
        ));
    }
    // The data's task index of each of the model's tasks.
    let index: Vec<Option<usize>> = mtasks
        .iter()
        .map(|t| {
            tasks
                .iter()
                .position(|u| u.name == t.name && u.classes == t.classes)
        })
        .collect();
    if index.iter().all(Option::is_none) {
        let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        return Err(Error::Invalid(format!(
            "the model's tasks ({}) are none of the data's ({})",
            mtasks
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            names.join(", ")
        )));
    }
    let mut by_image: std::collections::BTreeMap<&Path, Vec<&super::data::AttributeSample>> =
        Default::default();
    for s in samples
        .iter()
        .filter(|s| s.labels.iter().any(Option::is_some))
    {
        by_image.entry(s.image.as_path()).or_default().push(s);
    }
    let total = by_image.len();
    let mut rows = Vec::new();
    for (done, (image, garments)) in by_image.into_iter().enumerate() {
        progress(done, total);
        let img = limits.open_rgb(&images.join(image))?;
        let whole = [0.0, 0.0, img.width() as f32, img.height() as f32];
        let probs = match model {
            GarmentModel::Recognizer(r) => {
                let g: Vec<Garment<'_>> = garments
                    .iter()
                    .map(|s| {
                        (
                            s.category_id,
                            s.bbox.unwrap_or(whole),
                            s.landmarks.as_slice(),
                        )
                    })
                    .collect();
                r.predict(&img, &g)?
            }
            GarmentModel::Detector(d) => {
                let centres: Vec<[f32; 2]> = garments
                    .iter()
                    .map(|s| {
                        let [x, y, w, h] = s.bbox.unwrap_or(whole);
                        [x + w / 2.0, y + h / 2.0]
                    })
                    .collect();
                d.attributes_at(&img, &centres)?.unwrap_or_default()
            }
        };
        for (s, p) in garments.iter().zip(probs) {
            let labels = index
                .iter()
                .map(|i| i.and_then(|i| s.labels[i].clone()))
                .collect();
            rows.push((p.into_iter().map(Some).collect(), labels));
        }
    }
    progress(total, total);
    Ok(rows)
}
