//! The fast CPU inference form of a [`CenterNet`]: the network compiled once into host memory
//! and run by its own kernels instead of Burn's generic operations.
//!
//! What compiling does (the Burn module stays the reference, the training form and the GPU path):
//! - every BatchNorm is folded into the convolution before it (weights and bias);
//! - bias, the residual add of a block and ReLU are fused into the convolution's GEMM epilogue;
//! - convolutions are column-tile im2col + GEMM (`gemm` crate), 1×1 convolutions plain GEMM,
//!   3×3 stride-1 convolutions Winograd F(2×2, 3×3) or F(4×4, 3×3) (`winograd`), their
//!   transforms on 256-bit registers where the CPU has AVX2, on 512-bit ones where it has
//!   AVX-512F (`simd`), their GEMMs on weights packed
//!   into panels once (`panel`: six output channels × 16 tiles per kernel call on AVX2, sixteen
//!   × 16 on 512-bit registers where the CPU has AVX-512F), the 7×7 stems direct on that
//!   kernel without a column matrix (`direct`, where the CPU has AVX2);
//! - the six heads' first 3×3 convolutions run as one (their output channels stacked); where
//!   that runs as Winograd, each head's output 1×1 convolution reads its slice of a block of
//!   rows while it is in cache, so the stacked map is never written out;
//! - transposed convolutions are split into stride-1 phase convolutions (full; the four
//!   phases of a 4×4 stride-2 one run as one Winograd F(4×4, 3×3) convolution where the
//!   policy gives the map F(4×4)) or gathered directly (depthwise, DLA's bilinear
//!   up-sampling);
//! - DCNv2 samples bilinearly into the column buffer, then one GEMM;
//! - what inference never reads is dropped: every Hourglass stack's heads but the last, and the
//!   dead `project` of DLA's depth-2 trees.
//!
//! Activations stay on the host between layers, channels first; only the network input and the
//! head outputs cross the Burn boundary (`into_data`/`from_data`, zero-copy on flex). The same
//! code serves flex and ndarray. [`FastCenterNet::compile`] errors on a layer shape it does not
//! support; callers then keep the generic path.

pub(crate) mod conv;
mod dcn;
pub(crate) mod deconv;
mod direct;
pub(crate) mod layers;
pub(crate) mod map;
mod nets;
mod panel;
mod pool;
pub mod profile;
pub mod simd;
mod winograd;

use burn::tensor::{Device, Tensor, TensorData};

pub use layers::WinogradTiles;
pub(crate) use map::{Map, View};
pub(crate) use nets::FHead;
use nets::{FDlaSeg, FHeads, FHourglass, FResNet};
pub use pool::set_keep_pool_awake;

use super::centernet::{Backbone, CenterNet};
use super::heads::HeadOutputs;
use crate::codec::heads::Heads;
use crate::error::{Error, Result};

/// Keeps the memory the process frees for its next allocations instead of returning it to
/// the operating system, on glibc (Linux); elsewhere it does nothing and returns `false`.
///
/// Every forward pass allocates its activation maps afresh, and glibc hands maps from 128 KiB
/// up (its threshold grows to 32 MiB at most) straight back to the kernel when they are freed:
/// the next pass then faults each page in again, zeroed by the kernel. At 512 the heads' map
/// alone is 100 MB; mdla34@512 faulted in about 160 MB per image, about 20 % of its forward time
/// on a 2-core EPYC (benches/RESULTS.md). After this call the process keeps its peak memory
/// and reuses it (on a thread other than the main one, glibc still maps a single allocation
/// larger than its thread heaps, 64 MiB, afresh). It sets glibc's `M_MMAP_THRESHOLD` and
/// `M_TRIM_THRESHOLD` for the whole process, so an application calls it once, at start-up, if
/// that suits it (`deepmark` does); the same can be had without code from the environment:
/// `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647`.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Safety: `mallopt` only sets allocator parameters; glibc serialises it with malloc.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

enum FBackbone {
    Resnet(Box<FResNet>),
    Dla(Box<FDlaSeg>),
    Hourglass(Box<FHourglass>),
}

/// A [`CenterNet`] compiled for inference on the CPU (last stack only).
pub struct FastCenterNet {
    backbone: FBackbone,
    heads: FHeads,
}

impl std::fmt::Debug for FastCenterNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastCenterNet")
    }
}

impl FastCenterNet {
    /// Reads the model's weights once and folds/fuses them (see the module docs), with the
    /// default (fastest) choice of Winograd convolutions.
    pub fn compile(model: &CenterNet) -> Result<Self> {
        Self::compile_with(model, WinogradTiles::Auto)
    }

    /// [`compile`](Self::compile) with a chosen form for the 3×3 stride-1 convolutions. Their
    /// Winograd weights are made the first time a map size needs them.
    pub fn compile_with(model: &CenterNet, winograd: WinogradTiles) -> Result<Self> {
        layers::compiling_with(winograd, || Self::build(model))
    }

    fn build(model: &CenterNet) -> Result<Self> {
        let backbone = match &model.backbone {
            Backbone::Resnet(m) => FBackbone::Resnet(Box::new(FResNet::new(m)?)),
            Backbone::Dla(m) => FBackbone::Dla(Box::new(FDlaSeg::new(m)?)),
            Backbone::Hourglass(m) => FBackbone::Hourglass(Box::new(FHourglass::new(m)?)),
        };
        let last = model
            .heads
            .last()
            .ok_or_else(|| Error::Backend("the model has no heads".into()))?;
        Ok(FastCenterNet {
            backbone,
            heads: FHeads::new(last)?,
        })
    }

    /// Raw heads (before any sigmoid) of one `3 × H × W` image.
    pub fn forward_image(&self, x: View<'_>) -> Heads<Map> {
        pool::pass(|| self.heads_of(&self.features_image(x)))
    }

    /// The backbone's features (what the heads read) of one `3 × H × W` image.
    pub fn features_image(&self, x: View<'_>) -> Map {
        pool::pass(|| match &self.backbone {
            FBackbone::Resnet(m) => m.forward(x),
            FBackbone::Dla(m) => m.forward(x),
            FBackbone::Hourglass(m) => m.forward(x),
        })
    }

    /// Raw heads of backbone features.
    pub fn heads_of(&self, features: &Map) -> Heads<Map> {
        pool::pass(|| self.heads.forward(features))
    }

    /// Raw heads of a batch `(B, 3, H, W)` given as host values.
    pub fn forward_host(&self, data: &[f32], [b, c, h, w]: [usize; 4]) -> Vec<Heads<Map>> {
        let per = c * h * w;
        (0..b)
            .map(|i| {
                self.forward_image(View {
                    c,
                    h,
                    w,
                    data: &data[i * per..(i + 1) * per],
                })
            })
            .collect()
    }

    /// The same contract as [`CenterNet::forward`]: raw heads of the batch, as tensors on the
    /// input's device.
    pub fn forward(&self, x: Tensor<4>) -> Result<HeadOutputs> {
        let dims = x.dims();
        let device = x.device();
        let data = layers::host(x)?;
        let outs = self.forward_host(&data, dims);
        Ok(stack_heads(outs, &device))
    }
}

/// One image's raw host heads → decoder input (sigmoid on the two heatmaps, in place).
pub fn head_maps(heads: Heads<Map>) -> crate::codec::HeadMaps {
    let size = [heads.hm.h, heads.hm.w];
    let (num_classes, num_groups) = (heads.hm.c, heads.hm_hp.c);
    let mut maps = heads.map(|m| m.data);
    profile::module("heads", || {
        profile::op(
            || ("sigmoid".into(), 0.0),
            || {
                // On the threads of the pool, in chunks of 16 KiB (libm's `exp` per value).
                use rayon::prelude::*;
                for m in [&mut maps.hm, &mut maps.hm_hp] {
                    m.par_chunks_mut(4096).for_each(|c| {
                        for v in c {
                            *v = map::sigmoid(*v);
                        }
                    });
                }
            },
        )
    });
    crate::codec::HeadMaps {
        size,
        num_classes,
        num_groups,
        maps,
    }
}

/// Per-image host heads → batched tensors.
fn stack_heads(outs: Vec<Heads<Map>>, device: &Device) -> HeadOutputs {
    let b = outs.len();
    let shape = outs
        .first()
        .map_or_else(Heads::default, |o| o.as_ref().map(|m| [b, m.c, m.h, m.w]));
    let mut cat: Heads<Vec<f32>> = Heads::default();
    for o in outs {
        cat = cat.zip(o).map(|(mut v, m)| {
            v.extend_from_slice(&m.data);
            v
        });
    }
    cat.zip(shape)
        .map(|(v, s)| Tensor::<4>::from_data(TensorData::new(v, s), device))
}

/// Whether `device` is one of the CPU backends the fast path serves (flex, ndarray).
pub fn is_host_cpu(device: &Device) -> bool {
    #[allow(unused_mut)]
    let mut cpu = false;
    #[cfg(feature = "flex")]
    {
        cpu |= *device == Device::flex();
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    {
        cpu |= *device == Device::ndarray();
    }
    let _ = device;
    cpu
}

#[cfg(test)]
mod tests {
    /// Page faults of the calling thread so far.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn faults() -> i64 {
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // Safety: `u` is a valid rusage to fill.
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
        u.ru_minflt + u.ru_majflt
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_maps_are_reused_without_faulting_pages_in_again() {
        assert!(super::keep_freed_memory());
        // A 40 MiB map (over glibc's largest dynamic threshold, 32 MiB: without the call it is
        // mapped and unmapped each time; under the 64 MiB of a thread's arena heap, as the
        // test runs on a thread of its own), written, freed, then allocated and written again.
        let n = 10 << 20;
        let touch = || {
            let mut v = vec![0.0f32; n];
            for i in (0..n).step_by(1024) {
                v[i] = i as f32;
            }
            std::hint::black_box(&v);
        };
        let a = faults();
        touch();
        let b = faults();
        touch();
        let c = faults();
        // The first time faults its 10,240 pages in; the second reuses them.
        assert!(b - a > 5_000, "first map: {} faults", b - a);
        assert!(c - b < 1_000, "second map: {} faults", c - b);
    }
}
