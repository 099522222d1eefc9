//! The vector width of this crate's own hot loops (today the Winograd input and output
//! transforms), chosen once per process from the CPU: such a function is compiled three times —
//! for AVX-512F, for AVX2 + FMA, and for the target's baseline — and the `multiversion!` macro
//! calls the widest copy the CPU runs. (The `gemm` crate dispatches its own kernels the same
//! way.) Loops not wrapped this way are vectorised for x86-64's baseline, SSE2, only.
//!
//! A function body wrapped this way must be `#[inline(always)]`, and so must what it calls in
//! its hot loops, so that it is compiled inside each feature-enabled copy.

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
/// `#[inline(always)]` function with the same arguments) compiled for [`level`]. With
/// `unsafe fn`, `name` and `body` are unsafe functions with the same contract.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            // Safety: a safe body stays safe in every copy.
            unsafe { $crate::model::fast::simd::multiversion!(@dispatch $body; $($arg: $ty),*; $($ret)?) }
        }
    };
    ($(#[$meta:meta])* $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            // Safety: the caller keeps `body`'s contract.
            unsafe { $crate::model::fast::simd::multiversion!(@dispatch $body; $($arg: $ty),*; $($ret)?) }
        }
    };
    (@dispatch $body:path; $($arg:ident: $ty:ty),*; $($ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments, unused_unsafe)]
            unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                unsafe { $body($($arg),*) }
            }
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments, unused_unsafe)]
            unsafe fn mid($($arg: $ty),*) $(-> $ret)? {
                unsafe { $body($($arg),*) }
            }
            // The features were found on this CPU by `level`.
            match $crate::model::fast::simd::level() {
                $crate::model::fast::simd::Level::Avx512 => wide($($arg),*),
                $crate::model::fast::simd::Level::Avx2 => mid($($arg),*),
                $crate::model::fast::simd::Level::Baseline => $body($($arg),*),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body($($arg),*)
        }
    }};
}
pub(crate) use multiversion;

/// Eight `f32` lanes with element-wise arithmetic written as plain array loops: inside a
/// [`multiversion!`] body (and everything it calls `#[inline(always)]`) each operation becomes
/// one AVX2 instruction (half an AVX-512 register; two SSE2 ones). Loading into a local value
/// first is what lets the compiler vectorise: loops over several slices at once otherwise need
/// run-time alias checks, which it gives up on past a few pointers and stays scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct F8(pub [f32; 8]);

impl F8 {
    /// Lanes per value.
    pub const LANES: usize = 8;

    /// The first eight floats of `s`.
    #[inline(always)]
    pub fn load(s: &[f32]) -> F8 {
        F8(s[..8].try_into().expect("eight floats"))
    }

    /// Writes the lanes to the first eight floats of `s`.
    #[inline(always)]
    pub fn store(self, s: &mut [f32]) {
        s[..8].copy_from_slice(&self.0);
    }

    /// Every lane `v`.
    #[inline(always)]
    pub fn splat(v: f32) -> F8 {
        F8([v; 8])
    }

    /// Lane-wise maximum with `v` (`max(x, 0)` is ReLU).
    #[inline(always)]
    pub fn max(self, v: f32) -> F8 {
        F8(std::array::from_fn(|k| {
            if self.0[k] < v { v } else { self.0[k] }
        }))
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

/// The arithmetic the transforms need, on one float or on [`F8`] lanes: the same expression
/// evaluates lane by lane in the same order, so both give the same bits.
pub(crate) trait Lanes:
    Copy
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<f32, Output = Self>
{
}
impl Lanes for f32 {}
impl Lanes for F8 {}
