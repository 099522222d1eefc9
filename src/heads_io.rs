//! Raw head tensors as safetensors files (`infer --dump-heads`): the interchange format for
//! checking this port against any other CenterNet implementation.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::tensor::{Dtype, TensorView};

use crate::checkpoint::write_atomic;
use crate::model::HeadOutputs;

/// A host-side f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn from_tensor(t: &burn::tensor::Tensor<4>) -> Result<Self> {
        let shape = t.dims().to_vec();
        let data = t
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("cannot read tensor back: {e:?}"))?;
        Ok(Self { shape, data })
    }
}

/// The heads as host tensors, keyed by CenterNet name.
pub fn heads_to_host(heads: &HeadOutputs) -> Result<BTreeMap<String, HostTensor>> {
    heads
        .named()
        .iter()
        .map(|(n, t)| Ok((n.to_string(), HostTensor::from_tensor(t)?)))
        .collect()
}

/// Write tensors as a safetensors file (f32, little-endian), atomically.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, HostTensor>) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(k, b, s)| Ok((k.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let out = safetensors::serialize(views, None)?;
    write_atomic(path, &out)
}

/// Read every f32 tensor of a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            bail!(
                "{}: tensor '{name}' is {:?}, expected F32",
                path.display(),
                view.dtype()
            );
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(
            name,
            HostTensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}
