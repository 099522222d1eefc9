//! Casting a module's floats (weights and BatchNorm statistics) to another float type, for
//! reduced-precision inference (`--precision`).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{FloatDType, Tensor};

struct Cast(FloatDType);

impl ModuleMapper for Cast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

/// `module` with every float parameter and running statistic cast to `dtype`.
pub fn cast_module<M: Module>(module: M, dtype: FloatDType) -> M {
    module.map(&mut Cast(dtype))
}
