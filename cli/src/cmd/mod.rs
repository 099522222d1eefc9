//! One file per command group.

pub mod data;
pub mod eval;
pub mod fuzz;
pub mod infer;
pub mod model;
pub mod plot;
pub mod profile;
pub mod refine;
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
