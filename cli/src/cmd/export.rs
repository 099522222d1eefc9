//! `deepmark export`: a trained model out of Burn, as ONNX (the network with the six heads as
//! named outputs and the inference settings as metadata) or as a CenterNet PyTorch checkpoint.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use deepmark::checkpoint;
use deepmark::export::onnx::{self, DeformForm, OnnxOptions};
use deepmark::infer::detector::{options_path, read_options};
use deepmark_cli::backend::BackendKind;

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An ONNX model (opset 19).
    Onnx,
    /// A CenterNet PyTorch checkpoint (`{'epoch', 'state_dict'}`, CenterNet's key names): the
    /// inverse of `convert`.
    Pytorch,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Weights (.bpk) with their config beside them.
    #[arg(long)]
    pub weights: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "onnx")]
    pub format: Format,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// Network input side written in the graph [default: the input size of the inference
    /// options saved with the weights, else 512].
    #[arg(long)]
    pub input_size: Option<usize>,
    /// A symbolic batch axis (any batch size at run time) instead of 1.
    #[arg(long)]
    pub dynamic_batch: bool,
    /// Symbolic height and width (any multiple of the backbone's stride at run time).
    #[arg(long)]
    pub dynamic_size: bool,
    /// DLA-34's deformable convolutions: `native` (ONNX DeformConv, opset 19) or `decomposed`
    /// (GridSample and Conv only, for runtimes without DeformConv; fixes the input size).
    #[arg(long, default_value = "native")]
    pub deform: DeformForm,
    /// Attribute heads trained on these weights (a `train-attributes --on detector` folder):
    /// exported as a seventh output, `attributes` (ONNX only).
    #[arg(long)]
    pub attributes: Option<PathBuf>,
}

pub fn run(a: ExportArgs) -> Result<()> {
    crate::cmd::refuse_input_as_output(
        &a.out,
        &[
            ("--weights", a.weights.as_path()),
            (
                "--weights' config",
                checkpoint::config_path(&a.weights).as_path(),
            ),
        ],
    )?;
    let device = BackendKind::Flex.device()?;
    let (model, config) = checkpoint::load(&a.weights, &device)?;
    if a.format == Format::Pytorch {
        if a.input_size.is_some() || a.dynamic_batch || a.dynamic_size || a.attributes.is_some() {
            bail!(
                "--input-size, --dynamic-batch, --dynamic-size and --attributes are ONNX settings; a PyTorch checkpoint holds the detector's weights only"
            );
        }
        deepmark::export::pytorch::save(&model, &config, &a.out)
            .with_context(|| format!("exporting {} to {}", a.weights.display(), a.out.display()))?;
        println!(
            "wrote {} (CenterNet PyTorch checkpoint, {} parameters; `deepmark convert` reads it back)",
            a.out.display(),
            model.num_trainable_params()
        );
        return Ok(());
    }
    // The inference options saved with the weights (`train` writes them) travel as metadata.
    let saved = options_path(&a.weights);
    let detector_options = saved.is_file().then(|| read_options(&saved)).transpose()?;
    let size = a
        .input_size
        .or(detector_options.as_ref().map(|o| o.input_size))
        .unwrap_or(512);
    let mut options = OnnxOptions {
        dynamic_batch: a.dynamic_batch,
        dynamic_size: a.dynamic_size,
        deform: a.deform,
        ..OnnxOptions::new(size)
    };
    if let Some(o) = &detector_options {
        options.metadata.push((
            "deepmark.detector_options".into(),
            serde_json::to_string(o)?,
        ));
    }
    let attributes = match &a.attributes {
        None => None,
        Some(dir) => Some(
            deepmark::attributes::apply::load_heads(dir, &device).with_context(|| {
                format!(
                    "--attributes {}: detector heads are exported with the detector (a \
                     recognition network reads crops and is not part of its graph)",
                    dir.display()
                )
            })?,
        ),
    };
    onnx::export_with_attributes(
        &model,
        &config,
        attributes
            .as_ref()
            .map(|(heads, config)| onnx::OnnxAttributes { heads, config }),
        &options,
    )
    .and_then(|b| deepmark::io::write_atomic(&a.out, &b))
    .with_context(|| format!("exporting {} to {}", a.weights.display(), a.out.display()))?;
    let bytes = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    let shape = |fixed: usize, dynamic: bool, name: &str| {
        if dynamic {
            name.to_string()
        } else {
            fixed.to_string()
        }
    };
    println!(
        "wrote {} (ONNX opset {}, {:.1} MB): input {} ({}, 3, {}, {}), outputs {}{}",
        a.out.display(),
        onnx::OPSET,
        bytes as f64 / 1e6,
        onnx::INPUT,
        shape(1, a.dynamic_batch, "batch"),
        shape(size, a.dynamic_size, "height"),
        shape(size, a.dynamic_size, "width"),
        deepmark::codec::HEAD_NAMES.join(", "),
        if attributes.is_some() {
            format!(", {}", onnx::ATTRIBUTES_OUTPUT)
        } else {
            String::new()
        }
    );
    Ok(())
}
