//! Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016): each 2×2 output tile costs 16 multiplies per
//! (input, output) channel pair instead of 36, so the GEMM work drops to 4/9 of im2col's.
//!
//! With `d` a 4×4 input patch, `g` a 3×3 kernel and
//! `Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]`, `G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]`,
//! `Aᵀ = [1 1 1 0; 0 1 −1 −1]`, the 2×2 output tile is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Summed over
//! input channels, the element-wise product becomes 16 GEMMs `M[e] = U[e] · V[e]`
//! (`U[e]`: `O × C` transformed weights, computed once; `V[e]`: `C × tiles` transformed input).
//! Tiles run in blocks in parallel; each block's 16 GEMMs, then the output transform with the
//! fused epilogue (bias, residual, ReLU), stay in cache.

use super::conv::{Epilogue, OutPtr, run_blocks};
use super::map::{Map, View};

/// A 3×3 stride-1 convolution's weights in the Winograd domain: `u[e][o][c]`, `e = 4i + j`.
#[derive(Debug, Clone)]
pub struct Winograd {
    o: usize,
    c: usize,
    u: Vec<f32>,
}

impl Winograd {
    /// From `[o, c, 3, 3]` weights: `U = G g Gᵀ` per channel pair.
    pub fn new(w: &[f32], o: usize, c: usize) -> Self {
        debug_assert_eq!(w.len(), o * c * 9);
        const G: [[f32; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let mut u = vec![0.0; 16 * o * c];
        for oc in 0..o {
            for ic in 0..c {
                let g = &w[(oc * c + ic) * 9..][..9];
                // t = G g (4×3), then U = t Gᵀ (4×4).
                let mut t = [[0.0f32; 3]; 4];
                for (i, row) in t.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|k| G[i][k] * g[k * 3 + j]).sum();
                    }
                }
                for (i, ti) in t.iter().enumerate() {
                    for (j, gj) in G.iter().enumerate() {
                        let v: f32 = (0..3).map(|k| ti[k] * gj[k]).sum();
                        u[((4 * i + j) * o + oc) * c + ic] = v;
                    }
                }
            }
        }
        Winograd { o, c, u }
    }

    /// `epilogue(conv(x))` with padding `pad`, output `oh × ow`.
    pub fn forward(&self, x: View<'_>, pad: usize, [oh, ow]: [usize; 2], ep: &Epilogue<'_>) -> Map {
        debug_assert_eq!(x.c, self.c);
        let (o, c) = (self.o, self.c);
        let mut out = Map::zeros(o, oh, ow);
        let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
        let tiles = th * tw;
        if tiles == 0 || o == 0 {
            return out;
        }
        // Block size: the block's V and M (16 × (C + O) × tiles floats) near 1 MiB, at least 16
        // tiles (the GEMMs' width), and enough blocks for every thread.
        let threads = rayon::current_num_threads();
        let tb = ((1usize << 14) / (c + o))
            .clamp(16, 256)
            .min(tiles.div_ceil(2 * threads).max(16));
        let blocks = tiles.div_ceil(tb);
        let ptr = OutPtr(out.data.as_mut_ptr());
        let geo = Geometry {
            h: x.h,
            w: x.w,
            pad,
            oh,
            ow,
            tw,
        };
        let run = |b: usize, buf: &mut Buffers, par: gemm::Parallelism| {
            let t0 = b * tb;
            let len = tb.min(tiles - t0);
            let Buffers { v, m, scratch } = buf;
            v.resize(16 * c * len, 0.0);
            m.resize(16 * o * len, 0.0);
            input_transform(x, &geo, t0, len, v, scratch);
            for e in 0..16 {
                // Safety: the slices hold o×len, o×c and c×len floats, row-major.
                unsafe {
                    gemm::gemm(
                        o,
                        len,
                        c,
                        m[e * o * len..].as_mut_ptr(),
                        1,
                        len as isize,
                        false,
                        self.u[e * o * c..].as_ptr(),
                        1,
                        c as isize,
                        v[e * c * len..].as_ptr(),
                        1,
                        len as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        par,
                    );
                }
            }
            let p = ptr;
            // Safety: this block writes only the output pixels of its own tiles.
            unsafe { output_transform(m, o, &geo, t0, len, ep, p.0, scratch) };
        };
        run_blocks(blocks, run);
        out
    }
}

/// One block's transformed input, GEMM results and transform scratch.
#[derive(Default)]
struct Buffers {
    v: Vec<f32>,
    m: Vec<f32>,
    scratch: Vec<f32>,
}

struct Geometry {
    h: usize,
    w: usize,
    pad: usize,
    oh: usize,
    ow: usize,
    /// Tiles per output row.
    tw: usize,
}

/// Runs `f(tl0, ty, tx0, n)` over the tile-row segments of tiles `t0..t0+len`: `n` tiles of
/// tile row `ty` from column `tx0`, the first being block tile `tl0`.
fn segments(g: &Geometry, t0: usize, len: usize, mut f: impl FnMut(usize, usize, usize, usize)) {
    let mut t = t0;
    while t < t0 + len {
        let (ty, tx0) = (t / g.tw, t % g.tw);
        let n = (g.tw - tx0).min(t0 + len - t);
        f(t - t0, ty, tx0, n);
        t += n;
    }
}

/// `V[e][ch][t] = (Bᵀ d B)[e]` for tiles `t0..t0+len`. Along a tile row, the input columns are
/// split into even and odd ones (a tile starts at an even column), so that every step of the
/// transform reads and writes contiguous arrays.
fn input_transform(
    x: View<'_>,
    g: &Geometry,
    t0: usize,
    len: usize,
    v: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let c = x.c;
    segments(g, t0, len, |tl0, ty, tx0, n| {
        let m = n + 1;
        scratch.clear();
        scratch.resize(16 * m, 0.0);
        let (d, r) = scratch.split_at_mut(8 * m);
        // Input column of even entry k: x0 + 2k; odd entry k: x0 + 2k + 1.
        let x0 = 2 * tx0 as isize - g.pad as isize;
        let inside = x0 >= 0 && x0 + 2 * m as isize <= g.w as isize;
        for ch in 0..c {
            let src = &x.data[ch * g.h * g.w..(ch + 1) * g.h * g.w];
            for i in 0..4 {
                let (de, dodd) = d[2 * i * m..(2 * i + 2) * m].split_at_mut(m);
                let y = (2 * ty + i) as isize - g.pad as isize;
                if y < 0 || y >= g.h as isize {
                    de.fill(0.0);
                    dodd.fill(0.0);
                    continue;
                }
                let row = &src[y as usize * g.w..(y as usize + 1) * g.w];
                if inside {
                    let row = &row[x0 as usize..x0 as usize + 2 * m];
                    for ((e, od), pair) in
                        de.iter_mut().zip(dodd.iter_mut()).zip(row.chunks_exact(2))
                    {
                        *e = pair[0];
                        *od = pair[1];
                    }
                } else {
                    let at = |xx: isize| {
                        if xx >= 0 && xx < g.w as isize {
                            row[xx as usize]
                        } else {
                            0.0
                        }
                    };
                    for k in 0..m {
                        de[k] = at(x0 + 2 * k as isize);
                        dodd[k] = at(x0 + 2 * k as isize + 1);
                    }
                }
            }
            // Rows (Bᵀ d), on the even and the odd halves alike: d[2i] even, d[2i+1] odd.
            for half in 0..2 {
                let dd = |i: usize| &d[(2 * i + half) * m..(2 * i + half + 1) * m];
                let rr = |i: usize| (2 * i + half) * m;
                lin2(&mut r[rr(0)..rr(0) + m], dd(0), dd(2), |a, b| a - b);
                lin2(&mut r[rr(1)..rr(1) + m], dd(1), dd(2), |a, b| a + b);
                lin2(&mut r[rr(2)..rr(2) + m], dd(2), dd(1), |a, b| a - b);
                lin2(&mut r[rr(3)..rr(3) + m], dd(1), dd(3), |a, b| a - b);
            }
            // Columns ((Bᵀ d) B): from the even (E) and odd (O) halves of each row.
            for i in 0..4 {
                let e = &r[2 * i * m..(2 * i + 1) * m];
                let o = &r[(2 * i + 1) * m..(2 * i + 2) * m];
                let (e0, e1, o0, o1) = (&e[..n], &e[1..], &o[..n], &o[1..]);
                let out = |j: usize| ((4 * i + j) * c + ch) * len + tl0;
                lin2(&mut v[out(0)..out(0) + n], e0, e1, |a, b| a - b);
                lin2(&mut v[out(1)..out(1) + n], o0, e1, |a, b| a + b);
                lin2(&mut v[out(2)..out(2) + n], e1, o0, |a, b| a - b);
                lin2(&mut v[out(3)..out(3) + n], o0, o1, |a, b| a - b);
            }
        }
    });
}

/// `Aᵀ M A` per tile and output channel, plus bias, residual and ReLU, into the output map.
///
/// # Safety
/// `out` points to an `o × oh × ow` map; no other thread writes these tiles' pixels.
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform(
    m: &[f32],
    o: usize,
    g: &Geometry,
    t0: usize,
    len: usize,
    ep: &Epilogue<'_>,
    out: *mut f32,
    scratch: &mut Vec<f32>,
) {
    let plane = g.oh * g.ow;
    segments(g, t0, len, |tl0, ty, tx0, n| {
        scratch.clear();
        scratch.resize(12 * n, 0.0);
        for oc in 0..o {
            let bias = ep.bias.get(oc).copied().unwrap_or(0.0);
            let q: [&[f32]; 16] = std::array::from_fn(|e| &m[(e * o + oc) * len + tl0..][..n]);
            let (y, sd) = scratch.split_at_mut(4 * n);
            // Rows: s_j = q0j + q1j + q2j, d_j = q1j − q2j − q3j.
            for j in 0..4 {
                lin3(
                    &mut sd[j * n..(j + 1) * n],
                    q[j],
                    q[4 + j],
                    q[8 + j],
                    |a, b, c| a + b + c,
                );
                lin3(
                    &mut sd[(4 + j) * n..(5 + j) * n],
                    q[4 + j],
                    q[8 + j],
                    q[12 + j],
                    |a, b, c| a - b - c,
                );
            }
            // Columns: the 2×2 output tile.
            let sdj = |j: usize| &sd[j * n..(j + 1) * n];
            let (y0, rest) = y.split_at_mut(n);
            let (y1, rest) = rest.split_at_mut(n);
            let (y2, y3) = rest.split_at_mut(n);
            lin3(y0, sdj(0), sdj(1), sdj(2), |a, b, c| a + b + c);
            lin3(y1, sdj(1), sdj(2), sdj(3), |a, b, c| a - b - c);
            lin3(y2, sdj(4), sdj(5), sdj(6), |a, b, c| a + b + c);
            lin3(y3, sdj(5), sdj(6), sdj(7), |a, b, c| a - b - c);
            for (i, (left, right)) in [(&*y0, &*y1), (&*y2, &*y3)].into_iter().enumerate() {
                let yy = 2 * ty + i;
                if yy >= g.oh {
                    break;
                }
                let base = oc * plane + yy * g.ow;
                let res = ep.residual.map(|r| &r.data[base..base + g.ow]);
                for k in 0..n {
                    let xx = 2 * (tx0 + k);
                    for (dx, val) in [(0, left[k]), (1, right[k])] {
                        if xx + dx >= g.ow {
                            continue;
                        }
                        let mut val = val + bias;
                        if let Some(r) = res {
                            val += r[xx + dx];
                        }
                        if ep.relu && val < 0.0 {
                            val = 0.0;
                        }
                        // Safety: see the function's contract.
                        unsafe { *out.add(base + xx + dx) = val };
                    }
                }
            }
        }
    });
}

/// `out[k] = f(a[k], b[k])`.
#[inline(always)]
fn lin2(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = f(a, b);
    }
}

/// `out[k] = f(a[k], b[k], c[k])`.
#[inline(always)]
fn lin3(out: &mut [f32], a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) {
    for (((o, &a), &b), &c) in out.iter_mut().zip(a).zip(b).zip(c) {
        *o = f(a, b, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fast::conv::{Taps, conv_gemm, out_size};
    use crate::model::fast::map::ramp;

    #[test]
    fn winograd_equals_the_im2col_convolution() {
        // Odd and even sizes (partial tiles), padding 0 and 1, maps narrower than a tile,
        // blocks spanning tile rows, and the parallel path.
        for (c, h, w, o, p, relu) in [
            (3, 9, 7, 5, 1, true),
            (4, 10, 10, 6, 0, false),
            (2, 1, 1, 3, 1, true),
            (2, 3, 2, 3, 1, false),
            (5, 6, 5, 4, 0, true),
            (8, 33, 20, 16, 1, true),
            (16, 64, 64, 24, 1, false),
            (3, 70, 90, 8, 1, true),
        ] {
            let x = Map {
                c,
                h,
                w,
                data: ramp(c * h * w, 0.1),
            };
            let wt = ramp(o * c * 9, 0.7);
            let bias = ramp(o, 0.3);
            let (oh, ow) = (out_size(h, 3, 1, p, 1), out_size(w, 3, 1, p, 1));
            let res = Map {
                c: o,
                h: oh,
                w: ow,
                data: ramp(o * oh * ow, 0.9),
            };
            for residual in [None, Some(&res)] {
                let ep = Epilogue {
                    bias: &bias,
                    residual,
                    relu,
                };
                let want = conv_gemm(
                    x.view(),
                    &Taps::conv([3, 3], 1, p, 1),
                    [oh, ow],
                    &wt,
                    o,
                    &ep,
                );
                let got = Winograd::new(&wt, o, c).forward(x.view(), p, [oh, ow], &ep);
                assert_eq!((got.c, got.h, got.w), (o, oh, ow));
                let scale = want.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                for (i, (a, b)) in got.data.iter().zip(&want.data).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * scale,
                        "c{c} {h}×{w} o{o} p{p} at {i}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
