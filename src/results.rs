//! Result files: atomic writes of bytes, CSV and JSON, reading CSV back, and the rule that a
//! re-run never silently overwrites an output folder.
//!
//! Owns: how a result file reaches the disk (a temporary file in the same folder, flushed and
//! fsynced, then renamed over the target, so a reader sees the old file or the new one and never
//! a torn one), CSV/JSON encoding, and the checks on an output folder before a run writes to it.
//! Every error names the path (and, for CSV input, the line).
//!
//! The typed rows of the result files live in [`rows`] (`curves.csv`, `codes.csv`,
//! `steering.csv`, `timing.csv`, `baselines.csv`) and [`metrics_row`] (`metrics.csv`). Does not
//! own: computing metrics. It never deletes a file or a folder.

pub mod metrics_row;
pub mod rows;

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// The folder a file lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder is written, fsynced
/// and renamed over `path`, then the folder is fsynced (on Unix) so the rename itself is durable.
/// An existing file is replaced. The folder must exist. New files get the usual permissions
/// (`0666` less the umask on Unix), not the temporary file's private `0600`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, bytes, None)
}

/// A write that fails after `written` bytes reached the temporary file, as a crash or a full
/// disk would: for tests of the atomicity (the final name keeps its old content). The error names
/// `path`.
#[doc(hidden)]
pub fn write_atomic_interrupted(path: &Path, bytes: &[u8], written: usize) -> Result<()> {
    write_atomic_with(path, bytes, Some(written))
}

fn write_atomic_with(path: &Path, bytes: &[u8], fail_after: Option<usize>) -> Result<()> {
    let dir = parent_dir(path);
    let mut builder = tempfile::Builder::new();
    builder.prefix(".lpc-bench-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(|e| Error::io(path, e))?;
    if let Some(n) = fail_after {
        tmp.write_all(&bytes[..n.min(bytes.len())])
            .map_err(|e| Error::io(path, e))?;
        // Dropping `tmp` removes the temporary file, as the OS would leave it unreferenced.
        return Err(Error::io(
            path,
            io::Error::other(format!("write interrupted after {n} bytes (injected)")),
        ));
    }
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    Ok(())
}

/// Write `rows` as CSV with a header taken from the field names of `T`, atomically. `T` must be
/// a flat struct (the csv crate cannot write nested or `#[serde(flatten)]` fields); `None`
/// writes as an empty cell. An empty slice writes an empty file (no header).
pub fn write_csv_atomic<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for (i, row) in rows.iter().enumerate() {
        writer.serialize(row).map_err(|e| {
            Error::msg(format!(
                "{}: cannot write row {} as CSV: {e}",
                path.display(),
                i + 1
            ))
        })?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    write_atomic(path, &bytes)
}

/// Write `value` as pretty-printed JSON with a final newline, atomically.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::msg(format!("{}: cannot encode JSON: {e}", path.display())))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Turn a csv error on `path` into a crate error: I/O errors name the path; record errors
/// (bad UTF-8, a row of the wrong length, a value that does not parse) also name the 1-based
/// line.
pub fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
    let message = match e.into_kind() {
        csv::ErrorKind::Io(io) => return Error::io(path, io),
        csv::ErrorKind::Utf8 { err, .. } => err.to_string(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("row has {len} fields, the header has {expected_len}"),
        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
        other => format!("{other:?}"),
    };
    Error::Data {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// Read a CSV file with a header row into rows of `T` (fields matched by header name). A value
/// that does not parse is reported with its file, line and column name.
pub fn read_csv<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = csv::Reader::from_reader(io::BufReader::new(file));
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let name_column = |e: csv::Error| -> Error {
        if let csv::ErrorKind::Deserialize { err, pos } = e.kind()
            && let Some(name) = err.field().and_then(|f| headers.get(f as usize))
        {
            return Error::Data {
                path: path.to_path_buf(),
                line: pos.as_ref().map(|p| p.line() as usize).unwrap_or(0),
                message: format!("column '{name}': {}", err.kind()),
            };
        }
        csv_error(path, e)
    };
    reader
        .deserialize()
        .map(|row| row.map_err(name_column))
        .collect()
}

/// Read a CSV file with a header row as text: the header and every record (each as long as the
/// header; another length is an error naming the line). For tables whose columns are known only
/// when read (merged sweep tables); rows of a known type use [`read_csv`].
pub fn read_string_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = csv::Reader::from_reader(io::BufReader::new(file));
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(path, e))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut records = Vec::new();
    for r in reader.records() {
        let r = r.map_err(|e| csv_error(path, e))?;
        records.push(r.iter().map(str::to_string).collect());
    }
    Ok((header, records))
}

/// Make `dir` ready for a run's results: create it (and its parents) if missing, and, unless
/// `force`, refuse when any of `expected_files` (paths relative to `dir`) already exists, so a
/// re-run never silently overwrites results. With `force` existing files are left in place, to
/// be replaced one by one by the atomic writes. Nothing is ever deleted.
///
/// The refusal is an I/O error of kind `AlreadyExists` naming the first existing file, e.g.
/// `results/smoke/metrics.csv: already exists (as do curves.csv); pass --force to replace the
/// results, or choose another output folder`.
pub fn prepare_out_dir(dir: &Path, force: bool, expected_files: &[&str]) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::io(
            dir,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a folder; choose another output folder",
            ),
        ));
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if force {
        return Ok(());
    }
    let existing: Vec<&str> = expected_files
        .iter()
        .copied()
        .filter(|f| dir.join(f).symlink_metadata().is_ok())
        .collect();
    let Some((first, others)) = existing.split_first() else {
        return Ok(());
    };
    let also = if others.is_empty() {
        String::new()
    } else {
        format!(" (as do {})", others.join(", "))
    };
    Err(Error::io(
        dir.join(first),
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "already exists{also}; pass --force to replace the results, \
                 or choose another output folder"
            ),
        ),
    ))
}

/// A table whose columns appear as rows bring them (method-dependent and group-dependent score
/// names), written as CSV with blanks for missing cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, each as long as `columns` (blank for a missing cell).
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Append a row of `(column, value)`; unseen columns are added at the end, and earlier rows
    /// get blanks there.
    pub fn push(&mut self, row: Vec<(String, String)>) {
        let mut out = vec![String::new(); self.columns.len()];
        for (col, value) in row {
            let i = match self.columns.iter().position(|c| *c == col) {
                Some(i) => i,
                None => {
                    self.columns.push(col);
                    for r in &mut self.rows {
                        r.push(String::new());
                    }
                    out.push(String::new());
                    self.columns.len() - 1
                }
            };
            out[i] = value;
        }
        self.rows.push(out);
    }

    /// The cell of `row` in `column`, if both exist.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let c = self.columns.iter().position(|x| x == column)?;
        self.rows.get(row).map(|r| r[c].as_str())
    }

    /// CSV text: a header and one line per row.
    pub fn to_csv(&self) -> Result<Vec<u8>> {
        // A table without columns is an empty file, not a header of one empty field (`""`).
        if self.columns.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = csv::Writer::from_writer(Vec::new());
        let io = |e: csv::Error| Error::msg(format!("csv: {e}"));
        w.write_record(&self.columns).map_err(io)?;
        for r in &self.rows {
            w.write_record(r).map_err(io)?;
        }
        w.into_inner().map_err(|e| Error::msg(format!("csv: {e}")))
    }

    /// Write the table as CSV, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_csv()?)
    }
}

/// A number as written in result files: the shortest text that reads back to the same `f64`;
/// `None`, NaN and infinities are blank.
pub fn fmt_f64(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Row {
        method: String,
        accuracy: f64,
        nmi: Option<f64>,
        steps: usize,
    }

    fn rows() -> Vec<Row> {
        vec![
            Row {
                method: "dpo".into(),
                accuracy: 0.935,
                nmi: None,
                steps: 500,
            },
            Row {
                method: "lpc-dpo, K=8 \"soft\"".into(),
                accuracy: 0.1 + 0.2,
                nmi: Some(0.83),
                steps: 250,
            },
        ]
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(names(dir.path()), vec!["a.txt"]);
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_uses_ordinary_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours");
        let plain = dir.path().join("plain");
        write_atomic(&ours, b"x").unwrap();
        fs::write(&plain, b"x").unwrap(); // 0666 less the umask
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ours), mode(&plain));
    }

    #[test]
    fn atomic_write_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-folder").join("a.txt");
        let err = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("missing-folder/a.txt"), "{err}");
    }

    #[test]
    fn csv_round_trip_with_blanks_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        write_csv_atomic(&path, &rows()).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        // None is a blank cell; the comma and quotes are quoted.
        assert_eq!(
            text,
            "method,accuracy,nmi,steps\n\
             dpo,0.935,,500\n\
             \"lpc-dpo, K=8 \"\"soft\"\"\",0.30000000000000004,0.83,250\n"
        );
        let back: Vec<Row> = read_csv(&path).unwrap();
        assert_eq!(back, rows());
    }

    #[test]
    fn read_csv_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        fs::write(
            &path,
            "method,accuracy,nmi,steps\ndpo,0.9,,10\nipo,high,,10\n",
        )
        .unwrap();
        let err = read_csv::<Row>(&path).unwrap_err();
        assert!(matches!(err, Error::Data { line: 3, .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.ends_with("bad.csv:3: column 'accuracy': invalid float literal"),
            "{text}"
        );
        // A short row is reported with its line too.
        fs::write(&path, "method,accuracy,nmi,steps\ndpo,0.9\n").unwrap();
        let text = read_csv::<Row>(&path).unwrap_err().to_string();
        assert!(
            text.contains("bad.csv:2:") && text.contains("2 fields"),
            "{text}"
        );
        fs::write(&path, b"method,accuracy,nmi,steps\nd\xffpo,0.9,,1\n").unwrap();
        let text = read_csv::<Row>(&path).unwrap_err().to_string();
        assert!(
            text.contains("bad.csv:2:") && text.contains("UTF-8"),
            "{text}"
        );
        let missing = dir.path().join("nope.csv");
        let text = read_csv::<Row>(&missing).unwrap_err().to_string();
        assert!(text.contains("nope.csv"), "{text}");
    }

    #[test]
    fn json_is_pretty_with_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("world.json");
        write_json_atomic(&path, &rows()[0]).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n") && text.contains("\n  \"method\": \"dpo\""));
        let back: Row = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rows()[0]);
    }

    #[test]
    fn out_dir_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results").join("smoke");
        let expected = ["metrics.csv", "curves.csv", "summary.md"];
        // Missing folder: created, nothing to refuse.
        prepare_out_dir(&out, false, &expected).unwrap();
        assert!(out.is_dir());
        // Unrelated files do not block a run.
        fs::write(out.join("notes.txt"), "mine").unwrap();
        prepare_out_dir(&out, false, &expected).unwrap();
        // Existing results do.
        fs::write(out.join("metrics.csv"), "old").unwrap();
        fs::write(out.join("summary.md"), "old").unwrap();
        let err = prepare_out_dir(&out, false, &expected).unwrap_err();
        match &err {
            Error::Io { path, source } => {
                assert_eq!(path, &out.join("metrics.csv"));
                assert_eq!(source.kind(), io::ErrorKind::AlreadyExists);
            }
            other => panic!("unexpected {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("metrics.csv") && text.contains("summary.md"),
            "{text}"
        );
        assert!(text.contains("--force"), "{text}");
        // --force accepts, and deletes nothing.
        prepare_out_dir(&out, true, &expected).unwrap();
        assert_eq!(names(&out), vec!["metrics.csv", "notes.txt", "summary.md"]);
        assert_eq!(fs::read_to_string(out.join("metrics.csv")).unwrap(), "old");
    }

    #[test]
    fn out_dir_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("results");
        fs::write(&file, "x").unwrap();
        for force in [false, true] {
            let text = prepare_out_dir(&file, force, &["a.csv"])
                .unwrap_err()
                .to_string();
            assert!(
                text.contains("results") && text.contains("not a folder"),
                "{text}"
            );
        }
        assert_eq!(fs::read_to_string(&file).unwrap(), "x");
    }
}
