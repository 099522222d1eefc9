//! Choosing a device by name (`--backend`, `--precision`, `--devices`) and the GPU kernel cache:
//! the program's side of devices. The library never picks one.

use anyhow::{Result, anyhow, bail};
use burn::tensor::{Device, FloatDType};

use deepmark::Precision;

/// A Burn backend chosen by name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// burn-flex: pure-Rust CPU backend (default; training and inference).
    Flex,
    /// burn-ndarray: CPU inference (its convolution backward is ~40× slower than flex).
    Ndarray,
    /// wgpu: GPU through Vulkan/Metal/DX12 (or lavapipe, Mesa's software Vulkan). With the
    /// `vulkan` feature, wgpu settles on Vulkan wherever it exists and compiles SPIR-V there.
    Wgpu,
    /// wgpu pinned to Vulkan, kernels compiled to SPIR-V: cooperative-matrix (tensor-core)
    /// matmul tiles where the driver offers `VK_KHR_cooperative_matrix`. Fails rather than
    /// falling back to another graphics API.
    Vulkan,
}

impl BackendKind {
    /// Every backend, in `--backend`'s order.
    pub const ALL: [BackendKind; 4] = [
        BackendKind::Flex,
        BackendKind::Ndarray,
        BackendKind::Wgpu,
        BackendKind::Vulkan,
    ];

    /// The name `--backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Vulkan => "vulkan",
        }
    }

    /// The device of this backend, or an error naming the missing cargo feature. For `wgpu` a
    /// tiny computation is run first so that a missing adapter becomes an error, not a panic.
    pub fn device(self) -> Result<Device> {
        self.device_with(Precision::F32)
    }

    /// [`device`](Self::device) computing in `precision` by default (Burn's
    /// `Device::configure`): tensors created on it, loaded weights included, take that float
    /// type. A device's float type is set once per process: asking for another after it was
    /// used is an error, as is a type the backend cannot compute in.
    pub fn device_with(self, precision: Precision) -> Result<Device> {
        let mut device = self.unprobed()?;
        if precision != Precision::F32 || device.settings().float_dtype != FloatDType::F32 {
            device
                .configure(precision.dtype())
                .map_err(|e| anyhow!("--precision {precision} on the {self} backend: {e}"))?;
        }
        match self {
            BackendKind::Wgpu | BackendKind::Vulkan => probe_gpu(self, device),
            BackendKind::Flex | BackendKind::Ndarray => Ok(device),
        }
    }

    /// The device, before any tensor touches it.
    fn unprobed(self) -> Result<Device> {
        match self {
            BackendKind::Flex => Ok(Device::flex()),
            #[allow(deprecated)]
            BackendKind::Ndarray => Ok(Device::ndarray()),
            BackendKind::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::default())),
            #[cfg(feature = "vulkan")]
            BackendKind::Vulkan => Ok(Device::vulkan(burn::tensor::DeviceKind::default())),
            #[cfg(not(feature = "vulkan"))]
            BackendKind::Vulkan => bail!(
                "backend 'vulkan' is not compiled in: build with the deepmark-cli cargo feature \
                 'vulkan' (`cargo xtask … --backend vulkan` does)"
            ),
        }
    }
}

impl BackendKind {
    /// `n` distinct devices of this backend for data-parallel training: the first `n` GPUs
    /// the graphics API lists. The CPU backends are one device each (and already use every
    /// core), so they accept only `n = 1`.
    pub fn devices(self, n: usize) -> Result<Vec<Device>> {
        if n <= 1 {
            return Ok(vec![self.device()?]);
        }
        let listed: Vec<Device> = match self {
            BackendKind::Wgpu => Device::enumerate(burn::tensor::DeviceType::Wgpu).into_vec(),
            #[cfg(feature = "vulkan")]
            BackendKind::Vulkan => Device::enumerate(burn::tensor::DeviceType::Vulkan).into_vec(),
            BackendKind::Flex | BackendKind::Ndarray => bail!(
                "--devices {n}: {self} is one CPU device (and already uses every core); \
                 data-parallel training needs --backend wgpu or vulkan and {n} GPUs"
            ),
            #[cfg(not(feature = "vulkan"))]
            BackendKind::Vulkan => {
                return Err(self.device().err().unwrap_or_else(|| anyhow!("vulkan")));
            }
        };
        if listed.len() < n {
            bail!(
                "--devices {n}: the {self} backend lists {} device(s) on this machine",
                listed.len()
            );
        }
        listed
            .into_iter()
            .take(n)
            .map(|d| probe_gpu(self, d))
            .collect()
    }
}

/// Runs a tiny computation on a GPU device so that a missing adapter becomes an error, not a
/// panic later.
fn probe_gpu(kind: BackendKind, device: Device) -> Result<Device> {
    use burn::tensor::Tensor;
    let probe = std::panic::catch_unwind(|| {
        let t = Tensor::<1>::from_floats([1.0, 2.0], &device);
        let sum: f32 = t.sum().into_scalar();
        sum
    });
    match probe {
        Ok(sum) if (sum - 3.0).abs() < 1e-6 => Ok(device),
        Ok(_) => bail!("the {kind} device computed a wrong result; use --backend flex"),
        Err(_) => bail!(
            "no usable {kind} adapter (no GPU, and no software Vulkan such as Debian's \
             mesa-vulkan-drivers); use --backend flex"
        ),
    }
}

impl std::str::FromStr for BackendKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|b| b.name()).collect();
                anyhow!(
                    "unknown backend '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the GPU backends keep what they learn about a machine: CubeCL's autotune results
/// (the fastest kernel per operation and shape), compiled kernels and throughput
/// measurements, in one database file (`<dir>/<environment>.db`, an embedded Turso/SQLite
/// file). With it a second run of the same command starts at full speed instead of tuning
/// every shape again. CubeCL's default directory is `target/environment` under the outermost
/// Cargo workspace above the working directory, else the user cache (`~/.cache/cubecl`);
/// a `cubecl.toml` (`[environment] path = …`) can set it, and [`use_dir`] overrides both.
pub mod kernel_cache {
    use std::path::{Path, PathBuf};

    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    use burn::cubecl::environment;

    use anyhow::{Context, Result};

    /// Keeps the cache in `dir` (created if missing). Call it before the first GPU device is
    /// used; the rest of CubeCL's configuration (a `cubecl.toml`, `CUBECL_*` variables) still
    /// applies.
    pub fn use_dir(dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the kernel cache {}", dir.display()))?;
        // Load the configuration first: loading it sets the root it names, which must not
        // override this one afterwards.
        let _ = CubeClRuntimeConfig::get();
        environment::set_root(dir);
        Ok(())
    }

    /// The database file of the active cache.
    pub fn file() -> PathBuf {
        let _ = CubeClRuntimeConfig::get();
        environment::path()
    }

    /// `(namespace, entries)` of what the active cache holds durably (autotune namespaces
    /// are named `autotune/…`).
    pub fn summary() -> Vec<(String, u64)> {
        let _ = CubeClRuntimeConfig::get();
        environment::namespaces()
            .into_iter()
            .map(|s| (s.namespace, s.entries))
            .collect()
    }
}
