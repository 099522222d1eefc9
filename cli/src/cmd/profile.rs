//! `deepmark profile`: where one image's time goes — per pipeline stage, and on the fast CPU
//! form per network module and operation kind (calls, ms, share, GFLOP/s), like PyTorch's
//! profiler tables. Random weights of `--arch` unless `--weights` is given (time does not
//! depend on the weights' values).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use deepmark::codec::Scheme;
use deepmark::infer::{Detector, StageTimes};
use deepmark::model::fast::profile::{self, OpStat};
use deepmark::model::{Arch, CenterNetConfig};

use crate::ui::DetectorFlags;

const SAMPLE: &str = "datasets/samples/matplotlib_grace_hopper.jpg";

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// Backbone with random weights: res18, res50, dla34, mdla34, hourglass104, res18-slim.
    #[arg(long, default_value = "mdla34", conflicts_with = "weights")]
    pub arch: Arch,
    /// Profile these weights instead of a random --arch.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[command(flatten)]
    pub detector: DetectorFlags,
    /// The image run through the pipeline.
    #[arg(long, default_value = SAMPLE)]
    pub image: PathBuf,
    /// Timed runs (after one untimed warm-up run).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// One row per operation kind and input shape (`conv3x3/s2 64x64x64->128`: input
    /// channels × height × width, then output channels) instead of per kind.
    #[arg(long)]
    pub by_shape: bool,
}

pub fn run(a: ProfileArgs) -> Result<()> {
    let det = match &a.weights {
        Some(w) => a.detector.load(w)?,
        None => {
            let device = a.detector.device()?;
            let config = CenterNetConfig::new(a.arch, Scheme::Deepmark62.layout());
            let mut det = Detector::new(config.init(&device), config, device)?;
            det.options.input_size = 512;
            a.detector.apply(det)?
        }
    };
    let t0 = Instant::now();
    let img = crate::cmd::limits().open_rgb(&a.image)?;
    let load = t0.elapsed().as_secs_f64();
    det.detect(&img)?; // warm-up: allocations, thread pools, autotuning
    let runs = a.runs as usize;
    let mut times = StageTimes::default();
    let mut per_run: Vec<StageTimes> = Vec::with_capacity(runs);
    let mut rows: Vec<OpStat> = Vec::new();
    for _ in 0..runs {
        if a.by_shape {
            profile::start_by_shape();
        } else {
            profile::start();
        }
        let (_, t) = det.detect_timed(&img)?;
        per_run.push(t);
        times += t;
        profile::merge(&mut rows, profile::finish());
    }
    let n = runs as f64;
    let s = det.options.input_size;
    let name = match &a.weights {
        Some(w) => w.display().to_string(),
        None => format!("{} (random weights)", a.arch),
    };
    let form = if det.is_fast() {
        "fast CPU form"
    } else {
        "Burn generic operations"
    };
    println!(
        "profile: {name} at {s}×{s}, {} ({form}), {} scale(s){}, {runs} runs after 1 warm-up; image {} ({}×{})",
        a.detector.backend,
        det.options.scales.len(),
        if det.options.flip { " + flip" } else { "" },
        a.image.display(),
        img.width(),
        img.height()
    );
    let sum = |t: &StageTimes| t.preprocess + t.forward + t.decode + t.post;
    let total = load + sum(&times) / n;
    // The median over runs beside the mean: the machine's hiccups move the mean only.
    let median = |f: &dyn Fn(&StageTimes) -> f64| {
        let mut v: Vec<f64> = per_run.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "\n{:<28} {:>10} {:>10} {:>7}",
        "stage", "ms/image", "median", "%"
    );
    for (stage, secs, med) in [
        ("load (read + decode file)", load, load),
        (
            "preprocess",
            times.preprocess / n,
            median(&|t| t.preprocess),
        ),
        ("forward", times.forward / n, median(&|t| t.forward)),
        (
            "decode (+ flip fusion)",
            times.decode / n,
            median(&|t| t.decode),
        ),
        (
            "post (NMS, threshold, landmark stages)",
            times.post / n,
            median(&|t| t.post),
        ),
        ("total", total, load + median(&sum)),
    ] {
        println!(
            "{stage:<28} {:>10.2} {:>10.2} {:>6.1}%",
            1e3 * secs,
            1e3 * med,
            100.0 * secs / total
        );
    }
    if rows.is_empty() {
        if det.is_fast() {
            bail!("the fast form recorded no operations");
        }
        println!(
            "\nper-module rows need the fast CPU form (--backend flex or ndarray, without --generic): \
             Burn's generic operations run asynchronously and are timed as one forward"
        );
        return Ok(());
    }
    let forward: f64 = times.forward / n;
    let timed: f64 = rows.iter().map(|r| r.seconds).sum::<f64>() / n;
    // Per module, in network order.
    let modules = totals(&rows, |r| r.module);
    println!(
        "\n{:<12} {:>10} {:>9} {:>9}",
        "module", "ms/image", "% fwd", "GFLOP/s"
    );
    for (m, _, secs, flops) in &modules {
        println!(
            "{m:<12} {:>10.2} {:>8.1}% {:>9}",
            1e3 * secs / n,
            100.0 * secs / n / forward,
            gflops(*flops, *secs)
        );
    }
    println!(
        "{:<12} {:>10.2} {:>8.1}%  (forward time outside the timed operations: {:.2} ms)",
        "all ops",
        1e3 * timed,
        100.0 * timed / forward,
        1e3 * (forward - timed)
    );
    // Per operation kind, most expensive first.
    let mut kinds = totals(&rows, |r| r.op.as_str());
    kinds.sort_by(|a, b| b.2.total_cmp(&a.2));
    let width = kinds.iter().map(|k| k.0.len()).max().unwrap_or(0).max(24);
    println!(
        "\n{:<width$} {:>9} {:>10} {:>9} {:>9}",
        "operation", "calls/img", "ms/image", "% fwd", "GFLOP/s"
    );
    for (op, calls, secs, flops) in &kinds {
        println!(
            "{op:<width$} {:>9} {:>10.2} {:>8.1}% {:>9}",
            calls / runs,
            1e3 * secs / n,
            100.0 * secs / n / forward,
            gflops(*flops, *secs)
        );
    }
    Ok(())
}

fn gflops(flops: f64, secs: f64) -> String {
    if flops > 0.0 && secs > 0.0 {
        format!("{:.1}", flops / secs / 1e9)
    } else {
        "-".into()
    }
}

/// Calls, seconds and FLOPs of `rows` summed per `key`, in first-seen order.
fn totals<'a, K: PartialEq>(
    rows: &'a [OpStat],
    key: impl Fn(&'a OpStat) -> K,
) -> Vec<(K, usize, f64, f64)> {
    let mut out: Vec<(K, usize, f64, f64)> = Vec::new();
    for r in rows {
        let k = key(r);
        match out.iter_mut().find(|t| t.0 == k) {
            Some(t) => {
                t.1 += r.calls;
                t.2 += r.seconds;
                t.3 += r.flops;
            }
            None => out.push((k, r.calls, r.seconds, r.flops)),
        }
    }
    out
}
