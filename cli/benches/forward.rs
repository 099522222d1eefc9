//! Forward latency of the full-size architectures (random weights; latency does not depend on
//! them) at 512×512 and 256×256, batch 1, on the CPU backends by default; add `wgpu` to
//! `DEEPMARK_BENCH_BACKENDS` on a machine with a GPU.
//!
//!     cargo bench -p deepmark-cli --bench forward
//!     DEEPMARK_BENCH_ARCHS=res18,dla34 DEEPMARK_BENCH_SIZES=512 DEEPMARK_BENCH_BACKENDS=flex \
//!         cargo bench -p deepmark-cli --bench forward
//!
//! On the CPU backends each model runs twice: `generic` (Burn's own operations, the reference
//! and the GPU path) and `fast` (`model::fast`, what `Detector` uses on the CPU). Restrict with
//! `DEEPMARK_BENCH_PATHS=fast` (or `generic`).
//!
//! `scripts/bench_pytorch.py` times the same models in PyTorch eager on the CPU with the same
//! thread count; benches/RESULTS.md records both.

use std::time::Duration;

use burn::tensor::Tensor;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use deepmark::codec::Scheme;
use deepmark::model::fast::{FastCenterNet, is_host_cpu};
use deepmark::model::{Arch, CenterNetConfig};

mod common;
use common::{devices, list};

fn forward(c: &mut Criterion) {
    let archs: Vec<Arch> = list(
        "DEEPMARK_BENCH_ARCHS",
        "res18,res50,dla34,mdla34,hourglass104",
    );
    let sizes: Vec<usize> = list("DEEPMARK_BENCH_SIZES", "512,256");
    let paths: Vec<String> = list("DEEPMARK_BENCH_PATHS", "generic,fast");
    let mut group = c.benchmark_group("forward");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (backend, device) in devices("DEEPMARK_BENCH_BACKENDS", "flex,ndarray") {
        for &arch in &archs {
            let model = CenterNetConfig::new(arch, Scheme::Deepmark62.layout()).init(&device);
            let fast = (is_host_cpu(&device) && paths.iter().any(|p| p == "fast"))
                .then(|| FastCenterNet::compile(&model).expect("compiles"));
            for &size in &sizes {
                let x = Tensor::<4>::zeros([1, 3, size, size], &device);
                if paths.iter().any(|p| p == "generic") {
                    let id = BenchmarkId::new(format!("{backend}/generic/{arch}"), size);
                    group.bench_function(id, |b| {
                        b.iter(|| {
                            let heads = model.forward(x.clone());
                            // Wait for the device: read one value back.
                            heads
                                .hp_offset
                                .slice([0..1, 0..1, 0..1, 0..1])
                                .into_scalar::<f32>()
                        })
                    });
                }
                if let Some(fast) = &fast {
                    let id = BenchmarkId::new(format!("{backend}/fast/{arch}"), size);
                    group.bench_function(id, |b| {
                        b.iter(|| fast.forward(x.clone()).expect("fast forward"))
                    });
                }
            }
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
