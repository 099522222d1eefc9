//! The float type a model computes in ([`Precision`]): mixed-precision training
//! ([`crate::train::amp`]) and reduced-precision inference name it.

use burn::tensor::FloatDType;

/// The float type a model computes in. Training keeps f32 master weights and casts a compute
/// copy to this type; inference casts the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere (the reference).
    #[default]
    F32,
    /// f32 storage with relaxed (possibly reduced) precision arithmetic where the backend
    /// offers it (CubeCL's `flex32`).
    Flex32,
    /// IEEE half precision: half the memory traffic, tensor-core matmuls.
    F16,
    /// bfloat16: f32's range with 8 mantissa bits.
    Bf16,
}

impl Precision {
    /// Every precision, in the order of their names' documentation.
    pub const ALL: [Precision; 4] = [
        Precision::F32,
        Precision::Flex32,
        Precision::F16,
        Precision::Bf16,
    ];

    /// The lower-case name (`f32`, `flex32`, `f16`, `bf16`), as parsed by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Flex32 => "flex32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    /// Burn's float type of this precision.
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Flex32 => FloatDType::Flex32,
            Precision::F16 => FloatDType::F16,
            Precision::Bf16 => FloatDType::BF16,
        }
    }
}

crate::named::impl_named!(Precision, "precision");
