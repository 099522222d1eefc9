//! Taking a trained model out of Burn: [`onnx`] (an ONNX model with the heads as named outputs
//! and the inference settings as metadata).

#[cfg(feature = "onnx")]
pub mod onnx;
