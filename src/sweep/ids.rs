//! Cell ids: the `<point>/<method>` names of cells, filesystem-safe and stable under edits of
//! the grid (see the module docs of [`crate::sweep`]), and values as text in tables.

use super::grid::{Axis, Override};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use toml::Value;

/// Key names in ids: the last path segment, or the full path where two axes share it.
pub(super) fn short_names(axes: &[Axis]) -> HashMap<String, String> {
    let last = |p: &str| p.rsplit('.').next().unwrap_or(p).to_string();
    let mut count: HashMap<String, usize> = HashMap::new();
    for a in axes {
        *count.entry(last(&a.path)).or_default() += 1;
    }
    axes.iter()
        .map(|a| {
            let short = last(&a.path);
            let name = if count[&short] > 1 {
                a.path.clone()
            } else {
                short
            };
            (a.path.clone(), name)
        })
        .collect()
}

/// Longest readable part kept in one id component before it is shortened with a hash.
const MAX_COMPONENT: usize = 120;

/// `<point>/<method>`, see the module docs.
pub(super) fn cell_id(
    overrides: &[Override],
    names: &HashMap<String, String>,
    label: &str,
) -> String {
    let point = if overrides.is_empty() {
        "base".to_string()
    } else {
        overrides
            .iter()
            .map(|o| format!("{}={}", names[&o.path], value_slug(&o.value)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let method = if is_safe(label) && !label.starts_with('.') {
        label.to_string()
    } else {
        hashed_slug(label)
    };
    format!("{}/{}", cap_length(point), cap_length(method))
}

fn is_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
}

/// Unsafe characters as `_` (runs collapsed), then `~` and 8 hex digits of SHA-256(text).
fn hashed_slug(text: &str) -> String {
    let mut clean = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-') {
            clean.push(c);
        } else if !clean.ends_with('_') {
            clean.push('_');
        }
    }
    let clean = clean.trim_matches(['_', '.']);
    format!("{clean}~{}", short_hash(text))
}

/// First 8 hex digits of SHA-256(text): a stable fingerprint (std's hashers may change between
/// releases).
fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

fn cap_length(s: String) -> String {
    if s.len() <= MAX_COMPONENT {
        return s;
    }
    let mut cut = MAX_COMPONENT - 10;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{}", &s[..cut], short_hash(&s))
}

/// A value in an id: numbers, booleans and safe strings as themselves (floats in Rust's
/// shortest round-trip form with a `.0` or exponent, so `1` and `1.0` stay distinct), anything
/// else through [`hashed_slug`].
fn value_slug(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Boolean(b) => b.to_string(),
        Value::String(s) if is_safe(s) => s.clone(),
        other => hashed_slug(&value_text(other)),
    }
}

/// A value as text in tables: strings bare, floats as in ids (`0.25`, `1.0`, `1e-7`), lists
/// and tables as inline TOML.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Float(f) => format!("{f:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_slugs_are_safe_and_distinguish_int_from_float() {
        assert_eq!(value_slug(&Value::Integer(1)), "1");
        assert_eq!(value_slug(&Value::Float(1.0)), "1.0");
        assert_eq!(value_slug(&Value::Float(1e-7)), "1e-7");
        assert_eq!(value_slug(&Value::String("cosine".into())), "cosine");
        let list = value_slug(&toml::from_str::<toml::Table>("x = [10, 1]").unwrap()["x"]);
        // "[10, 1]" with unsafe runs as '_' and trimmed, then the hash of "[10, 1]".
        assert_eq!(list, format!("10_1~{}", short_hash("[10, 1]")));
        assert!(is_safe(&list.replace('~', "")));
    }

    #[test]
    fn short_hash_is_sha256_prefix() {
        // SHA-256("abc") = ba7816bf 8f01cfea ... (FIPS 180-2, appendix B.1).
        assert_eq!(short_hash("abc"), "ba7816bf");
    }

    #[test]
    fn long_components_are_capped_with_a_hash() {
        let long = "a".repeat(300);
        let capped = cap_length(long.clone());
        assert_eq!(capped.len(), MAX_COMPONENT - 10 + 1 + 8);
        assert!(capped.ends_with(&short_hash(&long)));
    }
}
