//! The Winograd convolutions' GEMMs `M[e] = U[e] · V[e]` on weights packed once, when the
//! layer is built, into panels of [`MR`] output channels: `U[e]`'s rows `MR·p .. MR·p + MR`
//! stored channel by channel (`[p][input channel][row]`, rows past the last output channel
//! zero). A kernel keeps an `MR × 16` block of `M[e]` (six output channels, sixteen tiles) in
//! twelve vector registers and adds one input channel per step: two loads from `V[e]`'s row,
//! six broadcasts from the panel, twelve multiply-adds.
//!
//! The `gemm` crate runs the same register block but reads `U[e]` where it lies (six rows
//! `C` floats apart) or packs it again on every call; on the blocks these convolutions run
//! (16–64 tiles per GEMM), one thread, an AVX2 EPYC: 67 → 90 GFLOP/s with 128 channels, 46
//! → 70 with 64, 33 → 58 with 16 (benches/RESULTS.md). Where the CPU has no AVX2 (the
//! baseline copy, and other targets) the weights stay row-major and the `gemm` crate, whose
//! SSE and NEON kernels this kernel's portable form does not match, runs the GEMMs.

use super::conv::{Epilogue, gemm_into};
use super::simd::{Level, Vector, level, multiversion};

/// Output channels per panel.
pub(crate) const MR: usize = 6;
/// Tiles per kernel call (two vectors).
const NR: usize = 16;

/// `elems` matrices `U[e]` (`o × c`) in panels (or row-major where the CPU has no AVX2).
#[derive(Debug, Clone)]
pub(crate) struct Panels {
    c: usize,
    o: usize,
    /// Panels per matrix; 0 where the matrices are row-major.
    panels: usize,
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
        Self::build(elems, o, c, at, level() != Level::Baseline)
    }

    fn build(
        elems: usize,
        o: usize,
        c: usize,
        mut at: impl FnMut(usize, usize, usize) -> f32,
        packed: bool,
    ) -> Self {
        if !packed {
            let mut data = Vec::with_capacity(elems * o * c);
            for e in 0..elems {
                for oc in 0..o {
                    data.extend((0..c).map(|ic| at(e, oc, ic)));
                }
            }
            return Panels {
                c,
                o,
                panels: 0,
                data,
            };
        }
        let panels = o.div_ceil(MR);
        let mut data = vec![0.0; elems * panels * c * MR];
        for e in 0..elems {
            for oc in 0..o {
                let base = ((e * panels + oc / MR) * c) * MR + oc % MR;
                for ic in 0..c {
                    data[base + ic * MR] = at(e, oc, ic);
                }
            }
        }
        Panels { c, o, panels, data }
    }

    /// Whether the matrices are in panels (the CPU has AVX2), as [`Panels::direct_row`] needs.
    pub(crate) fn packed(&self) -> bool {
        self.panels > 0
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
        let u = &self.data[..self.panels * self.c * MR];
        // Safety: the caller's contract.
        unsafe { direct_row(u, self.c, self.o, Offsets(base, off), len, (out, ldo)) };
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
        if self.panels == 0 {
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
        let size = self.panels * c * MR;
        let u = &self.data[e * size..(e + 1) * size];
        panel_gemm(u, c, (rows.start, rows.end), v, len, mm);
    }
}

multiversion!(
    /// [`Panels::gemm`] of one `U[e]` (`u`, all its panels) and rows `a..b`.
    fn panel_gemm(u: &[f32], c: usize, rows: (usize, usize), v: &[f32], len: usize, mm: &mut [f32]) => panel_gemm_body
);

#[inline(always)]
fn panel_gemm_body<V: Vector>(
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
    for s in 0..ns {
        for p in a / MR..b.div_ceil(MR) {
            block::<V>(u, c, (a, b), v, len, vt, p, s, mm);
        }
    }
}

multiversion!(
    /// [`Panels::direct_row`] on all panels `u` of one matrix.
    unsafe fn direct_row(u: &[f32], c: usize, o: usize, rows: Offsets<'_>, len: usize, out: (*mut f32, usize)) => direct_row_body
);

/// # Safety
/// [`Panels::direct_row`]'s contract.
#[inline(always)]
unsafe fn direct_row_body<V: Vector>(
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
        for (p, panel) in u.chunks_exact(c * MR).enumerate() {
            let (r0, hi) = (p * MR, o.min(p * MR + MR));
            if hi == r0 + MR && w == NR {
                // Safety: out holds o rows of len floats ldo apart.
                unsafe { kernel::<V, _>(c, panel.as_ptr(), rows, out.add(r0 * ldo + col), ldo) };
            } else {
                let mut t = [0.0f32; MR * NR];
                // Safety: t holds 6 rows of 16.
                unsafe { kernel::<V, _>(c, panel.as_ptr(), rows, t.as_mut_ptr(), NR) };
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
fn block<V: Vector>(
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
    let r0 = p * MR;
    let panel = &u[p * c * MR..(p + 1) * c * MR];
    // This panel's rows lo..hi belong to the result (all six but at its ends).
    let (lo, hi) = (a.max(r0), b.min(r0 + MR));
    let col = s * NR;
    let (src, ld, w) = match vt {
        Some(vt) if col + NR > len => (vt.as_ptr(), NR, len - col),
        // Safety: v holds c rows of len floats, so columns col..col+16 of each.
        _ => (unsafe { v.as_ptr().add(col) }, len, NR),
    };
    if lo == r0 && hi == r0 + MR && w == NR {
        // Safety: src holds c rows of 16 floats ld apart; mm holds rows r0-a..r0-a+6 of len
        // floats.
        unsafe {
            kernel::<V, _>(
                c,
                panel.as_ptr(),
                Strided(src, ld),
                mm.as_mut_ptr().add((r0 - a) * len + col),
                len,
            )
        };
    } else {
        let mut t = [0.0f32; MR * NR];
        // Safety: as above; t holds 6 rows of 16.
        unsafe { kernel::<V, _>(c, panel.as_ptr(), Strided(src, ld), t.as_mut_ptr(), NR) };
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

/// `out[r][j] = Σ_k panel[k][r] · v[k][j]` for six rows and sixteen columns.
///
/// # Safety
/// `panel` holds `c × 6` floats, `v` gives `c` rows of (at least) 16 floats, `out` 6 rows of
/// 16 floats `ldo` apart.
#[inline(always)]
unsafe fn kernel<V: Vector, R: Rows>(c: usize, panel: *const f32, v: R, out: *mut f32, ldo: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Against the definition in f64, for row ranges that start and end inside panels and
    /// tile counts with and without a tail: packed at the CPU's level and on the portable
    /// lanes, and row-major through the `gemm` crate.
    #[test]
    fn panel_gemm_equals_the_definition() {
        let (elems, o, c) = (3, 23, 37);
        let u = values(elems * o * c, 1);
        let at = |e, oc, ic| u[(e * o + oc) * c + ic];
        let p = Panels::build(elems, o, c, at, true);
        let row_major = Panels::build(elems, o, c, at, false);
        for len in [16, 5, 40, 64] {
            let v = values(c * len, len);
            for (a, b) in [(0, 23), (4, 17), (6, 12), (13, 14), (18, 23)] {
                for e in 0..elems {
                    let mut want = vec![0.0f64; (b - a) * len];
                    for r in a..b {
                        for j in 0..len {
                            want[(r - a) * len + j] = (0..c)
                                .map(|k| u[(e * o + r) * c + k] as f64 * v[k * len + j] as f64)
                                .sum();
                        }
                    }
                    let size = p.panels * c * MR;
                    let ue = &p.data[e * size..(e + 1) * size];
                    let mut got = vec![f32::NAN; (b - a) * len];
                    p.gemm(e, a..b, &v, len, &mut got);
                    let mut portable = vec![f32::NAN; (b - a) * len];
                    panel_gemm_body::<crate::model::fast::simd::F8>(
                        ue,
                        c,
                        (a, b),
                        &v,
                        len,
                        &mut portable,
                    );
                    let mut plain = vec![f32::NAN; (b - a) * len];
                    row_major.gemm(e, a..b, &v, len, &mut plain);
                    for (i, w) in want.iter().enumerate() {
                        let runs = [
                            (got[i], "dispatched"),
                            (portable[i], "portable"),
                            (plain[i], "row-major"),
                        ];
                        for (x, what) in runs {
                            assert!(
                                (x as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                                "{what} len {len} rows {a}..{b} e {e} [{i}]: {x} against {w}"
                            );
                        }
                    }
                }
            }
        }
    }
}
