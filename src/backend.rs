//! Choosing a device by name. The library itself never picks one: this helper is for binaries
//! and tests, and only knows the backends whose cargo features are enabled.

use burn::tensor::Device;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// burn-flex: pure-Rust CPU backend (default; training and inference).
    Flex,
    /// burn-ndarray: CPU inference (its convolution backward is ~40× slower than flex).
    Ndarray,
    /// wgpu: GPU through Vulkan/Metal/DX12 (or lavapipe, Mesa's software Vulkan).
    Wgpu,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Flex, BackendKind::Ndarray, BackendKind::Wgpu];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
        }
    }

    /// The device of this backend, or an error naming the missing cargo feature. For `wgpu` a
    /// tiny computation is run first so that a missing adapter becomes an error, not a panic.
    pub fn device(self) -> Result<Device> {
        match self {
            #[cfg(feature = "flex")]
            BackendKind::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            BackendKind::Ndarray => Ok(Device::ndarray()),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => probe_wgpu(),
            #[allow(unreachable_patterns)]
            other => Err(Error::Backend(format!(
                "backend '{}' is not compiled in: enable the deepmark cargo feature '{}'",
                other.name(),
                other.name()
            ))),
        }
    }
}

#[cfg(feature = "wgpu")]
fn probe_wgpu() -> Result<Device> {
    use burn::tensor::Tensor;
    let probe = std::panic::catch_unwind(|| {
        let device = Device::wgpu(burn::tensor::DeviceKind::default());
        let t = Tensor::<1>::from_floats([1.0, 2.0], &device);
        let sum: f32 = t.sum().into_scalar();
        (device, sum)
    });
    match probe {
        Ok((device, sum)) if (sum - 3.0).abs() < 1e-6 => Ok(device),
        Ok(_) => Err(Error::Backend(
            "the wgpu device computed a wrong result; use --backend flex".into(),
        )),
        Err(_) => Err(Error::Backend(
            "no usable wgpu adapter (no GPU, and no software Vulkan such as Debian's mesa-vulkan-drivers); \
             use --backend flex"
                .into(),
        )),
    }
}

crate::named::impl_named!(BackendKind, "backend");
