//! Real preference data: JSON Lines or JSON array files in the HH-RLHF, generic, general pairwise,
//! UltraFeedback and PKU-SafeRLHF layouts, read record by record into [`PreferenceData`]. Every
//! format, key and default is documented with worked examples in `docs/DATA.md`.
//!
//! This module owns opening a file (gzip or plain, told apart by the gzip magic bytes), turning
//! each record into text pairs with a group label (one parser per layout), the seeded hash split
//! into train and held-out pairs, tokenisation with truncation, and the counts of a
//! [`LoadReport`]. It does not own the tokeniser ([`crate::data::tokenize`]), the scenario schema
//! ([`crate::scenario::DataFile`]) or anything about training and scoring.
//!
//! # Paths
//! An absolute path is used as is; a relative one is joined to `base_dir`, which the command line
//! sets to the directory the run starts in (the project root). The shipped scenarios therefore
//! name the data the repository ships as `data/hh-rlhf/...` (see `data/README.md`).
//!
//! # Layouts (one JSON object per record)
//! A file whose first character (after a byte-order mark and white space) is `[` is one JSON
//! array of records; anything else is JSON Lines, one record per line (blank lines ignored).
//! - `hh-rlhf`: `{"chosen": transcript, "rejected": transcript}`. The prompt is the shared prefix
//!   through the last `"\n\nAssistant:"` lying wholly inside the common prefix of both
//!   transcripts; the responses are what follows it, less one leading space
//!   ([`split_hh_transcripts`]).
//! - `jsonl`: configurable prompt/chosen/rejected fields ([`jsonl_record`]).
//! - `ultrafeedback`: `instruction` and rated `completions`; per aspect, the highest- against the
//!   lowest-rated completion, ties skipped ([`ultrafeedback_record`]).
//! - `pku-saferlhf`: `prompt`, `response_0/1`, `better_response_id`, `safer_response_id`; a
//!   `helpful` and a `safe` pair per record ([`pku_saferlhf_record`]).
//! - `pairwise`: responses by field or list index; the winner by chosen/rejected fields, a mapped
//!   label or per-annotator votes; ties dropped and counted
//!   ([`crate::data::pairwise::pairwise_record`]).
//!
//! # Bad lines
//! A line that is not valid UTF-8 or JSON, or lacks what its layout needs, is an
//! [`Error::Data`] naming the file and the 1-based line (a JSON array element: the element);
//! with `skip_invalid` it is skipped and counted by reason instead. Read errors of the file
//! itself (a corrupt gzip stream, a JSON array that does not parse) are never skipped.
//!
//! # Split, truncation and dropped pairs
//! - A pair is held out when the seeded hash of its prompt text falls below `data.eval_fraction`
//!   ([`is_held_out`]): the split ignores file order, and every pair sharing a prompt (the
//!   aspects of one UltraFeedback record, the two PKU-SafeRLHF pairs) lands on the same side.
//! - Prompts keep their last `data.max_prompt_tokens` tokens; responses their first
//!   `data.max_response_tokens`.
//! - A pair with an empty response, or whose two responses are identical after truncation, carries
//!   no preference (and an empty response breaks length-normalised objectives): it is dropped and
//!   counted.
//! - A file that drops (skipped + empty + identical) more than `data.max_drop_fraction` of its
//!   pairs makes the load fail with the load table ([`LoadReport::check_drops`]); truncating
//!   more than [`TRUNCATION_WARN_FRACTION`] of a file's prompts or responses warns.
//! - `data.train_pairs` / `data.eval_pairs` bound each side; a side with more pairs keeps the
//!   pairs with the smallest seeded selection hash ([`selection_hash`]), a uniform subset that
//!   keeps file order.

use crate::data::gguf_tokenizer::{chat_prompt, hh_messages};
use crate::data::tokenize::Tokenizer;
use crate::data::{PreferenceData, PreferencePair};
use crate::rng::{derive_seed, fnv1a64, splitmix64};
use crate::scenario::{DataFile, DataFormat, Scenario};
use crate::{Error, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The HH-RLHF assistant cue that ends every prompt.
pub const HH_ASSISTANT: &str = "\n\nAssistant:";

/// One preference as text, before tokenisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextPair {
    /// The prompt text.
    pub prompt: String,
    /// The preferred response's text.
    pub chosen: String,
    /// The other response's text.
    pub rejected: String,
    /// Group label (a file's `group`, a record's group field, an aspect name, or an annotator).
    pub group: String,
    /// Annotator id (a `pairwise` vote field's name), when the record names one.
    pub annotator: Option<String>,
    /// Whether the chosen response was the record's first one (`pairwise` labels and votes,
    /// `pku-saferlhf`); `None` when the file records chosen/rejected, not positions.
    pub first_won: Option<bool>,
}

/// What one valid record gave.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedRecord {
    /// The pairs (one for `hh-rlhf` and `jsonl`; up to one per aspect otherwise).
    pub pairs: Vec<TextPair>,
    /// Aspects that gave no pair (every rating tied, or fewer than two rated completions) and
    /// `pairwise` votes that are missing or `null`.
    pub unpaired: usize,
    /// `pairwise` labels or votes mapped to `tie` (no pair; counted, never kept).
    pub ties: usize,
}

/// Counts of one pass over a file by [`read_records`].
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ReadCounts {
    /// How the file was read: `jsonl` (one object per line) or `json-array` (a file whose first
    /// character is `[`).
    pub layout: &'static str,
    /// Non-blank lines (JSON Lines) or array elements (JSON array) read.
    pub lines: usize,
    /// Valid records (each may give zero or more pairs).
    pub records: usize,
    /// Invalid lines skipped (only with `skip_invalid`).
    pub skipped: usize,
    /// Sum of [`ParsedRecord::unpaired`].
    pub unpaired: usize,
    /// Sum of [`ParsedRecord::ties`].
    pub ties: usize,
    /// Skipped records by reason (the part of the message before its first `": "`).
    pub skipped_by_reason: BTreeMap<String, usize>,
    /// The first skipped line: `line N: message` (`element N: message` in a JSON array).
    pub first_skipped: Option<String>,
}

impl ReadCounts {
    /// Count a record that could not be used, under the reason its message gives.
    fn skip(&mut self, at: String, message: &str) {
        self.skipped += 1;
        *self
            .skipped_by_reason
            .entry(skip_reason(message).to_string())
            .or_default() += 1;
        if self.first_skipped.is_none() {
            self.first_skipped = Some(format!("{at}: {message}"));
        }
    }
}

/// The reason of a bad-record message: the part before its first `": "` (the details after it,
/// such as a value or a parser position, vary from record to record).
pub fn skip_reason(message: &str) -> &str {
    message.split(": ").next().unwrap_or(message)
}

/// The share of a file's pairs that may be dropped before a run refuses (see
/// [`LoadReport::check_drops`]); `data.max_drop_fraction` overrides it.
pub const DEFAULT_MAX_DROP_FRACTION: f64 = 0.2;

/// A load warns when more than this share of a file's prompts, or of its responses, was cut to
/// `data.max_prompt_tokens` / `data.max_response_tokens`.
pub const TRUNCATION_WARN_FRACTION: f64 = 0.25;

/// Counts for one file, as loaded by [`load_real_data`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    /// The resolved path.
    pub path: PathBuf,
    /// The file's record layout.
    pub format: DataFormat,
    /// Lines, records, skipped lines (by reason), unpaired aspects and ties.
    #[serde(flatten)]
    pub read: ReadCounts,
    /// Pairs kept (before the `train_pairs` / `eval_pairs` bounds).
    pub pairs: usize,
    /// Pairs dropped because a response was empty.
    pub dropped_empty: usize,
    /// Pairs dropped because both responses were identical after truncation.
    pub dropped_identical: usize,
    /// Kept pairs whose prompt was left-truncated.
    pub prompts_truncated: usize,
    /// Responses (two per kept pair) that were right-truncated.
    pub responses_truncated: usize,
    /// Kept pairs on the train side of the split.
    pub train: usize,
    /// Kept pairs on the held-out side of the split.
    pub eval: usize,
}

impl FileReport {
    /// Pairs lost: skipped records (each counted as one pair) plus pairs dropped as empty or
    /// identical. Ties and unpaired aspects carry no preference and are not drops.
    pub fn dropped(&self) -> usize {
        self.read.skipped + self.dropped_empty + self.dropped_identical
    }
    /// Pairs the file offered: kept plus dropped.
    pub fn offered(&self) -> usize {
        self.pairs + self.dropped()
    }
    /// `dropped / offered` (0 for a file that offered nothing).
    pub fn drop_fraction(&self) -> f64 {
        ratio(self.dropped(), self.offered())
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Pairs per group on each side, after the bounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupCount {
    /// The group's name.
    pub name: String,
    /// Training pairs of the group.
    pub train: usize,
    /// Held-out pairs of the group.
    pub eval: usize,
}

/// What the loader knows about a kept pair beyond its tokens (for the reference baselines of
/// `crate::baselines`): where the chosen response stood and the untruncated lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PairInfo {
    /// Whether the chosen response was the record's first (`None`: the file records
    /// chosen/rejected, not positions).
    pub first_won: Option<bool>,
    /// Tokens of the chosen response before truncation.
    pub chosen_len: usize,
    /// Tokens of the rejected response before truncation.
    pub rejected_len: usize,
}

/// What [`load_real_data`] read and built.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// [`Tokenizer::describe`].
    pub tokenizer: String,
    /// Held-out share of prompts.
    pub eval_fraction: f64,
    /// `data.max_prompt_tokens`.
    pub max_prompt_tokens: usize,
    /// `data.max_response_tokens`.
    pub max_response_tokens: usize,
    /// `data.max_drop_fraction`.
    pub max_drop_fraction: f64,
    /// Per-file counts, in `data.files` order.
    pub files: Vec<FileReport>,
    /// Train pairs before the `data.train_pairs` bound.
    pub train_available: usize,
    /// Held-out pairs before the `data.eval_pairs` bound.
    pub eval_available: usize,
    /// Train pairs kept.
    pub train_pairs: usize,
    /// Validation pairs set aside from the training side (for checkpoint selection).
    pub val_pairs: usize,
    /// Held-out pairs kept.
    pub eval_pairs: usize,
    /// Pairs per group on each side.
    pub groups: Vec<GroupCount>,
    /// Annotator ids in order of first appearance (a pair's `annotator` indexes this list);
    /// empty when no file names annotators.
    pub annotators: Vec<String>,
    /// Warnings of this load (skipped records, heavy truncation, files without pairs).
    pub warnings: Vec<String>,
    /// Per kept training pair (aligned with `PreferenceData::train`).
    #[serde(skip)]
    pub train_info: Vec<PairInfo>,
    /// Per kept held-out pair (aligned with `PreferenceData::eval`).
    #[serde(skip)]
    pub eval_info: Vec<PairInfo>,
}

impl LoadReport {
    /// Fail when a file dropped more than `max_drop_fraction` of its pairs; the error holds the
    /// whole load table.
    pub fn check_drops(&self) -> Result<()> {
        for (i, f) in self.files.iter().enumerate() {
            if f.drop_fraction() > self.max_drop_fraction {
                return Err(Error::msg(format!(
                    "data.files[{i}] ({}): {} of {} pairs ({:.1}%) were dropped ({} invalid \
                     records skipped, {} with an empty response, {} with identical responses \
                     after truncation), more than data.max_drop_fraction = {} allows. Check the \
                     format and field names, raise data.max_response_tokens / \
                     data.max_prompt_tokens, or set data.max_drop_fraction to accept the loss.\n\n{self}",
                    f.path.display(),
                    f.dropped(),
                    f.offered(),
                    100.0 * f.drop_fraction(),
                    f.read.skipped,
                    f.dropped_empty,
                    f.dropped_identical,
                    self.max_drop_fraction,
                )));
            }
        }
        Ok(())
    }

    /// The warnings a load gives (see [`LoadReport::warnings`]).
    fn collect_warnings(&mut self) {
        let mut out = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            let name = format!("data.files[{i}] ({})", f.path.display());
            if f.read.skipped > 0 {
                let reasons: Vec<String> = f
                    .read
                    .skipped_by_reason
                    .iter()
                    .map(|(r, n)| format!("{r} ×{n}"))
                    .collect();
                out.push(format!(
                    "{name}: skipped {} invalid record(s) of {} ({}); first {}",
                    f.read.skipped,
                    f.read.lines,
                    reasons.join(", "),
                    f.read.first_skipped.as_deref().unwrap_or("?")
                ));
            }
            if f.read.lines > 0 && f.pairs == 0 {
                out.push(format!(
                    "{name}: gave no pairs ({} records, {} ties, {} without a pair, {} dropped)",
                    f.read.records,
                    f.read.ties,
                    f.read.unpaired,
                    f.dropped()
                ));
            }
            let prompts = ratio(f.prompts_truncated, f.pairs);
            if prompts > TRUNCATION_WARN_FRACTION {
                out.push(format!(
                    "{name}: {:.0}% of prompts ({} of {}) were cut to their last \
                     data.max_prompt_tokens = {} tokens",
                    100.0 * prompts,
                    f.prompts_truncated,
                    f.pairs,
                    self.max_prompt_tokens
                ));
            }
            let responses = ratio(f.responses_truncated, 2 * f.pairs);
            if responses > TRUNCATION_WARN_FRACTION {
                out.push(format!(
                    "{name}: {:.0}% of responses ({} of {}) were cut to their first \
                     data.max_response_tokens = {} tokens",
                    100.0 * responses,
                    f.responses_truncated,
                    2 * f.pairs,
                    self.max_response_tokens
                ));
            }
        }
        self.warnings = out;
    }

    /// The load table as Markdown (`load.md` of a run folder).
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("# Data load\n\n```text\n");
        s.push_str(&self.to_string());
        s.push_str("```\n\n");
        s.push_str(LOAD_TABLE_LEGEND);
        s.push('\n');
        s
    }
}

/// What the columns of the load table mean (printed under it in `load.md` and `docs/DATA.md`).
pub const LOAD_TABLE_LEGEND: &str = "Columns: `read` lines (JSON Lines) or elements (JSON array) \
read; `records` valid records; `skipped` invalid records skipped with `--skip-invalid` (by reason \
below the table); `ties` labels or votes mapped to `tie` (no pair); `no-pair` aspects or votes \
that gave no pair; `pairs` pairs kept; `empty` / `identical` pairs dropped for an empty response \
or identical responses after truncation; `dropped` (skipped + empty + identical) as a share of \
kept + dropped, which may not exceed `data.max_drop_fraction`; `prompts_cut` / `responses_cut` \
kept prompts / responses truncated; `train` / `eval` kept pairs on each side of the split, before \
the `data.train_pairs` / `data.eval_pairs` bounds.";

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "tokenizer {}; held-out share {} of prompts; prompts keep their last {} tokens, \
             responses their first {}",
            self.tokenizer, self.eval_fraction, self.max_prompt_tokens, self.max_response_tokens
        )?;
        writeln!(
            f,
            "{:<3} {:<13} {:<10} {:>6} {:>7} {:>7} {:>5} {:>7} {:>6} {:>5} {:>9} {:>13} {:>11} {:>13} {:>6} {:>6}",
            "#",
            "format",
            "layout",
            "read",
            "records",
            "skipped",
            "ties",
            "no-pair",
            "pairs",
            "empty",
            "identical",
            "dropped",
            "prompts_cut",
            "responses_cut",
            "train",
            "eval"
        )?;
        for (i, r) in self.files.iter().enumerate() {
            writeln!(
                f,
                "{:<3} {:<13} {:<10} {:>6} {:>7} {:>7} {:>5} {:>7} {:>6} {:>5} {:>9} {:>13} {:>11} {:>13} {:>6} {:>6}",
                i,
                r.format.as_str(),
                r.read.layout,
                r.read.lines,
                r.read.records,
                r.read.skipped,
                r.read.ties,
                r.read.unpaired,
                r.pairs,
                r.dropped_empty,
                r.dropped_identical,
                format!("{} ({:.1}%)", r.dropped(), 100.0 * r.drop_fraction()),
                r.prompts_truncated,
                r.responses_truncated,
                r.train,
                r.eval
            )?;
        }
        for (i, r) in self.files.iter().enumerate() {
            writeln!(f, "  [{i}] {}", r.path.display())?;
            if r.read.skipped > 0 {
                let reasons: Vec<String> = r
                    .read
                    .skipped_by_reason
                    .iter()
                    .map(|(k, n)| format!("{k} ×{n}"))
                    .collect();
                writeln!(f, "      skipped by reason: {}", reasons.join("; "))?;
            }
            if let Some(first) = &r.read.first_skipped {
                writeln!(f, "      first skipped {first}")?;
            }
        }
        writeln!(
            f,
            "kept {} of {} train and {} of {} held-out pairs; {} validation pairs set aside from \
             the training side; a run refuses a file dropping more than {:.0}% of its pairs \
             (data.max_drop_fraction)",
            self.train_pairs,
            self.train_available,
            self.eval_pairs,
            self.eval_available,
            self.val_pairs,
            100.0 * self.max_drop_fraction
        )?;
        writeln!(f, "{} group(s) (pairs kept per side):", self.groups.len())?;
        for g in &self.groups {
            writeln!(
                f,
                "  group {}: train {}, held-out {}",
                g.name, g.train, g.eval
            )?;
        }
        if !self.annotators.is_empty() {
            writeln!(
                f,
                "{} annotator(s): {}",
                self.annotators.len(),
                self.annotators.join(", ")
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// Records [`check_files`] looks at in each file.
pub const CHECK_RECORDS: usize = 5;

/// Check that every file of a real-data scenario exists and is readable, parses, and that each
/// field its entry names ([`DataFile::named_fields`]) is present in at least one of its first
/// `records` records. Reads only the start of a JSON Lines file (a JSON array is parsed whole).
pub fn check_files(scenario: &Scenario, base_dir: &Path, records: usize) -> Result<()> {
    for (i, file) in scenario.data.files.iter().enumerate() {
        let path = resolve_path(base_dir, &file.path);
        let mut reader = open_data_file(&path)?;
        let mut first: Vec<Value> = Vec::new();
        let head = reader.fill_buf().map_err(|e| Error::io(&path, e))?;
        let bom = head.starts_with(&[0xEF, 0xBB, 0xBF]);
        let is_array = head[if bom { 3 } else { 0 }..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            == Some(&b'[');
        if is_array {
            if bom {
                reader.consume(3);
            }
            let values: Vec<Value> = serde_json::from_reader(reader).map_err(|e| Error::Data {
                path: path.clone(),
                line: e.line(),
                message: format!(
                    "not a valid JSON array of records (a file whose first character is '[' is \
                     read as one JSON array of objects, anything else as JSON Lines): {e}"
                ),
            })?;
            first.extend(values.into_iter().take(records));
        } else {
            let mut line = 0usize;
            let mut buf = String::new();
            while first.len() < records {
                buf.clear();
                let n = reader.read_line(&mut buf).map_err(|e| Error::Data {
                    path: path.clone(),
                    line: line + 1,
                    message: format!("cannot read the file: {e}"),
                })?;
                if n == 0 {
                    break;
                }
                line += 1;
                let text = buf.trim_start_matches('\u{feff}').trim();
                if text.is_empty() {
                    continue;
                }
                let value = serde_json::from_str(text).map_err(|e| Error::Data {
                    path: path.clone(),
                    line,
                    message: format!(
                        "invalid JSON: {e} (a JSON Lines file holds one JSON object per line; a \
                         file starting with '[' is read as one JSON array)"
                    ),
                })?;
                first.push(value);
            }
        }
        let where_ = format!("data.files[{i}] ({})", path.display());
        let Some(sample) = first.first() else {
            return Err(Error::msg(format!("{where_}: the file holds no records")));
        };
        let Some(obj) = sample.as_object() else {
            return Err(Error::msg(format!(
                "{where_}: record 1 is not a JSON object (format = \"{}\" reads one object per record)",
                file.format.as_str()
            )));
        };
        for field in file.named_fields() {
            if !first
                .iter()
                .any(|v| v.as_object().is_some_and(|o| o.contains_key(&field)))
            {
                let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                return Err(Error::msg(format!(
                    "{where_}: field '{field}' (named by format = \"{}\" or its *_field keys) is \
                     in none of the first {} record(s); record 1 has: {}",
                    file.format.as_str(),
                    first.len(),
                    keys.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// `base_dir.join(path)` for a relative path; an absolute path as is.
pub fn resolve_path(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

/// Open a data file for line-by-line reading: gzip when it starts with the gzip magic bytes
/// `1f 8b` (multi-member streams included), plain text otherwise, whatever its extension.
pub fn open_data_file(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let head = reader.fill_buf().map_err(|e| Error::io(path, e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::new(
            flate2::bufread::MultiGzDecoder::new(reader),
        )))
    } else {
        Ok(Box::new(reader))
    }
}

/// Read the records of `reader` (named `path` in errors), parse each in `file`'s layout, and hand
/// each valid record to `sink` with its 1-based line number (its 1-based element number in a
/// JSON array). Stops after `file.limit` valid records.
///
/// The layout is told by content: a file whose first character (after a byte-order mark and
/// white space) is `[` is one JSON array of records; anything else is JSON Lines, one record per
/// line (blank lines ignored).
///
/// A bad record (not UTF-8, not JSON, wrong layout, or rejected by `sink`) is an error naming
/// `path` and the line (or element), or with `skip_invalid` is skipped and counted by reason.
pub fn read_records<R: BufRead>(
    mut reader: R,
    path: &Path,
    file: &DataFile,
    skip_invalid: bool,
    mut sink: impl FnMut(usize, ParsedRecord) -> std::result::Result<(), String>,
) -> Result<ReadCounts> {
    let aspects = file.aspects();
    let head = reader.fill_buf().map_err(|e| Error::io(path, e))?;
    let bom = head.starts_with(&[0xEF, 0xBB, 0xBF]);
    let first = head[if bom { 3 } else { 0 }..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .copied();
    if first == Some(b'[') {
        if bom {
            reader.consume(3);
        }
        return read_json_array(reader, path, file, &aspects, skip_invalid, sink);
    }
    let mut counts = ReadCounts {
        layout: "jsonl",
        ..Default::default()
    };
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        if file.limit.is_some_and(|n| counts.records >= n) {
            break;
        }
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::Data {
                path: path.to_path_buf(),
                line: line_no + 1,
                message: format!("cannot read the file: {e}"),
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let outcome = match std::str::from_utf8(&buf) {
            Err(e) => Err(format!("not valid UTF-8: {e}")),
            Ok(text) => {
                let text = text.trim_start_matches('\u{feff}').trim();
                if text.is_empty() {
                    continue;
                }
                counts.lines += 1;
                serde_json::from_str::<Value>(text)
                    .map_err(|e| {
                        format!(
                            "invalid JSON: {e} (a JSON Lines file holds one JSON object per \
                             line; a file starting with '[' is read as one JSON array)"
                        )
                    })
                    .and_then(|value| {
                        deliver(&value, file, &aspects, &mut counts, line_no, &mut sink)
                    })
            }
        };
        match outcome {
            Ok(()) => counts.records += 1,
            Err(message) if skip_invalid => counts.skip(format!("line {line_no}"), &message),
            Err(message) => {
                return Err(Error::Data {
                    path: path.to_path_buf(),
                    line: line_no,
                    message,
                });
            }
        }
    }
    Ok(counts)
}

/// Parse one record and hand it to `sink`, adding its unpaired aspects and ties to `counts`.
fn deliver(
    value: &Value,
    file: &DataFile,
    aspects: &[String],
    counts: &mut ReadCounts,
    at: usize,
    sink: &mut impl FnMut(usize, ParsedRecord) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let rec = parse_value(value, file, aspects)?;
    let (unpaired, ties) = (rec.unpaired, rec.ties);
    sink(at, rec)?;
    counts.unpaired += unpaired;
    counts.ties += ties;
    Ok(())
}

/// The records of a file holding one JSON array of objects (see [`read_records`]). The array is
/// parsed whole; a parse error names the line and column and says what was expected.
fn read_json_array<R: BufRead>(
    reader: R,
    path: &Path,
    file: &DataFile,
    aspects: &[String],
    skip_invalid: bool,
    mut sink: impl FnMut(usize, ParsedRecord) -> std::result::Result<(), String>,
) -> Result<ReadCounts> {
    let values: Vec<Value> = serde_json::from_reader(reader).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        line: e.line(),
        message: format!(
            "not a valid JSON array of records (a file whose first character is '[' is read as \
             one JSON array of objects, anything else as JSON Lines): {e}"
        ),
    })?;
    let mut counts = ReadCounts {
        layout: "json-array",
        ..Default::default()
    };
    for (k, value) in values.iter().enumerate() {
        if file.limit.is_some_and(|n| counts.records >= n) {
            break;
        }
        let element = k + 1;
        counts.lines += 1;
        match deliver(value, file, aspects, &mut counts, element, &mut sink) {
            Ok(()) => counts.records += 1,
            Err(message) if skip_invalid => counts.skip(format!("element {element}"), &message),
            Err(message) => {
                return Err(Error::msg(format!(
                    "{}: element {element} of the JSON array: {message}",
                    path.display()
                )));
            }
        }
    }
    Ok(counts)
}

/// Parse one JSON Lines record in `file`'s layout. `aspects` is `file.aspects()` (passed in so
/// it is resolved once per file).
pub fn parse_record(
    text: &str,
    file: &DataFile,
    aspects: &[String],
) -> std::result::Result<ParsedRecord, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    parse_value(&value, file, aspects)
}

/// Parse one record (a JSON value) in `file`'s layout.
pub fn parse_value(
    value: &Value,
    file: &DataFile,
    aspects: &[String],
) -> std::result::Result<ParsedRecord, String> {
    let obj = value
        .as_object()
        .ok_or_else(|| "expected a JSON object".to_string())?;
    let (prompt, chosen, rejected) = match file.format {
        DataFormat::HhRlhf => hh_rlhf_record(obj)?,
        DataFormat::Jsonl => jsonl_record(
            obj,
            file.prompt_field(),
            file.chosen_field(),
            file.rejected_field(),
        )?,
        DataFormat::UltraFeedback => return ultrafeedback_record(obj, aspects),
        DataFormat::PkuSafeRlhf => return pku_saferlhf_record(obj, aspects),
        DataFormat::Pairwise => return crate::data::pairwise::pairwise_record(obj, file),
    };
    // One pair per record, grouped by the file's label or field.
    Ok(ParsedRecord {
        pairs: vec![TextPair {
            prompt,
            chosen,
            rejected,
            group: file_group(obj, file)?,
            annotator: None,
            first_won: None,
        }],
        unpaired: 0,
        ties: 0,
    })
}

/// Split two HH-RLHF transcripts into `(prompt, chosen response, rejected response)`.
///
/// ```text
/// c      = length of the longest common prefix of chosen and rejected (on a char boundary)
/// i      = start of the last "\n\nAssistant:" inside chosen[..c]
/// prompt = chosen[..i + len("\n\nAssistant:")]
/// y_w    = chosen[len(prompt)..] less one leading ' ';  y_l likewise from rejected
/// ```
/// Searching only inside the common prefix handles transcripts that differ before their last
/// turn (or inside a marker): the responses then hold every turn after the last shared cue.
/// Fails when no cue lies inside the common prefix.
pub fn split_hh_transcripts<'a>(
    chosen: &'a str,
    rejected: &'a str,
) -> std::result::Result<(&'a str, &'a str, &'a str), String> {
    let mut common = chosen
        .bytes()
        .zip(rejected.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    while !chosen.is_char_boundary(common) {
        common -= 1;
    }
    let start = chosen[..common].rfind(HH_ASSISTANT).ok_or_else(|| {
        "chosen and rejected share no \"\\n\\nAssistant:\" turn (cannot find the prompt)"
            .to_string()
    })?;
    let end = start + HH_ASSISTANT.len();
    let response = |s: &'a str| {
        let rest = &s[end..];
        rest.strip_prefix(' ').unwrap_or(rest)
    };
    Ok((&chosen[..end], response(chosen), response(rejected)))
}

/// `(prompt, chosen, rejected)` of an HH-RLHF record ([`split_hh_transcripts`]).
pub fn hh_rlhf_record(
    obj: &Map<String, Value>,
) -> std::result::Result<(String, String, String), String> {
    let chosen = str_field(obj, "chosen")?;
    let rejected = str_field(obj, "rejected")?;
    let (p, c, r) = split_hh_transcripts(chosen, rejected)?;
    Ok((p.to_string(), c.to_string(), r.to_string()))
}

/// A chat message `{role, content}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Turn<'a> {
    role: &'a str,
    content: &'a str,
}

/// A `jsonl` response field: plain text, or a message list whose last turn is the response.
enum Side<'a> {
    Text(&'a str),
    Turns(Vec<Turn<'a>>),
}

pub(crate) fn turns<'a>(v: &'a [Value], field: &str) -> std::result::Result<Vec<Turn<'a>>, String> {
    v.iter()
        .enumerate()
        .map(|(k, m)| {
            let get = |key: &str| m.get(key).and_then(Value::as_str);
            match (get("role"), get("content")) {
                (Some(role), Some(content)) => Ok(Turn { role, content }),
                _ => Err(format!(
                    "field '{field}'[{k}] must be a message {{\"role\": string, \"content\": string}}"
                )),
            }
        })
        .collect()
}

fn side<'a>(obj: &'a Map<String, Value>, field: &str) -> std::result::Result<Side<'a>, String> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(Side::Text(s)),
        Some(Value::Array(a)) => Ok(Side::Turns(turns(a, field)?)),
        None | Some(Value::Null) => Err(format!("missing field '{field}'")),
        Some(_) => Err(format!(
            "field '{field}' must be a string or a list of {{role, content}} messages"
        )),
    }
}

/// Role label used when rendering messages: `user`/`human` → `Human`, `assistant` →
/// `Assistant`, anything else with its first letter capitalised (`system` → `System`).
fn role_label(role: &str) -> String {
    match role {
        "user" | "human" => "Human".to_string(),
        "assistant" => "Assistant".to_string(),
        other => {
            let mut c = other.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
    }
}

/// Messages as an HH-style transcript ending in the assistant cue:
/// ```text
/// render([(r_1, c_1), ..., (r_n, c_n)]) = "\n\n{R_1}: {c_1}" ... "\n\n{R_n}: {c_n}" "\n\nAssistant:"
/// ```
pub(crate) fn render_turns(turns: &[Turn<'_>]) -> String {
    let mut out = String::new();
    for t in turns {
        out.push_str("\n\n");
        out.push_str(&role_label(t.role));
        out.push_str(": ");
        out.push_str(t.content);
    }
    out.push_str(HH_ASSISTANT);
    out
}

/// `(context before the response, response)` of a response field.
fn response_of<'a>(
    side: Side<'a>,
    field: &str,
) -> std::result::Result<(Option<Vec<Turn<'a>>>, &'a str), String> {
    match side {
        Side::Text(s) => Ok((None, s)),
        Side::Turns(mut t) => match t.pop() {
            Some(last) if last.role == "assistant" => Ok((Some(t), last.content)),
            _ => Err(format!(
                "field '{field}' must end with an assistant message (its response)"
            )),
        },
    }
}

/// The response text of a field: a string, or the last (assistant) message of a message list.
pub(crate) fn response_text<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> std::result::Result<&'a str, String> {
    Ok(response_of(side(obj, field)?, field)?.1)
}

/// `(prompt, chosen, rejected)` of a generic JSON Lines record.
///
/// `chosen` and `rejected` are strings, or message lists `[{"role", "content"}, ...]` whose last
/// message (role `assistant`) is the response. The prompt is the prompt field taken verbatim
/// when it is a string, or rendered HH-style (`"\n\nHuman: ...\n\nAssistant:"`) when it is a
/// message list. When the prompt field is absent, the prompt is the turns before the last
/// assistant message of `chosen` (rendered), which must then equal those of `rejected` when it
/// is a message list too.
pub fn jsonl_record(
    obj: &Map<String, Value>,
    prompt_field: &str,
    chosen_field: &str,
    rejected_field: &str,
) -> std::result::Result<(String, String, String), String> {
    let (chosen_context, chosen) = response_of(side(obj, chosen_field)?, chosen_field)?;
    let (rejected_context, rejected) = response_of(side(obj, rejected_field)?, rejected_field)?;
    let prompt = match obj.get(prompt_field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => render_turns(&turns(a, prompt_field)?),
        None | Some(Value::Null) => {
            let context = match (chosen_context, rejected_context) {
                (Some(c), Some(r)) if c != r => {
                    return Err(format!(
                        "'{chosen_field}' and '{rejected_field}' differ before their last \
                         assistant message, and there is no '{prompt_field}' field"
                    ));
                }
                (Some(c), _) | (None, Some(c)) => c,
                (None, None) => return Err(format!("missing field '{prompt_field}'")),
            };
            if context.is_empty() {
                return Err(format!(
                    "missing field '{prompt_field}' and no messages before the response"
                ));
            }
            render_turns(&context)
        }
        Some(_) => {
            return Err(format!(
                "field '{prompt_field}' must be a string or a list of {{role, content}} messages"
            ));
        }
    };
    Ok((prompt, chosen.to_string(), rejected.to_string()))
}

/// Pairs of an UltraFeedback record: for each aspect, the first highest-rated completion is
/// chosen over the first lowest-rated one; the aspect gives no pair (`unpaired`) when fewer than
/// two completions carry a rating or all ratings tie.
///
/// Layout (openbmb/UltraFeedback): `{"source", "instruction", "models", "completions": [{"model",
/// "response", "annotations": {"helpfulness": {"Rating": "4", ...}, "honesty": ...,
/// "instruction_following": ..., "truthfulness": ...}, "fine-grained_score": 4.25,
/// "overall_score": 7.5, ...}]}`. A rating is a number or a numeric string; `"N/A"`, `null` or a
/// missing rating leaves that completion out of the aspect. An aspect annotation given as a list
/// of `{"Rating"}` objects counts as their mean. `overall_score` and `fine-grained_score` are
/// read from the completion itself. The prompt is `instruction`, verbatim.
pub fn ultrafeedback_record(
    obj: &Map<String, Value>,
    aspects: &[String],
) -> std::result::Result<ParsedRecord, String> {
    let instruction = str_field(obj, "instruction")?;
    let completions = match obj.get("completions") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => return Err("missing field 'completions'".to_string()),
        Some(_) => return Err("field 'completions' must be a list".to_string()),
    };
    let mut responses = Vec::with_capacity(completions.len());
    for (k, c) in completions.iter().enumerate() {
        let c = c
            .as_object()
            .ok_or_else(|| format!("completions[{k}] must be an object"))?;
        let r = c
            .get("response")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("completions[{k}].response must be a string"))?;
        responses.push((c, r));
    }
    let mut out = ParsedRecord::default();
    for aspect in aspects {
        let rated: Vec<(usize, f64)> = responses
            .iter()
            .enumerate()
            .filter_map(|(k, (c, _))| ultrafeedback_rating(c, aspect).map(|r| (k, r)))
            .collect();
        let first_by = |better: fn(f64, f64) -> bool| {
            rated
                .iter()
                .copied()
                .reduce(|best, x| if better(x.1, best.1) { x } else { best })
        };
        let (Some(top), Some(bottom)) = (first_by(|a, b| a > b), first_by(|a, b| a < b)) else {
            out.unpaired += 1;
            continue;
        };
        if rated.len() < 2 || top.1 == bottom.1 {
            out.unpaired += 1;
            continue;
        }
        out.pairs.push(TextPair {
            prompt: instruction.to_string(),
            chosen: responses[top.0].1.to_string(),
            rejected: responses[bottom.0].1.to_string(),
            group: aspect.clone(),
            annotator: None,
            first_won: None,
        });
    }
    Ok(out)
}

/// A completion's rating for `aspect` (see [`ultrafeedback_record`]).
fn ultrafeedback_rating(c: &Map<String, Value>, aspect: &str) -> Option<f64> {
    if matches!(aspect, "overall_score" | "fine-grained_score") {
        return number(c.get(aspect)?);
    }
    match c.get("annotations")?.get(aspect)? {
        Value::Object(o) => number(o.get("Rating")?),
        Value::Array(list) => {
            let ratings: Vec<f64> = list
                .iter()
                .filter_map(|a| number(a.get("Rating")?))
                .collect();
            (!ratings.is_empty()).then(|| ratings.iter().sum::<f64>() / ratings.len() as f64)
        }
        _ => None,
    }
}

/// A finite number, or a string holding one.
fn number(v: &Value) -> Option<f64> {
    let x = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    x.is_finite().then_some(x)
}

/// Pairs of a PKU-SafeRLHF record: aspect `helpful` prefers `response_{better_response_id}`,
/// aspect `safe` prefers `response_{safer_response_id}`, each over the other response. The
/// prompt is `prompt`, verbatim. Ids must be 0 or 1.
pub fn pku_saferlhf_record(
    obj: &Map<String, Value>,
    aspects: &[String],
) -> std::result::Result<ParsedRecord, String> {
    let prompt = str_field(obj, "prompt")?;
    let responses = [str_field(obj, "response_0")?, str_field(obj, "response_1")?];
    let mut out = ParsedRecord::default();
    for aspect in aspects {
        let field = match aspect.as_str() {
            "helpful" => "better_response_id",
            "safe" => "safer_response_id",
            other => return Err(format!("unknown pku-saferlhf aspect '{other}'")),
        };
        let id = match obj.get(field).and_then(Value::as_u64) {
            Some(id @ (0 | 1)) => id as usize,
            _ => return Err(format!("field '{field}' must be 0 or 1")),
        };
        out.pairs.push(TextPair {
            prompt: prompt.to_string(),
            chosen: responses[id].to_string(),
            rejected: responses[1 - id].to_string(),
            group: aspect.clone(),
            annotator: None,
            first_won: Some(id == 0),
        });
    }
    Ok(out)
}

fn str_field<'a>(obj: &'a Map<String, Value>, field: &str) -> std::result::Result<&'a str, String> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(format!("missing field '{field}'")),
        Some(_) => Err(format!("field '{field}' must be a string")),
    }
}

/// The group of an `hh-rlhf` / `jsonl` record: the file's fixed `group`, or the value of its
/// `group_field` (a non-empty string, or a number or boolean written as text).
pub(crate) fn file_group(
    obj: &Map<String, Value>,
    file: &DataFile,
) -> std::result::Result<String, String> {
    if let Some(g) = &file.group {
        return Ok(g.clone());
    }
    let Some(field) = &file.group_field else {
        return Err("the file names neither group nor group_field".to_string());
    };
    match obj.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
        None | Some(Value::Null) => Err(format!("missing group field '{field}'")),
        Some(_) => Err(format!(
            "group field '{field}' must be a non-empty string, a number or a boolean"
        )),
    }
}

/// Seeded hash of a prompt for the train/held-out split, uniform on `[0, 1)`:
/// ```text
/// h = splitmix64(fnv1a64(prompt) XOR derive_seed(seed, "data/split"))
/// u = (h >> 11) / 2^53
/// ```
pub fn split_hash(seed: u64, prompt: &str) -> f64 {
    let h = splitmix64(fnv1a64(prompt.as_bytes()) ^ derive_seed(seed, "data/split"));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a pair with this prompt is held out: `split_hash(seed, prompt) < eval_fraction`.
pub fn is_held_out(seed: u64, eval_fraction: f64, prompt: &str) -> bool {
    split_hash(seed, prompt) < eval_fraction
}

/// Seeded hash ordering pairs for the `train_pairs` / `eval_pairs` bounds (fields joined by the
/// unit separator U+001F):
/// ```text
/// h = splitmix64(fnv1a64(prompt ␟ chosen ␟ rejected ␟ group) XOR derive_seed(seed, "data/subsample"))
/// ```
pub fn selection_hash(seed: u64, pair: &TextPair) -> u64 {
    let key = [
        pair.prompt.as_str(),
        &pair.chosen,
        &pair.rejected,
        &pair.group,
    ]
    .join("\u{1f}");
    splitmix64(fnv1a64(key.as_bytes()) ^ derive_seed(seed, "data/subsample"))
}

/// Set aside the validation pairs from the training side: the `min(val_pairs, n / 10)` items
/// with the largest prompt hashes (so the choice depends on neither file order nor the
/// training cap, and equal prompts stay together), in file order. Returns the rest (with their
/// hashes, for [`bound`]) and the validation items.
fn split_validation<T>(items: Vec<(u64, T)>, val_pairs: usize) -> (Vec<(u64, T)>, Vec<T>) {
    let n_val = val_pairs.min(items.len() / 10);
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(items[i].0), i));
    let mut to_val = vec![false; items.len()];
    for &i in &order[..n_val] {
        to_val[i] = true;
    }
    let mut rest = Vec::with_capacity(items.len() - n_val);
    let mut val = Vec::with_capacity(n_val);
    for (item, v) in items.into_iter().zip(to_val) {
        if v {
            val.push(item.1);
        } else {
            rest.push(item);
        }
    }
    (rest, val)
}

/// Keep the `cap` items with the smallest hash (ties by position), in their original order.
fn bound<T>(items: Vec<(u64, T)>, cap: usize) -> Vec<T> {
    if items.len() <= cap {
        return items.into_iter().map(|(_, p)| p).collect();
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].0, i));
    let mut keep = vec![false; items.len()];
    for &i in &order[..cap] {
        keep[i] = true;
    }
    items
        .into_iter()
        .zip(keep)
        .filter_map(|((_, p), k)| k.then_some(p))
        .collect()
}

/// Tokenises text pairs, splits them and keeps the counts.
struct Builder<'t> {
    tokenizer: &'t Tokenizer,
    /// The chat separator when a pretrained model's chat template renders the text
    /// ([`PreferenceData::chat_separator`]).
    chat: Option<u32>,
    seed: u64,
    eval_fraction: f64,
    max_prompt: usize,
    max_response: usize,
    group_names: Vec<String>,
    group_ids: HashMap<String, usize>,
    annotator_names: Vec<String>,
    annotator_ids: HashMap<String, usize>,
    train: Vec<(u64, (PreferencePair, PairInfo))>,
    eval: Vec<(u64, (PreferencePair, PairInfo))>,
}

/// One tokenised pair waiting for its record to succeed.
struct Staged {
    held_out: bool,
    hash: u64,
    group: String,
    annotator: Option<String>,
    prompt: Vec<u32>,
    chosen: Vec<u32>,
    rejected: Vec<u32>,
    prompt_cut: bool,
    responses_cut: usize,
    info: PairInfo,
}

/// The id of `name` in a first-appearance numbering.
fn intern(names: &mut Vec<String>, ids: &mut HashMap<String, usize>, name: String) -> usize {
    let next = ids.len();
    let id = *ids.entry(name.clone()).or_insert(next);
    if id == next {
        names.push(name);
    }
    id
}

impl Builder<'_> {
    fn encode(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        self.tokenizer.encode(text).map_err(|e| e.to_string())
    }

    /// A prompt's ids. With a chat template: the prompt read as a conversation
    /// ([`hh_messages`]: HH-RLHF turns, or one user message), rendered with the generation
    /// prompt, minus its last token (the separator, which the batch puts back).
    fn encode_prompt(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        let Some(sep) = self.chat else {
            return self.encode(text);
        };
        let (messages, _) = hh_messages(text);
        let mut ids = self.encode(&chat_prompt(&messages, true))?;
        match ids.pop() {
            Some(last) if last == sep => Ok(ids),
            _ => Err(format!(
                "the chat-rendered prompt does not end in the separator token {sep}"
            )),
        }
    }

    /// A response's ids. With a chat template: the trimmed text and the end-of-turn marker
    /// (`{text}<|im_end|>`), as the template writes an assistant turn.
    fn encode_response(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        match self.chat {
            Some(_) => self.encode(&format!("{}{CHAT_END}", text.trim())),
            None => self.encode(text),
        }
    }

    /// Tokenise and split every pair of a record, then commit them all (or none, on error).
    fn add(
        &mut self,
        source: usize,
        record: ParsedRecord,
        report: &mut FileReport,
    ) -> std::result::Result<(), String> {
        let mut staged = Vec::with_capacity(record.pairs.len());
        let mut prompt_cache: Option<(&str, Vec<u32>)> = None;
        for pair in &record.pairs {
            let mut prompt = match &prompt_cache {
                Some((text, ids)) if *text == pair.prompt => ids.clone(),
                _ => {
                    let ids = self.encode_prompt(&pair.prompt)?;
                    prompt_cache = Some((&pair.prompt, ids.clone()));
                    ids
                }
            };
            let prompt_cut = prompt.len() > self.max_prompt;
            if prompt_cut {
                prompt.drain(..prompt.len() - self.max_prompt);
            }
            let mut chosen = self.encode_response(&pair.chosen)?;
            let mut rejected = self.encode_response(&pair.rejected)?;
            let info = PairInfo {
                first_won: pair.first_won,
                chosen_len: chosen.len(),
                rejected_len: rejected.len(),
            };
            let mut responses_cut = 0;
            for r in [&mut chosen, &mut rejected] {
                if r.len() > self.max_response {
                    r.truncate(self.max_response);
                    responses_cut += 1;
                }
            }
            staged.push(Staged {
                held_out: is_held_out(self.seed, self.eval_fraction, &pair.prompt),
                hash: selection_hash(self.seed, pair),
                group: pair.group.clone(),
                annotator: pair.annotator.clone(),
                prompt,
                chosen,
                rejected,
                prompt_cut,
                responses_cut,
                info,
            });
        }
        for s in staged {
            if s.chosen.is_empty() || s.rejected.is_empty() {
                report.dropped_empty += 1;
                continue;
            }
            if s.chosen == s.rejected {
                report.dropped_identical += 1;
                continue;
            }
            report.pairs += 1;
            report.prompts_truncated += usize::from(s.prompt_cut);
            report.responses_truncated += s.responses_cut;
            let group = intern(&mut self.group_names, &mut self.group_ids, s.group);
            let annotator = s.annotator.map_or(0, |a| {
                intern(&mut self.annotator_names, &mut self.annotator_ids, a)
            });
            let pair = PreferencePair {
                prompt: s.prompt,
                chosen: s.chosen,
                rejected: s.rejected,
                group,
                source,
                annotator,
                truth: None,
            };
            if s.held_out {
                report.eval += 1;
                self.eval.push((s.hash, (pair, s.info)));
            } else {
                report.train += 1;
                self.train.push((s.hash, (pair, s.info)));
            }
        }
        Ok(())
    }
}

/// Load every `[[data.files]]` entry of a real-data scenario into [`PreferenceData`], and refuse
/// (with the load table in the error) when a file dropped more than `data.max_drop_fraction` of
/// its pairs ([`LoadReport::check_drops`]).
///
/// Relative paths (files and a `tokenizer.json`) resolve against `base_dir` (the CLI passes the
/// current directory). Pairs keep file order on each side of the split; group ids number the
/// group names in order of first appearance; `source` is the file's index in `data.files`;
/// `annotator` numbers annotator ids in order of first appearance (0 when the files name none);
/// `truth` is `None`. `vocab` is the tokeniser's vocabulary (the separator is `vocab`). Fails if
/// a side of the split is empty.
pub fn load_real_data(
    scenario: &Scenario,
    base_dir: &Path,
    skip_invalid: bool,
) -> Result<(PreferenceData, LoadReport)> {
    let (data, report) = load_real_data_unchecked(scenario, base_dir, skip_invalid)?;
    report.check_drops()?;
    Ok((data, report))
}

/// [`load_real_data`] without the drop check (for `inspect`, which shows the table first).
pub fn load_real_data_unchecked(
    scenario: &Scenario,
    base_dir: &Path,
    skip_invalid: bool,
) -> Result<(PreferenceData, LoadReport)> {
    if !scenario.is_real_data() {
        return Err(Error::msg(format!(
            "scenario '{}' names no real data files ([[data.files]])",
            scenario.name
        )));
    }
    let spec = &scenario.data;
    let (tokenizer, chat) = match &scenario.model.pretrained {
        Some(model) => model_tokenizer(&resolve_path(base_dir, model))?,
        None => (Tokenizer::from_spec(spec.tokenizer(), base_dir)?, None),
    };
    let mut builder = Builder {
        tokenizer: &tokenizer,
        chat,
        seed: spec.seed,
        eval_fraction: spec.eval_fraction(),
        max_prompt: spec.max_prompt_tokens(),
        max_response: spec.max_response_tokens(),
        group_names: Vec::new(),
        group_ids: HashMap::new(),
        annotator_names: Vec::new(),
        annotator_ids: HashMap::new(),
        train: Vec::new(),
        eval: Vec::new(),
    };
    let mut files = Vec::with_capacity(spec.files.len());
    for (source, file) in spec.files.iter().enumerate() {
        let path = resolve_path(base_dir, &file.path);
        let reader = open_data_file(&path)?;
        let mut report = FileReport {
            path: path.clone(),
            format: file.format,
            read: ReadCounts::default(),
            pairs: 0,
            dropped_empty: 0,
            dropped_identical: 0,
            prompts_truncated: 0,
            responses_truncated: 0,
            train: 0,
            eval: 0,
        };
        report.read = read_records(reader, &path, file, skip_invalid, |_, record| {
            builder.add(source, record, &mut report)
        })?;
        files.push(report);
    }
    let (train_available, eval_available) = (builder.train.len(), builder.eval.len());
    let (train_side, val) = split_validation(builder.train, spec.val_pairs());
    let val: Vec<PreferencePair> = val.into_iter().map(|(p, _)| p).collect();
    let (train, train_info): (Vec<_>, Vec<_>) =
        bound(train_side, spec.train_pairs).into_iter().unzip();
    let (eval, eval_info): (Vec<_>, Vec<_>) =
        bound(builder.eval, spec.eval_pairs).into_iter().unzip();
    let group_names = builder.group_names;
    let groups = group_names
        .iter()
        .enumerate()
        .map(|(g, name)| GroupCount {
            name: name.clone(),
            train: train
                .iter()
                .filter(|p: &&PreferencePair| p.group == g)
                .count(),
            eval: eval
                .iter()
                .filter(|p: &&PreferencePair| p.group == g)
                .count(),
        })
        .collect();
    let mut report = LoadReport {
        tokenizer: tokenizer.describe(),
        eval_fraction: spec.eval_fraction(),
        max_prompt_tokens: spec.max_prompt_tokens(),
        max_response_tokens: spec.max_response_tokens(),
        max_drop_fraction: spec.max_drop_fraction(),
        files,
        train_available,
        eval_available,
        train_pairs: train.len(),
        val_pairs: val.len(),
        eval_pairs: eval.len(),
        groups,
        annotators: builder.annotator_names,
        warnings: Vec::new(),
        train_info,
        eval_info,
    };
    report.collect_warnings();
    let kept = train_available + eval_available;
    if kept == 0 {
        return Err(Error::msg(format!(
            "the real data gave no pairs at all: every record was skipped, tied or dropped \
             (see the load table below; check data.files, their format, fields and limits)\n\n{report}"
        )));
    }
    for (side, pairs) in [("training", &train), ("held-out", &eval)] {
        if pairs.is_empty() {
            let distinct: std::collections::HashSet<&Vec<u32>> = train
                .iter()
                .chain(val.iter())
                .chain(eval.iter())
                .map(|p| &p.prompt)
                .collect();
            return Err(Error::msg(format!(
                "the real data gave no {side} pairs: all {kept} kept pairs ({} distinct \
                 truncated prompts) fell on the other side of the split by \
                 data.eval_fraction = {} (pairs sharing a prompt stay together; more records or \
                 another data.seed may help)\n\n{report}",
                distinct.len(),
                spec.eval_fraction()
            )));
        }
    }
    let all = || train.iter().chain(val.iter()).chain(eval.iter());
    let max_prompt_len = all().map(|p| p.prompt.len()).max().unwrap_or(0);
    let max_response_len = all()
        .map(|p| p.chosen.len().max(p.rejected.len()))
        .max()
        .unwrap_or(0);
    let data = PreferenceData {
        train,
        val,
        eval,
        vocab: tokenizer.vocab_size(),
        groups: group_names.len(),
        group_names,
        max_prompt_len,
        max_response_len,
        chat_separator: chat,
    };
    Ok((data, report))
}

/// The end-of-turn marker of SmolLM2's ChatML template.
pub const CHAT_END: &str = "<|im_end|>";

/// The tokenizer stored in a pretrained model's GGUF file and its chat separator: the newline
/// that ends the template's generation prompt `<|im_start|>assistant\n`, which must be one
/// token of its own (it is in `gpt2`-BPE vocabularies, whose pre-tokenizer splits it off).
#[cfg(feature = "hf-tokenizer")]
pub fn model_tokenizer(path: &Path) -> Result<(Tokenizer, Option<u32>)> {
    let file = crate::gguf::GgufFile::open(path)?;
    let tokenizer = crate::data::gguf_tokenizer::tokenizer_from_gguf(&file)?;
    let ids = tokenizer.encode("<|im_start|>assistant\n")?;
    match (ids.last(), tokenizer.encode("\n")?.as_slice()) {
        (Some(&last), [nl]) if last == *nl => Ok((tokenizer, Some(last))),
        _ => Err(Error::msg(format!(
            "{}: the model's tokenizer does not end the chat prompt              '<|im_start|>assistant\\n' with a newline token of its own ({ids:?})",
            path.display()
        ))),
    }
}

/// Without the `hf-tokenizer` feature a model's tokenizer cannot be built: say how to get it.
#[cfg(not(feature = "hf-tokenizer"))]
pub fn model_tokenizer(path: &Path) -> Result<(Tokenizer, Option<u32>)> {
    Err(Error::msg(format!(
        "model.pretrained = '{}' needs a build with the `hf-tokenizer` feature (on by default)",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_keeps_smallest_hashes_in_order() {
        let pair = |g| PreferencePair {
            prompt: vec![],
            chosen: vec![1],
            rejected: vec![2],
            group: g,
            source: 0,
            annotator: 0,
            truth: None,
        };
        // Hashes 5, 1, 4, 2: the two smallest are at positions 1 and 3, kept in that order.
        let items = vec![(5, pair(0)), (1, pair(1)), (4, pair(2)), (2, pair(3))];
        let kept: Vec<usize> = bound(items, 2).iter().map(|p| p.group).collect();
        assert_eq!(kept, vec![1, 3]);
    }

    #[test]
    fn role_labels() {
        assert_eq!(role_label("user"), "Human");
        assert_eq!(role_label("assistant"), "Assistant");
        assert_eq!(role_label("system"), "System");
        assert_eq!(role_label(""), "");
    }
}
