//! The general `pairwise` loader and the loud load: the three shipped example shapes (an
//! HH-style transcript file with a group column, a judge file with `response 1` / `response 2`
//! and a 0/1/tie label, a JSON array with three annotators' votes and the prompt split over two
//! fields) read from their fixtures with every expected pair written out by hand; reversed label
//! maps and ties; JSON arrays (gzip or plain, told by content); the drop threshold with the load
//! table in the error; `--skip-invalid` errors; the scenario rules of the new keys; and the
//! `validate` / `inspect` / `run` commands on real data.
//!
//! Fixtures: `tests/fixtures/{hh-style-groups.jsonl, judge-labels.jsonl, votes-array.json}`,
//! handwritten (see `tests/fixtures/README.md`).

use lpc_bench::Error;
use lpc_bench::data::real::{
    ParsedRecord, ReadCounts, TextPair, load_real_data, load_real_data_unchecked, open_data_file,
    read_records,
};
use lpc_bench::scenario::{CheckedScenario, DataFile, Outcome, Scenario};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

fn example(name: &str) -> CheckedScenario {
    Scenario::load(&root().join("scenarios/real/examples").join(name)).unwrap()
}

/// `(prompt, chosen, rejected, group, first_won)`, as written by hand below.
type Expected<'a> = (&'a str, &'a str, &'a str, &'a str, Option<bool>);

fn expected(pairs: &[Expected<'_>]) -> Vec<TextPair> {
    pairs
        .iter()
        .map(|&(p, c, r, g, first_won)| TextPair {
            prompt: p.into(),
            chosen: c.into(),
            rejected: r.into(),
            group: g.into(),
            annotator: None,
            first_won,
        })
        .collect()
}

/// Every pair of `path` read with `spec`, and the counts.
fn read_all(
    path: &Path,
    spec: &DataFile,
    skip: bool,
) -> lpc_bench::Result<(Vec<TextPair>, ReadCounts)> {
    let mut out = Vec::new();
    let counts = read_records(
        open_data_file(path)?,
        path,
        spec,
        skip,
        |_, rec: ParsedRecord| {
            out.extend(rec.pairs);
            Ok(())
        },
    )?;
    Ok((out, counts))
}

// ---------------------------------------------------------------------------------------------
// Shape 2: judge file, label 0 / 1 / tie
// ---------------------------------------------------------------------------------------------

const T: Option<bool> = Some(true);
const F: Option<bool> = Some(false);

#[test]
fn judge_labels_fixture_pairs_by_hand() {
    let spec = example("judge-labels.toml").data.files[0].clone();
    let (pairs, counts) = read_all(&fixture("judge-labels.jsonl"), &spec, false).unwrap();
    // Lines 3 and 8 are ties: no pair, counted.
    assert_eq!(
        pairs,
        expected(&[
            ("What is 2 + 2?", "4", "5", "math", T),
            ("What is 3 * 3?", "9", "6", "math", F),
            ("Name an even prime.", "2", "3", "math", F),
            ("What is 10 / 2?", "5", "2", "math", T),
            (
                "Write a haiku about rain.",
                "Rain taps the window / a slow grey afternoon / the kettle answers",
                "Rain.",
                "writing",
                T
            ),
            (
                "Give a title for a story about a lost cat.",
                "Whiskers Finds the Way Home",
                "The Cat",
                "writing",
                F
            ),
            (
                "Shorten: 'at this point in time'.",
                "now",
                "at present time",
                "writing",
                T
            ),
            ("Give a synonym for 'happy'.", "glad", "sad", "writing", F),
        ])
    );
    assert_eq!(
        (
            counts.layout,
            counts.lines,
            counts.records,
            counts.ties,
            counts.skipped
        ),
        ("jsonl", 10, 10, 2, 0)
    );
}

#[test]
fn judge_labels_reversed_map_reverses_every_pair() {
    // A file whose 0 means "the second won": the same records give the opposite pairs.
    let mut spec = example("judge-labels.toml").data.files[0].clone();
    spec.label_map = Some(
        [
            ("0".to_string(), Outcome::Second),
            ("1".to_string(), Outcome::First),
            ("tie".to_string(), Outcome::Tie),
        ]
        .into(),
    );
    spec.limit = Some(4);
    let (pairs, counts) = read_all(&fixture("judge-labels.jsonl"), &spec, false).unwrap();
    assert_eq!(
        pairs,
        expected(&[
            ("What is 2 + 2?", "5", "4", "math", F),
            ("What is 3 * 3?", "6", "9", "math", T),
            ("Name an even prime.", "3", "2", "math", T),
        ])
    );
    assert_eq!((counts.records, counts.ties), (4, 1));
}

#[test]
fn a_label_missing_from_the_map_names_the_value_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.jsonl");
    std::fs::write(
        &path,
        "{\"q\": \"a\", \"x\": \"1\", \"y\": \"2\", \"l\": 0}\n{\"q\": \"b\", \"x\": \"1\", \"y\": \"2\", \"l\": 3}\n",
    )
    .unwrap();
    let mut spec = example("judge-labels.toml").data.files[0].clone();
    spec.prompt_field = Some("q".into());
    spec.first_field = Some("x".into());
    spec.second_field = Some("y".into());
    spec.label_field = Some("l".into());
    spec.group_field = None;
    spec.group = Some("g".into());
    match read_all(&path, &spec, false) {
        Err(Error::Data { line, message, .. }) => {
            assert_eq!(line, 2);
            assert!(message.contains("label not in label_map"), "{message}");
            assert!(message.contains("\"3\""), "{message}");
            assert!(
                message.contains("\"tie\""),
                "the map's keys are listed: {message}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Skipped, it is counted under its reason.
    let (pairs, counts) = read_all(&path, &spec, true).unwrap();
    assert_eq!(pairs.len(), 1);
    assert_eq!(
        counts.skipped_by_reason.get("label not in label_map"),
        Some(&1)
    );
}

// ---------------------------------------------------------------------------------------------
// Shape 3: JSON array, three annotators' votes, prompt over instruction + input
// ---------------------------------------------------------------------------------------------

#[test]
fn votes_array_fixture_one_pair_per_vote_by_hand() {
    let mut spec = example("annotator-votes.toml").data.files[0].clone();
    spec.limit = Some(5);
    let (pairs, counts) = read_all(&fixture("votes-array.json"), &spec, false).unwrap();
    let p1 = "Translate to French.\n\nGood morning";
    let p2 = "Name a primary colour."; // input "" is left out
    let p3 = "Sort the numbers.\n\n3, 1, 2";
    let p4 = "Give a one-word answer: capital of Japan?"; // input null is left out
    let p5 = "Summarise.\n\nThe meeting moved to Friday because the room was booked.";
    let (m, r) = ("Meeting moved to Friday.", "The room.");
    assert_eq!(
        pairs,
        expected(&[
            (p1, "Bonjour", "Bonsoir", "worker_a", T),
            (p1, "Bonjour", "Bonsoir", "worker_b", T),
            (p1, "Bonsoir", "Bonjour", "worker_c", F),
            (p2, "Red", "Green", "worker_a", T),
            // worker_b: 0 = tie
            (p2, "Red", "Green", "worker_c", T),
            (p3, "1, 2, 3", "3, 2, 1", "worker_a", T),
            (p3, "1, 2, 3", "3, 2, 1", "worker_b", T),
            // worker_c: null = no vote
            (p4, "Tokyo", "Kyoto", "worker_a", F),
            (p4, "Tokyo", "Kyoto", "worker_b", F),
            (p4, "Tokyo", "Kyoto", "worker_c", F),
            (p5, m, r, "worker_a", T),
            (p5, r, m, "worker_b", F),
            // worker_c: tie
        ])
    );
    assert_eq!(
        (
            counts.layout,
            counts.lines,
            counts.records,
            counts.ties,
            counts.unpaired
        ),
        ("json-array", 5, 5, 2, 1)
    );
}

#[test]
fn votes_keep_the_annotator_beside_a_group() {
    // annotator_as = "annotator": the group is the file's label, the annotator is numbered.
    let text = std::fs::read_to_string(root().join("scenarios/real/examples/annotator-votes.toml"))
        .unwrap()
        .replace(
            "\nannotator_as = \"group\"\n",
            "\nannotator_as = \"annotator\"\ngroup = \"all\"\n",
        );
    let s = Scenario::from_toml_str(&text, "votes").unwrap();
    let (data, report) = load_real_data(&s, root(), false).unwrap();
    assert_eq!(report.annotators, vec!["worker_a", "worker_b", "worker_c"]);
    assert_eq!(data.group_names, vec!["all"]);
    let all: Vec<_> = data
        .train
        .iter()
        .chain(&data.val)
        .chain(&data.eval)
        .collect();
    assert_eq!(all.len(), 20);
    // Per annotator: worker_a votes in all 8 records, worker_b 6 times (2 ties), worker_c 6
    // times (1 tie, 1 null).
    let per = |a: usize| all.iter().filter(|p| p.annotator == a).count();
    assert_eq!((per(0), per(1), per(2)), (8, 6, 6));
}

#[test]
fn json_arrays_are_told_by_content_gzip_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read(fixture("votes-array.json")).unwrap();
    // Gzip under a misleading name, with a byte-order mark and leading white space.
    let path = dir.path().join("votes.txt");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"\xEF\xBB\xBF\n  ").unwrap();
    gz.write_all(&plain).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let spec = example("annotator-votes.toml").data.files[0].clone();
    let (a, ca) = read_all(&fixture("votes-array.json"), &spec, false).unwrap();
    let (b, cb) = read_all(&path, &spec, false).unwrap();
    assert_eq!(a, b);
    assert_eq!(ca, cb);
    assert_eq!((a.len(), ca.ties, ca.unpaired), (20, 3, 1));
}

#[test]
fn a_broken_json_array_says_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(
        &path,
        "[\n  {\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"},\n  {\"prompt\": \n",
    )
    .unwrap();
    let mut spec = DataFile::new("x", lpc_bench::scenario::DataFormat::Pairwise);
    spec.group = Some("g".into());
    match read_all(&path, &spec, true) {
        Err(Error::Data { line, message, .. }) => {
            assert_eq!(line, 4, "{message}");
            assert!(message.contains("JSON array of records"), "{message}");
            assert!(message.contains("JSON Lines"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Shape 1: HH-style transcripts with a group column
// ---------------------------------------------------------------------------------------------

#[test]
fn hh_style_fixture_groups_from_its_column() {
    let mut spec = example("hh-style-groups.toml").data.files[0].clone();
    spec.limit = Some(4);
    let (pairs, counts) = read_all(&fixture("hh-style-groups.jsonl"), &spec, false).unwrap();
    assert_eq!(
        pairs,
        expected(&[
            (
                "\n\nHuman: How long do I boil an egg?\n\nAssistant:",
                "About 9 minutes for a firm yolk.",
                "Eggs are boring.",
                "cooking",
                None
            ),
            (
                "\n\nHuman: Can I freeze bread?\n\nAssistant:",
                "Yes; wrap it well and it keeps for months.",
                "No, never.",
                "cooking",
                None
            ),
            (
                "\n\nHuman: What should I pack for Iceland in May?\n\nAssistant:",
                "Layers, a waterproof jacket and good boots.",
                "Just shorts.",
                "travel",
                None
            ),
            (
                "\n\nHuman: I am learning Python.\n\nAssistant: Great, ask away.\n\nHuman: How do I \
                 reverse a list in Python?\n\nAssistant:",
                "Use my_list.reverse() or my_list[::-1].",
                "You can't.",
                "coding",
                None
            ),
        ])
    );
    assert_eq!(counts.ties, 0);
}

#[test]
fn shipped_examples_load_with_both_sides_and_their_counts() {
    for (name, pairs, ties, groups) in [
        ("hh-style-groups.toml", 12, 0, 3),
        ("judge-labels.toml", 8, 2, 2),
        ("annotator-votes.toml", 20, 3, 3),
    ] {
        let s = example(name);
        lpc_bench::data::real::check_files(&s, root(), 5).unwrap();
        let (data, report) = load_real_data(&s, root(), false).unwrap();
        assert_eq!(report.files[0].pairs, pairs, "{name}");
        assert_eq!(report.files[0].read.ties, ties, "{name}");
        assert_eq!(data.groups, groups, "{name}");
        assert!(!data.train.is_empty() && !data.eval.is_empty(), "{name}");
        assert_eq!(
            data.train.len() + data.val.len() + data.eval.len(),
            pairs,
            "{name}"
        );
        assert_eq!(report.train_info.len(), data.train.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Loud, not silent
// ---------------------------------------------------------------------------------------------

/// A pairwise file of `distinct` pairs whose responses differ early and `alike` pairs whose
/// responses (whole transcripts) share their first 40 bytes.
fn transcripts_file(dir: &Path, distinct: usize, alike: usize) -> PathBuf {
    let path = dir.join("t.jsonl");
    let mut text = String::new();
    for i in 0..distinct {
        text.push_str(&format!(
            "{{\"prompt\": \"q{i}\", \"chosen\": \"yes {i}\", \"rejected\": \"no {i}\"}}\n"
        ));
    }
    for i in 0..alike {
        let head = format!("\\n\\nHuman: tell me about topic number {i:04}?\\n\\nAssistant:");
        text.push_str(&format!(
            "{{\"prompt\": \"t{i}\", \"chosen\": \"{head} good\", \"rejected\": \"{head} bad\"}}\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn pairwise_scenario(path: &Path, data: &str) -> CheckedScenario {
    Scenario::from_toml_str(
        &format!(
            "[data]\nmax_response_tokens = 16\neval_fraction = 0.5\n{data}\n[[data.files]]\npath = {:?}\nformat = \"pairwise\"\ngroup = \"g\"\n",
            path.display().to_string()
        ),
        "drops",
    )
    .unwrap()
}

#[test]
fn dropping_past_the_threshold_refuses_with_the_load_table() {
    let dir = tempfile::tempdir().unwrap();
    // 10 kept, 10 identical after truncation to 16 tokens: 50% dropped > 20%.
    let path = transcripts_file(dir.path(), 10, 10);
    let s = pairwise_scenario(&path, "");
    let e = load_real_data(&s, dir.path(), false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("10 of 20 pairs (50.0%) were dropped"), "{e}");
    assert!(
        e.contains("10 with identical responses after truncation"),
        "{e}"
    );
    assert!(e.contains("data.max_drop_fraction = 0.2"), "{e}");
    // The load table is in the error.
    assert!(
        e.contains("identical") && e.contains("responses_cut") && e.contains("group g"),
        "{e}"
    );
    // The same load without the check, and with the scenario allowing it, goes ahead.
    let (_, report) = load_real_data_unchecked(&s, dir.path(), false).unwrap();
    assert_eq!(
        (report.files[0].pairs, report.files[0].dropped_identical),
        (10, 10)
    );
    let allowed = pairwise_scenario(&path, "max_drop_fraction = 0.5");
    let (data, _) = load_real_data(&allowed, dir.path(), false).unwrap();
    assert_eq!(data.train.len() + data.val.len() + data.eval.len(), 10);
}

#[test]
fn heavy_truncation_warns_with_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = transcripts_file(dir.path(), 10, 0);
    let s = pairwise_scenario(&path, "max_prompt_tokens = 1");
    let (_, report) = load_real_data(&s, dir.path(), false).unwrap();
    // Every prompt ("q0".."q9", 2 bytes) is cut to 1 token; no response is cut.
    assert_eq!(
        report.warnings,
        vec![format!(
            "data.files[0] ({}): 100% of prompts (10 of 10) were cut to their last \
             data.max_prompt_tokens = 1 tokens",
            path.display()
        )]
    );
    assert!(report.to_string().contains("warning: data.files[0]"));
}

#[test]
fn skip_invalid_errors_count_reasons_and_do_not_blame_the_split() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, "not json\n{\"prompt\": \"a\"}\n[1, 2\n").unwrap();
    let s = pairwise_scenario(&path, "");
    let e = load_real_data(&s, dir.path(), true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gave no pairs at all"), "{e}");
    assert!(
        !e.contains("eval_fraction ="),
        "the split is not to blame: {e}"
    );
    assert!(
        e.contains("skipped by reason: invalid JSON ×2; missing field 'chosen' ×1"),
        "{e}"
    );
    assert!(e.contains("warning: data.files[0]"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Scenario rules of the pairwise keys
// ---------------------------------------------------------------------------------------------

const FILE: &str = "[[data.files]]\npath = \"x.jsonl\"\nformat = \"pairwise\"\n";

fn rule_error(extra: &str, format_and_group: &str) -> (String, String) {
    let text = format!("[[data.files]]\npath = \"x.jsonl\"\n{format_and_group}{extra}");
    match Scenario::from_toml_str(&text, "t") {
        Err(lpc_bench::scenario::ScenarioError::Invalid { field, rule, .. }) => (field, rule),
        other => panic!("expected a rule error for {extra:?}, got {other:?}"),
    }
}

#[test]
fn pairwise_rules_name_their_field() {
    let pw = "format = \"pairwise\"\ngroup = \"g\"\n";
    let lab = "first_field = \"a\"\nsecond_field = \"b\"\nlabel_field = \"l\"\n";
    for (extra, group, field, needle) in [
        (lab, pw, "label_map", "must be set"),
        (
            "label_field = \"l\"\nlabel_map = { \"0\" = \"first\", \"1\" = \"second\" }\n",
            pw,
            "first_field",
            "first_field and second_field",
        ),
        (
            &format!("{lab}label_map = {{ \"0\" = \"first\", \"1\" = \"tie\" }}\n") as &str,
            pw,
            "label_map",
            "\"second\"",
        ),
        (
            &format!(
                "{lab}vote_fields = [\"v\"]\nlabel_map = {{ \"0\" = \"first\", \"1\" = \"second\" }}\n"
            ),
            pw,
            "vote_fields",
            "label_field",
        ),
        (
            "first_field = \"a\"\n",
            pw,
            "data.files[0].first_field",
            "label_field or vote_fields",
        ),
        (
            "prompt_fields = [\"a\", \"a\"]\n",
            pw,
            "prompt_fields",
            "twice",
        ),
        (
            "prompt_separator = \" \"\n",
            pw,
            "prompt_separator",
            "prompt_fields",
        ),
        (
            "annotator_as = \"group\"\nvote_fields = [\"v\"]\nresponses_field = \"r\"\nlabel_map = { \"0\" = \"first\", \"1\" = \"second\" }\n",
            "format = \"pairwise\"\ngroup_field = \"g\"\n",
            "group_field",
            "annotator_as",
        ),
        (
            "label_field = \"l\"\n",
            "format = \"jsonl\"\ngroup = \"g\"\n",
            "label_field",
            "pairwise",
        ),
    ] {
        let (f, rule) = rule_error(extra, group);
        assert!(
            f.ends_with(field) || f.contains(field),
            "{extra:?}: field {f}"
        );
        assert!(rule.contains(needle), "{extra:?}: {f}: {rule}");
    }
    match Scenario::from_toml_str(
        &format!("[data]\nmax_drop_fraction = 2.0\n{FILE}group = \"g\"\n"),
        "t",
    ) {
        Err(lpc_bench::scenario::ScenarioError::Invalid { field, rule, .. }) => {
            assert_eq!(
                (field.as_str(), rule.as_str()),
                ("data.max_drop_fraction", "must be in [0, 1]")
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pairwise_scenario_resolves_and_round_trips() {
    for name in ["judge-labels.toml", "annotator-votes.toml"] {
        let s = example(name);
        let text = s.to_toml().unwrap();
        let again = Scenario::from_toml_str(&text, "x").unwrap();
        assert_eq!(again.to_toml().unwrap(), text, "{name}");
        assert!(text.contains("max_drop_fraction = 0.2"), "{text}");
    }
    let text = example("annotator-votes.toml").to_toml().unwrap();
    assert!(text.contains("annotator_as = \"group\""), "{text}");
}

// ---------------------------------------------------------------------------------------------
// The commands
// ---------------------------------------------------------------------------------------------

fn lpc_bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lpc-bench"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn validate_checks_files_and_fields_and_prints_method_defaults() {
    let out = lpc_bench(&["validate", "scenarios/real/examples/judge-labels.toml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("# methods with every default resolved:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("lpc-dpo: method = lpc-dpo, beta = "),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("scenarios/real/examples/judge-labels.toml"))
        .unwrap()
        .replace("\"response 2\"", "\"response_2\"");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let out = lpc_bench(&["validate", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("field 'response_2'"), "{stderr}");
    assert!(
        stderr.contains("record 1 has: question, response 1, response 2, label, category")
            || stderr.contains("record 1 has:"),
        "{stderr}"
    );

    let missing = dir.path().join("missing.toml");
    std::fs::write(
        &missing,
        std::fs::read_to_string(root().join("scenarios/real/examples/judge-labels.toml"))
            .unwrap()
            .replace("judge-labels.jsonl", "nowhere.jsonl"),
    )
    .unwrap();
    let out = lpc_bench(&["validate", missing.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("nowhere.jsonl"), "{stderr}");
}

#[test]
fn inspect_prints_the_load_table_group_sizes_and_baselines() {
    let out = lpc_bench(&["inspect", "scenarios/real/examples/annotator-votes.toml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "json-array",
        "group worker_a: train",
        "majority label",
        "length rule per group (train)",
        "nothing trained",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
}

#[test]
fn inspect_the_shipped_real_scenario_in_seconds() {
    let s = root().join("scenarios/real/hh-helpful-vs-harmless.toml");
    let scenario = Scenario::load(&s).unwrap();
    if !root().join(&scenario.data.files[0].path).exists() {
        eprintln!("skipped: the HH-RLHF data is not beside the project");
        return;
    }
    let clock = std::time::Instant::now();
    let out = lpc_bench(&["inspect", "scenarios/real/hh-helpful-vs-harmless.toml"]);
    let seconds = clock.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("group helpful: train") && stdout.contains("group harmless: train"));
    assert!(seconds <= 10.0, "inspect took {seconds:.1} s");
}

#[test]
fn a_real_data_run_writes_load_table_baselines_and_nmi_null() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = lpc_bench(&[
        "run",
        "scenarios/real/examples/judge-labels.toml",
        "--out",
        out_dir.to_str().unwrap(),
        "--quiet",
        "--threads",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = std::fs::read_to_string(out_dir.join("summary.md")).unwrap();
    for needle in [
        "## Reference points",
        "| chance | 0.500 |",
        "| majority label |",
        "| longer wins |",
        "## Code NMI against the shuffled-code null",
        "(n=",
        "n/a",
    ] {
        assert!(summary.contains(needle), "{needle}: {summary}");
    }
    let load = std::fs::read_to_string(out_dir.join("load.md")).unwrap();
    assert!(
        load.contains("ties") && load.contains("judge-labels.jsonl"),
        "{load}"
    );
    let metrics = std::fs::read_to_string(out_dir.join("metrics.csv")).unwrap();
    assert!(metrics.contains("post_nmi_null_p95"), "{metrics}");
    let baselines = std::fs::read_to_string(out_dir.join("baselines.csv")).unwrap();
    assert!(
        baselines.starts_with("baseline,rule,acc_obs,acc_obs_math,acc_obs_writing"),
        "{baselines}"
    );
}

#[test]
fn check_files_asks_only_for_fields_a_record_needs() {
    // Chosen/rejected message lists carry their prompt: no `prompt` field is needed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.jsonl");
    std::fs::write(
        &path,
        "{\"chosen\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello\"}], \
         \"rejected\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Go\"}]}\n",
    )
    .unwrap();
    let s = pairwise_scenario(&path, "");
    lpc_bench::data::real::check_files(&s, dir.path(), 5).unwrap();
    // A named prompt field must be there.
    let text = format!(
        "[[data.files]]\npath = {:?}\nformat = \"pairwise\"\ngroup = \"g\"\nprompt_field = \"instruction\"\n",
        path.display().to_string()
    );
    let named = Scenario::from_toml_str(&text, "t").unwrap();
    let e = lpc_bench::data::real::check_files(&named, dir.path(), 5)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("field 'instruction'") && e.contains("record 1 has: chosen, rejected"),
        "{e}"
    );
}
