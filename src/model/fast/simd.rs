//! The vector width of this crate's own hot loops (today the Winograd input and output
//! transforms, the Winograd GEMM kernel and the stride-2 column copies), chosen once per
//! process from the CPU: such a function is compiled three times — for AVX-512F, for AVX2 +
//! FMA, and for the target's baseline — and the `multiversion!` macro calls the widest copy
//! the CPU runs, on AVX registers (`Y8`, eight lanes, in both AVX copies) or on plain arrays
//! (`F8`). (The `gemm` crate dispatches its own kernels the same way.) Loops not wrapped this
//! way are vectorised for x86-64's baseline, SSE2, only.
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
/// [`Y8`] (AVX registers), the baseline one on [`F8`]. With `unsafe fn`, `name` and `body` are
/// unsafe functions with the same contract.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            // Safety: a safe body stays safe in every copy.
            unsafe { $crate::model::fast::simd::multiversion!(@dispatch $body; $($arg: $ty),*; $($ret)?) }
        }
    };
    ($(#[$meta:meta])* $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            // Safety: the caller keeps `body`'s contract.
            unsafe { $crate::model::fast::simd::multiversion!(@dispatch $body; $($arg: $ty),*; $($ret)?) }
        }
    };
    (@dispatch $body:ident; $($arg:ident: $ty:ty),*; $($ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments, unused_unsafe)]
            unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                unsafe { $body::<$crate::model::fast::simd::Y8>($($arg),*) }
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

/// Eight `f32` lanes: the operations the transforms and column copies need, each as one
/// instruction (or a few shuffles) on [`Y8`] and as array loops on [`F8`]. Both give the same
/// bits: every lane is the same float operation in the same order.
pub(crate) trait Vector: Lanes {
    /// Lanes per value.
    const LANES: usize = 8;
    /// The first eight floats of `s`.
    fn load(s: &[f32]) -> Self;
    /// Writes the lanes to the first eight floats of `s`.
    fn store(self, s: &mut [f32]);
    /// Every lane `v`.
    fn splat(v: f32) -> Self;
    /// Lane-wise `if x < v { v } else { x }` (`max(x, 0)` is ReLU; a NaN lane stays NaN).
    fn max(self, v: f32) -> Self;
    /// From the first 16 floats of `s`: its even ones (`s[2k]`) and its odd ones (`s[2k + 1]`).
    fn deinterleave2(s: &[f32]) -> [Self; 2];
    /// From the first 32 floats of `s`: its four phases, `r[p][k] = s[4k + p]`.
    fn deinterleave4(s: &[f32]) -> [Self; 4];
    /// The inverse of [`Vector::deinterleave4`]: 32 floats `s[4k + p] = r[p][k]`, returned as
    /// four vectors of eight consecutive floats (`s[8q..8q + 8]` is the `q`-th).
    fn interleave4(r: [Self; 4]) -> [Self; 4];
    /// The inverse of [`Vector::deinterleave2`]: 16 floats `s[2k] = e[k]`, `s[2k + 1] = o[k]`
    /// from `[e, o]`, as two vectors of eight consecutive floats.
    fn interleave2(r: [Self; 2]) -> [Self; 2];
    /// `self · a + b` lane by lane: one rounding on [`Y8`] (an FMA instruction, as
    /// `f32::mul_add`), two on [`F8`] (the baseline has no FMA; `f32::mul_add` there is a
    /// library call). The one operation whose bits differ between the two.
    fn mul_add(self, a: Self, b: Self) -> Self;
}

/// Eight `f32` lanes with element-wise arithmetic written as plain array loops: the baseline
/// copy's [`Vector`] (SSE2 on x86-64; what other targets vectorise it to).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct F8(pub [f32; 8]);

impl Vector for F8 {
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
}

/// Sixteen `f32` lanes as a plain array, with a fused multiply-add per lane (`f32::mul_add`,
/// a library call where the target has no FMA: slow, for tests and for CPUs without AVX-512F
/// only).
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
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The lanes of every operation, in order: the same bits from every [`Vector`].
    fn every_op<V: Vector>() -> Vec<u32> {
        let s = ramp(40);
        let lanes = |v: V| {
            let mut o = [0.0; 8];
            v.store(&mut o);
            o.map(f32::to_bits)
        };
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

    #[test]
    fn the_portable_lanes_do_what_they_say() {
        let s = ramp(40);
        let lanes = |v: F8| v.0;
        let [e, o] = F8::deinterleave2(&s[3..]);
        assert!((0..8).all(|k| lanes(e)[k].to_bits() == s[3 + 2 * k].to_bits()));
        assert!((0..8).all(|k| lanes(o)[k].to_bits() == s[4 + 2 * k].to_bits()));
        let p = F8::deinterleave4(&s[1..]);
        for (r, p) in p.iter().enumerate() {
            assert!((0..8).all(|k| p.0[k].to_bits() == s[1 + 4 * k + r].to_bits()));
        }
        let back: Vec<f32> = F8::interleave4(p).iter().flat_map(|v| v.0).collect();
        assert!(
            back.iter()
                .zip(&s[1..33])
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        let back: Vec<f32> = F8::interleave2([e, o]).iter().flat_map(|v| v.0).collect();
        assert!(
            back.iter()
                .zip(&s[3..19])
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        // ReLU keeps a NaN lane NaN.
        assert!(F8::load(&s).max(0.0).0[5].is_nan());
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
        assert_eq!(every_op::<Y8>(), every_op::<F8>());
    }
}
