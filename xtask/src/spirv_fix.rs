//! A build-time fix for CubeCL's SPIR-V compiler, used by `--backend vulkan` builds.
//!
//! The bug (cubecl-spirv 0.11.3, `src/ops/memory.rs`, `lower_shared_implicit`): on a Vulkan
//! device without `VK_KHR_workgroup_memory_explicit_layout`, each shared-memory array is
//! declared with the two types swapped. The workgroup variable gets the *pointer* type, and its
//! address the value type. The resulting SPIR-V fails `spirv-val` ("OpInBoundsAccessChain
//! reached non-composite type"). lavapipe, CI's software Vulkan, segfaults compiling it; Mesa
//! 22.3.6 and 25.0.7 both lack the extension. Devices that have the extension (NVIDIA, AMD and
//! Intel drivers) take the other branch (`lower_shared_explicit`), which is correct.
//!
//! Until a CubeCL release fixes it, vulkan builds use a corrected copy. `prepare` copies the
//! crate from cargo's registry into `<target dir>/patched/` and swaps the two arguments there.
//! Cargo then builds against that copy through `--config patch.crates-io.cubecl-spirv.path=…`.
//! Nothing of CubeCL's is kept in this repository. Cargo writes the patch into `Cargo.lock`, so
//! `LockGuard` puts the committed lock file back afterwards.
//!
//! The edit is made only where the faulty text is found verbatim. If a new cubecl-spirv no longer
//! has it, the crate is used as published and a note is printed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const CRATE: &str = "cubecl-spirv";
const FILE: &str = "src/ops/memory.rs";
/// The faulty lines of `lower_shared_implicit` and their correction. `ty` is the array's own
/// type and `value_ty` the pointer to it. A variable is declared with the type it holds, and
/// its address has the pointer type.
const EDITS: [(&str, &str); 2] = [
    (
        "GlobalVariableOp::new(ctx, value_ty, StorageClass::Workgroup, name.clone(), None)",
        "GlobalVariableOp::new(ctx, ty, StorageClass::Workgroup, name.clone(), None)",
    ),
    (
        "AddressOfOp::new(ctx, ty, name)",
        "AddressOfOp::new(ctx, value_ty, name)",
    ),
];
/// Written last into a finished copy; its absence means an interrupted copy, which is redone.
const STAMP: &str = ".deepmark-spirv-fix";

/// The `cargo` arguments that build against the corrected crate, or none where the locked
/// version no longer has the fault.
pub fn cargo_args(workspace: &Path) -> Result<Vec<String>> {
    Ok(match prepare(workspace)? {
        Some(dir) => vec!["--config".into(), patch_config(&dir)],
        None => vec![],
    })
}

/// `patch.crates-io.cubecl-spirv.path = "<dir>"` as a TOML key and a basic string.
fn patch_config(dir: &Path) -> String {
    let s = dir
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!("patch.crates-io.{CRATE}.path=\"{s}\"")
}

fn prepare(workspace: &Path) -> Result<Option<PathBuf>> {
    let version = locked_version(&workspace.join("Cargo.lock"))?;
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        None => workspace.join("target"),
    };
    let dest = target.join("patched").join(format!("{CRATE}-{version}"));
    if dest.join(STAMP).exists() {
        return Ok(Some(dest));
    }
    let src = registry_source(workspace, &version)?;
    if !fixed_copy(&src, &dest)? {
        eprintln!(
            "xtask: {CRATE} {version} ({}) no longer has the shared-memory fault this workspace \
             corrects; building it as published",
            src.display()
        );
        return Ok(None);
    }
    eprintln!(
        "xtask: wrote {} (the {CRATE} shared-memory fix, see xtask/src/spirv_fix.rs)",
        dest.display()
    );
    Ok(Some(dest))
}

/// Makes `dest` a copy of the crate at `src` with `EDITS` applied; false (and nothing written)
/// where `src` does not hold each faulty line exactly once. A finished copy (its stamp present)
/// is reused untouched: copying again would renew every file's time and make cargo rebuild
/// CubeCL and all of Burn's GPU crates. The copy is made beside `dest` and renamed into place,
/// so an interrupted one is never taken for finished.
fn fixed_copy(src: &Path, dest: &Path) -> Result<bool> {
    if dest.join(STAMP).exists() {
        return Ok(true);
    }
    let file = src.join(FILE);
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    if !EDITS.iter().all(|(bad, _)| text.matches(bad).count() == 1) {
        return Ok(false);
    }
    let fixed = EDITS
        .iter()
        .fold(text, |t, (bad, good)| t.replacen(bad, good, 1));
    let name = dest
        .file_name()
        .context("the patched crate's folder has no name")?;
    let tmp = dest.with_file_name(format!("{}.partial", name.to_string_lossy()));
    let _ = std::fs::remove_dir_all(&tmp);
    copy_dir(src, &tmp)?;
    std::fs::write(tmp.join(FILE), fixed)
        .with_context(|| format!("cannot write {}", tmp.join(FILE).display()))?;
    std::fs::write(
        tmp.join(STAMP),
        "shared memory declared with its own type\n",
    )?;
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&tmp, dest)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dest.display()))?;
    Ok(true)
}

/// The version of `cubecl-spirv` that `Cargo.lock` pins.
fn locked_version(lock: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(lock).with_context(|| format!("cannot read {}", lock.display()))?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{CRATE}\"")
            && let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
        {
            return Ok(v.to_string());
        }
    }
    bail!("{} has no {CRATE} package", lock.display())
}

/// The unpacked crate in cargo's registry, fetched first if it is not there yet.
fn registry_source(workspace: &Path, version: &str) -> Result<PathBuf> {
    let find = || -> Option<PathBuf> {
        let home = cargo_home()?;
        let dirs = std::fs::read_dir(home.join("registry/src")).ok()?;
        dirs.flatten()
            .map(|d| d.path().join(format!("{CRATE}-{version}")))
            .find(|p| p.join(FILE).is_file())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["fetch", "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .status()
        .context("cannot run cargo fetch")?;
    if !status.success() {
        bail!("cargo fetch failed; {CRATE} {version} is needed for the vulkan build");
    }
    find().with_context(|| {
        format!(
            "{CRATE} {version} is not unpacked under $CARGO_HOME/registry/src after cargo fetch"
        )
    })
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// Puts `Cargo.lock` back as it was when dropped: building with a `[patch]` path rewrites the
/// crate's lock entry, and the committed lock file should not change under the user.
pub struct LockGuard {
    path: PathBuf,
    text: Option<String>,
}

impl LockGuard {
    pub fn new(workspace: &Path) -> Self {
        let path = workspace.join("Cargo.lock");
        let text = std::fs::read_to_string(&path).ok();
        Self { path, text }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(text) = &self.text
            && std::fs::read_to_string(&self.path).ok().as_ref() != Some(text)
            && let Err(e) = std::fs::write(&self.path, text)
        {
            eprintln!("xtask: cannot restore {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A stand-in crate: the faulty lines inside some other text, plus a second file.
    fn fake_crate(dir: &Path, faulty: bool) -> PathBuf {
        let src = dir.join("src-crate");
        std::fs::create_dir_all(src.join("src/ops")).unwrap();
        let body = if faulty {
            format!(
                "fn a() {{\n    let var = {};\n    let addr = {};\n}}\n",
                EDITS[0].0, EDITS[1].0
            )
        } else {
            format!(
                "fn a() {{\n    let var = {};\n    let addr = {};\n}}\n",
                EDITS[0].1, EDITS[1].1
            )
        };
        std::fs::write(src.join(FILE), body).unwrap();
        std::fs::write(src.join("Cargo.toml"), "[package]\n").unwrap();
        src
    }

    #[test]
    fn the_copy_has_the_fix_and_is_reused_untouched() {
        let dir = tempdir("fix");
        let src = fake_crate(&dir, true);
        let dest = dir.join("patched/cubecl-spirv-0.0.1");
        assert!(fixed_copy(&src, &dest).unwrap());
        let text = std::fs::read_to_string(dest.join(FILE)).unwrap();
        for (bad, good) in EDITS {
            assert!(!text.contains(bad) && text.contains(good), "{text}");
        }
        assert!(dest.join("Cargo.toml").is_file() && dest.join(STAMP).is_file());
        assert!(!dir.join("patched/cubecl-spirv-0.0.1.partial").exists());
        // The source is left as it was.
        assert!(
            std::fs::read_to_string(src.join(FILE))
                .unwrap()
                .contains(EDITS[0].0)
        );
        // A second call keeps the copy: same file times, so cargo rebuilds nothing.
        let t0 = std::fs::metadata(dest.join(FILE))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::write(src.join(FILE), "changed").unwrap();
        assert!(fixed_copy(&src, &dest).unwrap());
        let t1 = std::fs::metadata(dest.join(FILE))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(t0, t1);
        assert_eq!(std::fs::read_to_string(dest.join(FILE)).unwrap(), text);
    }

    #[test]
    fn a_crate_without_the_fault_is_not_copied() {
        let dir = tempdir("nofault");
        let src = fake_crate(&dir, false);
        let dest = dir.join("patched/cubecl-spirv-0.0.2");
        assert!(!fixed_copy(&src, &dest).unwrap());
        assert!(!dest.exists());
    }

    #[test]
    fn the_lock_file_names_the_version_and_the_config_quotes_the_path() {
        let dir = tempdir("lock");
        let lock = dir.join("Cargo.lock");
        std::fs::write(
            &lock,
            "[[package]]\nname = \"cubecl-spirv\"\nversion = \"0.11.3\"\nsource = \"x\"\n",
        )
        .unwrap();
        assert_eq!(locked_version(&lock).unwrap(), "0.11.3");
        std::fs::write(&lock, "[[package]]\nname = \"other\"\n").unwrap();
        assert!(locked_version(&lock).is_err());
        assert_eq!(
            patch_config(Path::new("/a b/\"q\"")),
            r#"patch.crates-io.cubecl-spirv.path="/a b/\"q\"""#
        );
    }
}
