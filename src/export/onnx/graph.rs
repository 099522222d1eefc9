//! A small ONNX graph builder over Burn modules: each call adds one node (and the module's
//! weights as initializers, named by the module's path as in the weights file) and returns the
//! name of the node's output.

use std::collections::HashSet;

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::Tensor;

use super::proto::{AttributeProto, NodeProto, TensorProto, attribute_type, data_type};
use crate::error::{Error, Result};
use crate::model::fast::layers::host;

/// Nodes in the order they were added (a topological order: every node's inputs exist before
/// it) and the initializers they read.
#[derive(Default)]
pub(crate) struct Graph {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    used: HashSet<String>,
}

/// An `ints` attribute.
pub(crate) fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.iter().map(|&x| x as i64).collect(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

/// An `int` attribute.
pub(crate) fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: v,
        r#type: attribute_type::INT,
        ..Default::default()
    }
}

/// A `float` attribute.
pub(crate) fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: v,
        r#type: attribute_type::FLOAT,
        ..Default::default()
    }
}

/// A `string` attribute.
pub(crate) fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: v.as_bytes().to_vec(),
        r#type: attribute_type::STRING,
        ..Default::default()
    }
}

fn unsupported(what: String) -> Error {
    Error::Invalid(format!("ONNX export: {what}"))
}

impl Graph {
    /// `name`, or `name` with a numeric suffix if a value of that name exists already.
    pub fn unique(&mut self, name: &str) -> String {
        let mut n = name.to_string();
        let mut i = 2;
        while !self.used.insert(n.clone()) {
            n = format!("{name}_{i}");
            i += 1;
        }
        n
    }

    /// Adds `op` on `inputs` and returns its (single) output, named `name` (made unique).
    pub fn op(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        let [out] = self.op_outputs(op, name, inputs, &[""], attribute);
        out
    }

    /// Adds `op` (named `name`, made unique) with one output per entry of `suffixes`, named
    /// `<node name><suffix>` (made unique); returns the outputs.
    pub fn op_outputs<const N: usize>(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        suffixes: &[&str; N],
        attribute: Vec<AttributeProto>,
    ) -> [String; N] {
        let node = self.unique(name);
        let outputs = suffixes.map(|s| {
            if s.is_empty() {
                node.clone()
            } else {
                self.unique(&format!("{node}{s}"))
            }
        });
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.to_vec(),
            name: node,
            op_type: op.into(),
            attribute,
            domain: String::new(),
        });
        outputs
    }

    /// A float32 initializer.
    pub fn init_f32(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        let name = self.unique(name);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// An int64 initializer (shapes, slice bounds).
    pub fn init_i64(&mut self, name: &str, values: &[i64]) -> String {
        let name = self.unique(name);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// A module parameter as an initializer named `name`.
    pub fn param<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> Result<String> {
        let dims = t.dims();
        let values = host(t)?;
        Ok(self.init_f32(name, &dims, &values))
    }

    /// `x`, then the weight and (if any) the bias of the layer at `path` as initializers: a
    /// convolution's inputs.
    fn layer_inputs(
        &mut self,
        x: &str,
        weight: Tensor<4>,
        bias: Option<Tensor<1>>,
        path: &str,
    ) -> Result<Vec<String>> {
        let mut inputs = vec![
            x.to_string(),
            self.param(&format!("{path}.weight"), weight)?,
        ];
        if let Some(b) = bias {
            inputs.push(self.param(&format!("{path}.bias"), b)?);
        }
        Ok(inputs)
    }

    /// `Conv` of a Burn [`Conv2d`] at module path `path`.
    pub fn conv(&mut self, x: &str, c: &Conv2d, path: &str) -> Result<String> {
        self.conv_as(x, c, path, path)
    }

    /// [`conv`](Self::conv) with its output named `output` (a graph output's name).
    pub fn conv_as(&mut self, x: &str, c: &Conv2d, path: &str, output: &str) -> Result<String> {
        let [t, l, b, r] = match c.padding {
            PaddingConfig2d::Valid => [0; 4],
            PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
            PaddingConfig2d::Same => {
                return Err(unsupported(format!("{path}: 'same' padding")));
            }
        };
        let inputs =
            self.layer_inputs(x, c.weight.val(), c.bias.as_ref().map(|b| b.val()), path)?;
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.op(
            "Conv",
            output,
            &inputs,
            vec![
                ints("kernel_shape", &c.kernel_size),
                ints("strides", &c.stride),
                ints("pads", &[t, l, b, r]),
                ints("dilations", &c.dilation),
                int("group", c.groups as i64),
            ],
        ))
    }

    /// `ConvTranspose` of a Burn [`ConvTranspose2d`] (weights `[in, out / groups, kh, kw]`, as
    /// ONNX and PyTorch lay them out).
    pub fn conv_transpose(&mut self, x: &str, c: &ConvTranspose2d, path: &str) -> Result<String> {
        let inputs =
            self.layer_inputs(x, c.weight.val(), c.bias.as_ref().map(|b| b.val()), path)?;
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let [ph, pw] = c.padding;
        Ok(self.op(
            "ConvTranspose",
            path,
            &inputs,
            vec![
                ints("kernel_shape", &c.kernel_size),
                ints("strides", &c.stride),
                ints("pads", &[ph, pw, ph, pw]),
                ints("dilations", &c.dilation),
                ints("output_padding", &c.padding_out),
                int("group", c.groups as i64),
            ],
        ))
    }

    /// `BatchNormalization` (inference form: running statistics) of a Burn [`BatchNorm`]; its
    /// tensors are named `weight`, `bias`, `running_mean`, `running_var` as in PyTorch.
    pub fn bn(&mut self, x: &str, bn: &BatchNorm, path: &str) -> Result<String> {
        let scale = self.param(&format!("{path}.weight"), bn.gamma.val())?;
        let bias = self.param(&format!("{path}.bias"), bn.beta.val())?;
        let mean = self.param(&format!("{path}.running_mean"), bn.running_mean.value())?;
        let var = self.param(&format!("{path}.running_var"), bn.running_var.value())?;
        Ok(self.op(
            "BatchNormalization",
            path,
            &[x, &scale, &bias, &mean, &var],
            vec![float("epsilon", bn.epsilon as f32)],
        ))
    }

    /// `Relu`.
    pub fn relu(&mut self, x: &str) -> String {
        self.op("Relu", &format!("{x}.relu"), &[x], Vec::new())
    }

    /// `Add`.
    pub fn add(&mut self, a: &str, b: &str, name: &str) -> String {
        self.op("Add", name, &[a, b], Vec::new())
    }

    /// `Concat` along the channels.
    pub fn concat(&mut self, parts: &[String], name: &str) -> String {
        let inputs: Vec<&str> = parts.iter().map(String::as_str).collect();
        self.op("Concat", name, &inputs, vec![int("axis", 1)])
    }

    /// `MaxPool` with a square window.
    pub fn max_pool(&mut self, x: &str, k: usize, stride: usize, pad: usize, name: &str) -> String {
        self.op(
            "MaxPool",
            name,
            &[x],
            vec![
                ints("kernel_shape", &[k, k]),
                ints("strides", &[stride, stride]),
                ints("pads", &[pad; 4]),
            ],
        )
    }

    /// `Slice` of channels `start..end`.
    pub fn channels(&mut self, x: &str, start: usize, end: usize, name: &str) -> String {
        let s = self.init_i64(&format!("{name}.starts"), &[start as i64]);
        let e = self.init_i64(&format!("{name}.ends"), &[end as i64]);
        let a = self.init_i64(&format!("{name}.axes"), &[1]);
        self.op("Slice", name, &[x, &s, &e, &a], Vec::new())
    }
}
