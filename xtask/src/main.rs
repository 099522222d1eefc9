//! `cargo xtask <command> [args…]`: builds the `deepmark` binary (crate `deepmark-cli`) in
//! release mode and runs it with the same arguments. Every command but `--backend vulkan` shares
//! one build: the binary always contains flex, ndarray and wgpu. `vulkan` is a second build
//! (the crate's `vulkan` feature, SPIR-V kernels), against a corrected CubeCL SPIR-V compiler
//! (`spirv_fix`).

mod spirv_fix;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::Parser;

const BACKENDS: [&str; 4] = ["flex", "ndarray", "wgpu", "vulkan"];

/// The integration tests that run a second time in the vulkan build, where wgpu compiles
/// SPIR-V: forward parity (DLA-34 with DCN, ResNet-18), `--backend vulkan` end to end in f32,
/// f16 and bf16, and the kernel cache. `parallel` (two-device training) passes there too
/// (369 s on lavapipe in session 11) but stays in the main run only, to keep CI's time.
const SPIRV_TESTS: [&str; 3] = ["wgpu", "vulkan", "kernel_cache"];

/// The library's feature sets that must each build on their own (`cargo check`; a user embeds
/// the library with any of them). `vulkan` is checked with the SPIR-V fix. The binary's set is
/// the workspace build of the test step.
const FEATURE_SETS: [&str; 13] = [
    "",
    "onnx",
    "flex",
    "ndarray",
    "flex,train",
    "flex,learner",
    "flex,pytorch",
    "flex,draw",
    "flex,synth",
    "ndarray,train",
    "wgpu",
    "wgpu,train",
    "vulkan",
];

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Runs deepmark commands (train, infer, eval, tune, plot, convert, synth, …) in release mode; `test` runs the checks; `check-features` builds the library with each feature set and its documentation; `spirv-fix` prints the cargo --config for vulkan builds",
    after_help = "Examples:\n  cargo xtask train                      (the CPU demo on synthetic data)\n  \
                  cargo xtask infer photos/ --weights runs/demo/model.bpk --flip\n  \
                  cargo xtask eval --gt val.json --dt results_keypoints.json --json\n  \
                  cargo xtask convert ckpt.pth --arch dla34 --scheme coco17 --out model-weights/x.bpk\n\n\
                  Run `cargo xtask <command> --help` for a command's options."
)]
struct Cli {
    /// The deepmark command and its arguments, passed through unchanged.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    args: Vec<String>,
}

fn backend_of(args: &[String]) -> Result<&str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = if a == "--backend" {
            it.next().map(String::as_str)
        } else {
            a.strip_prefix("--backend=")
        };
        if let Some(v) = value {
            return match BACKENDS.iter().find(|b| **b == v) {
                Some(b) => Ok(b),
                None => bail!("unknown backend '{v}' (expected flex, ndarray, wgpu or vulkan)"),
            };
        }
    }
    Ok("flex")
}

/// The workspace manifest, spelled canonically (`/repo/Cargo.toml`, not `/repo/xtask/../…`):
/// cargo keys its build cache on the path, so another spelling would mean another build.
fn manifest() -> Result<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    std::fs::canonicalize(&p).with_context(|| format!("cannot find {}", p.display()))
}

/// `cargo xtask test`: the project's full check, all in the release profile shared with the CLI:
/// formatting, clippy with warnings denied, every test, and then the tests in `SPIRV_TESTS` again
/// in the vulkan build (wgpu compiling SPIR-V; lavapipe in CI). Arguments (`--test decode`,
/// `-- filter`) go to the main test run, and then the vulkan step is left out; `--no-vulkan`
/// leaves it out of the full check. The full check starts with [`check_features`].
fn test(extra: &[String]) -> Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = manifest()?;
    let workspace = manifest.parent().context("the manifest has no directory")?;
    let manifest = manifest.to_string_lossy().into_owned();
    let (extra, vulkan): (Vec<String>, bool) = {
        let kept: Vec<String> = extra
            .iter()
            .filter(|a| *a != "--no-vulkan")
            .cloned()
            .collect();
        let vulkan = kept.len() == extra.len() && kept.is_empty();
        (kept, vulkan)
    };
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let release = ["--manifest-path", &manifest, "--release"];
    let mut steps: Vec<Vec<String>> = vec![
        v(&["fmt", "--all", "--manifest-path", &manifest, "--check"]),
        [
            v(&["clippy"]),
            v(&release),
            v(&["--workspace", "--all-targets"]),
            v(&["--", "-D", "warnings"]),
        ]
        .concat(),
        [v(&["test"]), v(&release), v(&["--workspace"]), extra].concat(),
    ];
    if vulkan {
        let mut step = [
            v(&["test"]),
            v(&release),
            v(&["--package", "deepmark-cli", "--features", "vulkan"]),
            spirv_fix::cargo_args(workspace)?,
        ]
        .concat();
        for t in SPIRV_TESTS {
            step.extend(v(&["--test", t]));
        }
        steps.push(step);
    }
    if vulkan {
        let code = check_features(workspace)?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    }
    let _lock = spirv_fix::LockGuard::new(workspace);
    run_steps(&cargo, &steps, "test", &[])
}

/// Runs each cargo command of `steps` in turn (printed with `label`, `env` set), stopping at
/// the first that fails with its exit code.
fn run_steps(
    cargo: &str,
    steps: &[Vec<String>],
    label: &str,
    env: &[(&str, &str)],
) -> Result<ExitCode> {
    for step in steps {
        eprintln!("xtask {label}: cargo {}", step.join(" "));
        let status = Command::new(cargo)
            .args(step)
            .envs(env.iter().copied())
            .status()
            .context("cannot run cargo")?;
        if !status.success() {
            return Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(1, 255) as u8
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask check-features`: `cargo check` of the library with each of [`FEATURE_SETS`],
/// then of every example with the features it declares, then `cargo doc` of the library, in the dev profile under
/// `<target dir>/features` (metadata only, no code generation: minutes, not a release build of
/// Burn per set).
fn check_features(workspace: &Path) -> Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = workspace.join("Cargo.toml");
    let manifest = manifest.to_string_lossy().into_owned();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        None => workspace.join("target"),
    }
    .join("features");
    let target = target.to_string_lossy().into_owned();
    let _lock = spirv_fix::LockGuard::new(workspace);
    let base = [
        "check",
        "--manifest-path",
        &manifest,
        "--target-dir",
        &target,
    ];
    let mut steps: Vec<Vec<String>> = Vec::new();
    for set in FEATURE_SETS {
        let mut step: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        step.extend(["--package", "deepmark", "--no-default-features"].map(String::from));
        if !set.is_empty() {
            step.extend(["--features".to_string(), set.to_string()]);
        }
        if set.split(',').any(|f| f == "vulkan") {
            step.extend(spirv_fix::cargo_args(workspace)?);
        }
        steps.push(step);
    }
    // Examples, each with its declared `required-features` (cargo skips an example whose
    // features are missing, so naming them is what makes the check real).
    let mut step: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    step.extend(
        [
            "--package",
            "deepmark",
            "--no-default-features",
            "--examples",
            "--features",
        ]
        .map(String::from),
    );
    step.push(EXAMPLE_FEATURES.to_string());
    steps.push(step);
    // The API documentation with docs.rs' features: every public item documented (the library's
    // `#![warn(missing_docs)]`), every intra-doc link resolved.
    steps.push(
        [
            "doc",
            "--manifest-path",
            &manifest,
            "--target-dir",
            &target,
            "--package",
            "deepmark",
            "--no-deps",
            "--no-default-features",
            "--features",
            DOC_FEATURES,
        ]
        .map(String::from)
        .to_vec(),
    );
    run_steps(
        &cargo,
        &steps,
        "check-features",
        &[
            ("RUSTFLAGS", "-D warnings"),
            ("RUSTDOCFLAGS", "-D warnings"),
        ],
    )
}

/// The features docs.rs documents (`[package.metadata.docs.rs]` in Cargo.toml).
const DOC_FEATURES: &str = "flex,train,learner,pytorch,draw,synth,onnx";

/// The union of the examples' `required-features` (Cargo.toml).
const EXAMPLE_FEATURES: &str = "flex,train,synth,learner";

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    if cli.args[0] == "test" {
        return test(&cli.args[1..]);
    }
    if cli.args[0] == "check-features" {
        let manifest = manifest()?;
        let workspace = manifest.parent().context("the manifest has no directory")?;
        return check_features(workspace);
    }
    if cli.args[0] == "spirv-fix" {
        // For cargo commands xtask does not wrap (benches, a carried GPU binary):
        // `cargo bench -p deepmark-cli --features vulkan --config "$(cargo xtask spirv-fix)"`.
        let manifest = manifest()?;
        let workspace = manifest.parent().context("the manifest has no directory")?;
        match spirv_fix::cargo_args(workspace)?.get(1) {
            Some(config) => println!("{config}"),
            // Nothing to patch: an inert setting, so the command line still works.
            None => println!("env.DEEPMARK_SPIRV_FIX=\"unneeded\""),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let backend = backend_of(&cli.args)?;
    // Relative paths in the arguments stay relative to where the user stands: point cargo at
    // the manifest instead of changing directory.
    let manifest = manifest()?;
    let workspace: &Path = manifest.parent().context("the manifest has no directory")?;
    let patch = match backend {
        "vulkan" => spirv_fix::cargo_args(workspace)?,
        _ => vec![],
    };
    let _lock = spirv_fix::LockGuard::new(workspace);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .arg("run")
        .arg("--manifest-path")
        .arg(&manifest)
        .args([
            "--release",
            "--quiet",
            "--package",
            "deepmark-cli",
            "--bin",
            "deepmark",
        ])
        .args(match backend {
            "vulkan" => &["--features", "vulkan"][..],
            _ => &[],
        })
        .args(&patch)
        .arg("--")
        .args(&cli.args)
        .status()
        .context("cannot run cargo")?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}
