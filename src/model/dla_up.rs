//! The up-sampling neck of CenterNet's `DLASeg` (`pose_dla_dcn.py`): `DLAUp` (three `IDAUp`
//! stages) followed by a final `IDAUp` (`ida_up`) that fuses strides 4, 8 and 16 into a
//! stride-4, 64-channel map. Every projection and aggregation node is a [`DeformConvBlock`]
//! (deformable for DLA-34, plain 3×3 for mDLA-34); up-sampling is a depthwise
//! `ConvTranspose2d(k = 2f, stride f, pad f/2)` initialised to bilinear interpolation; fusion is
//! an element-wise **sum**.

use burn::module::{Module, Param};
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::dcn::DeformConvBlock;
use super::dla::Dla;

/// Bilinear weights of CenterNet's `fill_up_weights` for a `k×k` kernel, replicated over `c`
/// depthwise channels: `w[i,j] = (1-|i/f-c|)(1-|j/f-c|)`, `f = ceil(k/2)`,
/// `c = (2f-1-f%2)/(2f)`.
pub fn bilinear_kernel(k: usize, channels: usize) -> Vec<f32> {
    let f = k.div_ceil(2) as f32;
    let c = (2.0 * f - 1.0 - (f as usize % 2) as f32) / (2.0 * f);
    let mut one = vec![0.0f32; k * k];
    for i in 0..k {
        for j in 0..k {
            one[i * k + j] = (1.0 - (i as f32 / f - c).abs()) * (1.0 - (j as f32 / f - c).abs());
        }
    }
    one.repeat(channels)
}

fn up_layer(channels: usize, f: usize, device: &Device) -> ConvTranspose2d {
    let k = 2 * f;
    let mut up = ConvTranspose2dConfig::new([channels, channels], [k, k])
        .with_stride([f, f])
        .with_padding([f / 2, f / 2])
        .with_groups(channels)
        .with_bias(false)
        .init(device);
    let data = TensorData::new(bilinear_kernel(k, channels), [channels, 1, k, k]);
    up.weight = Param::from_tensor(Tensor::from_data(data, device));
    up
}

/// One iterative-deep-aggregation step per extra input: `proj_i`, `up_i`, `node_i`
/// (1-based as in PyTorch: `proj_1`… are `proj[0]`…). Keys `proj_1` are remapped to `proj.0`.
#[derive(Module, Debug)]
pub struct IdaUp {
    pub(crate) proj: Vec<DeformConvBlock>,
    pub(crate) up: Vec<ConvTranspose2d>,
    pub(crate) node: Vec<DeformConvBlock>,
}

impl IdaUp {
    fn new(
        o: usize,
        channels: &[usize],
        up_f: &[usize],
        deformable: bool,
        device: &Device,
    ) -> Self {
        let mut proj = Vec::new();
        let mut up = Vec::new();
        let mut node = Vec::new();
        for i in 1..channels.len() {
            proj.push(DeformConvBlock::new([channels[i], o], deformable, device));
            up.push(up_layer(o, up_f[i], device));
            node.push(DeformConvBlock::new([o, o], deformable, device));
        }
        Self { proj, up, node }
    }

    /// In-place aggregation of `layers[startp..endp]`, as PyTorch's `IDAUp.forward`.
    fn forward(&self, layers: &mut [Tensor<4>], startp: usize, endp: usize) {
        for i in startp + 1..endp {
            let s = i - startp - 1;
            let up = self.up[s].forward(self.proj[s].forward(layers[i].clone()));
            layers[i] = self.node[s].forward(up + layers[i - 1].clone());
        }
    }
}

/// `DLAUp(startp = 2, channels = [64,128,256,512], scales = [1,2,4,8])` (scaled by the
/// configured channel widths).
#[derive(Module, Debug)]
pub struct DlaUp {
    pub(crate) ida: Vec<IdaUp>,
    pub(crate) startp: usize,
}

impl DlaUp {
    fn new(startp: usize, channels: &[usize], deformable: bool, device: &Device) -> Self {
        let n = channels.len();
        let mut scales: Vec<usize> = (0..n).map(|i| 1 << i).collect();
        let mut in_channels = channels.to_vec();
        let mut ida = Vec::new();
        for i in 0..n - 1 {
            let j = n - i - 2;
            let up_f: Vec<usize> = scales[j..].iter().map(|s| s / scales[j]).collect();
            ida.push(IdaUp::new(
                channels[j],
                &in_channels[j..],
                &up_f,
                deformable,
                device,
            ));
            for k in j + 1..n {
                scales[k] = scales[j];
                in_channels[k] = channels[j];
            }
        }
        Self { ida, startp }
    }

    /// `layers` are the six DLA levels; returns `[stride-4, stride-8, stride-16, stride-32]`
    /// fused maps (PyTorch `out` list).
    fn forward(&self, mut layers: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        let len = layers.len();
        let mut out = vec![layers[len - 1].clone()];
        for (i, ida) in self.ida.iter().enumerate() {
            ida.forward(&mut layers, len - i - 2, len);
            out.insert(0, layers[len - 1].clone());
        }
        out
    }
}

/// `DLASeg`: DLA base + DLAUp + final IDAUp; output is the stride-4 map the heads read.
#[derive(Module, Debug)]
pub struct DlaSeg {
    pub(crate) base: Dla,
    pub(crate) dla_up: DlaUp,
    pub(crate) ida_up: IdaUp,
}

impl DlaSeg {
    /// `channels`: DLA widths (`[16, 32, 64, 128, 256, 512]`); `deformable`: DCNv2 (DLA-34) or
    /// plain 3×3 convolutions (mDLA-34).
    pub fn new(channels: [usize; 6], deformable: bool, device: &Device) -> Self {
        let first_level = 2; // log2(down_ratio = 4)
        let last_level = 5;
        let up_channels = &channels[first_level..];
        let ida_channels = &channels[first_level..last_level];
        let ida_scales: Vec<usize> = (0..ida_channels.len()).map(|i| 1 << i).collect();
        Self {
            base: Dla::new(channels, device),
            dla_up: DlaUp::new(first_level, up_channels, deformable, device),
            ida_up: IdaUp::new(
                channels[first_level],
                ida_channels,
                &ida_scales,
                deformable,
                device,
            ),
        }
    }

    /// The stride-4 feature map of an image batch.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let levels = self.base.forward(x);
        let startp = self.dla_up.startp;
        let out = self.dla_up.forward(levels[startp..].to_vec());
        let mut y: Vec<Tensor<4>> = out[..3].to_vec();
        let n = y.len();
        self.ida_up.forward(&mut y, 0, n);
        y.pop().expect("three fused maps")
    }
}
