//! Data sets: `convert-dataset` (raw DeepFashion2 → COCO-style JSON), `show-data` (augmented
//! samples drawn), `templates` and `synth` (the synthetic generator).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use deepmark::codec::{Grouping, Scheme};
use deepmark::data::augment::{AugmentConfig, augment};
use deepmark::data::deepfashion2::{convert_raw_dir, load_coco};
use deepmark::data::synth::{SynthConfig, Templates, generate};
use deepmark::garment::TaxonomyChoice;
use deepmark::io::{save_image_atomic, write_json, write_json_compact};

use crate::cmd::SchemeArg;

use crate::ui::{images_or_default, progress_bar, tick};

/// Convert raw DeepFashion2 annotations (a split folder with annos/ and image/) into the
/// COCO-style JSON of the official deepfashion2_to_coco.py.
#[derive(Args, Debug)]
pub struct ConvertDatasetArgs {
    /// Split folder (annos/*.json + image/*.jpg).
    pub raw: PathBuf,
    /// Output COCO-style JSON.
    pub out: PathBuf,
    /// Skip (and report) bad items and images instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
}

/// Draw augmented training samples (boxes, landmarks, group ids) into one PNG, to check the
/// data pipeline by eye.
#[derive(Args, Debug)]
pub struct ShowDataArgs {
    /// COCO-style DeepFashion2 JSON.
    #[arg(long)]
    pub data: PathBuf,
    /// Image folder (default: `image/` beside the JSON).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Grouping whose ids are drawn: deepmark62, agg81, none, by-name (other taxonomies: none
    /// or by-name; deepmark62 there means none).
    #[arg(long, default_value = "deepmark62")]
    pub scheme: SchemeArg,
    /// The data's taxonomy: a built-in name or a taxonomy file [default: read from the data].
    #[arg(long)]
    pub taxonomy: Option<TaxonomyChoice>,
    /// How many samples.
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    #[arg(long, default_value_t = 512)]
    pub input_size: usize,
    /// Augmentation seed.
    #[arg(long, default_value_t = 317)]
    pub seed: u64,
    #[arg(long, default_value = "runs/show-data.png")]
    pub out: PathBuf,
}

/// Derive the synthetic generator's landmark templates from real annotations.
#[derive(Args, Debug)]
pub struct TemplatesArgs {
    /// COCO-style DeepFashion2 JSON.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "src/data/templates.json")]
    pub out: PathBuf,
}

/// Generate the synthetic DeepFashion2-format dataset (image/, annos/, train.json).
#[derive(Args, Debug)]
pub struct SynthArgs {
    #[arg(long, default_value = "datasets/synthetic")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 2000)]
    pub n: usize,
    #[arg(long, default_value_t = 317)]
    pub seed: u64,
}

pub fn convert_dataset(a: ConvertDatasetArgs) -> Result<()> {
    // The annotations are read from `annos/` (or the folder itself): the output must not be
    // one of them.
    let annos = if a.raw.join("annos").is_dir() {
        a.raw.join("annos")
    } else {
        a.raw.clone()
    };
    let out = deepmark::io::resolved(&a.out);
    if out.parent() == Some(deepmark::io::resolved(&annos).as_path())
        && out.extension().is_some_and(|e| e == "json")
    {
        bail!(
            "{} is in the folder of the raw annotations being read ({}): choose an output outside it",
            a.out.display(),
            annos.display()
        );
    }
    let bar = progress_bar("reading annotations and image headers");
    let result = convert_raw_dir(&a.raw, a.skip_bad, crate::cmd::limits(), &mut tick(&bar));
    bar.finish_and_clear();
    let (coco, report) = result?;
    if a.skip_bad {
        println!("{}", crate::cmd::flag_names(&report.to_string()));
    }
    write_json_compact(&a.out, &coco)?;
    println!(
        "wrote {} ({} images, {} items)",
        a.out.display(),
        coco.images.len(),
        coco.annotations.len()
    );
    Ok(())
}

pub fn show_data(a: ShowDataArgs) -> Result<()> {
    crate::cmd::refuse_input_as_output(&a.out, &[("--data", a.data.as_path())])?;
    let images = images_or_default(&a.images, &a.data);
    let data = crate::cmd::load_data(&a.data, &a.taxonomy, true)?;
    let (samples, report, taxonomy) = (data.samples, data.report, data.taxonomy);
    let grouping = match a.scheme {
        SchemeArg::Scheme(Scheme::Deepmark62) if !taxonomy.is_deepfashion2() => {
            Grouping::identity(taxonomy)
        }
        s => s.grouping(taxonomy)?,
    };
    if !report.skipped.is_empty() {
        println!("{}", crate::cmd::flag_names(&report.to_string()));
    }
    let cfg = AugmentConfig::train(a.input_size);
    let mut tiles = Vec::new();
    for (i, s) in samples.iter().take(a.n).enumerate() {
        let img = crate::cmd::limits().open_rgb(&images.join(&s.file_name))?;
        let aug = augment(
            taxonomy,
            &img,
            &s.items,
            &cfg,
            a.seed.wrapping_add(i as u64),
        );
        let mut canvas = aug.image.clone();
        for item in &aug.items {
            deepmark::draw::draw_item(
                &mut canvas,
                item,
                Some(&grouping),
                (a.input_size as u32 / 256).max(1),
            );
        }
        tiles.push(canvas);
    }
    if tiles.is_empty() {
        bail!("{} has no samples to draw", a.data.display());
    }
    save_image_atomic(&deepmark::draw::tile(&tiles, 4), &a.out)?;
    println!(
        "wrote {} ({} augmented samples at {s}×{s}: scale/shift, flip; colour jitter is applied to \
         the network input only; numbers: category id at each box, {} group id at each landmark)",
        a.out.display(),
        tiles.len(),
        grouping.name(),
        s = a.input_size
    );
    Ok(())
}

pub fn templates(a: TemplatesArgs) -> Result<()> {
    crate::cmd::refuse_input_as_output(&a.out, &[("--data", a.data.as_path())])?;
    let (samples, _) = load_coco(&a.data, false, crate::cmd::limits())?;
    write_json(&a.out, &Templates::derive(&samples))?;
    println!("wrote {} from {} images", a.out.display(), samples.len());
    Ok(())
}

pub fn synth(a: SynthArgs) -> Result<()> {
    let cfg = SynthConfig {
        n: a.n,
        seed: a.seed,
        ..Default::default()
    };
    let bar = progress_bar("drawing synthetic images");
    let result = generate(&a.out, &cfg, &mut tick(&bar));
    bar.finish_and_clear();
    let (coco, _) = result?;
    println!(
        "wrote {} images, {} items to {} (image/, annos/, train.json)",
        coco.images.len(),
        coco.annotations.len(),
        a.out.display()
    );
    Ok(())
}
