//! Convolution as column-tile im2col + GEMM (the `gemm` crate), channels-first so that the GEMM
//! result *is* the output map: `out[o, n] = Σ_k W[o, k] · col[k, n]` over output pixels `n`.
//!
//! - BatchNorm is folded into the weights and bias when the network is compiled.
//! - The epilogue is fused: each output tile is pre-filled with the bias (plus the residual
//!   when the block has one) and the GEMM accumulates onto it; ReLU runs on the tile while it
//!   is still in cache.
//! - A 1×1, stride-1 convolution reads the input directly (no column buffer).
//! - Tiles run in parallel on rayon's pool (one column buffer per task); a map too small to
//!   split lets the GEMM itself use the threads.

use rayon::prelude::*;

use super::map::{Map, View, relu_in_place};
use super::simd::{Vector, multiversion, split_pairs};

/// Column offsets of one convolution: input row of output row `oy` and tap `t` is
/// `oy * stride + ys[t]` (columns likewise). An ordinary convolution has
/// `ys[t] = t * dilation - padding`; the phases of a transposed convolution use other offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct Taps {
    pub ys: Vec<isize>,
    pub xs: Vec<isize>,
    pub stride: usize,
}

impl Taps {
    pub fn conv(k: [usize; 2], stride: usize, pad: usize, dilation: usize) -> Self {
        let offs = |k: usize| {
            (0..k)
                .map(|t| (t * dilation) as isize - pad as isize)
                .collect()
        };
        Taps {
            ys: offs(k[0]),
            xs: offs(k[1]),
            stride,
        }
    }

    fn is_pointwise(&self) -> bool {
        self.ys == [0] && self.xs == [0] && self.stride == 1
    }

    fn len(&self) -> usize {
        self.ys.len() * self.xs.len()
    }
}

/// What is added before the GEMM result: the bias (per output channel) and optionally a
/// residual map of the output's shape.
pub struct Epilogue<'a> {
    pub bias: &'a [f32],
    pub residual: Option<&'a Map>,
    pub relu: bool,
}

/// Raw output pointer that rayon tasks writing disjoint parts of one map may share.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// Output pixels per tile: the column buffer (`K × tile` floats) stays around 512 KiB, within
/// a core's L2 on the CPUs measured (512 KiB on Zen 3, 1 MiB on Zen 4). Against 1 MiB on an
/// AVX2 EPYC (Zen 3), alternated: mdla34@256's 7×7 stem 5.2 → 3.8 ms, its stride-2 3×3
/// convolutions about the same or faster (benches/RESULTS.md).
fn tile_width(k: usize, n: usize) -> usize {
    ((1usize << 17) / k.max(1)).clamp(64, 4096).min(n)
}

/// Where a tile's columns come from.
pub trait Columns: Sync {
    /// Rows of the column matrix (the GEMM's inner dimension).
    fn rows(&self) -> usize;
    /// The input itself when it already is the column matrix (1×1, stride 1): pointer to
    /// column `n0` and the row stride.
    fn direct(&self, _n0: usize) -> Option<(*const f32, usize)> {
        None
    }
    /// Fills `col` (`rows × len`, row-major) for output pixels `n0..n0+len`.
    fn fill(&self, n0: usize, len: usize, col: &mut [f32]);
}

/// im2col columns of an ordinary (or phase) convolution.
pub struct Im2col<'a> {
    pub x: View<'a>,
    pub taps: &'a Taps,
    pub ow: usize,
}

impl Columns for Im2col<'_> {
    fn rows(&self) -> usize {
        self.x.c * self.taps.len()
    }

    fn direct(&self, n0: usize) -> Option<(*const f32, usize)> {
        self.taps
            .is_pointwise()
            .then(|| (self.x.data[n0..].as_ptr(), self.x.hw()))
    }

    fn fill(&self, n0: usize, len: usize, col: &mut [f32]) {
        im2col(self.x, self.taps, self.ow, n0, len, col)
    }
}

/// `out[o, :] = epilogue + W · im2col(x)`: `w` is `[o, x.c · taps]` row-major, the output is
/// `o × oh × ow`.
pub fn conv_gemm(
    x: View<'_>,
    taps: &Taps,
    [oh, ow]: [usize; 2],
    w: &[f32],
    o: usize,
    ep: &Epilogue<'_>,
) -> Map {
    gemm_tiles(&Im2col { x, taps, ow }, [oh, ow], w, o, ep)
}

/// `out[o, :] = epilogue + W · cols`, tile by tile.
pub fn gemm_tiles(
    cols: &impl Columns,
    [oh, ow]: [usize; 2],
    w: &[f32],
    o: usize,
    ep: &Epilogue<'_>,
) -> Map {
    let k = cols.rows();
    debug_assert_eq!(w.len(), o * k);
    let n = oh * ow;
    let mut out = Map::zeros(o, oh, ow);
    if n == 0 || o == 0 {
        return out;
    }
    let tile = tile_width(k, n);
    let tiles = n.div_ceil(tile);
    let ptr = OutPtr(out.data.as_mut_ptr());
    let run = |t: usize, col: &mut Vec<f32>, par: gemm::Parallelism| {
        let n0 = t * tile;
        let len = tile.min(n - n0);
        let (rhs, rhs_rs) = match cols.direct(n0) {
            Some((ptr, rs)) => (ptr, rs),
            None => {
                col.resize(k * len, 0.0);
                cols.fill(n0, len, col);
                (col.as_ptr(), len)
            }
        };
        let p = ptr;
        // Safety: each tile writes only columns n0..n0+len of every output row; `rhs` holds
        // k rows of len columns.
        unsafe { gemm_into(p.0, n, (n0, len), w, o, (rhs, rhs_rs), ep, par) };
    };
    run_blocks(tiles, run);
    out
}

/// `out[r, n0..n0+len] = epilogue + Σ_j W[r, j] · rhs[j, ..len]` for every output row `r` of a
/// map of `n` pixels per channel: the GEMM written, then bias (+ residual) and ReLU in one pass
/// while the columns are in cache. (Writing bias + residual first and accumulating the GEMM
/// onto it took one more pass over the columns: on res50's 1×1 and the stems' shapes,
/// interleaved stand-alone calls on an AVX2 EPYC, 0–10 % longer, mostly about 3 %.) `w` is
/// `[o, k]` row-major; `rhs` holds `k` rows of `len` floats, `rhs_rs` apart.
///
/// # Safety
/// `out` points to an `o × n` map, `rhs` to its rows as said; no other thread writes these
/// columns.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_into(
    out: *mut f32,
    n: usize,
    (n0, len): (usize, usize),
    w: &[f32],
    o: usize,
    (rhs, rhs_rs): (*const f32, usize),
    ep: &Epilogue<'_>,
    par: gemm::Parallelism,
) {
    let k = w.len() / o.max(1);
    // Safety: the caller's contract.
    unsafe {
        gemm::gemm(
            o,
            len,
            k,
            out.add(n0),
            1,
            n as isize,
            false,
            w.as_ptr(),
            1,
            k as isize,
            rhs,
            1,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
    if ep.bias.is_empty() && ep.residual.is_none() && !ep.relu {
        return;
    }
    for r in 0..o {
        // Safety: as above, these columns only.
        let row = unsafe { std::slice::from_raw_parts_mut(out.add(r * n + n0), len) };
        epilogue_row(row, ep, r, r * n + n0);
    }
}

/// The epilogue on a stretch of output channel `r` that starts at element `at` of the map:
/// `row[i] += bias[r] + residual[at + i]` (bias 0 where `ep.bias` is empty), then ReLU.
pub(crate) fn epilogue_row(row: &mut [f32], ep: &Epilogue<'_>, r: usize, at: usize) {
    let b = ep.bias.get(r).copied().unwrap_or(0.0);
    match ep.residual {
        Some(res) => {
            let res = &res.data[at..at + row.len()];
            for (d, s) in row.iter_mut().zip(res) {
                *d += b + s;
            }
        }
        None => row.iter_mut().for_each(|d| *d += b),
    }
    if ep.relu {
        relu_in_place(row);
    }
}

thread_local! {
    /// Set while this thread runs one of several convolutions computed side by side.
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread runs one of several convolutions side by side (see [`serial`]).
pub(crate) fn is_serial() -> bool {
    SERIAL.with(|s| s.get())
}

/// Runs `f` with every GEMM it starts on this thread alone: for independent convolutions run
/// in parallel with each other, each too small to split well by itself.
pub(crate) fn serial<T>(f: impl FnOnce() -> T) -> T {
    let before = SERIAL.with(|s| s.replace(true));
    let out = f();
    SERIAL.with(|s| s.set(before));
    out
}

/// Runs `run(block, scratch, parallelism)` for blocks `0..blocks` of one output map: in
/// parallel on rayon's pool with one scratch per task and single-threaded GEMMs when there are
/// enough blocks to keep every thread busy (two per thread), else one after the other with the
/// GEMMs themselves using the threads (or alone, inside [`serial`]). The scratch comes from
/// the thread's [`Pooled`] values.
pub(crate) fn run_blocks<S: Default + 'static>(
    blocks: usize,
    run: impl Fn(usize, &mut S, gemm::Parallelism) + Sync,
) {
    let threads = rayon::current_num_threads();
    if SERIAL.with(|s| s.get()) {
        let mut s = Pooled::<S>::take();
        for b in 0..blocks {
            run(b, &mut s, gemm::Parallelism::None);
        }
    } else if blocks >= 2 * threads {
        (0..blocks)
            .into_par_iter()
            .for_each_init(Pooled::<S>::take, |s, b| run(b, s, gemm::Parallelism::None));
    } else {
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        let mut s = Pooled::<S>::take();
        for b in 0..blocks {
            run(b, &mut s, par);
        }
    }
}

thread_local! {
    /// Scratch values given back on this thread, for the next convolution to take.
    static POOL: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

/// A convolution's scratch value (column and transform buffers), taken from the values given
/// back on this thread or made anew, and given back when dropped: each task of a parallel
/// loop would otherwise allocate and zero-fill its buffers again (mdla34 at 256 on an AVX2
/// EPYC: `memset` 4.1 → 2.1 % of a profile run's samples, benches/RESULTS.md). A thread
/// keeps at most as many values of a type as it used at once.
pub(crate) struct Pooled<S: Default + 'static>(Option<S>);

impl<S: Default + 'static> Pooled<S> {
    pub(crate) fn take() -> Self {
        let kept = POOL
            .try_with(|pool| {
                let mut pool = pool.borrow_mut();
                let i = pool.iter().position(|v| v.is::<S>())?;
                pool.swap_remove(i).downcast::<S>().ok()
            })
            .ok()
            .flatten();
        Pooled(Some(kept.map_or_else(S::default, |s| *s)))
    }
}

impl<S: Default + 'static> std::ops::Deref for Pooled<S> {
    type Target = S;
    fn deref(&self) -> &S {
        self.0.as_ref().expect("taken until dropped")
    }
}

impl<S: Default + 'static> std::ops::DerefMut for Pooled<S> {
    fn deref_mut(&mut self) -> &mut S {
        self.0.as_mut().expect("taken until dropped")
    }
}

impl<S: Default + 'static> Drop for Pooled<S> {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            // At thread exit the pool may be gone: the value is then dropped.
            let _ = POOL.try_with(|pool| pool.borrow_mut().push(Box::new(s)));
        }
    }
}

multiversion!(
    /// Column buffer `[x.c · taps, len]` for output pixels `n0..n0+len` (zero outside the
    /// input).
    fn im2col(x: View<'_>, taps: &Taps, ow: usize, n0: usize, len: usize, col: &mut [f32]) => im2col_body on sixteen lanes
);

#[inline(always)]
fn im2col_body<V: Vector>(
    x: View<'_>,
    taps: &Taps,
    ow: usize,
    n0: usize,
    len: usize,
    col: &mut [f32],
) {
    if taps.stride == 2 {
        im2col_s2::<V>(x, taps, ow, n0, len, col)
    } else {
        im2col_any(x, taps, ow, n0, len, col)
    }
}

/// [`im2col`] of any stride: one gather per tap and output row.
#[inline(always)]
fn im2col_any(x: View<'_>, taps: &Taps, ow: usize, n0: usize, len: usize, col: &mut [f32]) {
    let (h, w) = (x.h as isize, x.w as isize);
    let s = taps.stride as isize;
    let mut row = 0;
    for c in 0..x.c {
        let plane = x.plane(c);
        for &dy in &taps.ys {
            for &dx in &taps.xs {
                let dst = &mut col[row * len..(row + 1) * len];
                row += 1;
                let mut i = 0;
                while i < len {
                    let n = n0 + i;
                    let (oy, ox0) = (n / ow, n % ow);
                    let run = (ow - ox0).min(len - i);
                    let seg = &mut dst[i..i + run];
                    i += run;
                    let iy = oy as isize * s + dy;
                    if iy < 0 || iy >= h {
                        seg.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * x.w..(iy as usize + 1) * x.w];
                    // Valid ox: 0 <= ox * s + dx < w, clipped to this segment.
                    let lo = if dx < 0 { (-dx + s - 1) / s } else { 0 };
                    let hi = if w - dx <= 0 { 0 } else { (w - dx + s - 1) / s };
                    let a = (lo - ox0 as isize).clamp(0, run as isize) as usize;
                    let b = (hi - ox0 as isize).clamp(a as isize, run as isize) as usize;
                    seg[..a].fill(0.0);
                    seg[b..].fill(0.0);
                    if a == b {
                        continue;
                    }
                    let first = ((ox0 + a) as isize * s + dx) as usize;
                    if s == 1 {
                        seg[a..b].copy_from_slice(&src[first..first + (b - a)]);
                    } else {
                        let step = s as usize;
                        for (j, d) in seg[a..b].iter_mut().enumerate() {
                            *d = src[first + j * step];
                        }
                    }
                }
            }
        }
    }
}

/// [`im2col`] of a stride-2 convolution. Per input row and output-row segment the row is split
/// once into its even and odd columns (`e[k] = row[b + 2k]`, `o[k] = row[b + 2k + 1]`, zero
/// outside the map, `b` the first column the taps read); tap `dx` of output column `j` then reads
/// `e` or `o` at `j + (dx − dx_min) / 2`: a contiguous copy per tap instead of a gather.
#[inline(always)]
fn im2col_s2<V: Vector>(
    x: View<'_>,
    taps: &Taps,
    ow: usize,
    n0: usize,
    len: usize,
    col: &mut [f32],
) {
    let (h, w) = (x.h as isize, x.w as isize);
    let kx = taps.xs.len();
    let dx0 = taps.xs.iter().copied().min().unwrap_or(0);
    let dx1 = taps.xs.iter().copied().max().unwrap_or(0);
    let span = ((dx1 - dx0) / 2) as usize + 1;
    let mut ph = vec![0.0f32; 2 * (ow.min(len) + span)];
    for c in 0..x.c {
        let plane = x.plane(c);
        for (yi, &dy) in taps.ys.iter().enumerate() {
            let r0 = (c * taps.ys.len() + yi) * kx;
            let mut i = 0;
            while i < len {
                let n = n0 + i;
                let (oy, ox0) = (n / ow, n % ow);
                let run = (ow - ox0).min(len - i);
                let iy = oy as isize * 2 + dy;
                if iy < 0 || iy >= h {
                    for xi in 0..kx {
                        col[(r0 + xi) * len + i..][..run].fill(0.0);
                    }
                    i += run;
                    continue;
                }
                let src = &plane[iy as usize * x.w..(iy as usize + 1) * x.w];
                let l = run + span;
                let (e, o) = ph[..2 * l].split_at_mut(l);
                let b = 2 * ox0 as isize + dx0;
                let mut k = 0;
                if b >= 0 {
                    // Pairs inside the row, a vector's lanes at a time, then one by one.
                    let inner = (((w - b) / 2).max(0) as usize).min(l);
                    let row = &src[b as usize..];
                    k = split_pairs::<V>(row, e, o, k, inner);
                    k = split_pairs::<V::Half>(row, e, o, k, inner);
                    while k < inner {
                        e[k] = row[2 * k];
                        o[k] = row[2 * k + 1];
                        k += 1;
                    }
                }
                let at = |xx: isize| {
                    if xx >= 0 && xx < w {
                        src[xx as usize]
                    } else {
                        0.0
                    }
                };
                for k in k..l {
                    let xx = b + 2 * k as isize;
                    e[k] = at(xx);
                    o[k] = at(xx + 1);
                }
                for (xi, &dx) in taps.xs.iter().enumerate() {
                    let off = (dx - dx0) as usize;
                    let from = if off.is_multiple_of(2) { &*e } else { &*o };
                    col[(r0 + xi) * len + i..][..run]
                        .copy_from_slice(&from[off / 2..off / 2 + run]);
                }
                i += run;
            }
        }
    }
}

/// Output side of a convolution.
pub fn out_size(input: usize, k: usize, stride: usize, pad: usize, dilation: usize) -> usize {
    (input + 2 * pad - dilation * (k - 1) - 1) / stride + 1
}

/// Folds `y = γ (x - μ) / sqrt(σ² + ε) + β` into the preceding linear map with `o` output rows:
/// scales each row of `w` and returns the new bias.
pub fn fold_bn(w: &mut [f32], bias: Option<&[f32]>, bn: &BnStats) -> Vec<f32> {
    let o = bn.gamma.len();
    let per = w.len() / o;
    (0..o)
        .map(|r| {
            let scale = bn.gamma[r] / (bn.var[r] + bn.eps).sqrt();
            for v in &mut w[r * per..(r + 1) * per] {
                *v *= scale;
            }
            let b = bias.map_or(0.0, |b| b[r]);
            (b - bn.mean[r]) * scale + bn.beta[r]
        })
        .collect()
}

/// Inference statistics of one BatchNorm.
#[derive(Debug, Clone)]
pub struct BnStats {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub eps: f32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fast::map::ramp;
    use crate::model::fast::simd::tests::with_sixteen_lanes;

    /// Direct convolution, the definition.
    fn naive(x: &Map, w: &[f32], o: usize, k: usize, s: usize, p: usize) -> Map {
        let oh = out_size(x.h, k, s, p, 1);
        let ow = out_size(x.w, k, s, p, 1);
        let mut out = Map::zeros(o, oh, ow);
        for r in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.0;
                    for c in 0..x.c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * s + ky) as isize - p as isize;
                                let ix = (ox * s + kx) as isize - p as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < x.h && (ix as usize) < x.w
                                {
                                    acc += w[((r * x.c + c) * k + ky) * k + kx]
                                        * x.data[(c * x.h + iy as usize) * x.w + ix as usize];
                                }
                            }
                        }
                    }
                    out.data[(r * oh + oy) * ow + ox] = acc;
                }
            }
        }
        out
    }

    #[test]
    fn gemm_convolution_equals_the_definition() {
        for (c, h, w, o, k, s, p) in [
            (3, 9, 7, 5, 3, 1, 1),
            (4, 10, 10, 6, 3, 2, 1),
            (2, 11, 13, 3, 7, 2, 3),
            (5, 8, 8, 4, 1, 1, 0),
            (5, 8, 9, 4, 1, 2, 0),
            (3, 70, 90, 8, 3, 1, 1), // several tiles
            (2, 5, 2, 3, 7, 1, 3),   // taps that miss a narrow map entirely
            (2, 6, 3, 3, 7, 2, 3),
        ] {
            let x = Map {
                c,
                h,
                w,
                data: ramp(c * h * w, 0.1),
            };
            let wt = ramp(o * c * k * k, 0.7);
            let bias = ramp(o, 0.3);
            let oh = out_size(h, k, s, p, 1);
            let ow = out_size(w, k, s, p, 1);
            let mut want = naive(&x, &wt, o, k, s, p);
            let res = Map {
                c: o,
                h: oh,
                w: ow,
                data: ramp(o * oh * ow, 0.9),
            };
            for (i, v) in want.data.iter_mut().enumerate() {
                *v = (*v + bias[i / (oh * ow)] + res.data[i]).max(0.0);
            }
            let got = conv_gemm(
                x.view(),
                &Taps::conv([k, k], s, p, 1),
                [oh, ow],
                &wt,
                o,
                &Epilogue {
                    bias: &bias,
                    residual: Some(&res),
                    relu: true,
                },
            );
            for (a, b) in got.data.iter().zip(&want.data) {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{c} {h} {w} {o} {k} {s} {p}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn pooled_scratch_is_given_back_and_taken_again_on_its_thread() {
        let first = {
            let mut a = Pooled::<Vec<f32>>::take();
            a.resize(1000, 1.5);
            // Taken while `a` is out: a value of its own.
            let b = Pooled::<Vec<f32>>::take();
            assert!(b.is_empty());
            a.as_ptr()
        };
        // Both given back; the next two takes get them, the grown one among them.
        let (c, d) = (Pooled::<Vec<f32>>::take(), Pooled::<Vec<f32>>::take());
        let grown = if c.len() == 1000 { &c } else { &d };
        assert_eq!(grown.as_ptr(), first);
        assert!(grown.iter().all(|&v| v == 1.5));
        // Another type is not handed out for it.
        let pair = Pooled::<(Vec<f32>, Vec<u8>)>::take();
        let (floats, bytes) = &*pair;
        assert!(floats.is_empty() && bytes.is_empty());
        // Another thread has its own.
        let other = std::thread::spawn(|| Pooled::<Vec<f32>>::take().len())
            .join()
            .unwrap();
        assert_eq!(other, 0);
    }

    #[test]
    fn stride_two_columns_equal_the_gather() {
        // Even and odd widths, rows wide enough for the eight- and sixteen-lane paths (and
        // for sixteen then eight), 1×1 to 7×7 taps with their paddings, and tiles starting
        // mid-row.
        for (c, h, w, k, p) in [
            (2, 9, 40, 3, 1),
            (2, 5, 52, 3, 1),
            (3, 12, 41, 3, 1),
            (2, 7, 37, 7, 3),
            (1, 5, 64, 1, 0),
            (2, 4, 3, 3, 1),
            (1, 6, 33, 2, 0),
        ] {
            let x = Map {
                c,
                h,
                w,
                data: ramp(c * h * w, 0.1),
            };
            let taps = Taps::conv([k, k], 2, p, 1);
            let (oh, ow) = (out_size(h, k, 2, p, 1), out_size(w, k, 2, p, 1));
            let n = oh * ow;
            for (n0, len) in [
                (0, n),
                (ow / 2, n - ow / 2),
                (ow + 3, (2 * ow).min(n - ow - 3)),
            ] {
                let rows = c * k * k;
                let mut want = vec![f32::NAN; rows * len];
                im2col_any(x.view(), &taps, ow, n0, len, &mut want);
                // The portable lanes, and the copy this CPU runs (AVX lanes where it has AVX2).
                let mut got = vec![f32::NAN; rows * len];
                im2col_s2::<super::super::simd::F8>(x.view(), &taps, ow, n0, len, &mut got);
                assert_eq!(got, want, "F8: c{c} {h}×{w} k{k} p{p} from {n0}, {len}");
                let mut got = vec![f32::NAN; rows * len];
                im2col(x.view(), &taps, ow, n0, len, &mut got);
                assert_eq!(got, want, "c{c} {h}×{w} k{k} p{p} from {n0}, {len}");
                // Sixteen lanes and their eight-lane remainder (portable).
                let mut got = vec![f32::NAN; rows * len];
                with_sixteen_lanes(|| im2col(x.view(), &taps, ow, n0, len, &mut got));
                assert_eq!(got, want, "L16: c{c} {h}×{w} k{k} p{p} from {n0}, {len}");
            }
        }
    }
}
