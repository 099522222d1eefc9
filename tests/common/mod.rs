//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use deepmark::heads_io::HostTensor;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `‖a − b‖ / ‖b‖`.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

pub fn to_tensor(t: &HostTensor, device: &Device) -> Tensor<4> {
    let shape: [usize; 4] = t.shape.clone().try_into().expect("4-D tensor");
    Tensor::from_data(TensorData::new(t.data.clone(), shape), device)
}

pub fn flex() -> Device {
    deepmark::backend::BackendKind::Flex
        .device()
        .expect("flex backend")
}

pub fn ndarray() -> Device {
    deepmark::backend::BackendKind::Ndarray
        .device()
        .expect("ndarray backend")
}
