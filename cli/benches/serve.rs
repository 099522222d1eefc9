//! `deepmark serve` under load: requests per second and client-side p50/p99 latency at
//! concurrency 1, 4 and 16, without batching (`--batch 1`) and with it (`--batch 8`), against
//! `deepmark infer` on the same images in the same run (its throughput line: a folder through
//! the loader / network / decoder pipeline). The four bundled photos, cycled; the server and the
//! client (ureq, one thread per concurrent client) share the machine.
//!
//!     cargo bench -p deepmark-cli --bench serve                 # 512 × 512, 64 requests each
//!     cargo bench -p deepmark-cli --bench serve -- --quick      # 128 × 128, 16 requests each
//!     DEEPMARK_SERVE_BENCH_WEIGHTS=x.bpk cargo bench -p deepmark-cli --bench serve
//!
//! Default weights: the bundled demo detector (res18-slim).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PHOTOS: [&str; 4] = [
    "matplotlib_grace_hopper.jpg",
    "16004479832_a748d55f21_k.jpg",
    "24274813513_0cfd2ce6d0_k.jpg",
    "33887522274_eebd074106_k.jpg",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(weights: &str, size: usize, batch: usize) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deepmark"))
        .args([
            "serve",
            "--weights",
            weights,
            "--port",
            "0",
            "--threshold",
            "0.3",
        ])
        .args([
            "--input-size",
            &size.to_string(),
            "--batch",
            &batch.to_string(),
        ])
        .args(["--batch-wait-ms", "5", "--queue", "1024"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .expect("deepmark serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("the address line")
        .to_string();
    Server(child, url)
}

/// `n` requests from `clients` threads; (requests/s, p50 ms, p99 ms).
fn load(url: &str, images: &[Vec<u8>], n: usize, clients: usize) -> (f64, f64, f64) {
    let detect = format!("{url}/v1/detect");
    let start = Instant::now();
    let mut latencies: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let detect = &detect;
                s.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
                    let mut times = Vec::new();
                    for i in (c..n).step_by(clients) {
                        let t = Instant::now();
                        let mut r = agent
                            .post(detect)
                            .header("Content-Type", "image/jpeg")
                            .send(&images[i % images.len()][..])
                            .expect("a 200 answer");
                        let _ = r.body_mut().read_to_string().unwrap();
                        times.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    times
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    (n as f64 / wall, pct(0.5), pct(0.99))
}

/// `deepmark infer` over a folder of the same `n` images: its images/s.
fn infer_rate(weights: &str, size: usize, n: usize, dir: &Path) -> f64 {
    let folder = dir.join("images");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..n {
        let name = PHOTOS[i % PHOTOS.len()];
        std::fs::copy(
            root().join("datasets/samples").join(name),
            folder.join(format!("{i:04}.jpg")),
        )
        .unwrap();
    }
    let o = Command::new(env!("CARGO_BIN_EXE_deepmark"))
        .args(["infer", folder.to_str().unwrap(), "--weights", weights])
        .args(["--input-size", &size.to_string(), "--threshold", "0.3"])
        .args(["--out", dir.join("out").to_str().unwrap()])
        .current_dir(root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("Throughput:"))
        .unwrap_or_else(|| {
            panic!(
                "no throughput line: {text}{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
    // "Throughput: N images in X s = Y images/s (…)".
    line.split(" = ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("images/s")
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (size, n) = if quick { (128, 16) } else { (512, 64) };
    let weights = std::env::var("DEEPMARK_SERVE_BENCH_WEIGHTS")
        .unwrap_or_else(|_| "model-weights/demo.bpk".into());
    let images: Vec<Vec<u8>> = PHOTOS
        .iter()
        .map(|p| std::fs::read(root().join("datasets/samples").join(p)).unwrap())
        .collect();
    let dir = std::env::temp_dir().join(format!("deepmark-serve-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let infer = infer_rate(&weights, size, n, &dir);
    println!("serve bench: {weights} at {size}×{size}, {n} requests per row, four photos cycled");
    println!(
        "| batch | clients | requests/s | p50 ms | p99 ms | ÷ infer's images/s ({infer:.2}) |"
    );
    println!("|---|---|---|---|---|---|");
    for batch in [1, 8] {
        let server = start(&weights, size, batch);
        // Warm-up: thread pools, allocations.
        load(&server.1, &images, 4, 1);
        for clients in [1, 4, 16] {
            let (rate, p50, p99) = load(&server.1, &images, n, clients);
            println!(
                "| {batch} | {clients} | {rate:.2} | {p50:.1} | {p99:.1} | {:.2} |",
                rate / infer
            );
        }
        drop(server);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
