//! Modulated deformable convolution (DCNv2) as bilinear sampling into the column buffer + GEMM.
//!
//! Semantics as torchvision's `deform_conv2d` (and Burn's): for tap `t = ky·3 + kx` the sample
//! point of output pixel `(y, x)` is `(y - 1 + ky + Δy_t, x - 1 + kx + Δx_t)` with `Δy_t`, `Δx_t`
//! in offset channels `2t`, `2t + 1`; a point outside `(-1, H) × (-1, W)` reads 0, and corners
//! outside the map read 0; the sample is multiplied by the tap's mask (sigmoid of channel
//! `18 + t` of `conv_offset_mask`).

use super::conv::Columns;
use super::layers::{FConv, host};
use super::map::{Map, View, sigmoid};
use super::profile;
use crate::error::Result;
use crate::model::dcn::{Dcn, DeformConvBlock};

const TAPS: usize = 9;

/// `DeformConvBlock`: DCN (or a plain 3×3 conv for mDLA-34) → folded BN → ReLU. The deformable
/// form applies the same folded convolution to sampled columns instead of im2col ones.
#[derive(Debug, Clone)]
pub enum FDcnBlock {
    Plain(FConv),
    Deform { offset: FConv, main: FConv },
}

impl FDcnBlock {
    pub fn new(b: &DeformConvBlock) -> Result<Self> {
        let Dcn {
            weight,
            bias,
            conv_offset_mask,
        } = &b.conv;
        let [o, c, _, _] = weight.val().dims();
        let w = host(weight.val())?;
        let bias = host(bias.val())?;
        let main = FConv::from_parts(
            w,
            Some(bias),
            Some(&b.actf),
            [o, c],
            [3, 3],
            [1, 1, 1],
            true,
        )?;
        Ok(match conv_offset_mask {
            None => FDcnBlock::Plain(main),
            Some(om) => FDcnBlock::Deform {
                offset: FConv::new(om, None, false)?,
                main,
            },
        })
    }

    pub fn forward(&self, x: &Map) -> Map {
        match self {
            FDcnBlock::Plain(conv) => conv.forward(x),
            FDcnBlock::Deform { offset, main } => {
                let om = offset.forward(x);
                let cols = Deform {
                    x: x.view(),
                    om: &om,
                };
                let size = [x.h, x.w];
                profile::op(
                    || {
                        let name = format!("dcn3x3 (sample+gemm){}", main.shape_of(x.view()));
                        (name, main.flops(size))
                    },
                    || main.apply(&cols, size, None),
                )
            }
        }
    }
}

struct Deform<'a> {
    x: View<'a>,
    /// `conv_offset_mask` output: 18 offset channels then 9 mask logits.
    om: &'a Map,
}

impl Columns for Deform<'_> {
    fn rows(&self) -> usize {
        self.x.c * TAPS
    }

    fn fill(&self, n0: usize, len: usize, col: &mut [f32]) {
        let (h, w) = (self.x.h, self.x.w);
        let hw = h * w;
        // Per tap and pixel: four corner indices (or usize::MAX) and their weights × mask.
        let mut idx = vec![[usize::MAX; 4]; TAPS * len];
        let mut wt = vec![[0.0f32; 4]; TAPS * len];
        for t in 0..TAPS {
            let (ky, kx) = ((t / 3) as f32, (t % 3) as f32);
            let dy = &self.om.data[2 * t * hw..];
            let dx = &self.om.data[(2 * t + 1) * hw..];
            let m = &self.om.data[(18 + t) * hw..];
            for i in 0..len {
                let n = n0 + i;
                let (oy, ox) = ((n / w) as f32, (n % w) as f32);
                let py = oy - 1.0 + ky + dy[n];
                let px = ox - 1.0 + kx + dx[n];
                if py <= -1.0 || py >= h as f32 || px <= -1.0 || px >= w as f32 {
                    continue;
                }
                let mask = sigmoid(m[n]);
                let (y0, x0) = (py.floor(), px.floor());
                let (ly, lx) = (py - y0, px - x0);
                let (y0, x0) = (y0 as isize, x0 as isize);
                let corners = [(y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)];
                let weights = [
                    (1.0 - ly) * (1.0 - lx),
                    (1.0 - ly) * lx,
                    ly * (1.0 - lx),
                    ly * lx,
                ];
                for (j, ((cy, cx), cw)) in corners.into_iter().zip(weights).enumerate() {
                    if cy >= 0 && cx >= 0 && (cy as usize) < h && (cx as usize) < w {
                        idx[t * len + i][j] = cy as usize * w + cx as usize;
                        wt[t * len + i][j] = cw * mask;
                    }
                }
            }
        }
        for c in 0..self.x.c {
            let plane = self.x.plane(c);
            for t in 0..TAPS {
                let row = &mut col[(c * TAPS + t) * len..(c * TAPS + t + 1) * len];
                let (idx, wt) = (&idx[t * len..(t + 1) * len], &wt[t * len..(t + 1) * len]);
                for ((d, ix), wv) in row.iter_mut().zip(idx).zip(wt) {
                    let mut acc = 0.0;
                    for j in 0..4 {
                        if ix[j] != usize::MAX {
                            acc += wv[j] * plane[ix[j]];
                        }
                    }
                    *d = acc;
                }
            }
        }
    }
}
