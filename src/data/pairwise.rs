//! The general `pairwise` record layout: two responses named by field or by index into a list
//! field, the winner by a chosen/rejected pair of fields, by a label field mapped through
//! `label_map`, or by per-annotator vote fields (one pair per vote), a prompt from one or several
//! fields, and the group from a fixed label, any field, or the annotator.
//!
//! This module turns one JSON object into a [`ParsedRecord`]; reading files, counting and
//! tokenising are [`crate::data::real`]'s. The keys are documented on
//! [`crate::scenario::DataFile`] and, with worked examples, in `docs/DATA.md`.
//!
//! # Rules
//! - **Prompt**: `prompt_fields` joined with `prompt_separator` (each a string; a `null` or empty
//!   one is left out; a missing one is an error), or the single `prompt_field` (default
//!   `prompt`): a string taken verbatim, or a `[{role, content}]` message list rendered
//!   HH-style.
//! - **Winner by chosen/rejected** (no `label_field`, no `vote_fields`): exactly the `jsonl`
//!   layout ([`crate::data::real::jsonl_record`]) when one prompt field is named.
//! - **Winner by label**: the label's text (a string trimmed, a number or a boolean as JSON
//!   writes it: `0`, `1`, `true`) is looked up in `label_map`; `first` makes the first response
//!   the chosen one, `second` the second, `tie` gives no pair and counts a tie. A value missing
//!   from the map makes the record invalid (its reason names the value and the map's keys).
//! - **Winner by votes**: each field of `vote_fields` is one annotator's vote, mapped like a
//!   label; every vote gives its own pair (ties counted, a missing or `null` vote counted as
//!   "no pair"); the annotator id is the field name, kept as the pair's annotator or, with
//!   `annotator_as = "group"`, as its group.
//! - Every pair records the position of its chosen response (first or second) for the
//!   majority-label baseline; chosen/rejected files have none.

use crate::data::real::{
    ParsedRecord, TextPair, file_group, jsonl_record, render_turns, response_text, turns,
};
use crate::scenario::{AnnotatorAs, DataFile, Outcome, WinnerBy};
use serde_json::{Map, Value};

/// Pairs of one `pairwise` record (see the module rules).
pub fn pairwise_record(
    obj: &Map<String, Value>,
    file: &DataFile,
) -> std::result::Result<ParsedRecord, String> {
    let mut out = ParsedRecord::default();
    match file.winner() {
        WinnerBy::ChosenRejected => {
            let (prompt, chosen, rejected) = match &file.prompt_fields {
                None => jsonl_record(
                    obj,
                    file.prompt_field(),
                    file.chosen_field(),
                    file.rejected_field(),
                )?,
                Some(fields) => (
                    joined_prompt(obj, fields, file.prompt_separator())?,
                    response_text(obj, file.chosen_field())?.to_string(),
                    response_text(obj, file.rejected_field())?.to_string(),
                ),
            };
            out.pairs.push(TextPair {
                prompt,
                chosen,
                rejected,
                group: file_group(obj, file)?,
                annotator: None,
                first_won: None,
            });
        }
        WinnerBy::Label => {
            let prompt = prompt_of(obj, file)?;
            let [first, second] = responses(obj, file)?;
            let field = file.label_field.as_deref().unwrap_or_default();
            let outcome = mapped(obj, field, file)?
                .ok_or_else(|| format!("missing label: field '{field}' is absent or null"))?;
            let group = file_group(obj, file)?;
            push(&mut out, outcome, &prompt, first, second, group, None);
        }
        WinnerBy::Votes => {
            let prompt = prompt_of(obj, file)?;
            let [first, second] = responses(obj, file)?;
            let group = match file.annotator_as() {
                AnnotatorAs::Annotator => Some(file_group(obj, file)?),
                AnnotatorAs::Group => None,
            };
            for field in file.vote_fields.iter().flatten() {
                let Some(outcome) = mapped(obj, field, file)? else {
                    out.unpaired += 1;
                    continue;
                };
                let (group, annotator) = match &group {
                    Some(g) => (g.clone(), Some(field.clone())),
                    None => (field.clone(), None),
                };
                push(&mut out, outcome, &prompt, first, second, group, annotator);
            }
        }
    }
    Ok(out)
}

/// Add the pair an outcome gives (none for a tie, which is counted).
fn push(
    out: &mut ParsedRecord,
    outcome: Outcome,
    prompt: &str,
    first: &str,
    second: &str,
    group: String,
    annotator: Option<String>,
) {
    let (chosen, rejected, first_won) = match outcome {
        Outcome::First => (first, second, true),
        Outcome::Second => (second, first, false),
        Outcome::Tie => {
            out.ties += 1;
            return;
        }
    };
    out.pairs.push(TextPair {
        prompt: prompt.to_string(),
        chosen: chosen.to_string(),
        rejected: rejected.to_string(),
        group,
        annotator,
        first_won: Some(first_won),
    });
}

/// The text `label_map` is keyed by: a string trimmed, a number or boolean as JSON writes it.
/// `None` for a missing or `null` field.
pub fn label_text(
    obj: &Map<String, Value>,
    field: &str,
) -> std::result::Result<Option<String>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(_) => Err(format!(
            "label must be a string, a number or a boolean: field '{field}'"
        )),
    }
}

/// The outcome a label or vote field maps to; `None` when the field is missing or `null`.
fn mapped(
    obj: &Map<String, Value>,
    field: &str,
    file: &DataFile,
) -> std::result::Result<Option<Outcome>, String> {
    let Some(text) = label_text(obj, field)? else {
        return Ok(None);
    };
    let map = file.label_map.as_ref();
    match map.and_then(|m| m.get(&text)) {
        Some(o) => Ok(Some(*o)),
        None => {
            let keys: Vec<String> = map
                .map(|m| m.keys().map(|k| format!("\"{k}\"")).collect())
                .unwrap_or_default();
            Err(format!(
                "label not in label_map: field '{field}' holds \"{text}\" (label_map maps {})",
                keys.join(", ")
            ))
        }
    }
}

/// The prompt of a label or vote record: `prompt_fields` joined, or the single `prompt_field`
/// (a string, or a message list rendered HH-style).
fn prompt_of(obj: &Map<String, Value>, file: &DataFile) -> std::result::Result<String, String> {
    if let Some(fields) = &file.prompt_fields {
        return joined_prompt(obj, fields, file.prompt_separator());
    }
    let field = file.prompt_field();
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(a)) => Ok(render_turns(&turns(a, field)?)),
        None | Some(Value::Null) => Err(format!("missing field '{field}'")),
        Some(_) => Err(format!(
            "field '{field}' must be a string or a list of {{role, content}} messages"
        )),
    }
}

/// `prompt_fields` joined with `separator`; a `null` or empty field is left out.
pub fn joined_prompt(
    obj: &Map<String, Value>,
    fields: &[String],
    separator: &str,
) -> std::result::Result<String, String> {
    let mut parts = Vec::with_capacity(fields.len());
    for field in fields {
        match obj.get(field) {
            Some(Value::String(s)) if !s.is_empty() => parts.push(s.as_str()),
            Some(Value::String(_)) | Some(Value::Null) => {}
            None => return Err(format!("missing field '{field}'")),
            Some(_) => return Err(format!("field '{field}' must be a string")),
        }
    }
    Ok(parts.join(separator))
}

/// The first and second response: `first_field` / `second_field`, or two entries of
/// `responses_field` picked by `response_indices`.
fn responses<'a>(
    obj: &'a Map<String, Value>,
    file: &DataFile,
) -> std::result::Result<[&'a str; 2], String> {
    if let Some(field) = &file.responses_field {
        let list = match obj.get(field) {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => return Err(format!("missing field '{field}'")),
            Some(_) => return Err(format!("field '{field}' must be a list of responses")),
        };
        let [a, b] = file.response_indices();
        let pick = |k: usize| -> std::result::Result<&'a str, String> {
            match list.get(k) {
                Some(Value::String(s)) => Ok(s.as_str()),
                Some(_) => Err(format!("response must be a string: '{field}'[{k}]")),
                None => Err(format!(
                    "too few responses: field '{field}' holds {} (response_indices [{a}, {b}])",
                    list.len()
                )),
            }
        };
        return Ok([pick(a)?, pick(b)?]);
    }
    let first = file.first_field.as_deref().unwrap_or_default();
    let second = file.second_field.as_deref().unwrap_or_default();
    Ok([response_text(obj, first)?, response_text(obj, second)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::DataFormat;

    fn obj(text: &str) -> Map<String, Value> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn label_text_writes_numbers_and_booleans_as_json_does() {
        let o = obj(r#"{"a": 0, "b": " tie ", "c": true, "d": null, "e": [1], "f": 1.5}"#);
        assert_eq!(label_text(&o, "a").unwrap().as_deref(), Some("0"));
        assert_eq!(label_text(&o, "b").unwrap().as_deref(), Some("tie"));
        assert_eq!(label_text(&o, "c").unwrap().as_deref(), Some("true"));
        assert_eq!(label_text(&o, "d").unwrap(), None);
        assert_eq!(label_text(&o, "missing").unwrap(), None);
        assert_eq!(label_text(&o, "f").unwrap().as_deref(), Some("1.5"));
        assert!(label_text(&o, "e").is_err());
    }

    #[test]
    fn joined_prompt_leaves_out_null_and_empty_fields() {
        let o = obj(r#"{"i": "Add.", "x": "2 + 2", "e": "", "n": null, "k": 3}"#);
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            joined_prompt(&o, &f(&["i", "x"]), "\n\n").unwrap(),
            "Add.\n\n2 + 2"
        );
        assert_eq!(
            joined_prompt(&o, &f(&["i", "e", "n"]), " | ").unwrap(),
            "Add."
        );
        assert!(joined_prompt(&o, &f(&["i", "gone"]), " ").is_err());
        assert!(joined_prompt(&o, &f(&["k"]), " ").is_err());
    }

    #[test]
    fn a_vote_per_annotator_with_ties_and_missing_votes_counted() {
        let mut file = DataFile::new("x", DataFormat::Pairwise);
        file.responses_field = Some("out".into());
        file.vote_fields = Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]);
        file.label_map = Some(
            [
                ("1".to_string(), Outcome::First),
                ("2".to_string(), Outcome::Second),
                ("0".to_string(), Outcome::Tie),
            ]
            .into(),
        );
        file.annotator_as = Some(AnnotatorAs::Group);
        let rec = pairwise_record(
            &obj(r#"{"prompt": "P", "out": ["X", "Y"], "a": 2, "b": 1, "c": 0, "d": null}"#),
            &file,
        )
        .unwrap();
        // a: second (Y) won; b: first (X) won; c: tie; d: no vote.
        let got: Vec<(&str, &str, &str, Option<bool>)> = rec
            .pairs
            .iter()
            .map(|p| {
                (
                    p.chosen.as_str(),
                    p.rejected.as_str(),
                    p.group.as_str(),
                    p.first_won,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("Y", "X", "a", Some(false)), ("X", "Y", "b", Some(true))]
        );
        assert_eq!((rec.ties, rec.unpaired), (1, 1));
    }
}
