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
