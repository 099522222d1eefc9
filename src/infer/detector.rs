//! `Detector`: the whole inference pipeline behind one call, for the CLI and for other Burn
//! projects. The device is the caller's choice.
//!
//! ```no_run
//! # #[cfg(feature = "flex")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use deepmark::infer::Detector;
//! let device = burn::tensor::Device::flex(); // any backend compiled in
//! let mut detector = Detector::from_weights("model.bpk".as_ref(), &device)?;
//! detector.options.flip = true;
//! let image = deepmark::io::open_rgb("photo.jpg".as_ref())?;
//! for d in detector.detect(&image)? {
//!     println!("{} {:.2} {:?}", d.category_id, d.score, d.bbox);
//! }
//! # Ok(()) }
//! # #[cfg(not(feature = "flex"))]
//! # fn main() {}
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData, activation::sigmoid};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::attributes::apply::{AttributeModelConfig, Recognizer, guesses};
use crate::attributes::heads::{
    AttributeHeads, AttributeHeadsConfig, logits_at, task_probabilities,
};
use crate::checkpoint;
use crate::codec::decode::{decode, suppress};
use crate::codec::fuse::fuse_flip;
use crate::codec::{Detection, Grouping, HeadMaps, PostConfig, STRIDE};
use crate::error::{Error, Result, invalid};
use crate::io::read_json;
use crate::model::fast::{FHead, FastCenterNet, View, head_maps, is_host_cpu};
use crate::model::{CenterNet, CenterNetConfig, HeadOutputs};
use crate::preprocess::{Affine, Prepared, prepare};
use crate::refine::RefinerSet;
use crate::topdown::TopDownSet;

/// Inference options (the CLI's flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DetectorOptions {
    /// Network input side (CenterNet's `fix_res` warp).
    pub input_size: usize,
    /// Average with the mirrored image's heads.
    pub flip: bool,
    /// Image scale multipliers (DeepMark++: 0.85, 0.95, 1.1); `[1.0]` for one pass.
    pub scales: Vec<f32>,
    /// Decoding and the DeepMark++ techniques.
    pub post: PostConfig,
    /// Detections scoring below are dropped.
    pub threshold: f32,
    /// Images per forward pass when many are detected ([`super::batch::detect_all`]: `infer`
    /// and `eval` on folders). A run setting, not saved with the weights' defaults.
    #[serde(skip, default = "one")]
    pub batch: usize,
}

fn one() -> usize {
    1
}

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            input_size: 512,
            flip: false,
            scales: vec![1.0],
            post: PostConfig::default(),
            threshold: 0.0,
            batch: 1,
        }
    }
}

impl DetectorOptions {
    /// Refuses options no run could use; the error names the setting. (The input size's
    /// multiple depends on the backbone: [`Detector::check_input_size`].)
    pub fn check(&self) -> Result<()> {
        if self.input_size == 0 || self.input_size > 4096 {
            invalid!("input_size is {}; it must be in 1..=4096", self.input_size);
        }
        if self.scales.is_empty()
            || self.scales.len() > 16
            || !self.scales.iter().all(|s| *s > 0.0 && *s <= 16.0)
        {
            invalid!(
                "scales {:?}: 1 to 16 multipliers, each in (0, 16]",
                self.scales
            );
        }
        if !self.threshold.is_finite() {
            invalid!("threshold {} is not a number", self.threshold);
        }
        if self.batch == 0 || self.batch > 1024 {
            invalid!("batch is {}; it must be in 1..=1024", self.batch);
        }
        self.post.check()
    }
}

/// Reads inference options (`<weights>.infer.json`, see [`options_path`]) and checks them;
/// errors name the file.
pub fn read_options(path: &Path) -> Result<DetectorOptions> {
    let options: DetectorOptions = read_json(path, "inference options file")?;
    options
        .check()
        .map_err(|e| Error::file(path, format!("not usable inference options: {e}")))?;
    Ok(options)
}

/// Time spent per stage, in seconds (`post`: NMS, the threshold, top-down landmarks and PoseFix
/// refinement).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct StageTimes {
    /// Seconds spent warping and normalising the image.
    pub preprocess: f64,
    /// Seconds in the network (all scales and flips).
    pub forward: f64,
    /// Seconds decoding the heads into detections.
    pub decode: f64,
    /// Seconds in post-processing (fusion, NMS, the landmark stages).
    pub post: f64,
}

impl std::ops::AddAssign for StageTimes {
    fn add_assign(&mut self, o: Self) {
        self.preprocess += o.preprocess;
        self.forward += o.forward;
        self.decode += o.decode;
        self.post += o.post;
    }
}

/// One scale's fused heads and the transform that maps image → network input.
#[derive(Debug, Clone)]
pub struct ScaleHeads {
    /// The decoded-ready head maps of this scale (flip-fused when flip is on).
    pub heads: HeadMaps,
    /// The attribute heads' logit maps `(Σ classes, h, w)` when attribute heads are attached
    /// ([`Detector::set_attribute_heads`]; flip-averaged when flip is on).
    pub attributes: Option<Vec<f32>>,
    /// Image pixels → network input pixels at this scale (output-map pixels times the stride);
    /// its inverse maps detections back to the image.
    pub transform: Affine,
}

/// A loaded model plus everything decoding needs.
///
/// On a CPU device (flex, ndarray) the model is also compiled into its fast inference form
/// ([`FastCenterNet`]: folded BatchNorm, fused epilogues, own GEMM kernels), which every forward
/// pass then uses; [`Detector::set_fast`] switches back to Burn's generic operations. The model
/// is reached through [`Detector::model`] and replaced through [`Detector::set_model`], which
/// recompiles the fast form, so the two never disagree.
pub struct Detector {
    model: CenterNet,
    fast: Option<FastCenterNet>,
    config: CenterNetConfig,
    grouping: Grouping,
    flip_groups: Vec<usize>,
    device: Device,
    /// Input size, test-time augmentation, post-processing and threshold of [`Detector::detect`].
    pub options: DetectorOptions,
    /// CenterNet models fine-tuned per category whose landmarks replace the universal model's
    /// for their category ([`super::finetuned`]; `--landmarks centernet:<dir>`), applied first.
    pub fine_tuned: Option<Arc<super::finetuned::FineTunedSet>>,
    /// Top-down landmark models applied to the final detections, before the refiners
    /// ([`crate::topdown`]; `--landmarks topdown:<dir>`).
    pub landmarker: Option<Arc<TopDownSet>>,
    /// PoseFix refiners applied to the final detections ([`crate::refine`]; `--refine`).
    pub refiner: Option<Arc<RefinerSet>>,
    /// The recognition network applied to the final detections, last
    /// ([`crate::attributes::apply::Recognizer`]; `--attributes`).
    pub recognizer: Option<Arc<Recognizer>>,
    attribute_heads: Option<AttachedHeads>,
}

/// Attribute heads attached to a detector, with their fast CPU form when the detector has one.
struct AttachedHeads {
    heads: AttributeHeads,
    config: AttributeHeadsConfig,
    fast: Option<FHead>,
}

impl AttachedHeads {
    fn new(heads: AttributeHeads, config: AttributeHeadsConfig, fast: bool) -> Result<Self> {
        let fast = if fast {
            Some(FHead::new(&heads.head)?)
        } else {
            None
        };
        Ok(AttachedHeads {
            heads,
            config,
            fast,
        })
    }
}

/// A detector's backbone features of one image: what its heads read.
#[derive(Debug, Clone)]
pub struct Features {
    /// `(c, h, w)` values, channel-major.
    pub data: Vec<f32>,
    /// `[c, h, w]`.
    pub dims: [usize; 3],
    /// Image → network input pixels.
    pub transform: Affine,
}

impl Features {
    /// The map cell of an image point: the input pixel divided by the output stride, rounded
    /// down (CenterNet's `ct_int`), clamped to the map.
    pub fn cell(&self, p: [f32; 2]) -> (usize, usize) {
        let [_, h, w] = self.dims;
        map_cell(&self.transform, p, [h, w])
    }
}

/// The cell of an `h × w` output map under image point `p`: the input pixel (`transform`:
/// image → input) divided by the output stride, rounded down (CenterNet's `ct_int`), clamped
/// to the map.
fn map_cell(transform: &Affine, p: [f32; 2], [h, w]: [usize; 2]) -> (usize, usize) {
    let q = transform.apply([p[0] as f64, p[1] as f64]);
    let c = |v: f64, n: usize| ((v / STRIDE as f64).floor().max(0.0) as usize).min(n - 1);
    (c(q[0], w), c(q[1], h))
}

/// Inference defaults saved beside weights (`<weights>.infer.json`): `train` records the input
/// size, `tune` the best post-processing.
pub fn options_path(weights: &Path) -> PathBuf {
    weights.with_extension("infer.json")
}

impl Detector {
    /// Wraps a model; its config must say what its heads mean (a landmark scheme's layout, or
    /// a saved taxonomy: [`CenterNetConfig::grouping`]).
    pub fn new(model: CenterNet, config: CenterNetConfig, device: Device) -> Result<Self> {
        let grouping = config.grouping()?;
        let flip_groups = grouping.flip_groups()?;
        // A layer the fast form does not support keeps the generic path (never an error).
        let fast = is_host_cpu(&device)
            .then(|| FastCenterNet::compile(&model).ok())
            .flatten();
        Ok(Detector {
            fast,
            model,
            config,
            grouping,
            flip_groups,
            device,
            options: DetectorOptions::default(),
            fine_tuned: None,
            landmarker: None,
            refiner: None,
            recognizer: None,
            attribute_heads: None,
        })
    }

    /// Loads weights saved by this crate (config JSON beside them). Inference defaults saved
    /// beside them (`<weights>.infer.json`, see [`options_path`]) are used when present.
    pub fn from_weights(weights: &Path, device: &Device) -> Result<Self> {
        let (model, config) = checkpoint::load(weights, device)?;
        let mut d = Detector::new(model, config, device.clone())?;
        let opts = options_path(weights);
        if opts.is_file() {
            d.options = read_options(&opts)?;
        }
        Ok(d)
    }

    /// Uses the fast CPU inference form (`true`, the default on flex/ndarray; compiles it from
    /// the current weights) or Burn's generic operations (`false`, the reference). Errors when
    /// the device is not a CPU backend or a layer is not supported by the fast form.
    pub fn set_fast(&mut self, on: bool) -> Result<()> {
        self.fast = None;
        if on {
            if !is_host_cpu(&self.device) {
                invalid!("the fast inference path runs on the CPU backends (flex, ndarray) only");
            }
            self.fast = Some(FastCenterNet::compile(&self.model)?);
        }
        self.sync_fast_heads()
    }

    /// Compiles (or drops) the attribute heads' fast form to match the detector's.
    fn sync_fast_heads(&mut self) -> Result<()> {
        let fast = self.fast.is_some();
        if let Some(a) = &mut self.attribute_heads {
            a.fast = if fast {
                Some(FHead::new(&a.heads.head)?)
            } else {
                None
            };
        }
        Ok(())
    }

    /// Runs the network in `dtype` (its weights cast; inputs take the device's default float
    /// type, so configure the device for it: Burn's `Device::configure`). The fast CPU form
    /// is f32-only, so this switches to Burn's generic operations; heads are read back as f32
    /// and decoded as usual.
    pub fn set_float_dtype(&mut self, dtype: burn::tensor::FloatDType) {
        self.model = crate::model::cast::cast_module(self.model.clone(), dtype);
        self.fast = None;
    }

    /// The network.
    pub fn model(&self) -> &CenterNet {
        &self.model
    }

    /// The network's configuration (architecture and head layout).
    pub fn config(&self) -> &CenterNetConfig {
        &self.config
    }

    /// The landmark grouping of the model's head layout.
    pub fn grouping(&self) -> &Grouping {
        &self.grouping
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Replaces the network by `model` (new weights of the same configuration, e.g. after a
    /// training epoch) and returns the old one. The fast CPU form, when in use, is compiled from
    /// the new weights before the swap; as in [`Detector::new`], a layer it does not support
    /// keeps the generic path, so the old compiled form never outlives its weights.
    pub fn set_model(&mut self, model: CenterNet) -> CenterNet {
        if self.fast.is_some() {
            self.fast = FastCenterNet::compile(&model).ok();
        }
        std::mem::replace(&mut self.model, model)
    }

    /// The network, giving up the detector.
    pub fn into_model(self) -> CenterNet {
        self.model
    }

    /// Whether forward passes use the fast CPU form.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }

    /// Raw heads of a batch through the fast form when present, else the generic model.
    fn forward_raw(&self, x: Tensor<4>) -> Result<HeadOutputs> {
        match &self.fast {
            Some(f) => f.forward(x),
            None => Ok(self.model.forward(x)),
        }
    }

    /// Checks the input size against the backbone.
    pub fn check_input_size(&self) -> Result<()> {
        self.config
            .backbone
            .check_input_size(self.options.input_size)
    }

    /// Detections in image pixels, best first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        Ok(self.detect_timed(image)?.0)
    }

    /// [`Detector::detect`] plus per-stage times.
    pub fn detect_timed(&self, image: &RgbImage) -> Result<(Vec<Detection>, StageTimes)> {
        let (heads, mut times) = self.heads(image)?;
        let (mut dets, t) = self.decode_heads(&heads, &self.options.post);
        times.decode += t.decode;
        times.post += t.post;
        self.refine(image, &mut dets, &mut times)?;
        Ok((dets, times))
    }

    /// Applies the symmetric refinement's second pass (when `post.symmetry.two_pass`), the
    /// fine-tuned CenterNet models, the top-down landmark models, then the refiners, if any, to
    /// final detections of `image` (time counted as `post`).
    pub fn refine(
        &self,
        image: &RgbImage,
        dets: &mut [Detection],
        times: &mut StageTimes,
    ) -> Result<()> {
        if self.options.post.symmetry.is_some_and(|s| s.two_pass) {
            let t = Instant::now();
            self.second_pass(image, dets)?;
            times.post += t.elapsed().as_secs_f64();
        }
        if let Some(f) = &self.fine_tuned {
            let t = Instant::now();
            f.apply(image, dets)?;
            times.post += t.elapsed().as_secs_f64();
        }
        if let Some(l) = &self.landmarker {
            let t = Instant::now();
            l.apply(image, dets)?;
            times.post += t.elapsed().as_secs_f64();
        }
        if let Some(r) = &self.refiner {
            let t = Instant::now();
            r.refine(image, dets)?;
            times.post += t.elapsed().as_secs_f64();
        }
        if let Some(r) = &self.recognizer {
            let t = Instant::now();
            r.apply(image, dets)?;
            times.post += t.elapsed().as_secs_f64();
        }
        Ok(())
    }

    /// Attaches a trained attribute model of either kind (a `train-attributes` folder or its
    /// `attributes.bpk`): the recognition network as [`Detector::recognizer`], detector heads
    /// through [`Detector::set_attribute_heads`].
    pub fn set_attributes(&mut self, path: &Path) -> Result<()> {
        let weights = crate::attributes::apply::weights_path(path);
        let config: AttributeModelConfig =
            checkpoint::read_config_beside(&weights, "attribute model config")?;
        match config {
            AttributeModelConfig::Recognition(_) => {
                self.recognizer = Some(Arc::new(Recognizer::load(&weights, &self.device)?));
                Ok(())
            }
            AttributeModelConfig::DetectorHeads(_) => self.set_attribute_heads(&weights),
        }
    }

    /// Attaches attribute heads trained on this detector's features (`attributes.bpk` of
    /// `train-attributes --on detector`, a folder or the file): every forward pass then also
    /// runs them on the same features, and each detection's `attributes` are read at its
    /// centre. Heads trained on a detector of another shape are refused. On the fast CPU form
    /// the attribute heads run in it too, beside the detector's. They compute in f32.
    pub fn set_attribute_heads(&mut self, path: &Path) -> Result<()> {
        let weights = crate::attributes::apply::weights_path(path);
        let (heads, cfg) = crate::attributes::apply::load_heads(&weights, &self.device)?;
        if cfg.detector != self.config {
            return Err(Error::file(
                &weights,
                "these attribute heads were trained on a detector of another shape (their \
                 config's `detector` differs from the weights' config)",
            ));
        }
        self.attribute_heads = Some(AttachedHeads::new(heads, cfg, self.fast.is_some())?);
        Ok(())
    }

    /// The attached attribute heads' config, if any.
    pub fn attribute_heads(&self) -> Option<&AttributeHeadsConfig> {
        self.attribute_heads.as_ref().map(|a| &a.config)
    }

    /// Per point, per task, the attached attribute heads' probabilities at the cells of image
    /// points `points` of `image` (scale 1, no flip): how ground-truth garments are read at
    /// their box centres. `None` without attribute heads.
    pub fn attributes_at(
        &self,
        image: &RgbImage,
        points: &[[f32; 2]],
    ) -> Result<Option<Vec<Vec<Vec<f32>>>>> {
        let Some(AttachedHeads {
            heads, config: cfg, ..
        }) = &self.attribute_heads
        else {
            return Ok(None);
        };
        let f = self.features(image)?;
        let [c, h, w] = f.dims;
        let x = Tensor::<4>::from_data(TensorData::new(f.data.clone(), [1, c, h, w]), &self.device);
        let map = crate::model::fast::layers::host(heads.forward(x))?;
        let channels = cfg.channels();
        Ok(Some(
            points
                .iter()
                .map(|&p| {
                    let (x, y) = f.cell(p);
                    let l = logits_at(&map, [h, w], channels, x as f32, y as f32);
                    task_probabilities(&cfg.tasks, &l)
                })
                .collect(),
        ))
    }

    /// The backbone features of `image` at scale 1 (no flip): what the heads read, as the
    /// attribute heads are trained on them.
    pub fn features(&self, image: &RgbImage) -> Result<Features> {
        self.check_input_size()?;
        let p = self.prepare(image, 1.0)?;
        let (data, dims) = self.features_of_input(&p.input)?;
        Ok(Features {
            data,
            dims,
            transform: p.transform,
        })
    }

    /// One CHW input of the options' input size as the fast form reads it.
    fn input_view<'a>(&self, data: &'a [f32]) -> View<'a> {
        let s = self.options.input_size;
        View {
            c: 3,
            h: s,
            w: s,
            data,
        }
    }

    /// Host features of one CHW input of the options' input size.
    fn features_of_input(&self, input: &[f32]) -> Result<(Vec<f32>, [usize; 3])> {
        if let Some(f) = &self.fast {
            let m = f.features_image(self.input_view(input));
            return Ok((m.data, [m.c, m.h, m.w]));
        }
        let t = self.generic_features(self.batch(&[input]));
        let [_, c, h, w] = t.dims();
        Ok((crate::model::fast::layers::host(t)?, [c, h, w]))
    }

    /// The last stack's features of a batch through Burn's operations.
    fn generic_features(&self, x: Tensor<4>) -> Tensor<4> {
        let feats = self.model.backbone.forward(x);
        feats.into_iter().last().expect("at least one stack")
    }

    /// Head maps and attribute logit maps of CHW inputs, one backbone pass each (attribute
    /// heads attached).
    fn forward_with_attributes(
        &self,
        inputs: &[&[f32]],
        attached: &AttachedHeads,
    ) -> Result<(Vec<HeadMaps>, Vec<Vec<f32>>)> {
        let mut maps = Vec::with_capacity(inputs.len());
        let mut attrs = Vec::with_capacity(inputs.len());
        for x in inputs {
            let feat = match &self.fast {
                Some(f) => {
                    let m = f.features_image(self.input_view(x));
                    maps.push(head_maps(f.heads_of(&m)));
                    if let Some(fh) = &attached.fast {
                        attrs.push(fh.forward(&m).data);
                        continue;
                    }
                    Tensor::<4>::from_data(
                        TensorData::new(m.data, [1, m.c, m.h, m.w]),
                        &self.device,
                    )
                }
                None => {
                    let feat = self.generic_features(self.batch(&[x]));
                    let last = self.model.heads.last().expect("at least one stack");
                    let o = last.forward(feat.clone());
                    maps.extend(heads_to_maps(HeadOutputs {
                        hm: sigmoid(o.hm),
                        hm_hp: sigmoid(o.hm_hp),
                        ..o
                    })?);
                    feat
                }
            };
            attrs.push(crate::model::fast::layers::host(
                attached.heads.forward(feat),
            )?);
        }
        Ok((maps, attrs))
    }

    /// Fills each detection's `attributes` from the attribute maps of every scale, read at
    /// the cell of the detection's box centre (logits averaged over the scales).
    fn read_attributes(&self, heads: &[ScaleHeads], dets: &mut [Detection]) {
        let Some(AttachedHeads { config: cfg, .. }) = &self.attribute_heads else {
            return;
        };
        let channels = cfg.channels();
        for d in dets.iter_mut() {
            let c = [(d.bbox[0] + d.bbox[2]) / 2.0, (d.bbox[1] + d.bbox[3]) / 2.0];
            let mut sum = vec![0.0f32; channels];
            let mut n = 0;
            for sh in heads {
                let Some(a) = &sh.attributes else { continue };
                let (x, y) = map_cell(&sh.transform, c, sh.heads.size);
                let l = logits_at(a, sh.heads.size, channels, x as f32, y as f32);
                sum.iter_mut().zip(l).for_each(|(s, v)| *s += v);
                n += 1;
            }
            if n > 0 {
                sum.iter_mut().for_each(|s| *s /= n as f32);
                d.attributes = guesses(&cfg.tasks, &task_probabilities(&cfg.tasks, &sum));
            }
        }
    }

    /// Algorithm 2, lines 9–11, of the New-key-detection paper (its Fig. 1: the second pass
    /// recovers landmarks the first one missed): for each detection, the image is cropped to
    /// `R1 = [x_min, y_min, x_max, y_max]` of its (refined) landmarks, detected and refined
    /// again, and the landmarks become `(keys1 + keys2 + [x_min, y_min]) / 2`. `keys2` is the
    /// crop's best-scoring detection of the same category (whatever its score: the crop holds
    /// the garment); a detection with none, or whose rectangle is under 8 pixels a side, keeps
    /// its first pass. Landmark scores are averaged the same way (the paper averages positions
    /// only). Boxes and detection scores are the first pass's.
    fn second_pass(&self, image: &RgbImage, dets: &mut [Detection]) -> Result<()> {
        let (w, h) = (image.width() as f32, image.height() as f32);
        for d in dets.iter_mut() {
            if d.landmarks.is_empty() {
                continue;
            }
            let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
            for p in &d.landmarks {
                x0 = x0.min(p[0]);
                y0 = y0.min(p[1]);
                x1 = x1.max(p[0]);
                y1 = y1.max(p[1]);
            }
            let (x0, y0) = (x0.clamp(0.0, w).floor(), y0.clamp(0.0, h).floor());
            let (x1, y1) = (x1.clamp(0.0, w).ceil(), y1.clamp(0.0, h).ceil());
            if x1 - x0 < 8.0 || y1 - y0 < 8.0 {
                continue;
            }
            let crop = image::imageops::crop_imm(
                image,
                x0 as u32,
                y0 as u32,
                (x1 - x0) as u32,
                (y1 - y0) as u32,
            )
            .to_image();
            let (heads, _) = self.heads(&crop)?;
            let (second, _) = self.decode_heads_above(&heads, &self.options.post, f32::MIN);
            let best = second
                .iter()
                .filter(|s| {
                    s.category_id == d.category_id && s.landmarks.len() == d.landmarks.len()
                })
                .max_by(|a, b| a.score.total_cmp(&b.score));
            if let Some(s) = best {
                for (p, q) in d.landmarks.iter_mut().zip(&s.landmarks) {
                    p[0] = (p[0] + q[0] + x0) / 2.0;
                    p[1] = (p[1] + q[1] + y0) / 2.0;
                    p[2] = (p[2] + q[2]) / 2.0;
                }
            }
        }
        Ok(())
    }

    /// The network input of `image` at `scale` (CenterNet's test pre-processing at the
    /// options' input size): the one pre-processing path of inference, dumps and benches.
    pub fn prepare(&self, image: &RgbImage, scale: f32) -> Result<Prepared> {
        if !(scale > 0.0 && scale.is_finite()) {
            invalid!("scale {scale} must be a positive number");
        }
        Ok(prepare(image, self.options.input_size, scale as f64))
    }

    /// Raw heads (before sigmoid, last stack) of `image` at scale 1 without flip: what
    /// `infer --dump-heads` writes.
    pub fn raw_heads(&self, image: &RgbImage) -> Result<HeadOutputs> {
        self.check_input_size()?;
        let p = self.prepare(image, 1.0)?;
        self.forward_raw(self.batch(&[&p.input]))
    }

    /// Stacks CHW inputs of the options' input size into one batch tensor.
    fn batch(&self, inputs: &[&[f32]]) -> Tensor<4> {
        let size = self.options.input_size;
        let n = inputs.len();
        let data: Vec<f32> = inputs.concat();
        Tensor::<4>::from_data(TensorData::new(data, [n, 3, size, size]), &self.device)
    }

    /// Runs the network at every scale (with flip fusion) and returns the fused host heads.
    /// Decoding them with different settings costs no further forward pass (`tune`).
    pub fn heads(&self, image: &RgbImage) -> Result<(Vec<ScaleHeads>, StageTimes)> {
        self.check_input_size()?;
        let t0 = Instant::now();
        let prepared = self.prepare_scales(image)?;
        let preprocess = t0.elapsed().as_secs_f64();
        let (mut heads, mut times) = self.heads_of_prepared(&[&prepared])?;
        times.preprocess += preprocess;
        Ok((heads.remove(0), times))
    }

    /// The network inputs of `image` at every scale of the options.
    pub fn prepare_scales(&self, image: &RgbImage) -> Result<Vec<Prepared>> {
        self.options
            .scales
            .iter()
            .map(|&s| self.prepare(image, s))
            .collect()
    }

    /// Fused host heads of several images, each prepared by [`Detector::prepare_scales`]: one
    /// forward pass per scale for the whole batch (with the mirrored inputs when flipping).
    /// `times.forward` is the network, `times.decode` the flip fusion.
    pub fn heads_of_prepared(
        &self,
        images: &[&[Prepared]],
    ) -> Result<(Vec<Vec<ScaleHeads>>, StageTimes)> {
        self.check_input_size()?;
        let mut times = StageTimes::default();
        let scales = self.options.scales.len();
        let mut out: Vec<Vec<ScaleHeads>> =
            images.iter().map(|_| Vec::with_capacity(scales)).collect();
        for si in 0..scales {
            let t0 = Instant::now();
            let mirrored: Vec<Vec<f32>> = if self.options.flip {
                images.iter().map(|p| p[si].mirrored_input()).collect()
            } else {
                Vec::new()
            };
            // The batch: every image, then (when flipping) every mirror image.
            let mut inputs: Vec<&[f32]> = Vec::with_capacity(images.len() * 2);
            for p in images {
                let p = p.get(si).ok_or_else(|| {
                    Error::Invalid(format!(
                        "an image was prepared at {} scales, the options have {scales}",
                        p.len()
                    ))
                })?;
                if p.size != self.options.input_size {
                    invalid!(
                        "an image was prepared at {}×{0}, the options' input size is {}",
                        p.size,
                        self.options.input_size
                    );
                }
                inputs.push(&p.input);
            }
            inputs.extend(mirrored.iter().map(Vec::as_slice));
            times.preprocess += t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let (maps, mut attrs) = match &self.attribute_heads {
                Some(h) => {
                    let (m, a) = self.forward_with_attributes(&inputs, h)?;
                    (m, a.into_iter().map(Some).collect())
                }
                None => (self.forward_inputs(&inputs)?, vec![None; inputs.len()]),
            };
            times.forward += t1.elapsed().as_secs_f64();
            let t2 = Instant::now();
            let mut maps = maps.into_iter();
            let plain: Vec<HeadMaps> = maps.by_ref().take(images.len()).collect();
            let flipped: Vec<HeadMaps> = maps.collect();
            for (i, (o, plain)) in out.iter_mut().zip(plain).enumerate() {
                let size = plain.size;
                let heads = match flipped.get(i) {
                    Some(f) => fuse_flip(&plain, f, &self.flip_groups),
                    None => plain,
                };
                // Attributes do not change under mirroring: the mirror image's maps, mirrored
                // back, are averaged in.
                let attributes = attrs[i].take().map(|a| match attrs.get(images.len() + i) {
                    Some(Some(m)) => average_mirrored(&a, m, size),
                    _ => a,
                });
                o.push(ScaleHeads {
                    heads,
                    attributes,
                    transform: images[i][si].transform,
                });
            }
            times.decode += t2.elapsed().as_secs_f64();
        }
        Ok((out, times))
    }

    /// Host heads of CHW inputs of the options' input size: the fast CPU form reads them where
    /// they are; the generic path uploads them as one batch.
    fn forward_inputs(&self, inputs: &[&[f32]]) -> Result<Vec<HeadMaps>> {
        let Some(f) = &self.fast else {
            return self.forward_host(self.batch(inputs));
        };
        Ok(inputs
            .iter()
            .map(|x| head_maps(f.forward_image(self.input_view(x))))
            .collect())
    }

    /// Forward pass (last stack), sigmoid on the device, then one transfer per head (the fast
    /// CPU form computes on the host and hands its maps over without a copy).
    pub fn forward_host(&self, x: Tensor<4>) -> Result<Vec<HeadMaps>> {
        if let Some(f) = &self.fast {
            let dims = x.dims();
            let data = crate::model::fast::layers::host(x)?;
            return Ok(f
                .forward_host(&data, dims)
                .into_iter()
                .map(head_maps)
                .collect());
        }
        let o = self.model.forward(x);
        heads_to_maps(HeadOutputs {
            hm: sigmoid(o.hm),
            hm_hp: sigmoid(o.hm_hp),
            ..o
        })
    }

    /// Decodes fused heads of every scale, maps to image pixels, merges scales and applies NMS
    /// and the threshold.
    pub fn decode_heads(
        &self,
        heads: &[ScaleHeads],
        post: &PostConfig,
    ) -> (Vec<Detection>, StageTimes) {
        self.decode_heads_above(heads, post, self.options.threshold)
    }

    /// [`decode_heads`](Self::decode_heads) keeping detections scoring at least `threshold`.
    fn decode_heads_above(
        &self,
        heads: &[ScaleHeads],
        post: &PostConfig,
        threshold: f32,
    ) -> (Vec<Detection>, StageTimes) {
        let mut times = StageTimes::default();
        let t0 = Instant::now();
        let mut all = Vec::new();
        for sh in heads {
            let inv = sh.transform.inverse();
            for mut d in decode(&sh.heads, &self.grouping, post) {
                to_image(&mut d, &inv);
                all.push(d);
            }
        }
        times.decode += t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut dets = suppress(all, post.nms);
        dets.retain(|d| d.score >= threshold);
        self.read_attributes(heads, &mut dets);
        times.post += t1.elapsed().as_secs_f64();
        (dets, times)
    }
}

/// `(plain + mirror(flipped)) / 2` of `(c, h, w)` maps, `mirror` reversing each row.
fn average_mirrored(plain: &[f32], flipped: &[f32], [h, w]: [usize; 2]) -> Vec<f32> {
    let mut out = plain.to_vec();
    for (row_out, row_f) in out.chunks_mut(w).zip(flipped.chunks(w)) {
        for (x, o) in row_out.iter_mut().enumerate() {
            *o = (*o + row_f[w - 1 - x]) / 2.0;
        }
    }
    debug_assert_eq!(plain.len() % (h * w), 0);
    out
}

/// Maps a detection from output-map coordinates to image pixels.
pub fn to_image(d: &mut Detection, inv: &Affine) {
    let map = |x: f32, y: f32| {
        let s = STRIDE as f64;
        let p = inv.apply([x as f64 * s, y as f64 * s]);
        [p[0] as f32, p[1] as f32]
    };
    let a = map(d.bbox[0], d.bbox[1]);
    let b = map(d.bbox[2], d.bbox[3]);
    d.bbox = [
        a[0].min(b[0]),
        a[1].min(b[1]),
        a[0].max(b[0]),
        a[1].max(b[1]),
    ];
    for p in &mut d.landmarks {
        let q = map(p[0], p[1]);
        p[0] = q[0];
        p[1] = q[1];
    }
}

/// Splits batched device heads into per-image host maps (hm and hm_hp as given).
pub fn heads_to_maps(o: HeadOutputs) -> Result<Vec<HeadMaps>> {
    let [b, c, h, w] = o.hm.dims();
    let g = o.hm_hp.dims()[1];
    let channels = o.as_ref().map(|t| t.dims()[1]);
    let host = o.try_map(|t| {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Backend(format!("cannot read the heads back: {e:?}")))
    })?;
    let hw = h * w;
    Ok((0..b)
        .map(|i| HeadMaps {
            size: [h, w],
            num_classes: c,
            num_groups: g,
            maps: host
                .as_ref()
                .zip(channels)
                .map(|(v, ch)| v[i * ch * hw..(i + 1) * ch * hw].to_vec()),
        })
        .collect())
}
