//! `lpc-bench sweep` on the real binary: interrupt-and-resume gives the table of an
//! uninterrupted run, `--dry-run` writes nothing, a failing cell does not stop the others,
//! `validate` counts a grid's cells.

use super::lpc_bench;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A smoke-sized scenario (d_model 16, 20 steps, 100 pairs: well under a second per cell)
/// with the given methods and `[sweep]` body.
pub fn tiny_scenario(methods: &str, sweep: &str) -> String {
    format!(
        "name = \"tiny\"\n\
         [world]\nvocab = 16\nprompt_len = 4\nresponse_len = 4\nsources = 2\ntypes = 2\n\
         coupling = 1.0\nreward_scale = 6.0\ndistance = 1.0\n\
         [data]\ntrain_pairs = 100\neval_pairs = 40\nseed = 0\n\
         [model]\nd_model = 16\nlayers = 1\nheads = 2\nwarmup_steps = 10\n\
         [train]\nsteps = 20\nbatch_size = 16\neval_every = 10\nlr_warmup_steps = 2\n\
         {methods}\n[sweep]\n{sweep}\n"
    )
}

fn write_scenario(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("grid.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const TWO_METHODS: &str =
    "[[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"lpc-dpo\"\ncodebook = 2\n";

/// Committed cells under `out/cells`: `<point>/<method>` folders holding DONE. A cell being
/// committed also has DONE in its `<method>.tmp-*` folder just before the rename; such
/// temporary (and `.stale-*`) folders are not cells.
fn done_cells(out: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(points) = std::fs::read_dir(out.join("cells")) else {
        return found;
    };
    for p in points.flatten() {
        let Ok(methods) = std::fs::read_dir(p.path()) else {
            continue;
        };
        for m in methods.flatten() {
            let name = m.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp-") || name.contains(".stale-") {
                continue;
            }
            if m.path().join("DONE").is_file() {
                found.push(format!(
                    "{}/{}",
                    p.file_name().to_string_lossy(),
                    m.file_name().to_string_lossy()
                ));
            }
        }
    }
    found.sort();
    found
}

/// The merged table with every `*_seconds` column blanked: wall-clock times are the only
/// values that differ between two runs of the same cell (training is seeded and the CPU
/// backend's results do not depend on the thread count).
fn without_timings(csv_bytes: &[u8]) -> Vec<u8> {
    let mut r = csv::Reader::from_reader(csv_bytes);
    let header = r.headers().unwrap().clone();
    let timing: Vec<bool> = header.iter().map(|h| h.ends_with("_seconds")).collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header).unwrap();
    for rec in r.records() {
        let rec = rec.unwrap();
        let row: Vec<&str> = rec
            .iter()
            .zip(&timing)
            .map(|(v, &t)| if t { "" } else { v })
            .collect();
        w.write_record(&row).unwrap();
    }
    w.into_inner().unwrap()
}

/// Cell ids in the `cell` column of a merged table.
fn merged_cells(csv_bytes: &[u8]) -> Vec<String> {
    let mut r = csv::Reader::from_reader(csv_bytes);
    r.records().map(|rec| rec.unwrap()[0].to_string()).collect()
}

#[test]
fn an_interrupted_sweep_resumes_to_the_uninterrupted_table() {
    let tmp = tempfile::tempdir().unwrap();
    // 5 seeds × 2 methods = 10 cells of about 0.1 s each, so the kill (within milliseconds of
    // the first DONE) lands with most cells still to run.
    let scenario = write_scenario(
        tmp.path(),
        &tiny_scenario(TWO_METHODS, "seed = [0, 1, 2, 3, 4]"),
    );
    let scenario = scenario.to_str().unwrap();
    let expected_cells = 10;

    // Uninterrupted, two cells at a time.
    let whole = tmp.path().join("whole");
    let out = lpc_bench(&[
        "sweep",
        scenario,
        "--out",
        whole.to_str().unwrap(),
        "--jobs",
        "2",
        "--threads-per-cell",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("[{expected_cells}/{expected_cells}]")),
        "{stdout}"
    );
    let reference = std::fs::read(whole.join("all-metrics.csv")).unwrap();

    // Interrupted: kill the process as soon as the first cell is committed.
    let resumed = tmp.path().join("resumed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lpc-bench"))
        .args([
            "sweep",
            scenario,
            "--out",
            resumed.to_str().unwrap(),
            "--threads-per-cell",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while done_cells(&resumed).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no cell finished within 2 minutes"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep ended before any cell was seen"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let after_kill = done_cells(&resumed);
    assert!(
        !after_kill.is_empty() && after_kill.len() < expected_cells,
        "the kill must land mid-sweep, got {} finished cells",
        after_kill.len()
    );
    // The killed process never merged.
    assert!(!resumed.join("all-metrics.csv").exists());
    let committed: Vec<Vec<u8>> = after_kill
        .iter()
        .map(|id| std::fs::read(resumed.join("cells").join(id).join("metrics.csv")).unwrap())
        .collect();

    // Rerun: finished cells are skipped, the rest run, then everything is merged.
    let out = lpc_bench(&[
        "sweep",
        scenario,
        "--out",
        resumed.to_str().unwrap(),
        "--threads-per-cell",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{} finished, {} to run",
            after_kill.len(),
            expected_cells - after_kill.len()
        )),
        "{stdout}"
    );
    let merged = std::fs::read(resumed.join("all-metrics.csv")).unwrap();

    // No lost or duplicated rows: every cell exactly once, as in the reference.
    let mut ids = merged_cells(&merged);
    assert_eq!(ids.len(), expected_cells);
    ids.dedup();
    assert_eq!(ids.len(), expected_cells);
    assert_eq!(merged_cells(&merged), merged_cells(&reference));
    // Byte for byte equal, wall-clock columns aside.
    assert_eq!(
        String::from_utf8(without_timings(&merged)).unwrap(),
        String::from_utf8(without_timings(&reference)).unwrap()
    );
    // The cells committed before the kill were not rerun: their metrics.csv kept its bytes,
    // timing column included.
    for (id, bytes) in after_kill.iter().zip(&committed) {
        let now = std::fs::read(resumed.join("cells").join(id).join("metrics.csv")).unwrap();
        assert_eq!(&now, bytes, "{id} was rerun");
    }

    // A third run has nothing to do and rewrites the same merged table.
    let out = lpc_bench(&["sweep", scenario, "--out", resumed.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 to run"));
    assert_eq!(
        std::fs::read(resumed.join("all-metrics.csv")).unwrap(),
        merged
    );
}

#[test]
fn shards_together_run_every_cell_once() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        tmp.path(),
        &tiny_scenario("[[methods]]\nmethod = \"dpo\"\n", "seed = [0, 1, 2]"),
    );
    let out_dir = tmp.path().join("out");
    for shard in ["0/2", "1/2"] {
        let out = lpc_bench(&[
            "sweep",
            scenario.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--shard",
            shard,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Round robin: shard 0 has cells 0 and 2, shard 1 cell 1; together all three.
    assert_eq!(
        done_cells(&out_dir),
        ["seed=0/dpo", "seed=1/dpo", "seed=2/dpo"]
    );
    let merged = std::fs::read(out_dir.join("all-metrics.csv")).unwrap();
    assert_eq!(merged_cells(&merged).len(), 3);
}

#[test]
fn dry_run_lists_cells_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        tmp.path(),
        &tiny_scenario(
            TWO_METHODS,
            "seed = [0, 1]\nworld.distance = [0.0, 0.5, 1.0]",
        ),
    );
    let out_dir = tmp.path().join("never");
    let out = lpc_bench(&[
        "sweep",
        scenario.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 2 seeds × 3 distances × 2 methods.
    assert!(stdout.contains("12 cells in the grid"), "{stdout}");
    assert!(stdout.contains("seed=1,distance=0.5/lpc-dpo"), "{stdout}");
    assert!(stdout.contains("to run: 12 cells"), "{stdout}");
    assert!(!out_dir.exists());
    // Without --out it works too; a shard lists its slice.
    let out = lpc_bench(&[
        "sweep",
        scenario.to_str().unwrap(),
        "--dry-run",
        "--shard",
        "1/4",
    ]);
    assert!(out.status.success());
    // Cells 1, 5, 9 of 12.
    assert!(String::from_utf8_lossy(&out.stdout).contains("shard 1/4: 3 cells"));
    // --out is required without --dry-run.
    let out = lpc_bench(&["sweep", scenario.to_str().unwrap()]);
    assert!(!out.status.success());
}

#[test]
fn a_failing_cell_is_reported_and_the_others_finish() {
    let tmp = tempfile::tempdir().unwrap();
    // The cuda cells fail (no cuda feature, or no GPU); the cpu cells run.
    let scenario = write_scenario(
        tmp.path(),
        &tiny_scenario(
            "[[methods]]\nmethod = \"dpo\"\n",
            "train.device = [\"cpu\", \"cuda\"]",
        ),
    );
    let out_dir = tmp.path().join("out");
    let out = lpc_bench(&[
        "sweep",
        scenario.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 of 2 cells failed"), "{stderr}");
    assert!(stderr.contains("device=cuda/dpo"), "{stderr}");
    assert_eq!(done_cells(&out_dir), ["device=cpu/dpo"]);
    // The merged table lists the failed cell too, marked (issue 12).
    let merged = std::fs::read(out_dir.join("all-metrics.csv")).unwrap();
    assert_eq!(merged_cells(&merged), ["device=cpu/dpo", "device=cuda/dpo"]);
    let mut r = csv::Reader::from_reader(&merged[..]);
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(&rows[0][col("status")], "ok");
    assert_eq!(&rows[1][col("status")], "failed");
    assert!(rows[1][col("error")].contains("cuda"), "{:?}", rows[1]);
}

#[test]
fn validate_counts_the_cells_of_a_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = write_scenario(
        tmp.path(),
        &tiny_scenario(TWO_METHODS, "seed = [0, 1]\nmethods.codebook = [2, 4, 8]"),
    );
    let out = lpc_bench(&["validate", scenario.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 2 seeds × (dpo + 3 codebook sizes of lpc-dpo).
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sweep grid of 8 cells"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let bad = write_scenario(
        tmp.path(),
        &tiny_scenario(TWO_METHODS, "world.distance = [0.5, 2.0]"),
    );
    let out = lpc_bench(&["validate", "--quiet", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sweep.world.distance[1]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
