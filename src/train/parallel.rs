//! Data-parallel steps on Burn's multi-device path: each batch is split into shards
//! ([`ShardBatcher`](crate::data::dataset::ShardBatcher)), each shard runs on its own thread
//! through a replica of the model forked onto the shard's device, and the per-device
//! gradients go to [`ModuleOptimizer::step_multi`](burn::optim::ModuleOptimizer::step_multi), which sums them on one device per
//! parameter and updates it there.
//!
//! The arithmetic is CenterNet's `DataParallel` (xingyizhou/CenterNet,
//! `src/lib/trains/base_trainer.py`, averages the per-GPU losses): every shard computes CenterNet's loss on its own images (focal-loss and L1
//! normalisers per shard) and BatchNorm normalises with the shard's own statistics. The shard
//! losses are weighted by their share of the batch, so equal shards give CenterNet's mean.
//! BatchNorm's running statistics stay one value: every worker thread records its update and
//! Burn's `RunningState` averages them at the next read (CenterNet's `DataParallel` kept only
//! the first GPU's).
//!
//! The result depends on the shards, not on the devices: two shards on one device (gradient
//! accumulation) and two shards on two devices compute the same step — the two-device test
//! holds them equal.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread::JoinHandle;

use burn::module::Module;
use burn::optim::{GradientsParams, MultiGradientsParams};
use burn::tensor::Device;

use super::amp;
use super::loss::{LossParts, LossWeights, total_loss};
use crate::Precision;
use crate::data::dataset::{Shard, TrainBatch};
use crate::error::{Error, Result};
use crate::model::CenterNet;

struct Job {
    model: CenterNet,
    device: Device,
    batch: TrainBatch,
    weight: f32,
    loss: LossWeights,
    precision: Precision,
    /// f16's loss scale (1 otherwise).
    scale: f32,
}

struct Done {
    grads: GradientsParams,
    device: Device,
    parts: LossParts,
}

/// One long-lived thread per shard. Long-lived because BatchNorm's running statistics are
/// kept per thread until the next read folds them together: the same threads step after step
/// fold each other's updates.
pub struct ShardPool {
    jobs: Vec<mpsc::Sender<Job>>,
    done: Vec<mpsc::Receiver<std::result::Result<Done, String>>>,
    handles: Vec<JoinHandle<()>>,
}

impl ShardPool {
    /// A pool of `shards` worker threads, one per shard.
    pub fn new(shards: usize) -> Result<Self> {
        let (mut jobs, mut done, mut handles) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..shards {
            let (job_tx, job_rx) = mpsc::channel::<Job>();
            let (done_tx, done_rx) = mpsc::channel();
            let handle = std::thread::Builder::new()
                .name(format!("deepmark-shard-{i}"))
                .spawn(move || {
                    for job in job_rx {
                        let out = catch_unwind(AssertUnwindSafe(|| run_job(job)))
                            .unwrap_or_else(|p| Err(panic_text(&*p)));
                        if done_tx.send(out).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::Training(format!("starting shard thread {i}: {e}")))?;
            jobs.push(job_tx);
            done.push(done_rx);
            handles.push(handle);
        }
        Ok(ShardPool {
            jobs,
            done,
            handles,
        })
    }

    /// Runs every shard of one batch in `precision` and returns the per-device gradients
    /// (of the loss times `scale`: [`amp`]), the batch's loss parts (shard parts
    /// weighted by their share of the images) and its image count.
    pub fn step(
        &self,
        model: &CenterNet,
        shards: Vec<Shard>,
        loss: &LossWeights,
        precision: Precision,
        scale: f32,
    ) -> Result<(MultiGradientsParams, LossParts, usize)> {
        // Left to the shard threads, the first reads of lazily initialized weights would race
        // for the device's random stream.
        model.initialize();
        let images: usize = shards.iter().map(|s| s.batch.input.dims()[0]).sum();
        let mut sent = Vec::with_capacity(shards.len());
        for shard in shards {
            let weight = shard.batch.input.dims()[0] as f32 / images as f32;
            self.jobs[shard.index]
                .send(Job {
                    model: model.clone(),
                    device: shard.device,
                    batch: shard.batch,
                    weight,
                    loss: *loss,
                    precision,
                    scale,
                })
                .map_err(|_| stopped(shard.index))?;
            sent.push(shard.index);
        }
        let mut grads = Vec::with_capacity(sent.len());
        let mut parts = LossParts::default();
        for i in sent {
            let done = self.done[i]
                .recv()
                .map_err(|_| stopped(i))?
                .map_err(|e| Error::Training(format!("shard {i}: {e}")))?;
            parts.add(&done.parts);
            grads.push((done.grads, done.device));
        }
        Ok((MultiGradientsParams { grads }, parts, images))
    }
}

impl Drop for ShardPool {
    fn drop(&mut self) {
        self.jobs.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn stopped(i: usize) -> Error {
    Error::Training(format!("the thread of shard {i} stopped"))
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

/// Forward and backward of one shard on a replica forked onto the shard's device. The loss is
/// scaled by the shard's share (and f16's loss scale) before the backward pass, so the summed
/// gradients are those of the weighted mean; the reported parts are scaled the same way.
fn run_job(job: Job) -> std::result::Result<Done, String> {
    let device = job.device;
    let replica = job.model.fork(&device);
    let stacks = amp::forward_stacks(&replica, job.batch.input.clone(), job.precision);
    let (loss, parts) = total_loss(&stacks, &job.batch, &job.loss);
    let loss = loss.mul_scalar(job.weight * job.scale);
    let grads = GradientsParams::from_grads(loss.backward(), &replica);
    Ok(Done {
        grads,
        device,
        parts: parts.scaled(job.weight),
    })
}

/// One data-parallel step's per-device gradients and loss parts, without the optimizer (one
/// thread per shard, started for this call): for tests and tools. [`ShardPool`] keeps its
/// threads for a whole run.
pub fn shard_gradients(
    model: &CenterNet,
    shards: Vec<Shard>,
    loss: &LossWeights,
) -> Result<(MultiGradientsParams, LossParts)> {
    let n = shards.iter().map(|s| s.index + 1).max().unwrap_or(0);
    let pool = ShardPool::new(n)?;
    let (grads, parts, _) = pool.step(model, shards, loss, Precision::F32, 1.0)?;
    Ok((grads, parts))
}

/// Folds the running statistics the shard threads left pending into their values (Burn's
/// `RunningState::sync`, reached through `valid`), so that what is saved is what the next
/// step reads.
pub fn fold_running_stats(model: &CenterNet) {
    let _ = model.valid();
}
