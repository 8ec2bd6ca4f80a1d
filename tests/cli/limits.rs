//! Issue 12: nothing lost, nothing absurd. Absurd sizes are refused before any work, `run`
//! refuses sweep files and empty files, `--dry-run` writes nothing, `--force` owns checkpoints,
//! and a sweep survives an impossible cell.
//!
//! Oracles: exit codes, the field and bound named in the message, the absence of any file under
//! `--out`, wall time under 2 s for refusals, and the merged table's rows.

use super::{lpc_bench, scenario};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The smoke scenario with `edits` (`(dotted path, TOML value)`) applied.
fn smoke_with(edits: &[(&str, &str)]) -> String {
    let text = std::fs::read_to_string(scenario("smoke.toml")).unwrap();
    let mut table: toml::Table = text.parse().unwrap();
    for (path, value) in edits {
        let v: toml::Value = format!("v = {value}").parse::<toml::Table>().unwrap()["v"].clone();
        let keys: Vec<&str> = path.split('.').collect();
        let mut t = &mut table;
        for k in &keys[..keys.len() - 1] {
            t = t
                .entry(k.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .unwrap();
        }
        t.insert(keys[keys.len() - 1].to_string(), v);
    }
    toml::to_string(&table).unwrap()
}

fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_lpc-bench"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the lpc-bench binary runs");
    (out, start.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_clean_refusal(o: &Output, took: Duration, out: &Path, expect: &[&str], case: &str) {
    let err = stderr(o);
    let code = o.status.code();
    assert!(
        matches!(code, Some(1) | Some(2)),
        "{case}: exit {code:?}, stderr {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace") && !err.contains("RUST_BACKTRACE"),
        "{case}: {err}"
    );
    for e in expect {
        assert!(err.contains(e), "{case}: expected '{e}' in: {err}");
    }
    assert!(took < Duration::from_secs(2), "{case}: took {took:?}");
    assert!(!out.exists(), "{case}: {} was created", out.display());
}

/// Acceptance 1: every absurd size of the issue is a clean error naming the field and the bound,
/// in under 2 s, with nothing under --out.
#[test]
fn absurd_sizes_are_refused_before_any_work() {
    let lpc = "[{ method = \"lpc-dpo\", codebook = 1000000000 }]";
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![("data.train_pairs", "1000000000000")],
            vec!["data.train_pairs", "<= 10000000"],
        ),
        (
            vec![("data.eval_pairs", "1000000000000")],
            vec!["data.eval_pairs", "<= 10000000"],
        ),
        (
            vec![("train.steps", "1000000000000")],
            vec!["train.steps", "<= 10000000"],
        ),
        (
            vec![("train.batch_size", "1000000000000")],
            vec!["train.batch_size", "<= 1000000"],
        ),
        (
            vec![("model.warmup_steps", "1000000000000")],
            vec!["model.warmup_steps", "<= 10000000"],
        ),
        (
            vec![("model.d_model", "1048576"), ("model.heads", "1")],
            vec!["model.d_model", "<= 16384"],
        ),
        (
            vec![("world.vocab", "1000000000")],
            vec!["world.vocab", "<= 1000000"],
        ),
        (
            vec![("world.sources", "1000000000")],
            vec!["world.sources", "<= 65536"],
        ),
        (
            vec![("methods", lpc)],
            vec!["methods[0].codebook", "<= 65536"],
        ),
        (
            vec![("data.train_pairs", "9223372036854775807")],
            vec!["data.train_pairs", "<= 10000000"],
        ),
        (
            vec![("world.prompt_len", "1000000000")],
            vec!["world.prompt_len", "<= 65536"],
        ),
        (
            vec![("world.types", "1000000"), ("world.feature_dim", "1000000")],
            vec!["world.types", "<= 1024"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (edits, expect)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&file, smoke_with(edits)).unwrap();
        let out = dir.path().join(format!("out{i}"));
        for args in [
            vec![
                "run",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            vec![
                "run",
                "--dry-run",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            vec!["validate", file.to_str().unwrap()],
        ] {
            let (o, took) = run_with_env(&args, &[]);
            assert_clean_refusal(&o, took, &out, expect, &format!("{edits:?} {}", args[0]));
        }
    }
}

/// Sizes within the bounds that do not fit the memory budget are refused by the estimate, with
/// the responsible fields and the numbers.
#[test]
fn a_run_beyond_the_memory_budget_is_refused_with_fields_and_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("long.toml");
    std::fs::write(&file, smoke_with(&[("world.prompt_len", "60000")])).unwrap();
    let out = dir.path().join("out");
    let env = [("LPC_BENCH_MEMORY_LIMIT", "4GiB")];
    for dry in [false, true] {
        let mut args = vec![
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        if dry {
            args.push("--dry-run");
        }
        let (o, took) = run_with_env(&args, &env);
        assert_clean_refusal(
            &o,
            took,
            &out,
            &[
                "world.prompt_len = 60000",
                "4.0 GiB",
                "LPC_BENCH_MEMORY_LIMIT",
                "memory",
            ],
            "prompt_len 60000",
        );
    }
    // validate reports it (this machine may be too small) but the file itself is valid.
    let (o, _) = run_with_env(&["validate", file.to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("# warning: `run` would refuse this here"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let smoke = scenario("smoke.toml");
    let o = lpc_bench(&[
        "run",
        "--dry-run",
        smoke.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for part in [
        "plan of scenario 'smoke'",
        "pairs",
        "model",
        "optimiser",
        "batches",
        "codes",
        "work",
        "fits",
        "nothing written",
    ] {
        assert!(text.contains(part), "'{part}' missing from:\n{text}");
    }
    assert!(!out.exists());
    // Without --out too.
    let o = lpc_bench(&["run", "--dry-run", smoke.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // --fusion overrides train.fusion (shown for a CUDA device; a dry run needs no GPU) and
    // takes on or off only.
    let gpu = scenario("gpu/smoke.toml");
    for (flag, shown) in [("on", "kernel fusion on"), ("off", "kernel fusion off")] {
        let o = lpc_bench(&["run", "--dry-run", gpu.to_str().unwrap(), "--fusion", flag]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains(shown), "{}", stdout(&o));
    }
    let o = lpc_bench(&[
        "run",
        "--dry-run",
        gpu.to_str().unwrap(),
        "--fusion",
        "maybe",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("expected on or off"), "{}", stderr(&o));
    // validate prints the estimate as TOML comments.
    let o = lpc_bench(&["validate", smoke.to_str().unwrap()]);
    assert!(
        stdout(&o).contains("# resources (estimate"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn run_refuses_a_sweep_file_after_checking_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sweep = scenario("paper/codebook-size.toml");
    let o = lpc_bench(&[
        "run",
        sweep.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("is a sweep") && err.contains("lpc-bench sweep"),
        "{err}"
    );
    assert!(!out.exists());
    // A misspelled key inside [sweep] is reported as such.
    let bad = dir.path().join("bad.toml");
    let mut text = std::fs::read_to_string(scenario("smoke.toml")).unwrap();
    text.push_str("\n[sweep]\nworld.distnace = [0.0, 1.0]\n");
    std::fs::write(&bad, text).unwrap();
    let o = lpc_bench(&["run", bad.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("distnace"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn empty_and_binary_scenario_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "# nothing but a comment\n\n").unwrap();
    let o = lpc_bench(&[
        "run",
        empty.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("empty") && stderr(&o).contains("name"),
        "{}",
        stderr(&o)
    );
    let garbage = dir.path().join("garbage.toml");
    std::fs::write(&garbage, b"name = \"g\"\n\x00\xff\xfe\x80binary").unwrap();
    for cmd in ["run", "validate"] {
        let o = lpc_bench(&[
            cmd,
            garbage.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let err = stderr(&o);
        assert!(!o.status.success());
        if cmd == "run" {
            assert!(
                err.contains("byte offset 12") && err.contains("line 2"),
                "{err}"
            );
        }
    }
    assert!(!out.exists());
}

/// A tiny world for runs that finish in a second.
fn tiny(methods: &[&str]) -> String {
    let list: Vec<String> = methods
        .iter()
        .map(|m| format!("{{ method = \"{m}\" }}"))
        .collect();
    smoke_with(&[
        ("train.steps", "4"),
        ("train.eval_every", "2"),
        ("model.warmup_steps", "2"),
        ("data.train_pairs", "64"),
        ("data.eval_pairs", "32"),
        ("methods", &format!("[{}]", list.join(", "))),
    ])
}

/// Acceptance 5: the overwrite guard covers checkpoints, and --force leaves no stale checkpoint
/// beside new results.
#[test]
fn force_owns_every_file_of_a_run_including_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = dir.path().join("s.toml");
    let run = |force: bool| {
        let mut args = vec![
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ];
        if force {
            args.push("--force");
        }
        lpc_bench(&args)
    };
    std::fs::write(&file, tiny(&["dpo", "ipo"])).unwrap();
    let o = run(false);
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = out.join("checkpoints");
    for f in ["reference.mpk", "dpo.mpk", "ipo.mpk"] {
        assert!(ck.join(f).is_file(), "{f}");
    }
    // A folder holding only a checkpoint is guarded too.
    let lone = dir.path().join("lone");
    std::fs::create_dir_all(lone.join("checkpoints")).unwrap();
    std::fs::copy(ck.join("dpo.mpk"), lone.join("checkpoints/dpo.mpk")).unwrap();
    let before = std::fs::read(lone.join("checkpoints/dpo.mpk")).unwrap();
    let o = lpc_bench(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        lone.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("checkpoints/dpo.mpk") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(lone.join("checkpoints/dpo.mpk")).unwrap(),
        before
    );
    // --force with a shorter method list: the stale ipo checkpoint goes, and the run says so.
    std::fs::write(&file, tiny(&["dpo"])).unwrap();
    let o = run(true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("checkpoints/ipo.mpk"), "{}", stderr(&o));
    let mut left: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["dpo.mpk", "reference.mpk"]);
    // A baseline-only run writes header-only codes.csv and steering.csv, never `""`.
    let codes = std::fs::read_to_string(out.join("codes.csv")).unwrap();
    assert_eq!(
        codes,
        "method,pair,type,source,annotator,prior_code,posterior_code,kl,prior_probs,posterior_probs\n"
    );
    let steering = std::fs::read_to_string(out.join("steering.csv")).unwrap();
    assert_eq!(
        steering,
        "method,code,type,mean_reward,matched,steered_acc_noiseless\n"
    );
}

/// Acceptance 4: a sweep with one impossible cell finishes every other cell, writes the merged
/// table with the failed cell marked, and a resume retries only the failed cell.
#[test]
fn a_sweep_survives_an_impossible_cell() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = dir.path().join("sweep.toml");
    let mut text = tiny(&["dpo"]);
    text.push_str("\n[sweep]\n\"world.prompt_len\" = [4, 60000]\n\"data.seed\" = [0, 1]\n");
    std::fs::write(&file, text).unwrap();
    let env = [("LPC_BENCH_MEMORY_LIMIT", "4GiB")];
    // The dry run already says which cells cannot run here.
    let (o, _) = run_with_env(&["sweep", "--dry-run", file.to_str().unwrap()], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("too big") && stdout(&o).contains("2 cell(s) exceed"),
        "{}",
        stdout(&o)
    );
    let args = [
        "sweep",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    let (o, _) = run_with_env(&args, &env);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("2 of 4 cells failed") && err.contains("prompt_len=60000"),
        "{err}"
    );
    let merged = out.join("all-metrics.csv");
    let table = std::fs::read_to_string(&merged).unwrap();
    let mut r = csv::Reader::from_reader(table.as_bytes());
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), 4, "{table}");
    for row in &rows {
        let long = row[col("world.prompt_len")] == *"60000";
        if long {
            assert_eq!(&row[col("status")], "failed", "{table}");
            assert!(row[col("error")].contains("memory"), "{table}");
        } else {
            assert_eq!(&row[col("status")], "ok", "{table}");
            assert!(row[col("error")].is_empty());
            assert!(!row[col("eval_loss")].is_empty(), "{table}");
        }
    }
    // Resume: the finished cells are skipped, the failed ones retried (and fail again); the
    // merged table is the same.
    let (o, _) = run_with_env(
        &[
            "sweep",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("2 finished, 2 to run"),
        "{}",
        stdout(&o)
    );
    assert_eq!(std::fs::read_to_string(&merged).unwrap(), table);
}

/// `generate` streams pairs but holds the world's tables: a world too large is refused before
/// anything is written.
#[test]
fn generate_refuses_a_world_beyond_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.toml");
    std::fs::write(
        &file,
        smoke_with(&[("world.vocab", "1000000"), ("world.reward", "\"bigram\"")]),
    )
    .unwrap();
    let out = dir.path().join("out");
    let (o, took) = run_with_env(
        &[
            "generate",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[("LPC_BENCH_MEMORY_LIMIT", "4GiB")],
    );
    assert_clean_refusal(
        &o,
        took,
        &out,
        &["world.vocab = 1000000", "bigram", "memory"],
        "bigram vocab 1e6",
    );
}
