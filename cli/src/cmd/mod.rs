//! One file per command group.

pub mod attributes;
pub mod data;
pub mod eval;
pub mod export;
pub mod fuzz;
pub mod infer;
pub mod model;
pub mod plot;
pub mod profile;
pub mod refine;
pub mod serve;
pub mod topdown;
pub mod train;
pub mod tune;

use std::sync::OnceLock;

use deepmark::io::Limits;

static LIMITS: OnceLock<Limits> = OnceLock::new();

/// Sets the file-size limits of this run (`--max-image-pixels`, `--max-json-bytes`,
/// `--max-json-items`); called once, before the command runs.
pub fn set_limits(limits: Limits) {
    let _ = LIMITS.set(limits);
}

/// The limits every command passes to the library's readers.
pub fn limits() -> &'static Limits {
    LIMITS.get_or_init(Limits::default)
}

/// The library names the field of `deepmark::io::Limits` to raise; the program's user raises it
/// with a flag.
pub fn flag_names(message: &str) -> String {
    message
        .replace("io::Limits::image_pixels", "--max-image-pixels")
        .replace("io::Limits::json_bytes", "--max-json-bytes")
        .replace("io::Limits::json_items", "--max-json-items")
        .replace("TrainConfig::max_unusable", "--max-unusable")
}

/// Refuses to run when the output file `out` is one of the command's `inputs` (the same file by
/// its resolved path, existing or not): writing it would destroy what is being read.
pub fn refuse_input_as_output(
    out: &std::path::Path,
    inputs: &[(&str, &std::path::Path)],
) -> anyhow::Result<()> {
    for (flag, input) in inputs {
        if deepmark::io::same_path(out, input) {
            anyhow::bail!(
                "{} is both the output and the input {flag} of this command; writing it would destroy \
                 the input: choose another output",
                out.display()
            );
        }
    }
    Ok(())
}

/// On SIGINT or SIGTERM: `on_stop()` says where the work stopped, then the process exits with
/// 128 + the signal's number. The handler only records the signal; a watcher thread does the
/// rest, outside the handler. Writes that matter are atomic, so stopping between them loses
/// nothing but the unfinished step.
#[cfg(unix)]
pub fn on_interrupt(on_stop: impl Fn() + Send + 'static) {
    use std::sync::atomic::{AtomicI32, Ordering};
    static SIGNAL: AtomicI32 = AtomicI32::new(0);
    extern "C" fn record(sig: libc::c_int) {
        SIGNAL.store(sig, Ordering::SeqCst);
    }
    let handler = record as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `record` only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    std::thread::spawn(move || {
        loop {
            let sig = SIGNAL.load(Ordering::SeqCst);
            if sig != 0 {
                on_stop();
                std::process::exit(128 + sig);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
}

/// Elsewhere the default handling stays.
#[cfg(not(unix))]
pub fn on_interrupt(_on_stop: impl Fn() + Send + 'static) {}

/// For work that a user ends with Ctrl-C (a camera, a live stream): the first SIGINT or SIGTERM
/// only sets the returned flag, which the work checks between steps to finish what it wrote;
/// a second one ends the process at once (exit status 128 + the signal's number).
#[cfg(unix)]
pub fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
    static COUNT: AtomicI32 = AtomicI32::new(0);
    static LAST: AtomicI32 = AtomicI32::new(0);
    extern "C" fn record(sig: libc::c_int) {
        LAST.store(sig, Ordering::SeqCst);
        COUNT.fetch_add(1, Ordering::SeqCst);
    }
    let handler = record as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `record` only touches atomics, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        loop {
            match COUNT.load(Ordering::SeqCst) {
                0 => {}
                1 => f.store(true, Ordering::SeqCst),
                _ => std::process::exit(128 + LAST.load(Ordering::SeqCst)),
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    flag
}

/// Elsewhere a flag nothing sets.
#[cfg(not(unix))]
pub fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    Default::default()
}

/// Whether process `pid` runs (on Unix; elsewhere every other process counts as ended).
fn process_runs(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        pid == std::process::id()
    }
}

/// Removes from `dir` the temporaries of atomic writes ([`deepmark::io::is_temporary_name`])
/// whose process no longer runs (a run killed mid-write leaves them), and this process's own
/// with `own`. Returns how many were removed.
pub fn remove_temporaries(dir: &std::path::Path, own: bool) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = deepmark::io::temporary_owner(&name) else {
            continue;
        };
        let mine = pid == std::process::id();
        if ((mine && own) || (!mine && !process_runs(pid)))
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// `--scheme`: a landmark scheme (`deepmark62`, `agg81`, `none`, `coco17`) or `by-name`
/// (landmarks of the same name across categories share a channel; any taxonomy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeArg {
    /// A named scheme.
    Scheme(deepmark::codec::Scheme),
    /// Grouping by landmark name.
    ByName,
}

impl std::str::FromStr for SchemeArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "by-name" {
            return Ok(SchemeArg::ByName);
        }
        s.parse()
            .map(SchemeArg::Scheme)
            .map_err(|e| format!("{e} (or by-name)"))
    }
}

impl std::fmt::Display for SchemeArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemeArg::Scheme(s) => write!(f, "{s}"),
            SchemeArg::ByName => write!(f, "by-name"),
        }
    }
}

impl SchemeArg {
    /// The grouping of `taxonomy` this names: DeepFashion2's schemes keep their tables, `none`
    /// and `by-name` work for any taxonomy.
    pub fn grouping(
        self,
        taxonomy: &'static deepmark::garment::Taxonomy,
    ) -> deepmark::Result<deepmark::codec::Grouping> {
        deepmark::codec::Grouping::for_taxonomy(taxonomy, &self.to_string())
    }
}

/// Prints what resolving a taxonomy inferred.
pub fn print_notes(notes: &[String]) {
    for n in notes {
        println!("taxonomy: {n}");
    }
}

/// A COCO-style keypoints file (or FashionAI CSV) in the taxonomy `--taxonomy` names (read from
/// the data by default), printing what was inferred.
pub fn load_data(
    data: &std::path::Path,
    taxonomy: &Option<deepmark::garment::TaxonomyChoice>,
    skip_bad: bool,
) -> deepmark::Result<deepmark::data::deepfashion2::CocoData> {
    let d = deepmark::data::deepfashion2::load_coco_in(
        data,
        &taxonomy.clone().unwrap_or_default(),
        skip_bad,
        limits(),
    )?;
    print_notes(&d.notes);
    Ok(d)
}

/// The samples and the evaluator's ground truth of a dataset in a model's `taxonomy` (the data
/// must agree with it, or it is an error naming the file and the field); the ground truth takes
/// the taxonomy's sigmas and layout.
pub fn load_ground_truth(
    data: &std::path::Path,
    taxonomy: &'static deepmark::garment::Taxonomy,
) -> deepmark::Result<(
    Vec<deepmark::data::deepfashion2::Sample>,
    deepmark::eval::coco::GroundTruth,
)> {
    let samples = load_data(
        data,
        &Some(deepmark::garment::TaxonomyChoice::Given(taxonomy)),
        false,
    )?
    .samples;
    let mut gt = deepmark::eval::coco::GroundTruth::load(data, limits())?;
    gt.set_taxonomy(taxonomy);
    Ok((samples, gt))
}
