//! A CenterNet-compatible PyTorch checkpoint of a [`CenterNet`]: the inverse of
//! [`checkpoint::import_pytorch`](crate::checkpoint::import_pytorch).
//!
//! The file is what CenterNet's `save_model` writes with `torch.save` (PyTorch's zip format):
//! `{'epoch': 0, 'state_dict': OrderedDict(key → tensor)}` pickled (protocol 2) as
//! `archive/data.pkl`, each tensor's values in `archive/data/<n>` (float32, little-endian,
//! 64-byte aligned, stored uncompressed), `archive/version` = 3 and `archive/byteorder`. Keys
//! are CenterNet's ([`checkpoint::burn_key_rules`](crate::checkpoint::burn_key_rules), checked
//! against the import rules key by key), and every BatchNorm gets PyTorch's
//! `num_batches_tracked` (int64, 0) so that `load_state_dict(strict=True)` finds every key.
//! Tensors are rebuilt by `torch._utils._rebuild_tensor_v2` from `torch.FloatStorage` /
//! `torch.LongStorage`, which `torch.load(weights_only=True)` accepts.

use std::io::Write;
use std::path::Path;

use burn::store::ModuleSnapshot;
use burn::tensor::DType;

use crate::checkpoint::{
    batch_norm_torch_name, burn_key_rules, compile, torch_key_rules, torch_to_burn_key,
};
use crate::error::{Error, Result};
use crate::model::{CenterNet, CenterNetConfig};

/// One tensor of a state dict: PyTorch key, shape, little-endian values, and whether they are
/// float32 (else int64).
struct Entry {
    key: String,
    shape: Vec<usize>,
    bytes: Vec<u8>,
    float: bool,
}

#[cfg(target_endian = "big")]
compile_error!("export::pytorch writes native float32 bytes as PyTorch's little-endian storages");

/// The model's tensors under CenterNet's keys, in the module's order.
fn state_dict(model: &CenterNet, config: &CenterNetConfig) -> Result<Vec<Entry>> {
    let to_torch = compile(&burn_key_rules(&config.backbone));
    let to_burn = compile(&torch_key_rules(&config.backbone));
    let mut out = Vec::new();
    // Paths without the enum variant (`backbone.conv1`, not `backbone.Resnet.conv1`), as the
    // importer's.
    for t in model.collect(None, None, true) {
        let key = torch_to_burn_key(&to_torch, &t.name);
        // The import rules must lead back (PyTorch's BatchNorm weight/bias are Burn's
        // gamma/beta, renamed by the importer's adapter rather than by a rule).
        let back = torch_to_burn_key(&to_burn, &key);
        let expected = batch_norm_torch_name(&t.name).unwrap_or_else(|| t.name.clone());
        if back != expected || key.starts_with("backbone.") || key.starts_with("heads.") {
            return Err(Error::Invalid(format!(
                "no PyTorch key for {}: {key} imports as {back}",
                t.name
            )));
        }
        if t.dtype != DType::F32 {
            return Err(Error::Invalid(format!(
                "{} is {:?}; a CenterNet checkpoint holds float32",
                t.name, t.dtype
            )));
        }
        // Native float32 bytes: little-endian on every target this crate builds for.
        let bytes = t
            .to_bytes()
            .map_err(|e| Error::Backend(format!("cannot read {}: {e:?}", t.name)))?
            .to_vec();
        let bn_prefix = key.strip_suffix(".running_var").map(str::to_string);
        out.push(Entry {
            key,
            shape: t.shape.to_vec(),
            bytes,
            float: true,
        });
        if let Some(prefix) = bn_prefix {
            out.push(Entry {
                key: format!("{prefix}.num_batches_tracked"),
                shape: Vec::new(),
                bytes: 0i64.to_le_bytes().to_vec(),
                float: false,
            });
        }
    }
    Ok(out)
}

/// A pickle (protocol 2) being written: only the opcodes a state dict needs.
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, code: u8) {
        self.0.push(code);
    }
    /// `GLOBAL module\nname\n`.
    fn global(&mut self, module: &str, name: &str) {
        self.op(b'c');
        self.0
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    /// `BINUNICODE`: a str.
    fn str(&mut self, s: &str) {
        self.op(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    /// An int: `BININT` (4-byte signed) or `LONG1` (8 bytes) beyond it.
    fn int(&mut self, v: usize) {
        if let Ok(small) = i32::try_from(v) {
            self.op(b'J');
            self.0.extend_from_slice(&small.to_le_bytes());
        } else {
            self.0.extend_from_slice(&[0x8a, 8]);
            self.0.extend_from_slice(&(v as i64).to_le_bytes());
        }
    }
    /// A tuple of ints (`MARK … TUPLE`).
    fn int_tuple(&mut self, v: &[usize]) {
        self.op(b'(');
        for &x in v {
            self.int(x);
        }
        self.op(b't');
    }
    /// `collections.OrderedDict()`.
    fn ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.op(b')');
        self.op(b'R');
    }
}

/// `data.pkl`: `{'epoch': 0, 'state_dict': OrderedDict(...)}`; tensor `n` reads storage `n`.
fn pickle(entries: &[Entry]) -> Vec<u8> {
    let mut p = Pickle(vec![0x80, 2]);
    p.op(b'}');
    p.op(b'(');
    p.str("epoch");
    p.int(0);
    p.str("state_dict");
    p.ordered_dict();
    p.op(b'(');
    for (n, e) in entries.iter().enumerate() {
        p.str(&e.key);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.op(b'(');
        // The storage, by persistent id ('storage', type, key, location, numel).
        p.op(b'(');
        p.str("storage");
        p.global(
            "torch",
            if e.float {
                "FloatStorage"
            } else {
                "LongStorage"
            },
        );
        p.str(&n.to_string());
        p.str("cpu");
        p.int(e.shape.iter().product());
        p.op(b't');
        p.op(b'Q');
        p.int(0); // storage offset
        p.int_tuple(&e.shape);
        // Contiguous strides.
        let mut stride = vec![1usize; e.shape.len()];
        for i in (0..e.shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * e.shape[i + 1];
        }
        p.int_tuple(&stride);
        p.op(0x89); // requires_grad = False
        p.ordered_dict(); // backward hooks
        p.op(b't');
        p.op(b'R');
    }
    p.op(b'u');
    p.op(b'u');
    p.op(b'.');
    p.0
}

/// Writes `model` as a CenterNet checkpoint at `path` (atomically).
pub fn save(model: &CenterNet, config: &CenterNetConfig, path: &Path) -> Result<()> {
    let entries = state_dict(model, config)?;
    let zip_err = |e: zip::result::ZipError| Error::file(path, format!("cannot write: {e}"));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64)
        .large_file(true);
    let put = |zip: &mut zip::ZipWriter<_>, name: &str, bytes: &[u8]| -> Result<()> {
        zip.start_file(format!("archive/{name}"), stored)
            .map_err(zip_err)?;
        zip.write_all(bytes)
            .map_err(|e| Error::io("write", path, e))
    };
    put(&mut zip, "data.pkl", &pickle(&entries))?;
    put(&mut zip, "byteorder", b"little")?;
    for (n, e) in entries.iter().enumerate() {
        put(&mut zip, &format!("data/{n}"), &e.bytes)?;
    }
    put(&mut zip, "version", b"3\n")?;
    let bytes = zip.finish().map_err(zip_err)?.into_inner();
    crate::io::write_atomic(path, &bytes)
}
