//! Text to token ids for real preference data.
//!
//! Owns the [`Tokenizer`]: the byte-level tokeniser (the default: every UTF-8 byte is a token, so
//! any text encodes and nothing is downloaded) and, behind the `hf-tokenizer` cargo feature, a
//! Hugging Face `tokenizer.json` read with the `tokenizers` crate. Token ids lie in
//! `0..vocab_size()`; the separator that joins prompt and response is `vocab_size()` (see
//! [`crate::data`]), so no tokeniser ever produces it.
//!
//! It does not truncate, split or group records (that is [`crate::data::real`]).

use crate::scenario::BYTE_TOKENIZER;
use crate::{Error, Result};
use std::path::Path;

/// Vocabulary of the byte tokeniser: one token per byte value.
pub const BYTE_VOCAB: usize = 256;

/// A text tokeniser.
#[derive(Debug, Clone)]
pub enum Tokenizer {
    /// UTF-8 bytes as tokens:
    /// ```text
    /// encode(s) = [b as u32 for b in s.as_bytes()],  vocab = 256, ids in 0..256
    /// ```
    Byte,
    /// A Hugging Face `tokenizer.json`, encoded without special tokens, truncation or padding.
    #[cfg(feature = "hf-tokenizer")]
    HuggingFace {
        /// The loaded tokeniser (boxed: it is large).
        tokenizer: Box<tokenizers::Tokenizer>,
        /// One past the largest id in its vocabulary (added tokens included).
        vocab: usize,
        /// Where it was read from (for reports).
        path: std::path::PathBuf,
    },
}

impl Tokenizer {
    /// The tokeniser a scenario names in `data.tokenizer`: `byte`, or the path of a
    /// `tokenizer.json`, resolved against `base_dir` when relative (the rule of
    /// [`crate::data::real::resolve_path`]).
    pub fn from_spec(spec: &str, base_dir: &Path) -> Result<Tokenizer> {
        if spec == BYTE_TOKENIZER {
            return Ok(Tokenizer::Byte);
        }
        let path = crate::data::real::resolve_path(base_dir, Path::new(spec));
        Tokenizer::from_file(&path)
    }

    /// Read a Hugging Face `tokenizer.json`.
    #[cfg(feature = "hf-tokenizer")]
    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        if !path.is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer file not found"),
            ));
        }
        let mut tokenizer = tokenizers::Tokenizer::from_file(path).map_err(|e| {
            Error::msg(format!(
                "{}: not a Hugging Face tokenizer.json: {e}",
                path.display()
            ))
        })?;
        // Truncation and padding are this crate's job (data.max_*_tokens); a tokenizer.json may
        // carry its own settings, which would pad or cut silently.
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| {
            Error::msg(format!(
                "{}: cannot turn off truncation: {e}",
                path.display()
            ))
        })?;
        let vocab = tokenizer
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&m| m as usize + 1);
        if vocab == 0 {
            return Err(Error::msg(format!(
                "{}: tokenizer has an empty vocabulary",
                path.display()
            )));
        }
        Ok(Tokenizer::HuggingFace {
            tokenizer: Box::new(tokenizer),
            vocab,
            path: path.to_path_buf(),
        })
    }

    /// Without the `hf-tokenizer` feature a tokenizer.json cannot be read: say how to get it.
    #[cfg(not(feature = "hf-tokenizer"))]
    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        Err(Error::msg(format!(
            "data.tokenizer = '{}' needs a build with `--features hf-tokenizer` \
             (this build has only \"{BYTE_TOKENIZER}\")",
            path.display()
        )))
    }

    /// Token ids of `text`, each in `0..vocab_size()`. The byte tokeniser never fails; a Hugging
    /// Face tokeniser reports its own errors (the loader turns them into a bad-line error).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Byte => Ok(text.bytes().map(u32::from).collect()),
            #[cfg(feature = "hf-tokenizer")]
            Tokenizer::HuggingFace { tokenizer, .. } => tokenizer
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| Error::msg(format!("tokenizer: {e}"))),
        }
    }

    /// Number of content tokens (ids `0..vocab_size()`); the separator is `vocab_size()`.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Byte => BYTE_VOCAB,
            #[cfg(feature = "hf-tokenizer")]
            Tokenizer::HuggingFace { vocab, .. } => *vocab,
        }
    }

    /// Text of `ids`, for reports and samples. The separator (`vocab_size()`) shows as `<sep>`;
    /// any id at or past it as `<id N>`. Byte sequences that are not UTF-8 decode lossily (U+FFFD),
    /// which happens where truncation cut a multi-byte character.
    pub fn decode(&self, ids: &[u32]) -> String {
        let vocab = self.vocab_size();
        let mut out = String::new();
        // Decode each run of content ids at once (multi-byte characters and sub-word merges
        // need their neighbours), and name the ids between runs.
        let mut start = 0;
        for (i, &id) in ids.iter().enumerate() {
            if (id as usize) < vocab {
                continue;
            }
            out.push_str(&self.decode_run(&ids[start..i]));
            if id as usize == vocab {
                out.push_str("<sep>");
            } else {
                out.push_str(&format!("<id {id}>"));
            }
            start = i + 1;
        }
        out.push_str(&self.decode_run(&ids[start..]));
        out
    }

    fn decode_run(&self, run: &[u32]) -> String {
        match self {
            Tokenizer::Byte => {
                let bytes: Vec<u8> = run.iter().map(|&b| b as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            #[cfg(feature = "hf-tokenizer")]
            Tokenizer::HuggingFace { tokenizer, .. } => tokenizer
                .decode(run, false)
                .unwrap_or_else(|e| format!("<undecodable: {e}>")),
        }
    }

    /// One line for reports: `byte (vocab 256)` or `path/to/tokenizer.json (vocab N)`.
    pub fn describe(&self) -> String {
        match self {
            Tokenizer::Byte => format!("{BYTE_TOKENIZER} (vocab {BYTE_VOCAB})"),
            #[cfg(feature = "hf-tokenizer")]
            Tokenizer::HuggingFace { vocab, path, .. } => {
                format!("{} (vocab {vocab})", path.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn byte_tokens_are_utf8_bytes() {
        // "é" is U+00E9, UTF-8 0xC3 0xA9.
        let t = Tokenizer::Byte;
        assert_eq!(t.encode("aé").unwrap(), vec![0x61, 0xC3, 0xA9]);
        assert_eq!(t.vocab_size(), 256);
    }

    #[test]
    fn decode_marks_the_separator() {
        let t = Tokenizer::Byte;
        let mut ids = t.encode("Hi").unwrap();
        ids.push(256);
        ids.extend(t.encode("yo").unwrap());
        ids.push(300);
        assert_eq!(t.decode(&ids), "Hi<sep>yo<id 300>");
    }

    #[cfg(not(feature = "hf-tokenizer"))]
    #[test]
    fn tokenizer_json_needs_the_feature() {
        let e = Tokenizer::from_spec("tok.json", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("hf-tokenizer"), "{e}");
    }

    proptest! {
        /// Byte encoding is lossless: decode(encode(s)) == s, and every id is below the vocabulary.
        #[test]
        fn byte_round_trip(s in ".*") {
            let t = Tokenizer::Byte;
            let ids = t.encode(&s).unwrap();
            prop_assert!(ids.iter().all(|&i| (i as usize) < t.vocab_size()));
            prop_assert_eq!(t.decode(&ids), s);
        }
    }
}
