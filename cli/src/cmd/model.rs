//! Weights: `convert` (PyTorch CenterNet checkpoints), `init` (random weights), `info`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use deepmark::checkpoint;
use deepmark::codec::{Grouping, Scheme};
use deepmark::garment::{TaxonomyChoice, spec};
use deepmark::model::{Arch, CenterNetConfig};
use deepmark_cli::backend::BackendKind;

use crate::cmd::SchemeArg;

/// Import a CenterNet PyTorch checkpoint (.pth) into Burnpack weights + JSON config.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// CenterNet-format checkpoint: {'epoch', 'state_dict'} or a bare state_dict.
    pub checkpoint: PathBuf,
    /// Backbone: res18, res50, dla34, mdla34, hourglass104.
    #[arg(long, required_unless_present = "config")]
    pub arch: Option<Arch>,
    /// Landmark scheme fixing the head layout: deepmark62, agg81, none, coco17, by-name
    /// [default with --taxonomy: none].
    #[arg(long, required_unless_present = "taxonomy")]
    pub scheme: Option<SchemeArg>,
    /// The checkpoint's taxonomy: deepfashion2, coco-person (CenterNet's `multi_pose_*`
    /// checkpoints), deepfashion-fld, or a taxonomy file naming every landmark.
    #[arg(long)]
    pub taxonomy: Option<TaxonomyChoice>,
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
    /// Landmark scheme [default: deepmark62; with --taxonomy: none].
    #[arg(long)]
    pub scheme: Option<SchemeArg>,
    /// The taxonomy: deepfashion2, coco-person, deepfashion-fld, or a taxonomy file naming
    /// every landmark [default: deepfashion2].
    #[arg(long)]
    pub taxonomy: Option<TaxonomyChoice>,
    #[arg(long)]
    pub out: PathBuf,
}

/// The grouping `--scheme` and `--taxonomy` name (`coco17` implies COCO's people).
fn grouping_of(scheme: Option<SchemeArg>, taxonomy: Option<&TaxonomyChoice>) -> Result<Grouping> {
    match (scheme, taxonomy) {
        (s, Some(choice)) => {
            let (tax, notes) = spec::resolve_alone(choice)?;
            crate::cmd::print_notes(&notes);
            Ok(s.unwrap_or(SchemeArg::Scheme(Scheme::None)).grouping(tax)?)
        }
        (Some(SchemeArg::Scheme(s)), None) => Ok(Grouping::of_scheme(s)?),
        (Some(SchemeArg::ByName), None) => Ok(Grouping::by_name(&deepmark::garment::DEEPFASHION2)?),
        (None, None) => Ok(Grouping::of_scheme(Scheme::Deepmark62)?),
    }
}

/// Print a weights file's config and parameter count.
#[derive(Args, Debug)]
pub struct InfoArgs {
    #[arg(long)]
    pub weights: PathBuf,
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    let grouping = grouping_of(a.scheme, a.taxonomy.as_ref())?;
    let config = match (a.arch, &a.config) {
        (Some(arch), _) => CenterNetConfig::for_grouping(arch, &grouping),
        (None, Some(path)) => {
            let mut c = checkpoint::read_config(path)?;
            c.set_grouping(&grouping);
            c
        }
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
        "wrote {} and {} ({arch}, taxonomy {}, scheme {}, {} parameters)",
        a.out.display(),
        checkpoint::config_path(&a.out).display(),
        grouping.taxonomy().name,
        grouping.name(),
        model.num_trainable_params()
    );
    Ok(())
}

pub fn init(a: InitArgs) -> Result<()> {
    let grouping = grouping_of(a.scheme, a.taxonomy.as_ref())?;
    let config = CenterNetConfig::for_grouping(a.arch, &grouping);
    let model = config.init(&BackendKind::Flex.device()?);
    checkpoint::save(&model, &config, &a.out)?;
    println!(
        "wrote {} ({}, taxonomy {}, scheme {}, {} parameters, random init)",
        a.out.display(),
        a.arch,
        grouping.taxonomy().name,
        grouping.name(),
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
