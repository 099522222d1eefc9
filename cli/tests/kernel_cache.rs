//! `--kernel-cache`: the GPU backend's autotune results are written to the named folder and a
//! second process running the same command reuses them (tunes nothing new). Runs on wgpu
//! (lavapipe in CI); skipped without an adapter unless DEEPMARK_REQUIRE_WGPU is set.

use std::path::Path;

#[path = "../../tests/common/mod.rs"]
mod common;

use common::deepmark;

/// Entries per namespace, from `deepmark kernel-cache`.
fn cache_entries(cache: &Path, prefix: &str) -> u64 {
    let o = deepmark(&["kernel-cache", "--kernel-cache", cache.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    println!("{text}");
    assert!(text.contains(cache.to_str().unwrap()), "{text}");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix))
        .filter_map(|l| {
            l.rsplit(": ")
                .next()?
                .strip_suffix(" entries")?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn a_second_run_reuses_the_tuned_kernels() {
    if let Err(e) = deepmark_cli::backend::BackendKind::Wgpu.device() {
        if std::env::var_os("DEEPMARK_REQUIRE_WGPU").is_some() {
            panic!("wgpu required but unavailable: {e}");
        }
        eprintln!("skipping: {e}");
        return;
    }
    let Some(image) = common::shared_data("deepfashion2/kgdet_demo32/image/002092.jpg") else {
        return;
    };
    let dir = common::tempdir("kernel-cache");
    let cache = dir.join("cache");
    let infer = |out: &str| {
        let o = deepmark(&[
            "infer",
            image.to_str().unwrap(),
            "--weights",
            "model-weights/demo.bpk",
            "--backend",
            "wgpu",
            "--input-size",
            "128",
            "--kernel-cache",
            cache.to_str().unwrap(),
            "--out",
            dir.join(out).to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    assert_eq!(
        cache_entries(&cache, "autotune"),
        0,
        "a new folder starts empty"
    );
    infer("first");
    let tuned = cache_entries(&cache, "autotune");
    assert!(tuned > 0, "the first run stored its autotune results");
    assert!(
        std::fs::read_dir(&cache).unwrap().next().is_some(),
        "the cache lives in the named folder"
    );
    infer("second");
    assert_eq!(
        cache_entries(&cache, "autotune"),
        tuned,
        "the second run found every shape tuned"
    );
}
