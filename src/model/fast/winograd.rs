//! Winograd convolutions for 3×3 stride-1 layers (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016): an `m × m` output tile costs `(m + 2)²` multiplies per
//! (input, output) channel pair instead of `9 m²`.
//!
//! - F(2×2, 3×3): 16 multiplies for 4 outputs (4/9 of im2col's GEMM work), with
//!   `Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]`, `G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]`,
//!   `Aᵀ = [1 1 1 0; 0 1 −1 −1]`.
//! - F(4×4, 3×3): 36 multiplies for 16 outputs (1/4 of im2col's), interpolation points
//!   0, ±1, ±2 and ∞: `Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0;
//!   0 2 −1 −2 1 0; 0 4 0 −5 0 1]`, `G = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1⁄24 1⁄12 ⅙;
//!   1⁄24 −1⁄12 ⅙; 0 0 1]`, `Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]`
//!   (the paper's §4.2 matrices). Its float32 error is larger than F(2×2)'s (the ±8 and 1/24
//!   entries); `tests/fast_cpu.rs` holds every architecture's heads to PyTorch with each form.
//!
//! With `d` an `(m+2)²` input patch and `g` a 3×3 kernel, the output tile is
//! `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Summed over input channels, the element-wise product becomes
//! `(m+2)²` GEMMs `M[e] = U[e] · V[e]` (`U[e]`: `O × C` transformed weights, computed once;
//! `V[e]`: `C × tiles` transformed input). Tiles run in blocks in parallel; each block's GEMMs,
//! then the output transform with the fused epilogue (bias, residual, ReLU), stay in cache.

use rayon::prelude::*;

use super::conv::{Epilogue, OutPtr, Pooled, gemm_into, is_serial, run_blocks};
use super::map::{Map, View};
use super::panel::Panels;
use super::simd::{Lanes, Vector, multiversion, split_pairs};

/// Output tile of a Winograd convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tile {
    /// F(2×2, 3×3).
    F2,
    /// F(4×4, 3×3).
    F4,
}

impl Tile {
    /// Output tile side `m`.
    fn m(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// Transformed elements per tile, `(m + 2)²`.
    fn elems(self) -> usize {
        (self.m() + 2) * (self.m() + 2)
    }

    /// The kernel transform `G` (`(m + 2) × 3`), row-major.
    fn g(self) -> &'static [[f32; 3]] {
        const G2: [[f32; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        const G4: [[f32; 3]; 6] = [
            [1.0 / 4.0, 0.0, 0.0],
            [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
            [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
            [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
            [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
            [0.0, 0.0, 1.0],
        ];
        match self {
            Tile::F2 => &G2,
            Tile::F4 => &G4,
        }
    }
}

/// A 3×3 stride-1 convolution's weights in the Winograd domain: `U[e]` (`o × c`), `e = (m + 2)
/// i + j`, in the GEMM kernel's panels.
#[derive(Debug, Clone)]
pub struct Winograd {
    tile: Tile,
    o: usize,
    c: usize,
    u: Panels,
}

impl Winograd {
    /// From `[o, c, 3, 3]` weights: `U = G g Gᵀ` per channel pair (accumulated in f64).
    pub fn new(w: &[f32], o: usize, c: usize, tile: Tile) -> Self {
        debug_assert_eq!(w.len(), o * c * 9);
        let g = tile.g();
        let a = g.len();
        let mut u = vec![0.0; a * a * o * c];
        for oc in 0..o {
            for ic in 0..c {
                let k = &w[(oc * c + ic) * 9..][..9];
                // t = G k (a×3), then U = t Gᵀ (a×a).
                let t: Vec<[f64; 3]> = g
                    .iter()
                    .map(|gi| {
                        std::array::from_fn(|j| {
                            (0..3).map(|l| gi[l] as f64 * k[l * 3 + j] as f64).sum()
                        })
                    })
                    .collect();
                for (i, ti) in t.iter().enumerate() {
                    for (j, gj) in g.iter().enumerate() {
                        let v: f64 = (0..3).map(|l| ti[l] * gj[l] as f64).sum();
                        u[((a * i + j) * o + oc) * c + ic] = v as f32;
                    }
                }
            }
        }
        let u = Panels::new(a * a, o, c, |e, oc, ic| u[(e * o + oc) * c + ic]);
        Winograd { tile, o, c, u }
    }

    /// The profile's name of this form.
    pub fn name(&self) -> &'static str {
        match self.tile {
            Tile::F2 => "winograd F2",
            Tile::F4 => "winograd F4",
        }
    }

    /// `epilogue(conv(x))` with padding `pad`, output `oh × ow`.
    pub fn forward(&self, x: View<'_>, pad: usize, [oh, ow]: [usize; 2], ep: &Epilogue<'_>) -> Map {
        debug_assert_eq!(x.c, self.c);
        let (o, c) = (self.o, self.c);
        let (m, elems) = (self.tile.m(), self.tile.elems());
        let mut out = Map::zeros(o, oh, ow);
        let (th, tw) = (oh.div_ceil(m), ow.div_ceil(m));
        let tiles = th * tw;
        if tiles == 0 || o == 0 {
            return out;
        }
        // Blocks of tiles ([`Winograd::block_budget`]), enough of them for every thread.
        let threads = rayon::current_num_threads();
        // A multiple of 16 tiles, the GEMM kernel's strip: 113 tiles (64 channels at
        // 128 × 128) left a one-tile strip to a narrow kernel (mdla34's heads at 512, 64 → 1536
        // channels, on an AVX2 EPYC: 112.9 → 102.8–106.1 ms, alternated).
        let tb = self.block_budget().min(tiles.div_ceil(2 * threads).max(16)) / 16 * 16;
        let ob = self.round_channels(tb).min(o);
        let blocks = tiles.div_ceil(tb);
        let ptr = OutPtr(out.data.as_mut_ptr());
        let geo = Geometry::new(x, pad, [oh, ow], tw);
        // One round: the GEMMs of output channels o0..o0+on for the block's tiles t0..t0+len,
        // then their output transform.
        let round = |v: &[f32],
                     (t0, len): (usize, usize),
                     (o0, on): (usize, usize),
                     mm: &mut [f32],
                     scratch: &mut Vec<f32>,
                     par: gemm::Parallelism| {
            self.gemms(v, len, (o0, on), mm, par);
            let p = ptr;
            // Safety: a round writes only the output pixels of its own tiles and channels.
            unsafe { self.output(mm, (o0, on), &geo, (t0, len), ep, p.0, scratch) }
        };
        let input = |t0: usize, len: usize, v: &mut [f32], scratch: &mut Vec<f32>| {
            self.input(x, &geo, (t0, len), v, scratch)
        };
        let split = o
            .div_ceil(2 * threads)
            .next_multiple_of(self.u.panel_rows());
        if blocks < 2 * threads && threads > 1 && !is_serial() && split < o {
            // Too few tiles to keep every thread busy (small maps): the threads share each
            // block's output channels instead, the block's V transformed once (mdla34's
            // 512 → 512 channels at 8 × 8: 2.63 → 2.34 ms on an AVX2 EPYC).
            let mut own = Pooled::<Buffers>::take();
            let Buffers { v, scratch, .. } = &mut *own;
            let on = split.min(ob);
            for b in 0..blocks {
                let (t0, len) = (b * tb, tb.min(tiles - b * tb));
                let v = grown(v, elems * estride(c * len));
                input(t0, len, v, scratch);
                let v = &*v;
                (0..o.div_ceil(on)).into_par_iter().for_each_init(
                    Pooled::<Buffers>::take,
                    |buf, k| {
                        let Buffers { m: mm, scratch, .. } = &mut **buf;
                        let (o0, n) = (k * on, on.min(o - k * on));
                        let mm = grown(mm, elems * estride(n * len));
                        round(v, (t0, len), (o0, n), mm, scratch, gemm::Parallelism::None);
                    },
                );
            }
            return out;
        }
        let block = |b: usize, buf: &mut Buffers, par: gemm::Parallelism| {
            let t0 = b * tb;
            let len = tb.min(tiles - t0);
            let Buffers { v, m: mm, scratch } = buf;
            let v = grown(v, elems * estride(c * len));
            let mm = grown(mm, elems * estride(ob * len));
            input(t0, len, v, scratch);
            for o0 in (0..o).step_by(ob) {
                let on = ob.min(o - o0);
                round(
                    v,
                    (t0, len),
                    (o0, on),
                    &mut mm[..elems * estride(on * len)],
                    scratch,
                    par,
                );
            }
        };
        run_blocks(blocks, block);
        out
    }

    /// Tiles per block as far as the cache goes: the block's transformed input V (elems × C ×
    /// tiles floats) near 1 MiB; at least 16 tiles (the GEMMs' width), and for F(4×4) with
    /// C ≥ 128 at least 64: each of the block's GEMMs packs its whole `U[e]` (O × C), which
    /// narrow blocks do not amortise (res18's F(4×4) layers at 512: 116 → 94 ms; smaller C
    /// lost with it, mdla34's at 256: 50 → 55 ms).
    fn block_budget(&self) -> usize {
        let min = if self.tile == Tile::F4 && self.c >= 128 {
            64
        } else {
            16
        };
        ((1usize << 18) / (self.tile.elems() * self.c)).clamp(min, 256)
    }

    /// Output channels per GEMM round for blocks of `tb` tiles: the round's GEMM results M
    /// (elems × channels × tb floats) near 1 MiB, so that the output transform reads them from
    /// the cache (mdla34's heads, 64 → 1536 channels, on an AVX2 EPYC: at 64 × 64 23.4 → 19.1
    /// ms against all channels in one round; at 128 × 128 155–183 → 129–132 ms against rounds
    /// of 512 KiB); whole panels of the GEMM kernel.
    fn round_channels(&self, tb: usize) -> usize {
        let mr = self.u.panel_rows();
        ((1usize << 18) / (self.tile.elems() * tb) / mr * mr).max(mr)
    }

    /// The input transform of tiles `t0..t0+len` into `v` ([`input_transform`] or
    /// [`input_transform4`]).
    fn input(
        &self,
        x: View<'_>,
        g: &Geometry,
        (t0, len): (usize, usize),
        v: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        match self.tile {
            Tile::F2 => input_transform(x, g, t0, len, v, scratch),
            Tile::F4 => input_transform4(x, g, t0, len, v, scratch),
        }
    }

    /// The output transform of output channels `o0..o0+on` (`mm` holding their GEMM results)
    /// of tiles `t0..t0+len` ([`output_transform`] or [`output_transform4`]).
    ///
    /// # Safety
    /// As those functions.
    #[allow(clippy::too_many_arguments)]
    unsafe fn output(
        &self,
        mm: &[f32],
        (o0, on): (usize, usize),
        g: &Geometry,
        (t0, len): (usize, usize),
        ep: &Epilogue<'_>,
        out: *mut f32,
        scratch: &mut Vec<f32>,
    ) {
        // Safety: the caller keeps the transforms' contract.
        unsafe {
            match self.tile {
                Tile::F2 => output_transform(mm, o0, on, g, t0, len, ep, out, scratch),
                Tile::F4 => output_transform4(mm, o0, on, g, t0, len, ep, out, scratch),
            }
        }
    }

    /// `M[e] = U[e] V[e]` for output channels `o0..o0+on` of a block of `len` tiles (`mm`
    /// holds `elems × on × len` floats): the elements in parallel where `par` says so.
    fn gemms(
        &self,
        v: &[f32],
        len: usize,
        (o0, on): (usize, usize),
        mm: &mut [f32],
        par: gemm::Parallelism,
    ) {
        let c = self.c;
        let one = |e: usize, mm: &mut [f32]| {
            self.u.gemm(
                e,
                o0..o0 + on,
                &v[e * estride(c * len)..][..c * len],
                len,
                mm,
            )
        };
        let ms = estride(on * len);
        let mm = &mut mm[..self.tile.elems() * ms];
        if on * len == 0 {
            return;
        }
        match par {
            gemm::Parallelism::None => {
                for (e, mm) in mm.chunks_exact_mut(ms).enumerate() {
                    one(e, mm);
                }
            }
            _ => mm
                .par_chunks_exact_mut(ms)
                .enumerate()
                .for_each(|(e, mm)| one(e, mm)),
        }
    }

    /// `post[i](epilogue(conv(x)))` for each 1×1 convolution `post[i]` reading its own slice
    /// of this convolution's output channels, the slices one after the other and covering
    /// them all (CenterNet's heads: the stacked first convolutions, then each head's output
    /// convolution), without writing `conv(x)` out. Blocks of whole tile rows run in
    /// parallel; per block and slice, the slice's channels are transformed into a block
    /// buffer of at most 512 KiB, which the slice's 1×1 convolution (a GEMM) then reads while
    /// it is in cache. The epilogue has no residual.
    pub fn forward_pointwise(
        &self,
        x: View<'_>,
        pad: usize,
        [oh, ow]: [usize; 2],
        ep: &Epilogue<'_>,
        post: &[Pointwise<'_>],
    ) -> Vec<Map> {
        debug_assert_eq!(x.c, self.c);
        debug_assert!(ep.residual.is_none());
        debug_assert_eq!(post.iter().map(|p| p.c).sum::<usize>(), self.o);
        let (m, elems, c) = (self.tile.m(), self.tile.elems(), self.c);
        let mut outs: Vec<Map> = post.iter().map(|p| Map::zeros(p.o, oh, ow)).collect();
        let (th, tw) = (oh.div_ceil(m), ow.div_ceil(m));
        let widest = post.iter().map(|p| p.c).max().unwrap_or(0);
        if th * tw == 0 || widest == 0 {
            return outs;
        }
        // Tile rows per block: the block's V as in `forward`, the widest slice's block buffer
        // within a thread's L2 (at least 512 KiB, a Zen 3 core's), and at least two blocks per
        // thread where the map has the rows. Every block reads all the transformed weights
        // (36 × 1,536 × 64 floats, 14 MB, for DLA-34's heads), so blocks as large as the L2
        // holds read them the fewest times: mdla34's heads at 256 on an Intel Xeon with 2 MiB
        // of L2 18.5–20.4 ms with 512 KiB blocks, 16.5–19.2 with L2-sized ones (four
        // alternated rounds, benches/RESULTS.md).
        let threads = rayon::current_num_threads();
        let rows = (l2_floats() / (widest * m * ow))
            .min(self.block_budget() / tw)
            .min(th.div_ceil(2 * threads))
            .max(1);
        let (tb, blocks) = (rows * tw, th.div_ceil(rows));
        let ob = self.round_channels(tb);
        let geo = Geometry::new(x, pad, [oh, ow], tw);
        let ptrs: Vec<OutPtr> = outs
            .iter_mut()
            .map(|o| OutPtr(o.data.as_mut_ptr()))
            .collect();
        let plane = oh * ow;
        let block = |b: usize, buf: &mut (Buffers, Vec<f32>), par: gemm::Parallelism| {
            let (Buffers { v, m: mm, scratch }, hid) = buf;
            let (ty0, nrows) = (b * rows, rows.min(th - b * rows));
            let (t0, len) = (ty0 * tw, nrows * tw);
            // The block's output rows y0..y0+bh, as a map of their own.
            let (y0, bh) = (ty0 * m, (nrows * m).min(oh - ty0 * m));
            let npx = bh * ow;
            let bgeo = Geometry { oh: bh, ..geo };
            let v = grown(v, elems * estride(c * len));
            self.input(x, &geo, (t0, len), v, scratch);
            for (p, dst) in post.iter().zip(&ptrs) {
                let hid = grown(hid, p.c * npx);
                let hp = OutPtr(hid.as_mut_ptr());
                let hep = Epilogue {
                    bias: &ep.bias[p.start..p.start + p.c],
                    residual: None,
                    relu: ep.relu,
                };
                for (a, on) in rounds(p.start, p.start + p.c, ob, self.u.panel_rows()) {
                    let r0 = a - p.start;
                    let mm = grown(mm, elems * estride(on * len));
                    self.gemms(v, len, (a, on), mm, par);
                    // Safety: `hid` holds the slice's channels of the block's rows, all its own.
                    unsafe { self.output(mm, (r0, on), &bgeo, (0, len), &hep, hp.0, scratch) };
                }
                // The 1×1 convolution of the block's pixels (its own rows of every output
                // channel); `hid` holds its p.c input rows of npx pixels.
                let pep = Epilogue {
                    bias: p.bias,
                    residual: None,
                    relu: false,
                };
                let cols = (y0 * ow, npx);
                // Safety: as said; no other block writes these pixels.
                unsafe { gemm_into(dst.0, plane, cols, p.w, p.o, (hid.as_ptr(), npx), &pep, par) };
            }
        };
        run_blocks(blocks, block);
        outs
    }
}

/// Floats in the L2 cache of one hardware thread as `gemm` detects it (a core's L2 divided
/// among the threads sharing it), at least 512 KiB's worth.
fn l2_floats() -> usize {
    (gemm_common::cache::CACHE_INFO[1].cache_bytes / 4).max(1 << 17)
}

/// Output channels `start..end` in rounds `(first, count)` of at most `ob` (a multiple of
/// `mr`, the GEMM kernel's rows per panel) that start on its panels where they can: only a
/// slice's first and last rounds share a panel with the next slice.
fn rounds(start: usize, end: usize, ob: usize, mr: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut a = start;
    std::iter::from_fn(move || {
        (a < end).then(|| {
            let b = (a / mr * mr + ob).min(end);
            let r = (a, b - a);
            a = b;
            r
        })
    })
}

/// A 1×1 convolution of a slice of a Winograd convolution's output channels, for
/// [`Winograd::forward_pointwise`].
pub struct Pointwise<'a> {
    /// The slice's first channel and its channels (the 1×1 convolution's inputs).
    pub start: usize,
    pub c: usize,
    /// `[o, c]` weights, row-major, and `o` biases.
    pub w: &'a [f32],
    pub bias: &'a [f32],
    pub o: usize,
}

/// Floats from one transformed element's matrix to the next in the V and M buffers (`V[e]`,
/// `M[e]`) for matrices of `n` floats: `n` rounded up to an odd number of 64-byte cache lines.
/// Unpadded, a power-of-two channel count times 16 or 64 tiles puts the 16 or 36 matrices a
/// multiple of 4 KiB apart, so the transforms' reads and writes of one channel's tiles (one
/// row of each matrix) all fall into one set of an 8-way L1 cache; an odd number of lines
/// apart, they fall into different sets.
#[inline(always)]
fn estride(n: usize) -> usize {
    let lines = n.div_ceil(16);
    16 * (lines | 1)
}

/// The first `n` floats of `buf`, grown (zero-filled) if shorter; what it held stays.
#[inline(always)]
fn grown(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
    &mut buf[..n]
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

impl Geometry {
    fn new(x: View<'_>, pad: usize, [oh, ow]: [usize; 2], tw: usize) -> Self {
        Geometry {
            h: x.h,
            w: x.w,
            pad,
            oh,
            ow,
            tw,
        }
    }
}

/// The tile-row segments of tiles `t0..t0+len`, as `(tl0, ty, tx0, n)`: `n` tiles of tile row
/// `ty` from column `tx0`, the first being block tile `tl0`.
#[inline(always)]
fn segments(g: &Geometry, t0: usize, len: usize) -> impl Iterator<Item = [usize; 4]> {
    let tw = g.tw;
    let mut t = t0;
    std::iter::from_fn(move || {
        (t < t0 + len).then(|| {
            let (ty, tx0) = (t / tw, t % tw);
            let n = (tw - tx0).min(t0 + len - t);
            let seg = [t - t0, ty, tx0, n];
            t += n;
            seg
        })
    })
}

/// `V[e][ch][t] = (Bᵀ d B)[e]` for tiles `t0..t0+len`. Along a tile row, the input columns are
/// split into even and odd ones (a tile starts at an even column), so that every step of the
/// transform reads and writes contiguous arrays.
#[inline(always)]
fn input_transform_body<V: Vector>(
    x: View<'_>,
    g: &Geometry,
    t0: usize,
    len: usize,
    v: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let c = x.c;
    let vs = estride(c * len);
    for [tl0, ty, tx0, n] in segments(g, t0, len) {
        let m = n + 1;
        let (d, r) = grown(scratch, 16 * m).split_at_mut(8 * m);
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
                    let k = split_pairs::<V>(row, de, dodd, 0, m);
                    let k = split_pairs::<V::Half>(row, de, dodd, k, m);
                    for k in k..m {
                        de[k] = row[2 * k];
                        dodd[k] = row[2 * k + 1];
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
                let out = |j: usize| (4 * i + j) * vs + ch * len + tl0;
                lin2(&mut v[out(0)..out(0) + n], e0, e1, |a, b| a - b);
                lin2(&mut v[out(1)..out(1) + n], o0, e1, |a, b| a + b);
                lin2(&mut v[out(2)..out(2) + n], e1, o0, |a, b| a - b);
                lin2(&mut v[out(3)..out(3) + n], o0, o1, |a, b| a - b);
            }
        }
    }
}

/// `Aᵀ M A` per tile and output channel, plus bias, residual and ReLU, into the output map.
///
/// # Safety
/// `out` points to an `o × oh × ow` map; no other thread writes these tiles' pixels.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn output_transform_body<V: Vector>(
    m: &[f32],
    o0: usize,
    o: usize,
    g: &Geometry,
    t0: usize,
    len: usize,
    ep: &Epilogue<'_>,
    out: *mut f32,
    scratch: &mut Vec<f32>,
) {
    let plane = g.oh * g.ow;
    let floor = if ep.relu { 0.0 } else { f32::NEG_INFINITY };
    let ms = estride(o * len);
    for [tl0, ty, tx0, n] in segments(g, t0, len) {
        let scratch = grown(scratch, 12 * n);
        for oc in 0..o {
            let bias = ep.bias.get(o0 + oc).copied().unwrap_or(0.0);
            let q: [&[f32]; 16] = std::array::from_fn(|e| &m[e * ms + oc * len + tl0..][..n]);
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
                // This segment's columns of row `yy`.
                let (lo, hi) = (2 * tx0, (2 * (tx0 + n)).min(g.ow));
                let base = (o0 + oc) * plane + yy * g.ow + lo;
                // Safety: see the function's contract.
                let cols = unsafe { std::slice::from_raw_parts_mut(out.add(base), hi - lo) };
                let res = ep.residual.map(|r| &r.data[base..base + hi - lo]);
                let full = (hi - lo) / 2;
                let out = (&mut *cols, res, bias, floor);
                let t = join_pairs::<V>([left, right], out, 0, full);
                let out = (&mut *cols, res, bias, floor);
                let t = join_pairs::<V::Half>([left, right], out, t, full);
                let rest = &mut cols[2 * t..];
                for (k, d) in rest.iter_mut().enumerate() {
                    *d = [left, right][k % 2][t + k / 2];
                }
                finish::<V>(rest, bias, res.map(|r| &r[2 * t..]), floor);
            }
        }
    }
}

/// F(4×4): `V[e][ch][t] = (Bᵀ d B)[e]` for tiles `t0..t0+len`. Per input row, the row is
/// split into its four phases (`p_r[t] = row[4t + r]`, so that tile `t`'s six columns are
/// `p_0[t] … p_3[t], p_0[t+1], p_1[t+1]`) and the horizontal transform (`d B`) runs over those
/// contiguous arrays; the vertical one (`Bᵀ ·`) then over the rows' results. Both run on
/// [`Vector`] lanes of eight or sixteen tiles.
#[inline(always)]
fn input_transform4_body<V: Vector>(
    x: View<'_>,
    g: &Geometry,
    t0: usize,
    len: usize,
    v: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let c = x.c;
    let vs = estride(c * len);
    for [tl0, ty, tx0, n] in segments(g, t0, len) {
        let np = n + 1;
        let scratch = grown(scratch, 36 * n + 8 * np);
        // h[i][j'][t]: row i of tile t after the horizontal transform; p[r][t]: a row's phases;
        // win: the row's columns x0..x0+4np, zero outside the map, where they leave it.
        let (h, rest) = scratch.split_at_mut(36 * n);
        let (p, win) = rest.split_at_mut(4 * np);
        // Input column of tile t, tap j: x0 + 4t + j.
        let x0 = 4 * tx0 as isize - g.pad as isize;
        let inside = x0 >= 0 && x0 + 4 * np as isize <= g.w as isize;
        // The columns of the row that are inside the map: win[wlo..whi] = row[wlo+x0..whi+x0].
        let wlo = (-x0).max(0) as usize;
        let whi = ((g.w as isize - x0).max(0) as usize).min(4 * np);
        if !inside {
            win.fill(0.0);
        }
        for ch in 0..c {
            let src = &x.data[ch * g.h * g.w..(ch + 1) * g.h * g.w];
            for i in 0..6 {
                let hrow = &mut h[6 * i * n..6 * (i + 1) * n];
                let y = (4 * ty + i) as isize - g.pad as isize;
                if y < 0 || y >= g.h as isize {
                    hrow.fill(0.0);
                    continue;
                }
                let row = &src[y as usize * g.w..(y as usize + 1) * g.w];
                let row: &[f32] = if inside {
                    &row[x0 as usize..x0 as usize + 4 * np]
                } else {
                    if wlo < whi {
                        let at = |k: usize| (k as isize + x0) as usize;
                        win[wlo..whi].copy_from_slice(&row[at(wlo)..at(whi)]);
                    }
                    win
                };
                let (p0, rest) = p.split_at_mut(np);
                let (p1, rest) = rest.split_at_mut(np);
                let (p2, p3) = rest.split_at_mut(np);
                let t = split_phases::<V>(row, [p0, p1, p2, p3], 0, np);
                let t = split_phases::<V::Half>(row, [p0, p1, p2, p3], t, np);
                for t in t..np {
                    p0[t] = row[4 * t];
                    p1[t] = row[4 * t + 1];
                    p2[t] = row[4 * t + 2];
                    p3[t] = row[4 * t + 3];
                }
                let (p0, p1, p2, p3) = (&*p0, &*p1, &*p2, &*p3);
                bt6_rows::<V>([p0, p1, p2, p3, &p0[1..], &p1[1..]], hrow, n, n);
            }
            // Vertical, column j' of every tile at once, straight into V (rows i' of
            // `e = 6 i' + j'` are 6 C × len floats apart).
            for jp in 0..6 {
                let z = std::array::from_fn(|i| &h[(6 * i + jp) * n..][..n]);
                let at = jp * vs + ch * len + tl0;
                bt6_rows::<V>(z, &mut v[at..], 6 * vs, n);
            }
        }
    }
}

/// `Bᵀ z` of F(4×4) for one six-vector (of floats or of lanes).
#[inline(always)]
fn bt6<T: Lanes>(z: [T; 6]) -> [T; 6] {
    [
        z[0] * 4.0 - z[2] * 5.0 + z[4],
        (z[1] + z[2]) * -4.0 + z[3] + z[4],
        (z[1] - z[2]) * 4.0 - z[3] + z[4],
        (z[3] - z[1]) * 2.0 - z[2] + z[4],
        (z[1] - z[3]) * 2.0 - z[2] + z[4],
        z[1] * 4.0 - z[3] * 5.0 + z[5],
    ]
}

/// `Aᵀ z` of F(4×4) for one six-vector (of floats or of lanes).
#[inline(always)]
fn at6<T: Lanes>(z: [T; 6]) -> [T; 4] {
    let (a, b) = (z[1] + z[2], z[1] - z[2]);
    let (c, d) = (z[3] + z[4], z[3] - z[4]);
    [z[0] + a + c, b + d * 2.0, a + c * 4.0, b + d * 8.0 + z[5]]
}

/// `out[k * stride + t] = (Bᵀ [z_0[t], …, z_5[t]])[k]` for `t < n`, on [`Vector`] lanes.
#[inline(always)]
fn bt6_rows<V: Vector>(z: [&[f32]; 6], out: &mut [f32], stride: usize, n: usize) {
    let t = bt6_lanes::<V>(z, out, stride, 0, n);
    let t = bt6_lanes::<V::Half>(z, out, stride, t, n);
    for t in t..n {
        let b = bt6(std::array::from_fn(|i| z[i][t]));
        for (k, b) in b.into_iter().enumerate() {
            out[k * stride + t] = b;
        }
    }
}

/// `out[k][t] = (Aᵀ [z_0[t], …, z_5[t]])[k]` for `t < n`, `out[k]` being `out[k * n..]`.
#[inline(always)]
fn at6_rows<V: Vector>(z: [&[f32]; 6], out: &mut [f32], n: usize) {
    let t = at6_lanes::<V>(z, out, 0, n);
    let t = at6_lanes::<V::Half>(z, out, t, n);
    for t in t..n {
        let y = at6(std::array::from_fn(|i| z[i][t]));
        for (k, y) in y.into_iter().enumerate() {
            out[k * n + t] = y;
        }
    }
}

/// `d[i] = max(d[i] + bias + r[i], floor)`: the epilogue on one stretch of an output row
/// (`floor` 0 for ReLU, −∞ for none).
#[inline(always)]
fn finish<V: Vector>(d: &mut [f32], bias: f32, res: Option<&[f32]>, floor: f32) {
    let n = d.len();
    let i = finish_lanes::<V>(d, bias, res, floor, 0);
    let i = finish_lanes::<V::Half>(d, bias, res, floor, i);
    for i in i..n {
        let mut y = d[i] + bias;
        if let Some(r) = res {
            y += r[i];
        }
        d[i] = if y < floor { floor } else { y };
    }
}

/// F(4×4): `Aᵀ M A` per tile and output channel (`o0..o0+o`, `M` holding only those), plus
/// bias, residual and ReLU, into the output map. The transforms run over the block's tiles on
/// [`Vector`] lanes; each output row then takes its tiles' four columns interleaved.
///
/// # Safety
/// `out` points to a map of `o0 + o` channels or more, `oh × ow`; no other thread writes these
/// tiles' pixels.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn output_transform4_body<V: Vector>(
    m: &[f32],
    o0: usize,
    o: usize,
    g: &Geometry,
    t0: usize,
    len: usize,
    ep: &Epilogue<'_>,
    out: *mut f32,
    scratch: &mut Vec<f32>,
) {
    let plane = g.oh * g.ow;
    let floor = if ep.relu { 0.0 } else { f32::NEG_INFINITY };
    let ms = estride(o * len);
    let scratch = grown(scratch, 28 * len);
    // s[j][k][t]: after the vertical transform; y[l][t]: output row k of every tile.
    let (s, y) = scratch.split_at_mut(24 * len);
    for oc in 0..o {
        let ch = o0 + oc;
        let bias = ep.bias.get(ch).copied().unwrap_or(0.0);
        let q = |e: usize| &m[e * ms + oc * len..][..len];
        for j in 0..6 {
            let z = std::array::from_fn(|i| q(6 * i + j));
            at6_rows::<V>(z, &mut s[4 * j * len..4 * (j + 1) * len], len);
        }
        for k in 0..4 {
            let z = std::array::from_fn(|j| &s[(4 * j + k) * len..][..len]);
            at6_rows::<V>(z, y, len);
            let yl = |l: usize| &y[l * len..(l + 1) * len];
            let (y0, y1, y2, y3) = (yl(0), yl(1), yl(2), yl(3));
            for [tl0, ty, tx0, n] in segments(g, t0, len) {
                let yy = 4 * ty + k;
                if yy >= g.oh {
                    continue;
                }
                // This segment's columns of row `yy` of channel `ch`.
                let (lo, hi) = (4 * tx0, (4 * (tx0 + n)).min(g.ow));
                let base = ch * plane + yy * g.ow + lo;
                // Safety: see the function's contract.
                let cols = unsafe { std::slice::from_raw_parts_mut(out.add(base), hi - lo) };
                let res = ep.residual.map(|r| &r.data[base..base + hi - lo]);
                // Tiles whose four columns are all inside the output: interleaved in registers,
                // the epilogue applied, each output written once.
                let full = (hi - lo) / 4;
                let ys = [y0, y1, y2, y3].map(|y| &y[tl0..]);
                let t = join_phases::<V>(ys, (&mut *cols, res, bias, floor), 0, full);
                let t = join_phases::<V::Half>(ys, (&mut *cols, res, bias, floor), t, full);
                let rest = &mut cols[4 * t..];
                for (k, d) in rest.iter_mut().enumerate() {
                    *d = [y0, y1, y2, y3][k % 4][tl0 + t + k / 4];
                }
                finish::<V>(rest, bias, res.map(|r| &r[4 * t..]), floor);
            }
        }
    }
}

/// An output row's stretch and its epilogue: the row, the residual's same stretch, the bias
/// and the floor (0 for ReLU, −∞ for none).
type Out<'a> = (&'a mut [f32], Option<&'a [f32]>, f32, f32);

/// From tile `t` on, in steps of `W::LANES` tiles while whole steps fit below `full`: the
/// tiles' two output columns (`y[0][t]`, `y[1][t]`) interleaved into the row, plus the
/// epilogue. Returns the first tile not done.
#[inline(always)]
fn join_pairs<W: Vector>(
    y: [&[f32]; 2],
    (cols, res, bias, floor): Out<'_>,
    mut t: usize,
    full: usize,
) -> usize {
    while t + W::LANES <= full {
        let pair = W::interleave2([W::load(&y[0][t..]), W::load(&y[1][t..])]);
        for (q, z) in pair.into_iter().enumerate() {
            let at = 2 * t + W::LANES * q;
            let mut v = z + W::splat(bias);
            if let Some(r) = res {
                v = v + W::load(&r[at..]);
            }
            v.max(floor).store(&mut cols[at..]);
        }
        t += W::LANES;
    }
    t
}

/// [`join_pairs`] of F(4×4): four output columns `y[0..4][t]` per tile. (The two written
/// once, behind a const-generic helper, ran 7–10 % slower on an AVX2 EPYC.)
#[inline(always)]
fn join_phases<W: Vector>(
    y: [&[f32]; 4],
    (cols, res, bias, floor): Out<'_>,
    mut t: usize,
    full: usize,
) -> usize {
    while t + W::LANES <= full {
        let ld = |yl: &[f32]| W::load(&yl[t..]);
        let z = W::interleave4([ld(y[0]), ld(y[1]), ld(y[2]), ld(y[3])]);
        for (q, z) in z.into_iter().enumerate() {
            let at = 4 * t + W::LANES * q;
            let mut v = z + W::splat(bias);
            if let Some(r) = res {
                v = v + W::load(&r[at..]);
            }
            v.max(floor).store(&mut cols[at..]);
        }
        t += W::LANES;
    }
    t
}

/// `p[r][t] = row[4t + r]` from `t` on, in steps of `W::LANES` while whole steps fit below
/// `n`. Returns the first `t` not done.
#[inline(always)]
fn split_phases<W: Vector>(row: &[f32], p: [&mut [f32]; 4], mut t: usize, n: usize) -> usize {
    let [p0, p1, p2, p3] = p;
    while t + W::LANES <= n {
        let [z0, z1, z2, z3] = W::deinterleave4(&row[4 * t..]);
        z0.store(&mut p0[t..]);
        z1.store(&mut p1[t..]);
        z2.store(&mut p2[t..]);
        z3.store(&mut p3[t..]);
        t += W::LANES;
    }
    t
}

/// [`bt6_rows`] from `t` on, in steps of `W::LANES` while whole steps fit below `n`. Returns
/// the first `t` not done.
#[inline(always)]
fn bt6_lanes<W: Vector>(
    z: [&[f32]; 6],
    out: &mut [f32],
    stride: usize,
    mut t: usize,
    n: usize,
) -> usize {
    while t + W::LANES <= n {
        let ld = |i: usize| W::load(&z[i][t..]);
        let [b0, b1, b2, b3, b4, b5] = bt6([ld(0), ld(1), ld(2), ld(3), ld(4), ld(5)]);
        b0.store(&mut out[t..]);
        b1.store(&mut out[stride + t..]);
        b2.store(&mut out[2 * stride + t..]);
        b3.store(&mut out[3 * stride + t..]);
        b4.store(&mut out[4 * stride + t..]);
        b5.store(&mut out[5 * stride + t..]);
        t += W::LANES;
    }
    t
}

/// [`at6_rows`] from `t` on, in steps of `W::LANES` while whole steps fit below `n`. Returns
/// the first `t` not done.
#[inline(always)]
fn at6_lanes<W: Vector>(z: [&[f32]; 6], out: &mut [f32], mut t: usize, n: usize) -> usize {
    while t + W::LANES <= n {
        let ld = |i: usize| W::load(&z[i][t..]);
        let [y0, y1, y2, y3] = at6([ld(0), ld(1), ld(2), ld(3), ld(4), ld(5)]);
        y0.store(&mut out[t..]);
        y1.store(&mut out[n + t..]);
        y2.store(&mut out[2 * n + t..]);
        y3.store(&mut out[3 * n + t..]);
        t += W::LANES;
    }
    t
}

/// [`finish`] from `i` on, in steps of `W::LANES` while whole steps fit in `d`. Returns the
/// first `i` not done.
#[inline(always)]
fn finish_lanes<W: Vector>(
    d: &mut [f32],
    bias: f32,
    res: Option<&[f32]>,
    floor: f32,
    mut i: usize,
) -> usize {
    while i + W::LANES <= d.len() {
        let mut y = W::load(&d[i..]) + W::splat(bias);
        if let Some(r) = res {
            y = y + W::load(&r[i..]);
        }
        y.max(floor).store(&mut d[i..]);
        i += W::LANES;
    }
    i
}

multiversion!(fn input_transform(x: View<'_>, g: &Geometry, t0: usize, len: usize, v: &mut [f32], scratch: &mut Vec<f32>) => input_transform_body on sixteen lanes);
multiversion!(fn input_transform4(x: View<'_>, g: &Geometry, t0: usize, len: usize, v: &mut [f32], scratch: &mut Vec<f32>) => input_transform4_body on sixteen lanes);
multiversion!(
    /// # Safety
    /// As [`output_transform_body`].
    unsafe fn output_transform(m: &[f32], o0: usize, o: usize, g: &Geometry, t0: usize, len: usize, ep: &Epilogue<'_>, out: *mut f32, scratch: &mut Vec<f32>) => output_transform_body on sixteen lanes
);
multiversion!(
    /// # Safety
    /// As [`output_transform4_body`].
    unsafe fn output_transform4(m: &[f32], o0: usize, o: usize, g: &Geometry, t0: usize, len: usize, ep: &Epilogue<'_>, out: *mut f32, scratch: &mut Vec<f32>) => output_transform4_body on sixteen lanes
);

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
    use crate::model::fast::conv::serial;
    use crate::model::fast::conv::{Taps, conv_gemm, out_size};
    use crate::model::fast::map::ramp;
    use crate::model::fast::panel::tests::with_sixteen_row_panels;
    use crate::model::fast::simd::tests::with_sixteen_lanes;

    /// Both tiles, each with the GEMM panels of this CPU's kernel and with the AVX-512
    /// kernel's sixteen-row ones (whose rounds of output channels align differently).
    fn forms() -> [(Tile, bool); 4] {
        [
            (Tile::F2, false),
            (Tile::F4, false),
            (Tile::F2, true),
            (Tile::F4, true),
        ]
    }

    fn build<T>(wide: bool, f: impl FnOnce() -> T) -> T {
        if wide {
            with_sixteen_row_panels(f)
        } else {
            f()
        }
    }

    /// `f` with the transforms on sixteen portable lanes ([`with_sixteen_lanes`]), all of it
    /// on this thread (the setting is the thread's).
    fn sixteen<T>(f: impl FnOnce() -> T) -> T {
        with_sixteen_lanes(|| serial(f))
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits())
    }

    #[test]
    fn winograd_equals_the_im2col_convolution() {
        // Odd and even sizes (partial tiles), padding 0 and 1, maps narrower than a tile,
        // blocks spanning tile rows, rows of eight, sixteen and 16 + 8 tiles and more (the
        // vector paths, also on sixteen lanes, bit for bit with this CPU's), output
        // channels in several rounds, and the parallel path.
        for (c, h, w, o, p, relu) in [
            (3, 9, 7, 5, 1, true),
            (4, 10, 10, 6, 0, false),
            (2, 1, 1, 3, 1, true),
            (2, 3, 2, 3, 1, false),
            (5, 6, 5, 4, 0, true),
            (8, 33, 20, 16, 1, true),
            (16, 64, 64, 24, 1, false),
            (3, 70, 90, 8, 1, true),
            (4, 13, 11, 5, 1, true), // partial F(4×4) tiles at both edges
            (4, 7, 9, 3, 0, false),
            (6, 4, 4, 2, 1, true),
            (8, 20, 20, 300, 1, true), // few tiles: the threads share the output channels
            (4, 9, 30, 530, 1, false),
            (4, 32, 32, 500, 1, true), // output channels in two GEMM rounds (both forms)
            // Padding 0: F(2×2) rows read whole from the map, 16 + 8 and 2 × 16 tiles a row.
            (3, 8, 54, 6, 0, false),
            (2, 6, 70, 4, 0, true),
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
                let scale = want.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                for (tile, wide) in forms() {
                    let conv = build(wide, || Winograd::new(&wt, o, c, tile));
                    let got = conv.forward(x.view(), p, [oh, ow], &ep);
                    assert_eq!((got.c, got.h, got.w), (o, oh, ow));
                    let got16 = sixteen(|| conv.forward(x.view(), p, [oh, ow], &ep));
                    assert!(
                        same_bits(&got16.data, &got.data),
                        "{tile:?} (16-row panels: {wide}) c{c} {h}×{w} o{o} p{p}: transforms on 16 lanes"
                    );
                    for (i, (a, b)) in got.data.iter().zip(&want.data).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * scale,
                            "{tile:?} (16-row panels: {wide}) c{c} {h}×{w} o{o} p{p} at {i}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn fused_pointwise_equals_the_convolution_then_each_slice() {
        // Slices of unequal widths (one wider than a GEMM round), odd sizes (partial tiles at
        // the edges and a short last block), one block or several, ReLU or none.
        for (c, h, w, slices, p, relu) in [
            (4, 13, 11, &[(3, 2), (5, 1), (2, 4)][..], 1, true),
            (8, 64, 64, &[(16, 3), (8, 13)][..], 1, true),
            (3, 70, 90, &[(4, 2), (4, 2)][..], 1, false),
            (5, 9, 9, &[(300, 5)][..], 0, true),
            (6, 40, 24, &[(20, 2), (12, 17), (4, 1)][..], 1, true),
        ] {
            let o: usize = slices.iter().map(|s| s.0).sum();
            let x = Map {
                c,
                h,
                w,
                data: ramp(c * h * w, 0.1),
            };
            let wt = ramp(o * c * 9, 0.7);
            let bias = ramp(o, 0.3);
            let ep = Epilogue {
                bias: &bias,
                residual: None,
                relu,
            };
            let (oh, ow) = (out_size(h, 3, 1, p, 1), out_size(w, 3, 1, p, 1));
            let hidden = conv_gemm(
                x.view(),
                &Taps::conv([3, 3], 1, p, 1),
                [oh, ow],
                &wt,
                o,
                &ep,
            );
            let pw: Vec<(Vec<f32>, Vec<f32>)> = slices
                .iter()
                .enumerate()
                .map(|(i, &(sc, so))| (ramp(so * sc, 0.2 + i as f32), ramp(so, 0.5 + i as f32)))
                .collect();
            let mut start = 0;
            let post: Vec<Pointwise> = slices
                .iter()
                .zip(&pw)
                .map(|(&(sc, so), (pwt, pb))| {
                    let q = Pointwise {
                        start,
                        c: sc,
                        w: pwt,
                        bias: pb,
                        o: so,
                    };
                    start += sc;
                    q
                })
                .collect();
            for (tile, wide) in forms() {
                let conv = build(wide, || Winograd::new(&wt, o, c, tile));
                let got = conv.forward_pointwise(x.view(), p, [oh, ow], &ep, &post);
                assert_eq!(got.len(), post.len());
                let got16 = sixteen(|| conv.forward_pointwise(x.view(), p, [oh, ow], &ep, &post));
                for (k, (a, b)) in got16.iter().zip(&got).enumerate() {
                    assert!(
                        same_bits(&a.data, &b.data),
                        "{tile:?} (16-row panels: {wide}) c{c} {h}×{w} slice {k}: transforms on 16 lanes"
                    );
                }
                for (k, (q, got)) in post.iter().zip(&got).enumerate() {
                    assert_eq!((got.c, got.h, got.w), (q.o, oh, ow));
                    let plane = oh * ow;
                    let want: Vec<f32> = (0..q.o * plane)
                        .map(|i| {
                            let (r, px) = (i / plane, i % plane);
                            let hid = |ch: usize| hidden.data[(q.start + ch) * plane + px];
                            q.bias[r] + (0..q.c).map(|ch| q.w[r * q.c + ch] * hid(ch)).sum::<f32>()
                        })
                        .collect();
                    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                    for (i, (a, b)) in got.data.iter().zip(&want).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * scale,
                            "{tile:?} (16-row panels: {wide}) c{c} {h}×{w} slice {k} at {i}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}
