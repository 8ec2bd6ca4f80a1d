//! Real-data loading: the four layouts on fixture files (malformed lines included), the HH-RLHF
//! prompt/response split, truncation counts, the hash split, the scenario rules of the real-data
//! fields, and loading the shipped HH slices into `PreferenceData`.
//!
//! Fixtures live in `tests/fixtures/` (see its README for their provenance).

use lpc_bench::Error;
use lpc_bench::data::real::{
    ParsedRecord, ReadCounts, TextPair, is_held_out, load_real_data, open_data_file, read_records,
    split_hash, split_hh_transcripts,
};
use lpc_bench::scenario::{DataFile, DataFormat, Scenario, ScenarioError};
use proptest::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

fn file_spec(format: DataFormat, group: Option<&str>, group_field: Option<&str>) -> DataFile {
    let mut f = DataFile::new("unused", format);
    f.group = group.map(str::to_string);
    f.group_field = group_field.map(str::to_string);
    f
}

type Records = Vec<(usize, ParsedRecord)>;

/// Read a fixture with `spec`, collecting every record with its line number.
fn read_fixture(
    name: &str,
    spec: &DataFile,
    skip: bool,
) -> lpc_bench::Result<(Records, ReadCounts)> {
    let path = fixture(name);
    let mut out = Vec::new();
    let counts = read_records(open_data_file(&path)?, &path, spec, skip, |line, rec| {
        out.push((line, rec));
        Ok(())
    })?;
    Ok((out, counts))
}

fn pair(prompt: &str, chosen: &str, rejected: &str, group: &str) -> TextPair {
    TextPair {
        prompt: prompt.into(),
        chosen: chosen.into(),
        rejected: rejected.into(),
        group: group.into(),
        annotator: None,
        first_won: None,
    }
}

/// `p` with the position of its chosen response recorded (first or second).
fn at(mut p: TextPair, first_won: bool) -> TextPair {
    p.first_won = Some(first_won);
    p
}

/// Asserts `r` is a data error on `line` of the fixture `name` whose message contains `needle`.
fn assert_data_error<T: std::fmt::Debug>(
    r: lpc_bench::Result<T>,
    name: &str,
    line: usize,
    needle: &str,
) {
    match r {
        Err(Error::Data {
            path,
            line: l,
            message,
        }) => {
            assert_eq!(path, fixture(name));
            assert_eq!(l, line, "{message}");
            assert!(message.contains(needle), "{message}");
            let shown = Error::Data {
                path,
                line: l,
                message,
            }
            .to_string();
            assert!(
                shown.contains(&format!("{name}:{line}:")),
                "the message names file and line: {shown}"
            );
        }
        other => panic!("expected a data error on line {line}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// HH-RLHF prompt/response split
// ---------------------------------------------------------------------------------------------

#[test]
fn hh_split_single_turn() {
    let (p, c, r) = split_hh_transcripts(
        "\n\nHuman: Hi\n\nAssistant: Hello there",
        "\n\nHuman: Hi\n\nAssistant: Go away",
    )
    .unwrap();
    assert_eq!(p, "\n\nHuman: Hi\n\nAssistant:");
    assert_eq!((c, r), ("Hello there", "Go away"));
}

#[test]
fn hh_split_responses_sharing_words_keep_them() {
    // The common prefix runs into the responses ("I think "); the prompt still ends at the cue.
    let (p, c, r) = split_hh_transcripts(
        "\n\nHuman: A\n\nAssistant: B\n\nHuman: C?\n\nAssistant: I think yes",
        "\n\nHuman: A\n\nAssistant: B\n\nHuman: C?\n\nAssistant: I think no",
    )
    .unwrap();
    assert_eq!(p, "\n\nHuman: A\n\nAssistant: B\n\nHuman: C?\n\nAssistant:");
    assert_eq!((c, r), ("I think yes", "I think no"));
}

#[test]
fn hh_split_divergence_inside_a_cue_uses_the_last_whole_cue() {
    // The transcripts part inside the second cue ("\n\nAssist|ant:" vs "\n\nAssist|: "), so the
    // last cue wholly inside the common prefix is the first one.
    let (p, c, r) = split_hh_transcripts(
        "\n\nHuman: q\n\nAssistant: a\n\nHuman: r\n\nAssistant: b",
        "\n\nHuman: q\n\nAssistant: a\n\nHuman: r\n\nAssist: c",
    )
    .unwrap();
    assert_eq!(p, "\n\nHuman: q\n\nAssistant:");
    assert_eq!(c, "a\n\nHuman: r\n\nAssistant: b");
    assert_eq!(r, "a\n\nHuman: r\n\nAssist: c");
}

#[test]
fn hh_split_extra_turn_in_one_transcript() {
    let (p, c, r) = split_hh_transcripts(
        "\n\nHuman: q\n\nAssistant: x",
        "\n\nHuman: q\n\nAssistant: x\n\nHuman: more\n\nAssistant: y",
    )
    .unwrap();
    assert_eq!(p, "\n\nHuman: q\n\nAssistant:");
    assert_eq!((c, r), ("x", "x\n\nHuman: more\n\nAssistant: y"));
}

#[test]
fn hh_split_multibyte_divergence() {
    // "é" = C3 A9 and "è" = C3 A8 share their first byte; the split must stay on char boundaries.
    let (p, c, r) = split_hh_transcripts(
        "\n\nHuman: accent?\n\nAssistant: é",
        "\n\nHuman: accent?\n\nAssistant: è",
    )
    .unwrap();
    assert_eq!(p, "\n\nHuman: accent?\n\nAssistant:");
    assert_eq!((c, r), ("é", "è"));
}

#[test]
fn hh_split_identical_and_unshared() {
    let t = "\n\nHuman: q\n\nAssistant: same";
    assert_eq!(
        split_hh_transcripts(t, t).unwrap(),
        ("\n\nHuman: q\n\nAssistant:", "same", "same")
    );
    let e = split_hh_transcripts(
        "\n\nHuman: a\n\nAssistant: b",
        "\n\nHuman: c\n\nAssistant: d",
    )
    .unwrap_err();
    assert!(e.contains("Assistant"), "{e}");
}

proptest! {
    /// Building transcripts as prompt + " " + response and splitting them gives the parts back,
    /// whenever the responses differ and hold no cue (so the last shared cue ends the prompt).
    #[test]
    fn hh_split_inverts_concatenation(
        turns in proptest::collection::vec(("[a-zA-Z ?.]{0,12}", "[a-zA-Z ?.]{0,12}"), 0..3),
        last in "[a-zA-Z ?.]{0,12}",
        a in "[a-z .!]{0,16}",
        b in "[a-z .!]{0,16}",
    ) {
        prop_assume!(a != b);
        let mut prompt = String::new();
        for (h, x) in &turns {
            prompt.push_str(&format!("\n\nHuman: {h}\n\nAssistant: {x}"));
        }
        prompt.push_str(&format!("\n\nHuman: {last}\n\nAssistant:"));
        let (chosen, rejected) = (format!("{prompt} {a}"), format!("{prompt} {b}"));
        let (p, c, r) = split_hh_transcripts(&chosen, &rejected).unwrap();
        prop_assert_eq!(p, prompt.as_str());
        prop_assert_eq!(c, a.as_str());
        prop_assert_eq!(r, b.as_str());
    }
}

// ---------------------------------------------------------------------------------------------
// Loaders on fixtures
// ---------------------------------------------------------------------------------------------

#[test]
fn hh_fixture_bad_line_names_file_and_line() {
    let spec = file_spec(DataFormat::HhRlhf, Some("helpful"), None);
    // Line 2 is cut-off JSON.
    assert_data_error(
        read_fixture("hh-rlhf-malformed.jsonl", &spec, false),
        "hh-rlhf-malformed.jsonl",
        2,
        "invalid JSON",
    );
}

#[test]
fn hh_fixture_skip_mode_counts() {
    let spec = file_spec(DataFormat::HhRlhf, Some("helpful"), None);
    let (recs, counts) = read_fixture("hh-rlhf-malformed.jsonl", &spec, true).unwrap();
    // 8 lines: 1 and 8 valid, 3 blank (not counted), 2 and 4-7 bad.
    assert_eq!(
        (
            counts.lines,
            counts.records,
            counts.skipped,
            counts.unpaired
        ),
        (7, 2, 5, 0)
    );
    assert!(counts.first_skipped.unwrap().starts_with("line 2:"));
    assert_eq!(recs[0].0, 1);
    assert_eq!(
        recs[0].1.pairs,
        vec![pair(
            "\n\nHuman: What is 2+2?\n\nAssistant:",
            "4.",
            "5.",
            "helpful"
        )]
    );
    assert_eq!(recs[1].0, 8);
    assert_eq!(
        recs[1].1.pairs,
        vec![pair(
            "\n\nHuman: Hi.\n\nAssistant: Hello.\n\nHuman: Bye.\n\nAssistant:",
            "Goodbye!",
            "Whatever.",
            "helpful"
        )]
    );
}

#[test]
fn generic_fixture_layouts() {
    let spec = file_spec(DataFormat::Jsonl, None, Some("source"));
    assert_data_error(
        read_fixture("generic.jsonl", &spec, false),
        "generic.jsonl",
        5,
        "missing field 'rejected'",
    );
    let (recs, counts) = read_fixture("generic.jsonl", &spec, true).unwrap();
    assert_eq!((counts.lines, counts.records, counts.skipped), (9, 4, 5));
    let pairs: Vec<TextPair> = recs.into_iter().flat_map(|(_, r)| r.pairs).collect();
    assert_eq!(
        pairs,
        vec![
            // Plain strings.
            pair("Name a colour.", "Blue.", "Seven.", "trivia"),
            // Message lists without a prompt field: the turns before the response, rendered.
            pair("\n\nHuman: Say hi.\n\nAssistant:", "Hi!", "No.", "chat"),
            // A string prompt field is taken verbatim; a numeric group is written as text.
            pair("Q?", "A.", "B.", "7"),
            // A message-list prompt field is rendered, roles mapped (system -> System).
            pair(
                "\n\nSystem: Be brief.\n\nHuman: Why?\n\nAssistant:",
                "Because.",
                "No reason.",
                "chat"
            ),
        ]
    );
}

#[test]
fn generic_fixture_each_bad_line_has_its_reason() {
    let spec = file_spec(DataFormat::Jsonl, None, Some("source"));
    let path = fixture("generic.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let reasons = [
        (5, "missing field 'rejected'"),
        (6, "must end with an assistant message"),
        (7, "differ before their last assistant message"),
        (8, "missing group field 'source'"),
        (9, "must be a message"),
    ];
    for (line, needle) in reasons {
        let one = text.lines().nth(line - 1).unwrap();
        let r = read_records(one.as_bytes(), &path, &spec, false, |_, _| Ok(()));
        match r {
            Err(Error::Data {
                line: 1, message, ..
            }) => {
                assert!(message.contains(needle), "line {line}: {message}")
            }
            other => panic!("line {line}: {other:?}"),
        }
    }
}

#[test]
fn generic_custom_field_names() {
    let mut spec = file_spec(DataFormat::Jsonl, Some("g"), None);
    spec.prompt_field = Some("question".into());
    spec.chosen_field = Some("good".into());
    spec.rejected_field = Some("bad".into());
    let line = br#"{"question": "Q", "good": "yes", "bad": "no"}"#;
    let mut got = Vec::new();
    read_records(&line[..], Path::new("mem"), &spec, false, |_, r| {
        got.extend(r.pairs);
        Ok(())
    })
    .unwrap();
    assert_eq!(got, vec![pair("Q", "yes", "no", "g")]);
}

#[test]
fn ultrafeedback_fixture_pairs_per_aspect() {
    let spec = file_spec(DataFormat::UltraFeedback, None, None);
    assert_data_error(
        read_fixture("ultrafeedback.jsonl", &spec, false),
        "ultrafeedback.jsonl",
        3,
        "completions[0].response",
    );
    let (recs, counts) = read_fixture("ultrafeedback.jsonl", &spec, true).unwrap();
    // Records on lines 1, 2 and 5; record 2 leaves helpfulness (3 vs 3, a tie) and honesty (one
    // rated completion) unpaired; record 5 has no completions, so all four aspects are unpaired.
    assert_eq!(
        (
            counts.lines,
            counts.records,
            counts.skipped,
            counts.unpaired
        ),
        (5, 3, 2, 6)
    );
    let lines: Vec<usize> = recs.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![1, 2, 5]);
    let q = "Name a prime number.";
    // Record 1 ratings per completion (Two., Nine., Seven is prime., I am not sure.):
    // helpfulness 4,1,5,2; honesty 5,2,N/A,5; instruction_following 5,3,5,1; truthfulness
    // 5,1,5,3. The first highest beats the first lowest.
    assert_eq!(
        recs[0].1.pairs,
        vec![
            pair(q, "Seven is prime.", "Nine.", "helpfulness"),
            pair(q, "Two.", "Nine.", "honesty"),
            pair(q, "Two.", "I am not sure.", "instruction_following"),
            pair(q, "Two.", "Nine.", "truthfulness"),
        ]
    );
    // Record 2: instruction_following 4 vs 2; truthfulness as rating lists, mean (4+2)/2 = 3
    // vs 1.
    let q = "Capital of France?";
    assert_eq!(
        recs[1].1.pairs,
        vec![
            pair(q, "Paris.", "Lyon.", "instruction_following"),
            pair(q, "Paris.", "Lyon.", "truthfulness"),
        ]
    );
    assert!(recs[2].1.pairs.is_empty());
}

#[test]
fn ultrafeedback_score_aspects() {
    let mut spec = file_spec(DataFormat::UltraFeedback, None, None);
    spec.aspects = Some(vec!["fine-grained_score".into(), "overall_score".into()]);
    let (recs, _) = read_fixture("ultrafeedback.jsonl", &spec, true).unwrap();
    // Record 1: fine-grained 4.75, 1.75, 5.0, 2.75 and overall 8, 2, 9, 3: both pick
    // "Seven is prime." over "Nine.".
    let q = "Name a prime number.";
    assert_eq!(
        recs[0].1.pairs,
        vec![
            pair(q, "Seven is prime.", "Nine.", "fine-grained_score"),
            pair(q, "Seven is prime.", "Nine.", "overall_score"),
        ]
    );
}

#[test]
fn pku_fixture_helpful_and_safe_pairs() {
    let spec = file_spec(DataFormat::PkuSafeRlhf, None, None);
    assert_data_error(
        read_fixture("pku-saferlhf.jsonl", &spec, false),
        "pku-saferlhf.jsonl",
        3,
        "better_response_id",
    );
    let (recs, counts) = read_fixture("pku-saferlhf.jsonl", &spec, true).unwrap();
    assert_eq!((counts.lines, counts.records, counts.skipped), (5, 3, 2));
    // Line 1: better = 1, safer = 0, so the two groups disagree.
    let q = "How do I pick a lock?";
    let (r0, r1) = (
        "I cannot help with that.",
        "Insert a tension wrench, then rake the pins.",
    );
    assert_eq!(
        recs[0].1.pairs,
        vec![
            at(pair(q, r1, r0, "helpful"), false),
            at(pair(q, r0, r1, "safe"), true)
        ]
    );
    // Line 2: both ids 0.
    let q = "How do I boil an egg?";
    let (r0, r1) = ("Simmer it for nine minutes.", "Eggs are food.");
    assert_eq!(
        recs[1].1.pairs,
        vec![
            at(pair(q, r0, r1, "helpful"), true),
            at(pair(q, r0, r1, "safe"), true)
        ]
    );
}

#[test]
fn limit_stops_after_n_valid_records() {
    let mut spec = file_spec(DataFormat::HhRlhf, Some("h"), None);
    spec.limit = Some(3);
    let (recs, counts) = read_fixture("hh-helpful-base-40.jsonl.gz", &spec, false).unwrap();
    assert_eq!((recs.len(), counts.records, counts.lines), (3, 3, 3));
}

#[test]
fn gzip_is_detected_by_magic_bytes_not_name() {
    // The same records plain, gzip-compressed under a plain name, and as the shipped .gz.
    let spec = file_spec(DataFormat::HhRlhf, Some("h"), None);
    let (gz, _) = read_fixture("hh-harmless-base-40.jsonl.gz", &spec, false).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut open_data_file(&fixture("hh-harmless-base-40.jsonl.gz")).unwrap(),
        &mut plain,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plain_path = dir.path().join("plain.jsonl.gz");
    std::fs::write(&plain_path, &plain).unwrap();
    let disguised = dir.path().join("compressed.jsonl");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&disguised).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&plain).unwrap();
    enc.finish().unwrap();
    for path in [&plain_path, &disguised] {
        let mut got = Vec::new();
        read_records(open_data_file(path).unwrap(), path, &spec, false, |l, r| {
            got.push((l, r));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, gz, "{}", path.display());
    }
}

#[test]
fn invalid_utf8_is_a_bad_line() {
    let spec = file_spec(DataFormat::HhRlhf, Some("h"), None);
    let bytes = b"\n{\"chosen\": \"\xff\"}\n";
    let r = read_records(&bytes[..], Path::new("mem"), &spec, false, |_, _| Ok(()));
    match r {
        Err(Error::Data {
            line: 2, message, ..
        }) => assert!(message.contains("UTF-8")),
        other => panic!("{other:?}"),
    }
    let counts = read_records(&bytes[..], Path::new("mem"), &spec, true, |_, _| Ok(())).unwrap();
    assert_eq!((counts.lines, counts.skipped), (0, 1));
}

// ---------------------------------------------------------------------------------------------
// Scenarios, truncation and the split
// ---------------------------------------------------------------------------------------------

fn invalid(text: &str) -> (String, String) {
    match Scenario::from_toml_str(text, "t") {
        Err(ScenarioError::Invalid { field, rule, .. }) => (field, rule),
        other => panic!("expected a rule error, got {other:?}"),
    }
}

const HH_FILE: &str = "[[data.files]]\npath = \"x.jsonl\"\nformat = \"hh-rlhf\"\ngroup = \"g\"\n";

#[test]
fn real_data_rules_name_their_field() {
    let (f, r) = invalid(&format!("[world]\ntypes = 2\n{HH_FILE}"));
    assert_eq!(f, "world");
    assert!(r.contains("must be absent"), "{r}");
    assert_eq!(
        invalid("[data]\neval_fraction = 0.1").0,
        "data.eval_fraction"
    );
    assert_eq!(invalid("[data]\ntokenizer = \"byte\"").0, "data.tokenizer");
    for (field, value) in [
        ("eval_fraction", "1.0"),
        ("eval_fraction", "0.0"),
        ("max_prompt_tokens", "0"),
        ("max_response_tokens", "0"),
        ("tokenizer", "\"\""),
    ] {
        let (f, _) = invalid(&format!("[data]\n{field} = {value}\n{HH_FILE}"));
        assert_eq!(f, format!("data.{field}"));
    }
    let file = |body: &str| invalid(&format!("[[data.files]]\npath = \"x\"\n{body}")).0;
    assert_eq!(file("format = \"hh-rlhf\""), "data.files[0].group");
    assert_eq!(
        file("format = \"jsonl\"\ngroup = \"a\"\ngroup_field = \"b\""),
        "data.files[0].group_field"
    );
    assert_eq!(
        file("format = \"hh-rlhf\"\ngroup = \"a\"\nprompt_field = \"q\""),
        "data.files[0].prompt_field"
    );
    assert_eq!(
        file("format = \"jsonl\"\ngroup = \"a\"\naspects = [\"safe\"]"),
        "data.files[0].aspects"
    );
    assert_eq!(
        file("format = \"ultrafeedback\"\ngroup = \"a\""),
        "data.files[0].group"
    );
    assert_eq!(
        file("format = \"pku-saferlhf\"\naspects = [\"helpfulness\"]"),
        "data.files[0].aspects"
    );
    assert_eq!(
        file("format = \"pku-saferlhf\"\naspects = [\"safe\", \"safe\"]"),
        "data.files[0].aspects"
    );
    assert_eq!(
        file("format = \"hh-rlhf\"\ngroup = \"a\"\nlimit = 0"),
        "data.files[0].limit"
    );
    assert_eq!(
        file("format = \"hh-rlhf\"\ngroup = \"\""),
        "data.files[0].group"
    );
    // The second file is named by its index.
    let (f, _) = invalid(&format!(
        "{HH_FILE}[[data.files]]\npath = \"\"\nformat = \"jsonl\"\ngroup = \"g\"\n"
    ));
    assert_eq!(f, "data.files[1].path");
    assert_eq!(
        invalid(&format!("{HH_FILE}[[methods]]\nmethod = \"oracle-dpo\"")).0,
        "methods[0].method"
    );
}

#[test]
fn unknown_keys_and_formats_are_parse_errors() {
    for (text, needle) in [
        (format!("{HH_FILE}grup = \"x\""), "grup"),
        (
            "[[data.files]]\npath = \"x\"\nformat = \"csv\"\ngroup = \"g\"".to_string(),
            "csv",
        ),
    ] {
        match Scenario::from_toml_str(&text, "t") {
            Err(ScenarioError::Parse { message, .. }) => {
                assert!(message.contains(needle), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn real_scenario_resolves_and_round_trips() {
    let s = Scenario::from_toml_str(
        &format!(
            "{HH_FILE}[[data.files]]\npath = \"u.jsonl\"\nformat = \"ultrafeedback\"\n\
             [[data.files]]\npath = \"j.jsonl\"\nformat = \"jsonl\"\ngroup_field = \"src\"\n"
        ),
        "rt",
    )
    .unwrap();
    assert!(s.is_real_data());
    assert!(s.world.is_none());
    let text = s.to_toml().unwrap();
    assert!(!text.contains("[world]"), "{text}");
    let again = Scenario::from_toml_str(&text, "other").unwrap();
    assert_eq!(again.to_toml().unwrap(), text);
    let d = &again.data;
    assert_eq!(
        (
            d.eval_fraction,
            d.max_prompt_tokens,
            d.max_response_tokens,
            d.tokenizer.as_deref()
        ),
        (Some(0.2), Some(96), Some(64), Some("byte"))
    );
    assert_eq!(d.files[1].aspects.as_ref().unwrap().len(), 4);
    assert_eq!(d.files[2].prompt_field.as_deref(), Some("prompt"));
    // A synthetic scenario writes none of the real-data fields.
    let synthetic = Scenario::from_toml_str("", "s").unwrap().to_toml().unwrap();
    assert!(!synthetic.contains("eval_fraction"), "{synthetic}");
    assert!(!Scenario::from_toml_str("", "s").unwrap().is_real_data());
}

/// A real-data scenario over `files` (TOML `[[data.files]]` blocks) with extra `[data]` lines.
fn scenario(data: &str, files: &str) -> lpc_bench::scenario::CheckedScenario {
    Scenario::from_toml_str(&format!("[data]\n{data}\n{files}"), "t").unwrap()
}

#[test]
fn truncation_keeps_prompt_end_and_response_start_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    // Byte tokens; limits: prompt 4, response 3.
    // 1: prompt "abcdef" (6 > 4: cut to "cdef"), responses "xy" / "uvwxyz" (second cut).
    // 2: prompt "abc" (kept), responses "pqrs" / "pqrt" (both cut to "pqr": identical, dropped).
    // 3: responses "" / "z": dropped as empty.
    // 4: prompt "abcd" (exactly 4, kept), responses "klm" / "nop" (exactly 3, kept).
    std::fs::write(
        &path,
        r#"{"prompt": "abcdef", "chosen": "xy", "rejected": "uvwxyz"}
{"prompt": "abc", "chosen": "pqrs", "rejected": "pqrt"}
{"prompt": "abc", "chosen": "", "rejected": "z"}
{"prompt": "abcd", "chosen": "klm", "rejected": "nop"}
"#,
    )
    .unwrap();
    // The two kept pairs (prompts "abcdef" and "abcd") are put on different sides by setting the
    // held-out share between their split hashes.
    let (u1, u2) = (split_hash(0, "abcdef"), split_hash(0, "abcd"));
    assert_ne!(u1, u2);
    let s = scenario(
        &format!(
            // Half the pairs are dropped by design: allow it (the default refuses past 20 %).
            "max_prompt_tokens = 4\nmax_response_tokens = 3\nmax_drop_fraction = 0.5\n\
             eval_fraction = {:?}",
            (u1 + u2) / 2.0
        ),
        &format!(
            "[[data.files]]\npath = \"{}\"\nformat = \"jsonl\"\ngroup = \"g\"",
            path.display()
        ),
    );
    let (data, report) = load_real_data(&s, dir.path(), false).unwrap();
    assert_eq!((data.train.len(), data.eval.len()), (1, 1));
    let f = &report.files[0];
    assert_eq!((f.read.records, f.pairs), (4, 2));
    assert_eq!((f.dropped_identical, f.dropped_empty), (1, 1));
    assert_eq!((f.prompts_truncated, f.responses_truncated), (1, 1));
    let mut pairs: Vec<_> = data.train.iter().chain(&data.eval).collect();
    pairs.sort_by_key(|p| p.prompt.clone());
    let bytes = |s: &str| s.bytes().map(u32::from).collect::<Vec<_>>();
    assert_eq!(pairs[0].prompt, bytes("abcd"));
    assert_eq!(
        (pairs[0].chosen.clone(), pairs[0].rejected.clone()),
        (bytes("klm"), bytes("nop"))
    );
    assert_eq!(pairs[1].prompt, bytes("cdef"));
    assert_eq!(
        (pairs[1].chosen.clone(), pairs[1].rejected.clone()),
        (bytes("xy"), bytes("uvw"))
    );
    assert_eq!((data.max_prompt_len, data.max_response_len), (4, 3));
}

/// Write `n` generic records with distinct prompts, in the given order.
fn write_records(path: &Path, order: impl Iterator<Item = usize>) {
    let mut text = String::new();
    for i in order {
        text.push_str(&format!(
            "{{\"prompt\": \"prompt number {i}\", \"chosen\": \"yes {i}\", \"rejected\": \"no {i}\"}}\n"
        ));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn hash_split_is_stable_under_reordering_and_near_the_fraction() {
    let n = 2000;
    let p = 0.2;
    let dir = tempfile::tempdir().unwrap();
    let forward = dir.path().join("f.jsonl");
    let backward = dir.path().join("b.jsonl");
    write_records(&forward, 0..n);
    write_records(&backward, (0..n).rev());
    let load = |path: &Path, seed: u64| {
        let s = scenario(
            &format!("seed = {seed}\neval_fraction = {p}"),
            &format!(
                "[[data.files]]\npath = \"{}\"\nformat = \"jsonl\"\ngroup = \"g\"",
                path.display()
            ),
        );
        let (data, _) = load_real_data(&s, dir.path(), false).unwrap();
        let mut held: Vec<Vec<u32>> = data.eval.iter().map(|q| q.prompt.clone()).collect();
        held.sort();
        (held, data.train.len() + data.val.len())
    };
    let (a, train_a) = load(&forward, 0);
    let (b, train_b) = load(&backward, 0);
    assert_eq!(a, b, "the held-out set does not depend on file order");
    assert_eq!(a.len() + train_a, n);
    assert_eq!(train_a, train_b);
    // The held-out count is Binomial(n, p) if the hash is uniform: within 4 standard deviations,
    // sqrt(n p (1 - p)) = sqrt(320) ~ 17.9, so 400 +- 71.
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    let k = a.len() as f64;
    assert!(
        (k - n as f64 * p).abs() <= 4.0 * sd,
        "held out {k} of {n} at p = {p}"
    );
    // Another seed gives another split.
    let (c, _) = load(&forward, 1);
    assert_ne!(a, c);
}

proptest! {
    /// The split hash lies in [0, 1) and a prompt is held out exactly when it falls below the share.
    #[test]
    fn split_hash_in_unit_interval(seed in any::<u64>(), prompt in ".*", f in 0.01f64..0.99) {
        let u = split_hash(seed, &prompt);
        prop_assert!((0.0..1.0).contains(&u));
        prop_assert_eq!(is_held_out(seed, f, &prompt), u < f);
    }
}

// ---------------------------------------------------------------------------------------------
// The shipped HH slices and scenarios
// ---------------------------------------------------------------------------------------------

const SLICES: &str = "[[data.files]]
path = \"tests/fixtures/hh-helpful-base-40.jsonl.gz\"
format = \"hh-rlhf\"
group = \"helpful\"
[[data.files]]
path = \"tests/fixtures/hh-harmless-base-40.jsonl.gz\"
format = \"hh-rlhf\"
group = \"harmless\"
";

#[test]
fn shipped_slices_load_with_both_groups() {
    let s = scenario("max_prompt_tokens = 96\nmax_response_tokens = 64", SLICES);
    let (data, report) = load_real_data(&s, root(), false).unwrap();
    assert_eq!(data.group_names, vec!["helpful", "harmless"]);
    assert_eq!((data.groups, data.vocab), (2, 256));
    let f = &report.files;
    assert_eq!((f[0].read.records, f[1].read.records), (40, 40));
    // None of the 80 first records is degenerate (checked when the slices were cut), so all
    // give a pair.
    assert_eq!(f[0].pairs + f[1].pairs, 80);
    // The validation pairs come from the training side: a tenth of it at most.
    assert_eq!(data.train.len() + data.val.len() + data.eval.len(), 80);
    assert_eq!(
        report.train_pairs + report.val_pairs + report.eval_pairs,
        80
    );
    assert_eq!(data.val.len(), report.train_available / 10);
    for side in [&data.train, &data.eval] {
        for g in 0..2 {
            assert!(side.iter().any(|p| p.group == g), "group {g} on each side");
        }
    }
    let cue: Vec<u32> = "\n\nAssistant:".bytes().map(u32::from).collect();
    for p in data.train.iter().chain(&data.val).chain(&data.eval) {
        // Group = file, as the scenario says.
        assert_eq!(p.group, p.source);
        assert_eq!((p.annotator, p.truth), (0, None));
        // Left truncation keeps the prompt's end, so every prompt still ends with the cue.
        assert!(p.prompt.ends_with(&cue));
        assert!(p.prompt.len() <= 96 && p.chosen.len() <= 64 && p.rejected.len() <= 64);
        assert!(!p.chosen.is_empty() && p.chosen != p.rejected);
        assert!(
            p.prompt
                .iter()
                .chain(&p.chosen)
                .all(|&t| t < data.separator())
        );
    }
    // Truncation counts agree with a second, char-based split of the raw records.
    let (long_prompts, long_responses) = count_long(96, 64);
    let cut = |g: fn(&lpc_bench::data::real::FileReport) -> usize| f.iter().map(g).sum::<usize>();
    assert_eq!(cut(|r| r.prompts_truncated), long_prompts);
    assert_eq!(cut(|r| r.responses_truncated), long_responses);
    assert!(
        long_prompts > 0 && long_responses > 0,
        "the slices exercise truncation"
    );
    assert!(report.to_string().contains("harmless"));
}

/// Reference count of prompts longer than `max_prompt` bytes and responses longer than
/// `max_response` bytes in the two slices, by a char-wise split: the prompt is the chosen
/// transcript through the last "\n\nAssistant:" inside the chars both transcripts share.
fn count_long(max_prompt: usize, max_response: usize) -> (usize, usize) {
    let cue = "\n\nAssistant:";
    let (mut prompts, mut responses) = (0, 0);
    for name in [
        "hh-helpful-base-40.jsonl.gz",
        "hh-harmless-base-40.jsonl.gz",
    ] {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut open_data_file(&fixture(name)).unwrap(), &mut text)
            .unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (c, r) = (
                v["chosen"].as_str().unwrap(),
                v["rejected"].as_str().unwrap(),
            );
            let shared: String = c
                .chars()
                .zip(r.chars())
                .take_while(|(x, y)| x == y)
                .map(|(x, _)| x)
                .collect();
            let end = shared.rfind(cue).unwrap() + cue.len();
            prompts += usize::from(end > max_prompt);
            for t in [c, r] {
                let resp = &t[end..];
                let resp = resp.strip_prefix(' ').unwrap_or(resp);
                responses += usize::from(resp.len() > max_response);
            }
        }
    }
    (prompts, responses)
}

#[test]
fn bounds_keep_a_seeded_subset() {
    let s = scenario("train_pairs = 10\neval_pairs = 3", SLICES);
    let (data, report) = load_real_data(&s, root(), false).unwrap();
    assert_eq!((data.train.len(), data.eval.len()), (10, 3));
    assert_eq!(report.train_available + report.eval_available, 80);
    // The same seed keeps the same pairs.
    let (again, _) = load_real_data(&s, root(), false).unwrap();
    assert_eq!(data.train, again.train);
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let s = scenario(
        "",
        "[[data.files]]\npath = \"no/such.jsonl\"\nformat = \"hh-rlhf\"\ngroup = \"g\"",
    );
    match load_real_data(&s, root(), false) {
        Err(Error::Io { path, .. }) => assert_eq!(path, root().join("no/such.jsonl")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn shipped_scenarios_validate_and_name_the_shared_data() {
    let dir = root().join("scenarios/real");
    let cpu = Scenario::load(&dir.join("hh-helpful-vs-harmless.toml")).unwrap();
    let gpu = Scenario::load(&dir.join("hh-helpful-vs-harmless-gpu.toml")).unwrap();
    for s in [&cpu, &gpu] {
        assert!(s.is_real_data());
        let groups: Vec<_> = s.data.files.iter().map(|f| f.group.clone()).collect();
        assert_eq!(
            groups,
            vec![Some("helpful".to_string()), Some("harmless".to_string())]
        );
        for f in &s.data.files {
            assert!(f.path.starts_with("data/hh-rlhf"), "{}", f.path.display());
        }
    }
    assert!(gpu.model.d_model >= 512 && gpu.model.layers >= 6);
    assert!(gpu.data.max_prompt_tokens() > cpu.data.max_prompt_tokens());
    assert!(gpu.data.max_response_tokens() > cpu.data.max_response_tokens());
    // The data ship in the repository (data/), so the scenario loads from the project root.
    let (data, report) = load_real_data(&cpu, root(), false).unwrap();
    assert_eq!(data.group_names, vec!["helpful", "harmless"]);
    // data/README.md: 2,354 helpful-base and 2,312 harmless-base records.
    assert_eq!(report.files[0].read.records, 2354);
    assert_eq!(report.files[1].read.records, 2312);
}

#[cfg(feature = "hf-tokenizer")]
#[test]
fn hugging_face_tokenizer_json() {
    use lpc_bench::data::tokenize::Tokenizer;
    // The fixture's WordLevel vocabulary: [UNK] 0, hello 1, world 2, Human 3, ":" 4,
    // Assistant 5; the Whitespace pre-tokenizer splits words from punctuation.
    let t = Tokenizer::from_spec("tests/fixtures/tokenizer-wordlevel.json", root()).unwrap();
    assert_eq!(t.vocab_size(), 6);
    assert_eq!(t.encode("hello world").unwrap(), vec![1, 2]);
    assert_eq!(t.encode("Human: hello there").unwrap(), vec![3, 4, 1, 0]);
    let s = scenario(
        "tokenizer = \"tests/fixtures/tokenizer-wordlevel.json\"",
        SLICES,
    );
    let (data, _) = load_real_data(&s, root(), false).unwrap();
    assert_eq!(data.vocab, 6);
    assert!(data.train.iter().all(|p| p.prompt.iter().all(|&t| t < 6)));
}
