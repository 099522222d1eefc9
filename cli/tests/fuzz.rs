//! The fuzz targets in CI: every committed seed and regression input replayed, then a brief
//! mutation run per target (a few thousand executions), with no finding allowed; and the limits
//! that keep hostile files from allocating (JSON size and objects, checkpoint shapes, configs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use deepmark_cli::fuzzing::{self as fuzz, FuzzOptions, Outcome};

#[path = "../../tests/common/mod.rs"]
mod common;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn seeds_and_regressions_replay_without_findings() {
    let work = common::tempdir("fuzz-replay");
    for t in fuzz::targets() {
        let dirs: Vec<PathBuf> = ["corpus", "regressions"]
            .iter()
            .map(|d| fuzz_dir().join(d).join(t.name))
            .filter(|p| p.is_dir())
            .collect();
        let files = fuzz::seed_files(&dirs).unwrap();
        assert!(!files.is_empty(), "{}: no seeds", t.name);
        let results = fuzz::replay(&t, &files, &work.join(t.name)).unwrap();
        for (f, o) in &results {
            assert!(!o.is_finding(), "{}: {o:?}", f.display());
        }
        // Seeds are valid inputs of their target (regressions and format probes excepted).
        let accepted = results.iter().filter(|(_, o)| *o == Outcome::Ok).count();
        assert!(accepted > 0, "{}: no seed is accepted", t.name);
    }
}

#[test]
fn every_target_survives_a_brief_mutation_run() {
    let out = common::tempdir("fuzz-brief");
    for t in fuzz::targets() {
        let mut opts = FuzzOptions::new(&out);
        opts.work = out.join("work");
        opts.time = Some(Duration::from_secs(20));
        opts.runs = Some(3000);
        opts.seed = 7;
        opts.seeds = vec![fuzz_dir().join("corpus").join(t.name)];
        let report = fuzz::run(&t, &opts, &|_| {}).unwrap();
        assert!(report.execs >= 3000 || report.elapsed >= Duration::from_secs(20));
        assert!(
            report.outcomes > 3,
            "{}: mutants reach several outcomes",
            t.name
        );
        assert!(
            report.findings.is_empty(),
            "{}: {:?}",
            t.name,
            report.findings
        );
    }
}

#[test]
fn a_panicking_target_is_a_finding_with_its_input_saved() {
    let out = common::tempdir("fuzz-panic");
    let mut t = fuzz::target("infer-json").unwrap();
    t.run = |p| {
        let text = std::fs::read(p).unwrap();
        if text.contains(&b'{') {
            panic!("boom");
        }
        Err(deepmark::Error::Invalid("no file named".into()))
    };
    let file = out.join("x.json");
    assert!(
        matches!(fuzz::execute(&t, b"{}", &file).unwrap(), Outcome::Panic(m) if m.contains("boom"))
    );
    assert!(matches!(
        fuzz::execute(&t, b"[]", &file).unwrap(),
        Outcome::Unnamed(_)
    ));
    let mut opts = FuzzOptions::new(&out);
    opts.work = out.join("work");
    opts.runs = Some(200);
    opts.seeds = vec![fuzz_dir().join("corpus").join("infer-json")];
    let report = fuzz::run(&t, &opts, &|_| {}).unwrap();
    let panic = report.findings.iter().find(|f| f.kind == "panic").unwrap();
    assert!(std::fs::read(&panic.input).unwrap().contains(&b'{'));
    assert!(report.findings.iter().any(|f| f.kind == "unnamed"));
}

#[test]
fn json_limits_refuse_before_parsing_and_name_the_flag() {
    let dir = common::tempdir("json-limits");
    let p = dir.join("many.json");
    // 1001 objects, one of them inside a string (not counted).
    let mut text = String::from("[\"{\"");
    for _ in 0..1001 {
        text.push_str(",{}");
    }
    text.push(']');
    std::fs::write(&p, &text).unwrap();
    let mut limits = deepmark::io::Limits::default();
    limits.json_items = 1000;
    let err = limits
        .read_json::<serde_json::Value>(&p, "test")
        .unwrap_err()
        .to_string();
    limits.json_items = 1001;
    let ok = limits.read_json::<serde_json::Value>(&p, "test");
    limits.json_bytes = 100;
    let size = limits
        .read_json::<serde_json::Value>(&p, "test")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1001 JSON objects") && err.contains("io::Limits::json_items to 1001"),
        "{err}"
    );
    assert!(err.contains("many.json") && !err.contains("--max"), "{err}");
    assert!(ok.is_ok());
    assert!(
        size.contains("io::Limits::json_bytes") && size.contains("many.json"),
        "{size}"
    );
    // The defaults hold the file; the program's flags lower the limits and name themselves.
    assert!(deepmark::io::read_json::<serde_json::Value>(&p, "test").is_ok());
    let path = p.to_str().unwrap();
    for (flag, value, said) in [
        ("--max-json-items", "1000", "raise --max-json-items to 1001"),
        ("--max-json-bytes", "100", "raise --max-json-bytes to"),
    ] {
        let o = common::deepmark(&[flag, value, "eval", "--gt", path, "--dt", path]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.code() == Some(1) && e.contains(said) && e.contains("many.json"),
            "{e}"
        );
    }
    // Deep nesting: serde_json's limit, a clear error naming the file.
    let deep = dir.join("deep.json");
    std::fs::write(
        &deep,
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .unwrap();
    let err = deepmark::io::read_json::<serde_json::Value>(&deep, "test")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("deep.json") && err.contains("recursion limit"),
        "{err}"
    );
}

#[test]
fn absurd_model_configs_and_weight_shapes_are_refused_before_allocating() {
    let dir = common::tempdir("absurd");
    // A config asking for a 10^6-wide ResNet: refused by the reader, before any init.
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fuzz_dir().join("corpus/config-json/res18.json")).unwrap(),
    )
    .unwrap();
    cfg["backbone"]["planes"] = serde_json::json!([1_000_000, 1_000_000, 1_000_000, 1_000_000]);
    let p = dir.join("model.json");
    std::fs::write(&p, cfg.to_string()).unwrap();
    let err = deepmark::checkpoint::read_config(&p)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.json") && err.contains("resnet planes"),
        "{err}"
    );
    cfg["backbone"]["planes"] = serde_json::json!([8192, 8192, 8192, 8192]);
    cfg["backbone"]["layers"] = serde_json::json!([100, 100, 100, 100]);
    std::fs::write(&p, cfg.to_string()).unwrap();
    let err = deepmark::checkpoint::read_config(&p)
        .unwrap_err()
        .to_string();
    assert!(err.contains("G parameters"), "{err}");
    // Hourglass lists that do not fit (this used to panic on an empty list).
    let mut hg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fuzz_dir().join("corpus/config-json/hourglass104.json")).unwrap(),
    )
    .unwrap();
    hg["backbone"]["dims"] = serde_json::json!([]);
    std::fs::write(&p, hg.to_string()).unwrap();
    let err = deepmark::checkpoint::read_config(&p)
        .unwrap_err()
        .to_string();
    assert!(err.contains("hourglass dims"), "{err}");

    // Weights whose header claims another (huge) shape: refused from the header, naming the
    // tensor, without reading its data.
    use burn::store::{BurnpackStore, ModuleSnapshot};
    let device = common::flex();
    let big = fuzz::FuzzNetConfig {
        in_channels: 3,
        hidden: 64,
        out_channels: 2,
    };
    let model = big.init(&device).unwrap();
    let w = dir.join("w.bpk");
    let mut store = BurnpackStore::from_file(&w)
        .auto_extension(false)
        .overwrite(true);
    model.save_into(&mut store).unwrap();
    deepmark::io::write_json(
        &deepmark::checkpoint::config_path(&w),
        &fuzz::FuzzNetConfig::default(),
    )
    .unwrap();
    let err =
        deepmark::checkpoint::load_module(&w, "fuzz net config", |c: &fuzz::FuzzNetConfig| {
            c.init(&device)
        })
        .map(drop)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("w.bpk")
            && err.contains("conv.weight: file [64, 3, 3, 3], config [4, 3, 3, 3]"),
        "{err}"
    );
}
