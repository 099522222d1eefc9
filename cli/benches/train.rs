//! Train-step time (forward + CenterNet losses + backward + Adam) per landmark scheme on one
//! backbone, input and batch: DeepMark++'s grouping claim (up to 26 % faster steps and 28 %
//! less memory with 62 groups than with all 294 landmarks). Batches come from the synthetic
//! set, generated into a temporary folder.
//!
//!     cargo bench -p deepmark-cli --bench train
//!     DEEPMARK_BENCH_BACKEND=wgpu DEEPMARK_BENCH_ARCH=mdla34 DEEPMARK_BENCH_SIZE=512 \
//!         DEEPMARK_BENCH_BATCH=16 cargo bench -p deepmark-cli --bench train
//!
//! `DEEPMARK_BENCH_DEVICES=N` splits each step over the backend's first N devices (the
//! data-parallel step of `train --devices N`); `DEEPMARK_BENCH_PRECISION=f16|bf16|flex32` runs
//! the step of `train --precision` (the network in that type on f32 weights; f16 with the
//! dynamic loss scale, a skipped step counting as a step).
//!
//! Memory: after each scheme the bench prints the device allocator's reserved bytes (wgpu) and
//! the process's peak resident set (VmHWM). VmHWM only grows, so for CPU memory per scheme run
//! one scheme per process with `DEEPMARK_BENCH_SCHEMES=none` etc. (see benches/RESULTS.md).

use std::sync::Arc;
use std::time::Duration;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::optim::AdamConfig;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use deepmark::Precision;
use deepmark::codec::Grouping;
use deepmark::codec::Scheme;
use deepmark::data::augment::AugmentConfig;
use deepmark::data::dataset::{Df2Dataset, SampleConfig, ShardBatcher, TrainBatcher};
use deepmark::data::synth::{SynthConfig, generate};
use deepmark::model::{Arch, CenterNetConfig};
use deepmark::train::amp::{self, AmpConfig, AmpSteps};
use deepmark::train::loss::{LossWeights, total_loss};
use deepmark::train::parallel::ShardPool;
use deepmark_cli::backend::BackendKind;

mod common;
use common::{env, list};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn train_step(c: &mut Criterion) {
    let backend: BackendKind = env("DEEPMARK_BENCH_BACKEND", "flex");
    let arch: Arch = env("DEEPMARK_BENCH_ARCH", "res18");
    let size: usize = env("DEEPMARK_BENCH_SIZE", "256");
    let batch: usize = env("DEEPMARK_BENCH_BATCH", "4");
    let schemes: Vec<Scheme> = list("DEEPMARK_BENCH_SCHEMES", "none,agg81,deepmark62");
    let n_devices: usize = env("DEEPMARK_BENCH_DEVICES", "1");
    let precision: Precision = env("DEEPMARK_BENCH_PRECISION", "f32");
    let devices: Vec<_> = match backend.devices(n_devices) {
        Ok(d) => d.into_iter().map(|d| d.autodiff()).collect(),
        Err(e) => {
            eprintln!("skipping {backend}: {e}");
            return;
        }
    };
    let device = devices[0].clone();
    if let Err(e) = AmpConfig::new(precision).check_devices(&devices) {
        eprintln!("skipping {backend}: {e}");
        return;
    }
    let pool = (n_devices > 1).then(|| ShardPool::new(n_devices).expect("shard threads"));
    let dir = std::env::temp_dir().join(format!("deepmark-bench-train-{}", std::process::id()));
    let synth = SynthConfig {
        n: batch.max(4),
        seed: 7,
        ..Default::default()
    };
    generate(&dir, &synth, &mut |_, _| {}).expect("synthetic data");
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    for scheme in schemes {
        let cfg = SampleConfig {
            augment: AugmentConfig {
                input_size: size,
                ..Default::default()
            },
            grouping: Grouping::for_scheme(scheme).expect("DeepFashion2 scheme"),
            num_classes: 13,
            max_objs: 32,
            seed: 1,
        };
        let (ds, _) = Df2Dataset::open(
            &dir.join("train.json"),
            &dir.join("image"),
            cfg,
            false,
            &deepmark::io::Limits::default(),
        )
        .unwrap();
        let ds = Arc::new(ds);
        let items: Vec<_> = (0..batch).map(|i| ds.get(i % ds.len()).unwrap()).collect();
        let shards = ShardBatcher {
            devices: devices.clone(),
            shards: n_devices,
        }
        .batch(items.clone(), &device);
        let b = TrainBatcher.batch(items, &device);
        let config = CenterNetConfig::new(arch, scheme.layout());
        let mut model = Some(config.init(&device));
        let mut optim = AdamConfig::new().init();
        let mut amp = AmpSteps::new(AmpConfig::new(precision), None);
        device.memory_cleanup();
        let mut devs = if n_devices > 1 {
            format!("x{n_devices}dev")
        } else {
            String::new()
        };
        if precision != Precision::F32 {
            devs.push_str(&format!("/{precision}"));
        }
        let id = BenchmarkId::new(
            format!("{backend}/{arch}@{size}x{batch}{devs}"),
            scheme.name(),
        );
        group.bench_function(id, |bench| {
            bench.iter(|| {
                let m = model.take().expect("model");
                if let Some(pool) = &pool {
                    let (grads, parts, _) = pool
                        .step(
                            &m,
                            shards.clone(),
                            &LossWeights::default(),
                            precision,
                            amp.scaler().scale(),
                        )
                        .expect("data-parallel step");
                    let m = amp.step_multi(&mut optim, 1e-4, m, grads, parts.is_finite());
                    model = Some(m.expect("mixed-precision step"));
                    return parts.total;
                }
                let stacks = amp::forward_stacks(&m, b.input.clone(), precision);
                let (loss, parts) = total_loss(&stacks, &b, &LossWeights::default());
                let m = amp.step(&mut optim, 1e-4, m, loss, parts.is_finite());
                model = Some(m.expect("mixed-precision step"));
                parts.total
            })
        });
        let reserved = device
            .memory_pool_usage()
            .map(|u| format!("{:.0} MiB", u.bytes_reserved as f64 / (1 << 20) as f64))
            .unwrap_or_else(|| "n/a".into());
        println!(
            "memory after {scheme} ({} output channels): device pool reserved {reserved}, process peak RSS {:.0} MiB",
            config.layout.total_channels(),
            peak_rss_mib()
        );
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, train_step);
criterion_main!(benches);
