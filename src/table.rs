/// A table whose columns appear as rows bring them (method-dependent and group-dependent score
/// names), written as CSV with blanks for missing cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
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

    /// Append a row of text labels followed by numeric scores (`None` → blank).
    pub fn push_scores(&mut self, labels: Vec<(String, String)>, scores: &[(String, Option<f64>)]) {
        let mut row = labels;
        row.extend(scores.iter().map(|(k, v)| (k.clone(), fmt_f64(*v))));
        self.push(row);
    }

    /// The cell of `row` in `column`, if both exist.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let c = self.columns.iter().position(|x| x == column)?;
        self.rows.get(row).map(|r| r[c].as_str())
    }

    /// The numeric cell of `row` in `column` (blank or missing → `None`).
    pub fn number(&self, row: usize, column: &str) -> Option<f64> {
        self.get(row, column).and_then(|s| s.parse().ok())
    }

    /// CSV text: a header and one line per row.
    pub fn to_csv(&self) -> Result<Vec<u8>> {
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
