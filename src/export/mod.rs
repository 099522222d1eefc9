//! Taking a trained model out of Burn: `onnx` (feature `onnx`: an ONNX model with the heads as
//! named outputs and the inference settings as metadata) and `pytorch` (feature `pytorch`: a
//! CenterNet checkpoint, the inverse of `convert`).

#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(feature = "pytorch")]
pub mod pytorch;
