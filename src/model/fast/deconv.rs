//! Transposed convolutions.
//!
//! - A full transposed convolution (`msra_resnet`'s `ConvTranspose(k4, s2, p1)`) is split into
//!   its `s × s` output phases: output pixels `(s·y + a, s·x + b)` only see the taps with
//!   `ky ≡ a + p (mod s)`, at input row `y + (a + p - ky) / s`, so each phase is an ordinary
//!   stride-1 convolution with a `(k/s) × (k/s)` kernel — one GEMM, no zero-stuffing, no
//!   scatter of partial products. The phases run side by side, each GEMM on one thread, and are
//!   interleaved into the output channel by channel in parallel.
//! - A depthwise transposed convolution (DLA's bilinear `up` layers) uses the same phases: each
//!   output row's column phase is a few multiply-add passes over whole input rows of its own
//!   channel (at most `⌈k/s⌉²` taps), interleaved into the output row afterwards.

use super::conv::{Epilogue, Taps, conv_gemm, serial};
use super::map::{Map, View};
use super::profile;

/// For output phase `a`: the `(kernel tap, input offset)` pairs of a transposed convolution.
fn phase_taps(a: usize, k: usize, s: usize, p: usize) -> Vec<(usize, isize)> {
    (0..k)
        .filter_map(|t| {
            let d = a as isize + p as isize - t as isize;
            (d.rem_euclid(s as isize) == 0).then_some((t, d.div_euclid(s as isize)))
        })
        .collect()
}

/// Output side of a transposed convolution (no output padding, dilation 1).
pub fn out_size(input: usize, k: usize, s: usize, p: usize) -> usize {
    (input - 1) * s + k - 2 * p
}

/// A full (groups = 1) transposed convolution with folded BatchNorm and optional ReLU.
#[derive(Debug, Clone)]
pub struct FDeconv {
    o: usize,
    k: usize,
    s: usize,
    p: usize,
    /// Per phase `(a, b)` (row-major over `s × s`): its taps and its `[o, c · taps]` weights.
    phases: Vec<(Taps, Vec<f32>)>,
    bias: Vec<f32>,
    relu: bool,
}

impl FDeconv {
    /// `w` is `[o, c, k, k]` (PyTorch's/Burn's transposed-convolution layout `[c, o, k, k]` with
    /// the first two axes swapped), already scaled by any folded BatchNorm; `bias` per output
    /// channel.
    pub fn new(
        w: &[f32],
        [c, o]: [usize; 2],
        k: usize,
        s: usize,
        p: usize,
        bias: Vec<f32>,
        relu: bool,
    ) -> Self {
        let mut phases = Vec::with_capacity(s * s);
        for a in 0..s {
            let ty = phase_taps(a, k, s, p);
            for b in 0..s {
                let tx = phase_taps(b, k, s, p);
                let mut wp = Vec::with_capacity(o * c * ty.len() * tx.len());
                for r in 0..o {
                    for ci in 0..c {
                        for &(ky, _) in &ty {
                            for &(kx, _) in &tx {
                                wp.push(w[((r * c + ci) * k + ky) * k + kx]);
                            }
                        }
                    }
                }
                let taps = Taps {
                    ys: ty.iter().map(|t| t.1).collect(),
                    xs: tx.iter().map(|t| t.1).collect(),
                    stride: 1,
                };
                phases.push((taps, wp));
            }
        }
        FDeconv {
            o,
            k,
            s,
            p,
            phases,
            bias,
            relu,
        }
    }

    pub fn forward(&self, x: &Map) -> Map {
        let what = || {
            let (oh, ow) = (
                out_size(x.h, self.k, self.s, self.p),
                out_size(x.w, self.k, self.s, self.p),
            );
            let flops =
                2.0 * (self.o * x.c * self.k * self.k * oh * ow) as f64 / (self.s * self.s) as f64;
            let shape = profile::shape(|| format!("{}x{}x{}->{}", x.c, x.h, x.w, self.o));
            (format!("deconv{}x{0}/s{}{shape}", self.k, self.s), flops)
        };
        profile::op(what, || self.run(x))
    }

    fn run(&self, x: &Map) -> Map {
        let (s, o) = (self.s, self.o);
        let oh = out_size(x.h, self.k, s, self.p);
        let ow = out_size(x.w, self.k, s, self.p);
        // The phases side by side, each GEMM on one thread: one phase's GEMM alone is too
        // narrow (the input's pixels) to split well across threads (on res18 at 512 the three
        // layers took 73.6-73.9 ms one phase after the other, 61.9-62.9 ms side by side:
        // benches/RESULTS.md).
        use rayon::prelude::*;
        let phase_size = |q: usize| {
            let (a, b) = (q / s, q % s);
            [
                oh.saturating_sub(a).div_ceil(s),
                ow.saturating_sub(b).div_ceil(s),
            ]
        };
        let parts: Vec<Map> = self
            .phases
            .par_iter()
            .enumerate()
            .map(|(q, (taps, wp))| {
                let ep = Epilogue {
                    bias: &self.bias,
                    residual: None,
                    relu: self.relu,
                };
                serial(|| conv_gemm(x.view(), taps, phase_size(q), wp, o, &ep))
            })
            .collect();
        let mut out = Map::zeros(o, oh, ow);
        out.data
            .par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(r, dst)| {
                for (q, part) in parts.iter().enumerate() {
                    let (a, b) = (q / s, q % s);
                    let src = part.view().plane(r);
                    for (y, line) in src.chunks_exact(part.w.max(1)).take(part.h).enumerate() {
                        let row = &mut dst[(s * y + a) * ow..];
                        for (x, v) in line.iter().enumerate() {
                            row[s * x + b] = *v;
                        }
                    }
                }
            });
        out
    }
}

/// A depthwise (groups = channels) transposed convolution without bias: weights `[c, 1, k, k]`.
#[derive(Debug, Clone)]
pub struct FDepthwiseDeconv {
    k: usize,
    s: usize,
    p: usize,
    w: Vec<f32>,
}

impl FDepthwiseDeconv {
    pub fn new(w: Vec<f32>, k: usize, s: usize, p: usize) -> Self {
        FDepthwiseDeconv { k, s, p, w }
    }

    pub fn forward(&self, x: View<'_>) -> Map {
        let what = || {
            let shape = profile::shape(|| format!("{}x{}x{}", x.c, x.h, x.w));
            (format!("upsample-dw{}/s{}{shape}", self.k, self.s), 0.0)
        };
        profile::op(what, || self.run(x))
    }

    fn run(&self, x: View<'_>) -> Map {
        use rayon::prelude::*;
        let (k, s, p) = (self.k, self.s, self.p);
        let oh = out_size(x.h, k, s, p);
        let ow = out_size(x.w, k, s, p);
        // Output row `s·y + a` reads input rows `y + d` for the taps `(ky, d)` of phase `a`;
        // columns likewise. Each column phase is accumulated contiguously (one multiply-add
        // pass per tap over a whole input row) and then interleaved into the output row.
        let phases: Vec<Vec<(usize, isize)>> = (0..s).map(|a| phase_taps(a, k, s, p)).collect();
        let mut out = Map::zeros(x.c, oh, ow);
        out.data.par_chunks_mut(oh * ow).enumerate().for_each_init(
            || vec![0.0f32; ow.div_ceil(s)],
            |acc, (c, dst)| {
                let src = x.plane(c);
                let wc = &self.w[c * k * k..(c + 1) * k * k];
                for (oy, row) in dst.chunks_exact_mut(ow).enumerate() {
                    let (y, a) = ((oy / s) as isize, oy % s);
                    for (b, col_taps) in phases.iter().enumerate().take(ow) {
                        // Output columns s·j + b for j < n.
                        let n = (ow - b).div_ceil(s);
                        let acc = &mut acc[..n];
                        acc.fill(0.0);
                        for &(ky, dy) in &phases[a] {
                            let iy = y + dy;
                            if iy < 0 || iy >= x.h as isize {
                                continue;
                            }
                            let srow = &src[iy as usize * x.w..(iy as usize + 1) * x.w];
                            for &(kx, dx) in col_taps {
                                let wv = wc[ky * k + kx];
                                // Valid j: 0 <= j + dx < x.w.
                                let lo = (-dx).clamp(0, n as isize) as usize;
                                let hi =
                                    (x.w as isize - dx).clamp(lo as isize, n as isize) as usize;
                                let from = (lo as isize + dx) as usize;
                                for (o, i) in acc[lo..hi].iter_mut().zip(&srow[from..]) {
                                    *o += wv * i;
                                }
                            }
                        }
                        for (j, v) in acc.iter().enumerate() {
                            row[s * j + b] = *v;
                        }
                    }
                }
            },
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fast::map::ramp;

    /// Scatter definition of a transposed convolution, weights `[c, o/groups, k, k]`.
    fn naive(x: &Map, w: &[f32], o: usize, k: usize, s: usize, p: usize, groups: usize) -> Map {
        let oh = out_size(x.h, k, s, p);
        let ow = out_size(x.w, k, s, p);
        let mut out = Map::zeros(o, oh, ow);
        let (cg, og) = (x.c / groups, o / groups);
        for c in 0..x.c {
            let g = c / cg;
            for ro in 0..og {
                let r = g * og + ro;
                for iy in 0..x.h {
                    for ix in 0..x.w {
                        for ky in 0..k {
                            for kx in 0..k {
                                let oy = (iy * s + ky) as isize - p as isize;
                                let ox = (ix * s + kx) as isize - p as isize;
                                if oy >= 0 && ox >= 0 && (oy as usize) < oh && (ox as usize) < ow {
                                    out.data[(r * oh + oy as usize) * ow + ox as usize] += w
                                        [((c * og + ro) * k + ky) * k + kx]
                                        * x.data[(c * x.h + iy) * x.w + ix];
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn phase_split_equals_the_scatter_definition() {
        for (c, o, h, w, k, s, p) in [
            (3, 4, 5, 6, 4, 2, 1),
            (2, 3, 4, 4, 3, 2, 1),
            (2, 2, 3, 5, 8, 4, 2),
            (2, 3, 4, 5, 5, 2, 0), // phases larger than the input
            (1, 2, 1, 1, 4, 2, 1), // a 1 × 1 input
            (3, 4, 40, 33, 4, 2, 1),
        ] {
            let x = Map {
                c,
                h,
                w,
                data: ramp(c * h * w, 0.2),
            };
            let wt = ramp(c * o * k * k, 1.1);
            let bias = ramp(o, 0.4);
            let mut want = naive(&x, &wt, o, k, s, p, 1);
            let hw = want.h * want.w;
            for (i, v) in want.data.iter_mut().enumerate() {
                *v = (*v + bias[i / hw]).max(0.0);
            }
            // The same weights as [o, c, k, k].
            let kk = k * k;
            let mut w_oc = vec![0.0; wt.len()];
            for r in 0..o {
                for ci in 0..c {
                    w_oc[(r * c + ci) * kk..(r * c + ci + 1) * kk]
                        .copy_from_slice(&wt[(ci * o + r) * kk..(ci * o + r + 1) * kk]);
                }
            }
            let got = FDeconv::new(&w_oc, [c, o], k, s, p, bias, true).forward(&x);
            assert_eq!((got.h, got.w), (want.h, want.w));
            for (a, b) in got.data.iter().zip(&want.data) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn depthwise_gather_equals_the_scatter_definition() {
        for (c, h, w, k, s, p) in [
            (3, 5, 6, 4, 2, 1),
            (2, 4, 3, 8, 4, 2),
            (2, 3, 3, 16, 8, 4),
            (2, 3, 4, 3, 2, 1), // odd output side
            (1, 2, 5, 5, 2, 0), // taps reaching past both ends
        ] {
            let x = Map {
                c,
                h,
                w,
                data: ramp(c * h * w, 0.4),
            };
            let wt = ramp(c * k * k, 2.0);
            let want = naive(&x, &wt, c, k, s, p, c);
            let got = FDepthwiseDeconv::new(wt, k, s, p).forward(x.view());
            for (a, b) in got.data.iter().zip(&want.data) {
                assert!((a - b).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }
}
