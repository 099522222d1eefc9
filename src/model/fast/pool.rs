//! A forward pass on rayon's pool with the pool's other threads kept awake until it ends.
//!
//! Each layer of the fast form splits its work over the pool, and between two layers runs a
//! little serial work (the next layer's set-up, an element-wise add). A rayon worker that
//! finds no work yields to the operating system 32 times (microseconds) and then sleeps on a
//! condition variable, so between most layers the other workers fall asleep and each layer
//! starts by waking them: a futex wake-up, and in a virtual machine the exit and re-entry of a
//! halted virtual CPU (on a 2-core Xeon VM, a 3×3 layer of 0.7–1.0 ms timed in a loop took
//! 0.16–0.4 ms longer with a 2 ms sleep between calls). ONNX Runtime's pool spins through a run
//! for the same reason. Here, for one pass, the calling thread's work moves onto a worker and
//! every other worker runs a task that looks for work without sleeping (yielding its CPU to
//! any other runnable thread as it goes) until the pass ends.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::conv::is_serial;
use super::profile;

/// Whether passes keep the pool awake ([`set_keep_pool_awake`]): on unless
/// `DEEPMARK_KEEP_POOL_AWAKE=0` or the application switched it off.
static AWAKE: std::sync::OnceLock<AtomicBool> = std::sync::OnceLock::new();

fn awake() -> &'static AtomicBool {
    AWAKE.get_or_init(|| {
        AtomicBool::new(std::env::var("DEEPMARK_KEEP_POOL_AWAKE").as_deref() != Ok("0"))
    })
}

/// Whether each forward pass of the fast CPU form keeps rayon's other worker threads awake
/// (looking for work, yielding to other threads, never sleeping) until it ends; on by default
/// (`DEEPMARK_KEEP_POOL_AWAKE=0` switches it off at start-up). An application whose own threads
/// need the cores while a pass runs may switch it off, at some cost in speed.
pub fn set_keep_pool_awake(on: bool) {
    awake().store(on, Ordering::Relaxed);
}

/// `f()`, run on rayon's pool with its other workers awake until it returns, where the
/// calling thread is not one of the pool's (from inside the pool, inside
/// [`serial`](super::conv::serial), or with one thread or the setting off, `f` simply runs
/// here). A profile recording on the calling thread goes with it.
pub(crate) fn pass<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let threads = rayon::current_num_threads();
    if rayon::current_thread_index().is_some()
        || threads < 2
        || is_serial()
        || !awake().load(Ordering::Relaxed)
    {
        return f();
    }
    let recording = profile::swap(profile::Recording::NONE);
    let (out, recording) = rayon::scope(|_| {
        // This worker's own recording (none, unless it waits inside another pass) comes back
        // after this one.
        let before = profile::swap(recording);
        let done = Arc::new(AtomicBool::new(false));
        for _ in 1..threads {
            let done = done.clone();
            // Detached (not the scope's): the pass returns without waiting for a watcher to
            // finish a job it took from elsewhere.
            rayon::spawn(move || watch(&done));
        }
        let out = busy(f);
        done.store(true, Ordering::Release);
        (out, profile::swap(before))
    });
    profile::swap(recording);
    out
}

thread_local! {
    /// Set while this worker runs a pass or a watcher.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// `f()` with this thread marked [`BUSY`] (unmarked after, also if `f` panics).
fn busy<T>(f: impl FnOnce() -> T) -> T {
    struct Unmark(bool);
    impl Drop for Unmark {
        fn drop(&mut self) {
            BUSY.with(|b| b.set(self.0));
        }
    }
    let _unmark = Unmark(BUSY.with(|b| b.replace(true)));
    f()
}

/// Runs the pool's jobs as they come until `done`, on a worker that is not already running a
/// pass or a watcher. A worker waiting inside a pass (for a job another worker took) may take
/// up any job, this one included; were it to watch there, the pass below could not go on until
/// the watched pass ended, and two passes from two threads, each worker watching the other's
/// inside its own, would wait for each other for ever. There it returns at once.
fn watch(done: &AtomicBool) {
    if BUSY.with(|b| b.get()) {
        return;
    }
    busy(|| {
        while !done.load(Ordering::Acquire) {
            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                // Nothing to run: let any other runnable thread have the CPU (spinning in
                // place instead measured no faster).
                std::thread::yield_now();
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fast::conv::serial;
    use rayon::prelude::*;

    /// A pass's own parallel work, its result, where it ran and the profile rows it recorded.
    fn a_pass() -> (u64, Option<usize>, Vec<profile::OpStat>) {
        profile::start();
        let (sum, at) = pass(|| {
            let sum = profile::op(
                || ("sum".into(), 0.0),
                || {
                    (0..1_000_000u64)
                        .into_par_iter()
                        .map(|i| i % 7)
                        .sum::<u64>()
                },
            );
            (sum, rayon::current_thread_index())
        });
        (sum, at, profile::finish())
    }

    #[test]
    fn a_pass_runs_on_the_pool_and_keeps_the_callers_profile() {
        let want: u64 = (0..1_000_000u64).map(|i| i % 7).sum();
        let many = rayon::current_num_threads() > 1;
        for on in [true, false, true] {
            set_keep_pool_awake(on);
            // Passes one after the other: the watchers of one do not hold up the next.
            for _ in 0..20 {
                let (sum, at, rows) = a_pass();
                assert_eq!(sum, want);
                assert_eq!(at.is_some(), on && many, "kept awake: {on}");
                assert_eq!(rows.len(), 1);
                assert_eq!((rows[0].op.as_str(), rows[0].calls), ("sum", 1));
            }
        }
        // From inside the pool, and inside `serial`, the pass runs where it is called.
        let inside = rayon::scope(|_| {
            let me = rayon::current_thread_index();
            (me, pass(rayon::current_thread_index))
        });
        assert_eq!(inside.0, inside.1);
        assert_eq!(serial(|| pass(rayon::current_thread_index)), None);
    }

    #[test]
    fn passes_from_several_threads_at_once_all_finish() {
        let want: u64 = (0..1_000_000u64).map(|i| i % 7).sum();
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..10).map(|_| a_pass().0).collect::<Vec<_>>()))
                .collect();
            for r in runs {
                assert!(r.join().expect("no panic").iter().all(|&s| s == want));
            }
        });
    }
}
