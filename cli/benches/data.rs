//! Data pipeline throughput: decode + augment (scale/shift warp, flip, colour) + normalise +
//! CenterNet targets at 512×512 on the 32 real DeepFashion2 fixture images, one thread and all
//! threads (as Burn's data loader with `num_workers` = cores would run it).
//!
//!     cargo bench -p deepmark-cli --bench data

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepmark::codec::Grouping;
use deepmark::codec::Scheme;
use deepmark::data::augment::AugmentConfig;
use deepmark::data::dataset::{Df2Dataset, SampleConfig};
use rayon::prelude::*;

fn data(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/deepfashion2/kgdet_demo32");
    if !root.is_dir() {
        eprintln!("skipping: {} is absent", root.display());
        return;
    }
    let cfg = SampleConfig {
        augment: AugmentConfig::default(),
        grouping: Grouping::for_scheme(Scheme::Deepmark62).unwrap(),
        num_classes: 13,
        max_objs: 32,
        seed: 317,
    };
    let (ds, _) = Df2Dataset::open(
        &root.join("demo_dataset-32.json"),
        &root.join("image"),
        cfg,
        false,
        &deepmark::io::Limits::default(),
    )
    .unwrap();
    let n = ds.samples().len();
    let mut group = c.benchmark_group("data");
    group
        .throughput(Throughput::Elements(n as u64))
        .sample_size(10);
    group.bench_function("prepare_512_deepmark62/1_thread", |b| {
        b.iter(|| {
            (0..n)
                .map(|i| ds.prepare(i).unwrap().targets.hm.len())
                .sum::<usize>()
        })
    });
    group.bench_function(
        format!(
            "prepare_512_deepmark62/{}_threads",
            rayon::current_num_threads()
        ),
        |b| {
            b.iter(|| {
                (0..n)
                    .into_par_iter()
                    .map(|i| ds.prepare(i).unwrap().targets.hm.len())
                    .sum::<usize>()
            })
        },
    );
    group.finish();
}

criterion_group!(benches, data);
criterion_main!(benches);
