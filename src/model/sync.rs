//! BatchNorm running statistics made current before weights are saved.
//!
//! Burn's `RunningState` keeps each training step's new running mean and variance pending (per
//! thread) until the next step reads them, and module snapshots read the last *synchronised*
//! value: weights saved after an epoch carried the statistics of one step before. An
//! uninterrupted run then continued from the pending value while a resumed one started from the
//! saved one — found by the kill storm (`tests/storm.rs`: running means 0.1 apart one epoch
//! after a resume, every trained weight equal). [`SyncRunningStats::sync_running_stats`] folds
//! the pending values in (on the training thread, which holds them), so what is saved is what
//! training goes on with.

use burn::nn::BatchNorm;

use super::centernet::{Backbone, CenterNet};
use super::dcn::DeformConvBlock;
use super::dla::{BasicBlock, Dla, Tree1, Tree2};
use super::dla_up::{DlaSeg, DlaUp, IdaUp};
use super::hourglass::{Convolution, Hourglass, KpLevel, KpModule, Residual};
use super::layers::ConvBn;
use super::resnet::{Deconv, ResBlock, ResNet};

/// Modules holding BatchNorm layers.
pub trait SyncRunningStats {
    /// Folds the running statistics' pending updates of this thread into their values.
    fn sync_running_stats(&self);
}

impl SyncRunningStats for BatchNorm {
    fn sync_running_stats(&self) {
        let _ = self.running_mean.value_sync();
        let _ = self.running_var.value_sync();
    }
}

impl<T: SyncRunningStats> SyncRunningStats for Option<T> {
    fn sync_running_stats(&self) {
        if let Some(m) = self {
            m.sync_running_stats();
        }
    }
}

impl<T: SyncRunningStats> SyncRunningStats for Vec<T> {
    fn sync_running_stats(&self) {
        for m in self {
            m.sync_running_stats();
        }
    }
}

/// `impl SyncRunningStats for $t` syncing the listed fields.
macro_rules! sync_fields {
    ($t:ty: $($f:ident),+) => {
        impl SyncRunningStats for $t {
            fn sync_running_stats(&self) {
                $(self.$f.sync_running_stats();)+
            }
        }
    };
}

sync_fields!(ConvBn: bn);
sync_fields!(ResBlock: bn1, bn2, bn3, downsample);
sync_fields!(Deconv: bn);
sync_fields!(ResNet: bn1, layer1, layer2, layer3, layer4, deconv_layers);
sync_fields!(BasicBlock: bn1, bn2);
sync_fields!(Tree1: tree1, tree2, root, project);
sync_fields!(Tree2: tree1, tree2, project);
sync_fields!(Dla: base_layer, level0, level1, level2, level3, level4, level5);
sync_fields!(DeformConvBlock: actf);
sync_fields!(IdaUp: proj, node);
sync_fields!(DlaUp: ida);
sync_fields!(DlaSeg: base, dla_up, ida_up);
sync_fields!(Convolution: bn);
sync_fields!(Residual: bn1, bn2, skip);
sync_fields!(KpLevel: up1, low1, low3);
sync_fields!(KpModule: levels, inner);
sync_fields!(Hourglass: pre_conv, pre_res, kps, cnvs, inters, inters_, cnvs_);

impl SyncRunningStats for Backbone {
    fn sync_running_stats(&self) {
        match self {
            Backbone::Resnet(m) => m.sync_running_stats(),
            Backbone::Dla(m) => m.sync_running_stats(),
            Backbone::Hourglass(m) => m.sync_running_stats(),
        }
    }
}

sync_fields!(CenterNet: backbone);
