//! The documents stay true to the repository: README's set-up commands are the ones CI runs,
//! every link in the documents reaches a file (and a heading) that exists, and every
//! `cargo xtask …` or `deepmark …` command in their shell blocks names a real command with flags
//! that command has.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[path = "../../tests/common/mod.rs"]
mod common;

/// The Markdown documents a reader is pointed at.
fn documents() -> Vec<PathBuf> {
    let root = common::root();
    let mut docs: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "CHANGELOG.md",
        "benches/RESULTS.md",
    ]
    .iter()
    .map(|p| root.join(p))
    .collect();
    let mut guide: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("the guide folder docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    guide.sort();
    assert!(guide.len() >= 5, "the guide has pages: {guide:?}");
    docs.extend(guide);
    docs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text outside fenced code blocks; with `blank_code`, inline code blanked too (links
/// inside code are not links, but a heading's anchor keeps its code spans' text).
fn prose(text: &str, blank_code: bool) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            let mut code = false;
            for c in line.chars() {
                if c == '`' {
                    code = !code;
                }
                let hidden = blank_code && (code || c == '`');
                out.push(if hidden { ' ' } else { c });
            }
        }
        out.push('\n');
    }
    out
}

/// The anchor a code host gives a heading: lower case, letters, digits, `-` and `_` kept,
/// spaces to `-`, everything else dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a document's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    prose(text, false)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// Link targets `[text](target)` of a document's prose.
fn links(text: &str) -> Vec<String> {
    let p = prose(text, true);
    let mut out = Vec::new();
    let mut rest = p.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].trim().to_string());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_link_reaches_a_file_and_heading_of_the_repository() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = read(&doc);
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            checked += 1;
            if !file.exists() {
                broken.push(format!("{}: {target}: no such file", doc.display()));
                continue;
            }
            if let Some(a) = anchor
                && file.extension().is_some_and(|e| e == "md")
                && !anchors(&read(&file)).contains(a)
            {
                broken.push(format!(
                    "{}: {target}: {} has no heading with that anchor",
                    doc.display(),
                    file.display()
                ));
            }
        }
    }
    assert!(checked > 20, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Commands of a document's `sh` blocks, continuation lines joined.
fn shell_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") {
            in_sh = !in_sh && t.trim_start_matches('`').trim() == "sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let line = line.split(" # ").next().unwrap_or("").trim_end();
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// `deepmark <command> --help`, cached.
fn help_of<'a>(cache: &'a mut BTreeMap<String, String>, command: &str) -> &'a str {
    cache.entry(command.to_string()).or_insert_with(|| {
        let o = common::deepmark(&[command, "--help"]);
        if o.status.success() {
            String::from_utf8_lossy(&o.stdout).into_owned()
        } else {
            String::new()
        }
    })
}

#[test]
fn every_documented_command_and_flag_exists() {
    // Commands xtask runs itself; everything else goes to the `deepmark` program.
    const XTASK: [&str; 3] = ["test", "check-features", "spirv-fix"];
    let mut helps = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        for line in shell_lines(&read(&doc)) {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            for (i, t) in tokens.iter().enumerate() {
                let command = match (*t, tokens.get(i + 1)) {
                    ("xtask", Some(c)) if i > 0 && tokens[i - 1] == "cargo" => *c,
                    ("deepmark", Some(c)) => *c,
                    _ => continue,
                };
                let flags: Vec<&str> = tokens[i + 2..]
                    .iter()
                    .take_while(|t| !matches!(**t, "|" | "&&" | ";" | "done"))
                    .map(|t| t.trim_start_matches('['))
                    .filter(|t| t.starts_with("--"))
                    .map(|t| {
                        t.split(['=', ']', ','])
                            .next()
                            .unwrap_or(t)
                            .trim_end_matches(['.', ')'])
                    })
                    .collect();
                checked += 1;
                if XTASK.contains(&command) {
                    if command == "test" {
                        for f in flags.iter().filter(|f| **f != "--no-vulkan") {
                            wrong.push(format!(
                                "{}: `{line}`: xtask test has no {f}",
                                doc.display()
                            ));
                        }
                    }
                    continue;
                }
                let help = help_of(&mut helps, command);
                if help.is_empty() {
                    wrong.push(format!("{}: `{line}`: no command {command}", doc.display()));
                    continue;
                }
                for f in flags {
                    let known = help
                        .split(|c: char| !(c.is_alphanumeric() || c == '-'))
                        .any(|w| w == f);
                    if !known {
                        wrong.push(format!("{}: `{line}`: {command} has no {f}", doc.display()));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} commands found");
    assert!(
        wrong.is_empty(),
        "documented commands that do not exist:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn readme_runs_what_ci_runs_and_stays_short() {
    let root = common::root();
    let readme = read(&root.join("README.md"));
    let ci = read(&root.join(".ci/run"));
    let setup = readme
        .split("## Set up")
        .nth(1)
        .expect("README has a `## Set up` section");
    let block: Vec<String> = shell_lines(setup.split("\n## ").next().unwrap())
        .into_iter()
        .map(|l| l.trim().to_string())
        .collect();
    let ci_commands: Vec<&str> = ci
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cargo xtask"))
        .collect();
    assert!(
        !ci_commands.is_empty(),
        ".ci/run runs no `cargo xtask` command"
    );
    for c in ci_commands {
        assert!(
            block.iter().any(|l| l == c),
            "README's set-up block {block:?} lacks `{c}`, which .ci/run runs"
        );
    }
    assert!(
        block.iter().any(|l| l == "cargo xtask train"),
        "README's set-up block names the main job"
    );
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines; the guide in docs/ takes the detail"
    );
}

#[test]
fn no_source_comment_points_outside_the_repository() {
    let root = common::root();
    let mut found = Vec::new();
    let mut stack = vec![
        root.join("src"),
        root.join("cli/src"),
        root.join("xtask/src"),
    ];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                for (n, line) in read(&p).lines().enumerate() {
                    if line.contains("FACTS") || line.contains("shared/reference") {
                        found.push(format!("{}:{}: {}", p.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "comments citing notes outside the repository:\n{}",
        found.join("\n")
    );
}
