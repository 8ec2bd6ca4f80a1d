//! Real preference data: JSON Lines files in the HH-RLHF, generic, UltraFeedback and PKU-SafeRLHF
//! layouts, read line by line into [`PreferenceData`].
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
//! name the data beside the project as `../shared/data/...`, which holds for a fresh clone with
//! `shared/` beside it as well as for the project's own checkout.
//!
//! # Layouts (one JSON object per line; blank lines are ignored)
//! - `hh-rlhf`: `{"chosen": transcript, "rejected": transcript}`. The prompt is the shared prefix
//!   through the last `"\n\nAssistant:"` lying wholly inside the common prefix of both
//!   transcripts; the responses are what follows it, less one leading space
//!   ([`split_hh_transcripts`]).
//! - `jsonl`: configurable prompt/chosen/rejected fields ([`jsonl_record`]).
//! - `ultrafeedback`: `instruction` and rated `completions`; per aspect, the highest- against the
//!   lowest-rated completion, ties skipped ([`ultrafeedback_record`]).
//! - `pku-saferlhf`: `prompt`, `response_0/1`, `better_response_id`, `safer_response_id`; a
//!   `helpful` and a `safe` pair per record ([`pku_saferlhf_record`]).
//!
//! # Bad lines
//! A line that is not valid UTF-8 or JSON, or lacks what its layout needs, is an
//! [`Error::Data`] naming the file and the 1-based line; with `skip_invalid` it is skipped and
//! counted instead. Read errors of the file itself (a corrupt gzip stream) are never skipped.
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
//! - `data.train_pairs` / `data.eval_pairs` bound each side; a side with more pairs keeps the
//!   pairs with the smallest seeded selection hash ([`selection_hash`]), a uniform subset that
//!   keeps file order.

use crate::data::tokenize::Tokenizer;
use crate::data::{PreferenceData, PreferencePair};
use crate::rng::{derive_seed, fnv1a64, splitmix64};
use crate::scenario::{DataFile, DataFormat, Scenario};
use crate::{Error, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The HH-RLHF assistant cue that ends every prompt.
pub const HH_ASSISTANT: &str = "\n\nAssistant:";

/// One preference as text, before tokenisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextPair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
    /// Group label (a file's `group`, a record's group field, or an aspect name).
    pub group: String,
}

/// What one valid record gave.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedRecord {
    /// The pairs (one for `hh-rlhf` and `jsonl`; up to one per aspect otherwise).
    pub pairs: Vec<TextPair>,
    /// Aspects that gave no pair: every rating tied, or fewer than two rated completions.
    pub unpaired: usize,
}

/// Counts of one pass over a file by [`read_records`].
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ReadCounts {
    /// Non-blank lines read.
    pub lines: usize,
    /// Valid records (each may give zero or more pairs).
    pub records: usize,
    /// Invalid lines skipped (only with `skip_invalid`).
    pub skipped: usize,
    /// Sum of [`ParsedRecord::unpaired`].
    pub unpaired: usize,
    /// The first skipped line: `line N: message`.
    pub first_skipped: Option<String>,
}

/// Counts for one file, as loaded by [`load_real_data`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    /// The resolved path.
    pub path: PathBuf,
    pub format: DataFormat,
    /// Lines, records, skipped lines and unpaired aspects.
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

/// Pairs per group on each side, after the bounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupCount {
    pub name: String,
    pub train: usize,
    pub eval: usize,
}

/// What [`load_real_data`] read and built.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// [`Tokenizer::describe`].
    pub tokenizer: String,
    /// Held-out share of prompts.
    pub eval_fraction: f64,
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
    pub groups: Vec<GroupCount>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "tokenizer {}; held-out share {} of prompts",
            self.tokenizer, self.eval_fraction
        )?;
        writeln!(
            f,
            "{:<14} {:>7} {:>7} {:>7} {:>8} {:>7} {:>6} {:>9} {:>11} {:>13} {:>7} {:>6}  file",
            "format",
            "lines",
            "records",
            "skipped",
            "unpaired",
            "pairs",
            "empty",
            "identical",
            "prompts_cut",
            "responses_cut",
            "train",
            "eval"
        )?;
        for r in &self.files {
            writeln!(
                f,
                "{:<14} {:>7} {:>7} {:>7} {:>8} {:>7} {:>6} {:>9} {:>11} {:>13} {:>7} {:>6}  {}",
                r.format.as_str(),
                r.read.lines,
                r.read.records,
                r.read.skipped,
                r.read.unpaired,
                r.pairs,
                r.dropped_empty,
                r.dropped_identical,
                r.prompts_truncated,
                r.responses_truncated,
                r.train,
                r.eval,
                r.path.display()
            )?;
            if let Some(first) = &r.read.first_skipped {
                writeln!(f, "  first skipped {first}")?;
            }
        }
        writeln!(
            f,
            "kept {} of {} train and {} of {} held-out pairs; {} validation pairs set aside from the training side",
            self.train_pairs,
            self.train_available,
            self.eval_pairs,
            self.eval_available,
            self.val_pairs
        )?;
        for g in &self.groups {
            writeln!(
                f,
                "  group {}: train {}, held-out {}",
                g.name, g.train, g.eval
            )?;
        }
        Ok(())
    }
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

/// Read JSON Lines from `reader` (named `path` in errors), parse each record in `file`'s layout,
/// and hand each valid record to `sink` with its 1-based line number. Stops after `file.limit`
/// valid records.
///
/// A bad line (not UTF-8, not JSON, wrong layout, or rejected by `sink`) is an [`Error::Data`]
/// naming `path` and the line, or with `skip_invalid` is skipped and counted.
pub fn read_records<R: BufRead>(
    mut reader: R,
    path: &Path,
    file: &DataFile,
    skip_invalid: bool,
    mut sink: impl FnMut(usize, ParsedRecord) -> std::result::Result<(), String>,
) -> Result<ReadCounts> {
    let aspects = file.aspects();
    let mut counts = ReadCounts::default();
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
                parse_record(text, file, &aspects)
                    .and_then(|rec| {
                        let unpaired = rec.unpaired;
                        sink(line_no, rec).map(|()| unpaired)
                    })
                    .map(|unpaired| counts.unpaired += unpaired)
            }
        };
        match outcome {
            Ok(()) => counts.records += 1,
            Err(message) if skip_invalid => {
                counts.skipped += 1;
                if counts.first_skipped.is_none() {
                    counts.first_skipped = Some(format!("line {line_no}: {message}"));
                }
            }
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

/// Parse one JSON Lines record in `file`'s layout. `aspects` is `file.aspects()` (passed in so
/// it is resolved once per file).
pub fn parse_record(
    text: &str,
    file: &DataFile,
    aspects: &[String],
) -> std::result::Result<ParsedRecord, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
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
    };
    // One pair per record, grouped by the file's label or field.
    Ok(ParsedRecord {
        pairs: vec![TextPair {
            prompt,
            chosen,
            rejected,
            group: file_group(obj, file)?,
        }],
        unpaired: 0,
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
struct Turn<'a> {
    role: &'a str,
    content: &'a str,
}

/// A `jsonl` response field: plain text, or a message list whose last turn is the response.
enum Side<'a> {
    Text(&'a str),
    Turns(Vec<Turn<'a>>),
}

fn turns<'a>(v: &'a [Value], field: &str) -> std::result::Result<Vec<Turn<'a>>, String> {
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
fn render_turns(turns: &[Turn<'_>]) -> String {
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
fn file_group(obj: &Map<String, Value>, file: &DataFile) -> std::result::Result<String, String> {
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

/// Keep the `cap` items with the smallest hash (ties by position), in their original order.
/// Set aside the validation pairs from the training side: the `min(val_pairs, n / 10)` items
/// with the largest prompt hashes (so the choice depends on neither file order nor the
/// training cap, and equal prompts stay together), in file order. Returns the rest (with their
/// hashes, for [`bound`]) and the validation pairs.
fn split_validation(
    items: Vec<(u64, PreferencePair)>,
    val_pairs: usize,
) -> (Vec<(u64, PreferencePair)>, Vec<PreferencePair>) {
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

fn bound(items: Vec<(u64, PreferencePair)>, cap: usize) -> Vec<PreferencePair> {
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
    seed: u64,
    eval_fraction: f64,
    max_prompt: usize,
    max_response: usize,
    group_names: Vec<String>,
    group_ids: HashMap<String, usize>,
    train: Vec<(u64, PreferencePair)>,
    eval: Vec<(u64, PreferencePair)>,
}

/// One tokenised pair waiting for its record to succeed.
struct Staged {
    held_out: bool,
    hash: u64,
    group: String,
    prompt: Vec<u32>,
    chosen: Vec<u32>,
    rejected: Vec<u32>,
    prompt_cut: bool,
    responses_cut: usize,
}

impl Builder<'_> {
    fn encode(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        self.tokenizer.encode(text).map_err(|e| e.to_string())
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
                    let ids = self.encode(&pair.prompt)?;
                    prompt_cache = Some((&pair.prompt, ids.clone()));
                    ids
                }
            };
            let prompt_cut = prompt.len() > self.max_prompt;
            if prompt_cut {
                prompt.drain(..prompt.len() - self.max_prompt);
            }
            let mut chosen = self.encode(&pair.chosen)?;
            let mut rejected = self.encode(&pair.rejected)?;
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
                prompt,
                chosen,
                rejected,
                prompt_cut,
                responses_cut,
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
            let next = self.group_ids.len();
            let group = *self.group_ids.entry(s.group.clone()).or_insert(next);
            if group == next {
                self.group_names.push(s.group);
            }
            let pair = PreferencePair {
                prompt: s.prompt,
                chosen: s.chosen,
                rejected: s.rejected,
                group,
                source,
                annotator: 0,
                truth: None,
            };
            if s.held_out {
                report.eval += 1;
                self.eval.push((s.hash, pair));
            } else {
                report.train += 1;
                self.train.push((s.hash, pair));
            }
        }
        Ok(())
    }
}

/// Load every `[[data.files]]` entry of a real-data scenario into [`PreferenceData`].
///
/// Relative paths (files and a `tokenizer.json`) resolve against `base_dir` (the CLI passes the
/// current directory). Pairs keep file order on each side of the split; group ids number the
/// group names in order of first appearance; `source` is the file's index in `data.files`;
/// `annotator` is 0 and `truth` is `None`. `vocab` is the tokeniser's vocabulary (the separator
/// is `vocab`). Fails if a side of the split is empty.
pub fn load_real_data(
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
    let tokenizer = Tokenizer::from_spec(spec.tokenizer(), base_dir)?;
    let mut builder = Builder {
        tokenizer: &tokenizer,
        seed: spec.seed,
        eval_fraction: spec.eval_fraction(),
        max_prompt: spec.max_prompt_tokens(),
        max_response: spec.max_response_tokens(),
        group_names: Vec::new(),
        group_ids: HashMap::new(),
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
    let train = bound(train_side, spec.train_pairs);
    let eval = bound(builder.eval, spec.eval_pairs);
    for (side, pairs) in [("training", &train), ("held-out", &eval)] {
        if pairs.is_empty() {
            return Err(Error::msg(format!(
                "the real data gave no {side} pairs (check data.files, their limits and \
                 data.eval_fraction = {})",
                spec.eval_fraction()
            )));
        }
    }
    let group_names = builder.group_names;
    let groups = group_names
        .iter()
        .enumerate()
        .map(|(g, name)| GroupCount {
            name: name.clone(),
            train: train.iter().filter(|p| p.group == g).count(),
            eval: eval.iter().filter(|p| p.group == g).count(),
        })
        .collect();
    let all = || train.iter().chain(val.iter()).chain(eval.iter());
    let max_prompt_len = all().map(|p| p.prompt.len()).max().unwrap_or(0);
    let max_response_len = all()
        .map(|p| p.chosen.len().max(p.rejected.len()))
        .max()
        .unwrap_or(0);
    let report = LoadReport {
        tokenizer: tokenizer.describe(),
        eval_fraction: spec.eval_fraction(),
        files,
        train_available,
        eval_available,
        train_pairs: train.len(),
        val_pairs: val.len(),
        eval_pairs: eval.len(),
        groups,
    };
    let data = PreferenceData {
        train,
        val,
        eval,
        vocab: tokenizer.vocab_size(),
        groups: group_names.len(),
        group_names,
        max_prompt_len,
        max_response_len,
    };
    Ok((data, report))
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
