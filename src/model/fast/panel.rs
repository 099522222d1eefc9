//! The Winograd convolutions' GEMMs `M[e] = U[e] · V[e]` (and the direct convolutions') on
//! weights packed once, when the layer is built, into panels of `MR` output channels: `U[e]`'s
//! rows `MR·p .. MR·p + MR` stored channel by channel (`[p][input channel][row]`, rows past the
//! last output channel zero). A kernel keeps an `MR × 16` block of `M[e]` (`MR` output
//! channels, sixteen tiles) in registers and adds one input channel per step. On AVX2 `MR` is
//! six: twelve of the sixteen registers, two loads from `V[e]`'s row, six broadcasts, twelve
//! multiply-adds per step. On AVX-512F it is sixteen: sixteen of the 32 registers, one load of
//! the row, sixteen multiply-adds with the broadcast weight as their memory operand (the
//! same weights, the same products in the same order, so the same bits as the AVX2 kernel);
//! where a block has 32 tiles or more, the panel's two halves of eight rows run in turn over
//! 32 tiles (two vectors a row: fewer loads per multiply-add, the same bits again).
//!
//! The `gemm` crate runs the same register block but reads `U[e]` where it lies (six rows
//! `C` floats apart) or packs it again on every call; on the blocks these convolutions run
//! (16–64 tiles per GEMM), one thread, an AVX2 EPYC: 67 → 90 GFLOP/s with 128 channels, 46
//! → 70 with 64, 33 → 58 with 16 (benches/RESULTS.md). Where the CPU has no AVX2 (the
//! baseline copy, and other targets) the weights stay row-major and the `gemm` crate, whose
//! SSE and NEON kernels this kernel's portable form does not match, runs the GEMMs.

use std::marker::PhantomData;

use super::conv::{Epilogue, gemm_into};
use super::simd::{L16, Level, Vector, Vector16, level, multiversion};

/// Output channels per panel of the AVX2 kernel.
const MR: usize = 6;
/// Output channels per panel of the AVX-512 kernel.
const MR_WIDE: usize = 16;
/// Tiles per kernel call.
const NR: usize = 16;
/// How far ahead (floats) the AVX-512 kernel asks for its panel's next lines: one cache line
/// of weights per input channel streams from memory where a layer's weights are no longer
/// cached (every layer's, one pass after the last), faster than the hardware's prefetchers
/// fetch them alone. On a 2-core AVX-512 Xeon, two threads, the weights of each call not
/// cached: F(2×2) 256 → 256 channels at 16 × 16 1.33 → 0.93 ms, 512 → 512 at 8 × 8 1.95 → 1.33;
/// with the weights cached 0.85 → 0.76 and 0.98 → 0.95 (1 and 4 KiB ahead: about as fast);
/// mdla34@256's forward pass 75.8–77.7 → 64.4–66.6 ms (three alternated rounds). The AVX2
/// kernel does not (there a prefetch per input channel, 2.7 per line, made the same layers
/// faster uncached but 2–5 % slower cached on that Xeon, and the AVX2 machines measured are
/// AMD's, whose prefetchers differ).
const PREFETCH_AHEAD: usize = 512;

/// How the matrices are stored: for which kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Row-major, for the `gemm` crate (no AVX2).
    RowMajor,
    /// Panels of six rows, for the AVX2 kernel.
    Narrow,
    /// Panels of sixteen rows, for the AVX-512 kernel.
    Wide,
}

impl Layout {
    /// Rows per panel (the AVX2 kernel's where there are none).
    fn rows(self) -> usize {
        match self {
            Layout::Wide => MR_WIDE,
            _ => MR,
        }
    }
}

/// `elems` matrices `U[e]` (`o × c`) in panels (or row-major where the CPU has no AVX2).
#[derive(Debug, Clone)]
pub(crate) struct Panels {
    c: usize,
    o: usize,
    layout: Layout,
    data: Vec<f32>,
}

impl Panels {
    /// `U[e][oc][ic] = at(e, oc, ic)`, in the layout this CPU's GEMMs read.
    pub(crate) fn new(
        elems: usize,
        o: usize,
        c: usize,
        at: impl FnMut(usize, usize, usize) -> f32,
    ) -> Self {
        let layout = match level() {
            Level::Avx512 => Layout::Wide,
            Level::Avx2 => Layout::Narrow,
            Level::Baseline => Layout::RowMajor,
        };
        #[cfg(test)]
        let layout = if tests::SIXTEEN_ROWS.with(|s| s.get()) {
            Layout::Wide
        } else {
            layout
        };
        Self::build(elems, o, c, at, layout)
    }

    fn build(
        elems: usize,
        o: usize,
        c: usize,
        mut at: impl FnMut(usize, usize, usize) -> f32,
        layout: Layout,
    ) -> Self {
        if layout == Layout::RowMajor {
            let mut data = Vec::with_capacity(elems * o * c);
            for e in 0..elems {
                for oc in 0..o {
                    data.extend((0..c).map(|ic| at(e, oc, ic)));
                }
            }
            return Panels { c, o, layout, data };
        }
        let mr = layout.rows();
        let panels = o.div_ceil(mr);
        let mut data = vec![0.0; elems * panels * c * mr];
        for e in 0..elems {
            for oc in 0..o {
                let base = ((e * panels + oc / mr) * c) * mr + oc % mr;
                for ic in 0..c {
                    data[base + ic * mr] = at(e, oc, ic);
                }
            }
        }
        Panels { c, o, layout, data }
    }

    /// Whether the matrices are in panels (the CPU has AVX2), as [`Panels::direct_row`] needs.
    pub(crate) fn packed(&self) -> bool {
        self.layout != Layout::RowMajor
    }

    /// Floats per matrix in panels (its output channels rounded up to whole panels).
    fn matrix_len(&self) -> usize {
        let mr = self.layout.rows();
        self.o.div_ceil(mr) * mr * self.c
    }

    /// Output channels per panel: GEMMs over row ranges that start and end on multiples of it
    /// run whole panels only.
    pub(crate) fn panel_rows(&self) -> usize {
        self.layout.rows()
    }

    /// One output row of a direct convolution with weights `U[0]` (`o × c`): `out[r][x] =
    /// Σ_k U[0][r][k] · base[off[k] + x]` for `x < len`, rows `ldo` floats apart.
    ///
    /// # Safety
    /// The matrices are [packed](Panels::packed); `off` has `c` entries; `base + off[k]`
    /// points to at least `len` rounded up to 16 readable floats; `out` to `o` rows of `len`
    /// floats `ldo` apart that no one else reads or writes meanwhile.
    pub(crate) unsafe fn direct_row(
        &self,
        base: *const f32,
        off: &[usize],
        len: usize,
        (out, ldo): (*mut f32, usize),
    ) {
        assert!(self.packed() && off.len() == self.c);
        let u = &self.data[..self.matrix_len()];
        let rows = Offsets(base, off);
        // Safety: the caller's contract.
        unsafe {
            match self.layout {
                Layout::Wide => direct_row_wide(u, self.c, self.o, rows, len, (out, ldo)),
                _ => direct_row(u, self.c, self.o, rows, len, (out, ldo)),
            }
        }
    }

    /// Rows of each matrix (output channels).
    pub(crate) fn rows(&self) -> usize {
        self.o
    }

    /// `mm = U[e][rows] · v`: `v` holds `c × len` floats (row-major), `mm` the `rows.len() ×
    /// len` result (row-major).
    pub(crate) fn gemm(
        &self,
        e: usize,
        rows: std::ops::Range<usize>,
        v: &[f32],
        len: usize,
        mm: &mut [f32],
    ) {
        assert!(
            rows.start <= rows.end && rows.end <= self.o,
            "rows {rows:?} of {}",
            self.o
        );
        assert!(v.len() >= self.c * len && mm.len() >= rows.len() * len);
        let c = self.c;
        if self.layout == Layout::RowMajor {
            let u = &self.data[(e * self.o + rows.start) * c..(e * self.o + rows.end) * c];
            let zero = Epilogue {
                bias: &[],
                residual: None,
                relu: false,
            };
            // Safety: `mm` holds rows.len() rows of len floats, `v` c rows of len floats; the
            // slices are this call's alone.
            unsafe {
                gemm_into(
                    mm.as_mut_ptr(),
                    len,
                    (0, len),
                    u,
                    rows.len(),
                    (v.as_ptr(), len),
                    &zero,
                    gemm::Parallelism::None,
                )
            };
            return;
        }
        let size = self.matrix_len();
        let u = &self.data[e * size..(e + 1) * size];
        let rows = (rows.start, rows.end);
        match self.layout {
            Layout::Wide => panel_gemm_wide(u, c, rows, v, len, mm),
            _ => panel_gemm(u, c, rows, v, len, mm),
        }
    }
}

multiversion!(
    /// [`Panels::gemm`] on six-row panels: of one `U[e]` (`u`, all its panels) and rows `a..b`.
    fn panel_gemm(u: &[f32], c: usize, rows: (usize, usize), v: &[f32], len: usize, mm: &mut [f32]) => narrow_gemm_body
);

#[inline(always)]
fn narrow_gemm_body<V: Vector>(
    u: &[f32],
    c: usize,
    rows: (usize, usize),
    v: &[f32],
    len: usize,
    mm: &mut [f32],
) {
    panel_gemm_body::<Narrow<V>>(u, c, rows, v, len, mm)
}

/// [`Panels::gemm`] on sixteen-row panels: the AVX-512 kernel at [`Level::Avx512`] (the panels
/// are built so only there, but by the tests), else its portable form.
fn panel_gemm_wide(
    u: &[f32],
    c: usize,
    rows: (usize, usize),
    v: &[f32],
    len: usize,
    mm: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if level() == Level::Avx512 {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn wide(u: &[f32], c: usize, rows: (usize, usize), v: &[f32], len: usize, mm: &mut [f32]) {
            panel_gemm_body::<Wide<super::simd::Z16>>(u, c, rows, v, len, mm)
        }
        // Safety: at this level the CPU has AVX-512F (and so AVX2 and FMA).
        return unsafe { wide(u, c, rows, v, len, mm) };
    }
    panel_gemm_body::<Wide<L16>>(u, c, rows, v, len, mm)
}

#[inline(always)]
fn panel_gemm_body<K: Block>(
    u: &[f32],
    c: usize,
    (a, b): (usize, usize),
    v: &[f32],
    len: usize,
    mm: &mut [f32],
) {
    let strips = len / NR;
    let tail = len % NR;
    // The last tiles (fewer than 16) from a zero-padded copy of their columns.
    let vt = (tail > 0).then(|| {
        let mut t = vec![0.0; c * NR];
        for (k, row) in t.chunks_exact_mut(NR).enumerate() {
            row[..tail].copy_from_slice(&v[k * len + strips * NR..][..tail]);
        }
        t
    });
    let ns = strips + (tail > 0) as usize;
    let vt = vt.as_deref();
    // Strip by strip: the strip's c × 16 floats of V stay in L1 while the panels stream
    // past (mdla34 at 256 on an AVX2 EPYC, its Winograd layers' time over its other
    // convolutions', medians of five alternated runs: 3.25 panel by panel, 3.17 strip by
    // strip, 3.77 with the `gemm` crate).
    let mut s = 0;
    while s < ns {
        // Two whole strips at once where the kernel has a 32-column form: its panels wholly
        // inside a..b in one call, the others strip by strip.
        let step = if K::DOUBLE && s + 1 < strips { 2 } else { 1 };
        for p in a / K::MR..b.div_ceil(K::MR) {
            let r0 = p * K::MR;
            if step == 2 && a <= r0 && r0 + K::MR <= b {
                // Safety: columns s·16 .. s·16 + 32 of v's c rows, rows r0-a.. of mm.
                unsafe {
                    K::kernel_double(
                        c,
                        u[p * c * K::MR..].as_ptr(),
                        Strided(v.as_ptr().add(s * NR), len),
                        mm.as_mut_ptr().add((r0 - a) * len + s * NR),
                        len,
                    )
                };
            } else {
                for t in s..s + step {
                    block::<K>(u, c, (a, b), v, len, vt, p, t, mm);
                }
            }
        }
        s += step;
    }
}

multiversion!(
    /// [`Panels::direct_row`] on all six-row panels `u` of one matrix.
    unsafe fn direct_row(u: &[f32], c: usize, o: usize, rows: Offsets<'_>, len: usize, out: (*mut f32, usize)) => narrow_direct_body
);

/// # Safety
/// [`Panels::direct_row`]'s contract.
#[inline(always)]
unsafe fn narrow_direct_body<V: Vector>(
    u: &[f32],
    c: usize,
    o: usize,
    rows: Offsets<'_>,
    len: usize,
    out: (*mut f32, usize),
) {
    // Safety: the caller's contract.
    unsafe { direct_row_body::<Narrow<V>>(u, c, o, rows, len, out) }
}

/// [`Panels::direct_row`] on all sixteen-row panels `u` of one matrix (as [`panel_gemm_wide`]).
///
/// # Safety
/// [`Panels::direct_row`]'s contract.
unsafe fn direct_row_wide(
    u: &[f32],
    c: usize,
    o: usize,
    rows: Offsets<'_>,
    len: usize,
    out: (*mut f32, usize),
) {
    #[cfg(target_arch = "x86_64")]
    if level() == Level::Avx512 {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn wide(
            u: &[f32],
            c: usize,
            o: usize,
            rows: Offsets<'_>,
            len: usize,
            out: (*mut f32, usize),
        ) {
            // Safety: the caller's contract.
            unsafe { direct_row_body::<Wide<super::simd::Z16>>(u, c, o, rows, len, out) }
        }
        // Safety: the caller's contract; at this level the CPU has AVX-512F (and so AVX2 and
        // FMA).
        return unsafe { wide(u, c, o, rows, len, out) };
    }
    // Safety: the caller's contract.
    unsafe { direct_row_body::<Wide<L16>>(u, c, o, rows, len, out) }
}

/// # Safety
/// [`Panels::direct_row`]'s contract.
#[inline(always)]
unsafe fn direct_row_body<K: Block>(
    u: &[f32],
    c: usize,
    o: usize,
    Offsets(base, off): Offsets<'_>,
    len: usize,
    (out, ldo): (*mut f32, usize),
) {
    for col in (0..len).step_by(NR) {
        let w = NR.min(len - col);
        // Safety: the contract: 16 floats readable from every row's column `col`.
        let rows = Offsets(unsafe { base.add(col) }, off);
        for (p, panel) in u.chunks_exact(c * K::MR).enumerate() {
            let (r0, hi) = (p * K::MR, o.min(p * K::MR + K::MR));
            if hi == r0 + K::MR && w == NR {
                // Safety: out holds o rows of len floats ldo apart.
                unsafe { K::kernel(c, panel.as_ptr(), rows, out.add(r0 * ldo + col), ldo) };
            } else {
                let mut t = [0.0f32; MR_WIDE * NR];
                // Safety: t holds (at least) MR rows of 16.
                unsafe { K::kernel(c, panel.as_ptr(), rows, t.as_mut_ptr(), NR) };
                for r in r0..hi {
                    // Safety: row r of out holds len floats, so columns col..col+w.
                    let dst = unsafe { std::slice::from_raw_parts_mut(out.add(r * ldo + col), w) };
                    dst.copy_from_slice(&t[(r - r0) * NR..][..w]);
                }
            }
        }
    }
}

/// Panel `p`'s product with strip `s` (past the whole strips: the tail, from `vt`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block<K: Block>(
    u: &[f32],
    c: usize,
    (a, b): (usize, usize),
    v: &[f32],
    len: usize,
    vt: Option<&[f32]>,
    p: usize,
    s: usize,
    mm: &mut [f32],
) {
    let r0 = p * K::MR;
    let panel = &u[p * c * K::MR..(p + 1) * c * K::MR];
    // This panel's rows lo..hi belong to the result (all of them but at its ends).
    let (lo, hi) = (a.max(r0), b.min(r0 + K::MR));
    let col = s * NR;
    let (src, ld, w) = match vt {
        Some(vt) if col + NR > len => (vt.as_ptr(), NR, len - col),
        // Safety: v holds c rows of len floats, so columns col..col+16 of each.
        _ => (unsafe { v.as_ptr().add(col) }, len, NR),
    };
    if lo == r0 && hi == r0 + K::MR && w == NR {
        // Safety: src holds c rows of 16 floats ld apart; mm holds rows r0-a..r0-a+MR of len
        // floats.
        unsafe {
            K::kernel(
                c,
                panel.as_ptr(),
                Strided(src, ld),
                mm.as_mut_ptr().add((r0 - a) * len + col),
                len,
            )
        };
    } else {
        let mut t = [0.0f32; MR_WIDE * NR];
        // Safety: as above; t holds (at least) MR rows of 16.
        unsafe { K::kernel(c, panel.as_ptr(), Strided(src, ld), t.as_mut_ptr(), NR) };
        for r in lo..hi {
            mm[(r - a) * len + col..][..w].copy_from_slice(&t[(r - r0) * NR..][..w]);
        }
    }
}

/// Where the kernel finds row `k` of its sixteen columns.
trait Rows: Copy {
    /// # Safety
    /// `k` is below the kernel's `c`, and the caller's pointer covers that row.
    unsafe fn row(self, k: usize) -> *const f32;
}

/// Rows a fixed number of floats apart.
#[derive(Clone, Copy)]
struct Strided(*const f32, usize);

impl Rows for Strided {
    #[inline(always)]
    unsafe fn row(self, k: usize) -> *const f32 {
        // Safety: the trait's contract.
        unsafe { self.0.add(k * self.1) }
    }
}

/// Row `k` at `base + off[k]`: a direct convolution's taps in its input planes.
#[derive(Clone, Copy)]
struct Offsets<'a>(*const f32, &'a [usize]);

impl Rows for Offsets<'_> {
    #[inline(always)]
    unsafe fn row(self, k: usize) -> *const f32 {
        // Safety: the trait's contract (k < c = off.len()).
        unsafe { self.0.add(*self.1.get_unchecked(k)) }
    }
}

/// A register block: `out[r][j] = Σ_k panel[k][r] · v[k][j]` for `MR` rows and sixteen
/// columns.
trait Block {
    /// Rows per panel.
    const MR: usize;
    /// # Safety
    /// `panel` holds `c × MR` floats, `v` gives `c` rows of (at least) 16 floats, `out` `MR`
    /// rows of 16 floats `ldo` apart.
    unsafe fn kernel<R: Rows>(c: usize, panel: *const f32, v: R, out: *mut f32, ldo: usize);
    /// Whether [`Block::kernel_double`] runs (else it is never called).
    const DOUBLE: bool = false;
    /// `MR` rows and 32 columns (the same sums in the same order as two [`Block::kernel`]
    /// calls).
    ///
    /// # Safety
    /// As [`Block::kernel`], with 32 columns.
    unsafe fn kernel_double<R: Rows>(
        _c: usize,
        _panel: *const f32,
        _v: R,
        _out: *mut f32,
        _ldo: usize,
    ) {
        unreachable!()
    }
}

/// Six rows on two eight-lane vectors each (AVX2).
struct Narrow<V>(PhantomData<V>);

impl<V: Vector> Block for Narrow<V> {
    const MR: usize = MR;

    #[inline(always)]
    unsafe fn kernel<R: Rows>(c: usize, panel: *const f32, v: R, out: *mut f32, ldo: usize) {
        let mut acc = [[V::splat(0.0); 2]; MR];
        for k in 0..c {
            // Safety: the contract's bounds.
            let (x0, x1, w) = unsafe {
                let row = std::slice::from_raw_parts(v.row(k), NR);
                let w = std::slice::from_raw_parts(panel.add(k * MR), MR);
                (V::load(row), V::load(&row[8..]), w)
            };
            for r in 0..MR {
                let b = V::splat(w[r]);
                acc[r][0] = b.mul_add(x0, acc[r][0]);
                acc[r][1] = b.mul_add(x1, acc[r][1]);
            }
        }
        for (r, [y0, y1]) in acc.into_iter().enumerate() {
            // Safety: the contract's bounds.
            let row = unsafe { std::slice::from_raw_parts_mut(out.add(r * ldo), NR) };
            y0.store(row);
            y1.store(&mut row[8..]);
        }
    }
}

/// Sixteen rows on one sixteen-lane vector each (AVX-512).
struct Wide<W>(PhantomData<W>);

impl<W: Vector16> Block for Wide<W> {
    const MR: usize = MR_WIDE;

    #[inline(always)]
    unsafe fn kernel<R: Rows>(c: usize, panel: *const f32, v: R, out: *mut f32, ldo: usize) {
        let mut acc = [W::splat(0.0); MR_WIDE];
        for k in 0..c {
            // Safety: the contract's bounds.
            let (x, w) = unsafe { (W::load(v.row(k)), panel.add(k * MR_WIDE)) };
            W::prefetch(w.wrapping_add(PREFETCH_AHEAD));
            for (r, acc) in acc.iter_mut().enumerate() {
                // Safety: the contract's bounds.
                *acc = W::splat(unsafe { *w.add(r) }).mul_add(x, *acc);
            }
        }
        for (r, y) in acc.into_iter().enumerate() {
            // Safety: the contract's bounds.
            unsafe { y.store(out.add(r * ldo)) };
        }
    }

    const DOUBLE: bool = true;

    /// Two halves of eight rows, each on two vectors of sixteen columns: per input channel
    /// two loads from `V[e]`'s row and eight broadcasts for sixteen multiply-adds, against
    /// seventeen loads for sixteen in [`Block::kernel`] (mdla34's heads at 256 on an AVX-512
    /// Xeon: 15.0–15.4 → 14.0–14.8 ms alternated; one thread, 64 → 1,536 channels: 128 → 142
    /// GFLOP/s).
    #[inline(always)]
    unsafe fn kernel_double<R: Rows>(c: usize, panel: *const f32, v: R, out: *mut f32, ldo: usize) {
        for h in 0..2 {
            let mut acc = [[W::splat(0.0); 2]; 8];
            for k in 0..c {
                // Safety: the contract's bounds.
                let (x0, x1, w) = unsafe {
                    let row = v.row(k);
                    (
                        W::load(row),
                        W::load(row.add(NR)),
                        panel.add(k * MR_WIDE + 8 * h),
                    )
                };
                W::prefetch(w.wrapping_add(PREFETCH_AHEAD));
                for (r, acc) in acc.iter_mut().enumerate() {
                    // Safety: the contract's bounds.
                    let b = W::splat(unsafe { *w.add(r) });
                    acc[0] = b.mul_add(x0, acc[0]);
                    acc[1] = b.mul_add(x1, acc[1]);
                }
            }
            for (r, [y0, y1]) in acc.into_iter().enumerate() {
                // Safety: the contract's bounds.
                unsafe {
                    let o = out.add((8 * h + r) * ldo);
                    y0.store(o);
                    y1.store(o.add(NR));
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::fast::simd::F8;

    thread_local! {
        /// Set while [`with_sixteen_row_panels`] runs.
        pub(super) static SIXTEEN_ROWS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Runs `f` with the panels made on this thread in the AVX-512 kernel's layout, whatever
    /// the CPU (the kernel runs on its portable lanes where the CPU has no AVX-512F): the
    /// convolutions built on these panels are tested with both kernels on any machine.
    pub(crate) fn with_sixteen_row_panels<T>(f: impl FnOnce() -> T) -> T {
        let before = SIXTEEN_ROWS.with(|s| s.replace(true));
        let out = f();
        SIXTEEN_ROWS.with(|s| s.set(before));
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Against the definition in f64, for row ranges that start and end inside panels of
    /// either kernel and tile counts with and without a tail: six-row panels at the CPU's
    /// level and on the portable lanes, sixteen-row panels (the AVX-512 kernel at the AVX-512
    /// level, its portable form elsewhere), and row-major through the `gemm` crate.
    #[test]
    fn panel_gemm_equals_the_definition() {
        let (elems, o, c) = (3, 37, 37);
        let u = values(elems * o * c, 1);
        let at = |e, oc, ic| u[(e * o + oc) * c + ic];
        let narrow = Panels::build(elems, o, c, at, Layout::Narrow);
        let wide = Panels::build(elems, o, c, at, Layout::Wide);
        let row_major = Panels::build(elems, o, c, at, Layout::RowMajor);
        for len in [16, 5, 40, 64] {
            let v = values(c * len, len);
            for (a, b) in [
                (0, 37),
                (4, 17),
                (6, 12),
                (13, 14),
                (18, 23),
                (16, 32),
                (30, 37),
            ] {
                for e in 0..elems {
                    let mut want = vec![0.0f64; (b - a) * len];
                    for r in a..b {
                        for j in 0..len {
                            want[(r - a) * len + j] = (0..c)
                                .map(|k| u[(e * o + r) * c + k] as f64 * v[k * len + j] as f64)
                                .sum();
                        }
                    }
                    let run = |p: &Panels| {
                        let mut got = vec![f32::NAN; (b - a) * len];
                        p.gemm(e, a..b, &v, len, &mut got);
                        got
                    };
                    let size = narrow.matrix_len();
                    let ue = &narrow.data[e * size..(e + 1) * size];
                    let mut portable = vec![f32::NAN; (b - a) * len];
                    panel_gemm_body::<Narrow<F8>>(ue, c, (a, b), &v, len, &mut portable);
                    let runs = [
                        (run(&narrow), "six-row panels"),
                        (portable, "six-row panels, portable"),
                        (run(&wide), "sixteen-row panels"),
                        (run(&row_major), "row-major"),
                    ];
                    for (got, what) in runs {
                        for (i, w) in want.iter().enumerate() {
                            let x = got[i] as f64;
                            assert!(
                                (x - w).abs() <= 1e-5 * (1.0 + w.abs()),
                                "{what} len {len} rows {a}..{b} e {e} [{i}]: {x} against {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The sixteen-row kernel (AVX-512F at the AVX-512 level, else its portable form) gives
    /// the six-row AVX2 kernel's bits, in GEMMs and in direct rows: the same products added in
    /// the same order with one rounding each. Where the CPU has no AVX2 there is no fused
    /// six-row kernel to compare with.
    #[test]
    fn sixteen_row_panels_give_the_six_row_bits() {
        if level() == Level::Baseline {
            eprintln!("no AVX2 on this CPU: nothing to compare with");
            return;
        }
        let (o, c) = (45, 29);
        let u = values(2 * o * c, 3);
        let at = |e, oc, ic| u[(e * o + oc) * c + ic];
        let narrow = Panels::build(2, o, c, at, Layout::Narrow);
        let wide = Panels::build(2, o, c, at, Layout::Wide);
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for len in [16, 21, 48] {
            let v = values(c * len, len + 7);
            for (a, b) in [(0, 45), (3, 40), (16, 32)] {
                let (mut n, mut w) = (vec![0.0; (b - a) * len], vec![1.0; (b - a) * len]);
                narrow.gemm(1, a..b, &v, len, &mut n);
                wide.gemm(1, a..b, &v, len, &mut w);
                assert_eq!(bits(&n), bits(&w), "gemm len {len} rows {a}..{b}");
            }
            // Direct rows: row k at base + off[k], the offsets out of order.
            let off: Vec<usize> = (0..c).map(|k| (k * 11) % c * len).collect();
            let (mut n, mut w) = (vec![0.0; o * (len + 3)], vec![1.0; o * (len + 3)]);
            let padded = [v.clone(), vec![0.0; NR]].concat();
            // Safety: every row start plus len rounded up to 16 is inside `padded`; the outputs
            // hold o rows of len floats len + 3 apart.
            assert!(
                off.iter()
                    .all(|&f| f + len.next_multiple_of(NR) <= padded.len())
            );
            unsafe {
                narrow.direct_row(padded.as_ptr(), &off, len, (n.as_mut_ptr(), len + 3));
                wide.direct_row(padded.as_ptr(), &off, len, (w.as_mut_ptr(), len + 3));
            }
            let written = |x: &[f32]| {
                x.chunks_exact(len + 3)
                    .flat_map(|r| r[..len].iter().map(|v| v.to_bits()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(written(&n), written(&w), "direct row len {len}");
        }
    }
}
