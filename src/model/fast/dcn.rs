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
                let padded = pad1(x.view());
                let cols = Deform {
                    x: x.view(),
                    padded: &padded,
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

/// `x` with a border of one zero on every side (`c × (h + 2) × (w + 2)`): every corner of a
/// sample point inside `(-1, H) × (-1, W)` lies in it, those outside the map on the zeros, so
/// sampling needs no test per corner.
fn pad1(x: View<'_>) -> Vec<f32> {
    use rayon::prelude::*;
    let (h2, w2) = (x.h + 2, x.w + 2);
    let mut out = vec![0.0; x.c * h2 * w2];
    out.par_chunks_mut(h2 * w2)
        .enumerate()
        .for_each(|(c, plane)| {
            for (row, line) in plane[w2..]
                .chunks_exact_mut(w2)
                .zip(x.plane(c).chunks_exact(x.w.max(1)))
            {
                row[1..=x.w].copy_from_slice(line);
            }
        });
    out
}

struct Deform<'a> {
    x: View<'a>,
    /// `x` zero-padded by one ([`pad1`]).
    padded: &'a [f32],
    /// `conv_offset_mask` output: 18 offset channels then 9 mask logits.
    om: &'a Map,
}

impl Columns for Deform<'_> {
    fn rows(&self) -> usize {
        self.x.c * TAPS
    }

    fn fill(&self, n0: usize, len: usize, col: &mut [f32]) {
        let (h, w) = (self.x.h, self.x.w);
        let (hw, w2) = (h * w, w + 2);
        let plane_len = (h + 2) * w2;
        // Per tap and pixel: the top-left corner's index in the padded plane (the others are
        // +1, +w2, +w2 + 1) and the four corners' weights × mask. A point outside (-1, H) ×
        // (-1, W) reads corner 0 (a border zero) with weights 0.
        let mut base = vec![0usize; TAPS * len];
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
                // y0 in -1..h, x0 in -1..w: padded row y0 + 1, column x0 + 1.
                base[t * len + i] = (y0 as isize + 1) as usize * w2 + (x0 as isize + 1) as usize;
                wt[t * len + i] = [
                    (1.0 - ly) * (1.0 - lx) * mask,
                    (1.0 - ly) * lx * mask,
                    ly * (1.0 - lx) * mask,
                    ly * lx * mask,
                ];
            }
        }
        // Four channels at a time: each tap and pixel's corner index and weights are read
        // once for the four planes.
        let sample = |plane: &[f32], b: usize, wv: &[f32; 4]| {
            // The four corners: b, b + 1, b + w2, b + w2 + 1 (one bounds check).
            let win = &plane[b..b + w2 + 2];
            // Corners in torchvision's order; one outside the map reads a border zero,
            // adding +0 (the weights are >= 0), so the sum is the one that skips it.
            let mut acc = 0.0;
            acc += wv[0] * win[0];
            acc += wv[1] * win[1];
            acc += wv[2] * win[w2];
            acc += wv[3] * win[w2 + 1];
            acc
        };
        let planes = |c: usize| &self.padded[c * plane_len..(c + 1) * plane_len];
        let mut c = 0;
        while c < self.x.c {
            let nc = (self.x.c - c).min(4);
            let ps: [&[f32]; 4] = std::array::from_fn(|j| planes(c + j.min(nc - 1)));
            for t in 0..TAPS {
                let (base, wt) = (&base[t * len..(t + 1) * len], &wt[t * len..(t + 1) * len]);
                // Rows (c + j)·9 + t of the columns, j < nc.
                let mut rows = col[c * TAPS * len..]
                    .chunks_exact_mut(len)
                    .skip(t)
                    .step_by(TAPS)
                    .take(nc);
                if nc == 4 {
                    let r: [&mut [f32]; 4] = std::array::from_fn(|_| rows.next().expect("4 rows"));
                    let [r0, r1, r2, r3] = r;
                    for (i, (&b, wv)) in base.iter().zip(wt).enumerate() {
                        r0[i] = sample(ps[0], b, wv);
                        r1[i] = sample(ps[1], b, wv);
                        r2[i] = sample(ps[2], b, wv);
                        r3[i] = sample(ps[3], b, wv);
                    }
                } else {
                    for (j, row) in rows.enumerate() {
                        for ((d, &b), wv) in row.iter_mut().zip(base).zip(wt) {
                            *d = sample(ps[j], b, wv);
                        }
                    }
                }
            }
            c += nc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fast::map::ramp;

    /// Against torchvision's sampling written out (each corner tested against the map), with
    /// offsets that move points past every edge, onto integer positions and out of range.
    #[test]
    fn sampled_columns_equal_the_definition() {
        let (c, h, w) = (6, 5, 7); // a block of four channels and one of two
        let hw = h * w;
        let x = Map {
            c,
            h,
            w,
            data: ramp(c * hw, 0.8),
        };
        // Offsets from -3.5 to 3.5 in steps of 0.25 (integers and halves included), masks of
        // both signs.
        let om = Map {
            c: 27,
            h,
            w,
            data: (0..27 * hw)
                .map(|i| ((i * 37) % 29) as f32 * 0.25 - 3.5)
                .collect(),
        };
        let padded = pad1(x.view());
        let cols = Deform {
            x: x.view(),
            padded: &padded,
            om: &om,
        };
        for (n0, len) in [(0, hw), (3, 11), (hw - 4, 4)] {
            let mut got = vec![f32::NAN; c * TAPS * len];
            cols.fill(n0, len, &mut got);
            for ci in 0..c {
                for t in 0..TAPS {
                    for i in 0..len {
                        let n = n0 + i;
                        let py = (n / w) as f32 - 1.0 + (t / 3) as f32 + om.data[2 * t * hw + n];
                        let px =
                            (n % w) as f32 - 1.0 + (t % 3) as f32 + om.data[(2 * t + 1) * hw + n];
                        let mut want = 0.0f32;
                        if py > -1.0 && py < h as f32 && px > -1.0 && px < w as f32 {
                            let mask = sigmoid(om.data[(18 + t) * hw + n]);
                            let (y0, x0) = (py.floor(), px.floor());
                            let (ly, lx) = (py - y0, px - x0);
                            let corners = [
                                (y0, x0, (1.0 - ly) * (1.0 - lx)),
                                (y0, x0 + 1.0, (1.0 - ly) * lx),
                                (y0 + 1.0, x0, ly * (1.0 - lx)),
                                (y0 + 1.0, x0 + 1.0, ly * lx),
                            ];
                            for (cy, cx, cw) in corners {
                                if cy >= 0.0 && cx >= 0.0 && cy < h as f32 && cx < w as f32 {
                                    let v = x.data[ci * hw + cy as usize * w + cx as usize];
                                    want += cw * mask * v;
                                }
                            }
                        }
                        let g = got[(ci * TAPS + t) * len + i];
                        assert_eq!(
                            g.to_bits(),
                            want.to_bits(),
                            "c{ci} t{t} n{n}: {g} against {want}"
                        );
                    }
                }
            }
        }
    }
}
