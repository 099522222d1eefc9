//! Direct convolutions on the panel kernel, for convolutions with few output channels and
//! many taps per input channel, where im2col + GEMM spends its time on the columns rather than
//! the multiply-adds (the 7×7 stems: 147 column rows per pixel, reused by only 16–64 output
//! channels).
//!
//! No column matrix is made. The input is copied once, zero-padded, into `s × s` phase planes
//! per channel (`plane[c][a][b][i][j] = x[c][s·i + a − pad][s·j + b − pad]`), so that tap
//! `(ky, kx)` of output pixel `(y, x)` is element `(y + ky / s, x + kx / s)` of plane `(ky mod
//! s, kx mod s)`: for a run of sixteen output pixels of one row, each tap's sixteen inputs are
//! contiguous, `off[k]` floats from the row's start in the planes. The panel kernel reads
//! them from there (`Panels::direct_row`) in place of a column strip.

use rayon::prelude::*;

use super::conv::{Epilogue, OutPtr, Pooled, epilogue_row, is_serial};
use super::map::{Map, View};
use super::panel::Panels;

/// Output pixels per kernel call (the panel kernel's block width).
const STRIP: usize = 16;

/// A convolution's weights (`o × c·kh·kw`) in the panel kernel's layout, with its geometry.
#[derive(Debug, Clone)]
pub struct Direct {
    c: usize,
    k: [usize; 2],
    stride: usize,
    pad: usize,
    u: Panels,
}

impl Direct {
    /// From `[o, c, kh, kw]` weights; `None` where this CPU keeps the panels row-major (no
    /// AVX2), which only the im2col path runs.
    pub fn new(
        w: &[f32],
        [o, c]: [usize; 2],
        k: [usize; 2],
        stride: usize,
        pad: usize,
    ) -> Option<Self> {
        let taps = c * k[0] * k[1];
        debug_assert_eq!(w.len(), o * taps);
        let u = Panels::new(1, o, taps, |_, r, j| w[r * taps + j]);
        u.packed().then_some(Direct {
            c,
            k,
            stride,
            pad,
            u,
        })
    }

    /// `epilogue(conv(x))`, output `oh × ow`.
    pub fn forward(&self, x: View<'_>, [oh, ow]: [usize; 2], ep: &Epilogue<'_>) -> Map {
        debug_assert_eq!(x.c, self.c);
        let (s, pad, [kh, kw]) = (self.stride, self.pad as isize, self.k);
        let o = self.u.rows();
        // Plane rows: every output row plus the taps below it; columns: the output columns
        // rounded up to whole strips plus the taps right of them (so the last strip reads
        // inside the plane; its extra outputs are not written).
        let (ph, pw) = (oh + (kh - 1) / s, ow.next_multiple_of(STRIP) + (kw - 1) / s);
        // Every element written once (the padding with zeros): no zero-fill of the whole
        // buffer first.
        let len = x.c * s * s * ph * pw;
        let mut planes: Vec<f32> = Vec::with_capacity(len);
        planes.spare_capacity_mut()[..len]
            .par_chunks_mut(ph * pw)
            .enumerate()
            .for_each(|(q, plane)| {
                let (ci, a, b) = (q / (s * s), (q / s) % s, q % s);
                let src = x.plane(ci);
                // Columns j with 0 <= s·j + b − pad < w.
                let lo = ((pad - b as isize).max(0) as usize).div_ceil(s).min(pw);
                let hi = ((x.w as isize + pad - b as isize).max(0) as usize)
                    .div_ceil(s)
                    .clamp(lo, pw);
                for (i, row) in plane.chunks_exact_mut(pw).enumerate() {
                    let iy = (s * i + a) as isize - pad;
                    if iy < 0 || iy >= x.h as isize {
                        row.iter_mut().for_each(|d| _ = d.write(0.0));
                        continue;
                    }
                    let line = &src[iy as usize * x.w..][..x.w];
                    let x0 = ((s * lo + b) as isize - pad).max(0) as usize;
                    let (head, rest) = row.split_at_mut(lo);
                    let (body, tail) = rest.split_at_mut(hi - lo);
                    head.iter_mut().for_each(|d| _ = d.write(0.0));
                    tail.iter_mut().for_each(|d| _ = d.write(0.0));
                    let mut from = line[x0..].iter().step_by(s);
                    for d in body {
                        d.write(from.next().copied().unwrap_or(0.0));
                    }
                }
            });
        // Safety: every element of every plane was written above (the planes are `ph` rows
        // of `pw` floats each, each row written whole).
        unsafe { planes.set_len(len) };
        // Tap k = (ci·kh + ky)·kw + kx (the weights' order) in the planes.
        let off: Vec<usize> = (0..self.c * kh * kw)
            .map(|k| {
                let (ci, ky, kx) = (k / (kh * kw), k / kw % kh, k % kw);
                ((ci * s * s + (ky % s) * s + kx % s) * ph + ky / s) * pw + kx / s
            })
            .collect();
        let mut out = Map::zeros(o, oh, ow);
        let n = oh * ow;
        let ptr = OutPtr(out.data.as_mut_ptr());
        // Each row's products go to a scratch block first, its rows `ldt` floats apart (not a
        // multiple of 4 KiB: the output planes' rows, `oh·ow` floats apart, fall into the
        // same L1 sets), then bias, residual and ReLU take them to the output.
        let ldt = ow.next_multiple_of(STRIP) + STRIP;
        let row = |t: &mut Pooled<Vec<f32>>, y: usize| {
            t.resize(o * ldt, 0.0);
            // Safety: `t` holds o rows of ldt >= ow floats; each tap's row reads `ow` rounded
            // up to 16 floats from column `off[k] + y·pw`, inside the planes (see `ph`, `pw`).
            unsafe {
                self.u
                    .direct_row(planes.as_ptr().add(y * pw), &off, ow, (t.as_mut_ptr(), ldt));
            }
            let p = ptr;
            for r in 0..o {
                // Safety: output row y of every channel is this call's alone.
                let line = unsafe { std::slice::from_raw_parts_mut(p.0.add(r * n + y * ow), ow) };
                line.copy_from_slice(&t[r * ldt..][..ow]);
                epilogue_row(line, ep, r, r * n + y * ow);
            }
        };
        if is_serial() {
            let mut t = Pooled::take();
            (0..oh).for_each(|y| row(&mut t, y));
        } else {
            (0..oh)
                .into_par_iter()
                .for_each_init(Pooled::take, |t, y| row(t, y));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fast::conv::{Taps, conv_gemm};
    use crate::model::fast::map::ramp;
    use crate::model::fast::panel::tests::with_sixteen_row_panels;
    use crate::model::fast::simd::{Level, level};

    /// Against im2col + GEMM for strides 1 and 2, odd and even sizes, paddings 0 to 3, output
    /// rows shorter and longer than a strip, partial panels, with and without a residual.
    #[test]
    fn direct_equals_im2col() {
        if level() == Level::Baseline {
            // No packed panels here: `Direct::new` says so.
            let w = ramp(2 * 3 * 9, 0.3);
            assert!(Direct::new(&w, [2, 3], [3, 3], 1, 1).is_none());
            return;
        }
        for (c, o, h, w, k, s, p) in [
            (3, 16, 37, 41, 7, 1, 3),
            (3, 16, 37, 40, 7, 2, 3),
            (16, 32, 20, 35, 3, 2, 1),
            (5, 7, 9, 8, 3, 1, 1),
            (4, 13, 11, 18, 3, 2, 0),
            (2, 6, 6, 5, 5, 1, 2),
            (2, 6, 3, 3, 3, 2, 1),
        ] {
            let x = Map {
                c,
                h,
                w,
                data: ramp(c * h * w, 0.7),
            };
            let wt = ramp(o * c * k * k, 1.3);
            let bias = ramp(o, 0.5);
            let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            let res = Map {
                c: o,
                h: oh,
                w: ow,
                data: ramp(o * oh * ow, 0.9),
            };
            for (residual, relu) in [(None, true), (Some(&res), false)] {
                let ep = Epilogue {
                    bias: &bias,
                    residual,
                    relu,
                };
                let taps = Taps::conv([k, k], s, p, 1);
                let want = conv_gemm(x.view(), &taps, [oh, ow], &wt, o, &ep);
                let scale = want.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                // With this CPU's panels, then with the AVX-512 kernel's.
                let direct = || Direct::new(&wt, [o, c], [k, k], s, p).expect("packed panels");
                for (d, wide) in [(direct(), false), (with_sixteen_row_panels(direct), true)] {
                    let got = d.forward(x.view(), [oh, ow], &ep);
                    for (i, (a, b)) in got.data.iter().zip(&want.data).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * scale,
                            "c{c} o{o} {h}x{w} k{k} s{s} p{p} (16-row panels: {wide}) [{i}]: {a} against {b}"
                        );
                    }
                }
            }
        }
    }
}
