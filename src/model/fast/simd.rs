//! The vector width of this crate's own hot loops (today the Winograd input and output
//! transforms, the Winograd GEMM kernel and the stride-2 column copies), chosen once per
//! process from the CPU: such a function is compiled three times — for AVX-512F, for AVX2 +
//! FMA, and for the target's baseline — and the `multiversion!` macro calls the widest copy
//! the CPU runs: on AVX registers (`Y8`, eight lanes) in the AVX2 copy, on AVX-512 registers
//! (`Z16`, sixteen lanes) in the AVX-512 copy of a body written for either width (or on `Y8`
//! there too, for one written for eight), on plain arrays (`F8`) in the baseline one. (The
//! `gemm` crate dispatches its own kernels the same way.) Loops not wrapped this way are
//! vectorised for x86-64's baseline, SSE2, only.
//!
//! A function body wrapped this way must be `#[inline(always)]`, and so must what it calls in
//! its hot loops, so that it is compiled inside each feature-enabled copy. Hot code must not
//! sit in a closure or be passed as a function value: neither takes the copy's features, and
//! the intrinsics in it become calls (a closure around the Winograd GEMM kernel ran it 25×
//! slower).

use std::sync::OnceLock;

/// Instruction sets this crate's loops are compiled for.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Avx512,
    Avx2,
    Baseline,
}

/// The widest level the CPU runs (detected once), or a narrower one named by the
/// `DEEPMARK_SIMD` environment variable (`avx2`, `baseline`: for comparing and testing the
/// narrower copies on a wider CPU; a level the CPU lacks is not taken).
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cpu = detect();
        match std::env::var("DEEPMARK_SIMD").as_deref() {
            Ok("baseline") => Level::Baseline,
            Ok("avx2") if cpu != Level::Baseline => Level::Avx2,
            _ => cpu,
        }
    })
}

fn detect() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// `multiversion!(fn name(args) -> R => body);` defines `name`, which runs `body` (an
/// `#[inline(always)]` function with the same arguments and one type parameter, the
/// [`Vector`] its loops use) compiled for [`level`]: the AVX-512 and AVX2 copies run it on
/// [`Y8`] (AVX registers), the baseline one on [`F8`]. With `=> body on sixteen lanes`, the
/// AVX-512 copy runs it on [`Z16`] (AVX-512 registers): `body` then takes any
/// [`Vector::LANES`], finishing its loops' remainders on [`Vector::Half`]; in tests,
/// [`tests::with_sixteen_lanes`] runs it on [`L16`] whatever the CPU. With `unsafe fn`, `name`
/// and `body` are unsafe functions with the same contract.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            // Safety: a safe body stays safe in every copy.
            unsafe { $crate::model::fast::simd::multiversion!(@dispatch $body, $crate::model::fast::simd::Y8, {}; $($arg: $ty),*; $($ret)?) }
        }
    };
    ($(#[$meta:meta])* $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            // Safety: the caller keeps `body`'s contract.
            unsafe { $crate::model::fast::simd::multiversion!(@dispatch $body, $crate::model::fast::simd::Y8, {}; $($arg: $ty),*; $($ret)?) }
        }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident on sixteen lanes) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            // Safety: a safe body stays safe in every copy.
            unsafe { $crate::model::fast::simd::multiversion!(@dispatch $body, $crate::model::fast::simd::Z16, {
                #[cfg(test)]
                if $crate::model::fast::simd::tests::sixteen_lanes() {
                    return $body::<$crate::model::fast::simd::L16>($($arg),*);
                }
            }; $($arg: $ty),*; $($ret)?) }
        }
    };
    ($(#[$meta:meta])* $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident on sixteen lanes) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            // Safety: the caller keeps `body`'s contract.
            unsafe { $crate::model::fast::simd::multiversion!(@dispatch $body, $crate::model::fast::simd::Z16, {
                #[cfg(test)]
                if $crate::model::fast::simd::tests::sixteen_lanes() {
                    return $body::<$crate::model::fast::simd::L16>($($arg),*);
                }
            }; $($arg: $ty),*; $($ret)?) }
        }
    };
    (@dispatch $body:ident, $wide:ty, {$($forced:tt)*}; $($arg:ident: $ty:ty),*; $($ret:ty)?) => {{
        $($forced)*
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments, unused_unsafe)]
            unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                unsafe { $body::<$wide>($($arg),*) }
            }
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments, unused_unsafe)]
            unsafe fn mid($($arg: $ty),*) $(-> $ret)? {
                unsafe { $body::<$crate::model::fast::simd::Y8>($($arg),*) }
            }
            // The features were found on this CPU by `level`.
            match $crate::model::fast::simd::level() {
                $crate::model::fast::simd::Level::Avx512 => wide($($arg),*),
                $crate::model::fast::simd::Level::Avx2 => mid($($arg),*),
                $crate::model::fast::simd::Level::Baseline => {
                    $body::<$crate::model::fast::simd::F8>($($arg),*)
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body::<$crate::model::fast::simd::F8>($($arg),*)
        }
    }};
}
pub(crate) use multiversion;

/// `e[k] = row[2k]`, `o[k] = row[2k + 1]` from `k` on, in steps of `W::LANES` while whole
/// steps fit below `n`. Returns the first `k` not done.
#[inline(always)]
pub(crate) fn split_pairs<W: Vector>(
    row: &[f32],
    e: &mut [f32],
    o: &mut [f32],
    mut k: usize,
    n: usize,
) -> usize {
    while k + W::LANES <= n {
        let [a, b] = W::deinterleave2(&row[2 * k..]);
        a.store(&mut e[k..]);
        b.store(&mut o[k..]);
        k += W::LANES;
    }
    k
}

/// `LANES` `f32` lanes (eight or sixteen): the operations the transforms and column copies
/// need, each as one instruction (or a few shuffles) on [`Y8`] and [`Z16`] and as array loops
/// on [`F8`] and [`L16`]. All give the same bits: every lane is the same float operation in the
/// same order (but [`Vector::mul_add`], which says how it rounds).
pub(crate) trait Vector: Lanes {
    /// Lanes per value.
    const LANES: usize;
    /// Eight lanes of the same kind, for the stretch shorter than `LANES` that a loop over
    /// `Self` leaves: `Self` where it has eight lanes (its loop then never runs).
    type Half: Vector;
    /// The first `LANES` floats of `s`.
    fn load(s: &[f32]) -> Self;
    /// Writes the lanes to the first `LANES` floats of `s`.
    fn store(self, s: &mut [f32]);
    /// Every lane `v`.
    fn splat(v: f32) -> Self;
    /// Lane-wise `if x < v { v } else { x }` (`max(x, 0)` is ReLU; a NaN lane stays NaN).
    fn max(self, v: f32) -> Self;
    /// From the first `2 · LANES` floats of `s`: its even ones (`s[2k]`) and its odd ones
    /// (`s[2k + 1]`).
    fn deinterleave2(s: &[f32]) -> [Self; 2];
    /// From the first `4 · LANES` floats of `s`: its four phases, `r[p][k] = s[4k + p]`.
    fn deinterleave4(s: &[f32]) -> [Self; 4];
    /// The inverse of [`Vector::deinterleave4`]: `4 · LANES` floats `s[4k + p] = r[p][k]`,
    /// returned as four vectors of `LANES` consecutive floats (`s[LANES · q..]` is the `q`-th).
    fn interleave4(r: [Self; 4]) -> [Self; 4];
    /// The inverse of [`Vector::deinterleave2`]: `2 · LANES` floats `s[2k] = e[k]`,
    /// `s[2k + 1] = o[k]` from `[e, o]`, as two vectors of `LANES` consecutive floats.
    fn interleave2(r: [Self; 2]) -> [Self; 2];
    /// `self · a + b` lane by lane: one rounding on [`Y8`], [`Z16`] and [`L16`] (an FMA
    /// instruction, as `f32::mul_add`), two on [`F8`] (the baseline has no FMA; `f32::mul_add`
    /// there is a library call). The one operation whose bits differ between them.
    fn mul_add(self, a: Self, b: Self) -> Self;
}

/// Eight `f32` lanes with element-wise arithmetic written as plain array loops: the baseline
/// copy's [`Vector`] (SSE2 on x86-64; what other targets vectorise it to).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct F8(pub [f32; 8]);

impl Vector for F8 {
    const LANES: usize = 8;
    type Half = F8;

    #[inline(always)]
    fn load(s: &[f32]) -> F8 {
        F8(s[..8].try_into().expect("eight floats"))
    }

    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        s[..8].copy_from_slice(&self.0);
    }

    #[inline(always)]
    fn splat(v: f32) -> F8 {
        F8([v; 8])
    }

    #[inline(always)]
    fn max(self, v: f32) -> F8 {
        F8(std::array::from_fn(|k| {
            if self.0[k] < v { v } else { self.0[k] }
        }))
    }

    #[inline(always)]
    fn deinterleave2(s: &[f32]) -> [F8; 2] {
        let z = &s[..16];
        [
            F8(std::array::from_fn(|k| z[2 * k])),
            F8(std::array::from_fn(|k| z[2 * k + 1])),
        ]
    }

    #[inline(always)]
    fn deinterleave4(s: &[f32]) -> [F8; 4] {
        let z = &s[..32];
        std::array::from_fn(|p| F8(std::array::from_fn(|k| z[4 * k + p])))
    }

    #[inline(always)]
    fn interleave4(r: [F8; 4]) -> [F8; 4] {
        std::array::from_fn(|q| F8(std::array::from_fn(|i| r[i % 4].0[2 * q + i / 4])))
    }

    #[inline(always)]
    fn interleave2([e, o]: [F8; 2]) -> [F8; 2] {
        std::array::from_fn(|q| {
            F8(std::array::from_fn(|i| {
                let k = 4 * q + i / 2;
                if i % 2 == 0 { e.0[k] } else { o.0[k] }
            }))
        })
    }

    #[inline(always)]
    fn mul_add(self, a: F8, b: F8) -> F8 {
        F8(std::array::from_fn(|k| self.0[k] * a.0[k] + b.0[k]))
    }
}

impl std::ops::Add for F8 {
    type Output = F8;
    #[inline(always)]
    fn add(self, b: F8) -> F8 {
        F8(std::array::from_fn(|k| self.0[k] + b.0[k]))
    }
}

impl std::ops::Sub for F8 {
    type Output = F8;
    #[inline(always)]
    fn sub(self, b: F8) -> F8 {
        F8(std::array::from_fn(|k| self.0[k] - b.0[k]))
    }
}

impl std::ops::Mul<f32> for F8 {
    type Output = F8;
    #[inline(always)]
    fn mul(self, b: f32) -> F8 {
        F8(std::array::from_fn(|k| self.0[k] * b))
    }
}

/// Sixteen `f32` lanes: what the AVX-512 GEMM kernel needs (`model::fast::panel`), on one
/// 512-bit register ([`Z16`]) or on a plain array ([`L16`], that kernel's portable form, which
/// the tests run on any CPU).
pub(crate) trait Vector16: Copy {
    /// Every lane `v`.
    fn splat(v: f32) -> Self;
    /// The sixteen floats at `p`.
    ///
    /// # Safety
    /// Sixteen floats are readable at `p`.
    unsafe fn load(p: *const f32) -> Self;
    /// Writes the lanes to the sixteen floats at `p`.
    ///
    /// # Safety
    /// Sixteen floats are writable at `p`.
    unsafe fn store(self, p: *mut f32);
    /// `self · a + b` lane by lane with one rounding (as `f32::mul_add` and [`Y8`]'s
    /// [`Vector::mul_add`]: a kernel on either gives the same bits).
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Asks for the cache line at `p` to be brought into L1 (a hint: any address, nothing
    /// read; the portable form does nothing).
    #[inline(always)]
    fn prefetch(_p: *const f32) {}
}

/// Sixteen `f32` lanes as a plain array, with a fused multiply-add per lane (`f32::mul_add`,
/// a library call where the target has no FMA): the portable form of [`Z16`], as a
/// [`Vector16`] and as a [`Vector`] (whose [`Vector::Half`] is [`F8`]), for tests and, as the
/// GEMM kernel's, for CPUs without AVX-512F (slow).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct L16(pub [f32; 16]);

impl Vector16 for L16 {
    #[inline(always)]
    fn splat(v: f32) -> L16 {
        L16([v; 16])
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> L16 {
        // Safety: the caller's contract.
        L16(unsafe { p.cast::<[f32; 16]>().read_unaligned() })
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // Safety: the caller's contract.
        unsafe { p.cast::<[f32; 16]>().write_unaligned(self.0) }
    }

    #[inline(always)]
    fn mul_add(self, a: L16, b: L16) -> L16 {
        L16(std::array::from_fn(|k| self.0[k].mul_add(a.0[k], b.0[k])))
    }
}

impl Vector for L16 {
    const LANES: usize = 16;
    type Half = F8;

    #[inline(always)]
    fn load(s: &[f32]) -> L16 {
        L16(s[..16].try_into().expect("sixteen floats"))
    }

    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        s[..16].copy_from_slice(&self.0);
    }

    #[inline(always)]
    fn splat(v: f32) -> L16 {
        L16([v; 16])
    }

    #[inline(always)]
    fn max(self, v: f32) -> L16 {
        L16(std::array::from_fn(|k| {
            if self.0[k] < v { v } else { self.0[k] }
        }))
    }

    #[inline(always)]
    fn deinterleave2(s: &[f32]) -> [L16; 2] {
        let z = &s[..32];
        [0, 1].map(|p| L16(std::array::from_fn(|k| z[2 * k + p])))
    }

    #[inline(always)]
    fn deinterleave4(s: &[f32]) -> [L16; 4] {
        let z = &s[..64];
        std::array::from_fn(|p| L16(std::array::from_fn(|k| z[4 * k + p])))
    }

    #[inline(always)]
    fn interleave4(r: [L16; 4]) -> [L16; 4] {
        std::array::from_fn(|q| {
            L16(std::array::from_fn(|i| {
                let j = 16 * q + i;
                r[j % 4].0[j / 4]
            }))
        })
    }

    #[inline(always)]
    fn interleave2(r: [L16; 2]) -> [L16; 2] {
        std::array::from_fn(|q| {
            L16(std::array::from_fn(|i| {
                let j = 16 * q + i;
                r[j % 2].0[j / 2]
            }))
        })
    }

    #[inline(always)]
    fn mul_add(self, a: L16, b: L16) -> L16 {
        L16(std::array::from_fn(|k| self.0[k].mul_add(a.0[k], b.0[k])))
    }
}

impl std::ops::Add for L16 {
    type Output = L16;
    #[inline(always)]
    fn add(self, b: L16) -> L16 {
        L16(std::array::from_fn(|k| self.0[k] + b.0[k]))
    }
}

impl std::ops::Sub for L16 {
    type Output = L16;
    #[inline(always)]
    fn sub(self, b: L16) -> L16 {
        L16(std::array::from_fn(|k| self.0[k] - b.0[k]))
    }
}

impl std::ops::Mul<f32> for L16 {
    type Output = L16;
    #[inline(always)]
    fn mul(self, b: f32) -> L16 {
        L16(std::array::from_fn(|k| self.0[k] * b))
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Y8, Z16};

#[cfg(not(target_arch = "x86_64"))]
pub(crate) type Y8 = F8;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Lanes, Vector};
    use std::arch::x86_64::*;

    /// Eight `f32` lanes in an AVX register: the [`Vector`] of the AVX2 and AVX-512 copies of a
    /// [`multiversion!`](super::multiversion) body. Written with intrinsics because the
    /// compiler turns [`F8`](super::F8)'s array loops back into scalar code where its loop
    /// vectoriser, which runs first, needs alias checks that fail at run time (the F(4×4)
    /// transforms' rows, a few tiles apart in one buffer).
    ///
    /// Its operations run AVX and AVX2 instructions: a `Y8` is made and used only inside those
    /// copies, which run only where [`level`](super::level) found AVX2 and FMA.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Y8(__m256);

    /// `[a; b]` transposed within each 128-bit half: row `i` of the four 4 × 4 blocks
    /// `(v0[h], v1[h], v2[h], v3[h])` becomes `v_i[h]`.
    #[inline(always)]
    fn transpose4(v: [__m256; 4]) -> [__m256; 4] {
        // Safety: see `Y8`.
        unsafe {
            let t0 = _mm256_unpacklo_ps(v[0], v[1]);
            let t1 = _mm256_unpackhi_ps(v[0], v[1]);
            let t2 = _mm256_unpacklo_ps(v[2], v[3]);
            let t3 = _mm256_unpackhi_ps(v[2], v[3]);
            [
                _mm256_shuffle_ps::<0x44>(t0, t2),
                _mm256_shuffle_ps::<0xee>(t0, t2),
                _mm256_shuffle_ps::<0x44>(t1, t3),
                _mm256_shuffle_ps::<0xee>(t1, t3),
            ]
        }
    }

    impl Vector for Y8 {
        const LANES: usize = 8;
        type Half = Y8;

        #[inline(always)]
        fn load(s: &[f32]) -> Y8 {
            let s = &s[..8];
            // Safety: eight floats are there; AVX: see `Y8`.
            unsafe { Y8(_mm256_loadu_ps(s.as_ptr())) }
        }

        #[inline(always)]
        fn store(self, s: &mut [f32]) {
            let s = &mut s[..8];
            // Safety: as `load`.
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), self.0) }
        }

        #[inline(always)]
        fn splat(v: f32) -> Y8 {
            // Safety: see `Y8`.
            unsafe { Y8(_mm256_set1_ps(v)) }
        }

        #[inline(always)]
        fn max(self, v: f32) -> Y8 {
            // `maxps(a, b)` is `a > b ? a : b`: with `a = v` it is `x < v ? v : x` for every x,
            // NaN included. Safety: see `Y8`.
            unsafe { Y8(_mm256_max_ps(_mm256_set1_ps(v), self.0)) }
        }

        #[inline(always)]
        fn deinterleave2(s: &[f32]) -> [Y8; 2] {
            let s = &s[..16];
            // Safety: sixteen floats are there; AVX2: see `Y8`.
            unsafe {
                let (a, b) = (
                    _mm256_loadu_ps(s.as_ptr()),
                    _mm256_loadu_ps(s[8..].as_ptr()),
                );
                // Per half: [a0 a2 b0 b2], [a1 a3 b1 b3]; then the 64-bit pairs reordered.
                let even = _mm256_castps_pd(_mm256_shuffle_ps::<0x88>(a, b));
                let odd = _mm256_castps_pd(_mm256_shuffle_ps::<0xdd>(a, b));
                [
                    Y8(_mm256_castpd_ps(_mm256_permute4x64_pd::<0xd8>(even))),
                    Y8(_mm256_castpd_ps(_mm256_permute4x64_pd::<0xd8>(odd))),
                ]
            }
        }

        #[inline(always)]
        fn deinterleave4(s: &[f32]) -> [Y8; 4] {
            let s = &s[..32];
            // Safety: 32 floats are there; AVX: see `Y8`.
            unsafe {
                // v_k = [s[4k..4k+4] | s[16+4k..16+4k+4]]: groups k and k + 4, whose in-half
                // transpose gives each phase's eight groups in order.
                let v: [__m256; 4] = std::array::from_fn(|k| {
                    _mm256_loadu2_m128(s[16 + 4 * k..].as_ptr(), s[4 * k..].as_ptr())
                });
                transpose4(v).map(Y8)
            }
        }

        #[inline(always)]
        fn interleave4(r: [Y8; 4]) -> [Y8; 4] {
            // Safety: see `Y8`.
            unsafe {
                // t_k = [group k | group k + 4], then the halves paired.
                let t = transpose4(r.map(|y| y.0));
                [
                    Y8(_mm256_permute2f128_ps::<0x20>(t[0], t[1])),
                    Y8(_mm256_permute2f128_ps::<0x20>(t[2], t[3])),
                    Y8(_mm256_permute2f128_ps::<0x31>(t[0], t[1])),
                    Y8(_mm256_permute2f128_ps::<0x31>(t[2], t[3])),
                ]
            }
        }

        #[inline(always)]
        fn interleave2([e, o]: [Y8; 2]) -> [Y8; 2] {
            // Safety: see `Y8`.
            unsafe {
                // Per half: [e0 o0 e1 o1], [e2 o2 e3 o3]; then the halves paired.
                let lo = _mm256_unpacklo_ps(e.0, o.0);
                let hi = _mm256_unpackhi_ps(e.0, o.0);
                [
                    Y8(_mm256_permute2f128_ps::<0x20>(lo, hi)),
                    Y8(_mm256_permute2f128_ps::<0x31>(lo, hi)),
                ]
            }
        }

        #[inline(always)]
        fn mul_add(self, a: Y8, b: Y8) -> Y8 {
            // Safety: FMA, see `Y8`.
            unsafe { Y8(_mm256_fmadd_ps(self.0, a.0, b.0)) }
        }
    }

    impl std::ops::Add for Y8 {
        type Output = Y8;
        #[inline(always)]
        fn add(self, b: Y8) -> Y8 {
            // Safety: see `Y8`.
            unsafe { Y8(_mm256_add_ps(self.0, b.0)) }
        }
    }

    impl std::ops::Sub for Y8 {
        type Output = Y8;
        #[inline(always)]
        fn sub(self, b: Y8) -> Y8 {
            // Safety: see `Y8`.
            unsafe { Y8(_mm256_sub_ps(self.0, b.0)) }
        }
    }

    impl std::ops::Mul<f32> for Y8 {
        type Output = Y8;
        #[inline(always)]
        fn mul(self, b: f32) -> Y8 {
            // Safety: see `Y8`.
            unsafe { Y8(_mm256_mul_ps(self.0, _mm256_set1_ps(b))) }
        }
    }

    impl Lanes for Y8 {}

    /// Sixteen `f32` lanes in an AVX-512 register. Its operations run AVX-512F instructions: a
    /// `Z16` is made and used only inside functions compiled for AVX-512F, which run only where
    /// the CPU has it.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Z16(__m512);

    impl super::Vector16 for Z16 {
        #[inline(always)]
        fn splat(v: f32) -> Z16 {
            // Safety: see `Z16`.
            unsafe { Z16(_mm512_set1_ps(v)) }
        }

        #[inline(always)]
        unsafe fn load(p: *const f32) -> Z16 {
            // Safety: the caller's contract; AVX-512F: see `Z16`.
            unsafe { Z16(_mm512_loadu_ps(p)) }
        }

        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // Safety: as `load`.
            unsafe { _mm512_storeu_ps(p, self.0) }
        }

        #[inline(always)]
        fn mul_add(self, a: Z16, b: Z16) -> Z16 {
            // Safety: see `Z16`.
            unsafe { Z16(_mm512_fmadd_ps(self.0, a.0, b.0)) }
        }

        #[inline(always)]
        fn prefetch(p: *const f32) {
            // Safety: a prefetch reads nothing and faults on no address (SSE).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
        }
    }

    /// Lane indices into two 512-bit registers `(a, b)` for `_mm512_permutex2var_ps`: 0–15
    /// name `a`'s lanes, 16–31 `b`'s. `EVEN[k] = 2k`, `ODD[k] = 2k + 1`; `LOW` and `HIGH`
    /// interleave the first and the last eight lanes of `a` and `b`.
    const EVEN: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
    const ODD: [i32; 16] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];
    const LOW: [i32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
    const HIGH: [i32; 16] = [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];

    /// `r[k] = [a | b][idx[k]]`.
    #[inline(always)]
    fn pick(a: __m512, idx: &[i32; 16], b: __m512) -> __m512 {
        // Safety: sixteen indices are read; AVX-512F: see `Z16`.
        unsafe { _mm512_permutex2var_ps(a, _mm512_loadu_si512(idx.as_ptr().cast()), b) }
    }

    impl Vector for Z16 {
        const LANES: usize = 16;
        type Half = Y8;

        #[inline(always)]
        fn load(s: &[f32]) -> Z16 {
            let s = &s[..16];
            // Safety: sixteen floats are there; AVX-512F: see `Z16`.
            unsafe { Z16(_mm512_loadu_ps(s.as_ptr())) }
        }

        #[inline(always)]
        fn store(self, s: &mut [f32]) {
            let s = &mut s[..16];
            // Safety: as `load`.
            unsafe { _mm512_storeu_ps(s.as_mut_ptr(), self.0) }
        }

        #[inline(always)]
        fn splat(v: f32) -> Z16 {
            // Safety: see `Z16`.
            unsafe { Z16(_mm512_set1_ps(v)) }
        }

        #[inline(always)]
        fn max(self, v: f32) -> Z16 {
            // As `Y8::max`: `vmaxps` gives its second operand where either is NaN. Safety: see
            // `Z16`.
            unsafe { Z16(_mm512_max_ps(_mm512_set1_ps(v), self.0)) }
        }

        #[inline(always)]
        fn deinterleave2(s: &[f32]) -> [Z16; 2] {
            let (a, b) = (Z16::load(s), Z16::load(&s[16..32]));
            [Z16(pick(a.0, &EVEN, b.0)), Z16(pick(a.0, &ODD, b.0))]
        }

        #[inline(always)]
        fn deinterleave4(s: &[f32]) -> [Z16; 4] {
            let v: [Z16; 4] = std::array::from_fn(|k| Z16::load(&s[16 * k..64]));
            // The even and the odd floats of each half of the 64, then of those: s[4k] and
            // s[4k + 2] are the even floats' even and odd ones.
            let [e0, o0] = [&EVEN, &ODD].map(|i| pick(v[0].0, i, v[1].0));
            let [e1, o1] = [&EVEN, &ODD].map(|i| pick(v[2].0, i, v[3].0));
            [
                Z16(pick(e0, &EVEN, e1)),
                Z16(pick(o0, &EVEN, o1)),
                Z16(pick(e0, &ODD, e1)),
                Z16(pick(o0, &ODD, o1)),
            ]
        }

        #[inline(always)]
        fn interleave4([r0, r1, r2, r3]: [Z16; 4]) -> [Z16; 4] {
            // x = (r0, r2) interleaved, y = (r1, r3) interleaved; then x and y interleaved:
            // s[4k] = x[2k] = r0[k], s[4k + 1] = y[2k] = r1[k], and so on.
            let [x0, x1] = Z16::interleave2([r0, r2]);
            let [y0, y1] = Z16::interleave2([r1, r3]);
            let [a, b] = Z16::interleave2([x0, y0]);
            let [c, d] = Z16::interleave2([x1, y1]);
            [a, b, c, d]
        }

        #[inline(always)]
        fn interleave2([e, o]: [Z16; 2]) -> [Z16; 2] {
            [Z16(pick(e.0, &LOW, o.0)), Z16(pick(e.0, &HIGH, o.0))]
        }

        #[inline(always)]
        fn mul_add(self, a: Z16, b: Z16) -> Z16 {
            // Safety: see `Z16`.
            unsafe { Z16(_mm512_fmadd_ps(self.0, a.0, b.0)) }
        }
    }

    impl std::ops::Add for Z16 {
        type Output = Z16;
        #[inline(always)]
        fn add(self, b: Z16) -> Z16 {
            // Safety: see `Z16`.
            unsafe { Z16(_mm512_add_ps(self.0, b.0)) }
        }
    }

    impl std::ops::Sub for Z16 {
        type Output = Z16;
        #[inline(always)]
        fn sub(self, b: Z16) -> Z16 {
            // Safety: see `Z16`.
            unsafe { Z16(_mm512_sub_ps(self.0, b.0)) }
        }
    }

    impl std::ops::Mul<f32> for Z16 {
        type Output = Z16;
        #[inline(always)]
        fn mul(self, b: f32) -> Z16 {
            // Safety: see `Z16`.
            unsafe { Z16(_mm512_mul_ps(self.0, _mm512_set1_ps(b))) }
        }
    }

    impl Lanes for Z16 {}
}

/// The arithmetic the transforms need, on one float or on a [`Vector`]'s lanes: the same
/// expression evaluates lane by lane in the same order, so every form gives the same bits.
pub(crate) trait Lanes:
    Copy
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<f32, Output = Self>
{
}
impl Lanes for f32 {}
impl Lanes for F8 {}
impl Lanes for L16 {}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    thread_local! {
        /// Set while [`with_sixteen_lanes`] runs.
        static SIXTEEN_LANES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Whether [`with_sixteen_lanes`] runs on this thread.
    pub(crate) fn sixteen_lanes() -> bool {
        SIXTEEN_LANES.with(|s| s.get())
    }

    /// Runs `f` with the bodies written for either width (`multiversion!(… on sixteen
    /// lanes)`) on [`L16`] on this thread, whatever the CPU: the sixteen-lane loops and their
    /// eight-lane remainders are tested on any machine (on an AVX-512 CPU the same loops also
    /// run on [`Z16`] without it).
    pub(crate) fn with_sixteen_lanes<T>(f: impl FnOnce() -> T) -> T {
        let before = SIXTEEN_LANES.with(|s| s.replace(true));
        let out = f();
        SIXTEEN_LANES.with(|s| s.set(before));
        out
    }

    /// Floats with distinct bits, some negative, one NaN (lane 5 of the first vector).
    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                if i == 5 {
                    f32::NAN
                } else {
                    (i as f32 * 0.37 - 3.0) * if i % 3 == 0 { -1.0 } else { 1.0 }
                }
            })
            .collect()
    }

    /// A vector's lanes as bits.
    #[inline(always)]
    fn lanes<V: Vector>(v: V) -> Vec<u32> {
        let mut o = vec![0.0; V::LANES];
        v.store(&mut o);
        o.into_iter().map(f32::to_bits).collect()
    }

    /// The lanes of every operation, in order: the same bits from every [`Vector`] of a width.
    #[inline(always)]
    fn every_op<V: Vector>() -> Vec<u32> {
        let s = ramp(80);
        let (a, b) = (V::load(&s), V::load(&s[9..]));
        let mut out = vec![
            lanes(a + b),
            lanes(a - b),
            lanes(a * 2.5),
            lanes(a.max(0.0)),
            lanes(b.max(-1.0)),
            lanes(V::splat(-0.75)),
        ];
        out.extend(V::deinterleave2(&s[3..]).map(lanes));
        out.extend(V::deinterleave4(&s[1..]).map(lanes));
        out.extend(V::interleave4(V::deinterleave4(&s[2..])).map(lanes));
        out.extend(V::interleave4([a, b, a + b, a - b]).map(lanes));
        out.extend(V::interleave2([a, b]).map(lanes));
        out.extend(V::interleave2(V::deinterleave2(&s[7..])).map(lanes));
        out.concat()
    }

    /// Each shuffle against its definition on [`Vector::LANES`] lanes, and ReLU keeping a NaN
    /// lane NaN.
    #[inline(always)]
    fn does_what_it_says<V: Vector>() {
        let n = V::LANES;
        let s = ramp(80);
        let bits = |i: usize| s[i].to_bits();
        let [e, o] = V::deinterleave2(&s[3..]);
        assert_eq!(
            lanes(e),
            (0..n).map(|k| bits(3 + 2 * k)).collect::<Vec<_>>()
        );
        assert_eq!(
            lanes(o),
            (0..n).map(|k| bits(4 + 2 * k)).collect::<Vec<_>>()
        );
        let p = V::deinterleave4(&s[1..]);
        for (r, p) in p.into_iter().enumerate() {
            let want: Vec<u32> = (0..n).map(|k| bits(1 + 4 * k + r)).collect();
            assert_eq!(lanes(p), want, "phase {r}");
        }
        let back: Vec<u32> = V::interleave4(p).into_iter().flat_map(lanes).collect();
        assert_eq!(back, (1..1 + 4 * n).map(bits).collect::<Vec<_>>());
        let back: Vec<u32> = V::interleave2([e, o]).into_iter().flat_map(lanes).collect();
        assert_eq!(back, (3..3 + 2 * n).map(bits).collect::<Vec<_>>());
        assert!(f32::from_bits(lanes(V::load(&s).max(0.0))[5]).is_nan());
        assert_eq!(lanes(V::load(&s[1..]).max(0.0))[0], 0.0f32.to_bits());
    }

    #[test]
    fn the_portable_lanes_do_what_they_say() {
        does_what_it_says::<F8>();
        does_what_it_says::<L16>();
        assert_eq!(
            (F8::LANES, L16::LANES, <L16 as Vector>::Half::LANES),
            (8, 16, 8)
        );
    }

    /// [`Vector::mul_add`]: fused on [`Y8`], two roundings on [`F8`].
    fn mul_adds<V: Vector>() -> Vec<u32> {
        let s = ramp(40);
        let mut o = [0.0; 8];
        V::load(&s[1..])
            .mul_add(V::load(&s[11..]), V::load(&s[21..]))
            .store(&mut o);
        o.map(f32::to_bits).to_vec()
    }

    #[test]
    fn mul_add_rounds_as_it_says() {
        let s = ramp(40);
        let (a, b, c) = (&s[1..9], &s[11..19], &s[21..29]);
        let twice: Vec<u32> = (0..8).map(|k| (a[k] * b[k] + c[k]).to_bits()).collect();
        assert_eq!(mul_adds::<F8>(), twice);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            let fused: Vec<u32> = (0..8).map(|k| a[k].mul_add(b[k], c[k]).to_bits()).collect();
            assert_eq!(mul_adds::<Y8>(), fused);
            // The inputs are such that the two differ somewhere, so the check above can fail.
            assert_ne!(fused, twice);
        }
    }

    /// The lanes of every [`Vector16`] operation, in order.
    #[inline(always)]
    fn every_op16<W: Vector16>() -> Vec<u32> {
        let s = ramp(64);
        let lanes = |v: W| {
            let mut o = [0.0f32; 16];
            // Safety: o holds sixteen floats.
            unsafe { v.store(o.as_mut_ptr()) };
            o.map(f32::to_bits)
        };
        // Safety: s holds 64 floats.
        let (a, b, c) = unsafe {
            (
                W::load(s.as_ptr()),
                W::load(s[17..].as_ptr()),
                W::load(s[40..].as_ptr()),
            )
        };
        [
            lanes(a),
            lanes(W::splat(-0.75)),
            lanes(a.mul_add(b, c)),
            lanes(W::splat(1.5).mul_add(b, a)),
        ]
        .concat()
    }

    #[test]
    fn sixteen_lanes_fuse_and_equal_the_avx512_ones() {
        let s = ramp(64);
        let fused: Vec<u32> = (0..16)
            .map(|k| s[k].mul_add(s[17 + k], s[40 + k]).to_bits())
            .collect();
        let portable = every_op16::<L16>();
        assert_eq!(portable[32..48], fused[..]);
        assert!(
            portable[..16]
                .iter()
                .zip(&s)
                .all(|(a, b)| *a == b.to_bits())
        );
        #[cfg(target_arch = "x86_64")]
        {
            if !std::is_x86_feature_detected!("avx512f") {
                eprintln!("no AVX-512F on this CPU: the AVX-512 lanes are not run");
                return;
            }
            #[target_feature(enable = "avx512f")]
            fn wide() -> Vec<u32> {
                every_op16::<Z16>()
            }
            // Safety: the CPU has AVX-512F.
            assert_eq!(unsafe { wide() }, portable);
        }
    }

    #[test]
    fn avx_lanes_equal_the_portable_ones() {
        #[cfg(target_arch = "x86_64")]
        {
            if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
                eprintln!("no AVX2 on this CPU: the AVX lanes are not run");
                return;
            }
        }
        does_what_it_says::<Y8>();
        assert_eq!(every_op::<Y8>(), every_op::<F8>());
    }

    #[test]
    fn avx512_lanes_equal_the_portable_ones() {
        #[cfg(target_arch = "x86_64")]
        {
            if !std::is_x86_feature_detected!("avx512f") {
                eprintln!("no AVX-512F on this CPU: the AVX-512 lanes are not run");
                return;
            }
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn wide() -> Vec<u32> {
                does_what_it_says::<Z16>();
                assert_eq!(<Z16 as Vector>::Half::LANES, 8);
                every_op::<Z16>()
            }
            // Safety: the CPU has AVX-512F (and so AVX2 and FMA).
            assert_eq!(unsafe { wide() }, every_op::<L16>());
        }
    }
}
