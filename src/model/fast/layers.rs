//! Compiled layers: a Burn convolution (+ BatchNorm) read once into host memory, BatchNorm folded
//! into the weights and bias, ReLU fused.

use std::sync::OnceLock;

use burn::nn::BatchNorm;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::tensor::Tensor;

use super::conv::{BnStats, Columns, Epilogue, Im2col, Taps, fold_bn, gemm_tiles, out_size};
use super::deconv::{FDeconv, FDepthwiseDeconv};
use super::direct::Direct;
use super::map::{Map, View};
use super::profile;
use super::winograd::{Pointwise, Tile, Winograd};
use crate::error::{Error, Result};

/// A tensor's values on the host.
pub fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Backend(format!("cannot read weights back to the host: {e:?}")))
}

pub fn bn_stats(bn: &BatchNorm) -> Result<BnStats> {
    Ok(BnStats {
        gamma: host(bn.gamma.val())?,
        beta: host(bn.beta.val())?,
        mean: host(bn.running_mean.value())?,
        var: host(bn.running_var.value())?,
        eps: bn.epsilon as f32,
    })
}

fn unsupported(what: &str) -> Error {
    Error::Backend(format!(
        "the fast CPU path does not support {what}; use the generic path"
    ))
}

/// How the fast CPU form runs 3×3 stride-1 convolutions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WinogradTiles {
    /// F(4×4, 3×3) on maps of at least 32 × 32, F(2×2, 3×3) on smaller ones, im2col + GEMM below
    /// 8 × 8: the fastest measured choice.
    #[default]
    Auto,
    /// F(2×2, 3×3) wherever a map has at least 64 pixels: half of F(4×4)'s float32 rounding
    /// error.
    F2,
    /// F(4×4, 3×3) wherever a map has at least 64 pixels.
    F4,
    /// im2col + GEMM everywhere (the plain convolution).
    Off,
}

impl WinogradTiles {
    /// The tile a 3×3 stride-1 convolution with an output of `oh × ow` runs with under this
    /// policy (`None`: im2col + GEMM).
    pub(crate) fn tile_for(self, [oh, ow]: [usize; 2]) -> Option<Tile> {
        Some(match self {
            WinogradTiles::Off => return None,
            _ if oh * ow < WINOGRAD_MIN_PIXELS => return None,
            WinogradTiles::F2 => Tile::F2,
            WinogradTiles::F4 => Tile::F4,
            WinogradTiles::Auto if oh.div_ceil(4) * ow.div_ceil(4) >= WINOGRAD_F4_MIN_TILES => {
                Tile::F4
            }
            WinogradTiles::Auto => Tile::F2,
        })
    }

    /// The policy of the compilation running on this thread ([`compiling_with`]).
    pub(crate) fn current() -> Self {
        POLICY.with(|p| p.get())
    }
}

thread_local! {
    /// The policy of the compilation running on this thread.
    static POLICY: std::cell::Cell<WinogradTiles> = const { std::cell::Cell::new(WinogradTiles::Auto) };
}

/// Runs `f` (a compilation) with `policy` for the Winograd convolutions it makes.
pub fn compiling_with<T>(policy: WinogradTiles, f: impl FnOnce() -> T) -> T {
    let before = POLICY.with(|p| p.replace(policy));
    let out = f();
    POLICY.with(|p| p.set(before));
    out
}

/// A convolution with folded BatchNorm, bias and optional ReLU.
#[derive(Debug, Clone)]
pub struct FConv {
    o: usize,
    c: usize,
    k: [usize; 2],
    stride: usize,
    pad: usize,
    dilation: usize,
    w: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
    /// Which Winograd form a 3×3 stride-1 convolution runs as (`Off` for other convolutions).
    winograd: WinogradTiles,
    /// Its weights in the Winograd domain, F(2×2) and F(4×4), each made the first time a map
    /// needs it (a layer usually sees one map size, so one of the two).
    wino: Box<[OnceLock<Winograd>; 2]>,
    /// Its direct form, for the convolutions that run so ([`FConv::direct_for`]).
    direct: OnceLock<Option<Box<Direct>>>,
}

/// Below this many output pixels a 3×3 convolution stays im2col + GEMM: Winograd's blocks
/// would be too narrow to pay for the transforms.
const WINOGRAD_MIN_PIXELS: usize = 64;

/// From this many 4×4 output tiles (a 32 × 32 map) on, a 3×3 stride-1 convolution runs as
/// F(4×4, 3×3) (its GEMMs do 9/16 of F(2×2)'s work and its transformed maps are 9/16 as large),
/// below as F(2×2, 3×3): on small maps F(4×4)'s GEMMs are too narrow for its transformed
/// weights, 36 × O × C floats against 16 × O × C, read once per block (measured per layer on
/// mdla34 at 256 and 512, benches/RESULTS.md).
const WINOGRAD_F4_MIN_TILES: usize = 64;

/// The most output channels a direct convolution ([`Direct`]) runs with: its row of taps is
/// read once per panel of output channels (six on AVX2, sixteen on AVX-512), where im2col + GEMM writes and reads a column matrix of
/// all taps once, which pays only with few output channels and many taps per input channel.
/// On an AVX2 EPYC (`deepmark profile --by-shape`, three alternated runs against im2col): the
/// DLA 7×7 stride-1 stem (3 → 16) at 512 16.3–20.1 → 10.9–17.4 ms, the ResNet 7×7 stride-2
/// stem (3 → 64) 14.7–16.2 → 10.7–16.9 ms; the stride-2 3×3 convolutions (16 → 32, 32 → 64)
/// were no faster (the stride phases of a 16-channel 512 × 512 input cost as much as the
/// columns saved), so kernels under 5 × 5 stay im2col (benches/RESULTS.md).
const DIRECT_MAX_OUT: usize = 64;

/// The most taps (`c · kh · kw`) of a direct convolution: its sixteen-pixel rows of all taps,
/// 64 bytes each, stay in L1 while the panels stream past.
const DIRECT_MAX_TAPS: usize = 320;

impl FConv {
    /// `conv → [bn] → [relu]`.
    pub fn new(conv: &Conv2d, bn: Option<&BatchNorm>, relu: bool) -> Result<Self> {
        let pad = match conv.padding {
            PaddingConfig2d::Valid => 0,
            PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => t,
            _ => return Err(unsupported("asymmetric or 'same' padding")),
        };
        if conv.groups != 1
            || conv.stride[0] != conv.stride[1]
            || conv.dilation[0] != conv.dilation[1]
        {
            return Err(unsupported("grouped or anisotropic convolutions"));
        }
        let [o, c, kh, kw] = conv.weight.val().dims();
        let w = host(conv.weight.val())?;
        let bias = conv.bias.as_ref().map(|b| host(b.val())).transpose()?;
        Self::from_parts(
            w,
            bias,
            bn,
            [o, c],
            [kh, kw],
            [conv.stride[0], pad, conv.dilation[0]],
            relu,
        )
    }

    /// From raw `[o, c, kh, kw]` weights; `geometry` is `[stride, padding, dilation]`.
    pub fn from_parts(
        mut w: Vec<f32>,
        bias: Option<Vec<f32>>,
        bn: Option<&BatchNorm>,
        [o, c]: [usize; 2],
        k: [usize; 2],
        [stride, pad, dilation]: [usize; 3],
        relu: bool,
    ) -> Result<Self> {
        let bias = match bn {
            Some(bn) => fold_bn(&mut w, bias.as_deref(), &bn_stats(bn)?),
            None => bias.unwrap_or_else(|| vec![0.0; o]),
        };
        Ok(FConv {
            o,
            c,
            k,
            stride,
            pad,
            dilation,
            w,
            bias,
            relu,
            // 3×3 stride-1 convolutions take the policy of the compilation in progress
            // ([`compiling_with`]).
            winograd: if k == [3, 3] && stride == 1 && dilation == 1 {
                WinogradTiles::current()
            } else {
                WinogradTiles::Off
            },
            wino: Box::default(),
            direct: OnceLock::new(),
        })
    }

    /// The Winograd form for an output of `size`, if this convolution has one and the map is
    /// large enough.
    fn winograd_for(&self, size: [usize; 2]) -> Option<&Winograd> {
        let tile = self.winograd.tile_for(size)?;
        let cell = &self.wino[(tile == Tile::F4) as usize];
        Some(cell.get_or_init(|| Winograd::new(&self.w, self.o, self.c, tile)))
    }

    pub fn in_channels(&self) -> usize {
        self.c
    }

    /// 2 × multiply-adds for an output of `size`.
    pub fn flops(&self, [oh, ow]: [usize; 2]) -> f64 {
        2.0 * (self.o * self.c * self.k[0] * self.k[1] * oh * ow) as f64
    }

    /// Stacks convolutions that read the same input with the same geometry into one (their
    /// outputs concatenated along channels): one column buffer for all of them.
    pub fn stack(convs: &[FConv]) -> FConv {
        let first = &convs[0];
        // Fields spelt out: `..first.clone()` would copy the first weights (and any Winograd
        // form made of them) only to drop them.
        let mut out = FConv {
            o: 0,
            c: first.c,
            k: first.k,
            stride: first.stride,
            pad: first.pad,
            dilation: first.dilation,
            w: Vec::new(),
            bias: Vec::new(),
            relu: first.relu,
            winograd: first.winograd,
            wino: Box::default(),
            direct: OnceLock::new(),
        };
        for c in convs {
            debug_assert_eq!(
                (c.c, c.k, c.stride, c.pad, c.dilation, c.relu),
                (
                    first.c,
                    first.k,
                    first.stride,
                    first.pad,
                    first.dilation,
                    first.relu
                )
            );
            out.o += c.o;
            out.w.extend_from_slice(&c.w);
            out.bias.extend_from_slice(&c.bias);
        }
        out
    }

    /// Output size on input `x`.
    fn out_dims(&self, x: View<'_>) -> [usize; 2] {
        [
            out_size(x.h, self.k[0], self.stride, self.pad, self.dilation),
            out_size(x.w, self.k[1], self.stride, self.pad, self.dilation),
        ]
    }

    pub fn forward_view(&self, x: View<'_>, residual: Option<&Map>) -> Map {
        debug_assert_eq!(x.c, self.c);
        let size = self.out_dims(x);
        let ep = self.epilogue(residual);
        if let Some(wg) = self.winograd_for(size) {
            let what = || {
                let name = format!("conv3x3/s1 {}{}", wg.name(), self.shape_of(x));
                (name, self.flops(size))
            };
            return profile::op(what, || wg.forward(x, self.pad, size, &ep));
        }
        let what = || {
            let (k, s) = (self.k, self.stride);
            let name = format!("conv{}x{}/s{s}{}", k[0], k[1], self.shape_of(x));
            (name, self.flops(size))
        };
        let taps = Taps::conv(self.k, self.stride, self.pad, self.dilation);
        let cols = Im2col {
            x,
            taps: &taps,
            ow: size[1],
        };
        if let Some(d) = self.direct_for(size) {
            let what = || {
                let (k, s) = (self.k, self.stride);
                let name = format!("conv{}x{}/s{s} direct{}", k[0], k[1], self.shape_of(x));
                (name, self.flops(size))
            };
            return profile::op(what, || d.forward(x, size, &ep));
        }
        profile::op(what, || gemm_tiles(&cols, size, &self.w, self.o, &ep))
    }

    /// The direct form for an output of `size`, where this convolution runs so: kernels of at
    /// least 5 × 5 (the 7×7 stems) with at most [`DIRECT_MAX_OUT`] output channels and
    /// [`DIRECT_MAX_TAPS`] taps, on maps of at least 32 × 32, where the CPU has AVX2.
    fn direct_for(&self, [oh, ow]: [usize; 2]) -> Option<&Direct> {
        let [kh, kw] = self.k;
        if kh * kw < 25
            || self.dilation != 1
            || self.o > DIRECT_MAX_OUT
            || self.c * kh * kw > DIRECT_MAX_TAPS
            || oh * ow < 1024
        {
            return None;
        }
        self.direct
            .get_or_init(|| {
                Direct::new(&self.w, [self.o, self.c], self.k, self.stride, self.pad).map(Box::new)
            })
            .as_deref()
    }

    /// `outs[i](self(x))`, where each `outs[i]` is a 1×1 convolution reading its own slice of
    /// this convolution's output channels (the slices in order, covering them all), with
    /// `self(x)` never written out ([`Winograd::forward_pointwise`]); `None` (nothing run)
    /// where this convolution does not run as Winograd on `x` or an `outs[i]` is not such a
    /// convolution.
    pub fn forward_then_pointwise(&self, x: View<'_>, outs: &[&FConv]) -> Option<Vec<Map>> {
        let size = self.out_dims(x);
        let wg = self.winograd_for(size)?;
        let mut start = 0;
        let post = outs
            .iter()
            .map(|p| {
                let pointwise = p.k == [1, 1] && p.stride == 1 && p.pad == 0 && !p.relu;
                let slice = Pointwise {
                    start,
                    c: p.c,
                    w: &p.w,
                    bias: &p.bias,
                    o: p.o,
                };
                start += p.c;
                pointwise.then_some(slice)
            })
            .collect::<Option<Vec<_>>>()?;
        if start != self.o {
            return None;
        }
        let what = || {
            let name = format!(
                "conv3x3/s1 {} + {} conv1x1{}",
                wg.name(),
                outs.len(),
                self.shape_of(x)
            );
            let flops = self.flops(size) + outs.iter().map(|p| p.flops(size)).sum::<f64>();
            (name, flops)
        };
        let ep = self.epilogue(None);
        Some(profile::op(what, || {
            wg.forward_pointwise(x, self.pad, size, &ep, &post)
        }))
    }

    /// The input shape and output channels, when profiling by shape.
    pub(crate) fn shape_of(&self, x: View<'_>) -> String {
        profile::shape(|| format!("{}x{}x{}->{}", x.c, x.h, x.w, self.o))
    }

    /// This convolution's weights and epilogue over other columns (DCN's sampled ones).
    pub fn apply(&self, cols: &impl Columns, size: [usize; 2], residual: Option<&Map>) -> Map {
        gemm_tiles(cols, size, &self.w, self.o, &self.epilogue(residual))
    }

    /// This convolution's bias and ReLU, with `residual` added before the ReLU.
    fn epilogue<'a>(&'a self, residual: Option<&'a Map>) -> Epilogue<'a> {
        Epilogue {
            bias: &self.bias,
            residual,
            relu: self.relu,
        }
    }

    pub fn forward(&self, x: &Map) -> Map {
        self.forward_view(x.view(), None)
    }

    /// `act(conv(x) + residual)`.
    pub fn forward_res(&self, x: &Map, residual: &Map) -> Map {
        self.forward_view(x.view(), Some(residual))
    }
}

/// `ConvTranspose → [bn] → [relu]` (groups 1).
pub fn deconv(up: &ConvTranspose2d, bn: Option<&BatchNorm>, relu: bool) -> Result<FDeconv> {
    let (k, s, p) = square(up)?;
    if up.groups != 1 {
        return Err(unsupported(
            "grouped transposed convolutions other than depthwise",
        ));
    }
    let [c, o, _, _] = up.weight.val().dims();
    // Burn/PyTorch store [c, o, k, k]; BatchNorm scales the `o` axis, so read it as [o, c, k, k].
    let mut w = host(up.weight.val().swap_dims(0, 1))?;
    let bias = up.bias.as_ref().map(|b| host(b.val())).transpose()?;
    let bias = match bn {
        Some(bn) => fold_bn(&mut w, bias.as_deref(), &bn_stats(bn)?),
        None => bias.unwrap_or_else(|| vec![0.0; o]),
    };
    Ok(FDeconv::new(
        &w,
        [c, o],
        k,
        s,
        p,
        bias,
        relu,
        WinogradTiles::current(),
    ))
}

/// A depthwise, bias-free transposed convolution (DLA's `up` layers).
pub fn depthwise_deconv(up: &ConvTranspose2d) -> Result<FDepthwiseDeconv> {
    let (k, s, p) = square(up)?;
    let [c, og, _, _] = up.weight.val().dims();
    if up.groups != c || og != 1 || up.bias.is_some() {
        return Err(unsupported("this transposed convolution"));
    }
    Ok(FDepthwiseDeconv::new(host(up.weight.val())?, k, s, p))
}

fn square(up: &ConvTranspose2d) -> Result<(usize, usize, usize)> {
    let [kh, kw] = up.kernel_size;
    if kh != kw
        || up.stride[0] != up.stride[1]
        || up.padding[0] != up.padding[1]
        || up.dilation != [1, 1]
        || up.padding_out != [0, 0]
    {
        return Err(unsupported(
            "anisotropic, dilated or output-padded transposed convolutions",
        ));
    }
    Ok((kh, up.stride[0], up.padding[0]))
}
