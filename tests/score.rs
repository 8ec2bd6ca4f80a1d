//! `lpc-bench score` run as a real binary on small CSV files in a temporary folder.

use std::path::Path;
use std::process::{Command, Output};

fn score(file: &Path, pred: &str, truth: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lpc-bench"))
        .arg("score")
        .arg(file)
        .args(["--pred", pred, "--truth", truth])
        .output()
        .expect("run lpc-bench")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Codes c0/c1/c2 against types x/y/z (quoted fields and an extra column on purpose):
/// pred  = c0 c0 c1 c1 c2 c2 c2 c0
/// truth = x  x  x  y  y  y  z  z
const CSV: &str = "\
id,code,type
1,c0,x
2,c0,x
3,c1,\"x\"
4,c1,y
5, c2 ,y
6,c2,y
7,c2,z
8,c0,z
";

#[test]
fn scores_string_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("codes.csv");
    std::fs::write(&path, CSV).unwrap();
    let out = score(&path, "code", "type");
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // Contingency (rows c0 c1 c2, columns x y z): [2 0 1; 1 1 0; 0 2 1]; a = b = (3, 2, 3) up
    // to order, n = 8.
    // MI = sum (n_ij/n) ln(n n_ij/(a_i b_j)) = 1/2 ln(16/9) + 1/2 ln(4/3)
    // H(pred) = H(truth) = -(3/4 ln(3/8) + 1/4 ln(1/4));  NMI = MI / H
    let mi = 0.5 * (16.0f64 / 9.0).ln() + 0.5 * (4.0f64 / 3.0).ln();
    let h = -(0.75 * (3.0f64 / 8.0).ln() + 0.25 * 0.25f64.ln());
    // ARI = (sum C(n_ij,2) - E) / (mean of sum C(a_i,2), sum C(b_j,2) - E) with
    // sum C(n_ij,2) = 2, sum C(a_i,2) = sum C(b_j,2) = 7, E = 7*7/28 = 1.75 -> 0.25/5.25
    let ari = (2.0 - 1.75) / (7.0 - 1.75);
    let num = |k: &str| v[k].as_f64().unwrap();
    assert!((num("nmi") - mi / h).abs() < 1e-12, "{v}");
    assert!((num("ari") - ari).abs() < 1e-12, "{v}");
    // purity = (2 + 1 + 2)/8; best one-to-one total 4 -> 4/8
    assert_eq!(num("purity"), 5.0 / 8.0);
    assert_eq!(num("matched_accuracy"), 0.5);
    assert_eq!(v["n"], 8);
    assert_eq!(v["clusters"], 3);
    assert_eq!(v["classes"], 3);
}

#[test]
fn missing_column_names_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("codes.csv");
    std::fs::write(&path, CSV).unwrap();
    let out = score(&path, "cluster", "type");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("codes.csv") && err.contains("'cluster'") && err.contains("id, code, type"),
        "{err}"
    );
}

#[test]
fn short_row_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.csv");
    std::fs::write(&path, "id,code,type\n1,c0,x\n2,c1\n").unwrap();
    let out = score(&path, "code", "type");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("short.csv:3:") && err.contains("'type'"),
        "{err}"
    );
}

#[test]
fn empty_value_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blank.csv");
    std::fs::write(&path, "code,type\nc0,x\n,y\n").unwrap();
    let out = score(&path, "code", "type");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("blank.csv:3:") && err.contains("'code'"),
        "{err}"
    );
}

#[test]
fn unreadable_or_empty_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.csv");
    let out = score(&missing, "code", "type");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope.csv"), "{}", stderr(&out));

    let header_only = dir.path().join("header.csv");
    std::fs::write(&header_only, "code,type\n").unwrap();
    let out = score(&header_only, "code", "type");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("header.csv") && err.contains("no data rows"),
        "{err}"
    );
}

#[test]
fn empty_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.csv");
    std::fs::write(&path, "").unwrap();
    let out = score(&path, "pred", "truth");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("empty.csv") && err.contains("empty file"),
        "{err}"
    );
}
