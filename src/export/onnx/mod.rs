//! ONNX export of a [`CenterNet`]: the network's inference form (BatchNorm with its running
//! statistics, the last stack's heads only) as an ONNX opset-19 model with the six heads as
//! named outputs (`hm`, `wh`, `reg`, `hps`, `hm_hp`, `hp_offset`, raw logits as
//! [`CenterNet::forward`] returns them) and the settings inference needs as metadata.
//!
//! The protobuf is written with `prost` (the messages of [`proto`]); Burn itself writes no
//! ONNX. DLA-34's modulated deformable convolutions are ONNX `DeformConv` (opset 19; ONNX
//! Runtime runs it on the CPU) or, for runtimes without it, [`DeformForm::Decomposed`]: a
//! `GridSample` and a 1×1 `Conv` per layer, for a fixed input size.

mod graph;
mod nets;
pub mod proto;

use std::path::Path;

use prost::Message;

use crate::attributes::heads::{AttributeHeads, AttributeHeadsConfig};
use crate::codec::STRIDE;
use crate::error::{Error, Result};
use crate::model::{BackboneConfig, CenterNet, CenterNetConfig};
use proto::{
    Dimension, GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto,
    TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto, data_type,
};

/// The opset the graph is written in (ONNX 1.14; `DeformConv` needs 19).
pub const OPSET: i64 = 19;
/// The IR version matching [`OPSET`].
pub const IR_VERSION: i64 = 9;
/// The graph input's name.
pub const INPUT: &str = "input";

/// How DLA-34's modulated deformable convolutions are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeformForm {
    /// ONNX `DeformConv` (opset 19) with the sigmoid mask: one node per layer.
    #[default]
    Native,
    /// Standard operators only (`GridSample` of the nine taps, the mask, a 1×1 `Conv`), for
    /// runtimes without `DeformConv`; the input size is then fixed.
    Decomposed,
}

crate::named::impl_named!(DeformForm, "deformable convolution form");

impl DeformForm {
    /// Every form.
    pub const ALL: [DeformForm; 2] = [DeformForm::Native, DeformForm::Decomposed];

    /// The name used on the command line and in the metadata.
    pub fn name(self) -> &'static str {
        match self {
            DeformForm::Native => "native",
            DeformForm::Decomposed => "decomposed",
        }
    }
}

/// What to export.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxOptions {
    /// Network input `[height, width]` written in the graph's input shape (each a multiple of
    /// the backbone's [`input_multiple`](BackboneConfig::input_multiple)).
    pub input_size: [usize; 2],
    /// The batch axis is symbolic (`batch`) instead of 1.
    pub dynamic_batch: bool,
    /// Height and width are symbolic (`height`, `width`); not with
    /// [`DeformForm::Decomposed`].
    pub dynamic_size: bool,
    /// How deformable convolutions are written (DLA-34 only).
    pub deform: DeformForm,
    /// Extra key-value metadata (e.g. the detector options saved with the weights), stored
    /// beside the keys [`export`] writes itself.
    pub metadata: Vec<(String, String)>,
}

impl OnnxOptions {
    /// A square `size × size` input, batch 1, native `DeformConv`, no extra metadata.
    pub fn new(size: usize) -> Self {
        Self {
            input_size: [size, size],
            dynamic_batch: false,
            dynamic_size: false,
            deform: DeformForm::Native,
            metadata: Vec::new(),
        }
    }
}

fn tensor_value(name: &str, dims: &[Result<usize, &str>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| match d {
                            Ok(v) => Dimension {
                                dim_value: *v as i64,
                                dim_param: String::new(),
                            },
                            Err(p) => Dimension {
                                dim_value: 0,
                                dim_param: p.to_string(),
                            },
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// The metadata keys [`export`] writes, with their values for `config` and `options`.
pub fn metadata(config: &CenterNetConfig, options: &OnnxOptions) -> Vec<(String, String)> {
    let grouping = config.grouping().ok();
    let mut m = vec![
        ("deepmark.model_config", json(config)),
        (
            "deepmark.scheme",
            grouping.as_ref().map_or("custom", |g| g.name()).to_string(),
        ),
        (
            "deepmark.taxonomy",
            grouping
                .as_ref()
                .map_or("custom", |g| g.taxonomy().name)
                .to_string(),
        ),
        (
            "deepmark.input",
            "float32 (batch, 3, height, width): the image's B, G, R channels, each (v / 255 - \
             mean) / std, letterboxed to the input size by an affine warp (deepmark::preprocess)"
                .to_string(),
        ),
        (
            "deepmark.input_size",
            format!("{}x{}", options.input_size[0], options.input_size[1]),
        ),
        (
            "deepmark.mean_bgr",
            json(&crate::preprocess::MEAN_BGR.to_vec()),
        ),
        (
            "deepmark.std_bgr",
            json(&crate::preprocess::STD_BGR.to_vec()),
        ),
        ("deepmark.down_ratio", STRIDE.to_string()),
        (
            "deepmark.outputs",
            "raw logits (no sigmoid) of the heads hm, wh, reg, hps, hm_hp, hp_offset, each \
             (batch, channels, height / 4, width / 4)"
                .to_string(),
        ),
    ];
    if deformable(config) {
        m.push(("deepmark.deform", options.deform.name().to_string()));
    }
    m.into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(options.metadata.iter().cloned())
        .collect()
}

/// Whether the network has modulated deformable convolutions (DLA-34).
fn deformable(config: &CenterNetConfig) -> bool {
    matches!(
        config.backbone,
        BackboneConfig::Dla {
            deformable: true,
            ..
        }
    )
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("configs and numbers serialise to JSON")
}

/// Attribute heads exported with the detector ([`export_with_attributes`]).
#[derive(Debug, Clone, Copy)]
pub struct OnnxAttributes<'a> {
    /// The heads.
    pub heads: &'a AttributeHeads,
    /// Their config (tasks, and the detector they were trained on).
    pub config: &'a AttributeHeadsConfig,
}

/// The name of the attribute heads' output.
pub const ATTRIBUTES_OUTPUT: &str = "attributes";

/// The ONNX model (protobuf bytes) of `model`, built from `config`, under `options`.
pub fn export(
    model: &CenterNet,
    config: &CenterNetConfig,
    options: &OnnxOptions,
) -> Result<Vec<u8>> {
    export_with_attributes(model, config, None, options)
}

/// [`export`] with attribute heads: a seventh output, `attributes` (raw logits, every task's
/// classes in order, `(batch, Σ classes, height / 4, width / 4)`), computed from the same
/// features as the detector's heads; the tasks are in the metadata
/// (`deepmark.attribute_tasks`). Heads trained on a detector of another config are refused.
pub fn export_with_attributes(
    model: &CenterNet,
    config: &CenterNetConfig,
    attributes: Option<OnnxAttributes<'_>>,
    options: &OnnxOptions,
) -> Result<Vec<u8>> {
    if let Some(a) = attributes
        && &a.config.detector != config
    {
        return Err(Error::Invalid(
            "ONNX export: the attribute heads were trained on a detector of another config".into(),
        ));
    }
    for side in options.input_size {
        config.backbone.check_input_size(side)?;
    }
    if deformable(config) && options.deform == DeformForm::Decomposed && options.dynamic_size {
        return Err(Error::Invalid(
            "ONNX export: the decomposed deformable convolution fixes the input size; leave out \
             the dynamic size or export DeformConv (native)"
                .into(),
        ));
    }
    let mut ctx = nets::Ctx {
        g: graph::Graph::default(),
        options,
    };
    ctx.g.unique(INPUT);
    let (heads, feature) = ctx.centernet(model, INPUT)?;
    let attr = attributes
        .map(|a| {
            ctx.head_as(
                &a.heads.head,
                &feature,
                "attributes.head",
                ATTRIBUTES_OUTPUT,
            )
        })
        .transpose()?;
    let [h, w] = options.input_size;
    let batch = if options.dynamic_batch {
        Err("batch")
    } else {
        Ok(1)
    };
    let (ih, iw) = if options.dynamic_size {
        (Err("height"), Err("width"))
    } else {
        (Ok(h), Ok(w))
    };
    let (oh, ow) = if options.dynamic_size {
        (Err("out_height"), Err("out_width"))
    } else {
        (Ok(h / STRIDE), Ok(w / STRIDE))
    };
    let channels = config.layout.channels();
    let mut output: Vec<ValueInfoProto> = heads
        .zip(channels)
        .into_array()
        .into_iter()
        .map(|(name, c)| tensor_value(&name, &[batch, Ok(c), oh, ow]))
        .collect();
    let mut meta = metadata(config, options);
    if let (Some(name), Some(a)) = (&attr, attributes) {
        output.push(tensor_value(
            name,
            &[batch, Ok(a.config.channels()), oh, ow],
        ));
        meta.push((
            "deepmark.attribute_tasks".to_string(),
            json(&a.config.tasks),
        ));
    }
    let g = ctx.g;
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "deepmark".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: "CenterNet (DeepMark++) exported by deepmark".into(),
        graph: Some(GraphProto {
            node: g.nodes,
            name: "centernet".into(),
            initializer: g.initializers,
            doc_string: String::new(),
            input: vec![tensor_value(INPUT, &[batch, Ok(3), ih, iw])],
            output,
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: meta
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
    };
    Ok(model.encode_to_vec())
}

/// [`export`] written to `path` (atomically: a reader sees the old file or the whole new one).
pub fn save(
    model: &CenterNet,
    config: &CenterNetConfig,
    options: &OnnxOptions,
    path: &Path,
) -> Result<()> {
    let bytes = export(model, config, options)?;
    crate::io::write_atomic(path, &bytes)
}

/// Reads an ONNX model's protobuf (for inspecting an export: its inputs, outputs, metadata).
pub fn read(bytes: &[u8]) -> Result<ModelProto> {
    ModelProto::decode(bytes).map_err(|e| Error::Invalid(format!("not an ONNX model: {e}")))
}
