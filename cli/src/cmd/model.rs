//! Weights: `convert` (PyTorch CenterNet checkpoints), `init` (random weights), `info`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use deepmark::checkpoint;
use deepmark::codec::Scheme;
use deepmark::model::{Arch, CenterNetConfig};
use deepmark_cli::backend::BackendKind;

/// Import a CenterNet PyTorch checkpoint (.pth) into Burnpack weights + JSON config.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// CenterNet-format checkpoint: {'epoch', 'state_dict'} or a bare state_dict.
    pub checkpoint: PathBuf,
    /// Backbone: res18, res50, dla34, mdla34, hourglass104.
    #[arg(long, required_unless_present = "config")]
    pub arch: Option<Arch>,
    /// Landmark scheme fixing the head layout: deepmark62, agg81, none, coco17.
    #[arg(long)]
    pub scheme: Scheme,
    /// A model config JSON (e.g. a reduced-width model) instead of a named --arch; its head
    /// layout is replaced by the scheme's.
    #[arg(long, conflicts_with = "arch")]
    pub config: Option<PathBuf>,
    /// Output weights (.bpk); the config is written beside it as .json.
    #[arg(long)]
    pub out: PathBuf,
}

/// Write randomly initialised weights (CenterNet's initialisation) for an architecture.
#[derive(Args, Debug)]
pub struct InitArgs {
    #[arg(long)]
    pub arch: Arch,
    #[arg(long, default_value = "deepmark62")]
    pub scheme: Scheme,
    #[arg(long)]
    pub out: PathBuf,
}

/// Print a weights file's config and parameter count.
#[derive(Args, Debug)]
pub struct InfoArgs {
    #[arg(long)]
    pub weights: PathBuf,
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    let config = match (a.arch, &a.config) {
        (Some(arch), _) => CenterNetConfig::new(arch, a.scheme.layout()),
        (None, Some(path)) => CenterNetConfig {
            layout: a.scheme.layout(),
            ..checkpoint::read_config(path)?
        },
        (None, None) => bail!("give --arch or --config"),
    };
    let config_out = checkpoint::config_path(&a.out);
    for out in [&a.out, &config_out] {
        let mut inputs = vec![("checkpoint", a.checkpoint.as_path())];
        if let Some(c) = &a.config {
            inputs.push(("--config", c.as_path()));
        }
        crate::cmd::refuse_input_as_output(out, &inputs)?;
    }
    let device = BackendKind::Flex.device()?;
    let (model, report) = checkpoint::import_pytorch(&a.checkpoint, &config, &device)?;
    println!("{report}");
    checkpoint::save(&model, &config, &a.out)?;
    let arch = a.arch.map_or("custom".to_string(), |a| a.to_string());
    println!(
        "wrote {} and {} ({arch}, scheme {}, {} parameters)",
        a.out.display(),
        checkpoint::config_path(&a.out).display(),
        a.scheme,
        model.num_trainable_params()
    );
    Ok(())
}

pub fn init(a: InitArgs) -> Result<()> {
    let config = CenterNetConfig::new(a.arch, a.scheme.layout());
    let model = config.init(&BackendKind::Flex.device()?);
    checkpoint::save(&model, &config, &a.out)?;
    println!(
        "wrote {} ({}, scheme {}, {} parameters, random init)",
        a.out.display(),
        a.arch,
        a.scheme,
        model.num_trainable_params()
    );
    Ok(())
}

pub fn info(a: InfoArgs) -> Result<()> {
    let (model, config) = checkpoint::load(&a.weights, &BackendKind::Flex.device()?)?;
    println!("{}", serde_json::to_string_pretty(&config)?);
    println!("parameters: {}", model.num_trainable_params());
    println!("output channels: {}", config.layout.total_channels());
    Ok(())
}
