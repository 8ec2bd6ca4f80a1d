//! `lpc-bench generate` and `validate` on shipped and broken scenarios.

use super::{lpc_bench, scenario};
use std::path::Path;

const RECORD_KEYS: [&str; 13] = [
    "prompt",
    "chosen",
    "rejected",
    "prompt_text",
    "chosen_text",
    "rejected_text",
    "source",
    "type",
    "annotator",
    "reward_chosen",
    "reward_rejected",
    "label_prob",
    "flipped",
];

const SUMMARY_COLUMNS: &str = "pairs,types,distance,cosine_target,cosine_min,cosine_mean,\
disagreement_rate,js_bits_mean,flip_fraction,label_agreement,type_oracle_acc_observed,\
type_oracle_acc_noiseless,prompt_oracle_acc_observed,prompt_oracle_acc_noiseless,\
population_oracle_acc_observed,population_oracle_acc_noiseless,type_oracle_exp_observed,\
type_oracle_exp_noiseless,prompt_oracle_exp_observed,prompt_oracle_exp_noiseless,\
population_oracle_exp_observed,population_oracle_exp_noiseless,bayes_type_acc";

fn generate(out: &Path, extra: &[&str]) -> std::process::Output {
    let smoke = scenario("smoke.toml");
    let mut args = vec![
        "generate",
        smoke.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    lpc_bench(&args)
}

fn text_of(ids: &serde_json::Value) -> String {
    ids.as_array()
        .unwrap()
        .iter()
        .map(|t| format!("t{}", t.as_u64().unwrap()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn smoke_generates_every_file_with_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    let run = generate(&out, &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("type oracle") && stdout.contains("population oracle"),
        "{stdout}"
    );

    // smoke.toml asks for 400 train and 200 eval pairs of a T = 2, S = 2, V = 16 world with
    // prompts and responses of 4 tokens.
    for (file, n) in [("train.jsonl", 400), ("eval.jsonl", 200)] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), n, "{file}");
        for line in lines {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            let obj = r.as_object().unwrap();
            let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            let mut want = RECORD_KEYS.to_vec();
            want.sort_unstable();
            let mut got = keys.clone();
            got.sort_unstable();
            assert_eq!(got, want);
            for (ids, text) in [
                ("prompt", "prompt_text"),
                ("chosen", "chosen_text"),
                ("rejected", "rejected_text"),
            ] {
                assert_eq!(r[ids].as_array().unwrap().len(), 4);
                assert!(
                    r[ids]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|t| t.as_u64().unwrap() < 16)
                );
                assert_eq!(text_of(&r[ids]), r[text].as_str().unwrap());
            }
            // Coupling 1 with T = S = 2: the type is the source.
            assert_eq!(r["type"], r["source"]);
            assert!(r["type"].as_u64().unwrap() < 2);
            let p = r["label_prob"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p));
            assert_eq!(r["flipped"], false);
            // label_prob = sigmoid(reward_chosen - reward_rejected) at tau = 1.
            let d = r["reward_chosen"].as_f64().unwrap() - r["reward_rejected"].as_f64().unwrap();
            assert!((p - 1.0 / (1.0 + (-d).exp())).abs() < 1e-12);
        }
    }

    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let rows: Vec<&str> = summary.lines().collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], SUMMARY_COLUMNS);
    let values: Vec<&str> = rows[1].split(',').collect();
    assert_eq!(values.len(), SUMMARY_COLUMNS.split(',').count());
    assert_eq!(values[0], "200", "statistics are on the eval pairs");

    let world: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("world.json")).unwrap()).unwrap();
    assert_eq!(world["scenario"], "smoke");
    let w = &world["world"];
    for key in [
        "spec",
        "source_weights",
        "type_given_source",
        "type_marginal",
        "prompt_probs",
        "token_features",
        "shared_direction",
        "thetas",
        "type_cosine",
        "reward",
        "reference",
        "annotator_types",
    ] {
        assert!(!w[key].is_null(), "world.json lacks {key}");
    }
    assert_eq!(w["thetas"].as_array().unwrap().len(), 2);
    assert_eq!(w["token_features"].as_array().unwrap().len(), 16);
    assert_eq!(w["reference"]["kind"], "uniform");
}

#[test]
fn same_seed_same_bytes_and_seed_flag_changes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    assert!(generate(&a, &["--quiet"]).status.success());
    assert!(generate(&b, &["--quiet"]).status.success());
    assert!(generate(&c, &["--quiet", "--seed", "1"]).status.success());
    for f in ["train.jsonl", "eval.jsonl", "world.json", "summary.csv"] {
        let read = |d: &Path| std::fs::read(d.join(f)).unwrap();
        assert_eq!(read(&a), read(&b), "{f}");
        assert_ne!(read(&a), read(&c), "{f}");
    }
    assert!(generate(&a, &["--quiet"]).stdout.is_empty());
}

#[test]
fn existing_outputs_are_kept_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    assert!(generate(&out, &["--quiet"]).status.success());
    let before = std::fs::read(out.join("train.jsonl")).unwrap();
    let again = generate(&out, &["--quiet", "--seed", "5"]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(out.join("train.jsonl")).unwrap(), before);
    let forced = generate(&out, &["--quiet", "--seed", "5", "--force"]);
    assert!(forced.status.success());
    assert_ne!(std::fs::read(out.join("train.jsonl")).unwrap(), before);
}

/// Write `text` as a scenario, run `generate` on it and return stderr; the run must fail and
/// leave `--out` uncreated.
fn bad_scenario(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("out");
    let run = lpc_bench(&[
        "generate",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert_eq!(run.status.code(), Some(1));
    assert!(!out.exists(), "nothing may be written to --out");
    String::from_utf8_lossy(&run.stderr).into_owned()
}

#[test]
fn unknown_key_names_line_and_column() {
    let err = bad_scenario("[world]\nvocab = 8\ntypo_key = 3\n");
    assert!(err.contains("line 3, column 1"), "{err}");
    assert!(err.contains("typo_key"), "{err}");
}

#[test]
fn wrong_type_names_line_and_column() {
    let err = bad_scenario("[world]\nvocab = \"many\"\n");
    assert!(err.contains("line 2, column 9"), "{err}");
    assert!(err.contains("vocab"), "{err}");
}

#[test]
fn out_of_range_values_name_the_field() {
    for (text, field) in [
        ("[world]\ntypes = 0\n", "world.types must be >= 1"),
        (
            "[world]\ndistance = 1.5\n",
            "world.distance must be in [0, 1]",
        ),
        (
            "[world]\ncoupling = -0.1\n",
            "world.coupling must be in [0, 1]",
        ),
        (
            "[noise]\nflip_rate = 2.0\n",
            "noise.flip_rate must be in [0, 1]",
        ),
        (
            "[world]\nprompt_concentration = 1e-9\n",
            "world.prompt_concentration must be",
        ),
        ("[data]\neval_pairs = 0\n", "data.eval_pairs must be >= 1"),
    ] {
        let err = bad_scenario(text);
        assert!(err.contains(field), "{text}: {err}");
    }
}

#[test]
fn missing_scenario_file_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = lpc_bench(&[
        "generate",
        "no/such/file.toml",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("no/such/file.toml"));
    assert!(!out.exists());
}

#[test]
fn shipped_scenarios_validate() {
    for name in [
        "smoke.toml",
        "two-opposed.toml",
        "three-types.toml",
        "flip-50.toml",
    ] {
        let path = scenario(name);
        let run = lpc_bench(&["validate", "--quiet", path.to_str().unwrap()]);
        assert!(
            run.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
}
