//! `cargo xtask <command> [args…]`: builds the `deepmark` binary in release mode with the
//! backend feature chosen by `--backend flex|ndarray|wgpu` (default flex) and runs it with the
//! same arguments. Every command shares one build: the binary's `cli` feature already contains
//! all backends, so naming one never triggers a rebuild.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::Parser;

const BACKENDS: [&str; 3] = ["flex", "ndarray", "wgpu"];

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Runs deepmark commands (train, infer, eval, tune, plot, convert, synth, …) in release mode; `test` runs the checks",
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
                None => bail!("unknown backend '{v}' (expected flex, ndarray or wgpu)"),
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

/// `cargo xtask test`: the project's full check — formatting, clippy with warnings denied,
/// and every test — all in the release profile shared with the CLI.
fn test(extra: &[String]) -> Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = manifest()?.to_string_lossy().into_owned();
    let features = "deepmark/cli";
    let steps: [Vec<&str>; 3] = [
        vec!["fmt", "--all", "--manifest-path", &manifest, "--check"],
        vec![
            "clippy",
            "--manifest-path",
            &manifest,
            "--release",
            "--workspace",
            "--all-targets",
            "--features",
            features,
            "--",
            "-D",
            "warnings",
        ],
        vec![
            "test",
            "--manifest-path",
            &manifest,
            "--release",
            "--workspace",
            "--features",
            features,
        ],
    ];
    for (i, step) in steps.iter().enumerate() {
        let mut cmd = Command::new(&cargo);
        cmd.args(step);
        if i == 2 {
            cmd.args(extra);
        }
        eprintln!("xtask test: cargo {}", step.join(" "));
        let status = cmd.status().context("cannot run cargo")?;
        if !status.success() {
            return Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(1, 255) as u8
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    if cli.args[0] == "test" {
        return test(&cli.args[1..]);
    }
    let backend = backend_of(&cli.args)?;
    // Relative paths in the arguments stay relative to where the user stands: point cargo at
    // the manifest instead of changing directory.
    let manifest = manifest()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .arg("run")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--release", "--quiet", "--bin", "deepmark", "--features"])
        .arg(format!("cli,{backend}"))
        .arg("--")
        .args(&cli.args)
        .status()
        .context("cannot run cargo")?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}
