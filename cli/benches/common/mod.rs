//! Helpers shared by the benches: settings from environment variables.
#![allow(dead_code)]

/// A comma-separated list from `var` (or `default`), each item parsed.
pub fn list<T: std::str::FromStr>(var: &str, default: &str) -> Vec<T> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{var}: cannot parse '{s}'"))
        })
        .collect()
}

/// One value from `var` (or `default`).
pub fn env<T: std::str::FromStr>(var: &str, default: &str) -> T {
    let s = std::env::var(var).unwrap_or_else(|_| default.to_string());
    s.parse()
        .unwrap_or_else(|_| panic!("{var}: cannot parse '{s}'"))
}

/// The devices of the backends named in `var` (or `default`), computing in
/// `DEEPMARK_BENCH_PRECISION` (f32 unless set); a backend that cannot start (no GPU, feature
/// missing, float type unsupported) is skipped with a message.
pub fn devices(
    var: &str,
    default: &str,
) -> Vec<(deepmark_cli::backend::BackendKind, burn::tensor::Device)> {
    let precision: deepmark::Precision = env("DEEPMARK_BENCH_PRECISION", "f32");
    list::<deepmark_cli::backend::BackendKind>(var, default)
        .into_iter()
        .filter_map(|b| match b.device_with(precision) {
            Ok(d) => Some((b, d)),
            Err(e) => {
                eprintln!("skipping {b}: {e}");
                None
            }
        })
        .collect()
}
