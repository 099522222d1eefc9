//! `fuzz`: the parsers a user feeds, under mutated input (`deepmark::fuzz`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use deepmark_cli::fuzzing::{self as fuzz, FuzzOptions, FuzzReport, Outcome, Target};

/// The repository's fuzz folder (seeds, regressions, findings), wherever the command runs from.
fn repo_fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[derive(Args)]
pub struct FuzzArgs {
    /// Target (`--list` shows them), or `all` for every target one after the other.
    target: Option<String>,
    /// List the targets and exit.
    #[arg(long)]
    list: bool,
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// Stop each target after this many executions (whichever of --time and --runs comes first).
    #[arg(long)]
    runs: Option<u64>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed of the mutation generator (a run is repeatable for one thread).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// More seed files or folders, e.g. the real DeepFashion2 fixtures (never copied into the
    /// corpus).
    #[arg(long)]
    seeds: Vec<PathBuf>,
    /// Seed corpus root: `<corpus>/<target>/` (default: the repository's fuzz/corpus).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Inputs that once failed: `<regressions>/<target>/`, replayed first (default:
    /// fuzz/regressions).
    #[arg(long)]
    regressions: Option<PathBuf>,
    /// Findings go to `<out>/<target>/` (default: fuzz/findings, ignored by git).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Address-space limit in MiB (0: none): an input asking for more makes the allocation
    /// fail, and the run reports it, instead of the machine swapping.
    #[arg(long, default_value_t = 4096)]
    rss_limit_mb: u64,
    /// An execution slower than this many seconds is a hang: its input is saved and the run
    /// ends.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Replay the seeds and regressions once (no mutation): what CI runs first.
    #[arg(long)]
    replay: bool,
    /// With --replay: print every input's outcome, not only the findings.
    #[arg(long)]
    verbose: bool,
    /// Write the built-in seeds (Burnpack weights, model/refiner/options JSON) into the corpus.
    #[arg(long)]
    write_seeds: bool,
}

pub fn run(a: FuzzArgs) -> Result<()> {
    let root = repo_fuzz_dir();
    let corpus = a.corpus.clone().unwrap_or_else(|| root.join("corpus"));
    if a.list {
        for t in fuzz::targets() {
            println!("{:13} {}", t.name, t.about);
        }
        return Ok(());
    }
    if a.write_seeds {
        fuzz::write_builtin_seeds(&corpus)?;
        println!("built-in seeds written under {}", corpus.display());
        return Ok(());
    }
    let Some(name) = a.target.as_deref() else {
        bail!("name a target (or `all`); `--list` shows them");
    };
    let targets: Vec<Target> = if name == "all" {
        fuzz::targets()
    } else {
        vec![fuzz::target(name)?]
    };
    if a.rss_limit_mb > 0 {
        fuzz::limit_memory(a.rss_limit_mb)?;
    }
    let regressions = a
        .regressions
        .clone()
        .unwrap_or_else(|| root.join("regressions"));
    let out = a.out.clone().unwrap_or_else(|| root.join("findings"));
    let mut failed = 0usize;
    for t in &targets {
        let mut seeds = vec![corpus.join(t.name), regressions.join(t.name)];
        seeds.retain(|p| p.is_dir());
        seeds.extend(a.seeds.iter().cloned());
        if a.replay {
            let files = fuzz::seed_files(&seeds)?;
            let work = fuzz::default_work_dir().join(t.name).join(".replay");
            let results = fuzz::replay(t, &files, &work)?;
            let _ = std::fs::remove_dir_all(&work);
            println!(
                "fuzz {} --replay: {} inputs, {} accepted, {} refused with the file named, {} findings",
                t.name,
                results.len(),
                results.iter().filter(|(_, o)| *o == Outcome::Ok).count(),
                results
                    .iter()
                    .filter(|(_, o)| matches!(o, Outcome::Refused(_)))
                    .count(),
                results.iter().filter(|(_, o)| o.is_finding()).count()
            );
            for (f, o) in &results {
                if a.verbose || o.is_finding() {
                    println!("  {}: {o:?}", f.display());
                }
            }
            failed += results.iter().filter(|(_, o)| o.is_finding()).count();
            continue;
        }
        let opts = FuzzOptions {
            time: Some(Duration::from_secs(a.time)),
            runs: a.runs,
            threads: a.threads,
            seed: a.seed,
            seeds,
            out: out.clone(),
            work: fuzz::default_work_dir(),
            max_len: 1 << 20,
            timeout: Duration::from_secs(a.timeout.max(1)),
        };
        let report = fuzz::run(t, &opts, &|p| {
            eprint!(
                "\rfuzz {}: {} execs in {:.0} s ({:.0}/s), corpus {}, {} outcomes, {} findings   ",
                t.name,
                p.execs,
                p.elapsed.as_secs_f64(),
                p.execs as f64 / p.elapsed.as_secs_f64().max(1e-9),
                p.corpus,
                p.outcomes,
                p.findings
            );
        })?;
        eprintln!();
        print_report(&report);
        failed += report.findings.len();
    }
    if failed > 0 {
        bail!(
            "{failed} finding(s); inputs and messages are under {}",
            out.display()
        );
    }
    Ok(())
}

fn print_report(r: &FuzzReport) {
    let secs = r.elapsed.as_secs_f64();
    println!(
        "fuzz {}: {} executions in {:.1} s ({:.0}/s), {} seeds, corpus {}, {} distinct outcomes, {} accepted, {} findings",
        r.target,
        r.execs,
        secs,
        r.execs as f64 / secs.max(1e-9),
        r.seeds,
        r.corpus,
        r.outcomes,
        r.accepted,
        r.findings.len()
    );
    for f in &r.findings {
        println!(
            "  {} {}: {}",
            f.kind,
            f.input.display(),
            f.message.lines().next().unwrap_or("")
        );
    }
}
