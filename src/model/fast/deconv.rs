//! Transposed convolutions.
//!
//! - A full transposed convolution (`msra_resnet`'s `ConvTranspose(k4, s2, p1)`) is split into
//!   its `s × s` output phases: output pixels `(s·y + a, s·x + b)` only see the taps with
//!   `ky ≡ a + p (mod s)`, at input row `y + (a + p - ky) / s`, so each phase is an ordinary
//!   stride-1 convolution with a `(k/s) × (k/s)` kernel — one GEMM, no zero-stuffing, no
//!   scatter of partial products. The phases run side by side, each GEMM on one thread, and are
//!   interleaved into the output channel by channel in parallel.
//! - For `k = 4, s = 2, p = 1` (every phase a 2 × 2 kernel at input offsets −1..=1) the four
//!   phases are also one 3×3 stride-1 convolution with `4 · o` output channels, each phase's
//!   kernel in its 2 × 2 corner of the 3 × 3 and zeros elsewhere. Where the Winograd policy
//!   runs that map as F(4×4, 3×3) it runs so: 36 multiplies per 16 outputs and input channel
//!   against the phases' 4 × 16 (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural
//!   Networks", on the 3×3 kernel), then the phases are interleaved as above.
//! - A depthwise transposed convolution (DLA's bilinear `up` layers) uses the same phases: each
//!   output row's column phase is a few multiply-add passes over whole input rows of its own
//!   channel (at most `⌈k/s⌉²` taps), interleaved into the output row afterwards.

use std::sync::OnceLock;

use super::conv::{Epilogue, Taps, conv_gemm, serial};
use super::layers::WinogradTiles;
use super::map::{Map, View};
use super::profile;
use super::winograd::{Tile, Winograd};

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

/// The most input channels of a transposed convolution run as stacked phases in F(4×4): its
/// weights there are `36 × 4·o × c` floats, nine times the phases' `16 · o · c` (res18 at 512:
/// two such layers of 256 → 256 channels, 38 MB each; peak memory of a profile run 345 → 417
/// MB). res50's 2048 → 256 layer (302 MB as F(4×4), on inputs of 1024 and more) stays
/// phase-split.
const STACKED_MAX_IN: usize = 512;

/// A full (groups = 1) transposed convolution with folded BatchNorm and optional ReLU.
#[derive(Debug, Clone)]
pub struct FDeconv {
    o: usize,
    c: usize,
    k: usize,
    s: usize,
    p: usize,
    /// Per phase `(a, b)` (row-major over `s × s`): its taps and its `[o, c · taps]` weights.
    phases: Vec<(Taps, Vec<f32>)>,
    bias: Vec<f32>,
    relu: bool,
    /// The Winograd policy of the compilation that made this layer: whether the phases may run
    /// as one F(4×4, 3×3) convolution.
    winograd: WinogradTiles,
    /// That convolution's weights and bias (this layer's, once per phase), made the first time
    /// a map needs them.
    stacked: OnceLock<(Winograd, Vec<f32>)>,
}

impl FDeconv {
    /// `w` is `[o, c, k, k]` (PyTorch's/Burn's transposed-convolution layout `[c, o, k, k]` with
    /// the first two axes swapped), already scaled by any folded BatchNorm; `bias` per output
    /// channel; `winograd` the policy for the phases stacked as one 3×3 convolution.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        w: &[f32],
        [c, o]: [usize; 2],
        k: usize,
        s: usize,
        p: usize,
        bias: Vec<f32>,
        relu: bool,
        winograd: WinogradTiles,
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
            c,
            k,
            s,
            p,
            phases,
            bias,
            relu,
            winograd,
            stacked: OnceLock::new(),
        }
    }

    /// Whether the phases run as one F(4×4, 3×3) convolution on an `h × w` input: where this
    /// layer has that form (`k = 4, s = 2, p = 1`, at most [`STACKED_MAX_IN`] input channels)
    /// and the policy runs a 3×3 convolution with an `h × w` output as F(4×4).
    fn stacks(&self, [h, w]: [usize; 2]) -> bool {
        (self.k, self.s, self.p) == (4, 2, 1)
            && self.c <= STACKED_MAX_IN
            && self.winograd.tile_for([h, w]) == Some(Tile::F4)
    }

    /// That convolution and its bias on an `h × w` input, where the phases run so
    /// ([`FDeconv::stacks`]).
    fn stacked_for(&self, size: [usize; 2]) -> Option<&(Winograd, Vec<f32>)> {
        if !self.stacks(size) {
            return None;
        }
        Some(self.stacked.get_or_init(|| {
            let (o, c) = (self.o, self.c);
            // Output channel `q · o + r` (phase q, channel r) of the 3×3 convolution: phase q's
            // 2 × 2 taps at rows/columns `1 + offset`, zeros elsewhere.
            let mut w3 = vec![0.0; 4 * o * c * 9];
            for (q, (taps, wp)) in self.phases.iter().enumerate() {
                let n = taps.ys.len() * taps.xs.len();
                for r in 0..o {
                    for ci in 0..c {
                        let src = &wp[(r * c + ci) * n..][..n];
                        let dst = &mut w3[((q * o + r) * c + ci) * 9..][..9];
                        for (i, &dy) in taps.ys.iter().enumerate() {
                            for (j, &dx) in taps.xs.iter().enumerate() {
                                dst[((1 + dy) * 3 + 1 + dx) as usize] = src[i * taps.xs.len() + j];
                            }
                        }
                    }
                }
            }
            let bias = (0..4).flat_map(|_| self.bias.iter().copied()).collect();
            (Winograd::new(&w3, 4 * o, c, Tile::F4), bias)
        }))
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
            let form = match self.stacks([x.h, x.w]) {
                true => " winograd F4",
                false => "",
            };
            (
                format!("deconv{}x{0}/s{}{form}{shape}", self.k, self.s),
                flops,
            )
        };
        profile::op(what, || self.run(x))
    }

    fn run(&self, x: &Map) -> Map {
        let (s, o) = (self.s, self.o);
        let oh = out_size(x.h, self.k, s, self.p);
        let ow = out_size(x.w, self.k, s, self.p);
        if let Some((wg, bias)) = self.stacked_for([x.h, x.w]) {
            let ep = Epilogue {
                bias,
                residual: None,
                relu: self.relu,
            };
            let all = wg.forward(x.view(), 1, [x.h, x.w], &ep);
            let v = all.view();
            return self.interleave([oh, ow], |q, r| (v.plane(q * o + r), x.h, x.w));
        }
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
        self.interleave([oh, ow], |q, r| {
            (parts[q].view().plane(r), parts[q].h, parts[q].w)
        })
    }

    /// The `oh × ow` output from its phases: `phase(q, r)` is phase `q`'s plane of output
    /// channel `r` with its height and width, which go to rows `s·y + a`, columns `s·x + b`.
    fn interleave<'a>(
        &self,
        [oh, ow]: [usize; 2],
        phase: impl Fn(usize, usize) -> (&'a [f32], usize, usize) + Sync,
    ) -> Map {
        use rayon::prelude::*;
        let s = self.s;
        let mut out = Map::zeros(self.o, oh, ow);
        out.data
            .par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(r, dst)| {
                if s == 2 && oh % 2 == 0 && ow % 2 == 0 {
                    // Every phase `oh/2 × ow/2`: each output row written once, in order, from
                    // its two column phases (64 × 64 → 128 × 128 with 256 channels on EPYC-2:
                    // 2.3-2.7 ms, against 4.0-6.6 for the loop below).
                    let pw = ow / 2;
                    for (y, rows) in dst.chunks_exact_mut(2 * ow).enumerate() {
                        for (a, row) in rows.chunks_exact_mut(ow).enumerate() {
                            let p0 = &phase(2 * a, r).0[y * pw..][..pw];
                            let p1 = &phase(2 * a + 1, r).0[y * pw..][..pw];
                            for ((pair, u), v) in row.chunks_exact_mut(2).zip(p0).zip(p1) {
                                pair[0] = *u;
                                pair[1] = *v;
                            }
                        }
                    }
                    return;
                }
                for q in 0..s * s {
                    let (a, b) = (q / s, q % s);
                    let (src, ph, pw) = phase(q, r);
                    for (y, line) in src.chunks_exact(pw.max(1)).take(ph).enumerate() {
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
            (5, 7, 9, 8, 4, 2, 1), // stacked as F(4×4) with the F4 policy only
            (4, 9, 35, 32, 4, 2, 1),
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
            // Every policy: phases as GEMMs (Off, F2), and for k4 s2 p1 on maps of at least
            // 64 pixels (F4) or 8 × 8 tiles (Auto) the phases stacked as one F(4×4, 3×3).
            for policy in [
                WinogradTiles::Off,
                WinogradTiles::F2,
                WinogradTiles::F4,
                WinogradTiles::Auto,
            ] {
                let layer = FDeconv::new(&w_oc, [c, o], k, s, p, bias.clone(), true, policy);
                let stacked = (k, s, p) == (4, 2, 1)
                    && match policy {
                        WinogradTiles::F4 => h * w >= 64,
                        WinogradTiles::Auto => h.div_ceil(4) * w.div_ceil(4) >= 64,
                        _ => false,
                    };
                assert_eq!(layer.stacked_for([h, w]).is_some(), stacked, "{policy:?}");
                let got = layer.forward(&x);
                assert_eq!((got.h, got.w), (want.h, want.w));
                let scale = want.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                for (a, b) in got.data.iter().zip(&want.data) {
                    assert!((a - b).abs() <= 1e-5 * scale, "{policy:?}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn wide_inputs_stay_phase_split() {
        let c = STACKED_MAX_IN + 1;
        let layer = FDeconv::new(
            &ramp(c * 16, 0.5),
            [c, 1],
            4,
            2,
            1,
            vec![0.0],
            false,
            WinogradTiles::F4,
        );
        assert!(layer.stacked_for([64, 64]).is_none());
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
