//! Fuzzing of every parser a user feeds (annotation, results, config and option JSON, images,
//! PyTorch and Burnpack weights), on stable Rust.
//!
//! No coverage-guided engine builds here (cargo-fuzz and libFuzzer's instrumentation want
//! nightly or an instrumented rebuild of Burn), so this is a *structured mutation harness with
//! outcome feedback*: seeds from a committed corpus (and any files given with `--seeds`, such as
//! the real DeepFashion2 fixtures) are mutated by [`mutate`] — tree mutations for JSON, byte
//! mutations with checksum repair for PNG and zip — and each mutant goes through the real entry
//! point, from a file on disk as a user's would. A mutant whose outcome is new (an error message
//! not seen before, once numbers and quoted text are blanked) joins the corpus, so the search
//! moves towards the checks behind the first ones.
//!
//! What counts as a finding:
//! * a panic (caught, the input saved, the run goes on);
//! * an error that does not name the input file (every error must say which file is wrong);
//! * an execution slower than the timeout (the input is saved and the process exits: a hang
//!   cannot be interrupted in-process);
//! * an abort or a kill (stack overflow, out of memory): each worker's current input stays in
//!   `<work>/<target>/.work-<n>/` (a RAM disk by default), and the next run reports it.

mod mutate;
mod targets;

pub use mutate::{InputKind, Rng, fix_png_crcs, fix_zip_crcs, mutate, mutate_bytes};
pub use targets::{FuzzNet, FuzzNetConfig, Target, targets, write_builtin_seeds};

use std::cell::RefCell;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deepmark::error::{Error, Result};

/// The target of a name, or an error listing them.
pub fn target(name: &str) -> Result<Target> {
    targets()
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = targets().iter().map(|t| t.name).collect();
            Error::Invalid(format!(
                "unknown fuzz target '{name}' (targets: {})",
                names.join(", ")
            ))
        })
}

/// What one execution of a target on one input gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Parsed and accepted.
    Ok,
    /// Refused with an error that names the file (the wanted behaviour for bad input).
    Refused(String),
    /// A finding: refused, but the message does not say which file.
    Unnamed(String),
    /// A finding: the target panicked (message and place).
    Panic(String),
}

impl Outcome {
    pub fn is_finding(&self) -> bool {
        matches!(self, Outcome::Unnamed(_) | Outcome::Panic(_))
    }

    fn kind(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused(_) => "refused",
            Outcome::Unnamed(_) => "unnamed",
            Outcome::Panic(_) => "panic",
        }
    }

    fn message(&self) -> &str {
        match self {
            Outcome::Ok => "",
            Outcome::Refused(m) | Outcome::Unnamed(m) | Outcome::Panic(m) => m,
        }
    }
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK_USERS: Mutex<usize> = Mutex::new(0);

/// While alive, panics are recorded for [`execute`] instead of printed.
struct QuietPanics;

type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;
static PREVIOUS_HOOK: Mutex<Option<Hook>> = Mutex::new(None);

impl QuietPanics {
    fn install() -> Self {
        let mut users = HOOK_USERS.lock().unwrap_or_else(|e| e.into_inner());
        if *users == 0 {
            let previous = std::panic::take_hook();
            *PREVIOUS_HOOK.lock().unwrap_or_else(|e| e.into_inner()) = Some(previous);
            std::panic::set_hook(Box::new(|info| {
                let payload = info.payload();
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-text panic payload)".into());
                let place = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{place}")));
            }));
        }
        *users += 1;
        QuietPanics
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        let mut users = HOOK_USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users -= 1;
        if *users == 0 {
            let _ = std::panic::take_hook();
            if let Some(previous) = PREVIOUS_HOOK
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                std::panic::set_hook(previous);
            }
        }
    }
}

/// Writes `bytes` to `file` and runs `target` on it.
pub fn execute(target: &Target, bytes: &[u8], file: &Path) -> Result<Outcome> {
    // Cheap inside `run`/`replay`, which hold the hook already.
    let _quiet = QuietPanics::install();
    std::fs::write(file, bytes).map_err(|e| Error::io("write", file, e))?;
    Ok(execute_file(target, file))
}

fn execute_file(target: &Target, file: &Path) -> Outcome {
    LAST_PANIC.with(|p| p.borrow_mut().take());
    match catch_unwind(AssertUnwindSafe(|| (target.run)(file))) {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(e)) => {
            let msg = e.to_string();
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if msg.contains(name) {
                Outcome::Refused(msg)
            } else {
                Outcome::Unnamed(msg)
            }
        }
        Err(_) => Outcome::Panic(
            LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "panic".into()),
        ),
    }
}

/// An outcome with the input's path, numbers and quoted text blanked: errors that differ only
/// in values count as one.
fn signature(outcome: &Outcome, file: &Path) -> u64 {
    let msg = outcome.message().replace(&*file.to_string_lossy(), "");
    let mut norm = String::with_capacity(msg.len());
    let mut quoted: Option<char> = None;
    for c in msg.chars() {
        match quoted {
            Some(q) if c == q => quoted = None,
            Some(_) => {}
            None if c == '"' || c == '`' => {
                quoted = Some(c);
                norm.push('_');
            }
            None if c.is_ascii_digit() => {
                if !norm.ends_with('#') {
                    norm.push('#');
                }
            }
            None => norm.push(c),
        }
        if norm.len() > 160 {
            break;
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    outcome.kind().hash(&mut h);
    norm.hash(&mut h);
    h.finish()
}

/// How to fuzz one target.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// Stop after this long (`None`: only `runs` stops it).
    pub time: Option<Duration>,
    /// Stop after this many executions (`None`: only `time` stops it).
    pub runs: Option<u64>,
    /// Worker threads.
    pub threads: usize,
    /// Seed of the mutation generators (worker `i` uses `seed + i`).
    pub seed: u64,
    /// Seed files or folders (the committed corpus, regressions, the user's own).
    pub seeds: Vec<PathBuf>,
    /// Findings go to `<out>/<target>/`.
    pub out: PathBuf,
    /// Each worker's current input is written to `<work>/<target>/.work-<n>/` (a RAM disk
    /// makes executions several times faster: [`default_work_dir`]).
    pub work: PathBuf,
    /// Mutants are cut to this many bytes.
    pub max_len: usize,
    /// An execution slower than this is reported as a hang and ends the process.
    pub timeout: Duration,
}

impl FuzzOptions {
    pub fn new(out: &Path) -> Self {
        FuzzOptions {
            time: Some(Duration::from_secs(60)),
            runs: None,
            threads: 1,
            seed: 0,
            seeds: Vec::new(),
            out: out.to_path_buf(),
            work: default_work_dir(),
            max_len: 1 << 20,
            timeout: Duration::from_secs(10),
        }
    }
}

/// `/dev/shm/deepmark-fuzz` where `/dev/shm` exists (a RAM disk: writing each input there
/// rather than to a disk-backed folder made executions 1.5–6× faster here), else the system's
/// temporary folder.
pub fn default_work_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join("deepmark-fuzz")
}

/// A finding, saved as `<out>/<target>/<kind>-<hash>.<ext>` with the message beside it
/// (`.txt`).
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: &'static str,
    pub message: String,
    pub input: PathBuf,
}

/// Progress of a run, reported about once a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub execs: u64,
    pub elapsed: Duration,
    pub corpus: usize,
    pub outcomes: usize,
    pub findings: usize,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct FuzzReport {
    pub target: &'static str,
    pub execs: u64,
    pub elapsed: Duration,
    /// Seeds that were read (all of them are executed first).
    pub seeds: usize,
    /// Corpus at the end: the seeds plus the mutants with new outcomes.
    pub corpus: usize,
    /// Distinct outcomes (accepted, and each kind of refusal).
    pub outcomes: usize,
    /// Mutants accepted as valid.
    pub accepted: u64,
    pub findings: Vec<Finding>,
}

/// Every file of the given files and folders (not recursive, hidden files skipped), sorted.
pub fn seed_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| Error::io("list", p, e))?;
            for entry in rd {
                let entry = entry.map_err(|e| Error::io("list", p, e))?;
                let path = entry.path();
                let hidden = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.') || n.ends_with(".txt"));
                if path.is_file() && !hidden {
                    files.push(path);
                }
            }
        } else if p.is_file() {
            files.push(p.clone());
        } else if !p.exists() {
            return Err(Error::file(p, "seed file or folder does not exist"));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

struct Shared {
    corpus: Mutex<Vec<Vec<u8>>>,
    outcomes: Mutex<HashSet<u64>>,
    findings: Mutex<(HashSet<u64>, Vec<Finding>)>,
    execs: AtomicU64,
    accepted: AtomicU64,
    stop: AtomicBool,
}

const MAX_CORPUS: usize = 4096;

fn work_dir(out: &Path, worker: usize) -> PathBuf {
    out.join(format!(".work-{worker}"))
}

/// Saves a finding once per signature (of [`signature`]).
fn record(
    shared: &Shared,
    dir: &Path,
    target: &Target,
    outcome: &Outcome,
    input: &[u8],
    sig: u64,
) -> Result<()> {
    let mut f = shared.findings.lock().unwrap_or_else(|e| e.into_inner());
    if !f.0.insert(sig) {
        return Ok(());
    }
    let path = dir.join(format!("{}-{sig:016x}.{}", outcome.kind(), target.ext));
    std::fs::write(&path, input).map_err(|e| Error::io("write", &path, e))?;
    let note = path.with_extension(format!("{}.txt", target.ext));
    std::fs::write(&note, format!("{}\n", outcome.message()))
        .map_err(|e| Error::io("write", &note, e))?;
    f.1.push(Finding {
        kind: outcome.kind(),
        message: outcome.message().to_string(),
        input: path,
    });
    Ok(())
}

/// Inputs left in workers' folders by a run that died (abort, kill, hang): reported as findings
/// (`aborted-*`) so that nothing that once killed the fuzzer is forgotten.
fn collect_leftovers(work: &Path, dir: &Path, target: &Target) -> Result<Vec<Finding>> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(work) else {
        return Ok(found);
    };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".work-") {
            continue;
        }
        let input = entry.path().join(target.file_name);
        if let Ok(bytes) = std::fs::read(&input) {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            let path = dir.join(format!("aborted-{:016x}.{}", h.finish(), target.ext));
            std::fs::write(&path, &bytes).map_err(|e| Error::io("write", &path, e))?;
            found.push(Finding {
                kind: "aborted",
                message: format!(
                    "an earlier run of this target died (abort, kill or hang) while on this input ({})",
                    input.display()
                ),
                input: path,
            });
        }
        std::fs::remove_dir_all(entry.path()).map_err(|e| Error::io("remove", &entry.path(), e))?;
    }
    Ok(found)
}

/// Fuzzes `target`: executes every seed, then mutants until `time` or `runs` is reached.
pub fn run(
    target: &Target,
    opts: &FuzzOptions,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<FuzzReport> {
    let dir = opts.out.join(target.name);
    deepmark::io::create_dir_all(&dir)?;
    let work = opts.work.join(target.name);
    deepmark::io::create_dir_all(&work)?;
    let leftovers = collect_leftovers(&work, &dir, target)?;

    let files = seed_files(&opts.seeds)?;
    let mut corpus = Vec::new();
    for f in &files {
        corpus.push(std::fs::read(f).map_err(|e| Error::io("read", f, e))?);
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let seeds = files.len();
    let max_len = opts
        .max_len
        .max(corpus.iter().map(Vec::len).max().unwrap_or(0) * 2);
    let _quiet = QuietPanics::install();
    let shared = Arc::new(Shared {
        corpus: Mutex::new(Vec::new()),
        outcomes: Mutex::new(HashSet::new()),
        findings: Mutex::new((HashSet::new(), leftovers)),
        execs: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let threads = opts.threads.max(1);
    let start = Instant::now();
    // Per worker: when its current execution began (ms since start + 1; 0 when idle).
    let busy: Arc<Vec<AtomicU64>> = Arc::new((0..threads).map(|_| AtomicU64::new(0)).collect());
    for w in 0..threads {
        deepmark::io::create_dir_all(&work_dir(&work, w))?;
    }

    let exec_one = |worker: usize, input: &[u8], grow: bool| -> Result<()> {
        let file = work_dir(&work, worker).join(target.file_name);
        busy[worker].store(start.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        let outcome = execute(target, input, &file)?;
        busy[worker].store(0, Ordering::Relaxed);
        shared.execs.fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::Ok {
            shared.accepted.fetch_add(1, Ordering::Relaxed);
        }
        let sig = signature(&outcome, &file);
        if outcome.is_finding() {
            record(&shared, &dir, target, &outcome, input, sig)?;
        }
        let new = shared
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sig);
        if new || grow {
            let mut c = shared.corpus.lock().unwrap_or_else(|e| e.into_inner());
            if c.len() < MAX_CORPUS {
                c.push(input.to_vec());
            } else {
                let i = (shared.execs.load(Ordering::Relaxed) as usize) % MAX_CORPUS;
                c[i] = input.to_vec();
            }
        }
        Ok(())
    };

    // The seeds, in order, all kept in the corpus.
    for s in &corpus {
        exec_one(0, s, true)?;
    }

    let done = |shared: &Shared| {
        shared.stop.load(Ordering::Relaxed)
            || opts.time.is_some_and(|t| start.elapsed() >= t)
            || opts
                .runs
                .is_some_and(|r| shared.execs.load(Ordering::Relaxed) >= r)
    };
    let result: Result<()> = std::thread::scope(|scope| {
        // Watchdog: a hang cannot be interrupted, so save the input and end the process.
        let watchdog = scope.spawn(|| {
            while !shared.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let now = start.elapsed().as_millis() as u64 + 1;
                for (w, b) in busy.iter().enumerate() {
                    let began = b.load(Ordering::Relaxed);
                    if began != 0 && now.saturating_sub(began) > opts.timeout.as_millis() as u64 {
                        let file = work_dir(&work, w).join(target.file_name);
                        let saved = dir.join(format!("timeout-{now}.{}", target.ext));
                        let _ = std::fs::copy(&file, &saved);
                        eprintln!(
                            "fuzz {}: an execution ran over {:?}; its input is saved as {}",
                            target.name,
                            opts.timeout,
                            saved.display()
                        );
                        std::process::exit(70);
                    }
                }
            }
        });
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                let shared = &shared;
                let exec_one = &exec_one;
                let done = &done;
                scope.spawn(move || -> Result<()> {
                    let mut rng = Rng::new(opts.seed.wrapping_add(w as u64).wrapping_mul(0x9E37));
                    let mut last = Instant::now();
                    while !done(shared) {
                        let (a, b) = {
                            let c = shared.corpus.lock().unwrap_or_else(|e| e.into_inner());
                            (c[rng.below(c.len())].clone(), c[rng.below(c.len())].clone())
                        };
                        let m = mutate(target.kind, &a, &b, &mut rng, max_len);
                        if let Err(e) = exec_one(w, &m, false) {
                            shared.stop.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        if w == 0 && last.elapsed() >= Duration::from_secs(1) {
                            last = Instant::now();
                            progress(&Progress {
                                execs: shared.execs.load(Ordering::Relaxed),
                                elapsed: start.elapsed(),
                                corpus: shared.corpus.lock().map(|c| c.len()).unwrap_or(0),
                                outcomes: shared.outcomes.lock().map(|o| o.len()).unwrap_or(0),
                                findings: shared.findings.lock().map(|f| f.1.len()).unwrap_or(0),
                            });
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let mut result = Ok(());
        for w in workers {
            let r = w
                .join()
                .unwrap_or_else(|_| Err(Error::Invalid("a fuzz worker panicked".into())));
            if result.is_ok() {
                result = r;
            }
        }
        shared.stop.store(true, Ordering::Relaxed);
        let _ = watchdog.join();
        result
    });
    result?;
    for w in 0..threads {
        let d = work_dir(&work, w);
        std::fs::remove_dir_all(&d).map_err(|e| Error::io("remove", &d, e))?;
    }
    let corpus_len = shared.corpus.lock().map(|c| c.len()).unwrap_or(0);
    let outcomes = shared.outcomes.lock().map(|o| o.len()).unwrap_or(0);
    let findings = std::mem::take(&mut shared.findings.lock().unwrap_or_else(|e| e.into_inner()).1);
    Ok(FuzzReport {
        target: target.name,
        execs: shared.execs.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        seeds,
        corpus: corpus_len,
        outcomes,
        accepted: shared.accepted.load(Ordering::Relaxed),
        findings,
    })
}

/// Runs `target` once on each file (a regression folder, a finding), from a copy in `work`.
pub fn replay(target: &Target, files: &[PathBuf], work: &Path) -> Result<Vec<(PathBuf, Outcome)>> {
    deepmark::io::create_dir_all(work)?;
    let file = work.join(target.file_name);
    let _quiet = QuietPanics::install();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| Error::io("read", f, e))?;
        out.push((f.clone(), execute(target, &bytes, &file)?));
    }
    Ok(out)
}

/// Caps this process's address space (`RLIMIT_AS`) at `mb` MiB, so that an allocation a hostile
/// input asks for fails at once instead of swapping the machine; such a failure aborts the
/// process and is then reported as an `aborted-*` finding.
#[cfg(unix)]
pub fn limit_memory(mb: u64) -> Result<()> {
    let bytes = mb.saturating_mul(1 << 20) as libc::rlim_t;
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limit.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
    if rc != 0 {
        return Err(Error::Invalid(format!(
            "cannot limit memory to {mb} MiB: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}
