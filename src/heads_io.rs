//! Raw head tensors as safetensors files (`infer --dump-heads`): the interchange format for
//! checking this port against any other CenterNet implementation.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::model::HeadOutputs;

/// A host-side f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values in row-major order.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Reads a 4-d tensor back to the host (as f32).
    pub fn from_tensor(t: &burn::tensor::Tensor<4>) -> Result<Self> {
        let shape = t.dims().to_vec();
        let data = t
            .to_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| Error::Backend(format!("cannot read a tensor back: {e:?}")))?;
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
    let bad = |e: safetensors::SafeTensorError| Error::file(path, format!("cannot serialise: {e}"));
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(k, b, s)| Ok((k.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()
        .map_err(bad)?;
    let out = safetensors::serialize(views, None).map_err(bad)?;
    write_atomic(path, &out)
}

/// Read every f32 tensor of a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(Error::file(
                path,
                format!("tensor '{name}' is {:?}, expected F32", view.dtype()),
            ));
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
