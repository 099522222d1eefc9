//! Reduced-precision training (`train --precision f16|bf16|flex32`), as mixed-precision
//! training is usually done (Micikevicius et al., "Mixed Precision Training", ICLR 2018):
//!
//! - **f32 master weights.** The model Adam updates stays f32. Each step runs the network on
//!   a [`compute_copy`]: its trainable weights cast to the compute type *inside* the autodiff
//!   graph, so the backward pass casts every gradient back and it arrives, in f32, on the
//!   master weight.
//! - **BatchNorm in f32** ([`norm`](crate::model::layers::norm)): its weights, running
//!   statistics and mean/variance arithmetic, as PyTorch's autocast keeps them.
//! - **The loss in f32**: the heads are cast back before the focal and L1 losses.
//! - **Dynamic loss scaling for f16** ([`LossScaler`]): f16's smallest normal number is 6e-5,
//!   so small gradients would flush to zero. The loss is multiplied by a scale before the
//!   backward pass and the gradients divided by it after; a step whose gradients overflowed
//!   (inf/NaN) is skipped and the scale halved, and after `growth_interval` good steps in a row
//!   it doubles. The defaults are those of PyTorch's `torch.amp.GradScaler` (initial scale
//!   2^16, growth ×2 every 2000 steps, back-off ×0.5). bfloat16 and flex32 have f32's
//!   exponent range and train without a scale, as PyTorch recommends for bfloat16.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::tensor::{Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::Precision;
use crate::error::{Error, Result};
use crate::model::CenterNet;
use crate::model::heads::HeadOutputs;

/// `train --precision` and its loss scale (part of `train.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AmpConfig {
    /// The float type the network computes in; the weights Adam updates stay f32.
    pub precision: Precision,
    /// f16's loss scale at the start of a run.
    pub init_scale: f32,
    /// Overflow-free steps in a row before the f16 loss scale doubles.
    pub growth_interval: u32,
}

impl Default for AmpConfig {
    /// f32 (no copy, no scale); PyTorch's `GradScaler` defaults for f16.
    fn default() -> Self {
        AmpConfig {
            precision: Precision::F32,
            init_scale: 65536.0,
            growth_interval: 2000,
        }
    }
}

impl AmpConfig {
    /// Mixed precision with the default loss scale.
    pub fn new(precision: Precision) -> Self {
        AmpConfig {
            precision,
            ..Default::default()
        }
    }

    /// Whether gradients go through a dynamic loss scale (f16 only).
    pub fn scaled(&self) -> bool {
        self.precision == Precision::F16
    }

    /// The first of `devices` that cannot compute in the precision, as an error.
    pub fn check_devices(&self, devices: &[Device]) -> Result<()> {
        let precision = self.precision;
        match devices
            .iter()
            .find(|d| !d.supports_dtype(precision.dtype()))
        {
            Some(d) => Err(Error::Training(format!(
                "precision {precision}: the device {d:?} cannot compute in {precision}"
            ))),
            None => Ok(()),
        }
    }

    /// Refuses a non-positive initial scale or a zero growth interval.
    pub fn check(&self) -> Result<()> {
        if !(self.init_scale.is_finite() && self.init_scale > 0.0) || self.growth_interval == 0 {
            return Err(Error::Invalid(format!(
                "loss scale: the initial scale must be a positive number and the growth interval at \
                 least 1 (got {} and {})",
                self.init_scale, self.growth_interval
            )));
        }
        Ok(())
    }
}

/// Casts trainable weights (those that require a gradient) to the compute type, leaving
/// BatchNorm's weights and every running statistic as they are.
struct ComputeCast {
    dtype: FloatDType,
    /// For each module entered: whether its parent is a BatchNorm (Burn's derive passes the
    /// parent's type name when it enters a field).
    in_batch_norm: Vec<bool>,
}

impl ModuleMapper for ComputeCast {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.in_batch_norm
            .push(container_type == "Struct:BatchNorm");
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.in_batch_norm.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let batch_norm = self.in_batch_norm.last().copied().unwrap_or(false);
        let (id, tensor, _) = param.consume();
        if tensor.is_require_grad() && !batch_norm {
            Param::initialized(id, tensor.cast(self.dtype))
        } else {
            Param::initialized(id, tensor)
        }
    }
}

/// The network with its trainable weights cast to `dtype` inside the autodiff graph (the
/// gradients of a forward pass through the copy arrive on `model`'s f32 weights). The copy
/// shares `model`'s BatchNorm layers and running statistics. Any network whose BatchNorm
/// layers go through [`norm`](crate::model::layers::norm) trains this way (CenterNet, CPN,
/// PoseFix's refiner).
pub fn compute_copy<M: Module>(model: &M, dtype: FloatDType) -> M {
    model.clone().map(&mut ComputeCast {
        dtype,
        in_batch_norm: Vec::new(),
    })
}

/// `forward` of `model` on `input`, computed in `precision`: in f32 the plain pass; else the
/// pass of the [`compute_copy`] on the input cast to the compute type, its outputs brought back
/// to f32 (for the loss) by `to_f32`. Every trainer's forward pass goes through here.
pub fn forward_in<M: Module, O>(
    model: &M,
    input: Tensor<4>,
    precision: Precision,
    forward: impl FnOnce(&M, Tensor<4>) -> O,
    to_f32: impl FnOnce(O) -> O,
) -> O {
    if precision == Precision::F32 {
        return forward(model, input);
    }
    let dtype = precision.dtype();
    to_f32(forward(&compute_copy(model, dtype), input.cast(dtype)))
}

/// Every stack's heads for `input`, computed in `precision` and returned in f32 (for the
/// loss). f32 is the plain forward pass.
pub fn forward_stacks(
    model: &CenterNet,
    input: Tensor<4>,
    precision: Precision,
) -> Vec<HeadOutputs> {
    forward_in(
        model,
        input,
        precision,
        |m, x| m.forward_stacks(x),
        |stacks| {
            stacks
                .into_iter()
                .map(|h| HeadOutputs::from_array(h.into_array().map(|t| t.cast(FloatDType::F32))))
                .collect()
        },
    )
}

/// Where f16's dynamic loss scale stands (saved with each checkpoint, so a resumed run goes on
/// with the scale an uninterrupted one has).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    /// The current loss scale.
    pub scale: f32,
    /// Overflow-free steps since the scale last changed.
    pub good_steps: u32,
}

/// Steps skipped in a row before a run gives up: from 2^16, 40 halvings reach 2^-24, below
/// which no f16 gradient survives; gradients that still overflow there are not a scale problem.
pub const MAX_SKIPS_IN_A_ROW: u32 = 40;

/// f16's dynamic loss scale (inactive, scale 1, for the other types).
#[derive(Debug, Clone)]
pub struct LossScaler {
    config: AmpConfig,
    state: LossScale,
    skips_in_a_row: u32,
}

impl LossScaler {
    /// A scaler at the configured start, or where a resumed run left it.
    pub fn new(config: AmpConfig, resumed: Option<LossScale>) -> Self {
        LossScaler {
            config,
            state: resumed.unwrap_or(LossScale {
                scale: config.init_scale,
                good_steps: 0,
            }),
            skips_in_a_row: 0,
        }
    }

    /// Whether the loss is scaled (f16).
    pub fn active(&self) -> bool {
        self.config.scaled()
    }

    /// The factor the loss is multiplied by before the backward pass.
    pub fn scale(&self) -> f32 {
        if self.active() { self.state.scale } else { 1.0 }
    }

    /// `loss` times the scale (unchanged without one).
    pub fn scale_loss(&self, loss: Tensor<1>) -> Tensor<1> {
        if self.active() {
            loss.mul_scalar(self.state.scale)
        } else {
            loss
        }
    }

    /// What to save with a checkpoint (`None` when inactive).
    pub fn state(&self) -> Option<LossScale> {
        self.active().then_some(self.state)
    }

    /// Divides every gradient by the scale and tells whether all of them are finite (one read
    /// from the device per call). Without a scale there is nothing to divide or check: `true`.
    pub fn unscale<M: Module>(&self, grads: &mut GradientsParams, model: &M) -> bool {
        if !self.active() {
            return true;
        }
        let mut v = Unscale {
            grads,
            inv: 1.0 / self.state.scale,
            sum: None,
        };
        model.visit(&mut v);
        // inf and NaN survive a sum (inf − inf is NaN): one finite total means finite
        // gradients. The unscaled gradients are small; their sum cannot overflow f32.
        v.sum
            .map(|s| s.into_scalar::<f32>().is_finite())
            .unwrap_or(true)
    }

    /// [`unscale`](Self::unscale) for every device's gradients of a data-parallel step.
    pub fn unscale_multi<M: Module>(&self, grads: &mut MultiGradientsParams, model: &M) -> bool {
        let mut finite = true;
        for (g, _) in &mut grads.grads {
            finite &= self.unscale(g, model);
        }
        finite
    }

    /// Records a step's outcome: a finite step counts towards growth; an overflow halves the
    /// scale. Errors when [`MAX_SKIPS_IN_A_ROW`] steps in a row were skipped.
    pub fn update(&mut self, finite: bool) -> Result<()> {
        if !self.active() {
            return Ok(());
        }
        if finite {
            self.skips_in_a_row = 0;
            self.state.good_steps += 1;
            if self.state.good_steps >= self.config.growth_interval {
                self.state.scale = (self.state.scale * 2.0).min(f32::MAX / 2.0);
                self.state.good_steps = 0;
            }
            return Ok(());
        }
        self.skips_in_a_row += 1;
        self.state.scale *= 0.5;
        self.state.good_steps = 0;
        if self.skips_in_a_row >= MAX_SKIPS_IN_A_ROW {
            return Err(Error::Training(format!(
                "{} steps in a row had non-finite f16 gradients (loss scale down to {:e}); the \
                 network overflows f16 itself: train in bf16 or f32",
                self.skips_in_a_row, self.state.scale
            )));
        }
        Ok(())
    }
}

/// The per-step decisions of mixed-precision training, in one place for every trainer (the
/// detector's, single-device and data-parallel; CPN's; the refiner's; the train bench):
///
/// - a non-finite loss stops an f32, bf16 or flex32 run; in f16 it is an overflow like any
///   other: the step is skipped and the loss scale backs off;
/// - f16 multiplies the loss by the scale before the backward pass, divides the gradients
///   after, and skips the step when any gradient overflowed ([`LossScaler`]);
/// - [`MAX_SKIPS_IN_A_ROW`] skipped steps in a row stop the run.
///
/// A stop is an [`Error::Training`] that says why; the caller adds where (epoch, step, what
/// is intact).
#[derive(Debug, Clone)]
pub struct AmpSteps {
    scaler: LossScaler,
    /// Steps skipped since the last [`take_skipped`](Self::take_skipped).
    skipped: usize,
}

impl AmpSteps {
    /// At the configured start, or where a resumed run left its loss scale.
    pub fn new(config: AmpConfig, resumed: Option<LossScale>) -> Self {
        AmpSteps {
            scaler: LossScaler::new(config, resumed),
            skipped: 0,
        }
    }

    /// The loss scaler's state.
    pub fn scaler(&self) -> &LossScaler {
        &self.scaler
    }

    /// Steps skipped (f16 overflow) since the last call.
    pub fn take_skipped(&mut self) -> usize {
        std::mem::take(&mut self.skipped)
    }

    /// Whether a step whose loss is (`true`) or is not finite goes on to its backward pass.
    fn loss_ok(&mut self, finite: bool) -> Result<bool> {
        if finite {
            return Ok(true);
        }
        if !self.scaler.active() {
            return Err(Error::Training("non-finite loss".into()));
        }
        self.gradients_ok(false)
    }

    /// Records whether a step's gradients were finite; `false` means the step is skipped.
    fn gradients_ok(&mut self, finite: bool) -> Result<bool> {
        if !finite {
            self.skipped += 1;
        }
        self.scaler.update(finite)?;
        Ok(finite)
    }

    /// One optimizer step of `model` from `loss`, the f32 loss of a forward pass (through
    /// [`compute_copy`] in reduced precision) on the autodiff device; `loss_finite` is whether
    /// the loss read back to the host was finite. Returns `model`, updated unless the step was
    /// skipped.
    pub fn step<M: Module>(
        &mut self,
        optim: &mut ModuleOptimizer,
        lr: f64,
        model: M,
        loss: Tensor<1>,
        loss_finite: bool,
    ) -> Result<M> {
        if !self.loss_ok(loss_finite)? {
            return Ok(model);
        }
        let loss = self.scaler.scale_loss(loss);
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let finite = self.scaler.unscale(&mut grads, &model);
        Ok(if self.gradients_ok(finite)? {
            optim.step(lr, model, grads)
        } else {
            model
        })
    }

    /// [`step`](Self::step) of a data-parallel step, from every device's gradients of the
    /// loss times [`LossScaler::scale`].
    pub fn step_multi<M: Module>(
        &mut self,
        optim: &mut ModuleOptimizer,
        lr: f64,
        model: M,
        mut grads: MultiGradientsParams,
        loss_finite: bool,
    ) -> Result<M> {
        if !self.loss_ok(loss_finite)? {
            return Ok(model);
        }
        let finite = self.scaler.unscale_multi(&mut grads, &model);
        Ok(if self.gradients_ok(finite)? {
            optim.step_multi(lr, model, grads)
        } else {
            model
        })
    }
}

struct Unscale<'a> {
    grads: &'a mut GradientsParams,
    inv: f32,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for Unscale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(g) = self.grads.remove::<D>(param.id) else {
            return;
        };
        let g = g.mul_scalar(self.inv);
        let s = g.clone().sum();
        self.sum = Some(match self.sum.take() {
            Some(acc) => acc.add(s),
            None => s,
        });
        self.grads.register(param.id, g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_backs_off_on_overflow_and_grows_after_the_interval() {
        let mut s = LossScaler::new(
            AmpConfig {
                growth_interval: 3,
                ..AmpConfig::new(Precision::F16)
            },
            None,
        );
        assert_eq!(s.scale(), 65536.0);
        s.update(false).unwrap();
        assert_eq!(s.scale(), 32768.0);
        for _ in 0..2 {
            s.update(true).unwrap();
        }
        assert_eq!(
            s.scale(),
            32768.0,
            "two good steps are not yet the interval"
        );
        s.update(true).unwrap();
        assert_eq!(s.scale(), 65536.0);
        assert_eq!(s.state().unwrap().good_steps, 0);
        // An overflow resets the count of good steps.
        s.update(true).unwrap();
        s.update(false).unwrap();
        assert_eq!(
            s.state().unwrap(),
            LossScale {
                scale: 32768.0,
                good_steps: 0
            }
        );
    }

    #[test]
    fn a_run_that_always_overflows_stops() {
        let mut s = LossScaler::new(AmpConfig::new(Precision::F16), None);
        let mut stopped = None;
        for i in 1..=MAX_SKIPS_IN_A_ROW {
            if let Err(e) = s.update(false) {
                stopped = Some((i, e.to_string()));
                break;
            }
        }
        let (i, msg) = stopped.expect("the scaler gives up");
        assert_eq!(i, MAX_SKIPS_IN_A_ROW);
        assert!(msg.contains("train in bf16 or f32"), "{msg}");
    }

    #[test]
    fn other_types_train_without_a_scale() {
        for p in [Precision::F32, Precision::Bf16, Precision::Flex32] {
            let mut s = LossScaler::new(AmpConfig::new(p), None);
            assert_eq!(s.scale(), 1.0);
            assert_eq!(s.state(), None);
            s.update(false).unwrap();
            assert_eq!(s.scale(), 1.0);
        }
    }

    #[test]
    fn a_resumed_scaler_goes_on_where_it_stopped() {
        let saved = LossScale {
            scale: 1024.0,
            good_steps: 7,
        };
        let s = LossScaler::new(AmpConfig::new(Precision::F16), Some(saved));
        assert_eq!(s.scale(), 1024.0);
        assert_eq!(s.state(), Some(saved));
        assert!(
            AmpConfig {
                init_scale: 0.0,
                ..AmpConfig::default()
            }
            .check()
            .is_err()
        );
        assert!(
            AmpConfig {
                growth_interval: 0,
                ..AmpConfig::default()
            }
            .check()
            .is_err()
        );
    }
}
