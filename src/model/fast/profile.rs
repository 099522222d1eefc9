//! Opt-in timing of the fast form, per module and operation, on the calling thread: what
//! `deepmark profile` prints. Off (one thread-local check per operation) unless [`start`] was
//! called on this thread. Operations nest: only the outermost one is timed, so a DCN's offset
//! convolution and its sampling + GEMM are two rows, never counted twice.

use std::cell::RefCell;
use std::time::Instant;

/// Time spent in one operation kind inside one module.
#[derive(Debug, Clone, PartialEq)]
pub struct OpStat {
    /// The network part (`base`, `dla_up`, `layer3`, `heads`, …).
    pub module: &'static str,
    /// The operation kind (`conv3x3/s1`, `dcn3x3`, `upsample-dw4/s2`, `maxpool`, …).
    pub op: String,
    /// Times the operation ran.
    pub calls: usize,
    /// Total seconds.
    pub seconds: f64,
    /// Multiply-adds × 2 of the calls (0 where not counted).
    pub flops: f64,
}

struct State {
    by_shape: bool,
    module: &'static str,
    depth: usize,
    rows: Vec<OpStat>,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Starts recording on this thread (clearing what was recorded).
pub fn start() {
    start_with(false)
}

/// Starts recording with a row per operation kind *and* input shape: convolutions name their
/// input `C×H×W` and output channels (`conv3x3/s2 64x64x64->128`).
pub fn start_by_shape() {
    start_with(true)
}

fn start_with(by_shape: bool) {
    STATE.with(|s| {
        *s.borrow_mut() = Some(State {
            by_shape,
            module: "other",
            depth: 0,
            rows: Vec::new(),
        })
    });
}

/// Stops recording and returns the rows, in first-seen order.
pub fn finish() -> Vec<OpStat> {
    STATE.with(|s| s.borrow_mut().take().map(|st| st.rows).unwrap_or_default())
}

/// Adds `rows` into `into`: a row of the same module and operation gains the calls, seconds
/// and FLOPs; a new one is appended (first-seen order is kept).
pub fn merge(into: &mut Vec<OpStat>, rows: impl IntoIterator<Item = OpStat>) {
    for r in rows {
        match into
            .iter_mut()
            .find(|x| x.module == r.module && x.op == r.op)
        {
            Some(x) => {
                x.calls += r.calls;
                x.seconds += r.seconds;
                x.flops += r.flops;
            }
            None => into.push(r),
        }
    }
}

/// `" {shape()}"` when recording by shape, else nothing (for operation names).
pub(crate) fn shape(shape: impl FnOnce() -> String) -> String {
    let on = STATE.with(|s| s.borrow().as_ref().is_some_and(|st| st.by_shape));
    if on {
        format!(" {}", shape())
    } else {
        String::new()
    }
}

/// A thread's recording (or none), taken out of it with [`swap`]: a pass that moves to
/// another thread continues it there and hands it back.
pub(crate) struct Recording(Option<State>);

impl Recording {
    pub(crate) const NONE: Recording = Recording(None);
}

/// `r` becomes this thread's recording; what this thread had is returned (to be swapped back:
/// a worker can take up one pass inside another's while it waits).
pub(crate) fn swap(r: Recording) -> Recording {
    Recording(STATE.with(|s| std::mem::replace(&mut *s.borrow_mut(), r.0)))
}

fn enabled() -> bool {
    STATE.with(|s| s.borrow().is_some())
}

/// Runs `f` as part of network module `name` (operations inside are filed under it).
pub(crate) fn module<T>(name: &'static str, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let prev = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let st = s.as_mut().expect("enabled");
        std::mem::replace(&mut st.module, name)
    });
    let out = f();
    STATE.with(|s| {
        if let Some(st) = s.borrow_mut().as_mut() {
            st.module = prev;
        }
    });
    out
}

/// Runs `f`, timed as operation `what().0` with `what().1` FLOPs when recording.
pub(crate) fn op<T>(what: impl FnOnce() -> (String, f64), f: impl FnOnce() -> T) -> T {
    let outer = STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.as_mut().map(|st| {
            st.depth += 1;
            st.depth == 1
        })
    });
    match outer {
        None => f(),
        Some(timed) => {
            let t0 = Instant::now();
            let out = f();
            let dt = t0.elapsed().as_secs_f64();
            let label = timed.then(what);
            STATE.with(|s| {
                if let Some(st) = s.borrow_mut().as_mut() {
                    st.depth -= 1;
                    if let Some((op, flops)) = label {
                        let row = OpStat {
                            module: st.module,
                            op,
                            calls: 1,
                            seconds: dt,
                            flops,
                        };
                        merge(&mut st.rows, [row]);
                    }
                }
            });
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_outermost_operations_per_module_only_while_started() {
        op(|| ("ignored".into(), 1.0), || ());
        start();
        module("a", || {
            op(
                || ("conv".into(), 10.0),
                || op(|| ("inner".into(), 5.0), || ()),
            );
            op(|| ("conv".into(), 10.0), || ());
            module("b", || op(|| ("conv".into(), 3.0), || ()));
            op(|| ("pool".into(), 0.0), || ());
        });
        let rows = finish();
        let got: Vec<(&str, &str, usize, f64)> = rows
            .iter()
            .map(|r| (r.module, r.op.as_str(), r.calls, r.flops))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "conv", 2, 20.0),
                ("b", "conv", 1, 3.0),
                ("a", "pool", 1, 0.0)
            ]
        );
        assert!(rows.iter().all(|r| r.seconds >= 0.0));
        op(|| ("after".into(), 1.0), || ());
        assert!(finish().is_empty());
    }

    #[test]
    fn shapes_are_named_only_when_recording_by_shape() {
        let named = || {
            op(
                || (format!("conv{}", shape(|| "3x8x8->4".into())), 1.0),
                || (),
            )
        };
        start();
        named();
        assert_eq!(finish()[0].op, "conv");
        start_by_shape();
        named();
        assert_eq!(finish()[0].op, "conv 3x8x8->4");
        assert_eq!(shape(|| "ignored".into()), "");
    }
}
