//! Per-stage inference latency (pre-processing, forward + transfer of the heads, decoding, and
//! the DeepMark++ post-processing) for `mdla34`@256 and `res18`@512 on the CPU backends, and
//! the cost of the four techniques relative to the whole pipeline (DeepMark++ Table 1: +4 %).
//! `pipeline-file` is the whole per-image pipeline from the JPEG file on (read + decode the
//! file, pre-process, forward, decode with the four techniques, NMS): the row compared with
//! `scripts/bench_pipeline_pytorch.py` (CenterNet's own test path). `folder-batchN` is the
//! wall-clock time per image of [`detect_all`] over 8 images with N images per forward pass
//! (loading and decoding on other threads).
//! Random weights: latency does not depend on them (top-K decoding always decodes K = 100).
//!
//!     cargo bench -p deepmark-cli --bench infer
//!     DEEPMARK_BENCH_INFER=mdla34@256,res18@512 DEEPMARK_BENCH_BACKENDS=flex,ndarray,wgpu \
//!         cargo bench -p deepmark-cli --bench infer

use std::time::Duration;

use burn::tensor::{Tensor, TensorData};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use deepmark::codec::Scheme;
use deepmark::codec::decode::decode;
use deepmark::infer::{Detector, PostConfig, detect_all};
use deepmark::model::{Arch, CenterNetConfig};

mod common;
use common::{devices, list};

fn infer(c: &mut Criterion) {
    let configs: Vec<(Arch, usize)> =
        list::<String>("DEEPMARK_BENCH_INFER", "mdla34@256,res18@512")
            .iter()
            .map(|s| {
                let (a, n) = s.split_once('@').expect("arch@size");
                (a.parse().expect("arch"), n.parse().expect("size"))
            })
            .collect();
    let path = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/datasets/samples/matplotlib_grace_hopper.jpg"
    ));
    let img = deepmark::io::open_rgb(path).expect("bundled sample");
    let mut group = c.benchmark_group("infer");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (backend, device) in devices("DEEPMARK_BENCH_BACKENDS", "flex,ndarray") {
        for &(arch, size) in &configs {
            let config = CenterNetConfig::new(arch, Scheme::Deepmark62.layout());
            let model = config.init(&device);
            let mut det = Detector::new(model, config, device.clone()).expect("detector");
            det.options.input_size = size;
            let tag = format!("{backend}/{arch}@{size}");
            group.bench_function(BenchmarkId::new("preprocess", &tag), |b| {
                b.iter(|| det.prepare(&img, 1.0).expect("prepare").input.len())
            });
            let prep = det.prepare(&img, 1.0).expect("prepare");
            let x = Tensor::<4>::from_data(
                TensorData::new(prep.input.clone(), [1, 3, size, size]),
                &device,
            );
            group.bench_function(BenchmarkId::new("forward+transfer", &tag), |b| {
                b.iter(|| det.forward_host(x.clone()).expect("heads").len())
            });
            let maps = det.forward_host(x.clone()).expect("heads").remove(0);
            for (name, post) in [
                ("decode-plain", PostConfig::plain()),
                ("decode-deepmark", PostConfig::default()),
            ] {
                group.bench_function(BenchmarkId::new(name, &tag), |b| {
                    b.iter(|| decode(&maps, det.grouping(), &post).len())
                });
            }
            group.bench_function(BenchmarkId::new("pipeline-deepmark", &tag), |b| {
                b.iter(|| det.detect(&img).expect("detect").len())
            });
            group.bench_function(BenchmarkId::new("pipeline-file", &tag), |b| {
                b.iter(|| {
                    let img = deepmark::io::open_rgb(path).expect("bundled sample");
                    det.detect(&img).expect("detect").len()
                })
            });
            for batch in [1, 8] {
                det.options.batch = batch;
                let id = BenchmarkId::new(format!("folder-batch{batch}"), &tag);
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let mut wall = Duration::ZERO;
                        for _ in 0..iters {
                            let jobs = vec![path; 8];
                            let stats = detect_all(
                                &det,
                                jobs,
                                |p| deepmark::io::open_rgb(p),
                                |_, r| r.map(|_| ()),
                            )
                            .expect("folder");
                            // Per image, so that the row compares with the per-image ones.
                            wall += Duration::from_secs_f64(stats.wall / 8.0);
                        }
                        wall
                    })
                });
            }
            det.options.batch = 1;
        }
    }
    group.finish();
}

criterion_group!(benches, infer);
criterion_main!(benches);
