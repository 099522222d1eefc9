//! Weights on disk.
//!
//! * [`import_pytorch`] reads CenterNet-format PyTorch checkpoints (`{'epoch', 'state_dict'}` or
//!   a bare state_dict, optional `module.` prefix) through burn-store's `PytorchStore`, renaming
//!   PyTorch keys to Burn module paths with the rules of [`torch_key_rules`].
//! * [`save`] / [`load`] write and read Burnpack (`.bpk`) weights with the model config as JSON
//!   beside them ([`config_path`]), so that later commands need only the weights path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::store::{BurnpackStore, ModuleSnapshot, ModuleStore};
#[cfg(feature = "pytorch")]
use burn::store::{KeyRemapper, PytorchStore};
use burn::tensor::Device;
use regex::Regex;

use crate::codec::HEAD_NAMES;
use crate::error::{Error, Result};
use crate::io::{Checksum, read_json, write_atomic_with, write_json};
use crate::model::{BackboneConfig, CenterNet, CenterNetConfig};

/// Rules (regex, replacement) that turn a CenterNet PyTorch key into the Burn module path.
/// They are applied in order, each to the result of the previous ones. Every rule that
/// rewrites a key's first segment also prefixes `backbone.`/`heads.`, so later rules anchored on
/// PyTorch prefixes cannot fire twice.
pub fn torch_key_rules(backbone: &BackboneConfig) -> Vec<(String, String)> {
    let mut r: Vec<(String, String)> = Vec::new();
    let mut rule = |from: String, to: String| r.push((from, to));
    // `hm|wh|reg|hps|hm_hp|hp_offset`.
    let heads = HEAD_NAMES.join("|");
    let heads = heads.as_str();
    // `nn.DataParallel` checkpoints.
    rule(r"^module\.".into(), String::new());
    match backbone {
        BackboneConfig::Hourglass(cfg) => {
            // Heads: `hm.<stack>.0.conv.*` (3×3 `convolution` without BN) and `hm.<stack>.1.*`.
            rule(
                format!(r"^({heads})\.(\d+)\.0\.conv\."),
                "heads.${2}.${1}.conv.".into(),
            );
            rule(
                format!(r"^({heads})\.(\d+)\.1\."),
                "heads.${2}.${1}.out.".into(),
            );
            // `residual.skip` and the between-stack `inters_`/`cnvs_` are Sequential(conv, bn).
            rule(r"\.skip\.0\.".into(), ".skip.conv.".into());
            rule(r"\.skip\.1\.".into(), ".skip.bn.".into());
            rule(
                r"^(inters_|cnvs_)\.(\d+)\.0\.".into(),
                "backbone.${1}.${2}.conv.".into(),
            );
            rule(
                r"^(inters_|cnvs_)\.(\d+)\.1\.".into(),
                "backbone.${1}.${2}.bn.".into(),
            );
            // Stem `pre = Sequential(convolution, residual)`.
            rule(r"^pre\.0\.".into(), "backbone.pre_conv.".into());
            rule(r"^pre\.1\.".into(), "backbone.pre_res.".into());
            // Recursive hourglass: `kps.S.(low2.)^d{up1,low1,low3}` is level d; the innermost
            // `low2` (after n `low2.`) is `inner`.
            let n = cfg.depth();
            rule(
                format!(r"^kps\.(\d+)\.(?:low2\.){{{n}}}"),
                "backbone.kps.${1}.inner.".into(),
            );
            for d in 0..n {
                rule(
                    format!(r"^kps\.(\d+)\.(?:low2\.){{{d}}}(up1|low1|low3)\."),
                    format!("backbone.kps.${{1}}.levels.{d}.${{2}}."),
                );
            }
            rule(r"^(cnvs|inters)\.".into(), "backbone.${1}.".into());
        }
        BackboneConfig::Resnet(cfg) => {
            rule(format!(r"^({heads})\.0\."), "heads.0.${1}.conv.".into());
            rule(format!(r"^({heads})\.2\."), "heads.0.${1}.out.".into());
            rule(
                r"^(layer[1-4])\.(\d+)\.downsample\.0\.".into(),
                "backbone.${1}.${2}.downsample.conv.".into(),
            );
            rule(
                r"^(layer[1-4])\.(\d+)\.downsample\.1\.".into(),
                "backbone.${1}.${2}.downsample.bn.".into(),
            );
            // `deconv_layers = Sequential(deconv, bn, relu) × 3` → indices 3i (deconv), 3i+1 (bn).
            for i in 0..cfg.deconv.len() {
                rule(
                    format!(r"^deconv_layers\.{}\.", 3 * i),
                    format!("backbone.deconv_layers.{i}.up."),
                );
                rule(
                    format!(r"^deconv_layers\.{}\.", 3 * i + 1),
                    format!("backbone.deconv_layers.{i}.bn."),
                );
            }
            rule(r"^(conv1|bn1|layer[1-4])\.".into(), "backbone.${1}.".into());
        }
        BackboneConfig::Dla { .. } => {
            rule(format!(r"^({heads})\.0\."), "heads.0.${1}.conv.".into());
            rule(format!(r"^({heads})\.2\."), "heads.0.${1}.out.".into());
            // DeformConv: `actf = Sequential(BN, ReLU)`.
            rule(r"\.actf\.0\.".into(), ".actf.".into());
            // IDAUp's 1-based `proj_i`, `up_i`, `node_i` are 0-based lists here.
            for i in 1..=3 {
                rule(
                    format!(r"\.(proj|up|node)_{i}\."),
                    format!(".${{1}}.{}.", i - 1),
                );
            }
            rule(r"\.project\.0\.".into(), ".project.conv.".into());
            rule(r"\.project\.1\.".into(), ".project.bn.".into());
            rule(
                r"^base\.(base_layer|level0|level1)\.0\.".into(),
                "backbone.base.${1}.conv.".into(),
            );
            rule(
                r"^base\.(base_layer|level0|level1)\.1\.".into(),
                "backbone.base.${1}.bn.".into(),
            );
            rule(
                r"^dla_up\.ida_(\d+)\.".into(),
                "backbone.dla_up.ida.${1}.".into(),
            );
            rule(r"^(base|ida_up)\.".into(), "backbone.${1}.".into());
        }
    }
    r
}

/// The inverse of [`torch_key_rules`]: rules (regex, replacement) that turn a Burn module path
/// into CenterNet's PyTorch key, applied in order, each to the result of the previous ones
/// (`export::pytorch` writes state dicts with them and checks each key against
/// [`torch_key_rules`]). Every rule that consumes the `backbone.`/`heads.` prefix produces a
/// PyTorch first segment, so later rules anchored on Burn prefixes cannot fire twice.
/// BatchNorm's `gamma`/`beta` become PyTorch's `weight`/`bias`.
pub fn burn_key_rules(backbone: &BackboneConfig) -> Vec<(String, String)> {
    let mut r: Vec<(String, String)> = Vec::new();
    let mut rule = |from: String, to: String| r.push((from, to));
    let heads = HEAD_NAMES.join("|");
    let heads = heads.as_str();
    match backbone {
        BackboneConfig::Hourglass(cfg) => {
            rule(
                format!(r"^heads\.(\d+)\.({heads})\.conv\."),
                "${2}.${1}.0.conv.".into(),
            );
            rule(
                format!(r"^heads\.(\d+)\.({heads})\.out\."),
                "${2}.${1}.1.".into(),
            );
            rule(r"\.skip\.conv\.".into(), ".skip.0.".into());
            rule(r"\.skip\.bn\.".into(), ".skip.1.".into());
            rule(
                r"^backbone\.(inters_|cnvs_)\.(\d+)\.conv\.".into(),
                "${1}.${2}.0.".into(),
            );
            rule(
                r"^backbone\.(inters_|cnvs_)\.(\d+)\.bn\.".into(),
                "${1}.${2}.1.".into(),
            );
            rule(r"^backbone\.pre_conv\.".into(), "pre.0.".into());
            rule(r"^backbone\.pre_res\.".into(), "pre.1.".into());
            // Level d of stack S is `kps.S.(low2.)^d`, the innermost residuals `(low2.)^n`.
            let n = cfg.depth();
            rule(
                r"^backbone\.kps\.(\d+)\.inner\.".into(),
                format!("kps.${{1}}.{}", "low2.".repeat(n)),
            );
            for d in 0..n {
                rule(
                    format!(r"^backbone\.kps\.(\d+)\.levels\.{d}\.(up1|low1|low3)\."),
                    format!("kps.${{1}}.{}${{2}}.", "low2.".repeat(d)),
                );
            }
            rule(r"^backbone\.(cnvs|inters)\.".into(), "${1}.".into());
        }
        BackboneConfig::Resnet(cfg) => {
            rule(format!(r"^heads\.0\.({heads})\.conv\."), "${1}.0.".into());
            rule(format!(r"^heads\.0\.({heads})\.out\."), "${1}.2.".into());
            rule(
                r"^backbone\.(layer[1-4])\.(\d+)\.downsample\.conv\.".into(),
                "${1}.${2}.downsample.0.".into(),
            );
            rule(
                r"^backbone\.(layer[1-4])\.(\d+)\.downsample\.bn\.".into(),
                "${1}.${2}.downsample.1.".into(),
            );
            for i in 0..cfg.deconv.len() {
                rule(
                    format!(r"^backbone\.deconv_layers\.{i}\.up\."),
                    format!("deconv_layers.{}.", 3 * i),
                );
                rule(
                    format!(r"^backbone\.deconv_layers\.{i}\.bn\."),
                    format!("deconv_layers.{}.", 3 * i + 1),
                );
            }
            rule(r"^backbone\.".into(), String::new());
        }
        BackboneConfig::Dla { .. } => {
            rule(format!(r"^heads\.0\.({heads})\.conv\."), "${1}.0.".into());
            rule(format!(r"^heads\.0\.({heads})\.out\."), "${1}.2.".into());
            rule(r"\.actf\.".into(), ".actf.0.".into());
            for i in 1..=3 {
                rule(
                    format!(r"\.(proj|up|node)\.{}\.", i - 1),
                    format!(".${{1}}_{i}."),
                );
            }
            rule(r"\.project\.conv\.".into(), ".project.0.".into());
            rule(r"\.project\.bn\.".into(), ".project.1.".into());
            rule(
                r"^backbone\.base\.(base_layer|level0|level1)\.conv\.".into(),
                "base.${1}.0.".into(),
            );
            rule(
                r"^backbone\.base\.(base_layer|level0|level1)\.bn\.".into(),
                "base.${1}.1.".into(),
            );
            rule(
                r"^backbone\.dla_up\.ida\.(\d+)\.".into(),
                "dla_up.ida_${1}.".into(),
            );
            rule(r"^backbone\.".into(), String::new());
        }
    }
    rule(r"\.gamma$".into(), ".weight".into());
    rule(r"\.beta$".into(), ".bias".into());
    r
}

/// Apply [`torch_key_rules`] to one key (the same transformation `PytorchStore` applies).
pub fn torch_to_burn_key(rules: &[(Regex, String)], key: &str) -> String {
    let mut k = key.to_string();
    for (re, to) in rules {
        if re.is_match(&k) {
            k = re.replace_all(&k, to.as_str()).into_owned();
        }
    }
    k
}

/// Key rules (regex, replacement) as compiled regexes.
#[cfg(feature = "pytorch")]
pub(crate) fn compile(rules: &[(String, String)]) -> Vec<(Regex, String)> {
    rules
        .iter()
        .map(|(f, t)| (Regex::new(f).expect("valid built-in regex"), t.clone()))
        .collect()
}

/// PyTorch's name of a BatchNorm tensor path that Burn names differently: `….gamma` is PyTorch's
/// `….weight`, `….beta` its `….bias` (PytorchStore's adapter renames them when loading, not a
/// key rule); `None` for every other path.
#[cfg(feature = "pytorch")]
pub(crate) fn batch_norm_torch_name(path: &str) -> Option<String> {
    path.strip_suffix(".gamma")
        .map(|b| format!("{b}.weight"))
        .or_else(|| path.strip_suffix(".beta").map(|b| format!("{b}.bias")))
}

/// PyTorch keys that CenterNet checkpoints carry but no model uses.
pub fn is_known_unused(torch_key: &str) -> bool {
    torch_key.ends_with("num_batches_tracked")
        || torch_key
            .trim_start_matches("module.")
            .starts_with("base.fc.")
}

/// What an import did, key by key (PyTorch names where the key came from the checkpoint).
#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    /// Tensors loaded.
    pub loaded: usize,
    /// Checkpoint keys whose shape differs from the model's (e.g. an 80-class `hm`):
    /// the model keeps its fresh initialisation. `(key, checkpoint shape, model shape)`.
    pub reinitialised: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// Model tensors the checkpoint does not have (Burn paths): freshly initialised.
    pub missing: Vec<String>,
    /// Checkpoint keys the model does not use, other than the known ones.
    pub unused: Vec<String>,
    /// Known-unused checkpoint keys (`num_batches_tracked`, `base.fc.*`).
    pub ignored: Vec<String>,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "loaded {} tensors", self.loaded)?;
        if !self.reinitialised.is_empty() {
            writeln!(
                f,
                "re-initialised (shape differs from the checkpoint): {}",
                self.reinitialised.len()
            )?;
            for (k, from, to) in &self.reinitialised {
                writeln!(f, "  {k}: checkpoint {from:?}, model {to:?}")?;
            }
        }
        if !self.missing.is_empty() {
            writeln!(
                f,
                "missing in the checkpoint (freshly initialised): {}",
                self.missing.len()
            )?;
            for k in &self.missing {
                writeln!(f, "  {k}")?;
            }
        }
        if !self.unused.is_empty() {
            writeln!(f, "unused checkpoint keys: {}", self.unused.len())?;
            for k in &self.unused {
                writeln!(f, "  {k}")?;
            }
        }
        write!(
            f,
            "ignored known-unused keys: {} (num_batches_tracked, base.fc.*)",
            self.ignored.len()
        )
    }
}

#[cfg(feature = "pytorch")]
fn checkpoint_keys(path: &Path, top_level: Option<&str>) -> Result<Vec<String>, String> {
    let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
    if let Some(key) = top_level {
        store = store.with_top_level_key(key);
    }
    store.keys().map_err(|e| e.to_string())
}

/// Import a PyTorch checkpoint into any module, renaming keys with `rules` (regex,
/// replacement; see [`torch_key_rules`]). A tensor of another shape keeps the module's
/// initialisation and is reported in [`ImportReport::reinitialised`]; one whose header claims
/// more than 64× the model tensor's elements (and over a million) is refused before it is read.
#[cfg(feature = "pytorch")]
pub fn import_pytorch_module<M: ModuleSnapshot>(
    path: &Path,
    model: &mut M,
    rules: Vec<(String, String)>,
) -> Result<ImportReport> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("read checkpoint", path, e))?;
    if !meta.is_file() {
        return Err(Error::file(path, "the checkpoint is not a file"));
    }
    // CenterNet's `save_model` writes {'epoch', 'state_dict', ['optimizer']}; plain
    // `torch.save(model.state_dict())` files have the tensors at the top level.
    let (top_level, keys) = match checkpoint_keys(path, Some("state_dict")) {
        Ok(keys) if !keys.is_empty() => (Some("state_dict"), keys),
        _ => {
            let keys = checkpoint_keys(path, None).map_err(|e| {
                Error::file(path, format!("not a readable PyTorch checkpoint: {e}"))
            })?;
            (None, keys)
        }
    };
    if keys.is_empty() {
        return Err(Error::file(
            path,
            "holds no tensors (not a CenterNet checkpoint?)",
        ));
    }

    let compiled = compile(&rules);
    let burn_to_torch: BTreeMap<String, String> = keys
        .iter()
        .map(|k| (torch_to_burn_key(&compiled, k), k.clone()))
        .collect();
    let torch_name = |burn: &str| {
        burn_to_torch
            .get(burn)
            .cloned()
            .unwrap_or_else(|| burn.to_string())
    };

    let mut store = PytorchStore::from_file(path)
        .map_indices_contiguous(false)
        .remap(KeyRemapper::from_patterns(rules).expect("valid built-in regexes"))
        .allow_partial(true)
        .validate(false);
    if let Some(key) = top_level {
        store = store.with_top_level_key(key);
    }

    // Module paths by the name the checkpoint would use: PyTorch calls BatchNorm's
    // gamma/beta weight/bias (PytorchStore's adapter renames them when loading).
    let mut by_torch_name = expected_shapes(model);
    let aliases: Vec<(String, Vec<usize>)> = by_torch_name
        .iter()
        .filter_map(|(p, shape)| {
            let alias = batch_norm_torch_name(p)?;
            Some((alias, shape.clone()))
        })
        .collect();
    by_torch_name.extend(aliases);
    // A tensor of another shape is normal (heads for another class count: loaded, refused by
    // the shape check, re-initialised and reported), but one claiming far more data than the
    // model's tensor would have it read into memory first: refused from the header.
    for (k, shape) in stored_shapes(&mut store, path, "cannot import")? {
        let Some(want) = by_torch_name.get(&k) else {
            continue;
        };
        let claimed = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let expected_numel: usize = want.iter().product();
        if claimed.is_none_or(|n| n > expected_numel.saturating_mul(64).max(1 << 20)) {
            return Err(Error::file(
                path,
                format!(
                    "tensor {} claims shape {shape:?}, far larger than the model's {want:?}; not read",
                    torch_name(&k)
                ),
            ));
        }
    }
    let mut report = ImportReport::default();
    let result = model
        .load_from(&mut store)
        .map_err(|e| Error::file(path, format!("cannot import: {e}")))?;

    report.loaded = result.applied.len();
    for err in &result.errors {
        match err {
            burn::store::ApplyError::ShapeMismatch {
                path: p,
                expected,
                found,
            } => report
                .reinitialised
                .push((torch_name(p), found.to_vec(), expected.to_vec())),
            other => return Err(Error::file(path, format!("cannot import: {other}"))),
        }
    }
    report.missing = result.missing.iter().map(|(p, _)| p.clone()).collect();
    for k in &result.unused {
        let name = torch_name(k);
        if is_known_unused(&name) {
            report.ignored.push(name);
        } else {
            report.unused.push(name);
        }
    }
    report.reinitialised.sort();
    report.unused.sort();
    Ok(report)
}

/// Import a CenterNet PyTorch checkpoint into a freshly initialised model of `config`.
///
/// Tensors whose shape differs (typically heads trained for another class count) keep their
/// fresh initialisation and are reported; so are missing and unused keys. A checkpoint that
/// matches too little of the backbone is rejected as the wrong architecture.
#[cfg(feature = "pytorch")]
pub fn import_pytorch(
    path: &Path,
    config: &CenterNetConfig,
    device: &Device,
) -> Result<(CenterNet, ImportReport)> {
    config.check()?;
    let mut model = config.init(device);
    let report = import_pytorch_module(path, &mut model, torch_key_rules(&config.backbone))?;

    // The wrong architecture shows as backbone tensors that are missing or mis-shaped.
    let backbone_total = model.backbone.collect(None, None, false).len();
    let backbone_bad = report
        .missing
        .iter()
        .filter(|k| k.starts_with("backbone."))
        .count()
        + report
            .reinitialised
            .iter()
            .filter(|(k, ..)| !is_head_key(k))
            .count();
    if backbone_bad > 0 {
        let mut sample: Vec<&str> = report.unused.iter().map(String::as_str).take(5).collect();
        if sample.is_empty() {
            sample = report
                .reinitialised
                .iter()
                .map(|(k, ..)| k.as_str())
                .take(5)
                .collect();
        }
        return Err(Error::file(
            path,
            format!(
                "does not match the requested backbone: {backbone_bad} of {backbone_total} backbone tensors are \
                 missing or have another shape (checkpoint keys such as {sample:?}); check the architecture\n{report}"
            ),
        ));
    }
    // NaN or infinite weights (a diverged run's) would load and then detect noise.
    for t in model.collect(None, None, false) {
        if t.dtype != burn::tensor::DType::F32 {
            continue;
        }
        let bytes = t
            .to_bytes()
            .map_err(|e| Error::file(path, format!("cannot read tensor {}: {e:?}", t.name)))?;
        if let Some(i) = bytes
            .chunks_exact(4)
            .position(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite())
        {
            return Err(Error::file(
                path,
                format!(
                    "tensor {} holds a non-finite value (at index {i}): the weights are not usable",
                    t.name
                ),
            ));
        }
    }
    Ok((model, report))
}

/// Every tensor a store holds, with the shape its header gives (no data is read); errors name
/// `path` after `action`.
fn stored_shapes<S: ModuleStore>(
    store: &mut S,
    path: &Path,
    action: &str,
) -> Result<Vec<(String, Vec<usize>)>> {
    Ok(store
        .get_all_tensors()
        .map_err(|e| Error::file(path, format!("{action}: {e}")))?
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.to_vec()))
        .collect())
}

/// Every tensor of `model` by its path, with its shape (no data is read).
fn expected_shapes<M: ModuleSnapshot>(model: &M) -> BTreeMap<String, Vec<usize>> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|t| (t.name, t.shape.to_vec()))
        .collect()
}

#[cfg(feature = "pytorch")]
fn is_head_key(torch_key: &str) -> bool {
    let k = torch_key.trim_start_matches("module.");
    HEAD_NAMES
        .iter()
        .any(|h| k.strip_prefix(h).is_some_and(|rest| rest.starts_with('.')))
}

/// The model config JSON that sits beside a weights file: `model.bpk` → `model.json`.
pub fn config_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// The checksums written beside a weights file: `model.bpk` → `model.check.json`.
pub fn check_path(weights: &Path) -> PathBuf {
    weights.with_extension("check.json")
}

/// What [`check_path`] holds: the weights file's and its model config's checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WeightsCheck {
    /// CRC-32 and length of the weights file.
    pub weights: Checksum,
    /// CRC-32 and length of the config file.
    pub config: Checksum,
}

/// Save weights (Burnpack), config (JSON beside them) and their checksums
/// ([`check_path`]), each atomically. The old checksums are removed first, so a crash part-way
/// leaves weights that load unchecked rather than weights reported corrupt.
pub fn save(model: &CenterNet, config: &CenterNetConfig, path: &Path) -> Result<()> {
    save_module(model, config, path)
}

/// [`save`] for any module and its config (the PoseFix refiners use it too).
pub fn save_module<M, C>(model: &M, config: &C, path: &Path) -> Result<()>
where
    M: ModuleSnapshot,
    C: serde::Serialize,
{
    if config_path(path) == path {
        return Err(Error::file(
            path,
            "a weights file cannot be named .json: its model config, written beside it under \
             the same name, would overwrite it (name it .bpk)",
        ));
    }
    let check = check_path(path);
    match std::fs::remove_file(&check) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io("remove", &check, e));
        }
        _ => {}
    }
    write_atomic_with(path, |tmp| {
        let mut store = BurnpackStore::from_file(tmp)
            .auto_extension(false)
            .overwrite(true);
        model.save_into(&mut store).map_err(|e| {
            // Burn's message names the temporary files it writes through (ours, and its own
            // beside it); the user asked for `path`.
            let tmp = Regex::new(&format!(
                r"{}[^'\s]*",
                regex::escape(&tmp.to_string_lossy())
            ))
            .map(|re| {
                re.replace_all(&e.to_string(), &*path.to_string_lossy())
                    .into_owned()
            });
            Error::file(
                path,
                format!(
                    "cannot write weights: {}",
                    tmp.unwrap_or_else(|_| e.to_string())
                ),
            )
        })
    })?;
    write_json(&config_path(path), config)?;
    let sums = WeightsCheck {
        weights: Checksum::of_file(path)?,
        config: Checksum::of_file(&config_path(path))?,
    };
    write_json(&check, &sums)
}

/// Verifies weights and their config against the checksums saved with them; weights saved
/// without checksums (older files, hand-made ones) pass unchecked.
pub fn verify(weights: &Path) -> Result<()> {
    let check = check_path(weights);
    if !check.is_file() {
        return Ok(());
    }
    let sums: WeightsCheck = read_json(&check, "weights checksum file")?;
    sums.weights.verify(weights)?;
    sums.config.verify(&config_path(weights)).map_err(|e| {
        Error::file(
            weights,
            format!(
                "its model config does not match the one saved with it ({e}); if the config was \
                 edited on purpose, remove {} to load it unchecked",
                check.display()
            ),
        )
    })
}

/// Read a model config JSON file, refusing configs no network could have
/// ([`CenterNetConfig::check`]) before anything is built from them.
pub fn read_config(path: &Path) -> Result<CenterNetConfig> {
    checked_config(read_json(path, "model config")?, path)
}

/// Read the config saved beside `weights`.
pub fn load_config(weights: &Path) -> Result<CenterNetConfig> {
    checked_config(
        read_config_beside(weights, "model config")?,
        &config_path(weights),
    )
}

/// `config` if [`CenterNetConfig::check`] accepts it; the error names the file it came from.
fn checked_config(config: CenterNetConfig, path: &Path) -> Result<CenterNetConfig> {
    config
        .check()
        .map_err(|e| Error::file(path, format!("not a usable model config: {e}")))?;
    Ok(config)
}

/// The config JSON beside `weights` (`what` names it in errors).
pub(crate) fn read_config_beside<C: serde::de::DeserializeOwned>(
    weights: &Path,
    what: &str,
) -> Result<C> {
    let path = config_path(weights);
    if !path.is_file() {
        return Err(Error::file(
            weights,
            format!(
                "its {what} {} is missing (weights are saved with their config beside them)",
                path.display()
            ),
        ));
    }
    read_json(&path, what)
}

/// Load weights saved by [`save`] (config from the JSON beside them).
pub fn load(weights: &Path, device: &Device) -> Result<(CenterNet, CenterNetConfig)> {
    load_module(weights, "model config", |c: &CenterNetConfig| {
        // Before anything is built: a config far larger than the file's tensors (one that
        // belongs to other weights) is refused from the header's element count.
        let estimate = c.estimated_params()?;
        let mut store = BurnpackStore::from_file(weights).auto_extension(false);
        let stored: f64 = stored_shapes(&mut store, weights, "cannot read weights")?
            .iter()
            .map(|(_, s)| s.iter().product::<usize>() as f64)
            .sum();
        if estimate > 8.0 * stored + 1e6 {
            return Err(Error::Invalid(format!(
                "it describes a network of about {:.1} M parameters, the weights file {} holds \
                 {:.1} M values: they do not belong together",
                estimate / 1e6,
                weights.display(),
                stored / 1e6
            )));
        }
        Ok(c.init(device))
    })
}

/// Loads the modules a folder's index file lists. `entries` are `(what the index says a model
/// is for, its weights file inside dir)`; each model's config must say the same (`key_of`), else
/// the error names the weights, the field `category_id` and both values (`describe`). An index
/// that lists nothing is an error naming it and `field`.
#[allow(clippy::too_many_arguments)]
pub fn load_listed<M, C, K>(
    dir: &Path,
    index: &Path,
    field: &str,
    entries: impl IntoIterator<Item = (K, String)>,
    what: &str,
    init: impl Fn(&C) -> Result<M>,
    key_of: impl Fn(&C) -> K,
    describe: impl Fn(&K) -> String,
) -> Result<Vec<(M, C)>>
where
    M: ModuleSnapshot,
    C: serde::de::DeserializeOwned,
    K: PartialEq,
{
    let mut list = Vec::new();
    for (key, file) in entries {
        let weights = dir.join(&file);
        let (model, cfg) = load_module(&weights, what, &init)?;
        if key_of(&cfg) != key {
            return Err(Error::file(
                &weights,
                format!(
                    "field `category_id`: the weights are for {}, but {} lists them for {}",
                    describe(&key_of(&cfg)),
                    index.display(),
                    describe(&key)
                ),
            ));
        }
        list.push((model, cfg));
    }
    if list.is_empty() {
        return Err(Error::file(
            index,
            format!("field `{field}`: lists no model"),
        ));
    }
    Ok(list)
}

/// A [`CenterNet`] of `config` with the weights in `bytes`, the contents of a Burnpack weights
/// file as [`save`] writes it (embedded with `include_bytes!`, downloaded, or read from an
/// archive). Shapes are compared with the config's from the file's header before any tensor is
/// read; every tensor must be present.
pub fn load_bytes(bytes: Vec<u8>, config: &CenterNetConfig, device: &Device) -> Result<CenterNet> {
    const SOURCE: &str = "(weights in memory)";
    config.check()?;
    let mut model = config.init(device);
    let store = BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(bytes)));
    fill(&mut model, store, Path::new(SOURCE), "the given config")?;
    Ok(model)
}

/// [`load_bytes`] of everything `reader` gives (a Burnpack weights file's contents).
pub fn load_reader(
    mut reader: impl std::io::Read,
    config: &CenterNetConfig,
    device: &Device,
) -> Result<CenterNet> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read weights from", Path::new("(reader)"), e))?;
    load_bytes(bytes, config, device)
}

/// Reads `store` into `model`: shapes compared from the header first, then every tensor, all
/// required. `source` names the weights in errors, `config` the configuration they must match.
fn fill<M: ModuleSnapshot>(
    model: &mut M,
    store: BurnpackStore,
    source: &Path,
    config: &str,
) -> Result<()> {
    let mut store = store
        .auto_extension(false)
        .allow_partial(true)
        .validate(false);
    // Shapes are compared from the file's header before any tensor is read: a file claiming an
    // absurd shape is refused without allocating for it.
    let expected = expected_shapes(model);
    let wrong: Vec<String> = stored_shapes(&mut store, source, "cannot read weights")?
        .into_iter()
        .filter_map(|(k, shape)| {
            let want = expected.get(&k)?;
            (*want != shape).then(|| format!("  {k}: file {shape:?}, config {want:?}"))
        })
        .collect();
    if !wrong.is_empty() {
        return Err(Error::file(
            source,
            format!(
                "weights do not match their config {config} ({} tensors of another shape):\n{}",
                wrong.len(),
                wrong.join("\n")
            ),
        ));
    }
    let result = model
        .load_from(&mut store)
        .map_err(|e| Error::file(source, format!("cannot read weights: {e}")))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(Error::file(
            source,
            format!("weights do not match their config {config}:\n{result}"),
        ));
    }
    Ok(())
}

/// [`load`] for any module: `init` builds the module of a config (`what` names the config in
/// errors), whose tensors must all be in the file with the same shapes.
pub fn load_module<M, C>(
    weights: &Path,
    what: &str,
    init: impl FnOnce(&C) -> Result<M>,
) -> Result<(M, C)>
where
    M: ModuleSnapshot,
    C: serde::de::DeserializeOwned,
{
    crate::io::regular_file(weights).map_err(|m| Error::file(weights, m))?;
    verify(weights)?;
    let path = config_path(weights);
    let config: C = read_config_beside(weights, what)?;
    let mut model = init(&config).map_err(|e| Error::file(&path, e.to_string()))?;
    let store = BurnpackStore::from_file(weights);
    fill(&mut model, store, weights, &path.display().to_string())?;
    Ok((model, config))
}
